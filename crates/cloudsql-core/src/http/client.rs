//! Sending a request and getting the answer's head, over the process's one client.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderName, HeaderValue, PROXY_AUTHORIZATION};
use http::uri::Scheme;
use http::{HeaderMap, Method, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Incoming};
use hyper_util::client::legacy;
use hyper_util::client::proxy::matcher::Matcher;
use hyper_util::rt::TokioExecutor;
use tokio::time::Instant;

use super::connector::Connector;
use super::error::TransportError;
use crate::Error;

static CLIENT: OnceLock<Result<Client, String>> = OnceLock::new();

/// Starts building the shared client on a thread of its own, if it is not built yet, and returns
/// at once. Loading the platform's root certificates takes about 10 ms (every file of the
/// system's store read and parsed); started from `ConnectorBuilder::build`, it overlaps whatever
/// the application does next instead of blocking `build()`, and the first request, which calls
/// [`client`], waits for it only if it is not done by then.
pub(crate) fn prepare() {
    if CLIENT.get().is_some() {
        return;
    }
    // A thread that cannot start only means the first request builds the client itself.
    let _ = std::thread::Builder::new()
        .name("cloudsql-http-init".to_owned())
        .spawn(|| {
            let _ = client();
        });
}

/// The shared client, built on first use, with the proxies the environment names
/// (`HTTPS_PROXY`, `HTTP_PROXY`, `ALL_PROXY`, `NO_PROXY`, or their lowercase forms).
pub(crate) fn client() -> Result<&'static Client, Error> {
    CLIENT
        .get_or_init(|| Client::new(Matcher::from_env()))
        .as_ref()
        .map_err(|e| Error::config(format!("cannot build the HTTP client for Google's APIs: {e}")))
}

/// An HTTP/1.1 client that keeps no idle connections.
#[derive(Clone)]
pub(crate) struct Client {
    inner: legacy::Client<Connector, Full<Bytes>>,
    proxies: Arc<Matcher>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("proxies", &self.proxies)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// A client trusting the platform's roots (as browsers and curl do: rustls-platform-verifier),
    /// TLS 1.2 or 1.3, with these proxies.
    pub(crate) fn new(proxies: Matcher) -> Result<Self, String> {
        let verifier = crate::tls::platform_verifier().map_err(|e| e.to_string())?;
        let tls = rustls::ClientConfig::builder_with_provider(crate::tls::provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("no TLS version is available: {e}"))?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth();
        Ok(Self::with_tls(proxies, tls))
    }

    /// A client with this TLS configuration (tests trust their own CA this way).
    pub(crate) fn with_tls(proxies: Matcher, mut tls: rustls::ClientConfig) -> Self {
        tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        let proxies = Arc::new(proxies);
        let connector = Connector::new(Arc::new(tls), proxies.clone());
        let inner = legacy::Client::builder(TokioExecutor::new())
            // No idle connections: a pooled connection is a task on the runtime that opened it,
            // which would outlive a closed connector (and that runtime), and the calls come
            // minutes apart anyway; concurrent calls never shared one over HTTP/1.1.
            .pool_max_idle_per_host(0)
            .build(connector);
        Self { inner, proxies }
    }

    /// Sends `request`; `timeout` bounds the whole exchange, reading the answer's body included.
    pub(crate) async fn send(&self, request: Request, timeout: Duration) -> Result<Response, TransportError> {
        let deadline = Instant::now() + timeout;
        let url = shown(&request.uri);
        let mut headers = request.headers;
        if request.uri.scheme() == Some(&Scheme::HTTP)
            && let Some(proxy) = self.proxies.intercept(&request.uri)
            && let Some(auth) = proxy.basic_auth()
        {
            // A forwarding proxy reads its credentials from each request (a tunnel's CONNECT
            // carries them for `https://`).
            headers.insert(PROXY_AUTHORIZATION, auth.clone());
        }
        let mut http_request = http::Request::new(Full::new(request.body));
        *http_request.method_mut() = request.method;
        *http_request.uri_mut() = request.uri;
        *http_request.headers_mut() = headers;
        match tokio::time::timeout_at(deadline, self.inner.request(http_request)).await {
            Err(_) => Err(TransportError::TimedOut { url, after: timeout }),
            Ok(Err(source)) => Err(TransportError::Send { url, source }),
            Ok(Ok(response)) => Ok(Response {
                status: response.status(),
                body: response.into_body(),
                url,
                deadline,
                timeout,
            }),
        }
    }
}

/// A URL as errors show it: without its query.
fn shown(uri: &Uri) -> String {
    format!(
        "{}://{}{}",
        uri.scheme_str().unwrap_or("http"),
        uri.authority().map_or("", |a| a.as_str()),
        uri.path()
    )
}

/// A request: method, URL, headers and a body held whole (cheap to clone for another try).
#[derive(Clone)]
pub(crate) struct Request {
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
}

