//! The entry points every driver crate names alike — `connect` / `connect_with` for one
//! connection, `pool` / `pool_with` for a ready pool — each against the emulator, with the
//! faults a user meets first: an unknown instance (the Admin API's 404 comes back, not a pool
//! timeout), an instance running another engine, a refused login.
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

mod support;

use std::time::{Duration, Instant};

use cloudsql::core::{DialOptions, Error};
use cloudsql_emulator::InstanceConfig;
use mysql_async::prelude::Queryable;
use sqlx::Connection as _;
use sqlx::mysql::MySqlConnectOptions;
use sqlx::postgres::PgConnectOptions;
use support::*;

/// In the emulator's project, so the Admin API answers 404 (an unknown project is a 403).
const MISSING: &str = "test-project:us-central1:missing";

/// Far below any pool's default timeout (30 s): a fault must come back at once.
const PROMPTLY: Duration = Duration::from_secs(10);

fn is_not_found(error: Option<&Error>) -> bool {
    matches!(error, Some(Error::AdminApi { status: 404, .. }))
}

fn is_wrong_engine(error: Option<&Error>) -> bool {
    matches!(error, Some(Error::IncompatibleDriver { .. }))
}

fn sql_server() -> InstanceConfig {
    InstanceConfig::sql_server(&format!("test-project:us-central1:{}", unique("mssql")))
        .sql_login("sqlserver", "S3cret!")
}

fn tds_login(password: &str) -> tiberius::Config {
    let mut config = tiberius::Config::new();
    config.authentication(tiberius::AuthMethod::sql_server("sqlserver", password));
    config
}

async fn tds_select(client: &mut cloudsql::mssql::CloudSqlClient, n: i32) -> Option<i32> {
    let row = client
        .simple_query(format!("SELECT {n}"))
        .await
        .unwrap()
        .into_row()
        .await
        .unwrap()
        .unwrap();
    row.get::<i32, _>(0)
}

// tokio-postgres: deadpool and bb8 ready pools.

#[tokio::test]
async fn postgres_deadpool_pool_is_ready_and_runs_queries() {
    let env = Env::new().await;
    let inst = env.add(env.pg_config()).await;
    let pool = cloudsql::postgres::deadpool::pool(env.connector(), inst.connection_name(), trust_login())
        .await
        .unwrap();
    assert_eq!(pool.status().size, 1, "the first connection is open");
    let client = pool.get().await.unwrap();
    let one: i32 = client.query_one("SELECT 1::int4", &[]).await.unwrap().get(0);
    assert_eq!(one, 1);
    assert_eq!(pool.status().size, 1, "the checkout reused the first connection");
}

#[tokio::test]
async fn postgres_deadpool_pool_answers_an_unknown_instance_and_a_wrong_engine_at_once() {
    let env = Env::new().await;
    let mysql = env.add(env.mysql_config()).await;
    let started = Instant::now();
    let err = cloudsql::postgres::deadpool::pool(env.connector(), MISSING, trust_login())
        .await
        .unwrap_err();
    assert!(is_not_found(err.as_connector()), "{err:?}");
    assert!(matches!(err, cloudsql::postgres::Error::Connector(_)), "{err:?}");
    let options = DialOptions::new().timeout(PROMPTLY);
    let err = cloudsql::postgres::deadpool::pool_with(
        env.connector(),
        mysql.connection_name(),
        trust_login(),
        options,
    )
    .await
    .unwrap_err();
    assert!(is_wrong_engine(err.as_connector()), "{err:?}");
    assert!(started.elapsed() < PROMPTLY, "{:?}", started.elapsed());
}

#[tokio::test]
async fn postgres_deadpool_pool_reports_a_refused_login_as_the_servers_error() {
    let env = Env::new().await;
    let inst = env.add(env.pg_config_for(scram_pg())).await;
    let role = unique("app");
    create_scram_role(&role, "right").await;
    let mut config = tokio_postgres::Config::new();
    config.user(&role).password("wrong").dbname("postgres");
    let err = cloudsql::postgres::deadpool::pool(env.connector(), inst.connection_name(), config)
        .await
        .unwrap_err();
    let cloudsql::postgres::Error::Postgres(pg) = &err else {
        panic!("expected the server's refusal, got {err:?}")
    };
    assert_eq!(
        pg.code(),
        Some(&tokio_postgres::error::SqlState::INVALID_PASSWORD),
        "{pg:?}"
    );
}

