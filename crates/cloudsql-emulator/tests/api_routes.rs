//! Every path form the real Admin API answers on — `/v1/projects/…` and `/v1beta4/projects/…` as
//! at `sqladmin.googleapis.com`, and the `/sql/{version}/projects/…` forms the client libraries
//! use — serves `connectSettings` and `generateEphemeralCert`; an unknown version does not.
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

use std::time::Duration;

use cloudsql_emulator::{Emulator, InstanceConfig};
use serde_json::{Value, json};

const ADMIN: &str = "https://www.googleapis.com/auth/sqlservice.admin";
const PREFIXES: [&str; 4] = ["/v1", "/v1beta4", "/sql/v1", "/sql/v1beta4"];

async fn setup() -> (Emulator, String, String) {
    let emulator = Emulator::start().await.unwrap();
    let instance = format!("pg-{}", std::process::id());
    emulator
        .add_instance(InstanceConfig::new(
            &format!("routes-project:us-central1:{instance}"),
            "POSTGRES_15",
            "127.0.0.1:5432".parse().unwrap(),
        ))
        .await
        .unwrap();
    let token = emulator.issue_token(
        "routes@routes-project.iam.gserviceaccount.com",
        &[ADMIN],
        Duration::from_secs(60),
    );
    (emulator, instance, token)
}

fn url(emulator: &Emulator, prefix: &str, instance: &str, method: &str) -> String {
    format!(
        "{}{prefix}/projects/routes-project/instances/{instance}{method}",
        emulator.admin_api_url()
    )
}

#[tokio::test]
async fn connect_settings_on_every_path_form() {
    let (emulator, instance, token) = setup().await;
    let http = reqwest::Client::new();
    for prefix in PREFIXES {
        let response = http
            .get(url(&emulator, prefix, &instance, "/connectSettings"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{prefix}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["kind"], "sql#connectSettings", "{prefix}");
        assert_eq!(body["databaseVersion"], "POSTGRES_15", "{prefix}");
    }
}

#[tokio::test]
async fn generate_ephemeral_cert_on_every_path_form() {
    let (emulator, instance, token) = setup().await;
    let http = reqwest::Client::new();
    let key = rcgen::KeyPair::generate().unwrap();
    for prefix in PREFIXES {
        let response = http
            .post(url(&emulator, prefix, &instance, ":generateEphemeralCert"))
            .bearer_auth(&token)
            .json(&json!({"public_key": key.public_key_pem()}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{prefix}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["ephemeralCert"]["kind"], "sql#sslCert", "{prefix}");
        assert!(
            body["ephemeralCert"]["cert"]
                .as_str()
                .unwrap()
                .contains("BEGIN CERTIFICATE"),
            "{prefix}"
        );
    }
}

#[tokio::test]
async fn unknown_versions_are_not_found() {
    let (emulator, instance, token) = setup().await;
    let http = reqwest::Client::new();
    for prefix in ["/v2", "/sql/v2"] {
        let response = http
            .get(url(&emulator, prefix, &instance, "/connectSettings"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 404, "{prefix}");
    }
}
