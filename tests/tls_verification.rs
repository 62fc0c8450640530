//! The connector refuses servers that fail any check, says which check failed, and recovers from
//! a server CA rotation by refreshing.
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

mod support;

use std::error::Error as _;

use cloudsql::core::Error;
use cloudsql_emulator::CaMode;
use support::*;

/// The full error chain as one string.
fn chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(e) = source {
        out.push_str(": ");
        out.push_str(&e.to_string());
        source = e.source();
    }
    out
}

async fn refused(mode: CaMode, configure: impl Fn(&cloudsql_emulator::Faults)) -> String {
    let env = Env::new().await;
    let inst = env.add(env.pg_config().ca_mode(mode)).await;
    configure(inst.faults());
    let err = env.connector().connect(inst.connection_name()).await.unwrap_err();
    assert!(matches!(err, Error::Tls { .. }), "{err:?}");
    assert!(err.source().is_some());
    chain(&err)
}

#[tokio::test]
async fn wrong_common_name_is_refused_in_legacy_mode() {
    let msg = refused(CaMode::Legacy, |f| f.wrong_identity(true)).await;
    assert!(msg.contains("expected common name"), "{msg}");
    assert!(msg.contains("other-project:other-instance"), "{msg}");
}

#[tokio::test]
async fn wrong_san_is_refused_in_cas_mode() {
    let msg = refused(CaMode::GoogleManagedCas, |f| f.wrong_identity(true)).await;
    assert!(msg.contains("no SAN DNS name matching"), "{msg}");
}

#[tokio::test]
async fn unrelated_ca_is_refused() {
    for mode in [CaMode::Legacy, CaMode::CustomerManagedCas] {
        let msg = refused(mode, |f| f.wrong_ca(true)).await;
        assert!(
            msg.contains("does not chain to the instance's server CA"),
            "{mode:?}: {msg}"
        );
    }
}

#[tokio::test]
async fn server_ca_rotation_is_picked_up_after_one_failed_handshake() {
    for mode in [CaMode::Legacy, CaMode::GoogleManagedCas] {
        let env = Env::new().await;
        let inst = env.add(env.pg_config().ca_mode(mode)).await;
        let connector = env.connector();
        assert_eq!(
            select_one(&connector, inst.connection_name(), &trust_login())
                .await
                .unwrap(),
            1
        );
        let before = inst.counters().calls("connectSettings");

        inst.rotate_server_ca().unwrap();
        // The cached CA no longer matches: the handshake fails and forces a refresh...
        let first = connector.connect(inst.connection_name()).await;
        assert!(matches!(first, Err(Error::Tls { .. })), "{mode:?}: {first:?}");
        // ...in the background (the still-valid certificate keeps being served meanwhile), after
        // which the new CA is trusted.
        assert_eq!(
            wait_for_calls(&inst, "connectSettings", before + 1).await,
            before + 1
        );
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let result = loop {
            let result = select_one(&connector, inst.connection_name(), &trust_login()).await;
            if result.is_ok() || std::time::Instant::now() > deadline {
                break result;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        };
        assert_eq!(result.unwrap(), 1, "{mode:?}");
        assert_eq!(inst.counters().calls("connectSettings"), before + 1, "{mode:?}");
    }
}
