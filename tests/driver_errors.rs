//! Every driver crate's error names the cause of a Cloud SQL failure when printed with `{}`
//! alone — a server with the wrong identity, an Admin API error status, a closed connector —
//! and an error-chain printer (anyhow's `{:#}`) prints that cause once. bb8 pools built the
//! documented way answer a failed connect with the real error, without waiting for the pool's
//! connection timeout.
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

mod support;

use std::fmt::Display;
use std::time::{Duration, Instant};

use cloudsql::core::Connector;
use cloudsql_emulator::Instance;
use support::*;

/// What the connector says about a server with the wrong identity (legacy CN or CAS SAN check).
fn names_identity(msg: &str) -> bool {
    msg.contains("expected common name") || msg.contains("no SAN DNS name matching")
}

fn names_403(msg: &str) -> bool {
    msg.contains("HTTP 403")
}

fn names_closed(msg: &str) -> bool {
    msg.contains("closed")
}

/// Checks that `{}` names the cause and that anyhow's chain printer says it only once.
fn assert_names<E>(err: E, cause: fn(&str) -> bool, what: &str)
where
    E: std::error::Error + Send + Sync + 'static,
{
    let shown = err.to_string();
    println!("{what}: {shown}");
    assert!(cause(&shown), "{what}: `{{}}` does not name the cause: {shown}");
    let chain = format!("{:#}", anyhow::Error::new(err));
    assert_eq!(
        chain, shown,
        "{what}: a chain printer repeats or adds text: {chain}"
    );
}

/// A connector of its own (nothing cached) and an instance with `fault` on.
async fn faulty(
    env: &Env,
    config: cloudsql_emulator::InstanceConfig,
    fault: Fault,
) -> (Connector, std::sync::Arc<Instance>) {
    let inst = env.add(config).await;
    match fault {
        Fault::WrongIdentity => inst.faults().wrong_identity(true),
        Fault::Forbidden => inst.faults().admin_status(403, None),
        Fault::Closed => {}
    }
    let connector = env.connector();
    if let Fault::Closed = fault {
        connector.close().await;
    }
    (connector, inst)
}

#[derive(Debug, Clone, Copy)]
enum Fault {
    WrongIdentity,
    Forbidden,
    Closed,
}

impl Fault {
    fn cause(self) -> fn(&str) -> bool {
        match self {
            Fault::WrongIdentity => names_identity,
            Fault::Forbidden => names_403,
            Fault::Closed => names_closed,
        }
    }
}

const ALL: [Fault; 3] = [Fault::WrongIdentity, Fault::Forbidden, Fault::Closed];
/// The local-socket drivers lose a dial's cause inside the driver; what they print at pool
/// creation is the connector's refusal.
const AT_CREATION: [Fault; 2] = [Fault::Forbidden, Fault::Closed];

#[tokio::test]
async fn tokio_postgres_errors_name_the_cause() {
    let env = Env::new().await;
    for fault in ALL {
        let (connector, inst) = faulty(&env, env.pg_config(), fault).await;
        let err = cloudsql::postgres::connect(&connector, inst.connection_name(), &trust_login())
            .await
            .err()
            .unwrap();
        assert!(err.as_connector().is_some(), "{err:?}");
        assert_names(err, fault.cause(), &format!("tokio-postgres {fault:?}"));
    }
}

#[tokio::test]
async fn deadpool_errors_name_the_cause() {
    let env = Env::new().await;
    for fault in ALL {
        let (connector, inst) = faulty(&env, env.pg_config(), fault).await;
        let pool =
            cloudsql::postgres::deadpool::pool_builder(connector, inst.connection_name(), trust_login())
                .max_size(2)
                .build()
                .unwrap();
        let err = pool.get().await.err().unwrap();
        // tokio-postgres prints an I/O error as a fixed text and deadpool prints that, so the
        // cause is in the chain: it must be there once, and `connector_error` must find it.
        let deadpool_postgres::PoolError::Backend(pg) = &err else {
            panic!("deadpool {fault:?}: expected a backend error, got {err:?}")
        };
        let connector_text =
            cloudsql::postgres::Error::from(cloudsql::postgres::connector_error(pg).unwrap().clone())
                .to_string();
        let chain = format!("{:#}", anyhow::Error::new(err));
        println!("deadpool {fault:?}: {chain}");
        assert!(fault.cause()(&chain), "deadpool {fault:?}: {chain}");
        assert_eq!(
            chain.matches(&connector_text).count(),
            1,
            "deadpool {fault:?}: the cause is printed more than once: {chain}"
        );
    }
}

/// A bb8 pool built the documented way, with retries off and a 10 s connection timeout.
async fn bb8_postgres(
    connector: Connector,
    inst: &Instance,
) -> (
    bb8::Pool<cloudsql::postgres::bb8::CloudSqlConnectionManager>,
    cloudsql::postgres::bb8::ConnectErrors,
) {
    use cloudsql::postgres::bb8::{CloudSqlConnectionManager, pool_builder};
    let manager = CloudSqlConnectionManager::new(connector, inst.connection_name(), trust_login());
    let errors = manager.connect_errors();
    let pool = pool_builder(&manager)
        .max_size(2)
        .connection_timeout(BB8_TIMEOUT)
        .retry_connection(false)
        .build(manager)
        .await
        .unwrap();
    (pool, errors)
}

const BB8_TIMEOUT: Duration = Duration::from_secs(10);

