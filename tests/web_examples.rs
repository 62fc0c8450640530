//! The web-framework examples serve real HTTP: start each app on a free port, make requests,
//! and check the rows in the database behind the emulated instance.
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

mod support;

#[allow(dead_code, missing_docs, unreachable_pub)]
#[path = "../examples/axum_postgres.rs"]
mod axum_postgres;

#[allow(dead_code, missing_docs, unreachable_pub)]
#[path = "../examples/actix_mysql.rs"]
mod actix_mysql;

use cloudsql::core::RefreshStrategy;
use serde_json::{Value, json};
use support::*;

#[tokio::test]
async fn axum_notes_api_stores_and_serves_rows() {
    let env = Env::new().await;
    // A database of its own, so the example's `notes` table is this test's alone.
    let db = unique("axum").replace('-', "_");
    let mut direct_config = trust_login();
    direct_config.host("127.0.0.1").port(5432);
    let (admin, connection) = direct_config.connect(tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    admin
        .batch_execute(&format!("CREATE DATABASE {db}"))
        .await
        .unwrap();

    let inst = env.add(env.pg_config()).await;
    let connector = env
        .builder()
        .refresh_strategy(RefreshStrategy::Lazy)
        .build()
        .unwrap();
    let mut config = trust_login();
    config.dbname(&db);
    let pool =
        cloudsql::postgres::deadpool::pool_builder(connector.clone(), inst.connection_name(), config.clone())
            .max_size(4)
            .build()
            .unwrap();
    axum_postgres::create_table(&pool).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(async move { axum::serve(listener, axum_postgres::router(pool)).await });

    let http = reqwest::Client::new();
    let mut ids = Vec::new();
    for text in ["first", "second"] {
        let created = http
            .post(format!("{base}/notes"))
            .json(&json!({"text": text}))
            .send()
            .await
            .unwrap();
        assert_eq!(created.status(), 201);
        let note: Value = created.json().await.unwrap();
        assert_eq!(note["text"], text);
        ids.push(note["id"].as_i64().unwrap());
    }
    let listed: Value = http
        .get(format!("{base}/notes"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        listed,
        json!([{"id": ids[0], "text": "first"}, {"id": ids[1], "text": "second"}])
    );
    let one: Value = http
        .get(format!("{base}/notes/{}", ids[1]))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(one["text"], "second");
    assert_eq!(
        http.get(format!("{base}/notes/999999"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    let bad = http
        .post(format!("{base}/notes"))
        .json(&json!({"text": " "}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);

    // The rows really are in the database.
    direct_config.dbname(&db);
    let (direct, connection) = direct_config.connect(tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    let texts: Vec<String> = direct
        .query("SELECT text FROM notes ORDER BY id", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(texts, ["first", "second"]);
    drop(direct);
    server.abort();
    connector.close().await;
    let _ = admin
        .batch_execute(&format!("DROP DATABASE {db} WITH (FORCE)"))
        .await;
}

#[actix_web::test]
async fn actix_items_api_stores_and_serves_rows() {
    use actix_web::{App, HttpServer, web};
    use mysql_async::prelude::Queryable;

    let env = Env::new().await;
    let db = unique("actix").replace('-', "_");
    let user = unique("app");
    create_mysql_user(&user, "pw").await;
    let mut admin = mysql_admin().await;
    admin
        .query_drop(format!(
            "CREATE DATABASE {db}; GRANT ALL PRIVILEGES ON {db}.* TO '{user}'@'%'"
        ))
        .await
        .unwrap();
    let inst = env.add(env.mysql_config()).await;
    let connector = env.connector();
    let pool = cloudsql::sqlx::mysql::pool(
        &connector,
        inst.connection_name(),
        sqlx::mysql::MySqlConnectOptions::new()
            .username(&user)
            .password("pw")
            .database(&db),
        sqlx::mysql::MySqlPoolOptions::new().max_connections(4),
    )
    .await
    .unwrap();
    actix_mysql::create_table(&pool).await.unwrap();
    let data = web::Data::new(pool);
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .configure(actix_mysql::configure)
    })
    .workers(1)
    .disable_signals()
    .bind(("127.0.0.1", 0))
    .unwrap();
    let base = format!("http://{}", server.addrs()[0]);
    let server = server.run();
    let handle = server.handle();
    actix_web::rt::spawn(server);

    let http = reqwest::Client::new();
    for name in ["apple", "pear"] {
        let created = http
            .post(format!("{base}/items"))
            .json(&json!({"name": name}))
            .send()
            .await
            .unwrap();
        assert_eq!(created.status(), 201);
    }
    let listed: Value = http
        .get(format!("{base}/items"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let names: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["apple", "pear"]);
    assert_eq!(
        http.post(format!("{base}/items"))
            .json(&json!({"name": ""}))
            .send()
            .await
            .unwrap()
            .status(),
        400
    );

    let count: Option<i64> = admin
        .query_first(format!("SELECT COUNT(*) FROM {db}.items"))
        .await
        .unwrap();
    assert_eq!(count, Some(2));
    handle.stop(true).await;
    connector.close().await;
    admin.query_drop(format!("DROP DATABASE {db}")).await.unwrap();
}
