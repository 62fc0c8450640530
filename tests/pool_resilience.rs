//! Every pool type under 64 concurrent checkouts per round, for 200 s, with 3-minute
//! certificates and the proxy cutting every open connection once mid-run: only the round right
//! after the cut may see failures; every other request succeeds.
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

mod support;

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mysql_async::prelude::*;
use support::*;

const RUN: Duration = Duration::from_secs(200);
const RESET_AT: Duration = Duration::from_secs(60);
const CHECKOUTS: usize = 64;

/// When the proxies cut every connection.
#[derive(Default)]
struct ResetClock(Mutex<Option<Instant>>);

impl ResetClock {
    fn at(&self) -> Option<Instant> {
        *self.0.lock().unwrap()
    }
}

/// Runs rounds of `CHECKOUTS` concurrent `query` calls until `RUN` is over. Only the rounds
/// that overlap the reset, and the first round after it, may see failures. Returns (rounds,
/// failures in the reset window).
async fn drive<Q, Fut>(label: &str, clock: Arc<ResetClock>, query: Q) -> (usize, usize)
where
    Q: Fn() -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Result<(), String>> + Send + 'static,
{
    let started = Instant::now();
    let (mut rounds, mut window_failures, mut after_reset_rounds) = (0, 0, 0);
    while started.elapsed() < RUN {
        let round_start = Instant::now();
        let tasks: Vec<_> = (0..CHECKOUTS).map(|_| tokio::spawn((query.clone())())).collect();
        let mut failures = Vec::new();
        for t in tasks {
            if let Err(e) = t.await.unwrap() {
                failures.push(e);
            }
        }
        let in_window = match clock.at() {
            Some(reset) if round_start <= reset => true,
            Some(_) => {
                after_reset_rounds += 1;
                after_reset_rounds == 1
            }
            None => false,
        };
        if in_window {
            window_failures += failures.len();
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
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    assert!(
        after_reset_rounds > 10,
        "{label}: the run went on well past the reset"
    );
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

    let clock = Arc::new(ResetClock::default());
    let coordinator = {
        let (clock, instances) = (clock.clone(), [pg.clone(), my.clone(), ms.clone()]);
        tokio::spawn(async move {
            tokio::time::sleep(RESET_AT).await;
            let before: Vec<u64> = instances.iter().map(|i| i.counters().connections()).collect();
            for instance in &instances {
                instance.reset_connections();
            }
            *clock.0.lock().unwrap() = Some(Instant::now());
            before
        })
    };
    let results = tokio::join!(
        drive("deadpool-postgres", clock.clone(), move || {
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
        drive("bb8 tokio-postgres", clock.clone(), move || {
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
        drive("mysql_async Pool", clock.clone(), move || {
            let pool = mysql_pool.clone();
            async move {
                let mut conn = pool.get_conn().await.map_err(|e| e.to_string())?;
                let _: Option<i64> = conn.query_first("SELECT 1").await.map_err(|e| e.to_string())?;
                Ok(())
            }
        }),
        drive("sqlx PgPool", clock.clone(), move || {
            let pool = sqlx_pg.clone();
            async move {
                let _: i32 = sqlx::query_scalar("SELECT 1")
                    .fetch_one(&pool)
                    .await
                    .map_err(|e| e.to_string())?;
                Ok(())
            }
        }),
        drive("sqlx MySqlPool", clock.clone(), move || {
            let pool = sqlx_my.clone();
            async move {
                let _: i64 = sqlx::query_scalar("SELECT 1")
                    .fetch_one(&pool)
                    .await
                    .map_err(|e| e.to_string())?;
                Ok(())
            }
        }),
        drive("bb8 tiberius", clock.clone(), move || {
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
    let before_reset = coordinator.await.unwrap();
    for (inst, before) in [&pg, &my, &ms].into_iter().zip(before_reset) {
        assert!(
            inst.counters().calls("generateEphemeralCert") >= 2,
            "certificates were refreshed"
        );
        assert!(
            inst.counters().connections() > before,
            "pools dialed again after the reset"
        );
    }
    println!("window failures per pool: {:?}", all.map(|(_, f)| f));
}
