//! The Cloud SQL Admin API client: `connectSettings` and `generateEphemeralCert` (v1beta4).

mod retry;
pub(crate) mod wire;

pub(crate) use retry::Attempts;

use std::sync::Arc;
use std::time::Duration;

use ::http::header::{AUTHORIZATION, HeaderMap, HeaderValue, USER_AGENT};
use serde::de::DeserializeOwned;
use tracing::debug;

use crate::backoff::{jittered_backoff, retryable_status};
use crate::credentials::{AccessToken, TokenSource};
use crate::excerpt::{excerpt, excerpt_bytes};
use crate::http::{self, BODY_LIMIT, BaseUrl, BodyError, ERROR_BODY_LIMIT, Prefix, Request};
use crate::{Error, InstanceConnectionName};

/// How long one Admin API request may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// Talks to one Admin API endpoint with one set of credentials, over the process's shared HTTP
/// client.
#[derive(Debug)]
pub(crate) struct AdminClient {
    /// A client of its own (tests); otherwise the process's shared one, built on first use.
    http: Option<&'static http::Client>,
    base_url: BaseUrl,
    user_agent: String,
    quota_project: Option<String>,
    token_source: Arc<dyn TokenSource>,
}

impl AdminClient {
    /// Fails with [`Error::Config`] when `base_url` is not an `http(s)://host[:port][/path]` URL.
    pub(crate) fn new(
        base_url: String,
        user_agent: String,
        quota_project: Option<String>,
        token_source: Arc<dyn TokenSource>,
    ) -> Result<Self, Error> {
        let base = BaseUrl::parse(&base_url).map_err(|why| {
            Error::config(format!(
                "Admin API endpoint `{}` {why}",
                excerpt(&http::without_userinfo(&base_url))
            ))
        })?;
        Ok(Self {
            http: None,
            base_url: base,
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
        self.call(name, "connectSettings", attempts, Request::get(url))
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
        let request = Request::post(url)
            .json(&body)
            .map_err(|e| Error::AdminApiResponse {
                instance: name.to_string(),
                method: "generateEphemeralCert",
                detail: format!("the request could not be encoded: {e}"),
            })?;
        self.call(name, "generateEphemeralCert", attempts, request).await
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
            .call_for(fqdn, "resolveConnectSettings", Attempts::Full, Request::get(url))
            .await?;
        Ok(response.connection_name)
    }

    /// `{base}/sql/v1beta4/{segments}`, each segment percent-encoded so that no name can change
    /// the path's shape (names are validated before they get here; this is a second line).
    fn url(&self, about: &str, segments: &[&str]) -> Result<::http::Uri, Error> {
        let path: Vec<&str> = ["sql", "v1beta4"].iter().chain(segments).copied().collect();
        self.base_url
            .join(&path)
            .ok_or_else(|| Error::InvalidInstanceName {
                input: excerpt(about),
                reason: "a part is empty or a `.`/`..` path segment".to_owned(),
            })
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
        request: Request,
    ) -> Result<T, Error> {
        self.call_for(&name.to_string(), method, attempts, request).await
    }

    /// [`call`](Self::call) for a request about `instance` (a connection or DNS name).
    async fn call_for<T: DeserializeOwned>(
        &self,
        instance: &str,
        method: &'static str,
        attempts: Attempts,
        request: Request,
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
        let request = request.headers(&self.headers(&token)?);
        let client = match self.http {
            Some(client) => client,
            None => http::client()?,
        };
        let mut attempt = 0;
        loop {
            attempt += 1;
            let result = client.send(request.clone(), CALL_TIMEOUT).await;
            let unreachable = |e: http::TransportError| Error::AdminApiUnreachable {
                instance: instance.clone(),
                method,
                source: Arc::new(e),
            };
            let error = match result {
                Ok(response) if response.status().is_success() => {
                    match http::read_limited(response, BODY_LIMIT).await {
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
                    let body = http::read_prefix(response, ERROR_BODY_LIMIT)
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

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use hyper_util::client::proxy::matcher::Matcher;

    use super::*;
    use crate::http::test_servers::{localhost_ca, origin, proxy};

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
            url.to_string(),
            "https://sql.test/sql/v1beta4/projects/..%2F../instances/victim%2FconnectSettings%3Fx%23"
        );
        assert_eq!(url.path().split('/').skip(1).count(), 6);
        assert_eq!(url.query(), None);
        let err = client
            .url("x", &["projects", "..", "instances", "victim"])
            .unwrap_err();
        assert!(matches!(err, Error::InvalidInstanceName { .. }), "{err:?}");
    }

    /// A client of `base` whose HTTP client has these proxies and trusts the test CA.
    fn client_via(base: String, proxies: Matcher, tls: rustls::ClientConfig) -> AdminClient {
        let token = crate::Credentials::from_token("t").admin;
        let mut client = AdminClient::new(base, "ua".into(), None, token).unwrap();
        client.http = Some(Box::leak(Box::new(http::Client::with_tls(proxies, tls))));
        client
    }

    #[tokio::test]
    async fn calls_go_through_the_https_proxy_unless_no_proxy_names_the_host() {
        let ca = localhost_ca();
        let server = origin(r#"{"connectionName":"p:r:i"}"#, Some(ca.server.clone())).await;
        let proxy = proxy("200 Connection established").await;
        let base = format!("https://localhost:{}", server.port);
        let proxied = Matcher::builder().https(proxy.url.clone()).build();
        let client = client_via(base.clone(), proxied, ca.client.clone());
        let name = client
            .resolve_connect_settings("us-central1", "db.example.com.")
            .await
            .unwrap();
        assert_eq!(name, "p:r:i");
        let heads = proxy.heads();
        assert_eq!(heads.len(), 1, "{heads:?}");
        assert!(heads[0].starts_with("CONNECT localhost:"), "{heads:?}");

        let bypassed = Matcher::builder()
            .https(proxy.url.clone())
            .no("localhost")
            .build();
        let client = client_via(base, bypassed, ca.client);
        client
            .resolve_connect_settings("us-central1", "db.example.com.")
            .await
            .unwrap();
        assert_eq!(proxy.heads().len(), 1, "NO_PROXY host went through the proxy");
        assert_eq!(server.hits.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_refused_tunnel_is_admin_api_unreachable_and_says_why() {
        let ca = localhost_ca();
        let server = origin("{}", Some(ca.server.clone())).await;
        let proxy = proxy("403 Forbidden").await;
        let proxies = Matcher::builder().https(proxy.url.clone()).build();
        let client = client_via(format!("https://localhost:{}", server.port), proxies, ca.client);
        let name: InstanceConnectionName = "p:r:i".parse().unwrap();
        let err = client
            .connect_settings(&name, Attempts::Single)
            .await
            .unwrap_err();
        assert!(matches!(err, Error::AdminApiUnreachable { .. }), "{err:?}");
        let chain = crate::ErrorChain(&err).to_string();
        assert!(chain.contains("did not open a tunnel"), "{chain}");
        assert_eq!(server.hits.load(Ordering::SeqCst), 0);
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
