//! The GCE metadata server's few routes that credentials code uses, as google-auth (Python),
//! google-auth-library (Node), cloud.google.com/go/compute/metadata and our connector probe
//! them: `GET /` and `GET /computeMetadata/v1/` (is a metadata server here?), the default
//! service account's email, scopes, access token and ID token (also by the account's email),
//! the project id and number, and the universe domain.
//!
//! It also answers Azure's instance metadata identity endpoint
//! (`GET /metadata/identity/oauth2/token?resource=AUDIENCE`, header `Metadata: true`) with a
//! subject token of the emulator's identity provider, so URL-sourced Workload Identity Federation
//! files (Azure's shape) can be tested: see `Emulator::set_federated_identity`.
//!
//! As on GCE, every request under `/computeMetadata/` must carry `Metadata-Flavor: Google`
//! (403 otherwise), and every answer carries `Metadata-Flavor: Google`, which clients check
//! before believing the answer came from a metadata server. `GET /` answers without the
//! request header, as GCE's does.

use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::rsa::{KeyPair as RsaKeyPair, KeySize};
use axum::Router;
use axum::extract::{Path, Query, State as AxState};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use serde_json::json;

use crate::State;
use crate::oauth::CLOUD_PLATFORM;
use crate::unpoisoned::lock;

const V1: &str = "/computeMetadata/v1";
const ACCOUNTS: &str = "/computeMetadata/v1/instance/service-accounts";

/// What the metadata server says about the VM it pretends to be.
#[derive(Default)]
pub(crate) struct Metadata {
    service_account: Mutex<Option<String>>,
    project_id: Mutex<Option<String>>,
    /// The subject of the subject tokens the Azure-style identity endpoint hands out.
    federated_subject: Mutex<Option<String>>,
    /// Signs ID tokens; made on first use.
    id_key: OnceLock<Option<RsaKeyPair>>,
}

impl std::fmt::Debug for Metadata {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metadata")
            .field("service_account", &*lock(&self.service_account))
            .field("project_id", &*lock(&self.project_id))
            .finish_non_exhaustive()
    }
}

impl Metadata {
    pub(crate) fn set_service_account(&self, email: Option<&str>) {
        *lock(&self.service_account) = email.map(str::to_owned);
    }

    pub(crate) fn set_project_id(&self, project: Option<&str>) {
        *lock(&self.project_id) = project.map(str::to_owned);
    }

    pub(crate) fn set_federated_subject(&self, subject: Option<&str>) {
        *lock(&self.federated_subject) = subject.map(str::to_owned);
    }

    fn service_account(&self) -> Option<String> {
        lock(&self.service_account).clone()
    }

    /// The configured project, else the service account's (`…@PROJECT.iam.gserviceaccount.com`).
    pub(crate) fn project_id(&self) -> String {
        if let Some(project) = lock(&self.project_id).clone() {
            return project;
        }
        self.service_account()
            .as_deref()
            .and_then(|p| p.split_once('@'))
            .and_then(|(_, d)| d.split('.').next())
            .unwrap_or("emulated-project")
            .to_owned()
    }

    /// A stable 12-digit project number derived from the project id.
    pub(crate) fn project_number(&self) -> u64 {
        let hash = self.project_id().bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
        100_000_000_000 + hash % 900_000_000_000
    }
}

pub(crate) fn router() -> Router<Arc<State>> {
    Router::new()
        .route("/", get(root))
        .route(
            "/computeMetadata/",
            get(|h: HeaderMap| async move { text(&h, "v1/\n") }),
        )
        .route(V1, get(v1_listing))
        .route(&format!("{V1}/"), get(v1_listing))
        .route(&format!("{ACCOUNTS}/"), get(accounts))
        .route(&format!("{ACCOUNTS}/{{account}}"), get(account))
        .route(&format!("{ACCOUNTS}/{{account}}/"), get(account))
        .route(&format!("{ACCOUNTS}/{{account}}/email"), get(email))
        .route(&format!("{ACCOUNTS}/{{account}}/scopes"), get(scopes))
        .route(&format!("{ACCOUNTS}/{{account}}/aliases"), get(aliases))
        .route(&format!("{ACCOUNTS}/{{account}}/token"), get(token))
        .route(&format!("{ACCOUNTS}/{{account}}/identity"), get(identity))
        .route(&format!("{V1}/project/project-id"), get(project_id))
        .route(&format!("{V1}/project/numeric-project-id"), get(project_number))
        .route(&format!("{V1}/universe/universe-domain"), get(universe))
        .route("/computeMetadata/{*rest}", get(not_found))
        .route("/metadata/identity/oauth2/token", get(federated_identity))
}

