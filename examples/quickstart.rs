//! Quickstart: start the Cloud SQL emulator in front of the local PostgreSQL, connect through the
//! connector with tokio-postgres, run a query, and print what happened. No cloud account needed.
//!
//! ```sh
//! cargo run --example quickstart
//! ```
//!
//! `PGHOST`/`PGPORT`/`PGUSER`/`PGPASSWORD`/`PGDATABASE` point it at another PostgreSQL.

use std::time::Instant;

use cloudsql::core::{Connector, Credentials};
use cloudsql_emulator::{CaMode, Emulator, InstanceConfig};

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .init();

    let backend = format!("{}:{}", env_or("PGHOST", "127.0.0.1"), env_or("PGPORT", "5432"));
    let emulator = Emulator::start().await?;
    let instance = emulator
        .add_instance(
            InstanceConfig::new(
                "quickstart-project:us-central1:quickstart-pg",
                "POSTGRES_15",
                backend.parse()?,
            )
            .ca_mode(CaMode::GoogleManagedCas),
        )
        .await?;
    println!("emulated Admin API:   {}", emulator.admin_api_url());
    println!(
        "emulated instance:    {} (server-side proxy on {}:3307, DNS name {})",
        instance.connection_name(),
        instance
            .public_ip()
            .map_or_else(|| "-".into(), |ip| ip.to_string()),
        instance.dns_name().unwrap_or("-"),
    );

    let dir = std::env::temp_dir().join(format!("cloudsql-quickstart-{}", std::process::id()));
    let key_file =
        emulator.write_service_account_file("quickstart@quickstart-project.iam.gserviceaccount.com", &dir)?;
    println!("service account key:  {}", key_file.display());

    let connector = Connector::builder()
        .credentials(Credentials::from_file(&key_file)?)
        .admin_api_endpoint(emulator.admin_api_url())
        .build()?;

    let mut config = tokio_postgres::Config::new();
    config
        .user(env_or("PGUSER", "postgres"))
        .password(env_or("PGPASSWORD", ""))
        .dbname(env_or("PGDATABASE", "postgres"));

    let started = Instant::now();
    let (client, connection) =
        cloudsql::postgres::connect(&connector, instance.connection_name(), &config).await?;
    tokio::spawn(connection);
    let row = client
        .query_one("SELECT version(), current_user, inet_server_addr()::text", &[])
        .await?;
    let cold = started.elapsed();
    println!("connected (cold start incl. key, cert and TLS 1.3) in {cold:.1?}");
    println!("  server version:     {}", row.get::<_, String>(0));
    println!("  logged in as:       {}", row.get::<_, String>(1));

    let started = Instant::now();
    let (client2, connection2) =
        cloudsql::postgres::connect(&connector, instance.connection_name(), &config).await?;
    tokio::spawn(connection2);
    let one: i32 = client2.query_one("SELECT 1", &[]).await?.get(0);
    println!(
        "second connection (cached certificate) -> SELECT 1 = {one} in {:.1?}",
        started.elapsed()
    );

    let counters = instance.counters();
    println!(
        "Admin API calls:      connectSettings={} generateEphemeralCert={}",
        counters.calls("connectSettings"),
        counters.calls("generateEphemeralCert")
    );
    connector.close().await;
    let _ = std::fs::remove_dir_all(&dir);
    println!("done: connector closed, emulator stopping");
    Ok(())
}
