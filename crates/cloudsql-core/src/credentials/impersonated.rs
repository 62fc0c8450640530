//! Service-account impersonation: `impersonated_service_account` files (as
//! `gcloud auth application-default login --impersonate-service-account` writes them) and
//! [`Credentials::impersonated`], which wraps other credentials. Tokens come from IAM
//! Credentials' `generateAccessToken`, called with the source credentials' token: through
//! `google-cloud-auth` for credentials it reads, through [`GenerateAccessToken`] for a fixed
//! token or a token source of the caller's own.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

#[cfg(feature = "adc")]
use google_cloud_auth::credentials::{self as gauth, impersonated};
#[cfg(feature = "adc")]
use serde_json::{Value, json};

use super::cached::Cached;
use super::generate_access_token::GenerateAccessToken;
#[cfg(feature = "adc")]
use super::google_auth::{Build, GoogleAuthSource};
use super::{ADMIN_SCOPE, Base, Credentials, CredentialsError, LOGIN_SCOPE};
#[cfg(feature = "adc")]
use super::{build_error, require};

#[cfg(feature = "adc")]
const WHAT: &str = "impersonated service account credentials";

/// The lifetime asked for impersonated tokens (Google's maximum without an org policy).
const LIFETIME: Duration = Duration::from_secs(3600);

/// The scope the source credentials' token needs to call `generateAccessToken`.
#[cfg(feature = "adc")]
const CLOUD_PLATFORM: &str = "https://www.googleapis.com/auth/cloud-platform";

/// Credentials from an `impersonated_service_account` file's JSON.
#[cfg(feature = "adc")]
pub(crate) fn from_file_json(json: Value) -> Result<Credentials, CredentialsError> {
    require(
        &json,
        "service_account_impersonation_url",
        "impersonated_service_account",
        Value::is_string,
    )?;
    require(
        &json,
        "source_credentials",
        "impersonated_service_account",
        Value::is_object,
    )?;
    let universe_domain = json
        .get("universe_domain")
        .and_then(Value::as_str)
        .unwrap_or(super::DEFAULT_UNIVERSE)
        .to_owned();
    let json = Arc::new(json);
    let base = Base::Json(json.clone());
    let build = move |scope: &'static str| -> Build {
        let json = json.clone();
        Arc::new(move || {
            impersonated::Builder::new((*json).clone())
                .with_scopes([scope])
                .with_lifetime(LIFETIME)
                .build_access_token_credentials()
                .map_err(|e| build_error(WHAT, e))
        })
    };
    Ok(credentials(build, universe_domain, base))
}

#[cfg(feature = "adc")]
fn credentials(build: impl Fn(&'static str) -> Build, universe_domain: String, base: Base) -> Credentials {
    Credentials {
        admin: Arc::new(GoogleAuthSource::admin(WHAT, build(ADMIN_SCOPE))),
        login: Arc::new(GoogleAuthSource::login(WHAT, build(LOGIN_SCOPE), LIFETIME)),
        universe_domain: Some(universe_domain),
        base,
    }
}

/// Builds credentials that impersonate a service account with other credentials: see
/// [`Credentials::impersonated`].
#[must_use]
pub struct ImpersonationBuilder {
    base: Credentials,
    target: String,
    delegates: Vec<String>,
    iam_endpoint: Option<String>,
}

impl fmt::Debug for ImpersonationBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ImpersonationBuilder")
            .field("base", &self.base)
            .field("target", &self.target)
            .field("delegates", &self.delegates)
            .field("iam_endpoint", &self.iam_endpoint)
            .finish()
    }
}

impl ImpersonationBuilder {
    pub(crate) fn new(base: Credentials, target: String) -> Self {
        Self {
            base,
            target,
            delegates: Vec::new(),
            iam_endpoint: None,
        }
    }

    /// A delegation chain: the base credentials impersonate the first of these service accounts,
    /// which impersonates the next, and the last impersonates the target. Each needs the Service
    /// Account Token Creator role on the next.
    pub fn delegates<I, S>(mut self, delegates: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.delegates = delegates.into_iter().map(Into::into).collect();
        self
    }

