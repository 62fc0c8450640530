//! Workload Identity Federation: an external OIDC identity provider (standing in for GitHub
//! Actions, Azure or any OIDC issuer) whose tokens the emulator signs, and Google's Security Token
//! Service (`POST /v1/token`, the RFC 8693 token exchange) that trades them for federated access
//! tokens.
//!
//! A subject token is accepted when the emulator's identity provider signed it, it has not
//! expired, and its `aud` is the workload identity provider named by the exchange's `audience`
//! (with or without the `https:` prefix Google's default allowed audience has). The federated
//! token speaks for `principal://iam.googleapis.com/projects/{number}/locations/global/
//! workloadIdentityPools/{pool}/subject/{sub}`, Google's identifier for a federated subject.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::rsa::{KeyPair as RsaKeyPair, KeySize};
use aws_lc_rs::signature::{KeyPair as _, RSA_PKCS1_2048_8192_SHA256, UnparsedPublicKey};
use axum::Router;
use axum::extract::rejection::FormRejection;
use axum::extract::{Form, Path, State as AxState};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::State;
use crate::oauth::{CLOUD_PLATFORM, expires_in};

/// RFC 8693's grant type.
const TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
/// The only token type STS issues.
const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";
/// Subject token types the emulated providers accept (OIDC).
const SUBJECT_TOKEN_TYPES: [&str; 2] = [
    "urn:ietf:params:oauth:token-type:jwt",
    "urn:ietf:params:oauth:token-type:id_token",
];
/// The `iss` of the emulated identity provider's tokens.
pub(crate) const ISSUER: &str = "https://idp.cloudsql-emulator.test";

/// The identity provider's key and the exchange's request count.
#[derive(Default)]
pub(crate) struct Federation {
    /// Signs subject tokens; made on first use.
    key: OnceLock<Option<RsaKeyPair>>,
    requests: AtomicU64,
}

impl std::fmt::Debug for Federation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Federation")
            .field("requests", &self.requests)
            .finish_non_exhaustive()
    }
}

/// A workload identity provider's resource name, from an STS `audience`.
struct Provider {
    project_number: String,
    pool: String,
}

impl Provider {
    /// `//iam.googleapis.com/projects/{number}/locations/global/workloadIdentityPools/{pool}/providers/{provider}`.
    fn parse(audience: &str) -> Option<Self> {
        let path = audience.strip_prefix("//iam.googleapis.com/")?;
        let parts: Vec<&str> = path.split('/').collect();
        match parts.as_slice() {
            [
                "projects",
                number,
                "locations",
                "global",
                "workloadIdentityPools",
                pool,
                "providers",
                provider,
            ] if !number.is_empty() && !pool.is_empty() && !provider.is_empty() => Some(Self {
                project_number: (*number).to_owned(),
                pool: (*pool).to_owned(),
            }),
            _ => None,
        }
    }

    fn principal(&self, subject: &str) -> String {
        format!(
            "principal://iam.googleapis.com/projects/{}/locations/global/workloadIdentityPools/{}/subject/{subject}",
            self.project_number, self.pool
        )
    }
}

/// The federated principal an exchange for `audience` yields for `subject`, if `audience` names a
/// workload identity provider.
pub(crate) fn federated_principal(audience: &str, subject: &str) -> Option<String> {
    Provider::parse(audience).map(|p| p.principal(subject))
}

#[derive(Debug, Deserialize)]
struct Claims {
    iss: String,
    sub: String,
    aud: String,
    exp: u64,
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

impl Federation {
    fn key(&self) -> Option<&RsaKeyPair> {
        self.key
            .get_or_init(|| RsaKeyPair::generate(KeySize::Rsa2048).ok())
            .as_ref()
    }

    /// Exchanges handled so far (accepted or refused).
    pub(crate) fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// An OIDC token of the emulated identity provider for `subject`, addressed to `audience`,
    /// expiring after `lifetime` (a zero lifetime gives an already expired token).
    pub(crate) fn issue_subject_token(
        &self,
        audience: &str,
        subject: &str,
        lifetime: Duration,
    ) -> Option<String> {
        let key = self.key()?;
        let now = unix_now();
        let claims = json!({
            "iss": ISSUER,
            "sub": subject,
            "aud": audience,
            "iat": now,
            "exp": now + lifetime.as_secs(),
        });
        let header = json!({"alg": "RS256", "typ": "JWT", "kid": "cloudsql-emulator-idp"});
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

    /// The claims of a subject token this provider signed; the error says which check failed and
    /// never quotes the token.
    fn verify(&self, token: &str) -> Result<Claims, &'static str> {
        let key = self.key().ok_or("the identity provider has no signing key")?;
        let mut parts = token.split('.');
        let (Some(h), Some(c), Some(s), None) = (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err("The subject token is not a JWT.");
        };
        let signature = URL_SAFE_NO_PAD
            .decode(s.trim_end_matches('='))
            .map_err(|_| "The subject token is not a JWT.")?;
        UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, key.public_key().as_ref())
            .verify(format!("{h}.{c}").as_bytes(), &signature)
            .map_err(|_| "The subject token's signature could not be verified by the identity provider.")?;
        let claims: Claims = URL_SAFE_NO_PAD
            .decode(c.trim_end_matches('='))
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .ok_or("The subject token's claims are not valid JSON.")?;
        if claims.iss != ISSUER {
            return Err("The subject token's issuer is not the provider's issuer.");
        }
        if claims.exp <= unix_now() {
            return Err("The subject token has expired.");
        }
        Ok(claims)
    }
}

