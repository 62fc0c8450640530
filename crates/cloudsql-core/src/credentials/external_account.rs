//! Workload Identity Federation (`external_account`) credentials files — GitHub Actions, AWS,
//! Azure, any OIDC or SAML provider — read by `google-cloud-auth`: the subject token (from a
//! file, a URL, AWS's metadata, or an executable) is exchanged at the file's `token_url` (STS)
//! and, when the file has a `service_account_impersonation_url`, traded for that service
//! account's token.

use std::sync::Arc;
use std::time::Duration;

use google_cloud_auth::credentials::external_account;
use serde_json::Value;

use super::google_auth::{Build, GoogleAuthSource};
use super::{ADMIN_SCOPE, Base, Credentials, CredentialsError, LOGIN_SCOPE, build_error, require};

const WHAT: &str = "Workload Identity Federation (external_account) credentials";

/// The lifetime of the tokens these files yield: STS's federated tokens live an hour, and so do
/// the service-account tokens `google-cloud-auth` asks impersonation for.
const LIFETIME: Duration = Duration::from_secs(3600);

/// Credentials from an `external_account` file's JSON; every token comes from
/// `google-cloud-auth`.
pub(crate) fn credentials(json: Value) -> Result<Credentials, CredentialsError> {
    for field in ["audience", "subject_token_type", "token_url"] {
        require(&json, field, "external_account", Value::is_string)?;
    }
    require(&json, "credential_source", "external_account", Value::is_object)?;
    let universe_domain = json
        .get("universe_domain")
        .and_then(Value::as_str)
        .unwrap_or(super::DEFAULT_UNIVERSE)
        .to_owned();
    let json = Arc::new(json);
    let build = |scope: &'static str| -> Build {
        let json = json.clone();
        Arc::new(move || {
            external_account::Builder::new((*json).clone())
                .with_scopes([scope])
                .build_access_token_credentials()
                .map_err(|e| build_error(WHAT, e))
        })
    };
    Ok(Credentials {
        admin: Arc::new(GoogleAuthSource::admin(WHAT, build(ADMIN_SCOPE))),
        login: Arc::new(GoogleAuthSource::login(WHAT, build(LOGIN_SCOPE), LIFETIME)),
        universe_domain: Some(universe_domain),
        base: Base::Json(json),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn required_fields_are_named() {
        let err = credentials(serde_json::json!({"type": "external_account"})).unwrap_err();
        assert!(err.to_string().contains("`audience`"), "{err}");
        let err = credentials(serde_json::json!({
            "type": "external_account",
            "audience": "a",
            "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
            "token_url": "http://127.0.0.1:9/v1/token",
            "credential_source": "ya29.not-an-object",
        }))
        .unwrap_err();
        assert!(err.to_string().contains("`credential_source`"), "{err}");
        assert!(!err.to_string().contains("ya29"), "{err}");
    }

    #[test]
    fn a_complete_file_builds_without_a_runtime() {
        let creds = credentials(serde_json::json!({
            "type": "external_account",
            "audience": "//iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/p/providers/x",
            "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
            "token_url": "http://127.0.0.1:9/v1/token",
            "credential_source": {"file": "/nonexistent"},
        }))
        .unwrap();
        assert_eq!(creds.universe_domain.as_deref(), Some("googleapis.com"));
    }
}
