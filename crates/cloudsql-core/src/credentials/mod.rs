//! Where OAuth2 access tokens come from.
//!
//! The connector needs two kinds of token: one for the Cloud SQL Admin API (scope
//! [`ADMIN_SCOPE`]) and, with automatic IAM database authentication, a login token (scope
//! [`LOGIN_SCOPE`]) that goes into the certificate request. The login token must carry its expiry,
//! because the ephemeral certificate is only useful until then.
//!
//! Credential types and where their tokens come from (the repository's `docs/credentials.md`
//! has the whole table). Admin API tokens come from Google's official `google-cloud-auth` crate
//! for every credential type it reads. It does not report token expiry
//! (googleapis/google-cloud-rust#2929), and a login token's expiry bounds the certificate, so:
//! - `service_account` and `authorized_user` files, and the metadata server: login tokens from a
//!   standard OAuth2 exchange of our own ([`oauth`]), which reports their expiry;
//! - `external_account` (Workload Identity Federation) and `impersonated_service_account` files,
//!   and [`Credentials::impersonated`]: login tokens from `google-cloud-auth` too, their expiry
//!   bounded conservatively ([`google_auth`]);
//! - [`Credentials::impersonated`] over a fixed token or a token source of your own:
//!   `generateAccessToken` called with that token ([`impersonated`]), whose answer carries the
//!   expiry.

mod adc;
mod cached;
#[cfg(feature = "adc")]
mod external_account;
mod generate_access_token;
#[cfg(feature = "adc")]
mod google_auth;
mod impersonated;
mod key_file;
mod oauth;
mod retry;
mod token;

use std::fmt;
use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;

pub use impersonated::ImpersonationBuilder;
pub use token::{AccessToken, CredentialsError};

use oauth::DEFAULT_UNIVERSE;

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
    /// What the credentials were made from, for [`Credentials::impersonated`].
    pub(crate) base: Base,
}

/// What credentials were made from.
#[derive(Clone)]
pub(crate) enum Base {
    /// Application Default Credentials.
    Adc,
    /// A credentials file's JSON (it holds secrets: never printed); `google-cloud-auth` reads it
    /// again to impersonate with it.
    Json(#[cfg_attr(not(feature = "adc"), allow(dead_code))] Arc<serde_json::Value>),
    /// A fixed token or a token source of the caller's own.
    Custom,
}

impl Credentials {
    /// Application Default Credentials: `GOOGLE_APPLICATION_CREDENTIALS`, then gcloud's
    /// well-known file, then the metadata server.
    ///
    /// Admin API tokens come from Google's official `google-cloud-auth` crate; IAM login tokens come
    /// from a standard OAuth2 exchange with the same credentials, so their expiry is known.
    pub fn application_default() -> Self {
        #[cfg(feature = "adc")]
        let admin: Arc<dyn TokenSource> = Arc::new(adc::AdcAdminSource::new());
        // Without google-cloud-auth, the Admin API token comes from our own exchange too.
        #[cfg(not(feature = "adc"))]
        let admin: Arc<dyn TokenSource> =
            Arc::new(cached::Cached::new(adc::AdcExchangeSource::new(ADMIN_SCOPE)));
        Self {
            admin,
            login: Arc::new(cached::Cached::new(adc::AdcExchangeSource::new(LOGIN_SCOPE))),
            universe_domain: None,
            base: Base::Adc,
        }
    }

