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
use crate::excerpt::excerpt;

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
    let what = format!("{WHAT} {}", describe_source(&json));
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
        admin: Arc::new(GoogleAuthSource::admin(what.clone(), build(ADMIN_SCOPE))),
        login: Arc::new(GoogleAuthSource::login(what, build(LOGIN_SCOPE), LIFETIME)),
        universe_domain: Some(universe_domain),
        base: Base::Json(json),
    })
}

/// Where the subject token comes from, for messages: a file's path, a URL without its query
/// (which could carry a secret), AWS, or an executable.
fn describe_source(json: &Value) -> String {
    let source = &json["credential_source"];
    if let Some(file) = source.get("file").and_then(Value::as_str) {
        format!("(subject token from file {})", excerpt(file))
    } else if source.get("environment_id").is_some() {
        "(subject token from AWS)".to_owned()
    } else if let Some(url) = source.get("url").and_then(Value::as_str) {
        let url = url.split(['?', '#']).next().unwrap_or_default();
        format!("(subject token from URL {})", excerpt(url))
    } else if source.get("executable").is_some() {
        "(subject token from an executable)".to_owned()
    } else {
        "(subject token from an unknown source)".to_owned()
    }
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
    fn sources_are_described_without_secrets() {
        let describe = |source: Value| describe_source(&serde_json::json!({"credential_source": source}));
        assert_eq!(
            describe(serde_json::json!({"file": "/var/run/token"})),
            "(subject token from file /var/run/token)"
        );
        assert_eq!(
            describe(serde_json::json!({"url": "http://169.254.169.254/token?sig=s3cr3t"})),
            "(subject token from URL http://169.254.169.254/token)"
        );
        assert_eq!(
            describe(serde_json::json!({"environment_id": "aws1", "url": "http://x"})),
            "(subject token from AWS)"
        );
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
