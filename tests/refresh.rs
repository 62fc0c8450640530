//! Refresh behaviour: shared first refresh, background refresh ahead of expiry, lazy refresh,
//! close stopping all work.
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

mod support;

use std::time::{Duration, Instant};

use cloudsql::core::{Error, RefreshStrategy};
use support::*;

#[tokio::test]
async fn hundred_concurrent_first_connects_share_one_refresh() {
    let env = Env::new().await;
    let inst = env.add(env.pg_config()).await;
    let connector = env.connector();
    let name = inst.connection_name().to_owned();
    let tasks: Vec<_> = (0..100)
        .map(|_| {
            let connector = connector.clone();
            let name = name.clone();
            tokio::spawn(async move { connector.connect(&name).await.map(drop) })
        })
        .collect();
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    assert_eq!(inst.counters().calls("connectSettings"), 1);
    assert_eq!(inst.counters().calls("generateEphemeralCert"), 1);
    assert_eq!(inst.counters().total(), 2);
}

#[tokio::test]
async fn lazy_strategy_also_shares_one_refresh() {
    let env = Env::new().await;
    let inst = env.add(env.pg_config()).await;
    let connector = env
        .builder()
        .refresh_strategy(RefreshStrategy::Lazy)
        .build()
        .unwrap();
    let name = inst.connection_name().to_owned();
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let connector = connector.clone();
            let name = name.clone();
            tokio::spawn(async move { connector.connect(&name).await.map(drop) })
        })
        .collect();
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    assert_eq!(inst.counters().total(), 2);
}

#[tokio::test]
async fn close_stops_refreshing_and_refuses_new_connects() {
    let env = Env::new().await;
    // Certificates shorter than the 4-minute buffer make the background task refresh as fast as
    // its rate limit allows (2 at once, then one per 30 s).
    let inst = env
        .add(env.pg_config().cert_lifetime(Duration::from_secs(180)))
        .await;
    let connector = env.connector();
    assert_eq!(
        select_one(&connector, inst.connection_name(), &trust_login())
            .await
            .unwrap(),
        1
    );
    // The burst allows a second refresh at once.
    wait_for_calls(&inst, "generateEphemeralCert", 2).await;
    assert_eq!(
        inst.counters().calls("generateEphemeralCert"),
        2,
        "background refresh ran"
    );

    connector.close().await;
    let after_close = inst.counters().total();
    let err = connector.connect(inst.connection_name()).await.unwrap_err();
    assert!(matches!(err, Error::Closed), "{err:?}");
    // The next refresh would be due within 30 s; nothing may happen.
    tokio::time::sleep(Duration::from_secs(32)).await;
    assert_eq!(
        inst.counters().total(),
        after_close,
        "no Admin API calls after close"
    );
}

#[tokio::test]
async fn dropping_the_last_connector_clone_stops_refreshing() {
    let env = Env::new().await;
    let inst = env
        .add(env.pg_config().cert_lifetime(Duration::from_secs(180)))
        .await;
    let connector = env.connector();
    let clone = connector.clone();
    connector.connect(inst.connection_name()).await.unwrap();
    drop(connector);
    // A clone keeps it alive.
    clone.connect(inst.connection_name()).await.unwrap();
    wait_for_calls(&inst, "generateEphemeralCert", 2).await;
    drop(clone);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let after_drop = inst.counters().total();
    tokio::time::sleep(Duration::from_secs(32)).await;
    assert_eq!(
        inst.counters().total(),
        after_drop,
        "no Admin API calls after drop"
    );
}

#[tokio::test]
async fn lazy_strategy_makes_no_background_calls() {
    let env = Env::new().await;
    let inst = env.add(env.pg_config()).await;
    let connector = env
        .builder()
        .refresh_strategy(RefreshStrategy::Lazy)
        .build()
        .unwrap();
    for _ in 0..5 {
        assert_eq!(
            select_one(&connector, inst.connection_name(), &trust_login())
                .await
                .unwrap(),
            1
        );
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        inst.counters().total(),
        2,
        "one refresh serves a valid hour-long certificate"
    );
}

#[tokio::test]
async fn fatal_errors_evict_the_instance_and_stop_background_work() {
    let env = Env::new().await;
    let inst = env.add(env.pg_config()).await;
    inst.faults().admin_status(404, None);
    let connector = env.connector();
    assert!(connector.connect(inst.connection_name()).await.is_err());
    let calls = inst.counters().total();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(inst.counters().total(), calls, "no retries for a 404");
    // Once the instance exists again, a new connect starts afresh.
    inst.faults().clear();
    assert_eq!(
        select_one(&connector, inst.connection_name(), &trust_login())
            .await
            .unwrap(),
        1
    );
}

/// Runs `SELECT 1` on a new connection every 2 s for 200 s with 3-minute certificates: the first
/// certificate expires mid-run (the proxy refuses expired certificates), so success throughout
/// proves the refresh works.
async fn queries_succeed_across_expiry(strategy: RefreshStrategy) {
    let env = Env::new().await;
    let inst = env
        .add(env.pg_config().cert_lifetime(Duration::from_secs(180)))
        .await;
    let connector = env.builder().refresh_strategy(strategy).build().unwrap();
    let started = Instant::now();
    let mut queries = 0;
    // A long-lived connection opened at the start keeps working too.
    let (long_lived, connection) =
        cloudsql::postgres::connect(&connector, inst.connection_name(), &trust_login())
            .await
            .unwrap();
    tokio::spawn(connection);
    while started.elapsed() < Duration::from_secs(200) {
        let result = select_one(&connector, inst.connection_name(), &trust_login()).await;
        assert_eq!(
            result.unwrap_or_else(|e| panic!(
                "{strategy:?}: query failed after {:?}: {e:?}",
                started.elapsed()
            )),
            1
        );
        queries += 1;
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    long_lived.query_one("SELECT 1", &[]).await.unwrap();
    let certs = inst.counters().calls("generateEphemeralCert");
    assert!(queries >= 90, "{queries}");
    assert!(
        certs >= 2,
        "{strategy:?}: the certificate was refreshed ({certs} issued)"
    );
    connector.close().await;
}

#[tokio::test]
async fn background_refresh_keeps_three_minute_certificates_valid() {
    queries_succeed_across_expiry(RefreshStrategy::Background).await;
}

#[tokio::test]
async fn lazy_refresh_keeps_three_minute_certificates_valid() {
    queries_succeed_across_expiry(RefreshStrategy::Lazy).await;
}
