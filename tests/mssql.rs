//! tiberius over the connector's TLS stream to an emulated SQL Server instance answered by the
//! emulator's TDS test responder: login, queries, real errors, refusals, pool.
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

mod support;

use cloudsql::core::{DialOptions, Error};
use cloudsql_emulator::InstanceConfig;
use support::*;
use tiberius::{AuthMethod, Config};

fn login(user: &str, password: &str) -> Config {
    let mut config = Config::new();
    config.authentication(AuthMethod::sql_server(user, password));
    config.database("appdb");
    config
}

fn sql_server(env: &Env) -> InstanceConfig {
    let _ = env;
    InstanceConfig::sql_server(&format!("test-project:us-central1:{}", unique("mssql")))
        .sql_login("sqlserver", "S3cret!")
}

#[tokio::test]
async fn login_and_queries_through_the_tunnel() {
    let env = Env::new().await;
    let inst = env.add(sql_server(&env)).await;
    let connector = env.connector();
    let mut client =
        cloudsql::mssql::connect(&connector, inst.connection_name(), login("sqlserver", "S3cret!"))
            .await
            .unwrap();
    let row = client
        .simple_query("SELECT 1")
        .await
        .unwrap()
        .into_row()
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.get::<i32, _>(0), Some(1));
    let row = client
        .simple_query("SELECT @@VERSION")
        .await
        .unwrap()
        .into_row()
        .await
        .unwrap()
        .unwrap();
    let version: &str = row.get(0).unwrap();
    assert!(version.starts_with("Microsoft SQL Server 2019"), "{version}");

    // An unsupported statement is a real server error, and the session stays usable.
    let err = match client.simple_query("DELETE FROM nowhere").await {
        Ok(stream) => stream.into_results().await.map(|_| ()).unwrap_err(),
        Err(e) => e,
    };
    match &err {
        tiberius::error::Error::Server(token) => {
            assert_eq!(token.code(), 50000);
            assert!(
                token.message().contains("does not support"),
                "{}",
                token.message()
            );
        }
        other => panic!("expected a server error, got {other:?}"),
    }
    let row = client
        .simple_query("SELECT 42")
        .await
        .unwrap()
        .into_row()
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.get::<i32, _>(0), Some(42));
}

#[tokio::test]
async fn a_wrong_password_fails_with_login_failed() {
    let env = Env::new().await;
    let inst = env.add(sql_server(&env)).await;
    let err = cloudsql::mssql::connect(
        &env.connector(),
        inst.connection_name(),
        login("sqlserver", "nope"),
    )
    .await
    .map(|_| ())
    .unwrap_err();
    match err {
        cloudsql::mssql::Error::SqlServer(tiberius::error::Error::Server(token)) => {
            assert_eq!(token.code(), 18456);
            assert!(token.message().contains("Login failed for user 'sqlserver'"));
        }
        other => panic!("expected login failed, got {other:?}"),
    }
}

#[tokio::test]
async fn iam_authn_is_refused_with_the_not_supported_error() {
    let env = Env::new().await;
    let inst = env.add(sql_server(&env)).await;
    let connector = env.builder().iam_authn(true).build().unwrap();
    let err = cloudsql::mssql::connect(&connector, inst.connection_name(), login("sqlserver", "S3cret!"))
        .await
        .map(|_| ())
        .unwrap_err();
    assert!(
        matches!(
            err,
            cloudsql::mssql::Error::Connector(Error::IamAuthnNotSupported { .. })
        ),
        "{err:?}"
    );
    let err = cloudsql::mssql::connect_with(
        &env.connector(),
        inst.connection_name(),
        login("sqlserver", "S3cret!"),
        &DialOptions::new().iam_authn(true),
    )
    .await
    .map(|_| ())
    .unwrap_err();
    assert!(err.to_string().contains("not supported for SQL Server"), "{err}");
}

#[tokio::test]
async fn a_postgres_instance_is_refused() {
    let env = Env::new().await;
    let inst = env.add(env.pg_config()).await;
    let err = cloudsql::mssql::connect(&env.connector(), inst.connection_name(), login("sqlserver", "x"))
        .await
        .map(|_| ())
        .unwrap_err();
    assert!(
        matches!(
            err,
            cloudsql::mssql::Error::Connector(Error::IncompatibleDriver { .. })
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn bb8_pool_serves_64_concurrent_checkouts() {
    let env = Env::new().await;
    let inst = env.add(sql_server(&env)).await;
    let manager = cloudsql::mssql::bb8::CloudSqlConnectionManager::new(
        env.connector(),
        inst.connection_name(),
        login("sqlserver", "S3cret!"),
    );
    let pool = bb8::Pool::builder().max_size(8).build(manager).await.unwrap();
    let tasks: Vec<_> = (0..64)
        .map(|i: i32| {
            let pool = pool.clone();
            tokio::spawn(async move {
                let mut client = pool.get().await.unwrap();
                let row = client
                    .simple_query(format!("SELECT {i}"))
                    .await
                    .unwrap()
                    .into_row()
                    .await
                    .unwrap()
                    .unwrap();
                row.get::<i32, _>(0).unwrap()
            })
        })
        .collect();
    let mut sum = 0;
    for t in tasks {
        sum += t.await.unwrap();
    }
    assert_eq!(sum, (0..64).sum::<i32>());
    assert_eq!(inst.counters().total(), 2);
}
