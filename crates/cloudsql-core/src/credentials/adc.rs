//! Application Default Credentials.
//!
//! Admin API tokens come from Google's official `google-cloud-auth` crate. It does not expose
//! token expiry (googleapis/google-cloud-rust#2929), so IAM login tokens, whose expiry bounds the
//! certificate, come from the same ADC file (or the metadata server) through our own OAuth2
//! exchange where we have one (service_account, authorized_user, metadata server), and from
//! `google-cloud-auth` with a conservative bound otherwise (external_account,
//! impersonated_service_account).

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::OnceCell;

#[cfg(feature = "adc")]
use super::ADMIN_SCOPE;
use super::oauth::MetadataSource;
use super::{Credentials, CredentialsError, LOGIN_SCOPE, TokenFuture, TokenSource};
#[cfg(feature = "adc")]
use crate::AccessToken;

/// Admin API tokens through `google-cloud-auth`'s ADC.
#[cfg(feature = "adc")]
pub(crate) struct AdcAdminSource {
    credentials: OnceCell<google_cloud_auth::credentials::AccessTokenCredentials>,
}

#[cfg(feature = "adc")]
impl AdcAdminSource {
    pub(crate) fn new() -> Self {
        Self {
            credentials: OnceCell::new(),
        }
    }
}

#[cfg(feature = "adc")]
impl fmt::Debug for AdcAdminSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApplicationDefaultCredentials")
    }
}

#[cfg(feature = "adc")]
impl TokenSource for AdcAdminSource {
    fn token(&self) -> TokenFuture<'_> {
        Box::pin(async move {
            let credentials = self
                .credentials
                .get_or_try_init(|| async {
                    google_cloud_auth::credentials::Builder::default()
                        .with_scopes([ADMIN_SCOPE])
                        .build_access_token_credentials()
                        .map_err(|e| {
                            CredentialsError::with_source(
                                "Application Default Credentials not found; set GOOGLE_APPLICATION_CREDENTIALS \
                                 or run `gcloud auth application-default login`",
                                e,
                            )
                        })
                })
                .await?;
            let token = credentials.access_token().await.map_err(|e| {
                CredentialsError::with_source("Application Default Credentials gave no token", e)
            })?;
            Ok(AccessToken::new(token.token, None))
        })
    }
}

/// Tokens with known expiry from our own exchange, with the ADC file or the metadata server: IAM
/// login tokens, and Admin API tokens too without the `adc` feature.
pub(crate) struct AdcExchangeSource {
    scope: &'static str,
    inner: OnceCell<Arc<dyn TokenSource>>,
}

impl AdcExchangeSource {
    pub(crate) fn new(scope: &'static str) -> Self {
        Self {
            scope,
            inner: OnceCell::new(),
        }
    }
}

impl fmt::Debug for AdcExchangeSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApplicationDefaultLogin")
            .field("scope", &self.scope)
            .finish()
    }
}

/// The ADC file, if any: `GOOGLE_APPLICATION_CREDENTIALS`, then gcloud's well-known file.
fn adc_file() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("GOOGLE_APPLICATION_CREDENTIALS") {
        return Some(PathBuf::from(path));
    }
    let config_dir = std::env::var_os("CLOUDSDK_CONFIG")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config/gcloud")))?;
    let well_known = config_dir.join("application_default_credentials.json");
    well_known.is_file().then_some(well_known)
}

/// The ADC file's JSON, if there is a file.
#[cfg(feature = "adc")]
pub(crate) fn adc_file_json() -> Result<Option<serde_json::Value>, CredentialsError> {
    let Some(path) = adc_file() else {
        return Ok(None);
    };
    let bytes = std::fs::read(&path).map_err(|e| {
        CredentialsError::with_source(format!("cannot read credentials file {}", path.display()), e)
    })?;
    // serde_json's message may quote the file, so none is kept.
    serde_json::from_slice(&bytes).map(Some).map_err(|_| {
        CredentialsError::new(format!(
            "credentials file {} is not a JSON credentials object",
            path.display()
        ))
    })
}

impl TokenSource for AdcExchangeSource {
    fn token(&self) -> TokenFuture<'_> {
        Box::pin(async move {
            let source = self
                .inner
                .get_or_try_init(|| async {
                    let source: Arc<dyn TokenSource> = match adc_file() {
                        Some(path) => {
                            let bytes = tokio::fs::read(&path).await.map_err(|e| {
                                CredentialsError::with_source(
                                    format!("cannot read credentials file {}", path.display()),
                                    e,
                                )
                            })?;
                            let credentials = Credentials::from_json(&bytes)?;
                            if self.scope == LOGIN_SCOPE {
                                credentials.login
                            } else {
                                credentials.admin
                            }
                        }
                        None => Arc::new(MetadataSource::new(self.scope)),
                    };
                    Ok::<_, CredentialsError>(source)
                })
                .await?;
            source.token().await
        })
    }
}
