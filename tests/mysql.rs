//! mysql_async through the connector's local socket to an emulated instance in front of the
//! real MariaDB: real queries under concurrency, password and IAM logins checked for real.
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

mod support;

use cloudsql::core::{DialOptions, Error};
use mysql_async::prelude::*;
use support::*;

#[tokio::test]
async fn pool_runs_create_insert_select_under_32_tasks() {
    let env = Env::new().await;
    let inst = env.add(env.mysql_config().mdx(true)).await;
    let user = unique("app");
    create_mysql_user(&user, "app-password").await;
    let connector = env.connector();
    let pool = cloudsql::mysql::pool(
        &connector,
        inst.connection_name(),
        mysql_login(&user, Some("app-password")),
    )
    .await
    .unwrap();
    let table = unique("items").replace('-', "_");
    let mut conn = pool.get_conn().await.unwrap();
    conn.query_drop(format!(
        "CREATE TABLE {table} (id INT PRIMARY KEY, name VARCHAR(40))"
    ))
    .await
    .unwrap();
    drop(conn);

    let tasks: Vec<_> = (0..32)
        .map(|i: i32| {
            let pool = pool.clone();
            let table = table.clone();
            tokio::spawn(async move {
                let mut conn = pool.get_conn().await.unwrap();
                conn.exec_drop(
                    format!("INSERT INTO {table} (id, name) VALUES (?, ?)"),
                    (i, format!("item-{i}")),
                )
                .await
                .unwrap();
                let name: Option<String> = conn
                    .exec_first(format!("SELECT name FROM {table} WHERE id = ?"), (i,))
                    .await
                    .unwrap();
                assert_eq!(name.as_deref(), Some(format!("item-{i}").as_str()));
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let mut conn = pool.get_conn().await.unwrap();
    let count: Option<i64> = conn
        .query_first(format!("SELECT COUNT(*) FROM {table}"))
        .await
        .unwrap();
    assert_eq!(count, Some(32));
    let current: Option<String> = conn.query_first("SELECT CURRENT_USER()").await.unwrap();
    assert!(current.unwrap().starts_with(&format!("{user}@")));
    conn.query_drop(format!("DROP TABLE {table}")).await.unwrap();
    drop(conn);
    pool.disconnect().await.unwrap();

    // Every connection went through the socket: each announced itself as UDS.
    let mdx = inst.counters().metadata_exchanges();
    assert!(!mdx.is_empty());
    assert!(mdx.iter().all(|m| m.client_protocol_type == 3));
    assert_eq!(inst.counters().total(), 2, "one refresh for the whole pool");
}

#[tokio::test]
async fn wrong_password_is_refused_by_the_real_backend() {
    let env = Env::new().await;
    let inst = env.add(env.mysql_config()).await;
    let user = unique("app");
    create_mysql_user(&user, "right").await;
    let connector = env.connector();
    let mut conn = cloudsql::mysql::connect(
        &connector,
        inst.connection_name(),
        mysql_login(&user, Some("right")),
    )
    .await
    .unwrap();
    let one: Option<i64> = conn.query_first("SELECT 1").await.unwrap();
    assert_eq!(one, Some(1));
    conn.disconnect().await.unwrap();

    let err = cloudsql::mysql::connect(
        &connector,
        inst.connection_name(),
        mysql_login(&user, Some("wrong")),
    )
    .await
    .unwrap_err();
    match err {
        cloudsql::mysql::Error::MySql(mysql_async::Error::Server(e)) => assert_eq!(e.code, 1045, "{e:?}"),
        other => panic!("expected access denied, got {other:?}"),
    }
}

#[tokio::test]
async fn iam_login_needs_an_iam_certificate() {
    let env = Env::new().await;
    let db_user = env.sa_email.split('@').next().unwrap().to_owned();
    let backend_password = unique("only-the-emulator-knows");
    create_mysql_user(&db_user, &backend_password).await;
    let inst = env
        .add(env.mysql_config().iam_user(&env.sa_email, &backend_password))
        .await;

    // With IAM authn: the full email is accepted, no password is sent.
    let connector = env.builder().iam_authn(true).build().unwrap();
    let mut conn = cloudsql::mysql::connect(
        &connector,
        inst.connection_name(),
        mysql_login(&env.sa_email, None),
    )
    .await
    .unwrap();
    let current: Option<String> = conn.query_first("SELECT CURRENT_USER()").await.unwrap();
    assert_eq!(current.unwrap(), format!("{db_user}@%"));
    conn.disconnect().await.unwrap();

    // Without it, the same user is refused even though the backend has the user: the password
    // must then be an access token of the principal (manual IAM authn), and this one is not.
    let plain = env.connector();
    let err = cloudsql::mysql::connect(
        &plain,
        inst.connection_name(),
        mysql_login(&db_user, Some("not-a-token")).enable_cleartext_plugin(true),
    )
    .await
    .unwrap_err();
    match err {
        cloudsql::mysql::Error::MySql(mysql_async::Error::Server(e)) => {
            assert_eq!(e.code, 1045);
            assert!(e.message.contains("IAM"), "{}", e.message);
        }
        other => panic!("expected access denied, got {other:?}"),
    }

    // Per-connection IAM authn on the plain connector works.
    let pool = cloudsql::mysql::pool_with(
        &plain,
        inst.connection_name(),
        mysql_login(&db_user, None),
        &DialOptions::new().iam_authn(true),
    )
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
    pool.disconnect().await.unwrap();
}

#[tokio::test]
async fn a_postgres_instance_is_refused_with_a_typed_error() {
    let env = Env::new().await;
    let inst = env.add(env.pg_config()).await;
    let err = cloudsql::mysql::pool(&env.connector(), inst.connection_name(), mysql_login("u", None))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            cloudsql::mysql::Error::Connector(Error::IncompatibleDriver { .. })
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn mysql_async_never_switches_to_the_servers_own_socket() {
    let env = Env::new().await;
    let inst = env.add(env.mysql_config()).await;
    let user = unique("app");
    create_mysql_user(&user, "pw").await;
    let connector = env.connector();
    let opts = cloudsql::mysql::opts(&connector, inst.connection_name(), mysql_login(&user, Some("pw")))
        .await
        .unwrap();
    assert!(!opts.prefer_socket());
    assert!(opts.socket().unwrap().ends_with("mysql.sock"));
    let mut conn = mysql_async::Conn::new(opts).await.unwrap();
    // The session is relayed by the emulator, so the server sees a TCP peer; had mysql_async
    // switched to the server's own `@@socket`, the server would see `localhost`.
    let host: Option<String> = conn
        .query_first("SELECT host FROM information_schema.processlist WHERE id = CONNECTION_ID()")
        .await
        .unwrap();
    let host = host.unwrap();
    assert!(host.starts_with("127.0.0.1:"), "{host}");
    assert_eq!(inst.counters().total(), 2);
    conn.disconnect().await.unwrap();
}
