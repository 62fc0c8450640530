//! The fault controls as a client other than ours sees them: client CA rotation, per-method
//! Admin API faults, oversized bodies, token endpoint faults, instance stop and start, and the
//! proxy's connection counters. Each is switched both from the library and over HTTP.
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cloudsql_emulator::{Emulator, Instance, InstanceConfig, PROXY_PORT};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::{DigitallySignedStruct, SignatureScheme};
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

const ADMIN: &str = "https://www.googleapis.com/auth/sqlservice.admin";
const PROJECT: &str = "fault-project";
const INSTANCE: &str = "echo";
const NAME: &str = "fault-project:us-central1:echo";

/// An emulator with one instance whose proxy relays to an echo server, and an Admin API token.
struct Env {
    emulator: Emulator,
    inst: Arc<Instance>,
    token: String,
    http: reqwest::Client,
}

impl Env {
    async fn new() -> Self {
        let emulator = Emulator::start().await.unwrap();
        let inst = emulator
            .add_instance(InstanceConfig::new(
                NAME,
                "SQLSERVER_2019_STANDARD",
                echo_backend().await,
            ))
            .await
            .unwrap();
        let token = emulator.issue_token(
            "faults@fault-project.iam.gserviceaccount.com",
            &[ADMIN],
            Duration::from_secs(300),
        );
        Self {
            emulator,
            inst,
            token,
            http: reqwest::Client::new(),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.emulator.admin_api_url())
    }

    /// POSTs to an emulator control route and checks it answered 204.
    async fn control(&self, path: &str, body: Option<Value>) {
        let request = self.http.post(self.url(path));
        let request = match body {
            Some(body) => request.json(&body),
            None => request,
        };
        assert_eq!(request.send().await.unwrap().status(), 204, "{path}");
    }

    async fn connect_settings(&self) -> reqwest::Response {
        self.http
            .get(self.url(&format!(
                "/sql/v1beta4/projects/{PROJECT}/instances/{INSTANCE}/connectSettings"
            )))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap()
    }

    async fn ephemeral_cert(&self, public_key_pem: &str) -> reqwest::Response {
        self.http
            .post(self.url(&format!(
                "/sql/v1beta4/projects/{PROJECT}/instances/{INSTANCE}:generateEphemeralCert"
            )))
            .bearer_auth(&self.token)
            .json(&json!({"public_key": public_key_pem}))
            .send()
            .await
            .unwrap()
    }

    /// A fresh key and a client certificate the instance issues for it now.
    async fn client_identity(&self) -> Identity {
        let key = rcgen::KeyPair::generate().unwrap();
        let response = self.ephemeral_cert(&key.public_key_pem()).await;
        assert_eq!(response.status(), 200);
        let body: Value = response.json().await.unwrap();
        let pem = body["ephemeralCert"]["cert"].as_str().unwrap();
        Identity {
            cert: CertificateDer::from_pem_slice(pem.as_bytes()).unwrap(),
            key: PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        }
    }

    fn proxy_addr(&self) -> SocketAddr {
        SocketAddr::new(IpAddr::V4(self.inst.public_ip().unwrap()), PROXY_PORT)
    }

    /// A TLS 1.3 connection to the proxy presenting `identity`.
    async fn tls(&self, identity: &Identity) -> io::Result<TlsStream<TcpStream>> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyServer(provider)))
            .with_client_auth_cert(vec![identity.cert.clone()], identity.key.clone_key())
            .unwrap();
        let tcp = TcpStream::connect(self.proxy_addr()).await?;
        let name = ServerName::IpAddress(self.proxy_addr().ip().into());
        TlsConnector::from(Arc::new(config)).connect(name, tcp).await
    }
}

struct Identity {
    cert: CertificateDer<'static>,
    key: PrivateKeyDer<'static>,
}

