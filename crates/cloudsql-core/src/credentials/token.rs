//! An access token with its expiry, and the error a token source reports.

use std::error::Error as StdError;
use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;

/// An OAuth2 access token and, when known, the time it expires.
///
/// Its `Debug` output never shows the token.
#[derive(Clone)]
pub struct AccessToken {
    secret: String,
    expires_at: Option<SystemTime>,
}

impl AccessToken {
    /// A token, with its expiry if known.
    pub fn new(secret: impl Into<String>, expires_at: Option<SystemTime>) -> Self {
        Self {
            secret: secret.into(),
            expires_at,
        }
    }

    /// The bearer token itself. Keep it out of logs.
    pub fn secret(&self) -> &str {
        &self.secret
    }

    /// When the token expires, if known.
    pub fn expires_at(&self) -> Option<SystemTime> {
        self.expires_at
    }
}

impl fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccessToken")
            .field("secret", &"<redacted>")
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// A token could not be obtained.
///
/// Its message never holds a token, key or other secret from a credentials file or a token
/// response.
#[derive(Debug, Clone)]
pub struct CredentialsError {
    message: String,
    source: Option<Arc<dyn StdError + Send + Sync + 'static>>,
    transient: bool,
}

impl CredentialsError {
    /// An error with a message that says what to do.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            source: None,
            transient: false,
        }
    }

    /// An error with a message and the error that caused it.
    pub fn with_source(message: impl Into<String>, source: impl StdError + Send + Sync + 'static) -> Self {
        Self {
            message: message.into(),
            source: Some(Arc::new(source)),
            transient: false,
        }
    }

    /// Marks the error as transient: the token endpoint failed in a way (a server error, a
    /// dropped connection) that a later attempt may not meet.
    #[must_use]
    pub fn transient(mut self) -> Self {
        self.transient = true;
        self
    }

    /// Whether a later attempt may succeed where this one failed. Errors are permanent unless
    /// marked [`transient`](Self::transient).
    pub fn is_transient(&self) -> bool {
        self.transient
    }
}

impl fmt::Display for CredentialsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl StdError for CredentialsError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.source.as_deref().map(|e| e as &(dyn StdError + 'static))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_permanent_unless_marked() {
        assert!(!CredentialsError::new("x").is_transient());
        assert!(CredentialsError::new("x").transient().is_transient());
        let io = std::io::Error::other("reset");
        assert!(CredentialsError::with_source("x", io).transient().is_transient());
    }

    #[test]
    fn debug_hides_the_token() {
        let token = AccessToken::new("ya29.secret-value", None);
        assert!(!format!("{token:?}").contains("secret-value"));
    }
}
