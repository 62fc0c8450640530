//! Opens the connection for one request: straight to the server, through an HTTP CONNECT tunnel
//! when a proxy is set for `https://` (`HTTPS_PROXY`, `ALL_PROXY`), or to a forwarding proxy for
//! `http://` (`HTTP_PROXY`, `ALL_PROXY`); `NO_PROXY` lists hosts reached directly. The rules are
//! hyper-util's, the ones reqwest and curl follow. TLS runs on top for `https://`.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::Uri;
use http::uri::Scheme;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::connect::proxy::Tunnel;
use hyper_util::client::proxy::matcher::{Intercept, Matcher};
use rustls_pki_types::ServerName;
use tokio_rustls::TlsConnector;
use tower_service::Service;

use super::error::ConnectError;
use super::stream::Stream;

/// The client's connector: TCP, proxies, TLS.
#[derive(Clone)]
pub(crate) struct Connector {
    tcp: HttpConnector,
    tls: TlsConnector,
    proxies: Arc<Matcher>,
}

impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connector")
            .field("proxies", &self.proxies)
            .finish_non_exhaustive()
    }
}

impl Connector {
    pub(crate) fn new(tls: Arc<rustls::ClientConfig>, proxies: Arc<Matcher>) -> Self {
        let mut tcp = HttpConnector::new();
        // The connector is also handed `https://` URLs (the TLS is ours, on top).
        tcp.enforce_http(false);
        tcp.set_nodelay(true);
        Self {
            tcp,
            tls: TlsConnector::from(tls),
            proxies,
        }
    }

    async fn connect(mut self, dst: Uri) -> Result<Stream, ConnectError> {
        let https = dst.scheme() == Some(&Scheme::HTTPS);
        let tcp = match self.proxies.intercept(&dst) {
            None => self.tcp(&dst).await?,
            Some(proxy) => {
                let proxy_uri = proxy.uri().clone();
                if proxy_uri.scheme() != Some(&Scheme::HTTP) {
                    return Err(ConnectError::UnsupportedProxy {
                        proxy: proxy_uri.to_string(),
                    });
                }
                if !https {
                    // A forwarding proxy: the request goes to it, with the absolute URL.
                    let io = self.tcp(&proxy_uri).await?;
                    return Ok(Stream::Plain { io, to_proxy: true });
                }
                self.tunnel(&proxy, dst.clone()).await?
            }
        };
        if !https {
            return Ok(Stream::Plain {
                io: tcp,
                to_proxy: false,
            });
        }
        let host = dst.host().unwrap_or_default();
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        let name = ServerName::try_from(host.to_owned()).map_err(|_| ConnectError::ServerName {
            host: host.to_owned(),
        })?;
        let tls = self
            .tls
            .connect(name, tcp.into_inner())
            .await
            .map_err(|source| ConnectError::Tls {
                host: host.to_owned(),
                source,
            })?;
        Ok(Stream::Tls(Box::new(hyper_util::rt::TokioIo::new(tls))))
    }

    /// A TCP connection to `uri`'s host and port.
    async fn tcp(
        &mut self,
        uri: &Uri,
    ) -> Result<hyper_util::rt::TokioIo<tokio::net::TcpStream>, ConnectError> {
        self.tcp.call(uri.clone()).await.map_err(|e| ConnectError::Tcp {
            address: authority(uri),
            source: e.into(),
        })
    }

    /// A CONNECT tunnel to `dst` through `proxy`.
    async fn tunnel(
        &self,
        proxy: &Intercept,
        dst: Uri,
    ) -> Result<hyper_util::rt::TokioIo<tokio::net::TcpStream>, ConnectError> {
        let mut tunnel = Tunnel::new(proxy.uri().clone(), self.tcp.clone());
        if let Some(auth) = proxy.basic_auth() {
            tunnel = tunnel.with_auth(auth.clone());
        }
        let target = authority(&dst);
        tunnel.call(dst).await.map_err(|source| ConnectError::Tunnel {
            proxy: proxy.uri().to_string(),
            target,
            source: Box::new(source),
        })
    }
}

/// `host:port` of a URL, the port filled in from the scheme.
fn authority(uri: &Uri) -> String {
    let default = if uri.scheme() == Some(&Scheme::HTTPS) {
        443
    } else {
        80
    };
    format!(
        "{}:{}",
        uri.host().unwrap_or_default(),
        uri.port_u16().unwrap_or(default)
    )
}

