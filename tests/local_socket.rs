//! Local socket mode: Unix and TCP listeners that dial the instance per connection, with the
//! metadata exchange, private permissions, stale-socket handling and clean shutdown.
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use cloudsql::core::driver::DriverDial;
use cloudsql::core::{ClientProtocol, DialOptions, Engine, Error, LocalSocket};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// tokio-postgres over the socket's directory, as libpq-style clients use it.
async fn select_one_via(socket: &LocalSocket) -> Result<i32, tokio_postgres::Error> {
    let mut config = trust_login();
    config.host_path(socket.dir()).port(5432);
    let (client, connection) = config.connect(tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    Ok(client.query_one("SELECT 1", &[]).await?.get(0))
}

#[tokio::test]
async fn postgres_socket_is_private_and_reports_uds_in_the_metadata_exchange() {
    let env = Env::new().await;
    let inst = env.add(env.pg_config().mdx(true)).await;
    let connector = env.connector();
    let socket = connector
        .local_socket(inst.connection_name())
        .postgres_unix()
        .serve()
        .await
        .unwrap();
    let path = socket.path().to_owned();
    assert!(path.ends_with(".s.PGSQL.5432"), "{}", path.display());
    assert_eq!(mode(socket.dir()), 0o700);
    assert_eq!(mode(&path), 0o600);

    assert_eq!(select_one_via(&socket).await.unwrap(), 1);
    let mdx = inst.counters().metadata_exchanges();
    assert_eq!(mdx.len(), 1);
    assert_eq!(mdx[0].client_protocol_type, 3, "UDS");
    assert!(mdx[0].user_agent.starts_with("cloud-sql-rust-connector/"));

    // A plain stream connect sends no metadata exchange unless asked.
    let mut stream = connector.connect(inst.connection_name()).await.unwrap();
    stream.shutdown().await.unwrap();
    assert_eq!(inst.counters().metadata_exchanges().len(), 1);
    DriverDial::new(
        &connector,
        inst.connection_name(),
        Engine::Postgres,
        &DialOptions::new(),
    )
    .metadata_exchange(ClientProtocol::Tls)
    .connect()
    .await
    .unwrap();
    assert_eq!(inst.counters().metadata_exchanges()[1].client_protocol_type, 2);
}

#[tokio::test]
async fn no_metadata_exchange_without_the_advertisement() {
    let env = Env::new().await;
    let inst = env.add(env.pg_config()).await;
    let connector = env.connector();
    let socket = connector
        .local_socket(inst.connection_name())
        .postgres_unix()
        .serve()
        .await
        .unwrap();
    assert_eq!(select_one_via(&socket).await.unwrap(), 1);
    assert!(inst.counters().metadata_exchanges().is_empty());
}

#[tokio::test]
async fn tcp_listener_serves_concurrent_connections_and_reports_tcp() {
    let env = Env::new().await;
    let inst = env.add(env.pg_config().mdx(true)).await;
    let connector = env.connector();
    let socket = connector
        .local_socket(inst.connection_name())
        .tcp("127.0.0.1:0".parse().unwrap())
        .serve()
        .await
        .unwrap();
    let addr = *socket.addr();
    assert!(addr.ip().is_loopback() && addr.port() != 0);
    let tasks: Vec<_> = (0..32)
        .map(|i: i32| {
            tokio::spawn(async move {
                let mut config = trust_login();
                config.host("127.0.0.1").port(addr.port());
                let (client, connection) = config.connect(tokio_postgres::NoTls).await.unwrap();
                tokio::spawn(connection);
                client
                    .query_one("SELECT $1::int4", &[&i])
                    .await
                    .unwrap()
                    .get::<_, i32>(0)
            })
        })
        .collect();
    let mut sum = 0;
    for t in tasks {
        sum += t.await.unwrap();
    }
    assert_eq!(sum, (0..32).sum::<i32>());
    let mdx = inst.counters().metadata_exchanges();
    assert_eq!(mdx.len(), 32);
    assert!(mdx.iter().all(|m| m.client_protocol_type == 1), "TCP");
    assert_eq!(inst.counters().total(), 2, "one refresh for all 32");

    let err = connector
        .local_socket(inst.connection_name())
        .tcp("0.0.0.0:0".parse().unwrap())
        .serve()
        .await
        .unwrap_err();
    assert!(err.to_string().contains("not a loopback address"), "{err}");
}

#[tokio::test]
async fn stale_sockets_are_replaced_but_live_sockets_and_other_files_are_not() {
    let env = Env::new().await;
    let inst = env.add(env.pg_config()).await;
    let connector = env.connector();
    let dir = env.dir.join("sockets");
    std::fs::DirBuilder::new().recursive(true).create(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();

    // A crashed run leaves its socket file behind.
    drop(std::os::unix::net::UnixListener::bind(dir.join(".s.PGSQL.5432")).unwrap());
    let socket = connector
        .local_socket(inst.connection_name())
        .postgres_unix()
        .dir(&dir)
        .serve()
        .await
        .unwrap();
    assert_eq!(select_one_via(&socket).await.unwrap(), 1);

    // A live one is not taken over.
    let err = env
        .connector()
        .local_socket(inst.connection_name())
        .postgres_unix()
        .dir(&dir)
        .serve()
        .await
        .unwrap_err();
    assert!(err.to_string().contains("in use"), "{err}");

    // Nor is a regular file.
    std::fs::write(dir.join("plain"), b"data").unwrap();
    let err = connector
        .local_socket(inst.connection_name())
        .unix_file("plain")
        .dir(&dir)
        .serve()
        .await
        .unwrap_err();
    assert!(err.to_string().contains("not a socket"), "{err}");
    assert_eq!(std::fs::read(dir.join("plain")).unwrap(), b"data");
}

#[tokio::test]
async fn a_directory_others_can_enter_is_refused() {
    let env = Env::new().await;
    let inst = env.add(env.pg_config()).await;
    let dir = env.dir.join("open");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let err = env
        .connector()
        .local_socket(inst.connection_name())
        .dir(&dir)
        .serve()
        .await
        .unwrap_err();
    assert!(err.to_string().contains("mode 0700"), "{err}");
}

#[tokio::test]
async fn shutdown_removes_the_socket_and_ends_relayed_connections() {
    let env = Env::new().await;
    let inst = env.add(env.pg_config()).await;
    let connector = env.connector();
    let socket = connector
        .local_socket(inst.connection_name())
        .postgres_unix()
        .serve()
        .await
        .unwrap();
    let (path, dir) = (socket.path().to_owned(), socket.dir().to_owned());
    let mut config = trust_login();
    config.host_path(&dir).port(5432);
    let (client, connection) = config.connect(tokio_postgres::NoTls).await.unwrap();
    let driver = tokio::spawn(connection);
    client.query_one("SELECT 1", &[]).await.unwrap();

    socket.shutdown().await;
    assert!(!path.exists() && !dir.exists());
    tokio::time::timeout(std::time::Duration::from_secs(5), driver)
        .await
        .expect("the relayed connection ended")
        .unwrap()
        .ok();
    assert!(client.query_one("SELECT 1", &[]).await.is_err());
}

#[tokio::test]
async fn dropping_the_connector_removes_the_socket_and_closing_refuses_new_connections() {
    let env = Env::new().await;
    let inst = env.add(env.pg_config()).await;
    let connector = env.connector();
    let socket = connector
        .local_socket(inst.connection_name())
        .postgres_unix()
        .serve()
        .await
        .unwrap();
    let path = socket.path().to_owned();
    assert!(path.exists());
    drop(connector);
    assert!(!path.exists(), "socket removed when the connector is dropped");

    let connector = env.connector();
    let socket = connector
        .local_socket(inst.connection_name())
        .postgres_unix()
        .serve()
        .await
        .unwrap();
    let path = socket.path().to_owned();
    connector.close().await;
    // Closed: the socket stays to refuse new connections with the connector's error.
    let err = select_one_via(&socket).await.unwrap_err();
    assert!(chain_text(&err).contains("the connector is closed"), "{err:?}");
    assert!(matches!(socket.last_error(), Some(Error::Closed)));
    drop(connector);
    assert!(
        !path.exists(),
        "socket removed when the closed connector is dropped"
    );
}

fn chain_text(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(e) = source {
        out.push_str(": ");
        out.push_str(&e.to_string());
        source = e.source();
    }
    out
}

#[tokio::test]
async fn failed_dials_close_the_client_but_the_listener_keeps_serving() {
    let env = Env::new().await;
    let inst = env.add(env.pg_config()).await;
    let connector = env.connector();
    let socket = connector
        .local_socket(inst.connection_name())
        .postgres_unix()
        .serve()
        .await
        .unwrap();
    assert_eq!(select_one_via(&socket).await.unwrap(), 1);
    inst.faults().proxy_reset(true);
    assert!(select_one_via(&socket).await.is_err());
    inst.faults().proxy_reset(false);
    assert_eq!(select_one_via(&socket).await.unwrap(), 1);
}

#[tokio::test]
async fn repeated_serves_reuse_one_socket() {
    let env = Env::new().await;
    let inst = env.add(env.pg_config()).await;
    let connector = env.connector();
    let a = connector
        .local_socket(inst.connection_name())
        .postgres_unix()
        .serve()
        .await
        .unwrap();
    let b = connector
        .local_socket(inst.connection_name())
        .postgres_unix()
        .serve()
        .await
        .unwrap();
    assert_eq!(a.path(), b.path());
    let c = connector
        .local_socket(inst.connection_name())
        .postgres_unix()
        .options(DialOptions::new().iam_authn(true))
        .serve()
        .await
        .unwrap();
    assert_ne!(a.path(), c.path(), "different options get their own socket");
}

#[tokio::test]
async fn wrong_engine_is_refused_before_the_socket_exists() {
    let env = Env::new().await;
    let inst = env.add(env.mysql_config()).await;
    let connector = env.connector();
    let err = DriverDial::new(
        &connector,
        inst.connection_name(),
        Engine::Postgres,
        &DialOptions::new(),
    )
    .local_socket()
    .postgres_unix()
    .serve()
    .await
    .unwrap_err();
    assert!(matches!(err, Error::IncompatibleDriver { .. }), "{err:?}");
}

#[tokio::test]
async fn the_emulator_rejects_malformed_metadata_exchanges() {
    let env = Env::new().await;
    let inst = env.add(env.pg_config().mdx(true)).await;
    let mut stream = env.connector().connect(inst.connection_name()).await.unwrap();
    // Right magic, a protobuf with an unknown client protocol type.
    stream.write_all(b"CSQLMDEX\0\0\0\x02\x10\x09").await.unwrap();
    let mut reply = Vec::new();
    stream.read_to_end(&mut reply).await.ok();
    assert_eq!(&reply[..8], b"CSQLMDEX");
    assert_eq!(&reply[12..14], &[0x08, 2], "ERROR status");
    assert!(String::from_utf8_lossy(&reply).contains("malformed"));
    assert!(inst.counters().metadata_exchanges().is_empty());
}
