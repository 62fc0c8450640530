//! The Admin API over loopback HTTP: `connectSettings` and `generateEphemeralCert` (under
//! `v1beta4` and `v1`, with and without the `/sql` prefix), the OAuth2 token endpoint; the emulator's own control routes are in
//! `control_api`.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Router;
use axum::extract::{Form, Path, State as AxState};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::json;

use crate::State;
use crate::ca::ssl_cert;
use crate::counters::RequestInfo;
use crate::faults::{FaultState, TokenFault};
use crate::instance::Instance;
use crate::oauth::{ADMIN_SCOPE, Grant, LOGIN_SCOPE, TokenRequest};
use crate::oversized::{html_error, json_success};

pub(crate) fn router(state: Arc<State>) -> Router {
    Router::new()
        .route(
            "/sql/{version}/projects/{project}/instances/{instance}/connectSettings",
            get(connect_settings),
        )
        .route(
            "/sql/{version}/projects/{project}/instances/{action}",
            post(instance_action),
        )
        // The same two methods without the `/sql` prefix, as sqladmin.googleapis.com also serves
        // them (`/v1/projects/…`, `/v1beta4/projects/…`); `begin` refuses any other version.
        .route(
            "/{version}/projects/{project}/instances/{instance}/connectSettings",
            get(connect_settings),
        )
        .route(
            "/{version}/projects/{project}/instances/{action}",
            post(instance_action),
        )
        .route(
            "/sql/{version}/locations/{region}/dns/{action}",
            get(resolve_connect_settings),
        )
        .route("/token", post(token))
        .merge(crate::sts::router())
        .merge(crate::iam_credentials::router())
        .merge(crate::control_api::router())
        .merge(crate::metadata::router())
        .fallback(|| async { api_error(404, "The requested URL was not found on this server.") })
        .with_state(state)
}

fn status_name(code: u16) -> &'static str {
    match code {
        400 => "INVALID_ARGUMENT",
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        409 => "ALREADY_EXISTS",
        429 => "RESOURCE_EXHAUSTED",
        500 => "INTERNAL",
        501 => "NOT_IMPLEMENTED",
        503 => "UNAVAILABLE",
        504 => "DEADLINE_EXCEEDED",
        _ => "UNKNOWN",
    }
}

fn reason(code: u16) -> &'static str {
    match code {
        400 => "invalid",
        401 => "authError",
        403 => "notAuthorized",
        404 => "instanceDoesNotExist",
        429 => "rateLimitExceeded",
        _ => "backendError",
    }
}

/// The 403 Google answers when the Cloud SQL Admin API is not enabled in the caller's project,
/// with its `ErrorInfo` (`SERVICE_DISABLED`) and `Help` details.
pub(crate) fn service_disabled(project: &str) -> Response {
    let console = format!(
        "https://console.developers.google.com/apis/api/sqladmin.googleapis.com/overview?project={project}"
    );
    let message = format!(
        "Cloud SQL Admin API has not been used in project {project} before or it is disabled. \
         Enable it by visiting {console} then retry. If you enabled this API recently, wait a few \
         minutes for the action to propagate to our systems and retry."
    );
    let body = json!({
        "error": {
            "code": 403,
            "message": message,
            "errors": [{
                "message": message,
                "domain": "usageLimits",
                "reason": "accessNotConfigured",
                "extendedHelp": "https://console.developers.google.com",
            }],
            "status": "PERMISSION_DENIED",
            "details": [
                {
                    "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                    "reason": "SERVICE_DISABLED",
                    "domain": "googleapis.com",
                    "metadata": {
                        "service": "sqladmin.googleapis.com",
                        "consumer": format!("projects/{project}"),
                    },
                },
                {
                    "@type": "type.googleapis.com/google.rpc.Help",
                    "links": [{
                        "description": "Google developers console API activation",
                        "url": console,
                    }],
                },
            ],
        }
    });
    (StatusCode::FORBIDDEN, axum::Json(body)).into_response()
}

/// A Google-shaped error response.
pub(crate) fn api_error(code: u16, message: &str) -> Response {
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = json!({
        "error": {
            "code": code,
            "message": message,
            "errors": [{"message": message, "domain": "global", "reason": reason(code)}],
            "status": status_name(code),
        }
    });
    (status, axum::Json(body)).into_response()
}

/// The 401 Google's front end answers for a missing, invalid or expired bearer token: its error
/// body (reason `authError`, located in the `Authorization` header) and a `WWW-Authenticate`
/// challenge.
pub(crate) fn unauthenticated() -> Response {
    let message = "Request had invalid authentication credentials. Expected OAuth 2 access token, \
                   login cookie or other valid authentication credential. See \
                   https://developers.google.com/identity/sign-in/web/devconsole-project.";
    let body = json!({
        "error": {
            "code": 401,
            "message": message,
            "errors": [{
                "message": "Invalid Credentials",
                "domain": "global",
                "reason": "authError",
                "location": "Authorization",
                "locationType": "header",
            }],
            "status": "UNAUTHENTICATED",
        }
    });
    (
        StatusCode::UNAUTHORIZED,
        [(
            "www-authenticate",
            "Bearer realm=\"https://accounts.google.com/\"",
        )],
        axum::Json(body),
    )
        .into_response()
}

