//! Each Admin API failure reaches the caller as its own typed error with the API's message.
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

mod support;

use std::time::Duration;

use cloudsql::core::{Credentials, Error, ErrorKind};
use cloudsql_emulator::InstanceConfig;
use support::*;

fn status_of(err: &Error) -> (u16, String) {
    match err {
        Error::AdminApi { status, message, .. } => (*status, message.clone()),
        other => panic!("expected an Admin API error, got {other:?}"),
    }
}

#[tokio::test]
async fn bad_token_is_401_with_the_api_message() {
    let env = Env::new().await;
    let inst = env.add(env.pg_config()).await;
    let connector = cloudsql::Connector::builder()
        .credentials(Credentials::from_token("ya29.not-a-real-token"))
        .admin_api_endpoint(env.emulator.admin_api_url())
        .build()
        .unwrap();
    let err = connector.connect(inst.connection_name()).await.unwrap_err();
    let (status, message) = status_of(&err);
    assert_eq!(status, 401);
    assert!(
        message.contains("invalid authentication credentials"),
        "{message}"
    );
    assert!(!err.to_string().contains("ya29.not-a-real-token"));
    assert_eq!(err.kind(), ErrorKind::Config);
}

#[tokio::test]
async fn permission_denied_is_403_and_not_retried() {
    let env = Env::new().await;
    let inst = env.add(env.pg_config()).await;
    inst.faults().admin_status(403, None);
    let err = env.connector().connect(inst.connection_name()).await.unwrap_err();
    let (status, message) = status_of(&err);
    assert_eq!(status, 403);
    assert!(message.contains("not authorized"), "{message}");
    assert!(matches!(&err, Error::AdminApi { api_status: Some(s), .. } if s == "PERMISSION_DENIED"));
    assert!(!err.is_retryable());
    assert_eq!(inst.counters().calls("connectSettings"), 1, "403 is not retried");
}

#[tokio::test]
async fn unknown_instance_is_404() {
    let env = Env::new().await;
    // An instance in the project: the caller can see the project, just not this instance.
    env.add(env.pg_config()).await;
    let err = env
        .connector()
        .connect("test-project:us-central1:no-such-instance")
        .await
        .unwrap_err();
    let (status, message) = status_of(&err);
    assert_eq!(status, 404);
    assert!(message.contains("does not exist"), "{message}");
    assert!(err.to_string().contains("check the connection name"), "{err}");
}

#[tokio::test]
async fn unknown_project_is_403_not_authorized_with_what_to_check() {
    let env = Env::new().await;
    let err = env
        .connector()
        .connect(&format!("{}:us-central1:db", unique("no-such-project")))
        .await
        .unwrap_err();
    let (status, message) = status_of(&err);
    assert_eq!(
        status, 403,
        "Cloud SQL answers 403 notAuthorized for an unknown project"
    );
    assert!(message.contains("not authorized"), "{message}");
    let shown = err.to_string();
    assert!(shown.contains("Cloud SQL Client role"), "{shown}");
    assert!(shown.contains("typo"), "{shown}");
    assert!(!err.is_retryable());
}

#[tokio::test]
async fn server_error_is_retried_then_succeeds() {
    let env = Env::new().await;
    let inst = env.add(env.pg_config()).await;
    inst.faults().admin_status(500, Some(2));
    assert_eq!(
        select_one(&env.connector(), inst.connection_name(), &trust_login())
            .await
            .unwrap(),
        1
    );
    // Two calls failed with 500 (one per method, or both on one) and were retried.
    assert_eq!(inst.counters().total(), 4);
}

#[tokio::test]
async fn persistent_server_errors_give_up_with_a_retryable_error() {
    let env = Env::new().await;
    let connector = env.connector();
    // A first connect elsewhere makes the connector's RSA key, so the certificate call below
    // starts at once instead of after key generation (slow on a loaded machine).
    let healthy = env.add(env.pg_config()).await;
    select_one(&connector, healthy.connection_name(), &trust_login())
        .await
        .unwrap();
    let inst = env.add(env.pg_config()).await;
    inst.faults().admin_status(503, None);
    let err = connector.connect(inst.connection_name()).await.unwrap_err();
    assert_eq!(status_of(&err).0, 503);
    assert!(err.is_retryable());
    // Both calls run at once; the first to give up (after 5 attempts) cancels the other, which
    // may not have sent its 5th attempt yet.
    let (settings, certs) = (
        inst.counters().calls("connectSettings"),
        inst.counters().calls("generateEphemeralCert"),
    );
    assert_eq!(
        settings.max(certs),
        5,
        "bounded retries: {settings} and {certs} attempts"
    );
    // Both start together, but one may still be a retry or two behind when the other gives up.
    assert!(
        settings.min(certs) >= 2,
        "both calls were retried: {settings} and {certs} attempts"
    );
}

#[tokio::test]
async fn malformed_json_is_a_response_error() {
    let env = Env::new().await;
    let inst = env.add(env.pg_config()).await;
    inst.faults().malformed_json(true);
    let err = env.connector().connect(inst.connection_name()).await.unwrap_err();
    assert!(matches!(err, Error::AdminApiResponse { .. }), "{err:?}");
    assert!(err.to_string().contains("malformed JSON"), "{err}");
}

#[tokio::test]
async fn region_mismatch_names_both_regions() {
    let env = Env::new().await;
    let inst = env.add(env.pg_config()).await;
    inst.faults().reported_region(Some("europe-west4"));
    let err = env.connector().connect(inst.connection_name()).await.unwrap_err();
    match &err {
        Error::RegionMismatch { expected, actual, .. } => {
            assert_eq!(expected, "us-central1");
            assert_eq!(actual, "europe-west4");
        }
        other => panic!("expected RegionMismatch, got {other:?}"),
    }
}

#[tokio::test]
async fn postgres_driver_refuses_a_mysql_instance_before_sending_bytes() {
    let env = Env::new().await;
    let inst = env
        .add(InstanceConfig::new(
            &format!("test-project:us-central1:{}", unique("mysql")),
            "MYSQL_8_0",
            "127.0.0.1:3306".parse().unwrap(),
        ))
        .await;
    let err = cloudsql::postgres::connect(&env.connector(), inst.connection_name(), &trust_login())
        .await
        .map(|_| ())
        .unwrap_err();
    match err.as_connector() {
        Some(Error::IncompatibleDriver { database_version, .. }) => assert_eq!(database_version, "MYSQL_8_0"),
        other => panic!("expected IncompatibleDriver, got {other:?}"),
    }
}

#[tokio::test]
async fn invalid_instance_names_are_refused_before_any_call() {
    let env = Env::new().await;
    let err = env.connector().connect("just-a-name").await.unwrap_err();
    assert!(matches!(err, Error::InvalidInstanceName { .. }));
    assert!(err.to_string().contains("PROJECT:REGION:INSTANCE"));
}

#[tokio::test]
async fn slow_admin_api_hits_the_timeout() {
    let env = Env::new().await;
    let inst = env.add(env.pg_config()).await;
    inst.faults().admin_delay(Duration::from_secs(5));
    let connector = env.builder().timeout(Duration::from_millis(300)).build().unwrap();
    let err = connector.connect(inst.connection_name()).await.unwrap_err();
    assert!(matches!(err, Error::Timeout { .. }), "{err:?}");
}
