//! Instances named by DNS names: TXT records (sorted, first valid), CNAME chains, loops, and
//! Cloud SQL's own `*.sql.goog` names through `resolveConnectSettings`, against the emulator's
//! DNS server and a real resolver. Also one lookup per name however many callers, the last good
//! answer served through a DNS outage, failover to a new answer, and errors naming the DNS name.
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

mod support;

use std::io::Write;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cloudsql::core::{DialOptions, Error, IpType};
use cloudsql_emulator::{CaMode, InstanceConfig};
use support::*;

fn dns_connector(env: &Env) -> cloudsql::Connector {
    env.builder()
        .dns_nameserver(env.emulator.dns_addr())
        .build()
        .unwrap()
}

#[tokio::test]
async fn a_txt_record_names_the_instance() {
    let env = Env::new().await;
    let inst = env.add(env.pg_config()).await;
    let name = format!("{}.db.example.test", unique("orders"));
    // Several TXT records: sorted, the first that parses wins.
    env.emulator.add_txt_record(&name, "v=spf1 -all");
    env.emulator
        .add_txt_record(&name, "zz-project:us-central1:does-not-exist");
    env.emulator.add_txt_record(&name, inst.connection_name());
    let connector = dns_connector(&env);
    assert_eq!(select_one(&connector, &name, &trust_login()).await.unwrap(), 1);
    // A trailing dot and another case resolve to the same instance and cache.
    assert_eq!(
        select_one(&connector, &format!("{}.", name.to_uppercase()), &trust_login())
            .await
            .unwrap(),
        1
    );
    assert_eq!(inst.counters().total(), 2, "one refresh for both spellings");
}

#[tokio::test]
async fn cname_chains_are_followed_and_loops_refused() {
    let env = Env::new().await;
    let inst = env.add(env.pg_config()).await;
    let target = format!("{}.db.example.test", unique("target"));
    let alias = format!("{}.alias.example.test", unique("a"));
    let alias2 = format!("{}.alias.example.test", unique("b"));
    env.emulator.add_txt_record(&target, inst.connection_name());
    env.emulator.set_cname_record(&alias, &alias2);
    env.emulator.set_cname_record(&alias2, &target);
    let connector = dns_connector(&env);
    assert_eq!(select_one(&connector, &alias, &trust_login()).await.unwrap(), 1);

    let loop_a = format!("{}.loop.example.test", unique("x"));
    let loop_b = format!("{}.loop.example.test", unique("y"));
    env.emulator.set_cname_record(&loop_a, &loop_b);
    env.emulator.set_cname_record(&loop_b, &loop_a);
    let err = connector.connect(&loop_a).await.unwrap_err();
    eprintln!("CNAME loop error: {err}");
    match &err {
        Error::DnsResolution { name, detail } => {
            assert_eq!(name, &loop_a);
            assert!(
                detail.contains(&format!("CNAME loop: {loop_a} → {loop_b} → {loop_a}")),
                "{detail}"
            );
        }
        other => panic!("expected DnsResolution, got {other:?}"),
    }
}

#[tokio::test]
async fn cloud_sql_dns_names_resolve_through_the_admin_api() {
    let env = Env::new().await;
    let inst = env.add(env.pg_config().ca_mode(CaMode::GoogleManagedCas)).await;
    let dns_name = inst.dns_name().unwrap().to_owned();
    assert!(dns_name.ends_with(".us-central1.sql.goog"), "{dns_name}");
    let connector = dns_connector(&env);
    assert_eq!(
        select_one(&connector, &dns_name, &trust_login()).await.unwrap(),
        1
    );
    assert_eq!(inst.counters().calls("resolveConnectSettings"), 1);
}

#[tokio::test]
async fn unknown_names_fail_with_a_typed_error_that_says_what_to_do() {
    let env = Env::new().await;
    let connector = dns_connector(&env);
    let err = connector.connect("nothing-here.example.test").await.unwrap_err();
    match &err {
        Error::DnsResolution { name, detail } => {
            assert_eq!(name, "nothing-here.example.test");
            assert!(detail.contains("TXT"), "{detail}");
        }
        other => panic!("expected DnsResolution, got {other:?}"),
    }
    // A TXT record that holds no connection name.
    env.emulator.add_txt_record("junk.example.test", "hello world");
    let err = connector.connect("junk.example.test").await.unwrap_err();
    assert!(err.to_string().contains("PROJECT:REGION:INSTANCE"), "{err}");
    // An unknown *.sql.goog name is a 404 from resolveConnectSettings.
    let err = connector
        .connect("aaaa.bbbb.us-central1.sql.goog")
        .await
        .unwrap_err();
    assert!(matches!(err, Error::AdminApi { status: 404, .. }), "{err:?}");
}

