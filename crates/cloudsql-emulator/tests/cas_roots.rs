//! CAS instances share their server CA the way Cloud SQL's do: one regional root per project and
//! region for Google-managed CAS, the customer's pool for customer-managed CAS; legacy instances
//! each have a CA of their own.
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

use std::time::Duration;

use cloudsql_emulator::{CaMode, Emulator, InstanceConfig};
use serde_json::Value;

const ADMIN: &str = "https://www.googleapis.com/auth/sqlservice.admin";

async fn server_ca(emulator: &Emulator, token: &str, connection_name: &str) -> String {
    let parts: Vec<&str> = connection_name.split(':').collect();
    let url = format!(
        "{}/sql/v1beta4/projects/{}/instances/{}/connectSettings",
        emulator.admin_api_url(),
        parts[0],
        parts[2]
    );
    let body: Value = reqwest::Client::new()
        .get(url)
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    body["serverCaCert"]["cert"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn cas_roots_are_shared_per_project_and_region_and_legacy_cas_are_not() {
    let emulator = Emulator::start().await.unwrap();
    let token = emulator.issue_token("ca@p.iam.gserviceaccount.com", &[ADMIN], Duration::from_secs(600));
    let backend = "127.0.0.1:5432".parse().unwrap();
    let cases = [
        ("p:us-central1:cas-a", CaMode::GoogleManagedCas),
        ("p:us-central1:cas-b", CaMode::GoogleManagedCas),
        ("p:europe-west1:cas-c", CaMode::GoogleManagedCas),
        ("q:us-central1:cas-d", CaMode::GoogleManagedCas),
        ("p:us-central1:cmcas-e", CaMode::CustomerManagedCas),
        ("p:us-central1:cmcas-f", CaMode::CustomerManagedCas),
        ("p:us-central1:legacy-g", CaMode::Legacy),
        ("p:us-central1:legacy-h", CaMode::Legacy),
    ];
    let mut cas = Vec::new();
    for (name, mode) in cases {
        emulator
            .add_instance(InstanceConfig::new(name, "POSTGRES_15", backend).ca_mode(mode))
            .await
            .unwrap();
        cas.push(server_ca(&emulator, &token, name).await);
    }
    assert_eq!(cas[0], cas[1], "one Google-managed root per project and region");
    assert_ne!(cas[0], cas[2], "another region has another root");
    assert_ne!(cas[0], cas[3], "another project has another root");
    assert_eq!(cas[4], cas[5], "one customer pool per project and region");
    assert_ne!(cas[0], cas[4], "the customer's pool is not Google's");
    assert_ne!(cas[6], cas[7], "legacy instances have a CA each");

    // Rotating one instance's CA leaves its regional neighbours alone.
    emulator
        .instance("p:us-central1:cas-a")
        .unwrap()
        .rotate_server_ca()
        .unwrap();
    assert_eq!(server_ca(&emulator, &token, "p:us-central1:cas-b").await, cas[1]);
    assert_ne!(server_ca(&emulator, &token, "p:us-central1:cas-a").await, cas[0]);
}