    /// The IAM Service Account Credentials API endpoint (default:
    /// `https://iamcredentials.{universe_domain}`), for private endpoints and emulators.
    ///
    /// Honoured for every base except Application Default Credentials from the metadata server
    /// (`google-cloud-auth` redirects impersonation only for credentials it reads from JSON).
    pub fn iam_endpoint(mut self, url: impl Into<String>) -> Self {
        self.iam_endpoint = Some(url.into().trim_end_matches('/').to_owned());
        self
    }

    /// The impersonating credentials.
    ///
    /// Credentials from a file or Application Default Credentials impersonate through
    /// `google-cloud-auth`. A fixed token or a token source of your own impersonates through a
    /// `generateAccessToken` call of the connector's, made with the token the source gives for
    /// the Admin API (it needs the `cloud-platform` or `iam` scope); its tokens carry their exact
    /// expiry.
    ///
    /// Fails when an IAM endpoint is set for Application Default Credentials that come from the
    /// metadata server (`google-cloud-auth` cannot be redirected there).
    pub fn build(self) -> Result<Credentials, CredentialsError> {
        let universe = self
            .base
            .universe_domain
            .clone()
            .unwrap_or_else(|| super::DEFAULT_UNIVERSE.to_owned());
        let endpoint = self
            .iam_endpoint
            .clone()
            .unwrap_or_else(|| format!("https://iamcredentials.{universe}"));
        match &self.base.base {
            Base::Custom => Ok(self.over_own_tokens(&endpoint, universe)),
            #[cfg(feature = "adc")]
            _ => self.through_google_auth(&endpoint, universe),
            #[cfg(not(feature = "adc"))]
            _ => Err(CredentialsError::new(
                "impersonating credentials from a file or Application Default Credentials needs \
                 cloudsql-core's `adc` feature (on by default); without it, impersonate over a \
                 token source of your own",
            )),
        }
    }
}

#[cfg(feature = "adc")]
impl ImpersonationBuilder {
    /// Impersonation of credentials `google-cloud-auth` reads: a file's JSON, or ADC.
    fn through_google_auth(self, endpoint: &str, universe: String) -> Result<Credentials, CredentialsError> {
        let base_json = match &self.base.base {
            Base::Json(json) => Some((**json).clone()),
            _ => super::adc::adc_file_json()?,
        };
        match base_json {
            Some(base) => {
                let json = impersonation_json(base, &self.target, &self.delegates, endpoint)?;
                let mut creds = from_file_json(json)?;
                creds.universe_domain = Some(universe);
                Ok(creds)
            }
            // ADC from the metadata server: the crate builds the impersonation URL itself.
            None => {
                if self.iam_endpoint.is_some() {
                    return Err(CredentialsError::new(
                        "an IAM endpoint for impersonation needs base credentials from a file; \
                         Application Default Credentials here come from the metadata server",
                    ));
                }
                let target = self.target.clone();
                let delegates = self
                    .delegates
                    .iter()
                    .map(|d| delegate_name(d))
                    .collect::<Vec<_>>();
                let build = move |scope: &'static str| -> Build {
                    let target = target.clone();
                    let delegates = delegates.clone();
                    Arc::new(move || {
                        let source = gauth::Builder::default()
                            .with_scopes([CLOUD_PLATFORM])
                            .build()
                            .map_err(|e| build_error("Application Default Credentials", e))?;
                        let mut builder = impersonated::Builder::from_source_credentials(source)
                            .with_target_principal(target.clone())
                            .with_scopes([scope])
                            .with_lifetime(LIFETIME);
                        if !delegates.is_empty() {
                            builder = builder.with_delegates(delegates.clone());
                        }
                        builder
                            .build_access_token_credentials()
                            .map_err(|e| build_error(WHAT, e))
                    })
                };
                Ok(credentials(build, universe, Base::Adc))
            }
        }
    }
}

impl ImpersonationBuilder {
    /// Impersonation with a fixed token or a token source of the caller's own: the source's Admin
    /// API token calls `generateAccessToken` itself (see [`GenerateAccessToken`]).
    fn over_own_tokens(self, endpoint: &str, universe: String) -> Credentials {
        let delegates: Vec<String> = self.delegates.iter().map(|d| delegate_name(d)).collect();
        let source = |scope| {
            Cached::new(GenerateAccessToken::new(
                self.base.admin.clone(),
                endpoint,
                &self.target,
                delegates.clone(),
                scope,
                LIFETIME,
            ))
        };
        Credentials {
            admin: Arc::new(source(ADMIN_SCOPE)),
            login: Arc::new(source(LOGIN_SCOPE)),
            universe_domain: Some(universe),
            base: Base::Custom,
        }
    }
}