fn default_message(code: u16) -> &'static str {
    match code {
        401 => {
            "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential."
        }
        403 => "The client is not authorized to make this request.",
        404 => "The Cloud SQL instance does not exist.",
        429 => "Quota exceeded for quota metric 'Connect Queries' of service 'sqladmin.googleapis.com'.",
        503 => "The service is currently unavailable.",
        _ => "Internal error encountered.",
    }
}

/// Checks the bearer token for the Admin API scope.
fn authorize(state: &State, headers: &HeaderMap) -> Result<Grant, Response> {
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(unauthenticated)?;
    let grant = state.oauth.verify_bearer(token).ok_or_else(unauthenticated)?;
    if !grant.allows(ADMIN_SCOPE) {
        return Err(api_error(403, "Request had insufficient authentication scopes."));
    }
    Ok(grant)
}

/// The common path of both methods: auth, lookup, counters, faults.
async fn begin(
    state: &State,
    headers: &HeaderMap,
    version: &str,
    project: &str,
    instance: &str,
    method: &str,
) -> Result<(Arc<Instance>, FaultState), Response> {
    if version != "v1beta4" && version != "v1" {
        return Err(api_error(404, "The requested URL was not found on this server."));
    }
    let grant = authorize(state, headers)?;
    let inst = state.lookup(project, instance).ok_or_else(|| {
        let code = if state.knows_project(project) { 404 } else { 403 };
        api_error(code, default_message(code))
    })?;
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    inst.counters().record(RequestInfo {
        method: method.to_owned(),
        user_agent: header("user-agent"),
        api_client: header("x-goog-api-client"),
        quota_project: header("x-goog-user-project"),
        principal: grant.principal,
    });
    let faults = inst.faults().snapshot();
    if faults.api_disabled {
        return Err(service_disabled(project));
    }
    let delay = faults.admin_delay(method);
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    if let Some(code) = inst.faults().take_admin_status(method) {
        return Err(match faults.error_body_bytes {
            Some(len) => html_error(
                StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                len,
            ),
            None => api_error(code, default_message(code)),
        });
    }
    if faults.malformed_json {
        return Err((
            StatusCode::OK,
            [("content-type", "application/json")],
            "{\"kind\": \"sql#conn",
        )
            .into_response());
    }
    Ok((inst, faults))
}

