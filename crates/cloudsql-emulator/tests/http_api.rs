//! The emulator's HTTP surface as a client other than ours sees it: v1 and v1beta4 paths,
//! Google-shaped errors, the counters and faults endpoints, the token endpoint.
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

use std::time::Duration;

use cloudsql_emulator::{Emulator, InstanceConfig};
use serde_json::{Value, json};

const ADMIN: &str = "https://www.googleapis.com/auth/sqlservice.admin";

async fn setup() -> (Emulator, String, String) {
    let emulator = Emulator::start().await.unwrap();
    let name = format!("http-project:us-central1:pg-{}", std::process::id());
    emulator
        .add_instance(InstanceConfig::new(
            &name,
            "POSTGRES_15",
            "127.0.0.1:5432".parse().unwrap(),
        ))
        .await
        .unwrap();
    let token = emulator.issue_token(
        "http@http-project.iam.gserviceaccount.com",
        &[ADMIN],
        Duration::from_secs(60),
    );
    (emulator, name, token)
}

#[tokio::test]
async fn connect_settings_under_v1_and_v1beta4() {
    let (emulator, name, token) = setup().await;
    let instance = name.rsplit(':').next().unwrap();
    let http = reqwest::Client::new();
    for version in ["v1", "v1beta4"] {
        let url = format!(
            "{}/sql/{version}/projects/http-project/instances/{instance}/connectSettings",
            emulator.admin_api_url()
        );
        let body: Value = http
            .get(&url)
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(body["kind"], "sql#connectSettings");
        assert_eq!(body["region"], "us-central1");
        assert_eq!(body["databaseVersion"], "POSTGRES_15");
        assert_eq!(body["serverCaMode"], "GOOGLE_MANAGED_INTERNAL_CA");
        assert_eq!(body["backendType"], "SECOND_GEN");
        assert!(
            body["serverCaCert"]["cert"]
                .as_str()
                .unwrap()
                .contains("BEGIN CERTIFICATE")
        );
        assert_eq!(body["ipAddresses"][0]["type"], "PRIMARY");
    }
    let counters: Value = http
        .get(format!("{}/emulator/v1/counters", emulator.admin_api_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(counters[&name]["connectSettings"], 2);
}

#[tokio::test]
async fn errors_have_googles_shape() {
    let (emulator, name, token) = setup().await;
    let instance = name.rsplit(':').next().unwrap();
    let http = reqwest::Client::new();
    let url = format!(
        "{}/sql/v1beta4/projects/http-project/instances/{instance}/connectSettings",
        emulator.admin_api_url()
    );
    let unauth = http.get(&url).bearer_auth("nope").send().await.unwrap();
    assert_eq!(unauth.status(), 401);
    let body: Value = unauth.json().await.unwrap();
    assert_eq!(body["error"]["code"], 401);
    assert_eq!(body["error"]["status"], "UNAUTHENTICATED");
    assert!(body["error"]["errors"][0]["reason"].is_string());

    let missing = http
        .get(url.replace(instance, "missing"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);

    // Faults switched over HTTP.
    let set = http
        .post(format!(
            "{}/emulator/v1/instances/{name}/faults",
            emulator.admin_api_url()
        ))
        .json(&json!({"admin_status": 503, "admin_status_times": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(set.status(), 204);
    let faulted = http.get(&url).bearer_auth(&token).send().await.unwrap();
    assert_eq!(faulted.status(), 503);
    let body: Value = faulted.json().await.unwrap();
    assert_eq!(body["error"]["status"], "UNAVAILABLE");
    assert_eq!(
        http.get(&url).bearer_auth(&token).send().await.unwrap().status(),
        200
    );

    // A certificate request without a public key is refused like the real API does.
    let cert = http
        .post(format!(
            "{}/sql/v1beta4/projects/http-project/instances/{instance}:generateEphemeralCert",
            emulator.admin_api_url()
        ))
        .bearer_auth(&token)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(cert.status(), 400);
}

#[tokio::test]
async fn token_endpoint_refuses_unknown_grants_and_bad_refresh_tokens() {
    let (emulator, _, _) = setup().await;
    let http = reqwest::Client::new();
    let bad = http
        .post(emulator.token_uri())
        .form(&[("grant_type", "password"), ("username", "x")])
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    let body: Value = bad.json().await.unwrap();
    assert_eq!(body["error"], "unsupported_grant_type");

    let refresh = http
        .post(emulator.token_uri())
        .form(&[("grant_type", "refresh_token"), ("refresh_token", "1//forged")])
        .send()
        .await
        .unwrap();
    let body: Value = refresh.json().await.unwrap();
    assert_eq!(body["error"], "invalid_grant");
}

#[tokio::test]
async fn server_ca_rotation_over_http_lists_both_cas() {
    let (emulator, name, token) = setup().await;
    let instance = name.rsplit(':').next().unwrap();
    let http = reqwest::Client::new();
    let url = format!(
        "{}/sql/v1beta4/projects/http-project/instances/{instance}/connectSettings",
        emulator.admin_api_url()
    );
    let count_certs = |body: &Value| {
        body["serverCaCert"]["cert"]
            .as_str()
            .unwrap()
            .matches("BEGIN CERTIFICATE")
            .count()
    };
    let before: Value = http
        .get(&url)
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(count_certs(&before), 1);
    let rotated = http
        .post(format!(
            "{}/emulator/v1/instances/{name}/rotateServerCa",
            emulator.admin_api_url()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(rotated.status(), 204);
    let after: Value = http
        .get(&url)
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(count_certs(&after), 2);
    let old = before["serverCaCert"]["cert"].as_str().unwrap();
    assert!(
        after["serverCaCert"]["cert"].as_str().unwrap().ends_with(old),
        "the old CA stays trusted"
    );
}
