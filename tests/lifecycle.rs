//! Pool shutdown and connector close in either order: no hang, and every task the pool, the
//! connector and the relays started has ended afterwards.
//!
//! The connectors here take a token the emulator issued (`Credentials::from_token`), so the
//! tasks counted are the pool's and the connector's own. Credentials `google-cloud-auth` reads
//! (key files, ADC, Workload Identity Federation) keep one token-cache task of the crate's per
//! credentials object, which ends when it next wakes after the credentials are dropped (at the
//! latest when its token expires); `docs/credentials.md` says so.
#![allow(clippy::unwrap_used)]
// Tests fail loudly on purpose.
// Each pool opener returns the future that closes the pool, to run in the order under test.
#![allow(clippy::async_yields_async)]

mod support;

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use cloudsql::core::{Connector, Credentials};
use mysql_async::prelude::*;
use support::*;

type Closer = Pin<Box<dyn Future<Output = ()> + Send>>;

#[derive(Debug, Clone, Copy)]
enum Order {
    PoolFirst,
    ConnectorFirst,
}

fn alive() -> usize {
    tokio::runtime::Handle::current().metrics().num_alive_tasks()
}

const DEADLINE: Duration = Duration::from_secs(10);

/// Opens a pool with `open` (which also runs queries through it and returns how to close it),
/// then closes pool and connector in `order`.
async fn lifecycle<F, Fut>(env: &Env, order: Order, open: F)
where
    F: FnOnce(Connector) -> Fut,
    Fut: Future<Output = Closer>,
{
    let token = env.emulator.issue_token(
        &env.sa_email,
        &[
            "https://www.googleapis.com/auth/sqlservice.admin",
            "https://www.googleapis.com/auth/sqlservice.login",
        ],
        Duration::from_secs(3600),
    );
    let baseline = alive();
    let connector = Connector::builder()
        .credentials(Credentials::from_token(token))
        .admin_api_endpoint(env.emulator.admin_api_url())
        .build()
        .unwrap();
    let close_pool = open(connector.clone()).await;
    match order {
        Order::PoolFirst => {
            tokio::time::timeout(DEADLINE, close_pool)
                .await
                .expect("pool closes");
            tokio::time::timeout(DEADLINE, connector.close())
                .await
                .expect("connector closes");
        }
        Order::ConnectorFirst => {
            tokio::time::timeout(DEADLINE, connector.close())
                .await
                .expect("connector closes");
            tokio::time::timeout(DEADLINE, close_pool)
                .await
                .expect("pool closes after its connector without hanging");
        }
    }
    drop(connector);
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while alive() > baseline && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        alive() <= baseline,
        "{order:?}: {} tasks alive, {baseline} before",
        alive()
    );
}

async fn deadpool(order: Order) {
    let env = Env::new().await;
    let inst = env.add(env.pg_config()).await;
    lifecycle(&env, order, |connector| async move {
        let pool =
            cloudsql::postgres::deadpool::pool_builder(connector, inst.connection_name(), trust_login())
                .max_size(4)
                .build()
                .unwrap();
        for _ in 0..4 {
            pool.get()
                .await
                .unwrap()
                .query_one("SELECT 1", &[])
                .await
                .unwrap();
        }
        Box::pin(async move {
            pool.close();
            drop(pool);
        }) as Closer
    })
    .await;
}

async fn bb8_postgres(order: Order) {
    let env = Env::new().await;
    let inst = env.add(env.pg_config()).await;
    lifecycle(&env, order, |connector| async move {
        let manager = cloudsql::postgres::bb8::CloudSqlConnectionManager::new(
            connector,
            inst.connection_name(),
            trust_login(),
        );
        // No reaper task: its interval would outlive the pool by up to 30 s.
        let pool = bb8::Pool::builder()
            .max_size(4)
            .max_lifetime(None)
            .idle_timeout(None)
            .build(manager)
            .await
            .unwrap();
        pool.get()
            .await
            .unwrap()
            .query_one("SELECT 1", &[])
            .await
            .unwrap();
        Box::pin(async move { drop(pool) }) as Closer
    })
    .await;
}

async fn mysql_async_pool(order: Order) {
    let env = Env::new().await;
    let inst = env.add(env.mysql_config()).await;
    let user = unique("app");
    create_mysql_user(&user, "pw").await;
    lifecycle(&env, order, |connector| async move {
        let pool = cloudsql::mysql::pool(&connector, inst.connection_name(), mysql_login(&user, Some("pw")))
            .await
            .unwrap();
        let one: Option<i64> = pool
            .get_conn()
            .await
            .unwrap()
            .query_first("SELECT 1")
            .await
            .unwrap();
        assert_eq!(one, Some(1));
        // After the connector closed, the disconnect may report the cut connections; it must
        // not hang.
        Box::pin(async move {
            let _ = pool.disconnect().await;
        }) as Closer
    })
    .await;
}

async fn sqlx_pg(order: Order) {
    let env = Env::new().await;
    let inst = env.add(env.pg_config()).await;
    lifecycle(&env, order, |connector| async move {
        let pool = cloudsql::sqlx::postgres::pool(
            &connector,
            inst.connection_name(),
            sqlx::postgres::PgConnectOptions::new()
                .username("postgres")
                .database("postgres"),
            sqlx::postgres::PgPoolOptions::new().max_connections(4),
        )
        .await
        .unwrap();
        let one: i32 = sqlx::query_scalar("SELECT 1").fetch_one(&pool).await.unwrap();
        assert_eq!(one, 1);
        Box::pin(async move { pool.close().await }) as Closer
    })
    .await;
}

async fn sqlx_mysql(order: Order) {
    let env = Env::new().await;
    let inst = env.add(env.mysql_config()).await;
    let user = unique("app");
    create_mysql_user(&user, "pw").await;
    lifecycle(&env, order, |connector| async move {
        let pool = cloudsql::sqlx::mysql::pool(
            &connector,
            inst.connection_name(),
            sqlx::mysql::MySqlConnectOptions::new()
                .username(&user)
                .password("pw")
                .database(MYSQL_DB),
            sqlx::mysql::MySqlPoolOptions::new().max_connections(4),
        )
        .await
        .unwrap();
        let one: i64 = sqlx::query_scalar("SELECT 1").fetch_one(&pool).await.unwrap();
        assert_eq!(one, 1);
        Box::pin(async move { pool.close().await }) as Closer
    })
    .await;
}

async fn bb8_tiberius(order: Order) {
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
    lifecycle(&env, order, |connector| async move {
        let mut config = tiberius::Config::new();
        config.authentication(tiberius::AuthMethod::sql_server("sqlserver", "S3cret!"));
        let manager =
            cloudsql::mssql::bb8::CloudSqlConnectionManager::new(connector, inst.connection_name(), config);
        let pool = bb8::Pool::builder()
            .max_size(4)
            .max_lifetime(None)
            .idle_timeout(None)
            .build(manager)
            .await
            .unwrap();
        pool.get()
            .await
            .unwrap()
            .simple_query("SELECT 1")
            .await
            .unwrap()
            .into_row()
            .await
            .unwrap();
        Box::pin(async move { drop(pool) }) as Closer
    })
    .await;
}

macro_rules! both_orders {
    ($($name:ident),*) => {
        mod pool_first {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name(super::Order::PoolFirst).await })*
        }
        mod connector_first {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name(super::Order::ConnectorFirst).await })*
        }
    };
}

both_orders!(
    deadpool,
    bb8_postgres,
    mysql_async_pool,
    sqlx_pg,
    sqlx_mysql,
    bb8_tiberius
);