#[tokio::test]
async fn drivers_accept_dns_names_too() {
    let env = Env::new().await;
    let inst = env.add(env.mysql_config()).await;
    let user = unique("app");
    create_mysql_user(&user, "pw").await;
    let name = format!("{}.mysql.example.test", unique("m"));
    env.emulator.add_txt_record(&name, inst.connection_name());
    let connector = dns_connector(&env);
    let pool = cloudsql::mysql::pool(&connector, &name, mysql_login(&user, Some("pw")))
        .await
        .unwrap();
    use mysql_async::prelude::Queryable;
    let one: Option<i64> = pool
        .get_conn()
        .await
        .unwrap()
        .query_first("SELECT 1")
        .await
        .unwrap();
    assert_eq!(one, Some(1));
    pool.disconnect().await.unwrap();
}

/// A backend that accepts connections and drops them: the tests below only need the connector's
/// TLS stream, and hundreds of them must not use up the real database's connection slots.
async fn sink_backend() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            drop(stream);
        }
    });
    addr
}

fn sink_config(backend: SocketAddr) -> InstanceConfig {
    InstanceConfig::new(
        &format!("test-project:us-central1:{}", unique("dns")),
        "POSTGRES_15",
        backend,
    )
}

/// Runs `n` connects to `name` at once; returns the failures' messages and the slowest one.
async fn connect_many(connector: &cloudsql::Connector, name: &str, n: usize) -> (Vec<String>, Duration) {
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let connector = connector.clone();
            let name = name.to_owned();
            tokio::spawn(async move {
                let started = Instant::now();
                let result = connector.connect(&name).await.map(drop);
                (result, started.elapsed())
            })
        })
        .collect();
    let mut failures = Vec::new();
    let mut slowest = Duration::ZERO;
    for task in tasks {
        let (result, took) = task.await.unwrap();
        slowest = slowest.max(took);
        if let Err(e) = result {
            failures.push(e.to_string());
        }
    }
    (failures, slowest)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_first_connects_by_a_cloud_sql_name_make_one_resolve_call() {
    let env = Env::new().await;
    let inst = env
        .add(sink_config(sink_backend().await).ca_mode(CaMode::GoogleManagedCas))
        .await;
    let dns_name = inst.dns_name().unwrap().to_owned();
    let connector = dns_connector(&env);
    let (failures, slowest) = connect_many(&connector, &dns_name, 200).await;
    let calls = inst.counters().calls("resolveConnectSettings");
    eprintln!(
        "200 concurrent first connects by {dns_name}: {} failed, slowest {slowest:?}, \
         {calls} resolveConnectSettings call(s), {} DNS queries",
        failures.len(),
        env.emulator.dns_queries(&dns_name)
    );
    assert!(failures.is_empty(), "{failures:?}");
    assert_eq!(calls, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_first_connects_by_a_txt_name_make_one_dns_query() {
    let env = Env::new().await;
    let inst = env.add(sink_config(sink_backend().await)).await;
    let name = format!("{}.db.example.test", unique("burst"));
    env.emulator.add_txt_record(&name, inst.connection_name());
    let connector = dns_connector(&env);
    let (failures, slowest) = connect_many(&connector, &name, 200).await;
    // TXT only: each connect also looks up the custom name's own address (A/AAAA) to dial.
    let queries = env.emulator.dns_queries_of_type(&name, "TXT");
    eprintln!(
        "200 concurrent first connects by {name}: {} failed, slowest {slowest:?}, {queries} TXT \
         query(ies), {} DNS queries in all",
        failures.len(),
        env.emulator.dns_queries(&name)
    );
    assert!(failures.is_empty(), "{failures:?}");
    assert_eq!(queries, 1);
}

/// Collects what the test's tracing subscriber writes.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Captured {
    fn lines_with(&self, needle: &str) -> Vec<String> {
        String::from_utf8_lossy(&self.0.lock().unwrap())
            .lines()
            .filter(|l| l.contains(needle))
            .map(str::to_owned)
            .collect()
    }
}

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The DNS server stops answering for 60 s after the name resolved, with a connect every second
/// and a 1 s cache TTL: every connect gets the last good answer at once. Then the name vanishes
/// (NXDOMAIN: still served, as failover is off here; with it on, NXDOMAIN closes the name's
/// connections and is final, see tests/dns_failover.rs), then points at another instance
/// (followed).
// One thread, so the subscriber set for this test sees the connector's background tasks too.
#[tokio::test(flavor = "current_thread")]
async fn a_dns_outage_serves_the_last_good_answer_and_a_new_answer_repoints() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::INFO)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let env = Env::new().await;
    let first = env.add(sink_config(sink_backend().await)).await;
    let second = env.add(sink_config(sink_backend().await)).await;
    let name = format!("{}.db.example.test", unique("outage"));
    env.emulator.add_txt_record(&name, first.connection_name());
    let connector = env
        .builder()
        .dns_nameserver(env.emulator.dns_addr())
        .dns_cache_ttl(Duration::from_secs(1))
        .failover_period(Duration::ZERO)
        .build()
        .unwrap();
    connector.connect(&name).await.unwrap();

    // The outage, switched on over HTTP as a client in another process would.
    let http = reqwest::Client::new();
    let stop = format!("{}/emulator/v1/dns/stop", env.emulator.admin_api_url());
    assert_eq!(http.post(stop).send().await.unwrap().status(), 204);
    let queries_before = env.emulator.dns_queries(&name);
    let (mut failed, mut slowest) = (0, Duration::ZERO);
    for _ in 0..60 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let started = Instant::now();
        if let Err(e) = connector.connect(&name).await {
            eprintln!("connect during the DNS outage failed: {e}");
            failed += 1;
        }
        slowest = slowest.max(started.elapsed());
    }
    let dropped = env.emulator.dns_queries(&name) - queries_before;
    let warnings = captured.lines_with("could not refresh DNS name");
    eprintln!(
        "60 s DNS outage, a connect per second: {failed} failed, slowest {slowest:?}, \
         {dropped} DNS queries dropped, {} warning(s)",
        warnings.len()
    );
    assert_eq!(failed, 0);
    assert!(slowest < Duration::from_secs(3), "{slowest:?}");
    assert_eq!(warnings.len(), 1, "one warning per failing streak: {warnings:?}");
    eprintln!("the warning: {}", warnings[0]);
    assert!(
        warnings[0].contains(&format!("dns_name={name}")),
        "{}",
        warnings[0]
    );
    assert!(
        first.counters().connections() >= 60,
        "{}",
        first.counters().connections()
    );

    // The DNS server answers again, but the name is gone: still served (and still one warning).
    env.emulator.remove_dns_records(&name);
    env.emulator.set_dns_down(false);
    for _ in 0..8 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        connector.connect(&name).await.unwrap();
    }
    assert_eq!(captured.lines_with("could not refresh DNS name").len(), 1);

    // Failover: the name now points at another instance; new connects follow it.
    env.emulator.add_txt_record(&name, second.connection_name());
    let repointed = Instant::now();
    while second.counters().connections() == 0 {
        assert!(
            repointed.elapsed() < Duration::from_secs(20),
            "connects never reached the new instance"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
        connector.connect(&name).await.unwrap();
    }
    eprintln!(
        "connects reached the new instance {:?} after the TXT record changed",
        repointed.elapsed()
    );
    assert_eq!(captured.lines_with("now points to another instance").len(), 1);
    assert_eq!(captured.lines_with("DNS name resolves again").len(), 1);
}

