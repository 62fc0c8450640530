//! `IpType::SqlData`: the database protocol carried by the emulator's SQL Data Service (gRPC
//! over TLS with its own CA), for tokio-postgres and mysql_async, with fallback to direct TLS,
//! the RESOURCE_EXHAUSTED cooldown, resets, close and automatic IAM authn.
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

mod support;

use std::time::Duration;

use cloudsql::core::{ConnectStage, ConnectorBuilder, DialOptions, Error, IpType};
use cloudsql_emulator::{SqlDataFaultState, SqlDataServer};
use mysql_async::prelude::Queryable;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A connector that tunnels by default through `server`.
fn tunnel_builder(env: &Env, server: &SqlDataServer) -> ConnectorBuilder {
    env.builder()
        .ip_type(IpType::SqlData)
        .sql_data_endpoint(server.url())
        .sql_data_root_ca(server.root_ca_pem())
}

fn faults(f: impl FnOnce(&mut SqlDataFaultState)) -> SqlDataFaultState {
    let mut state = SqlDataFaultState::default();
    f(&mut state);
    state
}

/// Whether `err`'s source chain mentions `needle`.
fn chain_mentions(err: &dyn std::error::Error, needle: &str) -> bool {
    let mut next = Some(err);
    while let Some(e) = next {
        if e.to_string().contains(needle) {
            return true;
        }
        next = e.source();
    }
    false
}

