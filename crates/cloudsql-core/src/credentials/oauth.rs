//! The standard OAuth2 exchanges that yield an access token with a known expiry: the JWT-bearer
//! grant for service-account keys, the refresh-token grant for `authorized_user` files, and the
//! metadata server.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::retry::retry_transient;
use super::{AccessToken, CredentialsError, TokenFuture, TokenSource};
use crate::backoff::retryable_status;
use crate::excerpt::excerpt;
use crate::http::{self, BODY_LIMIT, BodyError, ERROR_BODY_LIMIT, Request, Response, TransportError};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{RSA_PKCS1_SHA256, RsaKeyPair};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;

const DEFAULT_TOKEN_URI: &str = "https://oauth2.googleapis.com/token";
pub(super) const DEFAULT_UNIVERSE: &str = "googleapis.com";
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
        // serde_json's message may quote the input (a pasted key, a token), so only say where.
        let raw: RawKeyFile = serde_json::from_slice(json).map_err(|e| {
            CredentialsError::new(format!(
                "credentials file is not a JSON credentials object ({}); use a service_account or \
                 authorized_user JSON file",
                json_error_position(&e)
            ))
        })?;
        let missing = |field: &str, kind: &str| {
            CredentialsError::new(format!("{kind} credentials file has no `{field}` field"))
        };
        let token_uri = raw.token_uri.unwrap_or_else(|| DEFAULT_TOKEN_URI.to_owned());
        let universe_domain = raw.universe_domain.unwrap_or_else(|| DEFAULT_UNIVERSE.to_owned());
        match raw.kind.as_deref() {
            Some("service_account") => {
                let kind = "service_account";
                let pem_text = raw.private_key.ok_or_else(|| missing("private_key", kind))?;
                // The PEM parser's errors can quote the key's lines, so none is kept.
                let pem = pem::parse(pem_text.as_bytes()).map_err(|_| {
                    CredentialsError::new("service account `private_key` is not PEM; download a new JSON key")
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
            // The value is never quoted: a mangled file can hold a secret where `type` belongs.
            Some(_) => Err(CredentialsError::new(
                "unsupported credentials type (expected service_account, authorized_user, \
                 external_account or impersonated_service_account)",
            )),
            None => Err(CredentialsError::new(
                "credentials file has no `type` field (expected service_account, authorized_user, \
                 external_account or impersonated_service_account)",
            )),
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

/// Where a JSON error was, and what kind it was, without quoting the input.
pub(super) fn json_error_position(e: &serde_json::Error) -> String {
    use serde_json::error::Category;
    let kind = match e.classify() {
        Category::Io => "unreadable",
        Category::Syntax => "not valid JSON",
        Category::Data => "not the expected fields",
        Category::Eof => "cut short",
    };
    format!("{kind} at line {}, column {}", e.line(), e.column())
}

/// How long one token request may take.
const TOKEN_TIMEOUT: Duration = Duration::from_secs(30);

/// Asks a token endpoint for a token, trying again after transient failures (HTTP 5xx and 429,
/// connection errors, broken-off answers), as [`retry_transient`] says.
async fn exchange(endpoint: &str, request: Request) -> Result<AccessToken, CredentialsError> {
    let client = http::client()
        .map_err(|e| CredentialsError::with_source("no HTTP client for the token request", e))?;
    retry_transient("token request", || async {
        let sent = client.send(request.clone(), TOKEN_TIMEOUT).await;
        read_token_response(sent, endpoint).await
    })
    .await
}

/// `text` as a token endpoint URL, or an error saying what is wrong with it (not transient: a
/// credentials file's `token_uri` does not fix itself).
fn token_url(text: &str) -> Result<::http::Uri, CredentialsError> {
    http::parse_url(text).map_err(|why| {
        CredentialsError::new(format!(
            "token endpoint `{}` {why}",
            excerpt(&http::without_userinfo(text))
        ))
    })
}

/// Reads a token endpoint's answer, marking failures worth another try as transient.
async fn read_token_response(
    response: Result<Response, TransportError>,
    endpoint: &str,
) -> Result<AccessToken, CredentialsError> {
    let endpoint = excerpt(endpoint);
    let response = response.map_err(|e| {
        CredentialsError::with_source(format!("token endpoint {endpoint} could not be reached"), e)
            .transient()
    })?;
    let status = response.status();
    if !status.is_success() {
        let body = http::read_prefix(response, ERROR_BODY_LIMIT)
            .await
            .map(|prefix| prefix.bytes)
            .unwrap_or_default();
        let detail = match serde_json::from_slice::<TokenErrorResponse>(&body) {
            Ok(e) => match e.error_description {
                Some(description) => format!("{}: {}", excerpt(&e.error), excerpt(&description)),
                None => excerpt(&e.error),
            },
            Err(_) => "no OAuth2 error in the body".to_owned(),
        };
        return Err(if retryable_status(status.as_u16()) {
            CredentialsError::new(format!(
                "token endpoint {endpoint} failed with HTTP {status} ({detail})"
            ))
            .transient()
        } else {
            CredentialsError::new(format!(
                "token endpoint {endpoint} refused the request with HTTP {status} ({detail})"
            ))
        });
    }
    let body = http::read_limited(response, BODY_LIMIT)
        .await
        .map_err(|e| match e {
            BodyError::TooLarge => CredentialsError::new(format!(
                "token endpoint {endpoint} answered with a body over {BODY_LIMIT} bytes, which is not \
                 a token response; check the token_uri and any proxy in between"
            )),
            BodyError::Transport(e) => {
                CredentialsError::with_source(format!("token endpoint {endpoint} broke off its answer"), e)
                    .transient()
            }
        })?;
    // serde_json's message could quote the token, so only say where the body went wrong.
    let parsed: TokenResponse = serde_json::from_slice(&body).map_err(|e| {
        CredentialsError::new(format!(
            "token endpoint {endpoint} sent a malformed token response ({})",
            json_error_position(&e)
        ))
    })?;
    let expires_at = parsed
        .expires_in
        .map(|secs| SystemTime::now() + Duration::from_secs(secs));
    Ok(AccessToken::new(parsed.access_token, expires_at))
}

/// Tokens for one scope from a credentials file.
pub(crate) struct KeyFileSource {
    key: Arc<KeyFile>,
    scope: &'static str,
}

impl KeyFileSource {
    pub(crate) fn new(key: Arc<KeyFile>, scope: &'static str) -> Self {
        Self { key, scope }
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
                    let url = token_url(token_uri)?;
                    let assertion = self.key.assertion(self.scope, SystemTime::now())?;
                    let form = [("grant_type", JWT_BEARER_GRANT), ("assertion", &assertion)];
                    exchange(token_uri, Request::post(url).form(&form)).await
                }
                KeyFile::AuthorizedUser {
                    client_id,
                    client_secret,
                    refresh_token,
                    token_uri,
                    ..
                } => {
                    let url = token_url(token_uri)?;
                    let form = [
                        ("grant_type", "refresh_token"),
                        ("client_id", client_id),
                        ("client_secret", client_secret),
                        ("refresh_token", refresh_token),
                        ("scope", self.scope),
                    ];
                    exchange(token_uri, Request::post(url).form(&form)).await
                }
            }
        })
    }
}

