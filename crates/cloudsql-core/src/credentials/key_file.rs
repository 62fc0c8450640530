//! `service_account` and `authorized_user` credentials files.
//!
//! Admin API tokens come from `google-cloud-auth` (feature `adc`, on by default; without it, from
//! our own exchange as login tokens do): a service account's are JWTs it signs itself
//! (no token endpoint on the way, as Google's client libraries do), a user's come from the
//! refresh-token grant at the file's `token_uri`. IAM login tokens come from our own OAuth2
//! exchange ([`super::oauth`]), because their expiry bounds the certificate they go into and the
//! crate does not report expiry (googleapis/google-cloud-rust#2929).

use std::sync::Arc;

#[cfg(feature = "adc")]
use google_cloud_auth::credentials::{service_account, user_account};
use serde_json::Value;

#[cfg(feature = "adc")]
use super::build_error;
#[cfg(feature = "adc")]
use super::google_auth::{Build, GoogleAuthSource};
use super::oauth::{KeyFile, KeyFileSource};
use super::{ADMIN_SCOPE, Base, Credentials, CredentialsError, LOGIN_SCOPE, TokenSource, cached::Cached};

/// Credentials from a `service_account` or `authorized_user` file's bytes.
pub(crate) fn credentials(json: &[u8]) -> Result<Credentials, CredentialsError> {
    // Parsed (and the key checked) first: its errors say what is wrong without quoting the file.
    let key = Arc::new(KeyFile::parse(json)?);
    let value: Arc<Value> = serde_json::from_slice(json)
        .map(Arc::new)
        .map_err(|_| CredentialsError::new("credentials file is not a JSON credentials object"))?;
    #[cfg(feature = "adc")]
    let what = match &*key {
        KeyFile::ServiceAccount { .. } => "service account credentials",
        KeyFile::AuthorizedUser { .. } => "authorized_user credentials",
    };
    #[cfg(feature = "adc")]
    let admin: Arc<dyn TokenSource> = Arc::new(GoogleAuthSource::admin(
        what,
        admin_build(&key, value.clone(), what),
    ));
    // Without google-cloud-auth, the Admin API token comes from our own exchange too.
    #[cfg(not(feature = "adc"))]
    let admin: Arc<dyn TokenSource> = Arc::new(Cached::new(KeyFileSource::new(key.clone(), ADMIN_SCOPE)));
    Ok(Credentials {
        universe_domain: Some(key.universe_domain().to_owned()),
        admin,
        login: Arc::new(Cached::new(KeyFileSource::new(key, LOGIN_SCOPE))),
        base: Base::Json(value),
    })
}

/// Builds `google-cloud-auth`'s Admin API credentials for the file.
#[cfg(feature = "adc")]
fn admin_build(key: &KeyFile, json: Arc<Value>, what: &'static str) -> Build {
    let service_account = matches!(key, KeyFile::ServiceAccount { .. });
    Arc::new(move || {
        let built = if service_account {
            service_account::Builder::new((*json).clone())
                .with_access_specifier(service_account::AccessSpecifier::from_scopes([ADMIN_SCOPE]))
                .build_access_token_credentials()
        } else {
            user_account::Builder::new((*json).clone())
                .with_scopes([ADMIN_SCOPE])
                .build_access_token_credentials()
        };
        built.map_err(|e| build_error(what, e))
    })
}