/// Trusts any server: these tests are about the client side of the handshake.
#[derive(Debug)]
struct AnyServer(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyServer {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A TCP echo server on loopback, standing in for the database.
async fn echo_backend() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = tcp.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    addr
}

/// Sends `ping` and reads it back through the proxy.
async fn echo<S>(stream: &mut S) -> io::Result<()>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    stream.write_all(b"ping").await?;
    stream.flush().await?;
    let mut buf = [0; 4];
    tokio::time::timeout(Duration::from_secs(5), stream.read_exact(&mut buf))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no echo"))??;
    assert_eq!(&buf, b"ping");
    Ok(())
}

#[tokio::test]
async fn client_ca_rotation_refuses_old_certificates_and_keeps_open_connections() {
    let env = Env::new().await;
    let old = env.client_identity().await;
    let mut open = env.tls(&old).await.unwrap();
    echo(&mut open).await.unwrap();
    let old_ca = env.inst.client_ca_pem();

    env.inst.rotate_client_ca().unwrap();
    assert_ne!(env.inst.client_ca_pem(), old_ca);
    echo(&mut open).await.unwrap();

    // TLS 1.3: the client's handshake ends before the server checks its certificate, so the
    // refusal arrives as an alert on the first read.
    let refused = match env.tls(&old).await {
        Err(e) => e,
        Ok(mut stream) => echo(&mut stream).await.unwrap_err(),
    };
    let message = refused.to_string();
    assert!(message.contains("alert"), "{message}");

    let new = env.client_identity().await;
    echo(&mut env.tls(&new).await.unwrap()).await.unwrap();

    // And again over HTTP: the certificate issued a moment ago is now the old one.
    env.control(&format!("/emulator/v1/instances/{NAME}/rotateClientCa"), None)
        .await;
    let mut stale = env.tls(&new).await;
    if let Ok(stream) = &mut stale {
        assert!(echo(stream).await.is_err());
    }
    echo(&mut env.tls(&env.client_identity().await).await.unwrap())
        .await
        .unwrap();
    echo(&mut open).await.unwrap();

    let counters = env.inst.counters();
    assert_eq!(counters.connection_attempts(), 5);
    assert_eq!(counters.connections(), 3);
}

#[tokio::test]
async fn per_method_status_and_delay_hit_only_that_method() {
    let env = Env::new().await;
    let key = rcgen::KeyPair::generate().unwrap().public_key_pem();

    env.control(
        &format!("/emulator/v1/instances/{NAME}/faults"),
        Some(json!({"admin_status": 503, "admin_status_method": "generateEphemeralCert"})),
    )
    .await;
    for _ in 0..2 {
        assert_eq!(env.connect_settings().await.status(), 200);
        let faulted = env.ephemeral_cert(&key).await;
        assert_eq!(faulted.status(), 503);
        let body: Value = faulted.json().await.unwrap();
        assert_eq!(body["error"]["status"], "UNAVAILABLE");
    }

    env.inst.faults().clear();
    env.inst
        .faults()
        .admin_status_for("connectSettings", 429, Some(1));
    assert_eq!(env.ephemeral_cert(&key).await.status(), 200);
    assert_eq!(env.connect_settings().await.status(), 429);
    assert_eq!(env.connect_settings().await.status(), 200, "only once");

    env.inst
        .faults()
        .admin_delay_for("connectSettings", Duration::from_millis(400));
    let started = Instant::now();
    assert_eq!(env.ephemeral_cert(&key).await.status(), 200);
    assert!(started.elapsed() < Duration::from_millis(300));
    let started = Instant::now();
    assert_eq!(env.connect_settings().await.status(), 200);
    assert!(started.elapsed() >= Duration::from_millis(400));

    let counters = env.inst.counters();
    assert_eq!(counters.calls("connectSettings"), 5, "faulted calls count too");
    assert_eq!(counters.calls("generateEphemeralCert"), 4);
}