#[tokio::test]
async fn tokio_postgres_queries_run_through_the_tunnel() {
    let env = Env::new().await;
    let server = env.emulator.start_sql_data().await.unwrap();
    let inst = env.add(env.pg_config()).await;
    let connector = tunnel_builder(&env, &server).build().unwrap();
    let (client, connection) =
        cloudsql::postgres::connect(&connector, inst.connection_name(), &trust_login())
            .await
            .unwrap();
    tokio::spawn(connection);
    let echoed: String = client
        .query_one("SELECT $1::text || '!'", &[&"through the tunnel"])
        .await
        .unwrap()
        .get(0);
    assert_eq!(echoed, "through the tunnel!");
    // A result far larger than one packet arrives whole and in order.
    let big: String = client
        .query_one(
            "SELECT string_agg(lpad(i::text, 8, '0'), '') FROM generate_series(1, 200000) i",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(big.len(), 1_600_000);
    assert!(big.starts_with("0000000100000002"));
    assert!(big.ends_with("00200000"));
    assert_eq!(server.calls(inst.connection_name()), 1);
    assert_eq!(
        inst.counters().connection_attempts(),
        0,
        "no direct connection to the proxy"
    );
}

#[tokio::test]
async fn mysql_async_runs_through_the_tunnel_via_the_local_socket() {
    let env = Env::new().await;
    let server = env.emulator.start_sql_data().await.unwrap();
    let inst = env.add(env.mysql_config()).await;
    let user = unique("tun");
    create_mysql_user(&user, "pw").await;
    let connector = tunnel_builder(&env, &server).build().unwrap();
    let opts = cloudsql::mysql::opts(&connector, inst.connection_name(), mysql_login(&user, Some("pw")))
        .await
        .unwrap();
    let mut conn = mysql_async::Conn::new(opts).await.unwrap();
    let sum: Option<i64> = conn
        .query_first("SELECT SUM(seq) FROM (SELECT 1 AS seq UNION ALL SELECT 2 UNION ALL SELECT 39) t")
        .await
        .unwrap();
    assert_eq!(sum, Some(42));
    let me: Option<String> = conn.query_first("SELECT CURRENT_USER()").await.unwrap();
    assert!(me.unwrap().starts_with(&user));
    conn.disconnect().await.unwrap();
    assert!(server.calls(inst.connection_name()) >= 1);
    assert_eq!(
        inst.counters().connection_attempts(),
        0,
        "no direct connection to the proxy"
    );
}

#[tokio::test]
async fn failed_precondition_falls_back_to_direct_tls_and_is_remembered() {
    let env = Env::new().await;
    let server = env.emulator.start_sql_data().await.unwrap();
    server.faults().set(faults(|f| f.failed_precondition = true));
    let inst = env.add(env.pg_config()).await;
    let connector = tunnel_builder(&env, &server).build().unwrap();
    assert_eq!(
        select_one(&connector, inst.connection_name(), &trust_login())
            .await
            .unwrap(),
        1
    );
    assert_eq!(server.calls(inst.connection_name()), 1);
    assert_eq!(inst.counters().connections(), 1, "the fallback dialed the proxy");
    // The instance does not offer the tunnel: the next connect goes direct without asking.
    server.faults().clear();
    assert_eq!(
        select_one(&connector, inst.connection_name(), &trust_login())
            .await
            .unwrap(),
        1
    );
    assert_eq!(server.calls(inst.connection_name()), 1);
    assert_eq!(inst.counters().connections(), 2);
    // Another connector has not learnt it and tunnels.
    let fresh = tunnel_builder(&env, &server).build().unwrap();
    assert_eq!(
        select_one(&fresh, inst.connection_name(), &trust_login())
            .await
            .unwrap(),
        1
    );
    assert_eq!(server.calls(inst.connection_name()), 2);
}

#[tokio::test]
async fn resource_exhausted_is_a_typed_error_and_starts_a_cooldown() {
    let env = Env::new().await;
    let server = env.emulator.start_sql_data().await.unwrap();
    server.faults().set(faults(|f| f.resource_exhausted = true));
    let inst = env.add(env.pg_config()).await;
    let connector = tunnel_builder(&env, &server).build().unwrap();
    let mut stream = connector.connect(inst.connection_name()).await.unwrap();
    // The refusal arrives on the stream, as the call's status.
    let _ = stream.write_all(b"\0\0\0\x08\x04\xd2\x16\x2f").await;
    let mut buf = [0u8; 16];
    let err = stream.read(&mut buf).await.unwrap_err();
    let inner = err.get_ref().and_then(|e| e.downcast_ref::<Error>()).unwrap();
    match inner {
        Error::SqlDataExhausted {
            instance,
            retry_after,
            ..
        } => {
            assert_eq!(instance, inst.connection_name());
            assert!(*retry_after <= Duration::from_secs(5) && !retry_after.is_zero());
        }
        other => panic!("{other:?}"),
    }
    assert!(inner.to_string().contains("RESOURCE_EXHAUSTED"), "{inner}");
    // During the cooldown the connect is refused at once, without a call.
    server.faults().clear();
    let err = connector.connect(inst.connection_name()).await.unwrap_err();
    assert!(matches!(err, Error::SqlDataExhausted { .. }), "{err:?}");
    assert!(err.is_retryable());
    assert_eq!(server.calls(inst.connection_name()), 1);
    // Other IP types are not affected.
    let direct = DialOptions::new().ip_type(IpType::Public);
    connector
        .connect_with(inst.connection_name(), &direct)
        .await
        .unwrap();
}

#[tokio::test]
async fn a_mid_stream_reset_without_reconnect_fails_the_connection_with_the_status() {
    let env = Env::new().await;
    let server = env.emulator.start_sql_data().await.unwrap();
    server.faults().set(faults(|f| f.reset_after_bytes = Some(4096)));
    let inst = env.add(env.pg_config()).await;
    let connector = tunnel_builder(&env, &server).build().unwrap();
    let (client, connection) =
        cloudsql::postgres::connect(&connector, inst.connection_name(), &trust_login())
            .await
            .unwrap();
    let connection = tokio::spawn(connection);
    let err = client
        .query_one("SELECT repeat('x', 100000)", &[])
        .await
        .unwrap_err();
    let ended = connection.await.unwrap().unwrap_err();
    assert!(
        chain_mentions(&ended, "UNAVAILABLE") || chain_mentions(&err, "UNAVAILABLE"),
        "{err:?} / {ended:?}"
    );
}

#[tokio::test]
async fn a_slow_first_byte_is_waited_for() {
    let env = Env::new().await;
    let server = env.emulator.start_sql_data().await.unwrap();
    server.faults().set(faults(|f| f.first_byte_delay_ms = 300));
    let inst = env.add(env.pg_config()).await;
    let connector = tunnel_builder(&env, &server).build().unwrap();
    assert_eq!(
        select_one(&connector, inst.connection_name(), &trust_login())
            .await
            .unwrap(),
        1
    );
}

#[tokio::test]
async fn closing_the_client_ends_the_database_session_and_close_refuses_new_tunnels() {
    let env = Env::new().await;
    let server = env.emulator.start_sql_data().await.unwrap();
    let inst = env.add(env.pg_config()).await;
    let connector = tunnel_builder(&env, &server).build().unwrap();
    let app = unique("tunnel-close");
    let mut config = trust_login();
    config.application_name(&app);
    let (client, connection) = cloudsql::postgres::connect(&connector, inst.connection_name(), &config)
        .await
        .unwrap();
    tokio::spawn(connection);
    client.query_one("SELECT 1", &[]).await.unwrap();
    drop(client);

    let mut watcher = trust_login();
    watcher.host("127.0.0.1").port(5432);
    let (admin, conn) = watcher.connect(tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let n: i64 = admin
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1",
                &[&app],
            )
            .await
            .unwrap()
            .get(0);
        if n == 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the backend session stayed open"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    connector.close().await;
    let err = connector.connect(inst.connection_name()).await.unwrap_err();
    assert!(matches!(err, Error::Closed), "{err:?}");
}

#[tokio::test]
async fn an_endpoint_that_never_answers_times_out_at_the_tunnel_stage() {
    let env = Env::new().await;
    let inst = env.add(env.pg_config()).await;
    // Accepts TCP and never speaks TLS.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = silent.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((tcp, _)) = silent.accept().await {
            held.push(tcp);
        }
    });
    let connector = env
        .builder()
        .ip_type(IpType::SqlData)
        .sql_data_endpoint(format!("https://{addr}"))
        .sql_data_root_ca(env.emulator.start_sql_data().await.unwrap().root_ca_pem())
        .build()
        .unwrap();
    // Warm the instance data so that the timeout can only hit the tunnel.
    connector
        .warmup(inst.connection_name(), &DialOptions::new())
        .await
        .unwrap();
    let options = DialOptions::new().timeout(Duration::from_secs(2));
    let err = connector
        .connect_with(inst.connection_name(), &options)
        .await
        .unwrap_err();
    match &err {
        Error::Timeout { stage, .. } => assert_eq!(*stage, ConnectStage::Tunnel),
        other => panic!("{other:?}"),
    }
    assert!(err.to_string().contains("SQL Data Service"), "{err}");
}