impl std::fmt::Debug for Request {
    // Headers and body can hold tokens and secrets.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Request")
            .field("method", &self.method)
            .field("url", &shown(&self.uri))
            .finish_non_exhaustive()
    }
}

impl Request {
    pub(crate) fn get(uri: Uri) -> Self {
        Self::new(Method::GET, uri)
    }

    pub(crate) fn post(uri: Uri) -> Self {
        Self::new(Method::POST, uri)
    }

    fn new(method: Method, uri: Uri) -> Self {
        Self {
            method,
            uri,
            headers: HeaderMap::new(),
            body: Bytes::new(),
        }
    }

    pub(crate) fn header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.insert(name, value);
        self
    }

    /// Adds every header of `headers`, replacing those of the same name.
    pub(crate) fn headers(mut self, headers: &HeaderMap) -> Self {
        for (name, value) in headers {
            self.headers.insert(name, value.clone());
        }
        self
    }

    /// A JSON body.
    pub(crate) fn json(mut self, body: &impl serde::Serialize) -> Result<Self, serde_json::Error> {
        self.body = serde_json::to_vec(body)?.into();
        self.headers
            .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        Ok(self)
    }

    /// An `application/x-www-form-urlencoded` body.
    pub(crate) fn form(mut self, fields: &[(&str, &str)]) -> Self {
        self.body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(fields)
            .finish()
            .into();
        self.headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/x-www-form-urlencoded"),
        );
        self
    }
}

/// An answer's status, and its body to be read (see [`super::body`]) before the request's
/// deadline.
#[derive(Debug)]
pub(crate) struct Response {
    status: StatusCode,
    body: Incoming,
    url: String,
    deadline: Instant,
    timeout: Duration,
}

impl Response {
    pub(crate) fn status(&self) -> StatusCode {
        self.status
    }

    /// The body's length when the answer declares it (`content-length`).
    pub(crate) fn content_length(&self) -> Option<u64> {
        self.body.size_hint().exact()
    }

