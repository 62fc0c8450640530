//! The SQL Data Service tunnel (`IpType::SqlData`) to an emulated Cloud SQL for PostgreSQL
//! instance in front of the local PostgreSQL (127.0.0.1:5432): no address of the instance is
//! dialed, the database protocol travels in a gRPC stream over TLS. With tokio-postgres (the
//! stream handed to the driver) and with sqlx (through the connector's local socket).
//!
//! ```sh
//! cargo run --example sql_data --features sql-data
//! ```
//!
//! `PGUSER` / `PGPASSWORD` / `PGDATABASE` (default: postgres, empty, postgres) choose the login.

use cloudsql::core::{Connector, Credentials, IpType};
use cloudsql_emulator::{Emulator, InstanceConfig};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let emulator = Emulator::start().await?;
    let sql_data = emulator.start_sql_data().await?;
    let instance = emulator
        .add_instance(InstanceConfig::new(
            "example-project:us-central1:example-pg",
            "POSTGRES_15",
            "127.0.0.1:5432".parse()?,
        ))
        .await?;
    let dir = std::env::temp_dir().join(format!("cloudsql-example-{}", std::process::id()));
    let key = emulator.write_service_account_file("example@example-project.iam.gserviceaccount.com", &dir)?;
    // Against Cloud SQL, leave out the endpoint and root CA: the defaults are
    // https://sqladmin.googleapis.com and the platform's trust store.
    let connector = Connector::builder()
        .credentials(Credentials::from_file(&key)?)
        .admin_api_endpoint(emulator.admin_api_url())
        .sql_data_endpoint(sql_data.url())
        .sql_data_root_ca(sql_data.root_ca_pem())
        .ip_type(IpType::SqlData)
        .build()?;
    println!("tunnel endpoint: {}", sql_data.url());

    let mut config = tokio_postgres::Config::new();
    config
        .user(env_or("PGUSER", "postgres"))
        .password(env_or("PGPASSWORD", ""))
        .dbname(env_or("PGDATABASE", "postgres"));
    let (client, connection) =
        cloudsql::postgres::connect(&connector, instance.connection_name(), &config).await?;
    tokio::spawn(connection);
    let version: String = client.query_one("SELECT version()", &[]).await?.get(0);
    println!("tokio-postgres through the tunnel: {version}");

    let base = PgConnectOptions::new()
        .username(&env_or("PGUSER", "postgres"))
        .password(&env_or("PGPASSWORD", ""))
        .database(&env_or("PGDATABASE", "postgres"));
    let pool = cloudsql::sqlx::postgres::pool(
        &connector,
        instance.connection_name(),
        base,
        PgPoolOptions::new().max_connections(2),
    )
    .await?;
    let sum: i64 = sqlx::query_scalar("SELECT sum(i)::bigint FROM generate_series(1, 1000) i")
        .fetch_one(&pool)
        .await?;
    println!("sqlx through the tunnel: sum(1..=1000) = {sum}");
    pool.close().await;

    println!(
        "SQL Data Service sessions: {}; direct connections to the instance: {}",
        sql_data.calls(instance.connection_name()),
        instance.counters().connection_attempts()
    );
    connector.close().await;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
