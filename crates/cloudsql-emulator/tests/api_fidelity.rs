//! Details of the Admin API and token endpoint that Google's own connectors (Python, Node) rely on,
//! matched to real Cloud SQL: `sql#sslCert` resources whose fields come from the certificate itself,
//! `pscEnabled` only when PSC is on, 401 with Google's body and a `WWW-Authenticate` challenge,
//! `expires_in` 3599, padded-base64 JWT assertions, and 404 for an unknown instance but 403 for an
//! unknown project.
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ::time::OffsetDateTime;
use ::time::format_description::well_known::Rfc3339;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE;
use cloudsql_emulator::{CaMode, Emulator, InstanceConfig};
use serde_json::{Value, json};
use x509_parser::parse_x509_certificate;

const ADMIN: &str = "https://www.googleapis.com/auth/sqlservice.admin";

async fn setup(config: impl Fn(InstanceConfig) -> InstanceConfig) -> (Emulator, String, String) {
    let emulator = Emulator::start().await.unwrap();
    let instance = format!("pg-{}", std::process::id());
    emulator
        .add_instance(config(InstanceConfig::new(
            &format!("fidelity-project:us-central1:{instance}"),
            "POSTGRES_15",
            "127.0.0.1:5432".parse().unwrap(),
        )))
        .await
        .unwrap();
    let token = emulator.issue_token(
        "fidelity@fidelity-project.iam.gserviceaccount.com",
        &[ADMIN],
        Duration::from_secs(60),
    );
    (emulator, instance, token)
}

fn url(emulator: &Emulator, instance: &str, method: &str) -> String {
    format!(
        "{}/sql/v1beta4/projects/fidelity-project/instances/{instance}{method}",
        emulator.admin_api_url()
    )
}

/// Checks an `sql#sslCert` against the first certificate of its own `cert` PEM.
fn assert_ssl_cert_matches_its_certificate(resource: &Value) {
    assert_eq!(resource["kind"], "sql#sslCert", "{resource}");
    let pem = pem::parse_many(resource["cert"].as_str().unwrap()).unwrap();
    let der = pem[0].contents();
    let (_, cert) = parse_x509_certificate(der).unwrap();
    assert_eq!(
        resource["certSerialNumber"],
        cert.tbs_certificate.serial.to_string()
    );
    let cn = cert
        .subject()
        .iter_common_name()
        .next()
        .unwrap()
        .as_str()
        .unwrap();
    assert!(
        resource["commonName"].as_str().unwrap().contains(cn),
        "{resource}"
    );
    let sha1 = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY, der);
    let hex: String = sha1.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(resource["sha1Fingerprint"], hex);
    let parse = |field: &str| {
        OffsetDateTime::parse(resource[field].as_str().unwrap(), &Rfc3339)
            .unwrap()
            .unix_timestamp()
    };
    assert_eq!(parse("createTime"), cert.validity().not_before.timestamp());
    assert_eq!(parse("expirationTime"), cert.validity().not_after.timestamp());
}

