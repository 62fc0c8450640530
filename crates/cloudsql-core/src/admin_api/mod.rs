//! The Cloud SQL Admin API client: `connectSettings` and `generateEphemeralCert` (v1beta4).

mod retry;
pub(crate) mod wire;

pub(crate) use retry::Attempts;

use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderValue, USER_AGENT};
use serde::de::DeserializeOwned;
use tracing::debug;

use crate::backoff::{jittered_backoff, retryable_status};
use crate::capped_body::{self, BODY_LIMIT, BodyError, ERROR_BODY_LIMIT, Prefix};
use crate::credentials::{AccessToken, TokenSource};
use crate::excerpt::{excerpt, excerpt_bytes};
use crate::{Error, InstanceConnectionName};

/// How long one Admin API request may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// Talks to one Admin API endpoint with one set of credentials, over the process's shared HTTP
/// client.
#[derive(Debug)]
pub(crate) struct AdminClient {
    http: reqwest::Client,
    base_url: String,
    user_agent: String,
    quota_project: Option<String>,
    token_source: Arc<dyn TokenSource>,
}

impl AdminClient {
    pub(crate) fn new(
        base_url: String,
        user_agent: String,
        quota_project: Option<String>,
        token_source: Arc<dyn TokenSource>,
    ) -> Result<Self, Error> {
        Ok(Self {
            http: crate::http::client()?,
            base_url: base_url.trim_end_matches('/').to_owned(),
            user_agent,
            quota_project,
            token_source,
        })
    }

    /// `GET …/connectSettings`.
    pub(crate) async fn connect_settings(
        &self,
        name: &InstanceConnectionName,
        attempts: Attempts,
    ) -> Result<wire::ConnectSettings, Error> {
        let url = self.url(
            &name.to_string(),
            &[
                "projects",
                name.project(),
                "instances",
                name.instance(),
                "connectSettings",
            ],
        )?;
        self.call(name, "connectSettings", attempts, || self.http.get(&url))
            .await
    }

    /// `POST …:generateEphemeralCert`, with the IAM login token when automatic IAM authn is on.
    pub(crate) async fn generate_ephemeral_cert(
        &self,
        name: &InstanceConnectionName,
        public_key_pem: &str,
        login_token: Option<&AccessToken>,
        attempts: Attempts,
    ) -> Result<wire::GenerateEphemeralCertResponse, Error> {
        let url = self.url(
            &name.to_string(),
            &[
                "projects",
                name.project(),
                "instances",
                &format!("{}:generateEphemeralCert", name.instance()),
            ],
        )?;
        let body = wire::GenerateEphemeralCertRequest {
            public_key: public_key_pem,
            access_token: login_token.map(AccessToken::secret),
        };
        self.call(name, "generateEphemeralCert", attempts, || {
            self.http.post(&url).json(&body)
        })
        .await
    }

    /// `GET …/locations/{region}/dns/{name.}:resolveConnectSettings` → the connection name.
    pub(crate) async fn resolve_connect_settings(&self, region: &str, fqdn: &str) -> Result<String, Error> {
        let url = self.url(
            fqdn,
            &[
                "locations",
                region,
                "dns",
                &format!("{fqdn}:resolveConnectSettings"),
            ],
        )?;
        let response: wire::ResolveConnectSettings = self
            .call_for(fqdn, "resolveConnectSettings", Attempts::Full, || {
                self.http.get(&url)
            })
            .await?;
        Ok(response.connection_name)
    }

    /// `{base}/sql/v1beta4/{segments}`, each segment percent-encoded so that no name can change
    /// the path's shape (names are validated before they get here; this is a second line).
    fn url(&self, about: &str, segments: &[&str]) -> Result<String, Error> {
        let mut url = format!("{}/sql/v1beta4", self.base_url);
        for segment in segments {
            url.push('/');
            url.push_str(
                &encode_segment(segment).ok_or_else(|| Error::InvalidInstanceName {
                    input: excerpt(about),
                    reason: "a part is empty or a `.`/`..` path segment".to_owned(),
                })?,
            );
        }
        Ok(url)
    }

