//! Faults of the server-side proxy and the Admin API that production users meet, and what the
//! connector reports for each: defective server certificates, a proxy that hangs up after the
//! handshake or answers slowly, a database down behind a healthy proxy, a disabled Admin API,
//! and clients that never finish their login.
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

mod support;

use std::time::{Duration, Instant};

use cloudsql::core::{ConnectStage, DialOptions, Error};
use cloudsql_emulator::{CaMode, ServerCertFault};
use support::*;
use tokio::io::AsyncReadExt;

fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// What a connect says with the server presenting `fault`, per CA mode (`None`: it succeeds).
async fn connect_with_cert_fault(mode: CaMode, fault: ServerCertFault) -> Option<String> {
    let env = Env::new().await;
    let inst = env.add(env.pg_config().ca_mode(mode)).await;
    let connector = env.connector();
    inst.faults().server_cert(Some(fault));
    match connector.connect(inst.connection_name()).await {
        Ok(_) => None,
        Err(e) => {
            assert!(matches!(e, Error::Tls { .. }), "{mode:?} {fault:?}: {e:?}");
            Some(chain(&e))
        }
    }
}

#[tokio::test]
async fn expired_and_not_yet_valid_server_certificates_are_refused() {
    for mode in [CaMode::Legacy, CaMode::GoogleManagedCas] {
        let expired = connect_with_cert_fault(mode, ServerCertFault::Expired)
            .await
            .unwrap();
        assert!(expired.to_lowercase().contains("expired"), "{mode:?}: {expired}");
        let early = connect_with_cert_fault(mode, ServerCertFault::NotYetValid)
            .await
            .unwrap();
        assert!(
            early.to_lowercase().contains("not valid yet"),
            "{mode:?}: {early}"
        );
    }
}

/// Legacy instances are checked by common name only; CAS instances by SAN DNS name, with the
/// common name as the fallback Google's connectors also accept.
#[tokio::test]
async fn one_wrong_name_is_judged_by_the_ca_mode() {
    let legacy_wrong_cn = connect_with_cert_fault(CaMode::Legacy, ServerCertFault::WrongCn)
        .await
        .expect("legacy: a wrong common name is refused");
    assert!(
        legacy_wrong_cn.contains("expected common name"),
        "{legacy_wrong_cn}"
    );
    assert_eq!(
        connect_with_cert_fault(CaMode::Legacy, ServerCertFault::WrongSan).await,
        None,
        "legacy certificates carry no SAN; the right common name is enough"
    );
    assert_eq!(
        connect_with_cert_fault(CaMode::GoogleManagedCas, ServerCertFault::WrongCn).await,
        None,
        "CAS: the SAN DNS name matches"
    );
    assert_eq!(
        connect_with_cert_fault(CaMode::GoogleManagedCas, ServerCertFault::WrongSan).await,
        None,
        "CAS: no SAN matches, but the common name is the fallback"
    );
}

