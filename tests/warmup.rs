//! `Connector::warmup` fetches and caches what a first connect needs, so that connect makes no
//! Admin API call; it fails as connect would. `Connector::engine_version` reports the raw
//! `databaseVersion`.
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

mod support;

use std::time::Duration;

use cloudsql::core::driver::DriverDial;
use cloudsql::core::{ConnectStage, DialOptions, Error, RefreshStrategy};
use support::*;

#[tokio::test]
async fn after_warmup_the_first_connect_makes_no_admin_api_call() {
    let env = Env::new().await;
    for strategy in [RefreshStrategy::Background, RefreshStrategy::Lazy] {
        let inst = env.add(env.pg_config()).await;
        let connector = env.builder().refresh_strategy(strategy).build().unwrap();
        connector
            .warmup(inst.connection_name(), &DialOptions::new())
            .await
            .unwrap();
        assert_eq!(inst.counters().calls("connectSettings"), 1, "{strategy:?}");
        assert_eq!(inst.counters().calls("generateEphemeralCert"), 1, "{strategy:?}");
        assert_eq!(inst.counters().connection_attempts(), 0, "warmup never dials");

        inst.counters().reset();
        assert_eq!(
            select_one(&connector, inst.connection_name(), &trust_login())
                .await
                .unwrap(),
            1
        );
        assert_eq!(
            inst.counters().total(),
            0,
            "{strategy:?}: {:?}",
            inst.counters().snapshot()
        );
        assert_eq!(inst.counters().connections(), 1);
    }
}

#[tokio::test]
async fn warmup_caches_the_certificate_of_the_iam_mode_asked_for() {
    let env = Env::new().await;
    let inst = env.add(env.pg_config()).await;
    let connector = env.connector();
    let iam = DialOptions::new().iam_authn(true);
    connector.warmup(inst.connection_name(), &iam).await.unwrap();
    // The certificate was asked for with a login token.
    assert_eq!(inst.counters().calls("generateEphemeralCert"), 1);

    inst.counters().reset();
    connector
        .connect_with(inst.connection_name(), &iam)
        .await
        .unwrap();
    assert_eq!(inst.counters().total(), 0, "{:?}", inst.counters().snapshot());

    // The other mode has a certificate of its own, not warmed.
    connector.connect(inst.connection_name()).await.unwrap();
    assert_eq!(inst.counters().calls("generateEphemeralCert"), 1);
}

#[cfg(feature = "dns")]
#[tokio::test]
async fn warmup_resolves_a_dns_name_once_for_the_connect() {
    let env = Env::new().await;
    let inst = env.add(env.pg_config()).await;
    let name = format!("{}.db.example.test", unique("warm"));
    env.emulator.add_txt_record(&name, inst.connection_name());
    let connector = env
        .builder()
        .dns_nameserver(env.emulator.dns_addr())
        .build()
        .unwrap();
    connector.warmup(&name, &DialOptions::new()).await.unwrap();
    let queries = env.emulator.dns_queries(&name);
    assert!(queries >= 1, "the name was resolved");
    assert_eq!(inst.counters().total(), 2);

    inst.counters().reset();
    assert_eq!(select_one(&connector, &name, &trust_login()).await.unwrap(), 1);
    assert_eq!(inst.counters().total(), 0, "{:?}", inst.counters().snapshot());
    assert_eq!(env.emulator.dns_queries(&name), queries, "no new DNS query");
    assert_eq!(connector.engine_version(&name).await.unwrap(), "POSTGRES_15");
}

#[tokio::test]
async fn warmup_during_an_admin_api_outage_fails_naming_the_instance() {
    let env = Env::new().await;
    let inst = env.add(env.pg_config()).await;
    inst.faults().admin_status(503, None);
    let connector = env.connector();
    let err = connector
        .warmup(inst.connection_name(), &DialOptions::new())
        .await
        .unwrap_err();
    match &err {
        Error::AdminApi { instance, status, .. } => {
            assert_eq!(instance, inst.connection_name());
            assert_eq!(*status, 503);
        }
        other => panic!("expected an Admin API error, got {other:?}"),
    }
    assert!(err.to_string().contains(inst.connection_name()), "{err}");
    assert!(err.is_retryable());
    assert_eq!(inst.counters().connection_attempts(), 0);

    // A slow Admin API: the timeout names the stage, as connect's does.
    let slow = env.add(env.pg_config()).await;
    slow.faults().admin_delay(Duration::from_secs(30));
    let err = connector
        .warmup(
            slow.connection_name(),
            &DialOptions::new().timeout(Duration::from_millis(500)),
        )
        .await
        .unwrap_err();
    match &err {
        Error::Timeout { instance, stage, .. } => {
            assert_eq!(instance, slow.connection_name());
            assert_eq!(*stage, ConnectStage::Refreshing);
        }
        other => panic!("expected a timeout, got {other:?}"),
    }

    // Once the Admin API is back, warmup succeeds and the connect needs no call.
    inst.faults().clear();
    let connector = env.connector();
    connector
        .warmup(inst.connection_name(), &DialOptions::new())
        .await
        .unwrap();
    inst.counters().reset();
    connector.connect(inst.connection_name()).await.unwrap();
    assert_eq!(inst.counters().total(), 0);
}

#[tokio::test]
async fn engine_version_is_what_the_admin_api_reports() {
    let env = Env::new().await;
    let connector = env.connector();
    for version in ["POSTGRES_16", "MYSQL_8_0_31", "SQLSERVER_2022_STANDARD"] {
        let inst = env
            .add(cloudsql_emulator::InstanceConfig::new(
                &format!("test-project:us-central1:{}", unique("v")),
                version,
                trust_pg(),
            ))
            .await;
        assert_eq!(
            connector.engine_version(inst.connection_name()).await.unwrap(),
            version
        );
    }
    // Warmup refuses what connect would refuse before dialing.
    let mssql = env
        .add(cloudsql_emulator::InstanceConfig::new(
            &format!("test-project:us-central1:{}", unique("ms")),
            "SQLSERVER_2019_STANDARD",
            trust_pg(),
        ))
        .await;
    let err = connector
        .warmup(mssql.connection_name(), &DialOptions::new().iam_authn(true))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::IamAuthnNotSupported { .. }), "{err:?}");
    let postgres = cloudsql::core::Engine::Postgres;
    let err = DriverDial::new(&connector, mssql.connection_name(), postgres, &DialOptions::new())
        .warmup()
        .await
        .unwrap_err();
    assert!(matches!(err, Error::IncompatibleDriver { .. }), "{err:?}");

    let err = connector
        .engine_version("test-project:us-central1:no-such-instance")
        .await
        .unwrap_err();
    assert!(matches!(err, Error::AdminApi { status: 404, .. }), "{err:?}");
}