impl Service<Uri> for Connector {
    type Response = Stream;
    type Error = ConnectError;
    type Future = Pin<Box<dyn Future<Output = Result<Stream, ConnectError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), ConnectError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, dst: Uri) -> Self::Future {
        Box::pin(self.clone().connect(dst))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;
    use std::time::Duration;

    use super::*;
    use crate::error_chain::ErrorChain;
    use crate::http::test_servers::{localhost_ca, origin, proxy};
    use crate::http::{Client, Request, read_limited};

    async fn get(client: &Client, url: &str) -> Result<Vec<u8>, String> {
        let response = client
            .send(Request::get(url.parse().unwrap()), Duration::from_secs(20))
            .await
            .map_err(|e| ErrorChain(&e).to_string())?;
        assert_eq!(response.status(), 200);
        read_limited(response, 1000).await.map_err(|e| format!("{e:?}"))
    }

    #[tokio::test]
    async fn https_goes_through_a_connect_tunnel_with_the_proxy_credentials() {
        let ca = localhost_ca();
        let server = origin(r#"{"ok":true}"#, Some(ca.server.clone())).await;
        let proxy = proxy("200 Connection established").await;
        let with_user = proxy.url.replace("http://", "http://user:pa%40ss@");
        let client = Client::with_tls(Matcher::builder().https(with_user).build(), ca.client);
        let body = get(&client, &format!("https://localhost:{}/x", server.port))
            .await
            .unwrap();
        assert_eq!(body, br#"{"ok":true}"#);
        let heads = proxy.heads();
        assert_eq!(heads.len(), 1, "{heads:?}");
        assert!(
            heads[0].starts_with(&format!("CONNECT localhost:{} ", server.port)),
            "{heads:?}"
        );
        // user:pa@ss, as the URL's percent-encoding says.
        assert!(heads[0].contains("dXNlcjpwYUBzcw=="), "{heads:?}");
    }

    #[tokio::test]
    async fn http_goes_to_a_forwarding_proxy_with_absolute_urls() {
        let server = origin(r#"{"ok":1}"#, None).await;
        let proxy = proxy("200 OK").await;
        let with_user = proxy.url.replace("http://", "http://user:pw@");
        let client = Client::with_tls(Matcher::builder().http(with_user).build(), localhost_ca().client);
        let url = format!("http://127.0.0.1:{}/token?scopes=a", server.port);
        assert_eq!(get(&client, &url).await.unwrap(), br#"{"ok":1}"#);
        let heads = proxy.heads();
        assert_eq!(heads.len(), 1, "{heads:?}");
        assert!(heads[0].starts_with(&format!("GET {url} HTTP/1.1")), "{heads:?}");
        assert!(
            heads[0]
                .to_ascii_lowercase()
                .contains("proxy-authorization: basic dxnlcjpwdw=="),
            "{heads:?}"
        );
    }

    #[tokio::test]
    async fn no_proxy_hosts_are_reached_directly() {
        let ca = localhost_ca();
        let server = origin("{}", Some(ca.server.clone())).await;
        let proxy = proxy("200 OK").await;
        let matcher = Matcher::builder()
            .all(proxy.url.clone())
            .no("example.com, localhost")
            .build();
        let client = Client::with_tls(matcher, ca.client);
        get(&client, &format!("https://localhost:{}/", server.port))
            .await
            .unwrap();
        assert!(proxy.heads().is_empty(), "{:?}", proxy.heads());
        assert_eq!(server.hits.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_refused_tunnel_names_the_proxy_and_why() {
        let ca = localhost_ca();
        let server = origin("{}", Some(ca.server.clone())).await;
        let proxy = proxy("407 Proxy Authentication Required").await;
        let client = Client::with_tls(Matcher::builder().https(proxy.url.clone()).build(), ca.client);
        let err = get(&client, &format!("https://localhost:{}/", server.port))
            .await
            .unwrap_err();
        assert!(
            err.contains(&format!("proxy {}/ did not open a tunnel", proxy.url)),
            "{err}"
        );
        assert!(err.contains("proxy authorization required"), "{err}");
        assert_eq!(server.hits.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn other_proxy_kinds_are_refused_with_a_hint() {
        let client = Client::with_tls(
            Matcher::builder().all("socks5://127.0.0.1:9").build(),
            localhost_ca().client,
        );
        let err = get(&client, "https://localhost:9/").await.unwrap_err();
        assert!(err.contains("is not an http:// proxy"), "{err}");
    }

    #[tokio::test]
    async fn an_untrusted_certificate_fails_the_tls_handshake() {
        let server = origin("{}", Some(localhost_ca().server)).await;
        // Another CA: the server's certificate is not trusted.
        let client = Client::with_tls(Matcher::builder().build(), localhost_ca().client);
        let err = get(&client, &format!("https://localhost:{}/", server.port))
            .await
            .unwrap_err();
        assert!(err.contains("TLS handshake with localhost failed"), "{err}");
        assert!(err.contains("invalid peer certificate"), "{err}");
        assert_eq!(server.hits.load(Ordering::SeqCst), 0);
    }
}
