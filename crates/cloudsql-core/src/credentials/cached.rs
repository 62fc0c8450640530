//! Caches a token until shortly before it expires.

use std::fmt;
use std::time::{Duration, SystemTime};

use tokio::sync::Mutex;

use super::{AccessToken, TokenFuture, TokenSource};

/// A token is fetched anew when it has less than this left: more than the certificate's 4-minute
/// refresh buffer, so a certificate refreshed ahead of expiry gets a login token that outlives
/// the buffer (a token with less left would end the new certificate inside it, and the refresh
/// would repeat until the token was replaced).
const EARLY_REFRESH: Duration = Duration::from_secs(6 * 60);

/// Wraps a token source and hands out its last token while it has over six minutes left.
pub(crate) struct Cached<S> {
    inner: S,
    current: Mutex<Option<AccessToken>>,
}

impl<S> Cached<S> {
    pub(crate) fn new(inner: S) -> Self {
        Self {
            inner,
            current: Mutex::new(None),
        }
    }
}

impl<S: fmt::Debug> fmt::Debug for Cached<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Cached").field(&self.inner).finish()
    }
}

impl<S: TokenSource> TokenSource for Cached<S> {
    fn token(&self) -> TokenFuture<'_> {
        Box::pin(async move {
            let mut current = self.current.lock().await;
            if let Some(token) = current.as_ref() {
                let fresh = token
                    .expires_at()
                    .is_some_and(|exp| exp > SystemTime::now() + EARLY_REFRESH);
                if fresh {
                    return Ok(token.clone());
                }
            }
            let token = self.inner.token().await?;
            *current = Some(token.clone());
            Ok(token)
        })
    }
}
