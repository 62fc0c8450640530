//! The Cloud SQL Admin API client: `connectSettings` and `generateEphemeralCert` (v1beta4).

mod retry;
pub(crate) mod wire;

pub(crate) use retry::Attempts;

use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderValue, USER_AGENT};
use serde::de::DeserializeOwned;
use tracing::debug;

use crate::credentials::{AccessToken, TokenSource};
use crate::{Error, InstanceConnectionName};

/// Talks to one Admin API endpoint with one set of credentials.
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
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| Error::config(format!("cannot build the Admin API HTTP client: {e}")))?;
        Ok(Self {
            http,
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
        let url = format!(
            "{}/sql/v1beta4/projects/{}/instances/{}/connectSettings",
            self.base_url,
            name.project(),
            name.instance()
        );
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
        let url = format!(
            "{}/sql/v1beta4/projects/{}/instances/{}:generateEphemeralCert",
            self.base_url,
            name.project(),
            name.instance()
        );
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
        let url = format!(
            "{}/sql/v1beta4/locations/{region}/dns/{fqdn}:resolveConnectSettings",
            self.base_url
        );
        let response: wire::ResolveConnectSettings = self
            .call_for(fqdn, "resolveConnectSettings", Attempts::Full, || {
                self.http.get(&url)
            })
            .await?;
        Ok(response.connection_name)
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
            let result = request().headers(headers.clone()).send().await;
            let error = match result {
                Ok(response) if response.status().is_success() => {
                    let body = response.bytes().await.map_err(|e| Error::AdminApiUnreachable {
                        instance: instance.clone(),
                        method,
                        source: Arc::new(e),
                    })?;
                    return serde_json::from_slice(&body).map_err(|e| Error::AdminApiResponse {
                        instance: instance.clone(),
                        method,
                        detail: format!("malformed JSON: {e}"),
                    });
                }
                Ok(response) => {
                    let status = response.status().as_u16();
                    let body = response.bytes().await.unwrap_or_default();
                    let (message, api_status) = match serde_json::from_slice::<wire::ErrorBody>(&body) {
                        Ok(parsed) => (parsed.error.message.unwrap_or_default(), parsed.error.status),
                        Err(_) => (String::from_utf8_lossy(&body).trim().to_owned(), None),
                    };
                    let error = Error::AdminApi {
                        instance: instance.clone(),
                        method,
                        status,
                        api_status,
                        message,
                    };
                    if !retry::retryable_status(status) {
                        return Err(error);
                    }
                    error
                }
                Err(e) => Error::AdminApiUnreachable {
                    instance: instance.clone(),
                    method,
                    source: Arc::new(e),
                },
            };
            if attempt >= attempts.max() {
                return Err(error);
            }
            let pause = retry::backoff(attempt - 1, 0.5 + rand::random::<f64>());
            debug!(%instance, method, attempt, ?pause, error = %error, "retrying Admin API call");
            tokio::time::sleep(pause).await;
        }
    }
}