    /// The next piece of the body; `None` at its end.
    pub(crate) async fn chunk(&mut self) -> Result<Option<Bytes>, TransportError> {
        loop {
            let frame = match tokio::time::timeout_at(self.deadline, self.body.frame()).await {
                Err(_) => {
                    return Err(TransportError::TimedOut {
                        url: self.url.clone(),
                        after: self.timeout,
                    });
                }
                Ok(None) => return Ok(None),
                Ok(Some(Err(source))) => {
                    return Err(TransportError::Body {
                        url: self.url.clone(),
                        source,
                    });
                }
                Ok(Some(Ok(frame))) => frame,
            };
            // Trailers carry no body bytes.
            if let Ok(data) = frame.into_data() {
                return Ok(Some(data));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::process::Command;
    use std::sync::atomic::Ordering;

    use tokio::net::TcpListener;

    use super::*;
    use crate::error_chain::ErrorChain;
    use crate::http::test_servers::{origin, proxy};

    #[test]
    fn prepare_builds_the_one_shared_client_off_the_calling_thread() {
        prepare();
        // Several callers at once, during or after the build: all get the same client.
        let clients: Vec<usize> = (0..4)
            .map(|_| std::thread::spawn(|| client().map(|c| c as *const Client as usize).unwrap()))
            .collect::<Vec<_>>()
            .into_iter()
            .map(|t| t.join().unwrap())
            .collect();
        assert!(clients.windows(2).all(|w| w[0] == w[1]), "{clients:?}");
        // Once built, preparing again starts nothing and changes nothing.
        prepare();
        assert_eq!(client().unwrap() as *const Client as usize, clients[0]);
    }

    /// The variable that makes [`child_finds_no_usable_trust_store`] do its work.
    const NO_ROOTS_CHILD: &str = "CLOUDSQL_HTTP_TEST_NO_ROOTS_CHILD";

    #[test]
    fn an_unusable_trust_store_fails_the_first_call_saying_so_not_build() {
        // The system's roots come from these variables when they are set (rustls-native-certs):
        // an empty directory and a missing file leave none.
        let empty = tempfile::tempdir().unwrap();
        let mut command = test_child("child_finds_no_usable_trust_store");
        command
            .env(NO_ROOTS_CHILD, "1")
            .env("SSL_CERT_DIR", empty.path())
            .env("SSL_CERT_FILE", empty.path().join("none.pem"));
        assert_succeeds(command);
    }

    /// This test binary, set to run only the test `name` of this module.
    fn test_child(name: &str) -> Command {
        let mut command = Command::new(std::env::current_exe().unwrap());
        command.args(["--exact", &format!("http::client::tests::{name}"), "--nocapture"]);
        command
    }

    fn assert_succeeds(mut command: Command) {
        let output = command.output().unwrap();
        assert!(
            output.status.success(),
            "child failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// Only does something as the child of the test above, in a process with no root
    /// certificates: `build()` succeeds, the connect fails with the trust store named.
    #[tokio::test]
    async fn child_finds_no_usable_trust_store() {
        if std::env::var(NO_ROOTS_CHILD).is_err() {
            return;
        }
        let connector = crate::Connector::builder()
            .credentials(crate::Credentials::from_token("t"))
            .admin_api_endpoint("https://127.0.0.1:9")
            .timeout(Duration::from_secs(20))
            .build()
            .expect("build() does not need the roots");
        let err = connector.connect("p:r:i").await.unwrap_err();
        let chain = ErrorChain(&err).to_string();
        assert!(chain.contains("trust store is unusable"), "{chain}");
        assert!(!matches!(err, Error::Timeout { .. }), "{err:?}");
    }

    /// The variable that makes [`child_sends_one_request`] do its work: the URL to get.
    const CHILD_URL: &str = "CLOUDSQL_HTTP_TEST_CHILD_URL";

    const PROXY_VARIABLES: [&str; 8] = [
        "HTTPS_PROXY",
        "https_proxy",
        "HTTP_PROXY",
        "http_proxy",
        "ALL_PROXY",
        "all_proxy",
        "NO_PROXY",
        "no_proxy",
    ];

    /// Runs [`child_sends_one_request`] in a process of its own with `env` as its only proxy
    /// settings (a test must not change its own process's environment: other tests run beside it).
    fn run_child(url: String, env: Vec<(&'static str, String)>) {
        let mut command = test_child("child_sends_one_request");
        for name in PROXY_VARIABLES {
            command.env_remove(name);
        }
        command.env_remove("REQUEST_METHOD").env(CHILD_URL, url).envs(env);
        assert_succeeds(command);
    }

    /// Only does something as the child of the environment tests below: gets `CHILD_URL` with the
    /// shared client, which reads its proxies from this process's environment.
    #[tokio::test]
    async fn child_sends_one_request() {
        let Ok(url) = std::env::var(CHILD_URL) else { return };
        let response = client()
            .unwrap()
            .send(Request::get(url.parse().unwrap()), Duration::from_secs(20))
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }

    #[tokio::test]
    async fn the_shared_client_takes_its_proxies_from_the_environment() {
        let server = origin("{}", None).await;
        let url = format!("http://127.0.0.1:{}/computeMetadata", server.port);
        for variable in ["HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"] {
            let proxy = proxy("200 OK").await;
            let env = vec![(variable, proxy.url.clone())];
            let url = url.clone();
            tokio::task::spawn_blocking(move || run_child(url, env))
                .await
                .unwrap();
            assert_eq!(proxy.heads().len(), 1, "{variable}: {:?}", proxy.heads());
        }
        // NO_PROXY (or no_proxy) sends the host's requests around the proxy.
        for no_proxy in ["NO_PROXY", "no_proxy"] {
            let proxy = proxy("200 OK").await;
            let before = server.hits.load(Ordering::SeqCst);
            let env = vec![
                ("HTTP_PROXY", proxy.url.clone()),
                (no_proxy, "metadata.test,127.0.0.1".to_owned()),
            ];
            let url = url.clone();
            tokio::task::spawn_blocking(move || run_child(url, env))
                .await
                .unwrap();
            assert!(proxy.heads().is_empty(), "{no_proxy}: {:?}", proxy.heads());
            assert_eq!(server.hits.load(Ordering::SeqCst), before + 1);
        }
    }

    #[tokio::test]
    async fn the_timeout_covers_the_whole_answer() {
        // Sends its head, then nothing: the body never ends.
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut request = [0; 4096];
            let _ = socket.read(&mut request).await;
            let _ = socket
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n{")
                .await;
            tokio::time::sleep(Duration::from_secs(60)).await;
        });
        let client = client().unwrap();
        let url: Uri = format!("http://{addr}/").parse().unwrap();
        let mut response = client
            .send(Request::get(url), Duration::from_millis(500))
            .await
            .unwrap();
        assert_eq!(response.chunk().await.unwrap().as_deref(), Some(&b"{"[..]));
        let err = response.chunk().await.unwrap_err();
        assert!(matches!(err, TransportError::TimedOut { .. }), "{err:?}");
        assert_eq!(
            err.to_string(),
            format!("no complete answer from http://{addr}/ within 0.5 s")
        );
    }

    #[tokio::test]
    async fn an_unreachable_server_is_a_send_error_with_its_cause() {
        // A port that was just free: nothing listens there.
        let addr = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap()
            .local_addr()
            .unwrap();
        let url: Uri = format!("http://{addr}/x?secret=1").parse().unwrap();
        let err = client()
            .unwrap()
            .send(Request::get(url), Duration::from_secs(20))
            .await
            .unwrap_err();
        assert!(matches!(err, TransportError::Send { .. }), "{err:?}");
        let chain = ErrorChain(&err).to_string();
        assert!(
            chain.starts_with(&format!("could not send the request to http://{addr}/x")),
            "{chain}"
        );
        assert!(
            chain.contains(&format!("could not open a TCP connection to {addr}")),
            "{chain}"
        );
        assert!(!chain.contains("secret"), "{chain}");
    }
}
