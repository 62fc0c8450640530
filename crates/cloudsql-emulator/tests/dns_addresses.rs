//! A and AAAA records (custom instance names dialled by their own address) and custom SANs, set
//! from the library, the control API and the config file, checked with raw DNS queries and
//! through the instance's server certificate.
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use cloudsql_emulator::{CaMode, DnsRecord, Emulator, FileConfig, InstanceConfig};
use serde_json::{Value, json};

const NAME: &str = "addr-project:us-central1:pg";

/// A query of `qtype` (1 = A, 28 = AAAA, 16 = TXT) for `name`; the raw answer, or `None` after
/// a timeout.
async fn query(dns: SocketAddr, name: &str, qtype: u8) -> Option<Vec<u8>> {
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut query = vec![0x43, 0x21, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    for label in name.split('.') {
        query.push(u8::try_from(label.len()).unwrap());
        query.extend_from_slice(label.as_bytes());
    }
    query.extend_from_slice(&[0, 0, qtype, 0, 1]);
    socket.send_to(&query, dns).await.unwrap();
    let mut buf = vec![0; 1500];
    let n = tokio::time::timeout(Duration::from_millis(500), socket.recv(&mut buf))
        .await
        .ok()?
        .unwrap();
    buf.truncate(n);
    Some(buf)
}

/// The answer count of a raw DNS response.
fn answers(response: &[u8]) -> u16 {
    u16::from_be_bytes([response[6], response[7]])
}

fn holds(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

async fn control(
    emulator: &Emulator,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request =
        reqwest::Client::new().request(method, format!("{}/emulator/v1/{path}", emulator.admin_api_url()));
    if let Some(body) = body {
        request = request.body(body.to_string());
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

#[tokio::test]
async fn addresses_are_set_over_the_control_api_and_answer_a_and_aaaa_queries() {
    let emulator = Emulator::start().await.unwrap();
    let dns = emulator.dns_addr();
    let post = reqwest::Method::POST;
    let (status, body) = control(
        &emulator,
        post.clone(),
        "dns/records",
        Some(json!({"name": "pg.addr.example.com", "txt": [NAME], "addresses": ["127.0.0.9", "::1"]})),
    )
    .await;
    assert_eq!(status, 204, "{body}");
    let (_, listed) = control(&emulator, reqwest::Method::GET, "dns/records", None).await;
    assert_eq!(
        listed,
        json!({"records": [{"name": "pg.addr.example.com", "txt": [NAME], "addresses": ["127.0.0.9", "::1"]}]})
    );
    let a = query(dns, "pg.addr.example.com", 1).await.unwrap();
    assert_eq!(answers(&a), 1);
    assert!(holds(&a, &[127, 0, 0, 9]), "{a:?}");
    let aaaa = query(dns, "pg.addr.example.com", 28).await.unwrap();
    assert_eq!(answers(&aaaa), 1);
    assert!(
        holds(&aaaa, &[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]),
        "{aaaa:?}"
    );
    let txt = query(dns, "pg.addr.example.com", 16).await.unwrap();
    assert!(holds(&txt, NAME.as_bytes()));
    assert_eq!(emulator.dns_queries_of_type("pg.addr.example.com", "a"), 1);
    assert_eq!(emulator.dns_queries_of_type("pg.addr.example.com", "AAAA"), 1);
    assert_eq!(emulator.dns_queries("pg.addr.example.com"), 3);

    // A POST at run time replaces them (a custom name moved to another address).
    let (status, _) = control(
        &emulator,
        post.clone(),
        "dns/records",
        Some(json!({"name": "pg.addr.example.com", "addresses": ["127.0.0.10"]})),
    )
    .await;
    assert_eq!(status, 204);
    let a = query(dns, "pg.addr.example.com", 1).await.unwrap();
    assert!(
        holds(&a, &[127, 0, 0, 10]) && !holds(&a, &[127, 0, 0, 9]),
        "{a:?}"
    );
    assert_eq!(answers(&query(dns, "pg.addr.example.com", 28).await.unwrap()), 0);

    // A CNAME stands alone; an address must parse.
    for bad in [
        json!({"name": "x.addr.example.com", "addresses": ["127.0.0.1"], "cname": "y.addr.example.com"}),
        json!({"name": "x.addr.example.com", "addresses": ["not-an-ip"]}),
    ] {
        let (status, body) = control(&emulator, post.clone(), "dns/records", Some(bad.clone())).await;
        assert_eq!(status, 400, "{bad} → {body}");
    }
}

#[tokio::test]
async fn the_library_and_the_config_file_set_addresses_too() {
    let emulator = Emulator::start().await.unwrap();
    let dns = emulator.dns_addr();
    let ip: IpAddr = "127.0.0.11".parse().unwrap();
    emulator
        .set_dns_record(&DnsRecord::addresses("lib.addr.example.com", &[ip]))
        .unwrap();
    emulator.add_address_record("lib.addr.example.com", "127.0.0.12".parse().unwrap());
    let a = query(dns, "lib.addr.example.com", 1).await.unwrap();
    assert_eq!(answers(&a), 2);
    assert!(
        emulator
            .set_dns_record(
                &DnsRecord::cname("c.addr.example.com", "lib.addr.example.com").with_addresses(&[ip])
            )
            .is_err()
    );

    let dir = std::env::temp_dir().join(format!("cloudsql-emulator-dns-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("emulator.toml");
    std::fs::write(
        &file,
        r#"
[[dns_records]]
name = "cfg.addr.example.com"
txt = ["addr-project:us-central1:pg"]
addresses = ["127.0.0.13", "::2"]

[[instances]]
connection_name = "addr-project:us-central1:pg"
database_version = "POSTGRES_15"
backend = "127.0.0.1:5432"
ca_mode = "customer_managed_cas"
custom_sans = ["cfg.addr.example.com"]
"#,
    )
    .unwrap();
    let config = FileConfig::load(&file).unwrap();
    assert_eq!(
        config.dns_records[0].addresses,
        vec!["127.0.0.13".parse::<IpAddr>().unwrap(), "::2".parse().unwrap()]
    );
    assert_eq!(config.instances[0].custom_sans, vec!["cfg.addr.example.com"]);
    std::fs::write(
        &file,
        "[[dns_records]]\nname = \"x.example.com\"\naddresses = [\"127.0.0.1\"]\ncname = \"y.example.com\"\n",
    )
    .unwrap();
    assert!(
        FileConfig::load(&file).is_err(),
        "addresses beside a CNAME are refused"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn custom_sans_are_in_the_server_certificate_and_listed() {
    let emulator = Emulator::start().await.unwrap();
    let backend: SocketAddr = "127.0.0.1:5432".parse().unwrap();
    let inst = emulator
        .add_instance(
            InstanceConfig::new(NAME, "POSTGRES_15", backend)
                .ca_mode(CaMode::CustomerManagedCas)
                .custom_san("db.addr.example.com."),
        )
        .await
        .unwrap();
    let (status, listed) = control(
        &emulator,
        reqwest::Method::GET,
        &format!("instances/{NAME}"),
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(listed["customSans"], json!(["db.addr.example.com"]));
    assert_eq!(listed["dnsNames"], json!([inst.dns_name().unwrap()]));

    // The certificate the proxy presents carries the custom SAN (read from the handshake).
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13])
    .unwrap()
    .dangerous()
    .with_custom_certificate_verifier(std::sync::Arc::new(Recorder(seen.clone())))
    .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect((inst.public_ip().unwrap(), cloudsql_emulator::PROXY_PORT))
        .await
        .unwrap();
    // The proxy wants a client certificate: the handshake fails after the server's is seen.
    let _ = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
        .connect(
            rustls_pki_types::ServerName::try_from("db.addr.example.com").unwrap(),
            tcp,
        )
        .await;
    let der = seen.lock().unwrap().clone();
    assert!(!der.is_empty(), "the server certificate was seen");
    assert!(
        holds(&der, b"db.addr.example.com"),
        "custom SAN in the certificate"
    );
    assert!(
        holds(&der, inst.dns_name().unwrap().as_bytes()),
        "instance DNS name kept"
    );
}

/// Records the server certificate and accepts it (the test only reads it).
#[derive(Debug)]
struct Recorder(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl rustls::client::danger::ServerCertVerifier for Recorder {
    fn verify_server_cert(
        &self,
        end_entity: &rustls_pki_types::CertificateDer<'_>,
        _intermediates: &[rustls_pki_types::CertificateDer<'_>],
        _server_name: &rustls_pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls_pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        *self.0.lock().unwrap() = end_entity.to_vec();
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &rustls_pki_types::CertificateDer<'_>,
        _dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }

    fn verify_tls13_signature(
        &self,
        _message: &[u8],
        _cert: &rustls_pki_types::CertificateDer<'_>,
        _dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        rustls::crypto::aws_lc_rs::default_provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}