#[tokio::test]
async fn iam_users_log_in_as_the_tokens_principal_on_postgres() {
    let env = Env::new().await;
    let server = env.emulator.start_sql_data().await.unwrap();
    let principal = env.sa_email.clone();
    let db_user = principal.strip_suffix(".gserviceaccount.com").unwrap().to_owned();
    let backend_password = unique("only-the-emulator-knows");
    create_scram_role(&db_user, &backend_password).await;
    let inst = env
        .add(
            env.pg_config_for(scram_pg())
                .iam_user(&principal, &backend_password),
        )
        .await;
    let connector = tunnel_builder(&env, &server).iam_authn(true).build().unwrap();
    let mut login = tokio_postgres::Config::new();
    login.user(&env.sa_email).dbname("postgres");
    let (client, connection) = cloudsql::postgres::connect(&connector, inst.connection_name(), &login)
        .await
        .unwrap();
    tokio::spawn(connection);
    let user: String = client
        .query_one("SELECT current_user::text", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(user, db_user);
    assert_eq!(server.calls(inst.connection_name()), 1);

    // A database user that is not IAM still needs its password through the tunnel.
    let mut wrong = tokio_postgres::Config::new();
    wrong
        .user("postgres")
        .password("not-the-password")
        .dbname("postgres");
    let err = cloudsql::postgres::connect(&connector, inst.connection_name(), &wrong)
        .await
        .err()
        .unwrap();
    assert!(chain_mentions(&err, "password"), "{err:?}");
}

#[tokio::test]
async fn a_reset_with_reconnect_resumes_the_session_byte_exact() {
    let env = Env::new().await;
    let server = env.emulator.start_sql_data().await.unwrap();
    server.faults().set(faults(|f| {
        f.reconnect = true;
        f.reset_after_bytes = Some(100_000);
    }));
    let inst = env.add(env.pg_config()).await;
    let connector = tunnel_builder(&env, &server).build().unwrap();
    let (client, connection) =
        cloudsql::postgres::connect(&connector, inst.connection_name(), &trust_login())
            .await
            .unwrap();
    tokio::spawn(connection);
    let pid: i32 = client
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    // The reset falls in the middle of this result; the session resumes where the client was.
    let big: String = client
        .query_one(
            "SELECT string_agg(lpad(i::text, 8, '0'), '') FROM generate_series(1, 200000) i",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let expected: String = (1..=200_000).map(|i| format!("{i:08}")).collect();
    assert!(big == expected, "the data differs after the reset");
    // Still the same database session, and client bytes go through after the resume.
    let param: String = "abcdefghij".repeat(20_000);
    let row = client
        .query_one(
            "SELECT pg_backend_pid(), length($1::text), md5($1::text) = md5(repeat('abcdefghij', 20000))",
            &[&param],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, i32>(0), pid);
    assert_eq!(row.get::<_, i32>(1), 200_000);
    assert!(row.get::<_, bool>(2));
    assert_eq!(
        server.calls(inst.connection_name()),
        2,
        "StartSession, then one ContinueSession"
    );
}

#[tokio::test]
async fn iam_users_log_in_as_the_tokens_principal_on_mysql() {
    let env = Env::new().await;
    let server = env.emulator.start_sql_data().await.unwrap();
    let db_user = env.sa_email.split('@').next().unwrap().to_owned();
    let backend_password = unique("only-the-emulator-knows");
    create_mysql_user(&db_user, &backend_password).await;
    let inst = env
        .add(env.mysql_config().iam_user(&env.sa_email, &backend_password))
        .await;
    let connector = tunnel_builder(&env, &server).iam_authn(true).build().unwrap();
    // No password: the tunnel's bearer token is the login.
    let opts = cloudsql::mysql::opts(
        &connector,
        inst.connection_name(),
        mysql_login(&env.sa_email, None),
    )
    .await
    .unwrap();
    let mut conn = mysql_async::Conn::new(opts).await.unwrap();
    let me: Option<String> = conn.query_first("SELECT CURRENT_USER()").await.unwrap();
    assert_eq!(me.unwrap(), format!("{db_user}@%"));
    conn.disconnect().await.unwrap();
    assert!(server.calls(inst.connection_name()) >= 1);
    assert_eq!(
        inst.counters().connection_attempts(),
        0,
        "no direct connection to the proxy"
    );
}

/// Every pool and driver crate runs over the tunnel as over direct TLS: deadpool and bb8 on
/// tokio-postgres, sqlx on PostgreSQL and MySQL (through the local socket), tiberius on the
/// emulator's SQL Server responder. None of them makes a direct connection to the proxy.
#[tokio::test(flavor = "multi_thread")]
async fn every_pool_and_driver_runs_through_the_tunnel() {
    use sqlx::mysql::{MySqlConnectOptions, MySqlPoolOptions};
    use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

    let env = Env::new().await;
    let server = env.emulator.start_sql_data().await.unwrap();
    let connector = tunnel_builder(&env, &server).build().unwrap();

    let pg = env.add(env.pg_config()).await;
    let deadpool =
        cloudsql::postgres::deadpool::pool_builder(connector.clone(), pg.connection_name(), trust_login())
            .max_size(4)
            .build()
            .unwrap();
    let one: i32 = deadpool
        .get()
        .await
        .unwrap()
        .query_one("SELECT 1", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(one, 1, "deadpool");

    let manager = cloudsql::postgres::bb8::CloudSqlConnectionManager::new(
        connector.clone(),
        pg.connection_name(),
        trust_login(),
    );
    let bb8_pool = bb8::Pool::builder().max_size(4).build(manager).await.unwrap();
    let two: i32 = bb8_pool
        .get()
        .await
        .unwrap()
        .query_one("SELECT 2", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(two, 2, "bb8");

    let base = PgConnectOptions::new().username("postgres").database("postgres");
    let sqlx_pg =
        cloudsql::sqlx::postgres::pool(&connector, pg.connection_name(), base, PgPoolOptions::new())
            .await
            .unwrap();
    let three: i32 = sqlx::query_scalar("SELECT 3").fetch_one(&sqlx_pg).await.unwrap();
    assert_eq!(three, 3, "sqlx PostgreSQL");
    sqlx_pg.close().await;

    let my = env.add(env.mysql_config()).await;
    let user = unique("tunnel");
    create_mysql_user(&user, "my-password").await;
    let base = MySqlConnectOptions::new()
        .username(&user)
        .password("my-password")
        .database(MYSQL_DB);
    let sqlx_my =
        cloudsql::sqlx::mysql::pool(&connector, my.connection_name(), base, MySqlPoolOptions::new())
            .await
            .unwrap();
    let four: i64 = sqlx::query_scalar("SELECT 4").fetch_one(&sqlx_my).await.unwrap();
    assert_eq!(four, 4, "sqlx MySQL");
    sqlx_my.close().await;

    let mssql = env
        .add(
            cloudsql_emulator::InstanceConfig::sql_server(&format!(
                "test-project:us-central1:{}",
                unique("mssql")
            ))
            .sql_login("sqlserver", "S3cret!"),
        )
        .await;
    let mut login = tiberius::Config::new();
    login.authentication(tiberius::AuthMethod::sql_server("sqlserver", "S3cret!"));
    login.database("appdb");
    let mut client = cloudsql::mssql::connect(&connector, mssql.connection_name(), login)
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
    assert_eq!(row.get::<i32, _>(0), Some(1), "tiberius");

    for inst in [&pg, &my, &mssql] {
        assert!(
            server.calls(inst.connection_name()) >= 1,
            "{} tunnelled",
            inst.connection_name()
        );
        assert_eq!(
            inst.counters().connection_attempts(),
            0,
            "{}: no direct connection to the proxy",
            inst.connection_name()
        );
    }
}
