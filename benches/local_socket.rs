//! Local-socket mode against direct stream mode, same driver (tokio-postgres) and same emulated
//! instance, measured interleaved in one run: connect→first row latency and bulk read
//! throughput. The ratio is what the extra Unix-socket hop and relay cost.
//!
//! ```sh
//! cargo bench --bench local_socket
//! ```

use std::time::{Duration, Instant};

use cloudsql::core::{Connector, Credentials, LocalSocket};
use cloudsql_emulator::{Emulator, InstanceConfig};

const CONNECT_ITERATIONS: usize = 200;
const BULK_ITERATIONS: usize = 6;
/// About 100 MB per bulk read.
const BULK_SQL: &str = "SELECT repeat('x', 1000) FROM generate_series(1, 100000)";

fn base() -> tokio_postgres::Config {
    let mut config = tokio_postgres::Config::new();
    config.user("postgres").dbname("postgres");
    config
}

async fn stream_client(connector: &Connector, instance: &str) -> anyhow::Result<tokio_postgres::Client> {
    let (client, connection) = cloudsql::postgres::connect(connector, instance, &base()).await?;
    tokio::spawn(connection);
    Ok(client)
}

async fn socket_client(socket: &LocalSocket) -> anyhow::Result<tokio_postgres::Client> {
    let mut config = base();
    config.host_path(socket.dir()).port(5432);
    let (client, connection) = config.connect(tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    Ok(client)
}

async fn bulk(client: &tokio_postgres::Client) -> anyhow::Result<usize> {
    let rows = client.query(BULK_SQL, &[]).await?;
    Ok(rows.iter().map(|r| r.get::<_, &str>(0).len()).sum())
}

fn median(samples: &mut [Duration]) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let emulator = Emulator::start().await?;
    let instance = emulator
        .add_instance(InstanceConfig::new(
            "bench-project:us-central1:bench-sock",
            "POSTGRES_15",
            "127.0.0.1:5432".parse()?,
        ))
        .await?;
    let name = instance.connection_name().to_owned();
    let dir = std::env::temp_dir().join(format!("cloudsql-bench-sock-{}", std::process::id()));
    let key = emulator.write_service_account_file("bench@bench-project.iam.gserviceaccount.com", &dir)?;
    let connector = Connector::builder()
        .credentials(Credentials::from_file(&key)?)
        .admin_api_endpoint(emulator.admin_api_url())
        .build()?;
    let socket = connector.local_socket(&name).postgres_unix().serve().await?;
    for _ in 0..20 {
        stream_client(&connector, &name)
            .await?
            .query_one("SELECT 1", &[])
            .await?;
        socket_client(&socket).await?.query_one("SELECT 1", &[]).await?;
    }

    println!("cloudsql-rs local socket vs stream mode (release build, tokio-postgres both ways)");
    let (mut stream_samples, mut socket_samples) = (Vec::new(), Vec::new());
    for i in 0..CONNECT_ITERATIONS {
        for stream_turn in [i % 2 == 0, i % 2 != 0] {
            let t = Instant::now();
            if stream_turn {
                stream_client(&connector, &name)
                    .await?
                    .query_one("SELECT 1", &[])
                    .await?;
                stream_samples.push(t.elapsed());
            } else {
                socket_client(&socket).await?.query_one("SELECT 1", &[]).await?;
                socket_samples.push(t.elapsed());
            }
        }
    }
    let (stream_median, socket_median) = (median(&mut stream_samples), median(&mut socket_samples));
    println!("connect -> first row, stream mode   median {stream_median:>10.2?} (n={CONNECT_ITERATIONS})");
    println!(
        "connect -> first row, local socket  median {socket_median:>10.2?} (n={CONNECT_ITERATIONS})  ratio vs stream {:.2}x",
        socket_median.as_secs_f64() / stream_median.as_secs_f64()
    );

    let stream_conn = stream_client(&connector, &name).await?;
    let socket_conn = socket_client(&socket).await?;
    let (mut stream_rates, mut socket_rates) = (Vec::new(), Vec::new());
    for i in 0..BULK_ITERATIONS {
        for stream_turn in [i % 2 == 0, i % 2 != 0] {
            let t = Instant::now();
            let client = if stream_turn { &stream_conn } else { &socket_conn };
            let bytes = bulk(client).await?;
            let rate = bytes as f64 / t.elapsed().as_secs_f64() / 1e6;
            if stream_turn {
                stream_rates.push(rate)
            } else {
                socket_rates.push(rate)
            }
        }
    }
    let mid = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (stream_rate, socket_rate) = (mid(&mut stream_rates), mid(&mut socket_rates));
    println!("bulk read (~100 MB), stream mode     median {stream_rate:>8.1} MB/s (n={BULK_ITERATIONS})");
    println!(
        "bulk read (~100 MB), local socket    median {socket_rate:>8.1} MB/s (n={BULK_ITERATIONS})  ratio vs stream {:.2}x",
        socket_rate / stream_rate
    );
    connector.close().await;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