#[tokio::test]
async fn a_first_lookup_with_the_dns_server_down_fails_within_seconds() {
    let env = Env::new().await;
    let name = format!("{}.db.example.test", unique("down"));
    env.emulator
        .add_txt_record(&name, "test-project:us-central1:whatever");
    env.emulator.set_dns_down(true);
    let connector = dns_connector(&env);
    let started = Instant::now();
    let err = connector.connect(&name).await.unwrap_err();
    let took = started.elapsed();
    eprintln!("first lookup with the DNS server down failed after {took:?}: {err}");
    assert!(matches!(err, Error::DnsResolution { .. }), "{err:?}");
    assert!(
        err.to_string().contains(&env.emulator.dns_addr().to_string()),
        "{err}"
    );
    assert!(took < Duration::from_secs(8), "{took:?}");
}

#[tokio::test]
async fn errors_after_resolution_name_the_dns_name() {
    let env = Env::new().await;
    let inst = env.add(sink_config(sink_backend().await)).await;
    let name = format!("{}.db.example.test", unique("named"));
    env.emulator.add_txt_record(&name, inst.connection_name());
    let connector = dns_connector(&env);
    let err = connector
        .connect_with(&name, &DialOptions::new().ip_type(IpType::Private))
        .await
        .unwrap_err();
    eprintln!("error after resolution: {err}");
    match &err {
        Error::NoIpAddress { instance, .. } => {
            assert_eq!(instance, &format!("{} (DNS name {name})", inst.connection_name()));
        }
        other => panic!("expected NoIpAddress, got {other:?}"),
    }
    inst.stop();
    let err = connector.connect(&name).await.unwrap_err();
    eprintln!("error after resolution: {err}");
    assert!(err.to_string().contains(&format!("(DNS name {name})")), "{err}");
}

#[tokio::test]
async fn close_stops_a_lookup_in_flight() {
    let env = Env::new().await;
    let name = format!("{}.db.example.test", unique("closing"));
    env.emulator.set_dns_down(true);
    let connector = dns_connector(&env);
    let waiting = tokio::spawn({
        let connector = connector.clone();
        async move { connector.connect(&name).await.map(drop) }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    connector.close().await;
    let result = waiting.await.unwrap();
    eprintln!(
        "connect waiting for a lookup returned {:?} after close",
        started.elapsed()
    );
    assert!(matches!(result, Err(Error::Closed)), "{result:?}");
    assert!(started.elapsed() < Duration::from_secs(1));
}
