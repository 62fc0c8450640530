//! The local socket under the drivers that need it (mysql_async, sqlx): one socket however many
//! callers race to create it, pools that outlive the application's connector handles and keep
//! their connections through a close, and the connector's real error (a refused server identity,
//! a closed connector) reaching the application and the warn log.
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

mod support;

use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cloudsql::core::driver::DriverDial;
use cloudsql::core::{DialOptions, Engine, Error};
use cloudsql_emulator::CaMode;
use mysql_async::prelude::*;
use sqlx::Connection as _;
use support::*;
use tracing_subscriber::fmt::MakeWriter;

const RACERS: usize = 200;

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

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

async fn wait_until_gone(path: &Path) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    while path.exists() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    !path.exists()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_first_mysql_opts_calls_share_one_socket() {
    let env = Env::new().await;
    let inst = env.add(env.mysql_config()).await;
    let connector = env.connector();
    let fds_before = open_fds();
    let started = Instant::now();
    let tasks: Vec<_> = (0..RACERS)
        .map(|_| {
            let connector = connector.clone();
            let name = inst.connection_name().to_owned();
            tokio::spawn(async move {
                let opts = cloudsql::mysql::opts(&connector, &name, mysql_login("app", Some("pw")))
                    .await
                    .unwrap();
                opts.socket().unwrap().to_owned()
            })
        })
        .collect();
    let mut paths = HashSet::new();
    for t in tasks {
        paths.insert(t.await.unwrap());
    }
    let fds_after = open_fds();
    eprintln!(
        "{RACERS} concurrent cloudsql_mysql::opts: {} socket(s), fds {fds_before} -> {fds_after}, {:?}",
        paths.len(),
        started.elapsed()
    );
    assert_eq!(paths.len(), 1, "{paths:?}");
    assert!(
        fds_after < fds_before + 20,
        "fds grew from {fds_before} to {fds_after}"
    );
    assert_eq!(inst.counters().total(), 2, "one refresh for every caller");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_first_sqlx_connect_options_calls_share_one_socket() {
    let env = Env::new().await;
    let pg = env.add(env.pg_config()).await;
    let my = env.add(env.mysql_config()).await;
    let connector = env.connector();
    let fds_before = open_fds();
    let tasks: Vec<_> = (0..RACERS)
        .map(|i| {
            let connector = connector.clone();
            let (pg, my) = (pg.connection_name().to_owned(), my.connection_name().to_owned());
            tokio::spawn(async move {
                if i % 2 == 0 {
                    let base = sqlx::postgres::PgConnectOptions::new().username("postgres");
                    let options = cloudsql::sqlx::postgres::connect_options(&connector, &pg, base)
                        .await
                        .unwrap();
                    options.get_socket().unwrap().to_owned()
                } else {
                    let base = sqlx::mysql::MySqlConnectOptions::new().username("app");
                    let options = cloudsql::sqlx::mysql::connect_options(&connector, &my, base)
                        .await
                        .unwrap();
                    options.get_socket().unwrap().to_owned()
                }
            })
        })
        .collect();
    let mut paths = HashSet::new();
    for t in tasks {
        paths.insert(t.await.unwrap());
    }
    let fds_after = open_fds();
    eprintln!(
        "{RACERS} concurrent sqlx connect_options (half Postgres, half MySQL): {} socket(s), fds {fds_before} -> {fds_after}",
        paths.len()
    );
    assert_eq!(paths.len(), 2, "one per instance: {paths:?}");
    assert!(
        fds_after < fds_before + 20,
        "fds grew from {fds_before} to {fds_after}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_pool_keeps_its_connections_through_close_and_drop() {
    let env = Env::new().await;
    let inst = env.add(env.mysql_config()).await;
    let user = unique("app");
    create_mysql_user(&user, "app-password").await;
    let login = || mysql_login(&user, Some("app-password"));

    // Close: the connections in use keep working; new ones are refused as closed.
    let connector = env.connector();
    let pool = cloudsql::mysql::pool(&connector, inst.connection_name(), login())
        .await
        .unwrap();
    let mut conns = Vec::new();
    for _ in 0..4 {
        conns.push(pool.get_conn().await.unwrap());
    }
    connector.close().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    for conn in &mut conns {
        let one: Option<i64> = conn.query_first("SELECT 1").await.unwrap();
        assert_eq!(one, Some(1));
    }
    let err = pool.get_conn().await.unwrap_err();
    eprintln!("mysql_async pool checkout after close: {err}");
    assert!(err.to_string().contains("the connector is closed"), "{err}");
    assert!(!err.to_string().contains("No such file"), "{err}");
    let err = cloudsql::mysql::connect(&connector, inst.connection_name(), login())
        .await
        .unwrap_err();
    assert!(
        matches!(err, cloudsql::mysql::Error::Connector(Error::Closed)),
        "{err:?}"
    );
    drop(conns);
    pool.disconnect().await.unwrap();

    // Drop: the pool keeps the connector alive; old and new connections work.
    let connector = env.connector();
    let opts = cloudsql::mysql::opts(&connector, inst.connection_name(), login())
        .await
        .unwrap();
    let path = PathBuf::from(opts.socket().unwrap());
    let pool = mysql_async::Pool::new(opts);
    let mut conns = Vec::new();
    for _ in 0..4 {
        conns.push(pool.get_conn().await.unwrap());
    }
    drop(connector);
    tokio::time::sleep(Duration::from_millis(500)).await;
    for conn in &mut conns {
        let one: Option<i64> = conn.query_first("SELECT 1").await.unwrap();
        assert_eq!(one, Some(1));
    }
    let mut fresh = pool.get_conn().await.unwrap();
    let two: Option<i64> = fresh.query_first("SELECT 2").await.unwrap();
    assert_eq!(two, Some(2));
    drop((conns, fresh));
    pool.disconnect().await.unwrap();
    assert!(
        wait_until_gone(&path).await,
        "the socket goes when the last pool does"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlx_pool_keeps_its_connections_through_close_and_drop() {
    let env = Env::new().await;
    let inst = env.add(env.pg_config()).await;
    let base = || {
        sqlx::postgres::PgConnectOptions::new()
            .username("postgres")
            .database("postgres")
    };
    let pool_options = || sqlx::postgres::PgPoolOptions::new().max_connections(8);

    let connector = env.connector();
    let pool = cloudsql::sqlx::postgres::pool(&connector, inst.connection_name(), base(), pool_options())
        .await
        .unwrap();
    let mut conns = Vec::new();
    for _ in 0..4 {
        conns.push(pool.acquire().await.unwrap());
    }
    connector.close().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    for conn in &mut conns {
        let one: i32 = sqlx::query_scalar("SELECT 1")
            .fetch_one(&mut **conn)
            .await
            .unwrap();
        assert_eq!(one, 1);
    }
    let err = pool.acquire().await.unwrap_err();
    eprintln!("sqlx pool checkout after close: {err}");
    assert!(err.to_string().contains("the connector is closed"), "{err}");
    drop(conns);
    pool.close().await;

    let connector = env.connector();
    let pool = cloudsql::sqlx::postgres::pool(&connector, inst.connection_name(), base(), pool_options())
        .await
        .unwrap();
    let path = DriverDial::new(
        &connector,
        inst.connection_name(),
        Engine::Postgres,
        &DialOptions::new(),
    )
    .local_socket()
    .postgres_unix()
    .serve()
    .await
    .unwrap()
    .path()
    .to_owned();
    let mut conns = Vec::new();
    for _ in 0..4 {
        conns.push(pool.acquire().await.unwrap());
    }
    drop(connector);
    tokio::time::sleep(Duration::from_millis(500)).await;
    for conn in &mut conns {
        let one: i32 = sqlx::query_scalar("SELECT 1")
            .fetch_one(&mut **conn)
            .await
            .unwrap();
        assert_eq!(one, 1);
    }
    let mut fresh = pool.acquire().await.unwrap();
    fresh.ping().await.unwrap();
    drop((conns, fresh));
    assert!(path.exists(), "the pool keeps the socket");
    pool.close().await;
    assert!(
        wait_until_gone(&path).await,
        "the socket goes when the pool closes"
    );
}

/// Collects everything the subscriber writes.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Captured {
    fn warnings(&self) -> Vec<String> {
        String::from_utf8_lossy(&self.0.lock().unwrap())
            .lines()
            .filter(|l| l.contains("WARN"))
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

impl<'a> MakeWriter<'a> for Captured {
    type Writer = Captured;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

/// Logs of this thread (a current-thread runtime runs every task on it).
fn capture_logs() -> (Captured, tracing::subscriber::DefaultGuard) {
    let captured = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(captured.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::WARN)
        .finish();
    let guard = tracing::subscriber::set_default(subscriber);
    (captured, guard)
}

#[tokio::test]
async fn a_wrong_server_identity_reaches_mysql_async_and_the_log() {
    let (captured, _guard) = capture_logs();
    let env = Env::new().await;
    let inst = env.add(env.mysql_config().ca_mode(CaMode::Legacy)).await;
    inst.faults().wrong_identity(true);
    let connector = env.connector();

    let err = cloudsql::mysql::connect(&connector, inst.connection_name(), mysql_login("app", Some("pw")))
        .await
        .unwrap_err();
    let text = chain(&err);
    eprintln!("cloudsql_mysql::connect with a wrong server identity: {text}");
    assert!(
        matches!(err, cloudsql::mysql::Error::Connector(Error::Tls { .. })),
        "{err:?}"
    );
    assert!(text.contains("expected common name"), "{text}");

    // A pool's own connects get the message in a MySQL error.
    let pool = mysql_async::Pool::new(
        cloudsql::mysql::opts(&connector, inst.connection_name(), mysql_login("app", Some("pw")))
            .await
            .unwrap(),
    );
    let err = pool.get_conn().await.unwrap_err();
    eprintln!("mysql_async pool checkout with a wrong server identity: {err}");
    assert!(err.to_string().contains("expected common name"), "{err}");
    pool.disconnect().await.unwrap();

    let socket = DriverDial::new(
        &connector,
        inst.connection_name(),
        Engine::MySql,
        &DialOptions::new(),
    )
    .local_socket()
    .unix_file("mysql.sock")
    .serve()
    .await
    .unwrap();
    assert_eq!(socket.failed_dials(), 2);
    assert!(matches!(socket.last_error(), Some(Error::Tls { .. })));

    let warnings = captured.warnings();
    let line = warnings
        .iter()
        .find(|l| l.contains("could not dial"))
        .unwrap_or_else(|| panic!("a warning for the failed dial: {warnings:#?}"));
    eprintln!("warn line: {line}");
    assert!(line.contains("expected common name"), "{line}");
    assert!(
        line.contains(&format!("instance={}", inst.connection_name())),
        "{line}"
    );
    assert!(line.contains("socket=unix://"), "{line}");
}

#[tokio::test]
async fn a_wrong_server_identity_reaches_a_sqlx_pool_and_the_log() {
    let (captured, _guard) = capture_logs();
    let env = Env::new().await;
    let inst = env.add(env.pg_config().ca_mode(CaMode::GoogleManagedCas)).await;
    inst.faults().wrong_identity(true);
    let connector = env.connector();

    let base = sqlx::postgres::PgConnectOptions::new().username("postgres");
    let err = cloudsql::sqlx::postgres::pool(
        &connector,
        inst.connection_name(),
        base.clone(),
        sqlx::postgres::PgPoolOptions::new().acquire_timeout(Duration::from_secs(10)),
    )
    .await
    .unwrap_err();
    let text = chain(&err);
    eprintln!("cloudsql_sqlx::postgres::pool with a wrong server identity: {text}");
    assert!(
        matches!(err, cloudsql::sqlx::Error::Connector(Error::Tls { .. })),
        "{err:?}"
    );
    assert!(text.contains("no SAN DNS name matching"), "{text}");

    // A connection sqlx opens by itself gets it as a database error.
    let options = cloudsql::sqlx::postgres::connect_options(&connector, inst.connection_name(), base)
        .await
        .unwrap();
    let err = sqlx::PgConnection::connect_with(&options).await.unwrap_err();
    eprintln!("sqlx connect with a wrong server identity: {err}");
    assert!(err.to_string().contains("no SAN DNS name matching"), "{err}");

    let warnings = captured.warnings();
    let line = warnings
        .iter()
        .find(|l| l.contains("could not dial"))
        .unwrap_or_else(|| panic!("a warning for the failed dial: {warnings:#?}"));
    assert!(line.contains("no SAN DNS name matching"), "{line}");
    assert!(line.contains("socket=unix://"), "{line}");
}