#[derive(Deserialize)]
struct IdentityTokenQuery {
    resource: Option<String>,
}

/// Azure IMDS's managed-identity token, as an OIDC subject token of the emulator's identity
/// provider addressed to `resource`: `{"access_token", "expires_in", "token_type", "resource"}`.
/// Like Azure's, it needs `Metadata: true` (400 otherwise).
async fn federated_identity(
    AxState(state): AxState<Arc<State>>,
    headers: HeaderMap,
    Query(q): Query<IdentityTokenQuery>,
) -> Response {
    let bad = |message: &str| {
        (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({"error": "invalid_request", "error_description": message})),
        )
            .into_response()
    };
    if !headers
        .get("metadata")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("true"))
    {
        return bad("Required metadata header not specified");
    }
    let Some(resource) = q.resource.filter(|r| !r.is_empty()) else {
        return bad("Required query variable 'resource' is missing");
    };
    let Some(subject) = lock(&state.metadata.federated_subject).clone() else {
        return (
            StatusCode::NOT_FOUND,
            axum::Json(json!({
                "error": "invalid_request",
                "error_description": "Identity not found: this emulated VM has no federated identity \
                                      (Emulator::set_federated_identity).",
            })),
        )
            .into_response();
    };
    let lifetime = Duration::from_secs(3599);
    match state
        .federation
        .issue_subject_token(&resource, &subject, lifetime)
    {
        Some(token) => axum::Json(json!({
            "access_token": token,
            "expires_in": lifetime.as_secs().to_string(),
            "token_type": "Bearer",
            "resource": resource,
        }))
        .into_response(),
        None => refuse(StatusCode::INTERNAL_SERVER_ERROR, "token signing failed"),
    }
}

/// Adds `Metadata-Flavor: Google` to an answer.
fn flavored(response: impl IntoResponse) -> Response {
    ([("metadata-flavor", "Google")], response).into_response()
}

/// GCE answers plain values as `application/text`.
fn plain(body: String) -> Response {
    flavored(([("content-type", "application/text")], body))
}

fn refuse(code: StatusCode, message: &str) -> Response {
    flavored((
        code,
        [("content-type", "text/html; charset=UTF-8")],
        message.to_owned(),
    ))
}

/// GCE's 403 for a request without `Metadata-Flavor: Google`.
fn check_flavor(headers: &HeaderMap) -> Result<(), Response> {
    if headers.get("metadata-flavor").and_then(|v| v.to_str().ok()) == Some("Google") {
        Ok(())
    } else {
        Err(refuse(
            StatusCode::FORBIDDEN,
            "Your client does not have permission to get URL from this server. Missing Metadata-Flavor:Google header.",
        ))
    }
}

fn text(headers: &HeaderMap, body: &str) -> Response {
    match check_flavor(headers) {
        Ok(()) => plain(body.to_owned()),
        Err(r) => r,
    }
}

async fn root() -> Response {
    plain("computeMetadata/\n".to_owned())
}

async fn not_found(headers: HeaderMap) -> Response {
    match check_flavor(&headers) {
        Ok(()) => refuse(StatusCode::NOT_FOUND, "Not Found"),
        Err(r) => r,
    }
}

async fn v1_listing(headers: HeaderMap) -> Response {
    text(&headers, "instance/\nproject/\nuniverse/\n")
}

/// The VM's service account when `account` names it (`default` or its email), after the
/// flavor check; 404 otherwise, as on a VM without that account.
fn resolve(state: &State, headers: &HeaderMap, account: &str) -> Result<String, Response> {
    check_flavor(headers)?;
    match state.metadata.service_account() {
        Some(email) if account == "default" || account == email => Ok(email),
        Some(_) => Err(refuse(StatusCode::NOT_FOUND, "Not Found")),
        None => Err(refuse(
            StatusCode::NOT_FOUND,
            "Not Found: this emulated VM has no service account (set `[metadata] service_account` \
             in the config file, or Emulator::set_metadata_service_account).",
        )),
    }
}

async fn accounts(AxState(state): AxState<Arc<State>>, headers: HeaderMap) -> Response {
    if let Err(r) = check_flavor(&headers) {
        return r;
    }
    match state.metadata.service_account() {
        Some(email) => plain(format!("default/\n{email}/\n")),
        None => plain(String::new()),
    }
}

#[derive(Deserialize)]
struct AccountQuery {
    recursive: Option<String>,
}