#[tokio::test]
async fn postgres_bb8_pool_is_ready_and_answers_an_unknown_instance_at_once() {
    let env = Env::new().await;
    let inst = env.add(env.pg_config()).await;
    let pool = cloudsql::postgres::bb8::pool(env.connector(), inst.connection_name(), trust_login())
        .await
        .unwrap();
    assert_eq!(pool.state().connections, 1, "the first connection is open");
    let one: i32 = pool
        .get()
        .await
        .unwrap()
        .query_one("SELECT 1::int4", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(one, 1);

    let started = Instant::now();
    let err = cloudsql::postgres::bb8::pool_with(env.connector(), MISSING, trust_login(), DialOptions::new())
        .await
        .unwrap_err();
    assert!(is_not_found(err.as_connector()), "{err:?}");
    assert!(
        started.elapsed() < PROMPTLY,
        "not bb8's timeout: {:?}",
        started.elapsed()
    );
}

// mysql_async: connect / connect_with.

#[tokio::test]
async fn mysql_connect_with_runs_queries_and_keeps_the_dial_options() {
    let env = Env::new().await;
    let inst = env.add(env.mysql_config()).await;
    let user = unique("app");
    create_mysql_user(&user, "right").await;
    let connector = env.connector();
    let options = DialOptions::new().timeout(PROMPTLY);
    let mut conn = cloudsql::mysql::connect_with(
        &connector,
        inst.connection_name(),
        mysql_login(&user, Some("right")),
        &options,
    )
    .await
    .unwrap();
    let one: Option<i64> = conn.query_first("SELECT 1").await.unwrap();
    assert_eq!(one, Some(1));
    conn.disconnect().await.unwrap();

    // A wrong password is the server's refusal, as mysql_async reports it.
    let err = cloudsql::mysql::connect_with(
        &connector,
        inst.connection_name(),
        mysql_login(&user, Some("wrong")),
        &options,
    )
    .await
    .unwrap_err();
    assert!(matches!(err, cloudsql::mysql::Error::MySql(_)), "{err:?}");
}

#[tokio::test]
async fn mysql_connect_answers_an_unknown_instance_and_a_wrong_engine_with_typed_errors() {
    let env = Env::new().await;
    let pg = env.add(env.pg_config()).await;
    let connector = env.connector();
    let err = cloudsql::mysql::connect(&connector, MISSING, mysql_login("app", Some("pw")))
        .await
        .unwrap_err();
    assert!(is_not_found(err.as_connector()), "{err:?}");
    let err = cloudsql::mysql::connect_with(
        &connector,
        pg.connection_name(),
        mysql_login("app", Some("pw")),
        &DialOptions::new(),
    )
    .await
    .unwrap_err();
    assert!(is_wrong_engine(err.as_connector()), "{err:?}");
}

// sqlx: postgres::connect and mysql::connect.

#[tokio::test]
async fn sqlx_postgres_connect_opens_one_connection() {
    let env = Env::new().await;
    let inst = env.add(env.pg_config_for(scram_pg())).await;
    let role = unique("app");
    create_scram_role(&role, "right").await;
    let base = PgConnectOptions::new().username(&role).database("postgres");
    let connector = env.connector();
    let err = cloudsql::sqlx::postgres::connect_with(
        &connector,
        inst.connection_name(),
        base.clone().password("wrong"),
        &DialOptions::new(),
    )
    .await
    .unwrap_err();
    let cloudsql::sqlx::Error::Sqlx(sqlx::Error::Database(db)) = &err else {
        panic!("expected the server's refusal, got {err:?}")
    };
    assert_eq!(db.code().as_deref(), Some("28P01"), "{db:?}");

    let mut conn =
        cloudsql::sqlx::postgres::connect(&connector, inst.connection_name(), base.password("right"))
            .await
            .unwrap();
    // The connection does not need the connector once open.
    connector.close().await;
    drop(connector);
    let one: i32 = sqlx::query_scalar("SELECT 1").fetch_one(&mut conn).await.unwrap();
    assert_eq!(one, 1);
    conn.close().await.unwrap();
}

#[tokio::test]
async fn sqlx_postgres_connect_answers_an_unknown_instance_and_a_wrong_engine() {
    let env = Env::new().await;
    let mysql = env.add(env.mysql_config()).await;
    let connector = env.connector();
    let base = PgConnectOptions::new().username("app");
    let err = cloudsql::sqlx::postgres::connect(&connector, MISSING, base.clone())
        .await
        .unwrap_err();
    assert!(is_not_found(err.as_connector()), "{err:?}");
    let err = cloudsql::sqlx::postgres::connect(&connector, mysql.connection_name(), base)
        .await
        .unwrap_err();
    assert!(is_wrong_engine(err.as_connector()), "{err:?}");
}

#[tokio::test]
async fn sqlx_mysql_connect_opens_one_connection_and_refuses_a_postgres_instance() {
    let env = Env::new().await;
    let inst = env.add(env.mysql_config()).await;
    let pg = env.add(env.pg_config()).await;
    let user = unique("app");
    create_mysql_user(&user, "right").await;
    let base = MySqlConnectOptions::new().username(&user).password("right");
    let connector = env.connector();
    let mut conn = cloudsql::sqlx::mysql::connect_with(
        &connector,
        inst.connection_name(),
        base.clone(),
        &DialOptions::new(),
    )
    .await
    .unwrap();
    let one: i64 = sqlx::query_scalar("SELECT 1").fetch_one(&mut conn).await.unwrap();
    assert_eq!(one, 1);
    conn.close().await.unwrap();

    let err = cloudsql::sqlx::mysql::connect(&connector, pg.connection_name(), base.clone())
        .await
        .unwrap_err();
    assert!(is_wrong_engine(err.as_connector()), "{err:?}");
    let err = cloudsql::sqlx::mysql::connect(&connector, MISSING, base)
        .await
        .unwrap_err();
    assert!(is_not_found(err.as_connector()), "{err:?}");
}

// tiberius: connect_with and the bb8 ready pool.

#[tokio::test]
async fn mssql_connect_with_and_bb8_pool_run_queries() {
    let env = Env::new().await;
    let inst = env.add(sql_server()).await;
    let connector = env.connector();
    let options = DialOptions::new().timeout(PROMPTLY);
    let mut client =
        cloudsql::mssql::connect_with(&connector, inst.connection_name(), tds_login("S3cret!"), &options)
            .await
            .unwrap();
    assert_eq!(tds_select(&mut client, 7).await, Some(7));

    let pool =
        cloudsql::mssql::bb8::pool_with(connector, inst.connection_name(), tds_login("S3cret!"), options)
            .await
            .unwrap();
    assert_eq!(pool.state().connections, 1, "the first connection is open");
    assert_eq!(tds_select(&mut pool.get().await.unwrap(), 8).await, Some(8));
}

#[tokio::test]
async fn mssql_bb8_pool_answers_a_wrong_engine_and_a_refused_login_at_once() {
    let env = Env::new().await;
    let inst = env.add(sql_server()).await;
    let pg = env.add(env.pg_config()).await;
    let started = Instant::now();
    let err = cloudsql::mssql::bb8::pool(env.connector(), pg.connection_name(), tds_login("S3cret!"))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            cloudsql::mssql::Error::Connector(Error::IncompatibleDriver { .. })
        ),
        "{err:?}"
    );
    let err = cloudsql::mssql::bb8::pool(env.connector(), inst.connection_name(), tds_login("wrong"))
        .await
        .unwrap_err();
    assert!(matches!(err, cloudsql::mssql::Error::SqlServer(_)), "{err:?}");
    let err = cloudsql::mssql::bb8::pool(env.connector(), MISSING, tds_login("S3cret!"))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            cloudsql::mssql::Error::Connector(Error::AdminApi { status: 404, .. })
        ),
        "{err:?}"
    );
    assert!(
        started.elapsed() < PROMPTLY,
        "not bb8's timeout: {:?}",
        started.elapsed()
    );
}
