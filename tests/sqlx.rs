//! sqlx pools (PostgreSQL and MySQL) through the connector's local socket: real queries under
//! concurrency, IAM logins, wrong engines.
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

mod support;

use cloudsql::core::Error;
use sqlx::mysql::{MySqlConnectOptions, MySqlPoolOptions};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use support::*;

#[tokio::test]
async fn pg_pool_runs_create_insert_select_under_32_tasks() {
    let env = Env::new().await;
    let inst = env.add(env.pg_config_for(scram_pg()).mdx(true)).await;
    let role = unique("app");
    create_scram_role(&role, "pg-password").await;
    let base = PgConnectOptions::new()
        .username(&role)
        .password("pg-password")
        .database("postgres");
    let connector = env.connector();
    let pool = cloudsql::sqlx::postgres::pool(
        &connector,
        inst.connection_name(),
        base,
        PgPoolOptions::new().max_connections(8),
    )
    .await
    .unwrap();
    let table = unique("items").replace('-', "_");
    sqlx::query(&format!("CREATE TABLE {table} (id int PRIMARY KEY, name text)"))
        .execute(&pool)
        .await
        .unwrap();
    let tasks: Vec<_> = (0..32)
        .map(|i: i32| {
            let pool = pool.clone();
            let table = table.clone();
            tokio::spawn(async move {
                sqlx::query(&format!("INSERT INTO {table} VALUES ($1, $2)"))
                    .bind(i)
                    .bind(format!("item-{i}"))
                    .execute(&pool)
                    .await
                    .unwrap();
                let name: String = sqlx::query_scalar(&format!("SELECT name FROM {table} WHERE id = $1"))
                    .bind(i)
                    .fetch_one(&pool)
                    .await
                    .unwrap();
                assert_eq!(name, format!("item-{i}"));
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let count: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {table}"))
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(count, 32);
    let user: String = sqlx::query_scalar("SELECT current_user::text")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(user, role);
    sqlx::query(&format!("DROP TABLE {table}"))
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    assert!(
        inst.counters()
            .metadata_exchanges()
            .iter()
            .all(|m| m.client_protocol_type == 3)
    );
}

#[tokio::test]
async fn mysql_pool_runs_create_insert_select_under_32_tasks() {
    let env = Env::new().await;
    let inst = env.add(env.mysql_config()).await;
    let user = unique("app");
    create_mysql_user(&user, "my-password").await;
    let base = MySqlConnectOptions::new()
        .username(&user)
        .password("my-password")
        .database(MYSQL_DB);
    let connector = env.connector();
    let pool = cloudsql::sqlx::mysql::pool(
        &connector,
        inst.connection_name(),
        base,
        MySqlPoolOptions::new().max_connections(8),
    )
    .await
    .unwrap();
    let table = unique("items").replace('-', "_");
    sqlx::query(&format!(
        "CREATE TABLE {table} (id INT PRIMARY KEY, name VARCHAR(40))"
    ))
    .execute(&pool)
    .await
    .unwrap();
    let tasks: Vec<_> = (0..32)
        .map(|i: i32| {
            let pool = pool.clone();
            let table = table.clone();
            tokio::spawn(async move {
                sqlx::query(&format!("INSERT INTO {table} VALUES (?, ?)"))
                    .bind(i)
                    .bind(format!("item-{i}"))
                    .execute(&pool)
                    .await
                    .unwrap();
                let name: String = sqlx::query_scalar(&format!("SELECT name FROM {table} WHERE id = ?"))
                    .bind(i)
                    .fetch_one(&pool)
                    .await
                    .unwrap();
                assert_eq!(name, format!("item-{i}"));
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let count: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {table}"))
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(count, 32);
    sqlx::query(&format!("DROP TABLE {table}"))
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
}

#[tokio::test]
async fn pg_iam_login_without_a_password() {
    let env = Env::new().await;
    let db_user = env
        .sa_email
        .strip_suffix(".gserviceaccount.com")
        .unwrap()
        .to_owned();
    let backend_password = unique("pw");
    create_scram_role(&db_user, &backend_password).await;
    let inst = env
        .add(
            env.pg_config_for(scram_pg())
                .iam_user(&env.sa_email, &backend_password),
        )
        .await;
    let connector = env.builder().iam_authn(true).build().unwrap();
    let base = PgConnectOptions::new()
        .username(&env.sa_email)
        .database("postgres");
    let pool = cloudsql::sqlx::postgres::pool(&connector, inst.connection_name(), base, PgPoolOptions::new())
        .await
        .unwrap();
    let user: String = sqlx::query_scalar("SELECT current_user::text")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(user, db_user);
    pool.close().await;
}

#[tokio::test]
async fn mysql_iam_login_without_a_password() {
    let env = Env::new().await;
    let db_user = env.sa_email.split('@').next().unwrap().to_owned();
    let backend_password = unique("pw");
    create_mysql_user(&db_user, &backend_password).await;
    let inst = env
        .add(env.mysql_config().iam_user(&env.sa_email, &backend_password))
        .await;
    let connector = env.builder().iam_authn(true).build().unwrap();
    let base = MySqlConnectOptions::new()
        .username(&env.sa_email)
        .database(MYSQL_DB);
    let pool = cloudsql::sqlx::mysql::pool(&connector, inst.connection_name(), base, MySqlPoolOptions::new())
        .await
        .unwrap();
    let user: String = sqlx::query_scalar("SELECT CURRENT_USER()")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(user, format!("{db_user}@%"));
    pool.close().await;
}

#[tokio::test]
async fn wrong_engines_are_refused_with_typed_errors() {
    let env = Env::new().await;
    let pg = env.add(env.pg_config()).await;
    let my = env.add(env.mysql_config()).await;
    let connector = env.connector();
    let err =
        cloudsql::sqlx::mysql::connect_options(&connector, pg.connection_name(), MySqlConnectOptions::new())
            .await
            .unwrap_err();
    assert!(
        matches!(
            err,
            cloudsql::sqlx::Error::Connector(Error::IncompatibleDriver { .. })
        ),
        "{err:?}"
    );
    let err =
        cloudsql::sqlx::postgres::connect_options(&connector, my.connection_name(), PgConnectOptions::new())
            .await
            .unwrap_err();
    assert!(
        matches!(
            err,
            cloudsql::sqlx::Error::Connector(Error::IncompatibleDriver { .. })
        ),
        "{err:?}"
    );
}
