//! The refresh engine under faults, in both strategies: a valid certificate is always served
//! (Admin API outages, slow answers, proxy blips), callers that must wait get the real error
//! rather than a timeout, a cancelled caller never cancels the shared refresh, and `close`
//! stops a refresh in flight.
//!
//! Timings are printed, never asserted; the bounds below separate behaviours (a connect that
//! waited for a 5 s Admin API answer or a 30 s rate limit) with wide margins.
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use cloudsql::core::{ConnectStage, Connector, DialOptions, Error, RefreshStrategy};
use cloudsql_emulator::Instance;
use support::*;

const STRATEGIES: [RefreshStrategy; 2] = [RefreshStrategy::Background, RefreshStrategy::Lazy];

fn connector(env: &Env, strategy: RefreshStrategy) -> Connector {
    env.builder().refresh_strategy(strategy).build().unwrap()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index]
}

/// 100 concurrent connects; returns their sorted durations, failing on any error.
async fn hundred_connects(connector: &Connector, name: &str) -> Vec<Duration> {
    let tasks: Vec<_> = (0..100)
        .map(|_| {
            let connector = connector.clone();
            let name = name.to_owned();
            tokio::spawn(async move {
                let started = Instant::now();
                connector.connect(&name).await.map(|_| started.elapsed())
            })
        })
        .collect();
    let mut times = Vec::new();
    for task in tasks {
        times.push(task.await.unwrap().unwrap());
    }
    times.sort();
    times
}

