//! Where OAuth2 access tokens come from.
//!
//! The connector needs two kinds of token: one for the Cloud SQL Admin API (scope
//! [`ADMIN_SCOPE`]) and, with automatic IAM database authentication, a login token (scope
//! [`LOGIN_SCOPE`]) that goes into the certificate request. The login token must carry its expiry,
//! because the ephemeral certificate is only useful until then.

mod adc;
mod cached;
mod oauth;
mod token;

use std::fmt;
use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;

pub use token::{AccessToken, CredentialsError};

pub(crate) use oauth::KeyFile;

/// OAuth2 scope for the Cloud SQL Admin API.
pub const ADMIN_SCOPE: &str = "https://www.googleapis.com/auth/sqlservice.admin";
/// OAuth2 scope for automatic IAM database login.
pub const LOGIN_SCOPE: &str = "https://www.googleapis.com/auth/sqlservice.login";

/// A boxed future returned by [`TokenSource::token`].
pub type TokenFuture<'a> = Pin<Box<dyn Future<Output = Result<AccessToken, CredentialsError>> + Send + 'a>>;

/// Anything that can produce OAuth2 access tokens: implement it to plug in your own credentials.
///
/// Implementations should cache tokens and refresh them before they expire; the connector calls
/// `token` on every certificate refresh.
///
/// ```
/// use cloudsql_core::{AccessToken, TokenFuture, TokenSource};
///
/// #[derive(Debug)]
/// struct FromVault;
///
/// impl TokenSource for FromVault {
///     fn token(&self) -> TokenFuture<'_> {
///         Box::pin(async { Ok(AccessToken::new("ya29.from-vault", None)) })
///     }
/// }
/// ```
pub trait TokenSource: Send + Sync + fmt::Debug + 'static {
    /// Returns a valid access token.
    fn token(&self) -> TokenFuture<'_>;
}

/// The credentials a connector uses: a token source for the Admin API and one for IAM login.
///
/// The default is Application Default Credentials.
#[derive(Clone)]
pub struct Credentials {
    pub(crate) admin: Arc<dyn TokenSource>,
    pub(crate) login: Arc<dyn TokenSource>,
    pub(crate) universe_domain: Option<String>,
}

impl Credentials {
    /// Application Default Credentials: `GOOGLE_APPLICATION_CREDENTIALS`, then gcloud's
    /// well-known file, then the metadata server.
    ///
    /// Admin API tokens come from Google's official `google-cloud-auth` crate; IAM login tokens come
    /// from a standard OAuth2 exchange with the same credentials, so their expiry is known.
    pub fn application_default() -> Self {
        Self {
            admin: Arc::new(adc::AdcAdminSource::new()),
            login: Arc::new(cached::Cached::new(adc::AdcLoginSource::new(LOGIN_SCOPE))),
            universe_domain: None,
        }
    }

    /// Credentials from a service-account key or `authorized_user` JSON file.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, CredentialsError> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|e| {
            CredentialsError::with_source(format!("cannot read credentials file {}", path.display()), e)
        })?;
        Self::from_json(&bytes)
    }

    /// Credentials from the contents of a service-account key or `authorized_user` JSON file.
    pub fn from_json(json: &[u8]) -> Result<Self, CredentialsError> {
        let key = Arc::new(KeyFile::parse(json)?);
        Ok(Self {
            universe_domain: Some(key.universe_domain().to_owned()),
            admin: Arc::new(cached::Cached::new(oauth::KeyFileSource::new(
                key.clone(),
                ADMIN_SCOPE,
            ))),
            login: Arc::new(cached::Cached::new(oauth::KeyFileSource::new(key, LOGIN_SCOPE))),
        })
    }

    /// One fixed token for every purpose. It is never refreshed and its expiry is unknown.
    pub fn from_token(token: impl Into<String>) -> Self {
        let source: Arc<dyn TokenSource> = Arc::new(Fixed(AccessToken::new(token, None)));
        Self {
            admin: source.clone(),
            login: source,
            universe_domain: None,
        }
    }

    /// A token source of your own, used for both the Admin API and IAM login.
    pub fn from_token_source(source: impl TokenSource) -> Self {
        let source: Arc<dyn TokenSource> = Arc::new(source);
        Self {
            admin: source.clone(),
            login: source,
            universe_domain: None,
        }
    }

    /// Separate token sources for the Admin API and for IAM login.
    pub fn from_token_sources(admin: impl TokenSource, login: impl TokenSource) -> Self {
        Self {
            admin: Arc::new(admin),
            login: Arc::new(login),
            universe_domain: None,
        }
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("admin", &self.admin)
            .field("login", &self.login)
            .field("universe_domain", &self.universe_domain)
            .finish()
    }
}

/// A fixed token.
struct Fixed(AccessToken);

impl fmt::Debug for Fixed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FixedToken(..)")
    }
}

impl TokenSource for Fixed {
    fn token(&self) -> TokenFuture<'_> {
        let token = self.0.clone();
        Box::pin(async move { Ok(token) })
    }
}