/// Form fields of a token exchange.
#[derive(Debug, Deserialize)]
struct ExchangeRequest {
    grant_type: String,
    requested_token_type: Option<String>,
    subject_token: Option<String>,
    subject_token_type: Option<String>,
    audience: Option<String>,
    scope: Option<String>,
}

pub(crate) fn router() -> Router<Arc<State>> {
    // `/{version}/token` rather than `/v1/token`: the Admin API's `/{version}/projects/…` routes
    // already hold the first segment as a parameter.
    Router::new().route("/{version}/token", post(exchange))
}

/// RFC 6749 §5.2's error body, as STS sends it.
fn refuse(error: &str, description: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        axum::Json(json!({"error": error, "error_description": description})),
    )
        .into_response()
}

async fn exchange(
    AxState(state): AxState<Arc<State>>,
    Path(version): Path<String>,
    request: Result<Form<ExchangeRequest>, FormRejection>,
) -> Response {
    if version != "v1" {
        return crate::admin_api::api_error(404, "The requested URL was not found on this server.");
    }
    state.federation.requests.fetch_add(1, Ordering::Relaxed);
    let Ok(Form(request)) = request else {
        return refuse("invalid_request", "Missing or malformed form fields.");
    };
    match exchange_token(&state, &request) {
        Ok(body) => axum::Json(body).into_response(),
        Err((error, description)) => refuse(error, &description),
    }
}

fn exchange_token(state: &State, request: &ExchangeRequest) -> Result<Value, (&'static str, String)> {
    if request.grant_type != TOKEN_EXCHANGE {
        return Err((
            "unsupported_grant_type",
            format!("Invalid grant_type: expected {TOKEN_EXCHANGE}."),
        ));
    }
    if request.requested_token_type.as_deref() != Some(ACCESS_TOKEN_TYPE) {
        return Err((
            "invalid_request",
            format!("requested_token_type must be {ACCESS_TOKEN_TYPE}."),
        ));
    }
    let token_type = request.subject_token_type.as_deref().unwrap_or_default();
    if !SUBJECT_TOKEN_TYPES.contains(&token_type) {
        return Err((
            "invalid_request",
            "The subject_token_type is not supported by this provider (OIDC JWTs only).".into(),
        ));
    }
    let audience = request.audience.as_deref().unwrap_or_default();
    let provider = Provider::parse(audience).ok_or((
        "invalid_request",
        "Invalid audience: expected //iam.googleapis.com/projects/NUMBER/locations/global/\
         workloadIdentityPools/POOL/providers/PROVIDER."
            .to_owned(),
    ))?;
    let subject_token = request
        .subject_token
        .as_deref()
        .filter(|t| !t.is_empty())
        .ok_or(("invalid_request", "Missing subject_token.".to_owned()))?;
    let claims = state
        .federation
        .verify(subject_token)
        .map_err(|why| ("invalid_grant", why.to_owned()))?;
    let allowed = [audience.to_owned(), format!("https:{audience}")];
    if !allowed.contains(&claims.aud) {
        return Err((
            "invalid_grant",
            "The audience in the subject token does not match the workload identity provider.".into(),
        ));
    }
    let scopes: Vec<String> = request
        .scope
        .as_deref()
        .unwrap_or(CLOUD_PLATFORM)
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    let lifetime = state.oauth.token_lifetime();
    let (token, _) = state
        .oauth
        .issue(&provider.principal(&claims.sub), scopes, lifetime);
    Ok(json!({
        "access_token": token,
        "issued_token_type": ACCESS_TOKEN_TYPE,
        "token_type": "Bearer",
        "expires_in": expires_in(lifetime),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    const AUDIENCE: &str =
        "//iam.googleapis.com/projects/123456/locations/global/workloadIdentityPools/pool/providers/gh";

    #[test]
    fn providers_and_principals() {
        assert_eq!(
            federated_principal(AUDIENCE, "repo:o/r").as_deref(),
            Some(
                "principal://iam.googleapis.com/projects/123456/locations/global/workloadIdentityPools/pool/subject/repo:o/r"
            )
        );
        for bad in ["", "//iam.googleapis.com/projects/1", "https://example.com/x"] {
            assert!(federated_principal(bad, "s").is_none(), "{bad}");
        }
    }

    #[test]
    fn subject_tokens_are_verified() {
        let federation = Federation::default();
        let token = federation
            .issue_subject_token(AUDIENCE, "alice", Duration::from_secs(60))
            .unwrap();
        let claims = federation.verify(&token).unwrap();
        assert_eq!((claims.sub.as_str(), claims.aud.as_str()), ("alice", AUDIENCE));

        let expired = federation
            .issue_subject_token(AUDIENCE, "alice", Duration::ZERO)
            .unwrap();
        assert_eq!(
            federation.verify(&expired).err(),
            Some("The subject token has expired.")
        );

        let other = Federation::default()
            .issue_subject_token(AUDIENCE, "alice", Duration::from_secs(60))
            .unwrap();
        assert!(federation.verify(&other).unwrap_err().contains("signature"));
        assert!(federation.verify("not-a-jwt").is_err());
    }
}
