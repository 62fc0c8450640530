//! Cold start: the connector's RSA key (given with `ConnectorBuilder::rsa_key`, or one per process
//! shared by every connector without its own) and a first connect that overlaps the token fetch,
//! the key generation and both Admin API calls as far as their data dependencies allow.
//!
//! The keys a connector sends are read by a small recording proxy in front of the emulator's
//! Admin API, so the tests check what went over the wire, not the connector's own account of it.
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

mod support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::{Body, to_bytes};
use axum::extract::{Request, State};
use axum::response::Response;
use cloudsql::core::{ConnectorBuilder, Credentials, ErrorKind, RefreshStrategy, RsaKey};
use support::*;

/// Forwards every request to the emulator's Admin API and keeps the public key of each
/// `generateEphemeralCert` request.
struct RecordingProxy {
    url: String,
    keys: Arc<Mutex<Vec<String>>>,
}

#[derive(Clone)]
struct Upstream {
    base: String,
    http: reqwest::Client,
    keys: Arc<Mutex<Vec<String>>>,
}

impl RecordingProxy {
    async fn start(upstream: &str) -> Self {
        let keys = Arc::new(Mutex::new(Vec::new()));
        let state = Upstream {
            base: upstream.trim_end_matches('/').to_owned(),
            http: reqwest::Client::new(),
            keys: keys.clone(),
        };
        let app = axum::Router::new().fallback(forward).with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { url, keys }
    }

    /// The public keys sent so far, as DER, oldest first.
    fn keys(&self) -> Vec<Vec<u8>> {
        self.keys.lock().unwrap().iter().map(|k| der(k)).collect()
    }
}

async fn forward(State(up): State<Upstream>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = to_bytes(body, 1 << 20).await.unwrap();
    if parts.uri.path().ends_with(":generateEphemeralCert") {
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let key = json["public_key"].as_str().unwrap().to_owned();
        up.keys.lock().unwrap().push(key);
    }
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let mut forwarded = up
        .http
        .request(parts.method, format!("{}{path}", up.base))
        .body(body);
    for (name, value) in &parts.headers {
        if name != "host" && name != "content-length" {
            forwarded = forwarded.header(name, value);
        }
    }
    let answer = forwarded.send().await.unwrap();
    let mut response = Response::builder().status(answer.status());
    for (name, value) in answer.headers() {
        if name != "content-length" && name != "transfer-encoding" {
            response = response.header(name, value);
        }
    }
    response.body(Body::from(answer.bytes().await.unwrap())).unwrap()
}

/// A PEM public key's DER, so that line wrapping cannot make equal keys differ.
fn der(pem: &str) -> Vec<u8> {
    pem::parse(pem).unwrap().into_contents()
}

fn through(env: &Env, proxy: &RecordingProxy) -> ConnectorBuilder {
    cloudsql::core::Connector::builder()
        .credentials(Credentials::from_file(&env.key_file).unwrap())
        .admin_api_endpoint(&proxy.url)
}

