//! The standard OAuth2 exchanges that yield an access token with a known expiry: the JWT-bearer
//! grant for service-account keys, the refresh-token grant for `authorized_user` files, and the
//! metadata server.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{RSA_PKCS1_SHA256, RsaKeyPair};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;

use super::{AccessToken, CredentialsError, TokenFuture, TokenSource};

const DEFAULT_TOKEN_URI: &str = "https://oauth2.googleapis.com/token";
const DEFAULT_UNIVERSE: &str = "googleapis.com";
const JWT_BEARER_GRANT: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

/// A parsed credentials file. Secrets stay out of `Debug`.
pub(crate) enum KeyFile {
    ServiceAccount {
        client_email: String,
        private_key_id: Option<String>,
        key: RsaKeyPair,
        token_uri: String,
        universe_domain: String,
    },
    AuthorizedUser {
        client_id: String,
        client_secret: String,
        refresh_token: String,
        token_uri: String,
        universe_domain: String,
    },
}

#[derive(Deserialize)]
struct RawKeyFile {
    #[serde(rename = "type")]
    kind: Option<String>,
    client_email: Option<String>,
    private_key_id: Option<String>,
    private_key: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
    refresh_token: Option<String>,
    token_uri: Option<String>,
    universe_domain: Option<String>,
}

impl KeyFile {
    pub(crate) fn parse(json: &[u8]) -> Result<Self, CredentialsError> {
        let raw: RawKeyFile = serde_json::from_slice(json)
            .map_err(|e| CredentialsError::with_source("credentials file is not valid JSON", e))?;
        let missing = |field: &str, kind: &str| {
            CredentialsError::new(format!("{kind} credentials file has no `{field}` field"))
        };
        let token_uri = raw.token_uri.unwrap_or_else(|| DEFAULT_TOKEN_URI.to_owned());
        let universe_domain = raw.universe_domain.unwrap_or_else(|| DEFAULT_UNIVERSE.to_owned());
        match raw.kind.as_deref() {
            Some("service_account") => {
                let kind = "service_account";
                let pem_text = raw.private_key.ok_or_else(|| missing("private_key", kind))?;
                let pem = pem::parse(pem_text.as_bytes()).map_err(|e| {
                    CredentialsError::with_source("service account `private_key` is not PEM", e)
                })?;
                let key = RsaKeyPair::from_pkcs8(pem.contents()).map_err(|_| {
                    CredentialsError::new(
                        "service account `private_key` is not an RSA PKCS#8 key; download a new JSON key",
                    )
                })?;
                Ok(KeyFile::ServiceAccount {
                    client_email: raw.client_email.ok_or_else(|| missing("client_email", kind))?,
                    private_key_id: raw.private_key_id,
                    key,
                    token_uri,
                    universe_domain,
                })
            }
            Some("authorized_user") => {
                let kind = "authorized_user";
                Ok(KeyFile::AuthorizedUser {
                    client_id: raw.client_id.ok_or_else(|| missing("client_id", kind))?,
                    client_secret: raw.client_secret.ok_or_else(|| missing("client_secret", kind))?,
                    refresh_token: raw.refresh_token.ok_or_else(|| missing("refresh_token", kind))?,
                    token_uri,
                    universe_domain,
                })
            }
            other => Err(CredentialsError::new(format!(
                "unsupported credentials type {other:?}; use a service_account or authorized_user JSON file"
            ))),
        }
    }

    pub(crate) fn universe_domain(&self) -> &str {
        match self {
            KeyFile::ServiceAccount { universe_domain, .. }
            | KeyFile::AuthorizedUser { universe_domain, .. } => universe_domain,
        }
    }

    /// A signed JWT-bearer assertion for `scope`, valid for one hour.
    fn assertion(&self, scope: &str, now: SystemTime) -> Result<String, CredentialsError> {
        let KeyFile::ServiceAccount {
            client_email,
            private_key_id,
            key,
            token_uri,
            ..
        } = self
        else {
            return Err(CredentialsError::new("only service accounts sign assertions"));
        };
        let iat = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
        let mut header = serde_json::json!({"alg": "RS256", "typ": "JWT"});
        if let Some(kid) = private_key_id {
            header["kid"] = kid.clone().into();
        }
        let claims = serde_json::json!({
            "iss": client_email,
            "scope": scope,
            "aud": token_uri,
            "iat": iat,
            "exp": iat + 3600,
        });
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let mut signature = vec![0; key.public_modulus_len()];
        key.sign(
            &RSA_PKCS1_SHA256,
            &SystemRandom::new(),
            signing_input.as_bytes(),
            &mut signature,
        )
        .map_err(|_| CredentialsError::new("could not sign the service-account assertion"))?;
        Ok(format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature)))
    }
}

impl fmt::Debug for KeyFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyFile::ServiceAccount {
                client_email,
                token_uri,
                ..
            } => f
                .debug_struct("ServiceAccount")
                .field("client_email", client_email)
                .field("token_uri", token_uri)
                .finish_non_exhaustive(),
            KeyFile::AuthorizedUser {
                client_id, token_uri, ..
            } => f
                .debug_struct("AuthorizedUser")
                .field("client_id", client_id)
                .field("token_uri", token_uri)
                .finish_non_exhaustive(),
        }
    }
}

