//! bb8 pools built with the crates' `pool_builder` log every failed connect at `warn!`, naming
//! the instance and the whole cause — also when the app checks out with bb8's own
//! `Pool::get`, which answers "Timed out in bb8". Its own test binary: it installs the global
//! tracing subscriber.
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

mod support;

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use support::*;

/// Everything logged by this test binary.
fn logs() -> &'static Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = Arc::new(Mutex::new(Vec::new()));
        let writer = Capture(logs.clone());
        tracing_subscriber::fmt()
            .with_env_filter("warn")
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .init();
        logs
    })
}

#[derive(Clone)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The warn lines of `target` (a crate's bb8 module) that name `instance`.
fn warnings_for(target: &str, instance: &str) -> Vec<String> {
    let logs = logs().lock().unwrap();
    String::from_utf8_lossy(&logs)
        .lines()
        .filter(|line| {
            line.contains(" WARN ")
                && line.contains(&format!(" {target}: "))
                && line.contains(&format!("instance={instance}"))
        })
        .map(str::to_owned)
        .collect()
}

fn names_identity(line: &str) -> bool {
    line.contains("expected common name") || line.contains("no SAN DNS name matching")
}

const TIMEOUT: Duration = Duration::from_secs(2);

#[tokio::test]
async fn bb8_postgres_logs_the_cause_of_a_failed_connect() {
    use cloudsql::postgres::bb8::{CloudSqlConnectionManager, pool_builder};
    logs();
    let env = Env::new().await;
    let inst = env.add(env.pg_config()).await;
    inst.faults().wrong_identity(true);
    let manager = CloudSqlConnectionManager::new(env.connector(), inst.connection_name(), trust_login());
    let pool = pool_builder(&manager)
        .max_size(1)
        .connection_timeout(TIMEOUT)
        .retry_connection(false)
        .build(manager)
        .await
        .unwrap();
    // bb8's own checkout cannot carry the error: it waits for the timeout. The log has it.
    let started = Instant::now();
    let err = pool.get().await.err().unwrap();
    println!("bb8 Pool::get: {err} after {:?}", started.elapsed());
    assert!(matches!(err, bb8::RunError::TimedOut), "{err:?}");
    let warnings = warnings_for("cloudsql_postgres::bb8", inst.connection_name());
    println!("{}", warnings.join("\n"));
    assert!(
        warnings.iter().any(|line| names_identity(line)),
        "no warn line names the cause: {warnings:?}"
    );
}

#[tokio::test]
async fn bb8_tiberius_logs_the_cause_of_a_failed_connect() {
    use cloudsql::mssql::bb8::{CloudSqlConnectionManager, pool_builder};
    logs();
    let env = Env::new().await;
    let inst = env
        .add(
            cloudsql_emulator::InstanceConfig::sql_server(&format!(
                "test-project:us-central1:{}",
                unique("mssql")
            ))
            .sql_login("sqlserver", "S3cret!"),
        )
        .await;
    inst.faults().admin_status(403, None);
    let mut config = tiberius::Config::new();
    config.authentication(tiberius::AuthMethod::sql_server("sqlserver", "S3cret!"));
    let manager = CloudSqlConnectionManager::new(env.connector(), inst.connection_name(), config);
    let errors = manager.connect_errors();
    let pool = pool_builder(&manager)
        .max_size(1)
        .connection_timeout(TIMEOUT)
        .retry_connection(false)
        .build(manager)
        .await
        .unwrap();
    let started = Instant::now();
    let err = errors.get(&pool).await.err().unwrap();
    println!("ConnectErrors::get: {err} after {:?}", started.elapsed());
    assert!(started.elapsed() < TIMEOUT / 2, "waited for the timeout");
    assert!(
        matches!(&err, bb8::RunError::User(e) if e.to_string().contains("HTTP 403")),
        "{err:?}"
    );
    let warnings = warnings_for("cloudsql_mssql::bb8", inst.connection_name());
    println!("{}", warnings.join("\n"));
    assert!(
        warnings.iter().any(|line| line.contains("HTTP 403")),
        "no warn line names the cause: {warnings:?}"
    );
}
