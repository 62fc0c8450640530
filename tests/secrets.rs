//! No token, key or password ever appears in `Debug` output or error messages.
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

mod support;

use cloudsql::core::{AccessToken, Credentials};
use support::*;

#[tokio::test]
async fn debug_output_never_shows_secrets() {
    let env = Env::new().await;
    let key_json = std::fs::read_to_string(&env.key_file).unwrap();
    let key: serde_json::Value = serde_json::from_str(&key_json).unwrap();
    let private_key = key["private_key"].as_str().unwrap();
    let key_body = private_key.lines().nth(1).unwrap();

    let token = "ya29.super-secret-token-value";
    let shown = [
        format!("{:?}", Credentials::from_token(token)),
        format!("{:?}", AccessToken::new(token, None)),
        format!("{:?}", Credentials::from_file(&env.key_file).unwrap()),
        format!("{:?}", env.builder()),
        format!(
            "{:?}",
            cloudsql::Connector::builder().credentials(Credentials::from_token(token))
        ),
        format!("{:?}", env.connector()),
    ];
    for text in &shown {
        assert!(!text.contains(token), "{text}");
        assert!(!text.contains(key_body), "{text}");
        assert!(!text.contains("PRIVATE KEY"), "{text}");
    }

    let mut config = tokio_postgres::Config::new();
    config.user("u").password("pg-secret-password");
    let manager = cloudsql::postgres::bb8::CloudSqlConnectionManager::new(env.connector(), "p:r:i", config);
    assert!(!format!("{manager:?}").contains("pg-secret-password"));
}

#[tokio::test]
async fn errors_never_show_the_token() {
    let env = Env::new().await;
    let inst = env.add(env.pg_config()).await;
    let token = "ya29.leaky-token";
    let connector = cloudsql::Connector::builder()
        .credentials(Credentials::from_token(token))
        .admin_api_endpoint(env.emulator.admin_api_url())
        .build()
        .unwrap();
    let err = connector.connect(inst.connection_name()).await.unwrap_err();
    assert!(!format!("{err}").contains(token));
    assert!(!format!("{err:?}").contains(token));
}