/// The body of a successful token response.
#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    expires_in: Option<u64>,
}

/// The body of a failed token response (RFC 6749 §5.2).
#[derive(Deserialize)]
struct TokenErrorResponse {
    error: String,
    error_description: Option<String>,
}

/// Reads a token endpoint's answer.
async fn read_token_response(
    response: reqwest::Result<reqwest::Response>,
    endpoint: &str,
) -> Result<AccessToken, CredentialsError> {
    let response = response.map_err(|e| {
        CredentialsError::with_source(format!("token endpoint {endpoint} could not be reached"), e)
    })?;
    let status = response.status();
    let body = response.bytes().await.map_err(|e| {
        CredentialsError::with_source(format!("token endpoint {endpoint} broke off its answer"), e)
    })?;
    if !status.is_success() {
        let detail = serde_json::from_slice::<TokenErrorResponse>(&body)
            .map(|e| format!("{}: {}", e.error, e.error_description.unwrap_or_default()))
            .unwrap_or_else(|_| format!("HTTP {status}"));
        return Err(CredentialsError::new(format!(
            "token endpoint {endpoint} refused the request ({detail})"
        )));
    }
    let parsed: TokenResponse = serde_json::from_slice(&body).map_err(|e| {
        CredentialsError::with_source(format!("token endpoint {endpoint} sent a malformed token"), e)
    })?;
    let expires_at = parsed
        .expires_in
        .map(|secs| SystemTime::now() + Duration::from_secs(secs));
    Ok(AccessToken::new(parsed.access_token, expires_at))
}

fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap_or_default()
}

/// Tokens for one scope from a credentials file.
pub(crate) struct KeyFileSource {
    key: Arc<KeyFile>,
    scope: &'static str,
    http: reqwest::Client,
}

impl KeyFileSource {
    pub(crate) fn new(key: Arc<KeyFile>, scope: &'static str) -> Self {
        Self {
            key,
            scope,
            http: http_client(),
        }
    }
}

impl fmt::Debug for KeyFileSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyFileSource")
            .field("key", &self.key)
            .field("scope", &self.scope)
            .finish()
    }
}

impl TokenSource for KeyFileSource {
    fn token(&self) -> TokenFuture<'_> {
        Box::pin(async move {
            match &*self.key {
                KeyFile::ServiceAccount { token_uri, .. } => {
                    let assertion = self.key.assertion(self.scope, SystemTime::now())?;
                    let form = [("grant_type", JWT_BEARER_GRANT), ("assertion", &assertion)];
                    let response = self.http.post(token_uri).form(&form).send().await;
                    read_token_response(response, token_uri).await
                }
                KeyFile::AuthorizedUser {
                    client_id,
                    client_secret,
                    refresh_token,
                    token_uri,
                    ..
                } => {
                    let form = [
                        ("grant_type", "refresh_token"),
                        ("client_id", client_id),
                        ("client_secret", client_secret),
                        ("refresh_token", refresh_token),
                        ("scope", self.scope),
                    ];
                    let response = self.http.post(token_uri).form(&form).send().await;
                    read_token_response(response, token_uri).await
                }
            }
        })
    }
}

/// Tokens for one scope from the GCE metadata server (`GCE_METADATA_HOST` overrides its host).
pub(crate) struct MetadataSource {
    scope: &'static str,
    http: reqwest::Client,
}

impl MetadataSource {
    pub(crate) fn new(scope: &'static str) -> Self {
        Self {
            scope,
            http: http_client(),
        }
    }
}

impl fmt::Debug for MetadataSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MetadataSource")
            .field("scope", &self.scope)
            .finish()
    }
}

impl TokenSource for MetadataSource {
    fn token(&self) -> TokenFuture<'_> {
        Box::pin(async move {
            let host =
                std::env::var("GCE_METADATA_HOST").unwrap_or_else(|_| "metadata.google.internal".to_owned());
            let url = format!("http://{host}/computeMetadata/v1/instance/service-accounts/default/token");
            let response = self
                .http
                .get(&url)
                .query(&[("scopes", self.scope)])
                .header("Metadata-Flavor", "Google")
                .send()
                .await;
            read_token_response(response, &url).await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_unknown_types_and_missing_fields() {
        let err = KeyFile::parse(br#"{"type":"external_account"}"#).unwrap_err();
        assert!(err.to_string().contains("unsupported credentials type"));
        let err = KeyFile::parse(br#"{"type":"authorized_user","client_id":"x"}"#).unwrap_err();
        assert!(err.to_string().contains("client_secret"), "{err}");
    }

    #[test]
    fn authorized_user_debug_hides_secrets() {
        let key = KeyFile::parse(
            br#"{"type":"authorized_user","client_id":"cid","client_secret":"s3cr3t","refresh_token":"r3fr3sh"}"#,
        )
        .unwrap();
        let shown = format!("{key:?}");
        assert!(shown.contains("cid"));
        assert!(!shown.contains("s3cr3t") && !shown.contains("r3fr3sh"), "{shown}");
    }
}
