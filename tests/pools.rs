//! deadpool-postgres and bb8 pools open every connection through the connector.
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

mod support;

use cloudsql::core::{DialOptions, Error, IpType};
use support::*;

#[tokio::test]
async fn deadpool_pool_runs_concurrent_queries() {
    let env = Env::new().await;
    let inst = env.add(env.pg_config()).await;
    let pool =
        cloudsql::postgres::deadpool::pool_builder(env.connector(), inst.connection_name(), trust_login())
            .max_size(8)
            .build()
            .unwrap();
    let tasks: Vec<_> = (0..32)
        .map(|i: i32| {
            let pool = pool.clone();
            tokio::spawn(async move {
                let client = pool.get().await.unwrap();
                let row = client.query_one("SELECT $1::int4 * 2", &[&i]).await.unwrap();
                row.get::<_, i32>(0)
            })
        })
        .collect();
    let mut sum = 0;
    for task in tasks {
        sum += task.await.unwrap();
    }
    assert_eq!(sum, (0..32).map(|i| i * 2).sum::<i32>());
    assert!(pool.status().size <= 8);
    assert_eq!(
        inst.counters().total(),
        2,
        "all pooled connections share one refresh"
    );
}

#[tokio::test]
async fn deadpool_reports_connector_errors_as_typed_errors() {
    let env = Env::new().await;
    // An instance in the project, so the missing one is a 404 (an unknown project is a 403).
    env.add(env.pg_config()).await;
    let pool = cloudsql::postgres::deadpool::pool_builder(
        env.connector(),
        "test-project:us-central1:missing",
        trust_login(),
    )
    .max_size(2)
    .build()
    .unwrap();
    let err = pool.get().await.unwrap_err();
    let deadpool_postgres::PoolError::Backend(pg) = &err else {
        panic!("expected a backend error, got {err:?}")
    };
    assert!(
        matches!(
            cloudsql::postgres::connector_error(pg),
            Some(Error::AdminApi { status: 404, .. })
        ),
        "{pg:?}"
    );
}

#[tokio::test]
async fn bb8_pool_runs_concurrent_queries() {
    let env = Env::new().await;
    let inst = env.add(env.pg_config()).await;
    let manager = cloudsql::postgres::bb8::CloudSqlConnectionManager::new(
        env.connector(),
        inst.connection_name(),
        trust_login(),
    );
    let pool = bb8::Pool::builder().max_size(8).build(manager).await.unwrap();
    let tasks: Vec<_> = (0..32)
        .map(|i: i32| {
            let pool = pool.clone();
            tokio::spawn(async move {
                let client = pool.get().await.unwrap();
                client
                    .query_one("SELECT $1::int4 + 1", &[&i])
                    .await
                    .unwrap()
                    .get::<_, i32>(0)
            })
        })
        .collect();
    let mut sum = 0;
    for task in tasks {
        sum += task.await.unwrap();
    }
    assert_eq!(sum, (1..=32).sum::<i32>());
    assert_eq!(inst.counters().total(), 2);
}

#[tokio::test]
async fn bb8_replaces_connections_cut_by_the_proxy() {
    let env = Env::new().await;
    let inst = env.add(env.pg_config()).await;
    let manager = cloudsql::postgres::bb8::CloudSqlConnectionManager::new(
        env.connector(),
        inst.connection_name(),
        trust_login(),
    );
    let pool = bb8::Pool::builder()
        .max_size(4)
        .test_on_check_out(true)
        .build(manager)
        .await
        .unwrap();
    {
        let client = pool.get().await.unwrap();
        client.query_one("SELECT 1", &[]).await.unwrap();
    }
    inst.reset_connections();
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let client = pool.get().await.unwrap();
    client.query_one("SELECT 1", &[]).await.unwrap();
}

#[tokio::test]
async fn deadpool_pool_builder_with_applies_dial_options_to_every_connection() {
    let env = Env::new().await;
    let private = env.add(env.pg_config().private_ip(true)).await;
    let pool = cloudsql::postgres::deadpool::pool_builder_with(
        env.connector(),
        private.connection_name(),
        trust_login(),
        DialOptions::new().ip_type(IpType::Private),
    )
    .max_size(2)
    .build()
    .unwrap();
    let client = pool.get().await.unwrap();
    let one: i32 = client.query_one("SELECT 1", &[]).await.unwrap().get(0);
    assert_eq!(one, 1);

    // An instance without a private IP: the option reaches the connector, which refuses.
    let public_only = env.add(env.pg_config()).await;
    let pool = cloudsql::postgres::deadpool::pool_builder_with(
        env.connector(),
        public_only.connection_name(),
        trust_login(),
        DialOptions::new().ip_type(IpType::Private),
    )
    .max_size(2)
    .build()
    .unwrap();
    let err = pool.get().await.unwrap_err();
    let deadpool_postgres::PoolError::Backend(pg) = &err else {
        panic!("expected a backend error, got {err:?}")
    };
    assert!(
        matches!(
            cloudsql::postgres::connector_error(pg),
            Some(Error::NoIpAddress { .. })
        ),
        "{pg:?}"
    );
}