    fn headers(&self, token: &AccessToken) -> Result<HeaderMap, Error> {
        let mut headers = HeaderMap::new();
        let mut auth = HeaderValue::from_str(&format!("Bearer {}", token.secret()))
            .map_err(|_| Error::config("the access token holds characters not allowed in an HTTP header"))?;
        auth.set_sensitive(true);
        headers.insert(AUTHORIZATION, auth);
        let agent = HeaderValue::from_str(&self.user_agent)
            .map_err(|_| Error::config("the user agent holds characters not allowed in an HTTP header"))?;
        headers.insert(USER_AGENT, agent.clone());
        headers.insert("x-goog-api-client", agent);
        if let Some(project) = &self.quota_project {
            let value = HeaderValue::from_str(project).map_err(|_| {
                Error::config("the quota project holds characters not allowed in an HTTP header")
            })?;
            headers.insert("x-goog-user-project", value);
        }
        Ok(headers)
    }

    /// Sends a request, retrying 5xx, 429 and connection errors with jittered backoff as far as
    /// `attempts` allows.
    async fn call<T: DeserializeOwned>(
        &self,
        name: &InstanceConnectionName,
        method: &'static str,
        attempts: Attempts,
        request: impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<T, Error> {
        self.call_for(&name.to_string(), method, attempts, request).await
    }

    /// [`call`](Self::call) for a request about `instance` (a connection or DNS name).
    async fn call_for<T: DeserializeOwned>(
        &self,
        instance: &str,
        method: &'static str,
        attempts: Attempts,
        request: impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<T, Error> {
        let instance = instance.to_owned();
        let token = self
            .token_source
            .token()
            .await
            .map_err(|source| Error::Credentials {
                instance: instance.clone(),
                source,
            })?;
        let headers = self.headers(&token)?;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let result = request()
                .timeout(CALL_TIMEOUT)
                .headers(headers.clone())
                .send()
                .await;
            let unreachable = |e: reqwest::Error| Error::AdminApiUnreachable {
                instance: instance.clone(),
                method,
                source: Arc::new(e),
            };
            let error = match result {
                Ok(response) if response.status().is_success() => {
                    match capped_body::read_limited(response, BODY_LIMIT).await {
                        Ok(body) => {
                            return serde_json::from_slice(&body).map_err(|e| Error::AdminApiResponse {
                                instance: instance.clone(),
                                method,
                                detail: format!("malformed JSON: {}", excerpt(&e.to_string())),
                            });
                        }
                        // Not a passing fault: another try would only read another huge body.
                        Err(BodyError::TooLarge) => {
                            return Err(Error::AdminApiResponseTooLarge {
                                instance: instance.clone(),
                                method,
                                limit: BODY_LIMIT as u64,
                            });
                        }
                        Err(BodyError::Transport(e)) => unreachable(e),
                    }
                }
                Ok(response) => {
                    let status = response.status().as_u16();
                    let body = capped_body::read_prefix(response, ERROR_BODY_LIMIT)
                        .await
                        .unwrap_or(Prefix {
                            bytes: Vec::new(),
                            cut_off: false,
                        });
                    let (message, api_status) = error_message(&body);
                    let error = Error::AdminApi {
                        instance: instance.clone(),
                        method,
                        status,
                        api_status,
                        message,
                    };
                    if !retryable_status(status) {
                        return Err(error);
                    }
                    error
                }
                Err(e) => unreachable(e),
            };
            if attempt >= attempts.max() {
                return Err(error);
            }
            let pause = jittered_backoff(attempt - 1);
            debug!(%instance, method, attempt, ?pause, error = %error, "retrying Admin API call");
            tokio::time::sleep(pause).await;
        }
    }
}

/// The message and API status of an error answer, bounded and printable: the API's own
/// `error.message` when the body is Google's JSON error, else an excerpt of the raw body.
fn error_message(body: &Prefix) -> (String, Option<String>) {
    let parsed = if body.cut_off {
        None
    } else {
        serde_json::from_slice::<wire::ErrorBody>(&body.bytes).ok()
    };
    match parsed {
        Some(parsed) => (
            excerpt(&parsed.error.message.unwrap_or_default()),
            parsed.error.status.map(|s| excerpt(&s)),
        ),
        None if body.cut_off => (
            format!(
                "{} [body over {ERROR_BODY_LIMIT} bytes, not read further]",
                excerpt_bytes(&body.bytes)
            ),
            None,
        ),
        None => (excerpt_bytes(&body.bytes), None),
    }
}

/// One path segment, percent-encoded except for unreserved characters and `:`; `None` for an
/// empty, `.` or `..` segment, which a URL parser would drop or resolve.
fn encode_segment(segment: &str) -> Option<String> {
    if matches!(segment, "" | "." | "..") {
        return None;
    }
    let mut out = String::with_capacity(segment.len());
    for byte in segment.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~' | b':') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_are_percent_encoded() {
        let table = [
            ("pg-1a2b", "pg-1a2b"),
            ("example.com:proj", "example.com:proj"),
            ("db:generateEphemeralCert", "db:generateEphemeralCert"),
            ("a/b", "a%2Fb"),
            ("a\\b", "a%5Cb"),
            ("x?y#z", "x%3Fy%23z"),
            ("%2e%2e", "%252e%252e"),
            ("sp ace", "sp%20ace"),
            ("nul\0", "nul%00"),
            ("é", "%C3%A9"),
            ("...", "..."),
        ];
        for (segment, encoded) in table {
            assert_eq!(encode_segment(segment).as_deref(), Some(encoded), "{segment:?}");
        }
        for segment in ["", ".", ".."] {
            assert_eq!(encode_segment(segment), None, "{segment:?}");
        }
    }

