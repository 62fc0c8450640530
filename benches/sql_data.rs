//! SQL Data Service tunnel benchmark: warm connect → first row, and a bulk read, through the
//! tunnel (`IpType::SqlData`) against direct TLS (`IpType::Public`) to the same emulated
//! instance, interleaved in one run (these machines are noisy), with the ratios.
//!
//! ```sh
//! cargo bench --bench sql_data --features sql-data
//! ```

use std::time::{Duration, Instant};

use cloudsql::core::{Connector, Credentials, DialOptions, IpType};
use cloudsql_emulator::{Emulator, InstanceConfig};

const CONNECTS: usize = 100;
const BULK_READS: usize = 10;
/// Rows of 100 bytes: 10 MB per bulk read.
const BULK_ROWS: i32 = 100_000;

fn median(samples: &mut [Duration]) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn pg_config() -> tokio_postgres::Config {
    let mut config = tokio_postgres::Config::new();
    config.user("postgres").dbname("postgres");
    config
}

async fn connect(
    connector: &Connector,
    instance: &str,
    ip_type: IpType,
) -> anyhow::Result<tokio_postgres::Client> {
    let options = DialOptions::new().ip_type(ip_type);
    let (client, connection) =
        cloudsql::postgres::connect_with(connector, instance, &pg_config(), &options).await?;
    tokio::spawn(connection);
    Ok(client)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let emulator = Emulator::start().await?;
    let sql_data = emulator.start_sql_data().await?;
    let instance = emulator
        .add_instance(InstanceConfig::new(
            "bench-project:us-central1:bench-pg",
            "POSTGRES_15",
            "127.0.0.1:5432".parse()?,
        ))
        .await?;
    let name = instance.connection_name().to_owned();
    let dir = std::env::temp_dir().join(format!("cloudsql-bench-{}", std::process::id()));
    let key = emulator.write_service_account_file("bench@bench-project.iam.gserviceaccount.com", &dir)?;
    let connector = Connector::builder()
        .credentials(Credentials::from_file(&key)?)
        .admin_api_endpoint(emulator.admin_api_url())
        .sql_data_endpoint(sql_data.url())
        .sql_data_root_ca(sql_data.root_ca_pem())
        .build()?;
    // Warm both paths: certificate, and the tunnel's HTTP/2 connection.
    for ip_type in [IpType::Public, IpType::SqlData] {
        connect(&connector, &name, ip_type)
            .await?
            .query_one("SELECT 1", &[])
            .await?;
    }

    let (mut direct, mut tunnel) = (Vec::new(), Vec::new());
    for _ in 0..CONNECTS {
        for (ip_type, samples) in [(IpType::Public, &mut direct), (IpType::SqlData, &mut tunnel)] {
            let start = Instant::now();
            let client = connect(&connector, &name, ip_type).await?;
            client.query_one("SELECT 1", &[]).await?;
            samples.push(start.elapsed());
        }
    }
    let (d, t) = (median(&mut direct), median(&mut tunnel));
    println!(
        "warm connect -> first row, median of {CONNECTS}: direct TLS {d:?}, tunnel {t:?}, ratio {:.2}",
        t.as_secs_f64() / d.as_secs_f64()
    );

    let bulk = format!("SELECT repeat('x', 100) FROM generate_series(1, {BULK_ROWS})");
    let direct_client = connect(&connector, &name, IpType::Public).await?;
    let tunnel_client = connect(&connector, &name, IpType::SqlData).await?;
    let (mut direct, mut tunnel) = (Vec::new(), Vec::new());
    for _ in 0..BULK_READS {
        for (client, samples) in [(&direct_client, &mut direct), (&tunnel_client, &mut tunnel)] {
            let start = Instant::now();
            let rows = client.query(&bulk, &[]).await?;
            assert_eq!(rows.len(), BULK_ROWS as usize);
            samples.push(start.elapsed());
        }
    }
    let (d, t) = (median(&mut direct), median(&mut tunnel));
    let mb = f64::from(BULK_ROWS) * 100.0 / 1e6;
    println!(
        "bulk read of {mb:.0} MB, median of {BULK_READS}: direct TLS {d:?} ({:.0} MB/s), tunnel {t:?} ({:.0} MB/s), ratio {:.2}",
        mb / d.as_secs_f64(),
        mb / t.as_secs_f64(),
        t.as_secs_f64() / d.as_secs_f64()
    );
    println!(
        "sessions through the tunnel: {}; direct connections: {}",
        sql_data.calls(&name),
        instance.counters().connections()
    );
    connector.close().await;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