/// Tokens for one scope from the GCE metadata server (`GCE_METADATA_HOST` overrides its host).
pub(crate) struct MetadataSource {
    scope: &'static str,
}

impl MetadataSource {
    pub(crate) fn new(scope: &'static str) -> Self {
        Self { scope }
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
            let query = form_urlencoded::Serializer::new(String::new())
                .append_pair("scopes", self.scope)
                .finish();
            let uri = http::parse_url(&format!("{url}?{query}")).map_err(|why| {
                CredentialsError::new(format!(
                    "metadata server URL `{}` {why}; check GCE_METADATA_HOST",
                    excerpt(&url)
                ))
            })?;
            let request = Request::get(uri).header(
                ::http::header::HeaderName::from_static("metadata-flavor"),
                ::http::HeaderValue::from_static("Google"),
            );
            exchange(&url, request).await
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;

    #[test]
    fn rejects_unknown_types_and_missing_fields() {
        let err = KeyFile::parse(br#"{"type":"gdch_service_account"}"#).unwrap_err();
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

    const SECRET: &str = "-----BEGIN PRIVATE KEY-----MIIEvQIBADANBgkqhkiG9w0BAQEFAASC";

    #[test]
    fn parse_errors_never_quote_the_file() {
        let cases = [
            format!(r#"{{"type":"{SECRET}"}}"#),
            format!(r#""{SECRET}""#),
            format!(r#"["{SECRET}"]"#),
            format!(r#"{{"type":"service_account","private_key":"{SECRET}","client_email":"a@b"}}"#),
            format!(
                r#"{{"type":"service_account","private_key":"-----BEGIN X-----\n{SECRET}\n-----END Y-----\n"}}"#
            ),
            format!(r#"{{"type":"authorized_user","client_secret":"{SECRET}"}}"#),
            format!(r#"{{"type":"authorized_user","client_secret":"{SECRET}", oops}}"#),
        ];
        for json in cases {
            let err = KeyFile::parse(json.as_bytes()).unwrap_err();
            let mut shown = format!("{err} {err:?}");
            let mut source = std::error::Error::source(&err);
            while let Some(s) = source {
                shown.push_str(&s.to_string());
                source = s.source();
            }
            assert!(!shown.contains("MIIEvQ"), "{json}: {shown}");
        }
        let err = KeyFile::parse(format!(r#"{{"type":"{SECRET}"}}"#).as_bytes()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "unsupported credentials type (expected service_account, authorized_user, \
             external_account or impersonated_service_account)"
        );
        let err = KeyFile::parse(format!(r#""{SECRET}""#).as_bytes()).unwrap_err();
        assert!(err.to_string().contains("line 1, column"), "{err}");
    }

    /// Answers each connection with the next canned response (status line and body) and counts
    /// the requests.
    async fn token_server(answers: Vec<(&'static str, String)>) -> (String, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/token", listener.local_addr().unwrap());
        let count = Arc::new(AtomicUsize::new(0));
        let seen = count.clone();
        tokio::spawn(async move {
            for (status, body) in answers {
                let (mut socket, _) = listener.accept().await.unwrap();
                seen.fetch_add(1, Ordering::SeqCst);
                let mut request = vec![0; 65536];
                let _ = socket.read(&mut request).await;
                let answer = format!(
                    "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
                     connection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = socket.write_all(answer.as_bytes()).await;
            }
        });
        (url, count)
    }

    fn ok_token() -> (&'static str, String) {
        (
            "200 OK",
            r#"{"access_token":"ya29.fresh","expires_in":3600}"#.to_owned(),
        )
    }

    async fn ask(url: &str) -> Result<AccessToken, CredentialsError> {
        let request = Request::post(token_url(url).unwrap()).form(&[("grant_type", "x")]);
        exchange(url, request).await
    }

    #[tokio::test]
    async fn transient_token_failures_are_retried() {
        let (url, count) = token_server(vec![
            ("500 Internal Server Error", "<html>oops</html>".into()),
            ("429 Too Many Requests", "{}".into()),
            ok_token(),
        ])
        .await;
        let token = ask(&url).await.unwrap();
        assert_eq!(token.secret(), "ya29.fresh");
        assert_eq!(count.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn retries_stop_after_three_tries() {
        let busy = || ("503 Service Unavailable", String::new());
        let (url, count) = token_server(vec![busy(), busy(), busy(), ok_token()]).await;
        let err = ask(&url).await.unwrap_err();
        assert!(err.is_transient());
        assert!(err.to_string().contains("HTTP 503"), "{err}");
        assert_eq!(count.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn refusals_are_not_retried_and_are_quoted_briefly() {
        let description = format!("bad grant \u{1b}[2J{}", "d".repeat(50_000));
        let body = serde_json::json!({"error": "invalid_grant", "error_description": description});
        let (url, count) = token_server(vec![("400 Bad Request", body.to_string()), ok_token()]).await;
        let err = ask(&url).await.unwrap_err();
        assert!(!err.is_transient());
        let shown = err.to_string();
        assert!(shown.contains("invalid_grant: bad grant"), "{shown}");
        assert!(shown.len() < 700 && !shown.contains('\u{1b}'), "{shown}");
        assert_eq!(count.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_malformed_token_is_not_quoted() {
        let (url, _) = token_server(vec![("200 OK", r#""ya29.leaked-token""#.into())]).await;
        let err = ask(&url).await.unwrap_err();
        assert!(!err.to_string().contains("leaked-token"), "{err}");
        assert!(!err.is_transient());
    }

    #[tokio::test]
    async fn an_oversized_token_answer_is_refused() {
        let (url, count) = token_server(vec![("200 OK", "x".repeat(BODY_LIMIT + 1)), ok_token()]).await;
        let err = ask(&url).await.unwrap_err();
        assert!(err.to_string().contains("body over 1048576 bytes"), "{err}");
        assert_eq!(count.load(Ordering::SeqCst), 1, "not retried");
    }
}
