//! Shared setup for the integration tests: an emulator with a service account, connectors
//! pointed at it, and the local databases (with a loud failure when one is missing).
#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use cloudsql::core::{Connector, ConnectorBuilder, Credentials};
use cloudsql_emulator::{Emulator, Instance, InstanceConfig};

/// The machine's shared PostgreSQL (may trust every loopback login).
pub const TRUST_PG: &str = "127.0.0.1:5432";
/// The password-checking cluster `scripts/scram-postgres.sh` provisions.
pub const SCRAM_PG: &str = "127.0.0.1:55432";
pub const SCRAM_ADMIN_PASSWORD: &str = "cloudsql-scram-admin";

pub fn trust_pg() -> SocketAddr {
    TRUST_PG.parse().expect("valid address")
}

pub fn scram_pg() -> SocketAddr {
    SCRAM_PG.parse().expect("valid address")
}

pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{:08x}", rand_u32())
}

fn rand_u32() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    );
    h.finish() as u32
}

/// An emulator, a service account of its own and a directory for credentials files.
pub struct Env {
    pub emulator: Emulator,
    pub dir: PathBuf,
    pub sa_email: String,
    pub key_file: PathBuf,
}

impl Env {
    pub async fn new() -> Self {
        let emulator = Emulator::start().await.expect("emulator starts");
        let dir = std::env::temp_dir().join(unique("cloudsql-test"));
        let sa_email = format!("{}@test-project.iam.gserviceaccount.com", unique("sa"));
        let key_file = emulator
            .write_service_account_file(&sa_email, &dir)
            .expect("key file");
        Self {
            emulator,
            dir,
            sa_email,
            key_file,
        }
    }

    /// A connector builder with this env's service account and Admin API endpoint.
    pub fn builder(&self) -> ConnectorBuilder {
        Connector::builder()
            .credentials(Credentials::from_file(&self.key_file).expect("credentials"))
            .admin_api_endpoint(self.emulator.admin_api_url())
    }

    pub fn connector(&self) -> Connector {
        self.builder().build().expect("connector builds")
    }

    pub async fn add(&self, config: InstanceConfig) -> Arc<Instance> {
        self.emulator.add_instance(config).await.expect("instance starts")
    }

    /// A Postgres instance named uniquely, in front of the trusting local PostgreSQL.
    pub fn pg_config(&self) -> InstanceConfig {
        self.pg_config_for(trust_pg())
    }

    /// A Postgres instance named uniquely, in front of `backend`.
    pub fn pg_config_for(&self, backend: SocketAddr) -> InstanceConfig {
        InstanceConfig::new(
            &format!("test-project:us-central1:{}", unique("pg")),
            "POSTGRES_15",
            backend,
        )
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A tokio-postgres config for the trusting local PostgreSQL.
pub fn trust_login() -> tokio_postgres::Config {
    let mut config = tokio_postgres::Config::new();
    config.user("postgres").dbname("postgres");
    config
}

/// An admin session on the password-checking cluster.
pub async fn scram_admin() -> tokio_postgres::Client {
    let mut config = tokio_postgres::Config::new();
    config
        .host("127.0.0.1")
        .port(55432)
        .user("postgres")
        .password(SCRAM_ADMIN_PASSWORD)
        .dbname("postgres");
    let (client, connection) = config.connect(tokio_postgres::NoTls).await.unwrap_or_else(|e| {
        panic!(
            "the password-checking PostgreSQL on {SCRAM_PG} is not available ({e}); \
             run `bash scripts/scram-postgres.sh` (scripts/test.sh does it for you)"
        )
    });
    tokio::spawn(connection);
    client
}

/// Creates a login role with a password on the password-checking cluster, and a schema of its
/// own (first on its default search path) to create tables in.
pub async fn create_scram_role(name: &str, password: &str) {
    let admin = scram_admin().await;
    admin
        .batch_execute(&format!(
            "CREATE ROLE \"{name}\" LOGIN PASSWORD '{password}'; \
             CREATE SCHEMA \"{name}\" AUTHORIZATION \"{name}\""
        ))
        .await
        .expect("role created");
}

/// Runs `SELECT 1` on a fresh connection through the connector.
pub async fn select_one(
    connector: &Connector,
    instance: &str,
    config: &tokio_postgres::Config,
) -> Result<i32, cloudsql::postgres::Error> {
    let (client, connection) = cloudsql::postgres::connect(connector, instance, config).await?;
    tokio::spawn(connection);
    let row = client.query_one("SELECT 1", &[]).await?;
    Ok(row.get(0))
}

/// Maps the instance's PSC DNS name to its loopback address, as private DNS would.
pub fn psc_dialer(builder: ConnectorBuilder, instance: &Instance) -> ConnectorBuilder {
    let name = instance.psc_dns_name().expect("PSC enabled").to_owned();
    let ip = instance.psc_ip().expect("PSC enabled");
    builder.dial_func(move |host: String, port: u16| {
        let target = if host == name { ip.to_string() } else { host };
        async move { tokio::net::TcpStream::connect((target.as_str(), port)).await }
    })
}

/// Waits up to 10 s for the instance to have answered `n` calls of `method`; returns the count.
pub async fn wait_for_calls(instance: &Instance, method: &str, n: u64) -> u64 {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while instance.counters().calls(method) < n && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    instance.counters().calls(method)
}

/// The local MariaDB/MySQL.
pub const MYSQL: &str = "127.0.0.1:3306";
pub const MYSQL_ADMIN: &str = "cloudsql_admin";
pub const MYSQL_ADMIN_PASSWORD: &str = "cloudsql-mysql-admin";
pub const MYSQL_DB: &str = "cloudsql_test";

pub fn mysql_backend() -> SocketAddr {
    MYSQL.parse().expect("valid address")
}

impl Env {
    /// A MySQL instance named uniquely, in front of the local MariaDB.
    pub fn mysql_config(&self) -> InstanceConfig {
        InstanceConfig::new(
            &format!("test-project:us-central1:{}", unique("my")),
            "MYSQL_8_0",
            mysql_backend(),
        )
    }
}

/// mysql_async options for a login on the instance (through the connector, the address is ignored).
pub fn mysql_login(user: &str, password: Option<&str>) -> mysql_async::OptsBuilder {
    mysql_async::OptsBuilder::default()
        .user(Some(user))
        .pass(password)
        .db_name(Some(MYSQL_DB))
}

/// An admin session on the local MariaDB/MySQL, directly.
pub async fn mysql_admin() -> mysql_async::Conn {
    let opts = mysql_async::OptsBuilder::default()
        .ip_or_hostname("127.0.0.1")
        .tcp_port(3306)
        .user(Some(MYSQL_ADMIN))
        .pass(Some(MYSQL_ADMIN_PASSWORD))
        .prefer_socket(false);
    mysql_async::Conn::new(opts).await.unwrap_or_else(|e| {
        panic!(
            "the MariaDB/MySQL admin on {MYSQL} is not available ({e}); run `bash scripts/ensure-databases.sh` \
             and `bash scripts/mysql-test-user.sh` (scripts/test.sh does it for you)"
        )
    })
}

/// Creates a MySQL user with a password and every right on the test database.
pub async fn create_mysql_user(name: &str, password: &str) {
    use mysql_async::prelude::Queryable;
    let mut admin = mysql_admin().await;
    admin
        .query_drop(format!(
            "CREATE USER '{name}'@'%' IDENTIFIED BY '{password}'; \
             GRANT ALL PRIVILEGES ON {MYSQL_DB}.* TO '{name}'@'%'"
        ))
        .await
        .expect("user created");
    admin.disconnect().await.expect("admin disconnects");
}
