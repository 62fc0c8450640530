//! The emulated OAuth2 side of Google: service-account keys and authorized users it issues,
//! the token endpoint (JWT-bearer and refresh-token grants), and bearer-token checks that also
//! accept self-signed service-account JWTs.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::{KeyPair as RsaGen, KeySize};
use aws_lc_rs::signature::{KeyPair as _, RSA_PKCS1_2048_8192_SHA256, UnparsedPublicKey};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::hex::hex;
use crate::unpoisoned::lock;

/// Full-access scope, accepted wherever a narrower scope is.
pub(crate) const CLOUD_PLATFORM: &str = "https://www.googleapis.com/auth/cloud-platform";
/// Admin API scope.
pub(crate) const ADMIN_SCOPE: &str = "https://www.googleapis.com/auth/sqlservice.admin";
/// IAM login scope.
pub(crate) const LOGIN_SCOPE: &str = "https://www.googleapis.com/auth/sqlservice.login";

/// Google's token endpoint, which service-account assertions name as their audience.
const GOOGLE_TOKEN_URI: &str = "https://oauth2.googleapis.com/token";
/// The older alias of the same endpoint.
const GOOGLE_TOKEN_URI_V4: &str = "https://www.googleapis.com/oauth2/v4/token";

/// Who a token speaks for.
#[derive(Debug, Clone)]
pub(crate) struct Grant {
    pub(crate) principal: String,
    pub(crate) scopes: Vec<String>,
    pub(crate) expires_at: SystemTime,
}

impl Grant {
    pub(crate) fn allows(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == scope || s == CLOUD_PLATFORM)
    }
}

struct ServiceAccount {
    email: String,
    key_id: String,
    /// PKCS#1 RSAPublicKey DER.
    public_key: Vec<u8>,
}

struct AuthorizedUser {
    email: String,
    client_id: String,
    client_secret: String,
}

/// All OAuth2 state.
pub(crate) struct OAuth {
    token_uri: String,
    token_lifetime: Mutex<Duration>,
    service_accounts: Mutex<Vec<ServiceAccount>>,
    users: Mutex<HashMap<String, AuthorizedUser>>,
    tokens: Mutex<HashMap<String, Grant>>,
}

/// A token endpoint error, as RFC 6749 §5.2 shapes it.
#[derive(Debug)]
pub(crate) struct TokenError {
    pub(crate) error: &'static str,
    pub(crate) description: String,
}

impl TokenError {
    fn grant(description: impl Into<String>) -> Self {
        Self {
            error: "invalid_grant",
            description: description.into(),
        }
    }

    pub(crate) fn body(&self) -> Value {
        json!({"error": self.error, "error_description": self.description})
    }
}

#[derive(Deserialize)]
struct JwtHeader {
    alg: String,
    kid: Option<String>,
}

#[derive(Deserialize)]
struct JwtClaims {
    iss: String,
    aud: Option<String>,
    scope: Option<String>,
    exp: u64,
}

/// Form fields of a token request.
#[derive(Debug, Deserialize)]
pub(crate) struct TokenRequest {
    grant_type: String,
    assertion: Option<String>,
    refresh_token: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
    /// google-cloud-auth's JSON refresh requests call it `scopes`.
    #[serde(alias = "scopes")]
    scope: Option<String>,
}

fn random_token(prefix: &str) -> String {
    let bytes: [u8; 32] = rand::random();
    format!("{prefix}{}", URL_SAFE_NO_PAD.encode(bytes))
}