/// `projects/-/serviceAccounts/{email}`, as `generateAccessToken` names delegates.
fn delegate_name(email: &str) -> String {
    if email.starts_with("projects/") {
        email.to_owned()
    } else {
        format!("projects/-/serviceAccounts/{email}")
    }
}

#[cfg(feature = "adc")]
/// The `impersonated_service_account` JSON for `base` impersonating `target`. A base that
/// impersonates already becomes a longer delegation chain (the crate accepts no impersonated
/// source).
fn impersonation_json(
    base: Value,
    target: &str,
    delegates: &[String],
    endpoint: &str,
) -> Result<Value, CredentialsError> {
    let url = format!("{endpoint}/v1/projects/-/serviceAccounts/{target}:generateAccessToken");
    let (source, mut chain) =
        if base.get("type").and_then(Value::as_str) == Some("impersonated_service_account") {
            let base_url = base
                .get("service_account_impersonation_url")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let base_target = base_url
                .rsplit_once("/serviceAccounts/")
                .map(|(_, rest)| rest.trim_end_matches(":generateAccessToken"))
                .filter(|email| !email.is_empty())
                .ok_or_else(|| {
                    CredentialsError::new(
                        "impersonated_service_account credentials file has no service account in its \
                     `service_account_impersonation_url`",
                    )
                })?;
            let mut chain: Vec<String> = base
                .get("delegates")
                .and_then(Value::as_array)
                .map(|d| d.iter().filter_map(Value::as_str).map(delegate_name).collect())
                .unwrap_or_default();
            chain.push(delegate_name(base_target));
            let source = base.get("source_credentials").cloned().unwrap_or(Value::Null);
            (source, chain)
        } else {
            (base, Vec::new())
        };
    chain.extend(delegates.iter().map(|d| delegate_name(d)));
    Ok(json!({
        "type": "impersonated_service_account",
        "service_account_impersonation_url": url,
        "source_credentials": source,
        "delegates": chain,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(feature = "adc")]
    #[test]
    fn impersonating_an_impersonation_makes_a_chain() {
        let source = json!({"type": "authorized_user", "client_id": "c"});
        let first = json!({
            "type": "impersonated_service_account",
            "service_account_impersonation_url":
                "https://iam.test/v1/projects/-/serviceAccounts/a@p.iam.gserviceaccount.com:generateAccessToken",
            "source_credentials": source,
            "delegates": ["projects/-/serviceAccounts/d@p.iam.gserviceaccount.com"],
        });
        let json = impersonation_json(
            first,
            "b@p.iam.gserviceaccount.com",
            &["e@p.iam.gserviceaccount.com".to_owned()],
            "http://127.0.0.1:1",
        )
        .unwrap();
        assert_eq!(json["source_credentials"], source);
        assert_eq!(
            json["service_account_impersonation_url"],
            "http://127.0.0.1:1/v1/projects/-/serviceAccounts/b@p.iam.gserviceaccount.com:generateAccessToken"
        );
        assert_eq!(
            json["delegates"],
            json!([
                "projects/-/serviceAccounts/d@p.iam.gserviceaccount.com",
                "projects/-/serviceAccounts/a@p.iam.gserviceaccount.com",
                "projects/-/serviceAccounts/e@p.iam.gserviceaccount.com",
            ])
        );
    }

    #[test]
    fn custom_token_sources_impersonate_through_their_own_call() {
        let creds = Credentials::from_token("t")
            .impersonated("sa@p.iam.gserviceaccount.com")
            .delegates(["hop@p.iam.gserviceaccount.com"])
            .iam_endpoint("http://127.0.0.1:1/")
            .build()
            .unwrap();
        let debug = format!("{creds:?}");
        assert!(debug.contains("GenerateAccessToken"), "{debug}");
        assert!(
            debug.contains("projects/-/serviceAccounts/hop@p.iam.gserviceaccount.com"),
            "{debug}"
        );
        assert!(!debug.contains("\"t\""), "the token stays out of Debug: {debug}");
    }
}
