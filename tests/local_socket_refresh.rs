//! Local-socket drivers keep working across certificate refreshes: 3-minute certificates, a new
//! query every 2 s for 200 s through a mysql_async pool, a sqlx PgPool and a sqlx MySqlPool.
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

mod support;

use std::time::{Duration, Instant};

use mysql_async::prelude::*;
use sqlx::mysql::{MySqlConnectOptions, MySqlPoolOptions};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use support::*;

#[tokio::test]
async fn socket_drivers_query_across_three_minute_certificates() {
    let env = Env::new().await;
    let lifetime = Duration::from_secs(180);
    let my = env
        .add(env.mysql_config().cert_lifetime(lifetime).mdx(true))
        .await;
    let pg = env.add(env.pg_config().cert_lifetime(lifetime)).await;
    let user = unique("app");
    create_mysql_user(&user, "pw").await;
    let connector = env.connector();

    // Pools that drop idle connections quickly, so new connections (with new certificates)
    // are dialed throughout.
    let mysql_pool = cloudsql::mysql::pool(
        &connector,
        my.connection_name(),
        mysql_login(&user, Some("pw")).pool_opts(
            mysql_async::PoolOpts::default()
                .with_inactive_connection_ttl(Duration::from_secs(3))
                .with_ttl_check_interval(Duration::from_secs(1))
                .with_constraints(mysql_async::PoolConstraints::new(0, 4).unwrap()),
        ),
    )
    .await
    .unwrap();
    let sqlx_pg = cloudsql::sqlx::postgres::pool(
        &connector,
        pg.connection_name(),
        PgConnectOptions::new().username("postgres").database("postgres"),
        PgPoolOptions::new()
            .max_connections(4)
            .max_lifetime(Duration::from_secs(5)),
    )
    .await
    .unwrap();
    let sqlx_my = cloudsql::sqlx::mysql::pool(
        &connector,
        my.connection_name(),
        MySqlConnectOptions::new()
            .username(&user)
            .password("pw")
            .database(MYSQL_DB),
        MySqlPoolOptions::new()
            .max_connections(4)
            .max_lifetime(Duration::from_secs(5)),
    )
    .await
    .unwrap();

    let started = Instant::now();
    let mut rounds = 0;
    while started.elapsed() < Duration::from_secs(200) {
        let at = started.elapsed();
        let mut conn = mysql_pool
            .get_conn()
            .await
            .unwrap_or_else(|e| panic!("mysql_async at {at:?}: {e}"));
        let one: Option<i64> = conn.query_first("SELECT 1").await.unwrap();
        assert_eq!(one, Some(1));
        drop(conn);
        let one: i32 = sqlx::query_scalar("SELECT 1")
            .fetch_one(&sqlx_pg)
            .await
            .unwrap_or_else(|e| panic!("sqlx postgres at {at:?}: {e}"));
        assert_eq!(one, 1);
        let one: i64 = sqlx::query_scalar("SELECT 1")
            .fetch_one(&sqlx_my)
            .await
            .unwrap_or_else(|e| panic!("sqlx mysql at {at:?}: {e}"));
        assert_eq!(one, 1);
        rounds += 1;
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    assert!(rounds >= 90, "{rounds}");
    assert!(
        my.counters().calls("generateEphemeralCert") >= 2,
        "MySQL certificate refreshed"
    );
    assert!(
        pg.counters().calls("generateEphemeralCert") >= 2,
        "Postgres certificate refreshed"
    );
    // New connections were dialed after the first certificate expired.
    assert!(my.counters().metadata_exchanges().len() > 10);
    mysql_pool.disconnect().await.unwrap();
    sqlx_pg.close().await;
    sqlx_my.close().await;
}