/// A 60 s Admin API outage (every call answers 503 after 5 s) while the certificate is valid
/// for another ~200 s: every connect is served at once — no connect waits for the API — and the
/// instance makes at most 5 Admin API calls during the outage.
async fn outage_with_a_valid_certificate(strategy: RefreshStrategy) {
    let env = Env::new().await;
    // 200 s certificates are inside the 4-minute refresh window: both strategies want to
    // refresh during the whole outage.
    let inst = env
        .add(env.pg_config().cert_lifetime(Duration::from_secs(200)))
        .await;
    let connector = connector(&env, strategy);
    let name = inst.connection_name().to_owned();
    assert_eq!(select_one(&connector, &name, &trust_login()).await.unwrap(), 1);
    // Let the background burst settle before the outage starts.
    tokio::time::sleep(Duration::from_millis(500)).await;

    inst.faults().admin_delay(Duration::from_secs(5));
    inst.faults().admin_status(503, None);
    let before = inst.counters().total();
    let outage = Instant::now();

    let times = hundred_connects(&connector, &name).await;
    let (p99, max) = (percentile(&times, 0.99), times[times.len() - 1]);
    eprintln!(
        "{strategy:?}: 100 concurrent connects during the outage: p50 {:?}, p99 {p99:?}, max {max:?}",
        percentile(&times, 0.5)
    );
    assert!(
        max < Duration::from_secs(5),
        "{strategy:?}: a connect waited for the failing Admin API ({max:?})"
    );

    // One connect a second for the rest of the outage, each with a query.
    let mut slowest = Duration::ZERO;
    while outage.elapsed() < Duration::from_secs(60) {
        let started = Instant::now();
        assert_eq!(select_one(&connector, &name, &trust_login()).await.unwrap(), 1);
        slowest = slowest.max(started.elapsed());
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let calls = inst.counters().total() - before;
    eprintln!("{strategy:?}: 60 s outage: {calls} Admin API calls; slowest connect + query {slowest:?}");
    assert!(slowest < Duration::from_secs(5), "{strategy:?}: {slowest:?}");
    assert!(
        calls <= 5,
        "{strategy:?}: {calls} Admin API calls during a 60 s outage"
    );
    assert!(
        calls >= 1,
        "{strategy:?}: the engine did try to refresh during the outage"
    );
    inst.faults().clear();
}

#[tokio::test(flavor = "multi_thread")]
async fn outage_with_a_valid_certificate_background() {
    outage_with_a_valid_certificate(RefreshStrategy::Background).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn outage_with_a_valid_certificate_lazy() {
    outage_with_a_valid_certificate(RefreshStrategy::Lazy).await;
}

/// The Admin API answers in 1.5 s and connects give up after 1 s: the first connect times out
/// (saying it was waiting for the Admin API), but the refresh goes on without it and later
/// connects succeed with the single certificate it fetched.
#[tokio::test]
async fn admin_api_slower_than_the_connect_timeout() {
    for strategy in STRATEGIES {
        let env = Env::new().await;
        let inst = env.add(env.pg_config()).await;
        inst.faults().admin_delay(Duration::from_millis(1500));
        let connector = connector(&env, strategy);
        let name = inst.connection_name().to_owned();
        let short = DialOptions::new().timeout(Duration::from_secs(1));

        let err = connector.connect_with(&name, &short).await.unwrap_err();
        match &err {
            Error::Timeout { stage, .. } => assert_eq!(*stage, ConnectStage::Refreshing, "{strategy:?}"),
            other => panic!("{strategy:?}: expected a timeout while refreshing, got {other:?}"),
        }
        assert!(err.to_string().contains("Admin API"), "{err}");

        // The refresh started by the timed-out connect completes on its own.
        wait_for_calls(&inst, "generateEphemeralCert", 1).await;
        let deadline = Instant::now() + Duration::from_secs(10);
        let result = loop {
            let result = connector.connect_with(&name, &short).await;
            if result.is_ok() || Instant::now() > deadline {
                break result;
            }
        };
        result.unwrap_or_else(|e| panic!("{strategy:?}: {e}"));
        assert_eq!(inst.counters().calls("connectSettings"), 1, "{strategy:?}");
        assert_eq!(inst.counters().calls("generateEphemeralCert"), 1, "{strategy:?}");
    }
}

/// Twenty first connects all cancelled after 50 ms make one refresh, not twenty; it finishes and
/// serves the next connect.
#[tokio::test]
async fn cancelled_first_connects_do_not_restart_the_refresh() {
    for strategy in STRATEGIES {
        let env = Env::new().await;
        let inst = env.add(env.pg_config()).await;
        inst.faults().admin_delay(Duration::from_millis(300));
        let connector = connector(&env, strategy);
        let name = inst.connection_name().to_owned();
        let tasks: Vec<_> = (0..20)
            .map(|_| {
                let connector = connector.clone();
                let name = name.clone();
                tokio::spawn(async move {
                    tokio::time::timeout(Duration::from_millis(50), connector.connect(&name)).await
                })
            })
            .collect();
        for task in tasks {
            assert!(
                task.await.unwrap().is_err(),
                "{strategy:?}: the connect was cancelled"
            );
        }
        connector.connect(&name).await.unwrap();
        assert_eq!(
            inst.counters().total(),
            2,
            "{strategy:?}: one connectSettings + one cert"
        );
    }
}

/// Three connects fail while the proxy drops connections; once it is back the next connect is
/// served at once with the still-valid certificate, instead of waiting for the rate limiter.
#[tokio::test]
async fn proxy_blip_then_back() {
    for strategy in STRATEGIES {
        let env = Env::new().await;
        let inst = env.add(env.pg_config()).await;
        let connector = connector(&env, strategy);
        let name = inst.connection_name().to_owned();
        assert_eq!(select_one(&connector, &name, &trust_login()).await.unwrap(), 1);

        inst.faults().proxy_reset(true);
        for i in 0..3 {
            let started = Instant::now();
            let err = connector.connect(&name).await.unwrap_err();
            assert!(
                matches!(err, Error::Tls { .. } | Error::Dial { .. }),
                "{strategy:?} blip connect {i}: {err:?}"
            );
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "{strategy:?}: {:?}",
                started.elapsed()
            );
        }
        inst.faults().proxy_reset(false);
        let started = Instant::now();
        assert_eq!(select_one(&connector, &name, &trust_login()).await.unwrap(), 1);
        let back = started.elapsed();
        eprintln!("{strategy:?}: first connect + query after the blip: {back:?}");
        assert!(
            back < Duration::from_secs(5),
            "{strategy:?}: waited {back:?} after the proxy came back"
        );
    }
}

/// A server with the wrong identity keeps being reported as what it is: a TLS identity error,
/// on every connect, never a timeout.
#[tokio::test]
async fn wrong_identity_server_keeps_its_error() {
    for strategy in STRATEGIES {
        let env = Env::new().await;
        let inst = env.add(env.pg_config()).await;
        let connector = connector(&env, strategy);
        let name = inst.connection_name().to_owned();
        connector.connect(&name).await.unwrap();
        inst.faults().wrong_identity(true);
        for i in 0..8 {
            let err = connector.connect(&name).await.unwrap_err();
            let chain = error_chain(&err);
            assert!(
                matches!(err, Error::Tls { .. }),
                "{strategy:?} connect {i}: {chain}"
            );
            assert!(
                chain.contains("expected common name") || chain.contains("no SAN DNS name matching"),
                "{strategy:?}: the message names the identity check: {chain}"
            );
        }
    }
}

/// While the Admin API fails and nothing valid is cached, callers get the API's error, not a
/// timeout: the first one once the retries are spent, later ones at once (the failure is
/// remembered until the next paced attempt).
#[tokio::test]
async fn a_failed_refresh_is_reported_not_timed_out() {
    for strategy in STRATEGIES {
        let env = Env::new().await;
        let inst = env.add(env.pg_config()).await;
        inst.faults().admin_status(503, None);
        let connector = connector(&env, strategy);
        let name = inst.connection_name().to_owned();
        let err = connector.connect(&name).await.unwrap_err();
        assert!(
            matches!(err, Error::AdminApi { status: 503, .. }),
            "{strategy:?}: {err:?}"
        );
        let calls = inst.counters().total();

        let started = Instant::now();
        for _ in 0..10 {
            let err = connector.connect(&name).await.unwrap_err();
            assert!(
                matches!(err, Error::AdminApi { status: 503, .. }),
                "{strategy:?}: {err:?}"
            );
        }
        eprintln!(
            "{strategy:?}: 10 connects with a remembered failure took {:?}",
            started.elapsed()
        );
        assert_eq!(
            inst.counters().total(),
            calls,
            "{strategy:?}: the failure was not repeated"
        );

        // A connect that times out while a refresh is failing names the failure as its source.
        let timeout = DialOptions::new().timeout(Duration::from_millis(1));
        if let Err(err @ Error::Timeout { .. }) = connector.connect_with(&name, &timeout).await {
            assert!(error_chain(&err).contains("503"), "{}", error_chain(&err));
        }
    }
}

/// `close` with a refresh in flight: the waiting connect gets `Closed` at once, and no Admin API
/// call is made afterwards.
#[tokio::test]
async fn close_cancels_a_refresh_in_flight() {
    for strategy in STRATEGIES {
        let env = Env::new().await;
        let inst = env.add(env.pg_config()).await;
        inst.faults().admin_delay(Duration::from_secs(3));
        let connector = connector(&env, strategy);
        let name = inst.connection_name().to_owned();
        let pending = {
            let connector = connector.clone();
            let name = name.clone();
            tokio::spawn(async move { connector.connect(&name).await })
        };
        wait_for_calls(&inst, "connectSettings", 1).await;
        let closed_at = Instant::now();
        connector.close().await;
        let result = pending.await.unwrap();
        let took = closed_at.elapsed();
        eprintln!("{strategy:?}: pending connect ended {took:?} after close");
        assert!(matches!(result, Err(Error::Closed)), "{strategy:?}: {result:?}");
        assert!(took < Duration::from_secs(2), "{strategy:?}: {took:?}");
        let calls = inst.counters().total();
        tokio::time::sleep(Duration::from_secs(4)).await;
        assert_eq!(
            inst.counters().total(),
            calls,
            "{strategy:?}: no call after close"
        );
        assert!(
            inst.counters().calls("generateEphemeralCert") <= 1,
            "{strategy:?}: the certificate call was not retried"
        );
    }
}

/// After the instance's client CA rotates, the server refuses the cached certificate with a
/// fatal alert on the first read; the connector notices, and the second connect succeeds.
#[tokio::test]
async fn client_ca_rotation_is_recovered_by_the_second_connect() {
    for strategy in STRATEGIES {
        let env = Env::new().await;
        let inst: Arc<Instance> = env.add(env.pg_config()).await;
        let connector = connector(&env, strategy);
        let name = inst.connection_name().to_owned();
        assert_eq!(select_one(&connector, &name, &trust_login()).await.unwrap(), 1);
        wait_for_calls(&inst, "generateEphemeralCert", 1).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        let certs = inst.counters().calls("generateEphemeralCert");

        inst.rotate_client_ca().unwrap();
        let first = select_one(&connector, &name, &trust_login()).await;
        let err = first.expect_err("the old certificate is refused");
        assert!(
            error_chain(&err).to_lowercase().contains("unknownca") || error_chain(&err).contains("alert"),
            "{}",
            error_chain(&err)
        );
        assert_eq!(
            select_one(&connector, &name, &trust_login()).await.unwrap(),
            1,
            "{strategy:?}"
        );
        assert_eq!(
            inst.counters().calls("generateEphemeralCert"),
            certs + 1,
            "{strategy:?}"
        );
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// The client CA rotates while the Admin API is down: connects report the refusal or the API's
/// error at once — never a timeout — and recover once the API is back.
#[tokio::test]
async fn client_ca_rotation_during_an_outage_reports_real_errors() {
    for strategy in STRATEGIES {
        let env = Env::new().await;
        let inst = env.add(env.pg_config()).await;
        let connector = env
            .builder()
            .refresh_strategy(strategy)
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap();
        let name = inst.connection_name().to_owned();
        assert_eq!(select_one(&connector, &name, &trust_login()).await.unwrap(), 1);

        inst.faults().admin_status(503, None);
        inst.rotate_client_ca().unwrap();
        let mut seen = Vec::new();
        for _ in 0..6 {
            let err = select_one(&connector, &name, &trust_login()).await.unwrap_err();
            let chain = error_chain(&err);
            assert!(!chain.contains("timed out"), "{strategy:?}: {chain}");
            assert!(
                chain.contains("503") || chain.contains("alert"),
                "{strategy:?}: the refusal or the outage is named: {chain}"
            );
            seen.push(chain);
        }
        eprintln!("{strategy:?}: errors during the outage: {seen:#?}");

        inst.faults().clear();
        let deadline = Instant::now() + Duration::from_secs(45);
        let recovered = loop {
            match select_one(&connector, &name, &trust_login()).await {
                Ok(one) => break Some(one),
                Err(_) if Instant::now() < deadline => tokio::time::sleep(Duration::from_secs(1)).await,
                Err(_) => break None,
            }
        };
        assert_eq!(
            recovered,
            Some(1),
            "{strategy:?}: recovered once the Admin API was back"
        );
    }
}