#[tokio::test]
async fn ssl_cert_resources_describe_their_own_certificates() {
    for mode in [
        CaMode::Legacy,
        CaMode::GoogleManagedCas,
        CaMode::CustomerManagedCas,
    ] {
        let (emulator, instance, token) = setup(|c| c.ca_mode(mode)).await;
        let http = reqwest::Client::new();
        let settings: Value = http
            .get(url(&emulator, &instance, "/connectSettings"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_ssl_cert_matches_its_certificate(&settings["serverCaCert"]);
        assert!(
            settings.get("pscEnabled").is_none(),
            "real connectSettings omits pscEnabled when PSC is off: {settings}"
        );

        let key = rcgen::KeyPair::generate().unwrap();
        let response: Value = http
            .post(url(&emulator, &instance, ":generateEphemeralCert"))
            .bearer_auth(&token)
            .json(&json!({"public_key": key.public_key_pem()}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_ssl_cert_matches_its_certificate(&response["ephemeralCert"]);
    }
}

#[tokio::test]
async fn psc_enabled_is_true_when_psc_is_on() {
    let (emulator, instance, token) = setup(|c| c.psc(true)).await;
    let settings: Value = reqwest::Client::new()
        .get(url(&emulator, &instance, "/connectSettings"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(settings["pscEnabled"], true);
}

#[tokio::test]
async fn a_bad_token_gets_googles_401() {
    let (emulator, instance, _) = setup(|c| c).await;
    let http = reqwest::Client::new();
    for request in [
        http.get(url(&emulator, &instance, "/connectSettings"))
            .bearer_auth("ya29.not-a-token"),
        http.get(url(&emulator, &instance, "/connectSettings")),
    ] {
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 401);
        assert_eq!(
            response.headers()["www-authenticate"],
            "Bearer realm=\"https://accounts.google.com/\""
        );
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["status"], "UNAUTHENTICATED");
        assert_eq!(body["error"]["errors"][0]["reason"], "authError");
        assert_eq!(body["error"]["errors"][0]["location"], "Authorization");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .starts_with("Request had invalid authentication credentials.")
        );
    }
}

#[tokio::test]
async fn unknown_instance_is_404_and_unknown_project_is_403_as_on_cloud_sql() {
    let (emulator, _, token) = setup(|c| c).await;
    let http = reqwest::Client::new();
    let base = format!("{}/sql/v1beta4/projects", emulator.admin_api_url());
    for (path, status, reason, message) in [
        (
            "fidelity-project/instances/no-such-instance/connectSettings",
            404,
            "instanceDoesNotExist",
            "The Cloud SQL instance does not exist.",
        ),
        (
            "no-such-project/instances/db/connectSettings",
            403,
            "notAuthorized",
            "The client is not authorized to make this request.",
        ),
    ] {
        let response = http
            .get(format!("{base}/{path}"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), status, "{path}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], status, "{body}");
        assert_eq!(body["error"]["errors"][0]["reason"], reason, "{body}");
        assert_eq!(body["error"]["message"], message, "{body}");
    }
    let cert = http
        .post(format!(
            "{base}/no-such-project/instances/db:generateEphemeralCert"
        ))
        .bearer_auth(&token)
        .json(&json!({"public_key": "unused"}))
        .send()
        .await
        .unwrap();
    assert_eq!(cert.status(), 403);
}

/// A service-account JWT assertion, base64url *with* padding, as some JWT libraries write it.
fn padded_assertion(key: &Value, token_uri: &str) -> String {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
    let header = json!({"alg": "RS256", "typ": "JWT", "kid": key["private_key_id"]});
    let claims = json!({
        "iss": key["client_email"], "scope": ADMIN, "aud": token_uri,
        "iat": now, "exp": now + 3600,
    });
    let input = format!(
        "{}.{}",
        URL_SAFE.encode(header.to_string()),
        URL_SAFE.encode(claims.to_string())
    );
    let der = pem::parse(key["private_key"].as_str().unwrap()).unwrap();
    let pair = aws_lc_rs::signature::RsaKeyPair::from_pkcs8(der.contents()).unwrap();
    let mut signature = vec![0; pair.public_modulus_len()];
    pair.sign(
        &aws_lc_rs::signature::RSA_PKCS1_SHA256,
        &aws_lc_rs::rand::SystemRandom::new(),
        input.as_bytes(),
        &mut signature,
    )
    .unwrap();
    format!("{input}.{}", URL_SAFE.encode(signature))
}

#[tokio::test]
async fn token_endpoint_takes_padded_jwts_and_reports_3599_seconds() {
    let (emulator, _, _) = setup(|c| c).await;
    let key = emulator
        .create_service_account("padded@fidelity-project.iam.gserviceaccount.com")
        .unwrap();
    let assertion = padded_assertion(&key, emulator.token_uri());
    assert!(
        assertion.contains('='),
        "the test must exercise padding: {assertion}"
    );
    let response = reqwest::Client::new()
        .post(emulator.token_uri())
        .form(&[
            ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
            ("assertion", assertion.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["expires_in"], 3599, "{body}");
    assert_eq!(body["token_type"], "Bearer");
}