/// The account's directory; with `?recursive=true` (as google-auth asks) its JSON.
async fn account(
    AxState(state): AxState<Arc<State>>,
    headers: HeaderMap,
    Path(account): Path<String>,
    Query(q): Query<AccountQuery>,
) -> Response {
    let email = match resolve(&state, &headers, &account) {
        Ok(e) => e,
        Err(r) => return r,
    };
    if q.recursive.as_deref() == Some("true") {
        flavored(axum::Json(json!({
            "aliases": ["default"],
            "email": email,
            "scopes": [CLOUD_PLATFORM],
        })))
    } else {
        plain("aliases\nemail\nidentity\nscopes\ntoken\n".to_owned())
    }
}

async fn email(
    AxState(state): AxState<Arc<State>>,
    headers: HeaderMap,
    Path(account): Path<String>,
) -> Response {
    match resolve(&state, &headers, &account) {
        Ok(email) => plain(email),
        Err(r) => r,
    }
}

async fn scopes(
    AxState(state): AxState<Arc<State>>,
    headers: HeaderMap,
    Path(account): Path<String>,
) -> Response {
    match resolve(&state, &headers, &account) {
        Ok(_) => plain(format!("{CLOUD_PLATFORM}\n")),
        Err(r) => r,
    }
}

async fn aliases(
    AxState(state): AxState<Arc<State>>,
    headers: HeaderMap,
    Path(account): Path<String>,
) -> Response {
    match resolve(&state, &headers, &account) {
        Ok(_) => plain("default\n".to_owned()),
        Err(r) => r,
    }
}

#[derive(Deserialize)]
struct TokenQuery {
    scopes: Option<String>,
}

/// `{"access_token", "expires_in", "token_type": "Bearer"}` for the scopes asked
/// (`?scopes=a,b`), else cloud-platform. Token faults apply, as to the token endpoint.
async fn token(
    AxState(state): AxState<Arc<State>>,
    headers: HeaderMap,
    Path(account): Path<String>,
    Query(q): Query<TokenQuery>,
) -> Response {
    if let Err(r) = check_flavor(&headers) {
        return r;
    }
    if let Some(response) = crate::admin_api::token_fault(&state).await {
        return flavored(response);
    }
    let principal = match resolve(&state, &headers, &account) {
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

#[derive(Deserialize)]
struct IdentityQuery {
    audience: Option<String>,
    format: Option<String>,
}

/// A Google-shaped ID token: an RS256 JWT with `iss`, `aud`, `azp`, `sub`, `iat`, `exp`, and
/// with `?format=full` also `email` and `email_verified`. It is signed by a key of the
/// emulator's own, which nothing outside publishes.
async fn identity(
    AxState(state): AxState<Arc<State>>,
    headers: HeaderMap,
    Path(account): Path<String>,
    Query(q): Query<IdentityQuery>,
) -> Response {
    let email = match resolve(&state, &headers, &account) {
        Ok(e) => e,
        Err(r) => return r,
    };
    let Some(audience) = q.audience.filter(|a| !a.is_empty()) else {
        return refuse(StatusCode::BAD_REQUEST, "non-empty audience parameter required");
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let subject = state.metadata.project_number().to_string();
    let mut claims = json!({
        "iss": "https://accounts.google.com",
        "aud": audience,
        "azp": subject,
        "sub": subject,
        "iat": now,
        "exp": now + 3600,
    });
    if q.format.as_deref() == Some("full") {
        claims["email"] = email.into();
        claims["email_verified"] = true.into();
    }
    match sign_jwt(&state.metadata, &claims) {
        Some(jwt) => plain(jwt),
        None => refuse(StatusCode::INTERNAL_SERVER_ERROR, "ID token signing failed"),
    }
}

fn sign_jwt(metadata: &Metadata, claims: &serde_json::Value) -> Option<String> {
    let key = metadata
        .id_key
        .get_or_init(|| RsaKeyPair::generate(KeySize::Rsa2048).ok())
        .as_ref()?;
    let header = json!({"alg": "RS256", "typ": "JWT", "kid": "cloudsql-emulator-metadata"});
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let mut signature = vec![0; key.public_modulus_len()];
    key.sign(
        &aws_lc_rs::signature::RSA_PKCS1_SHA256,
        &aws_lc_rs::rand::SystemRandom::new(),
        input.as_bytes(),
        &mut signature,
    )
    .ok()?;
    Some(format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature)))
}

async fn project_id(AxState(state): AxState<Arc<State>>, headers: HeaderMap) -> Response {
    text(&headers, &state.metadata.project_id())
}

async fn project_number(AxState(state): AxState<Arc<State>>, headers: HeaderMap) -> Response {
    text(&headers, &state.metadata.project_number().to_string())
}

async fn universe(headers: HeaderMap) -> Response {
    text(&headers, "googleapis.com")
}
