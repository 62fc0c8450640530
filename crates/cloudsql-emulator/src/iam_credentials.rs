//! The IAM Service Account Credentials API's `generateAccessToken`
//! (`POST /v1/projects/-/serviceAccounts/{email}:generateAccessToken`): service-account
//! impersonation, as `impersonated_service_account` files, Workload Identity Federation files
//! with a `service_account_impersonation_url`, and `Credentials::impersonated` use it.
//!
//! The caller's bearer token must be live and carry the `iam` or `cloud-platform` scope, and every
//! hop of the chain caller → delegates… → target must have been allowed with
//! `Emulator::allow_impersonation` (Google's Service Account Token Creator role); otherwise the
//! answer is Google's 403. The token issued speaks for the target service account, with the
//! scopes asked, for the lifetime asked (at most one hour, as without the org policy that allows
//! twelve).

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::{Path, State as AxState};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde::Deserialize;
use serde_json::json;

use crate::State;
use crate::admin_api::{api_error, unauthenticated};
use crate::unpoisoned::lock;

/// The scope `generateAccessToken` needs (cloud-platform also does).
const IAM_SCOPE: &str = "https://www.googleapis.com/auth/iam";
/// The longest lifetime granted.
const MAX_LIFETIME: Duration = Duration::from_secs(3600);

/// Who may impersonate whom, and how many calls were made.
#[derive(Debug, Default)]
pub(crate) struct Impersonation {
    allowed: Mutex<HashSet<(String, String)>>,
    requests: AtomicU64,
}

impl Impersonation {
    /// Lets `caller` (any principal) mint tokens for the service account `target`.
    pub(crate) fn allow(&self, caller: &str, target: &str) {
        lock(&self.allowed).insert((caller.to_owned(), target.to_owned()));
    }

    fn allows(&self, caller: &str, target: &str) -> bool {
        lock(&self.allowed).contains(&(caller.to_owned(), target.to_owned()))
    }

    /// Calls handled so far (granted or refused).
    pub(crate) fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }
}

pub(crate) fn router() -> Router<Arc<State>> {
    // The Admin API's `/{version}/projects/{project}/instances/…` routes hold the first segments
    // as parameters, so these do too.
    Router::new().route(
        "/{version}/projects/{project}/serviceAccounts/{action}",
        post(generate_access_token),
    )
}

#[derive(Deserialize)]
struct GenerateRequest {
    #[serde(default)]
    delegates: Vec<String>,
    #[serde(default)]
    scope: Vec<String>,
    lifetime: Option<String>,
}

/// `"3600s"` or `"3599.5s"`.
fn parse_lifetime(text: &str) -> Option<Duration> {
    let secs: f64 = text.strip_suffix('s')?.parse().ok()?;
    (secs.is_finite() && secs > 0.0).then(|| Duration::from_secs_f64(secs))
}

/// `projects/-/serviceAccounts/{email}` or a bare email.
fn delegate_email(delegate: &str) -> &str {
    delegate
        .rsplit_once("/serviceAccounts/")
        .map_or(delegate, |(_, email)| email)
}

async fn generate_access_token(
    AxState(state): AxState<Arc<State>>,
    Path((version, project, action)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let Some(target) = action.strip_suffix(":generateAccessToken") else {
        return api_error(404, "The requested URL was not found on this server.");
    };
    if version != "v1" || project != "-" {
        return api_error(404, "The requested URL was not found on this server.");
    }
    state.impersonation.requests.fetch_add(1, Ordering::Relaxed);
    let Some(grant) = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .and_then(|token| state.oauth.verify_bearer(token))
    else {
        return unauthenticated();
    };
    if !grant.allows(IAM_SCOPE) {
        return api_error(403, "Request had insufficient authentication scopes.");
    }
    let request: GenerateRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return api_error(400, &format!("Invalid JSON payload received. {e}")),
    };
    if request.scope.is_empty() {
        return api_error(400, "Scope must be non-empty.");
    }
    let lifetime = match request.lifetime.as_deref() {
        None => MAX_LIFETIME,
        Some(text) => match parse_lifetime(text) {
            Some(l) if l <= MAX_LIFETIME => l,
            Some(_) => {
                return api_error(
                    400,
                    "The lifetime must be at most 3600s (longer needs the \
                     iam.allowServiceAccountCredentialLifetimeExtension policy).",
                );
            }
            None => {
                return api_error(
                    400,
                    "Invalid value at 'lifetime' (type.googleapis.com/google.protobuf.Duration).",
                );
            }
        },
    };
    let mut caller = grant.principal.clone();
    for hop in request
        .delegates
        .iter()
        .map(|d| delegate_email(d))
        .chain([target])
    {
        if !state.impersonation.allows(&caller, hop) {
            return api_error(
                403,
                &format!(
                    "Permission 'iam.serviceAccounts.getAccessToken' denied on resource (or it may not \
                     exist): projects/-/serviceAccounts/{hop}"
                ),
            );
        }
        caller = hop.to_owned();
    }
    // Whole seconds, so the expiry reported is the one enforced.
    let expiry_secs = (SystemTime::now() + lifetime)
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let expires_at = UNIX_EPOCH + Duration::from_secs(expiry_secs);
    let lifetime = expires_at.duration_since(SystemTime::now()).unwrap_or_default();
    let (token, _) = state.oauth.issue(target, request.scope, lifetime);
    let expire_time = time::OffsetDateTime::from(expires_at)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    axum::Json(json!({"accessToken": token, "expireTime": expire_time})).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifetimes_and_delegates() {
        assert_eq!(parse_lifetime("3600s"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_lifetime("1.5s"), Some(Duration::from_millis(1500)));
        for bad in ["", "3600", "-1s", "0s", "xs", "NaNs"] {
            assert_eq!(parse_lifetime(bad), None, "{bad}");
        }
        assert_eq!(delegate_email("projects/-/serviceAccounts/a@b.c"), "a@b.c");
        assert_eq!(delegate_email("a@b.c"), "a@b.c");
    }
}