    /// Credentials from a JSON credentials file: a service-account key, an `authorized_user`
    /// file (`gcloud auth application-default login`), an `external_account` file (Workload
    /// Identity Federation: GitHub Actions, AWS, Azure, any OIDC or SAML provider) or an
    /// `impersonated_service_account` file.
    ///
    /// ```no_run
    /// # fn run() -> Result<(), cloudsql_core::CredentialsError> {
    /// let credentials = cloudsql_core::Credentials::from_file("/secrets/github-wif.json")?;
    /// # Ok(()) }
    /// ```
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, CredentialsError> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|e| {
            CredentialsError::with_source(format!("cannot read credentials file {}", path.display()), e)
        })?;
        Self::from_json(&bytes)
    }

    /// Credentials from the contents of a JSON credentials file (see
    /// [`from_file`](Self::from_file) for the types).
    pub fn from_json(json: &[u8]) -> Result<Self, CredentialsError> {
        let kind = serde_json::from_slice::<serde_json::Value>(json)
            .ok()
            .and_then(|v| v.get("type").and_then(|t| t.as_str().map(str::to_owned)));
        match kind.as_deref() {
            #[cfg(not(feature = "adc"))]
            Some(kind @ ("external_account" | "impersonated_service_account")) => {
                Err(CredentialsError::new(format!(
                    "{kind} credentials files are read by google-cloud-auth, which needs cloudsql-core's \
                 `adc` feature (on by default)"
                )))
            }
            #[cfg(feature = "adc")]
            Some("external_account") | Some("impersonated_service_account") => {
                // Parsed again only on this path; the KeyFile parser below says what is wrong
                // with anything else without quoting it.
                let value: serde_json::Value = serde_json::from_slice(json).map_err(|e| {
                    CredentialsError::new(format!(
                        "credentials file is not a JSON credentials object ({})",
                        oauth::json_error_position(&e)
                    ))
                })?;
                if kind.as_deref() == Some("external_account") {
                    external_account::credentials(value)
                } else {
                    impersonated::from_file_json(value)
                }
            }
            _ => key_file::credentials(json),
        }
    }

    /// Credentials that impersonate the service account `target_principal` (an email) with
    /// these credentials: every token, for the Admin API and for IAM database login, is the
    /// service account's, from IAM Credentials' `generateAccessToken` through
    /// `google-cloud-auth`. These credentials need the Service Account Token Creator role on the
    /// service account (or on the first of its [`delegates`](ImpersonationBuilder::delegates)).
    /// With automatic IAM authn, the database user is the service account's.
    ///
    /// ```no_run
    /// use cloudsql_core::{Connector, Credentials};
    ///
    /// # fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// let credentials = Credentials::application_default()
    ///     .impersonated("db-user@my-project.iam.gserviceaccount.com")
    ///     .build()?;
    /// let connector = Connector::builder().credentials(credentials).iam_authn(true).build()?;
    /// # Ok(()) }
    /// ```
    pub fn impersonated(self, target_principal: impl Into<String>) -> ImpersonationBuilder {
        ImpersonationBuilder::new(self, target_principal.into())
    }

    /// One fixed token for every purpose. It is never refreshed and its expiry is unknown.
    pub fn from_token(token: impl Into<String>) -> Self {
        let source: Arc<dyn TokenSource> = Arc::new(Fixed(AccessToken::new(token, None)));
        Self {
            admin: source.clone(),
            login: source,
            universe_domain: None,
            base: Base::Custom,
        }
    }

    /// A token source of your own, used for both the Admin API and IAM login.
    pub fn from_token_source(source: impl TokenSource) -> Self {
        let source: Arc<dyn TokenSource> = Arc::new(source);
        Self {
            admin: source.clone(),
            login: source,
            universe_domain: None,
            base: Base::Custom,
        }
    }

    /// Separate token sources for the Admin API and for IAM login.
    pub fn from_token_sources(admin: impl TokenSource, login: impl TokenSource) -> Self {
        Self {
            admin: Arc::new(admin),
            login: Arc::new(login),
            universe_domain: None,
            base: Base::Custom,
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

#[cfg(feature = "adc")]
/// Fails unless `json` has `field` passing `check`; the message names the field, never its value.
fn require(
    json: &serde_json::Value,
    field: &str,
    kind: &str,
    check: fn(&serde_json::Value) -> bool,
) -> Result<(), CredentialsError> {
    match json.get(field) {
        Some(value) if check(value) => Ok(()),
        Some(_) => Err(CredentialsError::new(format!(
            "{kind} credentials file has a malformed `{field}` field"
        ))),
        None => Err(CredentialsError::new(format!(
            "{kind} credentials file has no `{field}` field"
        ))),
    }
}

#[cfg(feature = "adc")]
/// A `google-cloud-auth` build error for `what`. Parsing errors can quote the file (secrets
/// included), so only their kind is kept.
fn build_error(what: &str, e: google_cloud_auth::build_errors::Error) -> CredentialsError {
    if e.is_missing_field() || e.is_not_supported() {
        CredentialsError::with_source(format!("{what} cannot be used"), e)
    } else if e.is_loading() {
        CredentialsError::new(format!(
            "{what} cannot be used: a credentials file could not be read"
        ))
    } else {
        CredentialsError::new(format!(
            "{what} cannot be used: the credentials JSON is malformed or of an unknown type"
        ))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn key_file_json() -> Vec<u8> {
        let key = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
        let der = aws_lc_rs::encoding::AsDer::<aws_lc_rs::encoding::Pkcs8V1Der>::as_der(&key).unwrap();
        let pem = pem::encode(&pem::Pem::new("PRIVATE KEY", der.as_ref().to_vec()));
        serde_json::to_vec(&serde_json::json!({
            "type": "service_account",
            "client_email": "sa@p.iam.gserviceaccount.com",
            "private_key": pem,
            "token_uri": "http://127.0.0.1:9/token",
        }))
        .unwrap()
    }

    #[test]
    fn a_key_files_admin_tokens_come_from_google_cloud_auth_when_it_is_built_in() {
        let credentials = Credentials::from_json(&key_file_json()).unwrap();
        let admin = format!("{:?}", credentials.admin);
        if cfg!(feature = "adc") {
            assert!(admin.contains("GoogleAuthSource"), "{admin}");
        } else {
            assert!(admin.contains("KeyFileSource"), "{admin}");
        }
        // Login tokens carry their expiry: always our own exchange.
        assert!(format!("{:?}", credentials.login).contains("KeyFileSource"));
    }

    #[cfg(not(feature = "adc"))]
    #[test]
    fn without_adc_the_files_only_google_cloud_auth_reads_name_the_feature() {
        for kind in ["external_account", "impersonated_service_account"] {
            let json = serde_json::json!({"type": kind, "audience": "a"});
            let err = Credentials::from_json(&serde_json::to_vec(&json).unwrap()).unwrap_err();
            assert!(err.to_string().contains("`adc` feature"), "{err}");
            assert!(err.to_string().contains(kind), "{err}");
        }
        let err = Credentials::from_json(&key_file_json())
            .unwrap()
            .impersonated("t@p.iam.gserviceaccount.com")
            .build()
            .unwrap_err();
        assert!(err.to_string().contains("`adc` feature"), "{err}");
    }
}