async fn connect_settings(
    AxState(state): AxState<Arc<State>>,
    Path((version, project, instance)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Response {
    let (inst, faults) = match begin(&state, &headers, &version, &project, &instance, "connectSettings").await
    {
        Ok(v) => v,
        Err(response) => return response,
    };
    if let Some(len) = faults.success_body_bytes {
        return json_success("{\"kind\":\"sql#connectSettings\",", len);
    }
    let mut ip_addresses = Vec::new();
    if let Some(ip) = inst.public_ip() {
        ip_addresses.push(json!({"type": "PRIMARY", "ipAddress": ip.to_string()}));
    }
    if let Some(ip) = inst.private_ip() {
        ip_addresses.push(json!({"type": "PRIVATE", "ipAddress": ip.to_string()}));
    }
    // Real instances list an egress address too; clients must skip it.
    ip_addresses.push(json!({"type": "OUTGOING", "ipAddress": "127.0.0.254"}));
    let mut dns_names = Vec::new();
    if let Some(dns) = inst.dns_name() {
        dns_names
            .push(json!({"name": format!("{dns}."), "connectionType": "PUBLIC", "dnsScope": "INSTANCE"}));
    }
    if let Some(psc) = inst.psc_dns_name() {
        dns_names.push(json!({"name": format!("{psc}."), "connectionType": "PRIVATE_SERVICE_CONNECT", "dnsScope": "INSTANCE"}));
    }
    let dns_name = inst.psc_dns_name().or(inst.dns_name()).map(|d| format!("{d}."));
    let server_ca_cert = match ssl_cert(&inst.server_ca_pem(), &inst.name) {
        Ok(cert) => cert,
        Err(e) => return api_error(500, &format!("Internal error encountered: {e}")),
    };
    let mut body = json!({
        "kind": "sql#connectSettings",
        "serverCaCert": server_ca_cert,
        "ipAddresses": ip_addresses,
        "region": faults.reported_region.unwrap_or_else(|| inst.region.clone()),
        "databaseVersion": inst.database_version(),
        "backendType": "SECOND_GEN",
        "serverCaMode": inst.config.ca_mode.api_name(),
    });
    // Real connectSettings leaves `pscEnabled` out unless PSC is on.
    if inst.psc_dns_name().is_some() {
        body["pscEnabled"] = true.into();
    }
    if let Some(dns_name) = dns_name {
        body["dnsName"] = dns_name.into();
    }
    if !dns_names.is_empty() {
        body["dnsNames"] = dns_names.into();
    }
    if inst.config.mdx {
        body["mdxProtocolSupport"] = json!(["CLIENT_PROTOCOL_TYPE"]);
    }
    axum::Json(body).into_response()
}

#[derive(Deserialize)]
struct EphemeralCertRequest {
    public_key: Option<String>,
    access_token: Option<String>,
}

async fn instance_action(
    AxState(state): AxState<Arc<State>>,
    Path((version, project, action)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let Some(instance) = action.strip_suffix(":generateEphemeralCert") else {
        return api_error(404, "The requested URL was not found on this server.");
    };
    let (inst, faults) = match begin(
        &state,
        &headers,
        &version,
        &project,
        instance,
        "generateEphemeralCert",
    )
    .await
    {
        Ok(v) => v,
        Err(response) => return response,
    };
    let request: EphemeralCertRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return api_error(400, &format!("Invalid JSON payload received. {e}")),
    };
    let Some(public_key) = request.public_key.filter(|k| !k.is_empty()) else {
        return api_error(400, "Missing required field: public_key.");
    };
    let (principal, token_expiry) = match request.access_token.filter(|t| !t.is_empty()) {
        None => (None, None),
        Some(token) => match state.oauth.verify_bearer(&token) {
            Some(grant) if grant.allows(LOGIN_SCOPE) => (Some(grant.principal), Some(grant.expires_at)),
            Some(_) => {
                return api_error(
                    400,
                    "The access_token lacks the https://www.googleapis.com/auth/sqlservice.login scope.",
                );
            }
            None => return api_error(400, "Provided access_token is invalid or expired."),
        },
    };
    let (cert, _) = match inst.issue_client_cert(&public_key, principal, token_expiry) {
        Ok(issued) => issued,
        Err(e) => return api_error(400, &format!("Invalid public_key: {e}")),
    };
    let ephemeral_cert = match ssl_cert(&cert, &inst.name) {
        Ok(cert) => cert,
        Err(e) => return api_error(500, &format!("Internal error encountered: {e}")),
    };
    if let Some(len) = faults.success_body_bytes {
        return json_success("{\"ephemeralCert\":{\"kind\":\"sql#sslCert\",", len);
    }
    axum::Json(json!({"ephemeralCert": ephemeral_cert})).into_response()
}

/// The OAuth2 token endpoint. Like Google's, it takes the grant as a form or as JSON
/// (google-cloud-auth sends refresh-token grants as JSON).
async fn token(AxState(state): AxState<Arc<State>>, request: axum::extract::Request) -> Response {
    use axum::extract::FromRequest;
    if let Some(response) = token_fault(&state).await {
        return response;
    }
    let json = request
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    let parsed = if json {
        axum::Json::<TokenRequest>::from_request(request, &())
            .await
            .map(|axum::Json(r)| r)
            .ok()
    } else {
        Form::<TokenRequest>::from_request(request, &())
            .await
            .map(|Form(r)| r)
            .ok()
    };
    let Some(request) = parsed else {
        return (
            StatusCode::BAD_REQUEST,
            axum::Json(
                json!({"error": "invalid_request", "error_description": "Missing or malformed form fields."}),
            ),
        )
            .into_response();
    };
    match state.oauth.token_request(&request) {
        Ok(body) => axum::Json(body).into_response(),
        Err(e) => (StatusCode::BAD_REQUEST, axum::Json(e.body())).into_response(),
    }
}

/// Counts a token request (token endpoint or metadata server) and applies the token faults:
/// the answer to send instead of a token, if any.
pub(crate) async fn token_fault(state: &State) -> Option<Response> {
    state.token_requests.fetch_add(1, Ordering::Relaxed);
    let (delay, fault) = state.token_faults.take();
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    match fault? {
        TokenFault::Status(code) => {
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let body = json!({
                "error": "internal_failure",
                "error_description": format!("The token endpoint failed (emulated fault, HTTP {code})."),
            });
            Some((status, axum::Json(body)).into_response())
        }
        TokenFault::Malformed => Some(
            (
                StatusCode::OK,
                [("content-type", "application/json")],
                "{\"access_token\": \"ya29.",
            )
                .into_response(),
        ),
    }
}

/// `GET …/locations/{region}/dns/{name.}:resolveConnectSettings`.
async fn resolve_connect_settings(
    AxState(state): AxState<Arc<State>>,
    Path((version, region, action)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Response {
    if version != "v1beta4" && version != "v1" {
        return api_error(404, "The requested URL was not found on this server.");
    }
    let Some(dns_name) = action.strip_suffix(":resolveConnectSettings") else {
        return api_error(404, "The requested URL was not found on this server.");
    };
    if let Err(response) = authorize(&state, &headers) {
        return response;
    }
    match state.by_dns_name(dns_name) {
        Some(inst) if inst.region == region => {
            inst.counters().record(RequestInfo {
                method: "resolveConnectSettings".to_owned(),
                ..RequestInfo::default()
            });
            axum::Json(json!({
                "kind": "sql#resolveConnectSettingsResponse",
                "connectionName": inst.connection_name(),
            }))
            .into_response()
        }
        _ => api_error(
            404,
            &format!("No Cloud SQL instance has the DNS name {dns_name} in region {region}."),
        ),
    }
}
