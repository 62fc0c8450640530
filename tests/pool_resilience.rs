//! Every pool type under 64 concurrent checkouts per round, for 200 s, with 3-minute
//! certificates and the proxy cutting every open connection once mid-run: only the round right
//! after the cut may see failures; every other request succeeds.
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

mod support;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use cloudsql_emulator::Instance;
use mysql_async::prelude::*;
use support::*;

const RUN: Duration = Duration::from_secs(200);
const RESET_AT: Duration = Duration::from_secs(60);
const CHECKOUTS: usize = 64;

/// Runs rounds of `CHECKOUTS` concurrent `query` calls until `RUN` is over; cuts the instance's
/// connections once after `RESET_AT`. Returns (rounds, failures in the reset window).
async fn drive<Q, Fut>(label: &str, instance: Arc<Instance>, query: Q) -> (usize, usize)
where
    Q: Fn() -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Result<(), String>> + Send + 'static,
{
    let started = Instant::now();
    let (mut rounds, mut window_failures) = (0, 0);
    let reset_done = AtomicBool::new(false);
    let mut in_window = false;
    while started.elapsed() < RUN {
        let tasks: Vec<_> = (0..CHECKOUTS).map(|_| tokio::spawn((query.clone())())).collect();
        let mut failures = Vec::new();
        for t in tasks {
            if let Err(e) = t.await.unwrap() {
                failures.push(e);
            }
        }
        if in_window {
            window_failures = failures.len();
            in_window = false;
        } else {
            assert!(
                failures.is_empty(),
                "{label}: {} of {CHECKOUTS} requests failed at {:?} outside the reset window: {:?}",
                failures.len(),
                started.elapsed(),
                &failures[..failures.len().min(3)]
            );
        }
        rounds += 1;
        if started.elapsed() >= RESET_AT && !reset_done.swap(true, Ordering::SeqCst) {
            instance.reset_connections();
            in_window = true;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    assert!(reset_done.load(Ordering::SeqCst));
    (rounds, window_failures)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_pool_recovers_from_a_proxy_reset_with_three_minute_certificates() {
    let env = Env::new().await;
    let lifetime = Duration::from_secs(180);
    let pg = env.add(env.pg_config().cert_lifetime(lifetime)).await;
    let my = env.add(env.mysql_config().cert_lifetime(lifetime)).await;
    let ms = env
        .add(
            cloudsql_emulator::InstanceConfig::sql_server(&format!(
                "test-project:us-central1:{}",
                unique("mssql")
            ))
            .sql_login("sqlserver", "S3cret!")
            .cert_lifetime(lifetime),
        )
        .await;
    let user = unique("app");
    create_mysql_user(&user, "pw").await;
    let connector = env.connector();

    let deadpool =
        cloudsql::postgres::deadpool::pool_builder(connector.clone(), pg.connection_name(), trust_login())
            .max_size(8)
            .build()
            .unwrap();
    let bb8_pg = bb8::Pool::builder()
        .max_size(8)
        .build(cloudsql::postgres::bb8::CloudSqlConnectionManager::new(
            connector.clone(),
            pg.connection_name(),
            trust_login(),
        ))
        .await
        .unwrap();
    let mysql_pool = cloudsql::mysql::pool(
        &connector,
        my.connection_name(),
        mysql_login(&user, Some("pw")).pool_opts(
            mysql_async::PoolOpts::default()
                .with_constraints(mysql_async::PoolConstraints::new(0, 8).unwrap()),
        ),
    )
    .await
    .unwrap();
    let sqlx_pg = cloudsql::sqlx::postgres::pool(
        &connector,
        pg.connection_name(),
        sqlx::postgres::PgConnectOptions::new()
            .username("postgres")
            .database("postgres"),
        sqlx::postgres::PgPoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(20)),
    )
    .await
    .unwrap();
    let sqlx_my = cloudsql::sqlx::mysql::pool(
        &connector,
        my.connection_name(),
        sqlx::mysql::MySqlConnectOptions::new()
            .username(&user)
            .password("pw")
            .database(MYSQL_DB),
        sqlx::mysql::MySqlPoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(20)),
    )
    .await
    .unwrap();
    let mut tds = tiberius::Config::new();
    tds.authentication(tiberius::AuthMethod::sql_server("sqlserver", "S3cret!"));
    let bb8_ms = bb8::Pool::builder()
        .max_size(8)
        .build(cloudsql::mssql::bb8::CloudSqlConnectionManager::new(
            connector.clone(),
            ms.connection_name(),
            tds,
        ))
        .await
        .unwrap();

    let results = tokio::join!(
        drive("deadpool-postgres", pg.clone(), move || {
            let pool = deadpool.clone();
            async move {
                let client = pool.get().await.map_err(|e| e.to_string())?;
                client
                    .query_one("SELECT 1", &[])
                    .await
                    .map_err(|e| e.to_string())?;
                Ok(())
            }
        }),
        drive("bb8 tokio-postgres", pg.clone(), move || {
            let pool = bb8_pg.clone();
            async move {
                let client = pool.get().await.map_err(|e| e.to_string())?;
                client
                    .query_one("SELECT 1", &[])
                    .await
                    .map_err(|e| e.to_string())?;
                Ok(())
            }
        }),
        drive("mysql_async Pool", my.clone(), move || {
            let pool = mysql_pool.clone();
            async move {
                let mut conn = pool.get_conn().await.map_err(|e| e.to_string())?;
                let _: Option<i64> = conn.query_first("SELECT 1").await.map_err(|e| e.to_string())?;
                Ok(())
            }
        }),
        drive("sqlx PgPool", pg.clone(), move || {
            let pool = sqlx_pg.clone();
            async move {
                let _: i32 = sqlx::query_scalar("SELECT 1")
                    .fetch_one(&pool)
                    .await
                    .map_err(|e| e.to_string())?;
                Ok(())
            }
        }),
        drive("sqlx MySqlPool", my.clone(), move || {
            let pool = sqlx_my.clone();
            async move {
                let _: i64 = sqlx::query_scalar("SELECT 1")
                    .fetch_one(&pool)
                    .await
                    .map_err(|e| e.to_string())?;
                Ok(())
            }
        }),
        drive("bb8 tiberius", ms.clone(), move || {
            let pool = bb8_ms.clone();
            async move {
                let mut client = pool.get().await.map_err(|e| e.to_string())?;
                client
                    .simple_query("SELECT 1")
                    .await
                    .map_err(|e| e.to_string())?
                    .into_row()
                    .await
                    .map_err(|e| e.to_string())?;
                Ok(())
            }
        }),
    );
    let all = [results.0, results.1, results.2, results.3, results.4, results.5];
    for (rounds, _) in all {
        assert!(rounds >= 40, "{rounds} rounds");
    }
    for inst in [&pg, &my, &ms] {
        assert!(
            inst.counters().calls("generateEphemeralCert") >= 2,
            "certificates were refreshed"
        );
    }
    println!("window failures per pool: {:?}", all.map(|(_, f)| f));
}