/// bb8 must answer well before its connection timeout.
fn assert_prompt(started: Instant, what: impl Display) {
    let took = started.elapsed();
    assert!(
        took < BB8_TIMEOUT / 2,
        "{what}: took {took:?}, bb8 waited for its timeout"
    );
}

#[tokio::test]
async fn bb8_postgres_checkouts_return_the_real_error_at_once() {
    let env = Env::new().await;
    for fault in ALL {
        let (connector, inst) = faulty(&env, env.pg_config(), fault).await;
        let (pool, errors) = bb8_postgres(connector, &inst).await;
        let started = Instant::now();
        let err = errors.get(&pool).await.err().unwrap();
        assert_prompt(started, format_args!("bb8 postgres {fault:?}"));
        let bb8::RunError::User(err) = err else {
            panic!("bb8 postgres {fault:?}: expected the connect error, got {err:?}")
        };
        assert_names(err, fault.cause(), &format!("bb8 postgres {fault:?}"));
    }
}

#[tokio::test]
async fn bb8_postgres_pool_still_serves_after_a_failed_connect() {
    let env = Env::new().await;
    let inst = env.add(env.pg_config()).await;
    inst.faults().wrong_identity(true);
    let (pool, errors) = bb8_postgres(env.connector(), &inst).await;
    assert!(errors.get(&pool).await.is_err());
    inst.faults().wrong_identity(false);
    let client = errors.get(&pool).await.unwrap();
    let row = client.query_one("SELECT 1::int4", &[]).await.unwrap();
    assert_eq!(row.get::<_, i32>(0), 1);
}

#[tokio::test]
async fn mysql_async_errors_name_the_connector_cause() {
    let env = Env::new().await;
    for fault in AT_CREATION {
        let (connector, inst) = faulty(&env, env.mysql_config(), fault).await;
        let err = cloudsql::mysql::pool(&connector, inst.connection_name(), mysql_login("app", Some("x")))
            .await
            .err()
            .unwrap();
        assert!(err.as_connector().is_some(), "{err:?}");
        assert_names(err, fault.cause(), &format!("mysql_async pool {fault:?}"));
        let err = cloudsql::mysql::connect(&connector, inst.connection_name(), mysql_login("app", Some("x")))
            .await
            .err()
            .unwrap();
        assert_names(err, fault.cause(), &format!("mysql_async conn {fault:?}"));
    }
}

#[tokio::test]
async fn sqlx_errors_name_the_connector_cause() {
    use sqlx::mysql::{MySqlConnectOptions, MySqlPoolOptions};
    use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
    let env = Env::new().await;
    for fault in AT_CREATION {
        let (connector, inst) = faulty(&env, env.pg_config(), fault).await;
        let err = cloudsql::sqlx::postgres::pool(
            &connector,
            inst.connection_name(),
            PgConnectOptions::new().username("postgres"),
            PgPoolOptions::new(),
        )
        .await
        .err()
        .unwrap();
        assert!(err.as_connector().is_some(), "{err:?}");
        assert_names(err, fault.cause(), &format!("sqlx postgres {fault:?}"));

        let (connector, inst) = faulty(&env, env.mysql_config(), fault).await;
        let err = cloudsql::sqlx::mysql::pool(
            &connector,
            inst.connection_name(),
            MySqlConnectOptions::new().username("app"),
            MySqlPoolOptions::new(),
        )
        .await
        .err()
        .unwrap();
        assert_names(err, fault.cause(), &format!("sqlx mysql {fault:?}"));
    }
}

fn sql_server() -> cloudsql_emulator::InstanceConfig {
    cloudsql_emulator::InstanceConfig::sql_server(&format!("test-project:us-central1:{}", unique("mssql")))
        .sql_login("sqlserver", "S3cret!")
}

fn mssql_login() -> tiberius::Config {
    let mut config = tiberius::Config::new();
    config.authentication(tiberius::AuthMethod::sql_server("sqlserver", "S3cret!"));
    config
}

#[tokio::test]
async fn tiberius_errors_name_the_cause() {
    let env = Env::new().await;
    for fault in ALL {
        let (connector, inst) = faulty(&env, sql_server(), fault).await;
        let err = cloudsql::mssql::connect(&connector, inst.connection_name(), mssql_login())
            .await
            .err()
            .unwrap();
        assert!(err.as_connector().is_some(), "{err:?}");
        assert_names(err, fault.cause(), &format!("tiberius {fault:?}"));
    }
}

#[tokio::test]
async fn bb8_tiberius_checkouts_return_the_real_error_at_once() {
    use cloudsql::mssql::bb8::{CloudSqlConnectionManager, pool_builder};
    let env = Env::new().await;
    for fault in ALL {
        let (connector, inst) = faulty(&env, sql_server(), fault).await;
        let manager = CloudSqlConnectionManager::new(connector, inst.connection_name(), mssql_login());
        let errors = manager.connect_errors();
        let pool = pool_builder(&manager)
            .max_size(2)
            .connection_timeout(BB8_TIMEOUT)
            .retry_connection(false)
            .build(manager)
            .await
            .unwrap();
        let started = Instant::now();
        let err = errors.get(&pool).await.err().unwrap();
        assert_prompt(started, format_args!("bb8 tiberius {fault:?}"));
        let bb8::RunError::User(err) = err else {
            panic!("bb8 tiberius {fault:?}: expected the connect error, got {err:?}")
        };
        assert_names(err, fault.cause(), &format!("bb8 tiberius {fault:?}"));
    }
}