#[tokio::test]
async fn error_body_is_an_html_page_of_the_asked_size() {
    let env = Env::new().await;
    env.control(
        &format!("/emulator/v1/instances/{NAME}/faults"),
        Some(json!({"admin_status": 403, "admin_status_times": 1, "error_body_bytes": 100_000})),
    )
    .await;
    let faulted = env.connect_settings().await;
    assert_eq!(faulted.status(), 403);
    assert!(
        faulted.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let body = faulted.bytes().await.unwrap();
    assert_eq!(body.len(), 100_000);
    assert!(body.starts_with(b"<!DOCTYPE html>"));
    assert_eq!(env.connect_settings().await.status(), 200, "only once");

    env.inst.faults().admin_status(500, Some(1));
    env.inst.faults().error_body_bytes(Some(10));
    let body = env.connect_settings().await.bytes().await.unwrap();
    assert_eq!(&body[..], b"<!DOCTYPE ");
}

/// The process's resident memory, from /proc (Linux only; `None` elsewhere).
fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[tokio::test]
async fn success_body_streams_the_asked_size_without_holding_it() {
    const SIZE: u64 = 256 * 1024 * 1024;
    let env = Env::new().await;
    env.inst.faults().success_body_bytes(Some(SIZE));
    let before = resident_bytes();
    let mut response = env.connect_settings().await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    assert_eq!(response.content_length(), None, "streamed in chunks");
    let mut received = 0u64;
    let mut first = Vec::new();
    while let Some(chunk) = response.chunk().await.unwrap() {
        if first.len() < 64 {
            first.extend_from_slice(&chunk[..chunk.len().min(64)]);
        }
        received += chunk.len() as u64;
    }
    assert_eq!(received, SIZE);
    assert!(first.starts_with(b"{\"kind\":\"sql#connectSettings\",\"padding\":\"aaaa"));
    if let (Some(before), Some(after)) = (before, resident_bytes()) {
        assert!(
            after.saturating_sub(before) < SIZE / 4,
            "the emulator grew by {} bytes",
            after - before
        );
    }

    // generateEphemeralCert over HTTP too; a certificate is still issued and counted.
    env.control(
        &format!("/emulator/v1/instances/{NAME}/faults"),
        Some(json!({"success_body_bytes": 1000})),
    )
    .await;
    let key = rcgen::KeyPair::generate().unwrap().public_key_pem();
    let body = env.ephemeral_cert(&key).await.bytes().await.unwrap();
    assert_eq!(body.len(), 1000);
    assert!(body.starts_with(b"{\"ephemeralCert\":{\"kind\":\"sql#sslCert\","));
    env.inst.faults().success_body_bytes(None);
    let body: Value = env.connect_settings().await.json().await.unwrap();
    assert_eq!(body["kind"], "sql#connectSettings");
}

#[tokio::test]
async fn token_faults_answer_then_clear() {
    let env = Env::new().await;
    let dir = std::env::temp_dir().join(format!("cloudsql-emulator-faults-{}", std::process::id()));
    let file = env
        .emulator
        .write_authorized_user_file("user@example.com", &dir)
        .unwrap();
    let user: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    let form = [
        ("grant_type", "refresh_token"),
        ("refresh_token", user["refresh_token"].as_str().unwrap()),
        ("client_id", user["client_id"].as_str().unwrap()),
        ("client_secret", user["client_secret"].as_str().unwrap()),
    ];
    let token = || async {
        env.http
            .post(env.emulator.token_uri())
            .form(&form)
            .send()
            .await
            .unwrap()
    };

    env.emulator.token_faults().status(500, Some(1));
    let faulted = token().await;
    assert_eq!(faulted.status(), 500);
    let body: Value = faulted.json().await.unwrap();
    assert_eq!(body["error"], "internal_failure");
    assert!(body["error_description"].is_string());
    let ok: Value = token().await.json().await.unwrap();
    assert!(ok["access_token"].is_string(), "{ok}");

    env.emulator.token_faults().malformed(true);
    let malformed = token().await;
    assert_eq!(malformed.status(), 200);
    assert!(malformed.json::<Value>().await.is_err());

    env.emulator.token_faults().clear();
    env.emulator.token_faults().delay(Duration::from_millis(300));
    let started = Instant::now();
    assert_eq!(token().await.status(), 200);
    assert!(started.elapsed() >= Duration::from_millis(300));
    env.emulator.token_faults().clear();

    // Over HTTP, and the metadata server obeys the same faults.
    env.emulator
        .set_metadata_service_account("vm@fault-project.iam.gserviceaccount.com");
    let metadata = || async {
        env.http
            .get(format!(
                "http://{}/computeMetadata/v1/instance/service-accounts/default/token",
                env.emulator.metadata_host()
            ))
            .header("Metadata-Flavor", "Google")
            .send()
            .await
            .unwrap()
    };
    env.control("/emulator/v1/tokenFaults", Some(json!({"status": 503})))
        .await;
    assert_eq!(metadata().await.status(), 503);
    assert_eq!(token().await.status(), 503);
    assert_eq!(metadata().await.status(), 503, "every request until cleared");
    env.control("/emulator/v1/tokenFaults", Some(json!({}))).await;
    let ok: Value = metadata().await.json().await.unwrap();
    assert!(ok["access_token"].is_string(), "{ok}");

    assert_eq!(env.emulator.token_requests(), 8);
    let counted: Value = env
        .http
        .get(env.url("/emulator/v1/tokenCounters"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(counted["tokenRequests"], 8);
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn stop_refuses_connections_and_start_serves_on_the_same_address() {
    let env = Env::new().await;
    let identity = env.client_identity().await;
    let mut open = env.tls(&identity).await.unwrap();
    echo(&mut open).await.unwrap();

    env.inst.stop();
    env.inst.stop();
    assert!(env.inst.is_stopped());
    let refused = TcpStream::connect(env.proxy_addr()).await.unwrap_err();
    assert_eq!(refused.kind(), io::ErrorKind::ConnectionRefused);
    assert!(echo(&mut open).await.is_err(), "open connections are cut");
    assert_eq!(
        env.connect_settings().await.status(),
        200,
        "the Admin API still answers"
    );

    env.inst.start();
    env.inst.start();
    assert!(!env.inst.is_stopped());
    echo(&mut env.tls(&identity).await.unwrap()).await.unwrap();

    // Over HTTP.
    env.control(&format!("/emulator/v1/instances/{NAME}/stop"), None)
        .await;
    let refused = TcpStream::connect(env.proxy_addr()).await.unwrap_err();
    assert_eq!(refused.kind(), io::ErrorKind::ConnectionRefused);
    env.control(&format!("/emulator/v1/instances/{NAME}/start"), None)
        .await;
    echo(&mut env.tls(&identity).await.unwrap()).await.unwrap();
}

#[tokio::test]
async fn start_waits_for_a_busy_address() {
    let env = Env::new().await;
    env.inst.stop();
    // Someone else holds the address for a moment.
    let squatter = std::net::TcpListener::bind(env.proxy_addr()).unwrap();
    env.inst.start();
    tokio::time::sleep(Duration::from_millis(200)).await;
    drop(squatter);
    let identity = env.client_identity().await;
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let served = match env.tls(&identity).await {
            Ok(mut stream) => echo(&mut stream).await.is_ok(),
            Err(_) => false,
        };
        if served {
            break;
        }
        assert!(Instant::now() < deadline, "the proxy never came back");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn connection_attempts_count_connections_a_fault_drops() {
    let env = Env::new().await;
    env.inst.faults().proxy_reset(true);
    for _ in 0..2 {
        let mut tcp = TcpStream::connect(env.proxy_addr()).await.unwrap();
        let mut buf = [0; 1];
        assert_eq!(tcp.read(&mut buf).await.unwrap_or(0), 0);
    }
    let counters = env.inst.counters();
    assert_eq!(counters.connection_attempts(), 2);
    assert_eq!(counters.connections(), 0);
}