    fn client() -> AdminClient {
        let token = crate::Credentials::from_token("t").admin;
        AdminClient::new("https://sql.test/".into(), "ua".into(), None, token).unwrap()
    }

    #[test]
    fn urls_keep_every_name_inside_its_segment() {
        let client = client();
        let url = client
            .url(
                "x",
                &["projects", "../..", "instances", "victim/connectSettings?x#"],
            )
            .unwrap();
        assert_eq!(
            url,
            "https://sql.test/sql/v1beta4/projects/..%2F../instances/victim%2FconnectSettings%3Fx%23"
        );
        let parsed = reqwest::Url::parse(&url).unwrap();
        assert_eq!(parsed.path_segments().unwrap().count(), 6);
        let err = client
            .url("x", &["projects", "..", "instances", "victim"])
            .unwrap_err();
        assert!(matches!(err, Error::InvalidInstanceName { .. }), "{err:?}");
    }

    #[test]
    fn error_messages_are_bounded() {
        let html = Prefix {
            bytes: format!("<html>\n{}", "x".repeat(ERROR_BODY_LIMIT)).into_bytes()[..ERROR_BODY_LIMIT]
                .to_vec(),
            cut_off: true,
        };
        let (message, api_status) = error_message(&html);
        assert!(message.len() < 400, "{} bytes", message.len());
        assert!(message.starts_with("<html> xxx"), "{message}");
        assert!(message.contains("not read further"), "{message}");
        assert_eq!(api_status, None);

        let json = serde_json::json!({"error": {"message": "y".repeat(100_000), "status": "Z".repeat(5000)}});
        let (message, api_status) = error_message(&Prefix {
            bytes: json.to_string().into_bytes(),
            cut_off: false,
        });
        assert!(
            message.len() < 300 && message.contains("truncated, 100000 bytes"),
            "{message}"
        );
        assert!(api_status.unwrap().len() < 300);

        let plain = Prefix {
            bytes: b"upstream connect error\r\n\x1b[0m".to_vec(),
            cut_off: false,
        };
        assert_eq!(error_message(&plain).0, "upstream connect error  \\u{1b}[0m");
    }
}