async fn first_row(connector: &cloudsql::core::Connector, instance: &str) {
    let (client, connection) = cloudsql::postgres::connect(connector, instance, &trust_login())
        .await
        .unwrap();
    tokio::spawn(connection);
    let one: i32 = client.query_one("SELECT 1", &[]).await.unwrap().get(0);
    assert_eq!(one, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_given_key_is_the_one_the_client_certificate_certifies() {
    let env = Env::new().await;
    let instance = env.add(env.pg_config()).await;
    let proxy = RecordingProxy::start(&env.emulator.admin_api_url()).await;
    let key = tokio::task::spawn_blocking(RsaKey::generate)
        .await
        .unwrap()
        .unwrap();
    let connector = through(&env, &proxy).rsa_key(key.clone()).build().unwrap();

    // The TLS handshake succeeding proves the connector signed with the private half of the key
    // the certificate was issued for; the proxy shows that key is the one given.
    first_row(&connector, instance.connection_name()).await;
    assert_eq!(proxy.keys(), vec![der(key.public_key_pem())]);
    // No key material in Debug.
    let debug = format!("{:?}", through(&env, &proxy).rsa_key(key));
    assert!(debug.contains("rsa_key: Some(RsaKey { .. })"), "{debug}");
    connector.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn connectors_without_a_key_share_one_per_process() {
    let env = Env::new().await;
    let pg = env.add(env.pg_config()).await;
    let other = env.add(env.pg_config()).await;
    let proxy = RecordingProxy::start(&env.emulator.admin_api_url()).await;
    let first = through(&env, &proxy).build().unwrap();
    let second = through(&env, &proxy)
        .refresh_strategy(RefreshStrategy::Lazy)
        .build()
        .unwrap();
    first_row(&first, pg.connection_name()).await;
    first_row(&second, other.connection_name()).await;
    // Built after the key is ready, and dropped connectors do not take the key with them.
    first.close().await;
    drop(first);
    let third = through(&env, &proxy).build().unwrap();
    first_row(&third, pg.connection_name()).await;
    // A given key is used by its connector alone.
    let given = tokio::task::spawn_blocking(RsaKey::generate)
        .await
        .unwrap()
        .unwrap();
    let own = through(&env, &proxy).rsa_key(given.clone()).build().unwrap();
    first_row(&own, other.connection_name()).await;

    let keys = proxy.keys();
    assert_eq!(keys.len(), 4, "one certificate per connector and instance");
    // One key for the three connectors without their own: it was generated once.
    assert_eq!(keys[0], keys[1]);
    assert_eq!(keys[0], keys[2]);
    assert_eq!(keys[3], der(given.public_key_pem()));
    assert_ne!(keys[3], keys[0]);
}

#[test]
fn a_key_that_is_not_rsa_2048_or_more_is_refused_with_a_clear_error() {
    let ec = aws_lc_rs::signature::EcdsaKeyPair::generate_pkcs8(
        &aws_lc_rs::signature::ECDSA_P256_SHA256_ASN1_SIGNING,
        &aws_lc_rs::rand::SystemRandom::new(),
    )
    .unwrap();
    let err = RsaKey::from_pkcs8_der(ec.as_ref()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
    assert_eq!(
        err.to_string(),
        "invalid configuration: the RSA key is refused: it is not an RSA key (Cloud SQL client \
         keys must be RSA)"
    );
    let ec_pem = pem::encode(&pem::Pem::new("PRIVATE KEY", ec.as_ref().to_vec()));
    assert!(
        RsaKey::from_pem(&ec_pem)
            .unwrap_err()
            .to_string()
            .contains("not an RSA key")
    );
    let public = RsaKey::generate().unwrap();
    let err = RsaKey::from_pem(public.public_key_pem()).unwrap_err();
    assert!(
        err.to_string().contains("`PUBLIC KEY`, not a private key"),
        "{err}"
    );
    let err = RsaKey::from_pkcs8_der(&[0x30, 0x03, 0x02, 0x01, 0x00]).unwrap_err();
    assert!(
        err.to_string()
            .contains("not a valid unencrypted PKCS#8 RSA private key"),
        "{err}"
    );
    // (An RSA-1024 key is refused as "smaller than 2048 bits": see the unit test in keys.rs.)
}

/// Each injected delay; long against scheduling noise so that the bounds below are generous.
const DELAY: Duration = Duration::from_secs(2);

/// With every Admin API call and every token request delayed by `DELAY`, a first connect that
/// ran them one after another would take at least their sum. Token fetch and key generation
/// overlap, then `connectSettings` and `generateEphemeralCert` overlap: about two delays.
async fn cold_connect_with_delays(
    iam_authn: bool,
    strategy: RefreshStrategy,
    key: Option<RsaKey>,
) -> (Duration, u64) {
    let env = Env::new().await;
    // A user's credentials: their Admin API token comes from the token endpoint too (a service
    // account's is a JWT it signs itself, with no request to delay).
    let user = format!("{}@example.com", unique("dev"));
    let user_file = env.emulator.write_authorized_user_file(&user, &env.dir).unwrap();
    let mut config = env.pg_config();
    if iam_authn {
        config = config.iam_user(&user, "unused-backend-password");
    }
    let instance = env.add(config).await;
    env.emulator.token_faults().delay(DELAY);
    instance.faults().admin_delay(DELAY);
    let mut builder = ConnectorBuilder::default()
        .credentials(Credentials::from_file(&user_file).unwrap())
        .admin_api_endpoint(env.emulator.admin_api_url())
        .iam_authn(iam_authn)
        .refresh_strategy(strategy);
    if let Some(key) = key {
        builder = builder.rsa_key(key);
    }
    let connector = builder.build().unwrap();
    // From the first connect (building reads files and makes HTTP clients, which a loaded
    // machine's debug build can take a few hundred milliseconds over) to the TLS stream (the
    // database login is not part of what is being overlapped).
    let started = Instant::now();
    let stream = connector.connect(instance.connection_name()).await.unwrap();
    let elapsed = started.elapsed();
    eprintln!("cold connect (IAM authn {iam_authn}, {strategy:?}): {elapsed:?}");
    drop(stream);
    assert_eq!(instance.counters().calls("connectSettings"), 1);
    assert_eq!(instance.counters().calls("generateEphemeralCert"), 1);
    let tokens = env.emulator.token_requests();
    connector.close().await;
    (elapsed, tokens)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cold_connect_overlaps_the_token_the_key_and_both_admin_api_calls() {
    // The process's key, generating from `build()` on, hidden behind the token request.
    let (elapsed, tokens) = cold_connect_with_delays(false, RefreshStrategy::Background, None).await;
    assert_eq!(tokens, 1, "one admin token for both calls");
    // Serial: token + connectSettings + generateEphemeralCert = 3 delays. Overlapped: 2.
    let serial = DELAY * 3;
    assert!(
        elapsed < serial - DELAY / 2,
        "cold connect took {elapsed:?}; the three {DELAY:?} steps must not all run one after another"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cold_iam_connect_also_overlaps_the_login_token() {
    // A key made beforehand: this one is about the two tokens, and a debug build's key
    // generation on a machine running many tests at once can take longer than a delay.
    let key = tokio::task::spawn_blocking(RsaKey::generate)
        .await
        .unwrap()
        .unwrap();
    let (elapsed, tokens) = cold_connect_with_delays(true, RefreshStrategy::Lazy, Some(key)).await;
    assert_eq!(tokens, 2, "an admin token and a login token");
    // Serial: admin token + login token + connectSettings + generateEphemeralCert = 4 delays.
    // Overlapped: 2.
    let serial = DELAY * 4;
    assert!(
        elapsed < serial - DELAY,
        "cold IAM connect took {elapsed:?}; the four {DELAY:?} steps must overlap"
    );
}
