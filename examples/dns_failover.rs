//! DNS failover: two emulated instances in front of the local PostgreSQL, one DNS name whose TXT
//! record points at the first. A connection made through the name is closed when the record is
//! switched to the second instance, and the next connect lands on the second. Prints what
//! happened and how long the close took. No cloud account needed.
//!
//! ```sh
//! cargo run --example dns_failover
//! ```
//!
//! `PGHOST`/`PGPORT`/`PGUSER`/`PGPASSWORD`/`PGDATABASE` point it at another PostgreSQL.

use std::time::{Duration, Instant};

use cloudsql::core::{Connector, Credentials, ErrorChain};
use cloudsql_emulator::{DnsRecord, Emulator, InstanceConfig};

/// How often the connector looks the name up again (30 s by default; short for the demo).
const FAILOVER_PERIOD: Duration = Duration::from_secs(1);

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

    let backend = format!("{}:{}", env_or("PGHOST", "127.0.0.1"), env_or("PGPORT", "5432")).parse()?;
    let emulator = Emulator::start().await?;
    let primary = emulator
        .add_instance(InstanceConfig::new(
            "demo-project:us-central1:orders-a",
            "POSTGRES_15",
            backend,
        ))
        .await?;
    let standby = emulator
        .add_instance(InstanceConfig::new(
            "demo-project:us-central1:orders-b",
            "POSTGRES_15",
            backend,
        ))
        .await?;
    let name = "orders.db.example.test";
    emulator.set_dns_record(&DnsRecord::txt(name, &[primary.connection_name()]))?;
    println!("DNS name {name}: TXT {}", primary.connection_name());

    let dir = std::env::temp_dir().join(format!("cloudsql-dns-failover-{}", std::process::id()));
    let key_file = emulator.write_service_account_file("demo@demo-project.iam.gserviceaccount.com", &dir)?;
    let connector = Connector::builder()
        .credentials(Credentials::from_file(&key_file)?)
        .admin_api_endpoint(emulator.admin_api_url())
        .dns_nameserver(emulator.dns_addr())
        .failover_period(FAILOVER_PERIOD)
        .build()?;

    let mut config = tokio_postgres::Config::new();
    config
        .user(env_or("PGUSER", "postgres"))
        .password(env_or("PGPASSWORD", ""))
        .dbname(env_or("PGDATABASE", "postgres"));

    let (client, connection) = cloudsql::postgres::connect(&connector, name, &config).await?;
    let connection = tokio::spawn(connection);
    client.query_one("SELECT 1", &[]).await?;
    println!(
        "connected through {name}: {} has {} connection(s), {} has {}",
        primary.connection_name(),
        primary.counters().connections(),
        standby.connection_name(),
        standby.counters().connections()
    );

    emulator.set_dns_record(&DnsRecord::txt(name, &[standby.connection_name()]))?;
    let switched = Instant::now();
    println!("switched the TXT record to {}", standby.connection_name());
    let ended = tokio::time::timeout(FAILOVER_PERIOD + Duration::from_secs(5), connection)
        .await
        .map_err(|_| anyhow::anyhow!("the open connection was not closed"))??;
    let took = switched.elapsed();
    match ended {
        Err(e) => println!(
            "the open connection was closed {took:.1?} later: {}",
            ErrorChain(&e)
        ),
        Ok(()) => anyhow::bail!("the open connection ended without an error"),
    }
    anyhow::ensure!(
        client.query_one("SELECT 1", &[]).await.is_err(),
        "the old client still works"
    );

    let (client, connection) = cloudsql::postgres::connect(&connector, name, &config).await?;
    tokio::spawn(connection);
    client.query_one("SELECT 1", &[]).await?;
    println!(
        "connected again through {name}: {} has {} connection(s), {} has {}",
        primary.connection_name(),
        primary.counters().connections(),
        standby.connection_name(),
        standby.counters().connections()
    );
    anyhow::ensure!(
        standby.counters().connections() == 1,
        "the new connect did not land on the new instance"
    );

    connector.close().await;
    emulator.shutdown();
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
