//! After the instance's client CA rotates, the server refuses the cached client certificate
//! with a fatal TLS alert that TLS 1.3 delivers on the driver's first read. That connect fails;
//! the connector sees the alert in its stream, stops serving the refused certificate, and the
//! next connect waits for a new one and succeeds. One extra certificate call, in both refresh
//! strategies, for a driver on the connector's stream and for drivers on its local socket.
//!
//! The emulator's rotated client CA keeps the old one's name, so its rustls server finds the
//! issuer by name, fails the signature check and answers `DecryptError` rather than `UnknownCA`
//! (a Go server would say `BadCertificate`): the connector must take any of them as a refusal.
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

mod support;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use cloudsql::core::{Connector, RefreshStrategy};
use cloudsql_emulator::Instance;
use mysql_async::prelude::*;
use support::*;

const CERT: &str = "generateEphemeralCert";

/// Connects once, rotates the client CA, then expects the next connect to fail and the one
/// after it to succeed, with exactly one more certificate call.
async fn rotation<C, Fut>(label: &str, inst: Arc<Instance>, connector: Connector, connect: C)
where
    C: Fn(Connector) -> Fut,
    Fut: Future<Output = Result<(), String>>,
{
    connect(connector.clone())
        .await
        .unwrap_or_else(|e| panic!("{label}: first connect failed: {e}"));
    let before = wait_for_calls(&inst, CERT, 1).await;
    assert_eq!(before, 1, "{label}: one certificate before the rotation");

    inst.rotate_client_ca().unwrap();
    let refused = connect(connector.clone()).await;
    let error = refused.expect_err("the instance refuses the old client certificate");
    eprintln!("{label}: connect right after the rotation failed: {error}");

    connect(connector.clone())
        .await
        .unwrap_or_else(|e| panic!("{label}: the connect after the refused one failed: {e}"));
    // Nothing more is on its way.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        inst.counters().calls(CERT),
        before + 1,
        "{label}: exactly one new certificate after the rotation"
    );
    connector.close().await;
}

async fn tokio_postgres(strategy: RefreshStrategy) {
    let env = Env::new().await;
    let inst = env.add(env.pg_config()).await;
    let connector = env.builder().refresh_strategy(strategy).build().unwrap();
    let name = inst.connection_name().to_owned();
    rotation(
        &format!("tokio-postgres {strategy:?}"),
        inst,
        connector,
        |connector| {
            let name = name.clone();
            async move {
                let one = select_one(&connector, &name, &trust_login())
                    .await
                    .map_err(|e| format!("{:#}", anyhow::Error::from(e)))?;
                assert_eq!(one, 1);
                Ok(())
            }
        },
    )
    .await;
}

async fn mysql_async_conn(strategy: RefreshStrategy) {
    let env = Env::new().await;
    let inst = env.add(env.mysql_config()).await;
    let user = unique("app");
    create_mysql_user(&user, "pw").await;
    let connector = env.builder().refresh_strategy(strategy).build().unwrap();
    let name = inst.connection_name().to_owned();
    rotation(
        &format!("mysql_async {strategy:?}"),
        inst,
        connector,
        |connector| {
            let (name, user) = (name.clone(), user.clone());
            async move {
                let mut conn = cloudsql::mysql::connect(&connector, &name, mysql_login(&user, Some("pw")))
                    .await
                    .map_err(|e| format!("{:#}", anyhow::Error::from(e)))?;
                let one: Option<i64> = conn.query_first("SELECT 1").await.map_err(|e| e.to_string())?;
                assert_eq!(one, Some(1));
                conn.disconnect().await.map_err(|e| e.to_string())?;
                Ok(())
            }
        },
    )
    .await;
}

async fn sqlx_pg_pool(strategy: RefreshStrategy) {
    let env = Env::new().await;
    let inst = env.add(env.pg_config()).await;
    let connector = env.builder().refresh_strategy(strategy).build().unwrap();
    let name = inst.connection_name().to_owned();
    rotation(
        &format!("sqlx PgPool {strategy:?}"),
        inst,
        connector,
        |connector| {
            let name = name.clone();
            async move {
                // A new pool each time: its first connection is the connect under test.
                let pool = cloudsql::sqlx::postgres::pool(
                    &connector,
                    &name,
                    sqlx::postgres::PgConnectOptions::new()
                        .username("postgres")
                        .database("postgres"),
                    sqlx::postgres::PgPoolOptions::new()
                        .max_connections(1)
                        .acquire_timeout(Duration::from_secs(10)),
                )
                .await
                .map_err(|e| format!("{:#}", anyhow::Error::from(e)))?;
                let one: i32 = sqlx::query_scalar("SELECT 1")
                    .fetch_one(&pool)
                    .await
                    .map_err(|e| e.to_string())?;
                assert_eq!(one, 1);
                pool.close().await;
                Ok(())
            }
        },
    )
    .await;
}

macro_rules! both_strategies {
    ($($name:ident),*) => {
        mod background {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name(cloudsql::core::RefreshStrategy::Background).await })*
        }
        mod lazy {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name(cloudsql::core::RefreshStrategy::Lazy).await })*
        }
    };
}

both_strategies!(tokio_postgres, mysql_async_conn, sqlx_pg_pool);
