//! Loopback servers for the HTTP client's tests: an origin answering each connection with one
//! canned JSON answer (plain, or TLS with a certificate for `localhost` from a CA of its own), and
//! a proxy that opens CONNECT tunnels or forwards requests, and records every request head.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

/// A server certificate for `localhost` and a client configuration trusting its CA.
pub(crate) struct TestCa {
    pub(crate) server: Arc<rustls::ServerConfig>,
    pub(crate) client: rustls::ClientConfig,
}

pub(crate) fn localhost_ca() -> TestCa {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::default();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    let server = rustls::ServerConfig::builder_with_provider(crate::tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )
        .unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from(ca_cert.der().to_vec())).unwrap();
    let client = rustls::ClientConfig::builder_with_provider(crate::tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    TestCa {
        server: Arc::new(server),
        client,
    }
}

/// An origin server on 127.0.0.1 and how many requests it answered.
pub(crate) struct Origin {
    pub(crate) port: u16,
    pub(crate) hits: Arc<AtomicUsize>,
}

/// Answers every connection's request with HTTP 200 and `body` as JSON, over TLS when given.
pub(crate) async fn origin(body: &'static str, tls: Option<Arc<rustls::ServerConfig>>) -> Origin {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let hits = Arc::new(AtomicUsize::new(0));
    let counted = hits.clone();
    tokio::spawn(async move {
        loop {
            let Ok((socket, _)) = listener.accept().await else {
                return;
            };
            let counted = counted.clone();
            let tls = tls.clone();
            tokio::spawn(async move {
                match tls {
                    Some(config) => {
                        if let Ok(stream) = TlsAcceptor::from(config).accept(socket).await {
                            answer(stream, body, &counted).await;
                        }
                    }
                    None => answer(socket, body, &counted).await,
                }
            });
        }
    });
    Origin { port, hits }
}

async fn answer(mut stream: impl AsyncRead + AsyncWrite + Unpin, body: &str, hits: &AtomicUsize) {
    if read_head(&mut stream).await.is_none() {
        return;
    }
    hits.fetch_add(1, Ordering::SeqCst);
    let answer = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
         connection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(answer.as_bytes()).await;
    let _ = stream.shutdown().await;
}

/// A request's head (up to the blank line), and the bytes read past it.
async fn read_head(stream: &mut (impl AsyncRead + Unpin)) -> Option<(String, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut chunk = [0; 4096];
    loop {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let rest = buf.split_off(end + 4);
            return Some((String::from_utf8_lossy(&buf).into_owned(), rest));
        }
    }
}

/// A proxy on 127.0.0.1 and the request heads it received.
pub(crate) struct Proxy {
    pub(crate) url: String,
    pub(crate) heads: Arc<Mutex<Vec<String>>>,
}

impl Proxy {
    pub(crate) fn heads(&self) -> Vec<String> {
        self.heads.lock().unwrap().clone()
    }
}

/// Tunnels `CONNECT host:port` (answering with `connect_status`, such as `200 OK`; anything
/// else refuses) and forwards absolute-form requests (`GET http://host:port/…`).
pub(crate) async fn proxy(connect_status: &'static str) -> Proxy {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let heads = Arc::new(Mutex::new(Vec::new()));
    let seen = heads.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut client, _)) = listener.accept().await else {
                return;
            };
            let seen = seen.clone();
            tokio::spawn(async move {
                let Some((head, rest)) = read_head(&mut client).await else {
                    return;
                };
                seen.lock().unwrap().push(head.clone());
                let target = match head.split_whitespace().nth(1) {
                    Some(t) if head.starts_with("CONNECT ") => t.to_owned(),
                    Some(t) => match t.strip_prefix("http://").and_then(|t| t.split('/').next()) {
                        Some(authority) => authority.to_owned(),
                        None => return,
                    },
                    None => return,
                };
                let Ok(mut server) = TcpStream::connect(&target).await else {
                    return;
                };
                if head.starts_with("CONNECT ") {
                    let reply = format!("HTTP/1.1 {connect_status}\r\ncontent-length: 0\r\n\r\n");
                    let _ = client.write_all(reply.as_bytes()).await;
                    if !connect_status.starts_with("200") {
                        return;
                    }
                } else {
                    let _ = server.write_all(head.as_bytes()).await;
                }
                let _ = server.write_all(&rest).await;
                let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
            });
        }
    });
    Proxy { url, heads }
}