/// The `expires_in` Google's token endpoint reports: the whole seconds left once the response is
/// on its way, 3599 for a fresh one-hour token. (Short test lifetimes are reported as they are.)
pub(crate) fn expires_in(lifetime: Duration) -> u64 {
    let secs = lifetime.as_secs();
    if secs >= 60 { secs - 1 } else { secs }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

impl OAuth {
    pub(crate) fn new(token_uri: String) -> Self {
        Self {
            token_uri,
            token_lifetime: Mutex::new(Duration::from_secs(3600)),
            service_accounts: Mutex::new(Vec::new()),
            users: Mutex::new(HashMap::new()),
            tokens: Mutex::new(HashMap::new()),
        }
    }

    pub(crate) fn token_uri(&self) -> &str {
        &self.token_uri
    }

    pub(crate) fn set_token_lifetime(&self, lifetime: Duration) {
        *lock(&self.token_lifetime) = lifetime;
    }

    /// The life of the tokens the token endpoint and STS issue.
    pub(crate) fn token_lifetime(&self) -> Duration {
        *lock(&self.token_lifetime)
    }

    /// Creates a service account and returns its JSON key file.
    pub(crate) fn create_service_account(&self, email: &str) -> anyhow::Result<Value> {
        let pair =
            RsaGen::generate(KeySize::Rsa2048).map_err(|_| anyhow::anyhow!("RSA key generation failed"))?;
        let pkcs8 = pair
            .as_der()
            .map_err(|_| anyhow::anyhow!("RSA key encoding failed"))?;
        let private_pem = pem::encode(&pem::Pem::new("PRIVATE KEY", pkcs8.as_ref().to_vec()));
        let signing = aws_lc_rs::signature::RsaKeyPair::from_pkcs8(pkcs8.as_ref())
            .map_err(|_| anyhow::anyhow!("RSA key parsing failed"))?;
        let key_id = hex(&rand::random::<[u8; 20]>());
        lock(&self.service_accounts).push(ServiceAccount {
            email: email.to_owned(),
            key_id: key_id.clone(),
            public_key: signing.public_key().as_ref().to_vec(),
        });
        let project = email
            .split_once('@')
            .and_then(|(_, d)| d.split('.').next())
            .unwrap_or("emulated-project");
        Ok(json!({
            "type": "service_account",
            "project_id": project,
            "private_key_id": key_id,
            "private_key": private_pem,
            "client_email": email,
            "client_id": format!("{}", rand::random::<u64>()),
            "auth_uri": "https://accounts.google.com/o/oauth2/auth",
            "token_uri": self.token_uri,
            "universe_domain": "googleapis.com",
        }))
    }

    /// Creates an `authorized_user` (gcloud user login) and returns its JSON file.
    pub(crate) fn create_authorized_user(&self, email: &str) -> Value {
        let refresh_token = random_token("1//emu-");
        let user = AuthorizedUser {
            email: email.to_owned(),
            client_id: format!("{}.apps.googleusercontent.com", rand::random::<u32>()),
            client_secret: random_token("emu-secret-"),
        };
        let file = json!({
            "type": "authorized_user",
            "client_id": user.client_id,
            "client_secret": user.client_secret,
            "refresh_token": refresh_token,
            "token_uri": self.token_uri,
            "universe_domain": "googleapis.com",
        });
        lock(&self.users).insert(refresh_token, user);
        file
    }

    /// Issues an access token directly.
    pub(crate) fn issue(&self, principal: &str, scopes: Vec<String>, lifetime: Duration) -> (String, Grant) {
        let token = random_token("ya29.emu-");
        let grant = Grant {
            principal: principal.to_owned(),
            scopes,
            expires_at: SystemTime::now() + lifetime,
        };
        lock(&self.tokens).insert(token.clone(), grant.clone());
        (token, grant)
    }

    /// Handles a token request.
    pub(crate) fn token_request(&self, request: &TokenRequest) -> Result<Value, TokenError> {
        let lifetime = *lock(&self.token_lifetime);
        let (principal, scopes) = match request.grant_type.as_str() {
            "urn:ietf:params:oauth:grant-type:jwt-bearer" => {
                let assertion = request
                    .assertion
                    .as_deref()
                    .ok_or_else(|| TokenError::grant("missing assertion"))?;
                let (principal, claims) = self.verify_jwt(assertion).map_err(TokenError::grant)?;
                // Google's client libraries sign for Google's canonical token URI even when they
                // post elsewhere; Google accepts that and its older alias, and so do we.
                let aud = claims.aud.as_deref().unwrap_or_default();
                if ![self.token_uri.as_str(), GOOGLE_TOKEN_URI, GOOGLE_TOKEN_URI_V4].contains(&aud) {
                    return Err(TokenError::grant(format!(
                        "assertion audience `{aud}` is not the token endpoint {}",
                        self.token_uri
                    )));
                }
                let scopes = claims.scope.unwrap_or_default();
                (principal, scopes)
            }
            "refresh_token" => {
                let users = lock(&self.users);
                let user = request
                    .refresh_token
                    .as_ref()
                    .and_then(|t| users.get(t))
                    .ok_or_else(|| TokenError::grant("Bad Request: unknown refresh token"))?;
                if request.client_id.as_deref() != Some(user.client_id.as_str())
                    || request.client_secret.as_deref() != Some(user.client_secret.as_str())
                {
                    return Err(TokenError {
                        error: "invalid_client",
                        description: "The OAuth client was not found.".into(),
                    });
                }
                let scopes = request.scope.clone().unwrap_or_else(|| CLOUD_PLATFORM.to_owned());
                (user.email.clone(), scopes)
            }
            other => {
                return Err(TokenError {
                    error: "unsupported_grant_type",
                    description: format!("Invalid grant_type: {other}"),
                });
            }
        };
        let scopes = scopes.split_whitespace().map(str::to_owned).collect();
        let (token, _) = self.issue(&principal, scopes, lifetime);
        Ok(json!({
            "access_token": token,
            "expires_in": expires_in(lifetime),
            "token_type": "Bearer",
        }))
    }

    /// Checks a bearer token: one this emulator issued, or a service-account JWT signed by a key
    /// it issued (as Google's client libraries self-sign).
    pub(crate) fn verify_bearer(&self, token: &str) -> Option<Grant> {
        if let Some(grant) = lock(&self.tokens).get(token) {
            return (grant.expires_at > SystemTime::now()).then(|| grant.clone());
        }
        if token.matches('.').count() == 2 {
            let (principal, claims) = self.verify_jwt(token).ok()?;
            let scopes = match claims.scope {
                Some(scope) => scope.split_whitespace().map(str::to_owned).collect(),
                // An audience-only self-signed JWT is good for any API.
                None => vec![CLOUD_PLATFORM.to_owned()],
            };
            return Some(Grant {
                principal,
                scopes,
                expires_at: UNIX_EPOCH + Duration::from_secs(claims.exp),
            });
        }
        None
    }

    fn verify_jwt(&self, jwt: &str) -> Result<(String, JwtClaims), String> {
        let mut parts = jwt.split('.');
        let (Some(h), Some(c), Some(s), None) = (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err("assertion is not a JWT".into());
        };
        let decode = |part: &str| {
            // Google accepts base64url with or without padding; some JWT libraries pad.
            URL_SAFE_NO_PAD
                .decode(part.trim_end_matches('='))
                .map_err(|_| "JWT is not base64url".to_owned())
        };
        let header: JwtHeader =
            serde_json::from_slice(&decode(h)?).map_err(|_| "JWT header is not JSON".to_owned())?;
        let claims: JwtClaims =
            serde_json::from_slice(&decode(c)?).map_err(|_| "JWT claims are not JSON".to_owned())?;
        if header.alg != "RS256" {
            return Err(format!("JWT algorithm {} is not RS256", header.alg));
        }
        let signature = decode(s)?;
        let accounts = lock(&self.service_accounts);
        let account = accounts
            .iter()
            .find(|a| header.kid.as_deref() == Some(a.key_id.as_str()))
            .or_else(|| accounts.iter().find(|a| a.email == claims.iss))
            .ok_or_else(|| "JWT was not signed by a known service-account key".to_owned())?;
        if account.email != claims.iss {
            return Err("JWT issuer does not own the signing key".into());
        }
        let signing_input = &jwt[..h.len() + 1 + c.len()];
        UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, &account.public_key)
            .verify(signing_input.as_bytes(), &signature)
            .map_err(|_| "Invalid JWT Signature.".to_owned())?;
        if claims.exp <= unix_now() {
            return Err("JWT has expired".into());
        }
        Ok((account.email.clone(), claims))
    }
}