#[tokio::test]
async fn a_proxy_that_hangs_up_after_the_handshake_fails_the_login_and_recovers() {
    let env = Env::new().await;
    let inst = env.add(env.pg_config()).await;
    let connector = env.connector();
    let name = inst.connection_name().to_owned();
    inst.faults().reset_after_handshake(true);
    let err = select_one(&connector, &name, &trust_login()).await.unwrap_err();
    eprintln!("reset after handshake: {}", chain(&err));
    inst.faults().reset_after_handshake(false);
    let started = Instant::now();
    assert_eq!(select_one(&connector, &name, &trust_login()).await.unwrap(), 1);
    eprintln!(
        "first connect + query once the proxy behaves: {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_slow_handshake_times_out_naming_the_handshake() {
    let env = Env::new().await;
    let inst = env.add(env.pg_config()).await;
    let connector = env.connector();
    let name = inst.connection_name().to_owned();
    connector.connect(&name).await.unwrap();
    inst.faults().handshake_delay(Duration::from_secs(3));
    let err = connector
        .connect_with(&name, &DialOptions::new().timeout(Duration::from_secs(1)))
        .await
        .unwrap_err();
    match &err {
        Error::Timeout { stage, .. } => assert_eq!(*stage, ConnectStage::Handshake, "{err}"),
        other => panic!("expected a handshake timeout, got {other:?}"),
    }
    assert!(err.to_string().contains("TLS handshake"), "{err}");
    // A patient caller gets through.
    connector
        .connect_with(&name, &DialOptions::new().timeout(Duration::from_secs(10)))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_database_down_behind_a_healthy_proxy_fails_the_login_not_the_dial() {
    let env = Env::new().await;
    let inst = env.add(env.pg_config()).await;
    let connector = env.connector();
    let name = inst.connection_name().to_owned();
    inst.faults().backend_unreachable(true);
    // The connector's part succeeds: TLS to the proxy is fine.
    connector.connect(&name).await.unwrap();
    // The database login fails.
    assert!(select_one(&connector, &name, &trust_login()).await.is_err());
    inst.faults().backend_unreachable(false);
    assert_eq!(select_one(&connector, &name, &trust_login()).await.unwrap(), 1);
}

#[tokio::test]
async fn a_disabled_admin_api_says_how_to_enable_it() {
    let env = Env::new().await;
    let inst = env.add(env.pg_config()).await;
    inst.faults().api_disabled(true);
    let err = env.connector().connect(inst.connection_name()).await.unwrap_err();
    match &err {
        Error::AdminApi {
            status, api_status, ..
        } => {
            assert_eq!(*status, 403);
            assert_eq!(api_status.as_deref(), Some("PERMISSION_DENIED"));
        }
        other => panic!("expected an Admin API error, got {other:?}"),
    }
    let text = err.to_string();
    assert!(
        text.contains("has not been used in project test-project") && text.contains("Enable it"),
        "{text}"
    );
    assert!(!err.is_retryable(), "a disabled API is a configuration problem");
    assert_eq!(inst.counters().calls("connectSettings"), 1, "403 is not retried");
}

/// Thirty clients open TLS to a MySQL instance and never send their handshake response: the
/// proxy closes every one of them after the login timeout instead of waiting forever.
#[tokio::test]
async fn silent_clients_are_closed_after_the_login_timeout() {
    let env = Env::new().await;
    let inst = env
        .add(env.mysql_config().login_timeout(Duration::from_secs(1)))
        .await;
    let connector = env.connector();
    let name = inst.connection_name().to_owned();
    let started = Instant::now();
    let clients: Vec<_> = (0..30)
        .map(|_| {
            let connector = connector.clone();
            let name = name.clone();
            tokio::spawn(async move {
                let mut stream = connector.connect(&name).await.unwrap();
                // Read the server greeting, then stay silent until the proxy hangs up.
                let mut buf = vec![0u8; 4096];
                let mut total = 0;
                loop {
                    match tokio::time::timeout(Duration::from_secs(20), stream.read(&mut buf)).await {
                        Ok(Ok(0)) | Ok(Err(_)) => return Some(total),
                        Ok(Ok(n)) => total += n,
                        Err(_) => return None,
                    }
                }
            })
        })
        .collect();
    let mut closed = 0;
    for client in clients {
        if let Some(greeting) = client.await.unwrap() {
            assert!(greeting > 0, "the greeting arrived before the silence");
            closed += 1;
        }
    }
    eprintln!(
        "{closed} of 30 silent clients closed after {:?}",
        started.elapsed()
    );
    assert_eq!(closed, 30);
}

/// The same faults, switched through the emulator's HTTP control API (as a test written in
/// another language would).
#[tokio::test]
async fn faults_switched_over_http_reach_the_connector() {
    let env = Env::new().await;
    let inst = env.add(env.pg_config()).await;
    let name = inst.connection_name().to_owned();
    let http = reqwest::Client::new();
    let set = |body: serde_json::Value| {
        let request = http
            .post(format!(
                "{}/emulator/v1/instances/{name}/faults",
                env.emulator.admin_api_url()
            ))
            .json(&body);
        async move { assert_eq!(request.send().await.unwrap().status(), 204) }
    };

    set(serde_json::json!({"server_cert": "expired"})).await;
    let err = env.connector().connect(&name).await.unwrap_err();
    assert!(chain(&err).to_lowercase().contains("expired"), "{}", chain(&err));

    set(serde_json::json!({"api_disabled": true})).await;
    let err = env.connector().connect(&name).await.unwrap_err();
    assert!(matches!(err, Error::AdminApi { status: 403, .. }), "{err:?}");

    set(serde_json::json!({})).await;
    // A connector with a certificate already, so only the handshake can run out of time.
    let warm = env.connector();
    warm.connect(&name).await.unwrap();
    set(serde_json::json!({"handshake_delay_ms": 3000})).await;
    let err = warm
        .connect_with(&name, &DialOptions::new().timeout(Duration::from_secs(1)))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Timeout {
                stage: ConnectStage::Handshake,
                ..
            }
        ),
        "{err:?}"
    );

    set(serde_json::json!({})).await;
    assert_eq!(
        select_one(&env.connector(), &name, &trust_login()).await.unwrap(),
        1
    );
}
