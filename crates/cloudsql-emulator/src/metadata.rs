//! The GCE metadata server's token endpoints, so code that falls back to the metadata server
//! (Application Default Credentials on Google's compute) can be tested: point
//! `GCE_METADATA_HOST` at the emulator.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Query, State as AxState};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use serde_json::json;

use crate::State;
use crate::oauth::{CLOUD_PLATFORM, lock};

const ACCOUNT: &str = "/computeMetadata/v1/instance/service-accounts/default";

pub(crate) fn router() -> Router<Arc<State>> {
    Router::new()
        .route(&format!("{ACCOUNT}/token"), get(token))
        .route(&format!("{ACCOUNT}/email"), get(email))
        .route("/computeMetadata/v1/universe/universe-domain", get(universe))
        .route("/computeMetadata/v1/project/project-id", get(project))
}

#[derive(Deserialize)]
struct TokenQuery {
    scopes: Option<String>,
}

fn flavored(body: impl IntoResponse) -> Response {
    ([("metadata-flavor", "Google")], body).into_response()
}

/// The metadata server refuses requests without `Metadata-Flavor: Google`, and answers 404
/// when the VM has no service account.
fn principal(state: &State, headers: &HeaderMap) -> Result<String, Response> {
    if headers.get("metadata-flavor").and_then(|v| v.to_str().ok()) != Some("Google") {
        return Err((StatusCode::FORBIDDEN, "Missing Metadata-Flavor:Google header.").into_response());
    }
    lock(&state.metadata_principal)
        .clone()
        .ok_or_else(|| (StatusCode::NOT_FOUND, "no default service account").into_response())
}

async fn token(
    AxState(state): AxState<Arc<State>>,
    headers: HeaderMap,
    Query(q): Query<TokenQuery>,
) -> Response {
    if let Some(response) = crate::admin_api::token_fault(&state).await {
        return flavored(response);
    }
    let principal = match principal(&state, &headers) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let scopes = q
        .scopes
        .unwrap_or_else(|| CLOUD_PLATFORM.to_owned())
        .split([',', ' '])
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    let lifetime = Duration::from_secs(3599);
    let (token, _) = state.oauth.issue(&principal, scopes, lifetime);
    flavored(axum::Json(json!({
        "access_token": token,
        "expires_in": lifetime.as_secs(),
        "token_type": "Bearer",
    })))
}

async fn email(AxState(state): AxState<Arc<State>>, headers: HeaderMap) -> Response {
    match principal(&state, &headers) {
        Ok(p) => flavored(p),
        Err(r) => r,
    }
}

async fn universe(headers: HeaderMap) -> Response {
    if headers.get("metadata-flavor").is_none() {
        return StatusCode::FORBIDDEN.into_response();
    }
    flavored("googleapis.com")
}

async fn project(AxState(state): AxState<Arc<State>>, headers: HeaderMap) -> Response {
    match principal(&state, &headers) {
        Ok(p) => {
            let project = p
                .split_once('@')
                .and_then(|(_, d)| d.split('.').next())
                .unwrap_or("emulated-project");
            flavored(project.to_owned())
        }
        Err(r) => r,
    }
}
