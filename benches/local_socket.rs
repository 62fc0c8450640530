//! Local-socket mode against direct stream mode, same driver (tokio-postgres) and same emulated
//! instance, measured interleaved in one run: connect→first row latency and bulk read
//! throughput. The ratio is what the extra Unix-socket hop and relay cost; issue 13's goals are
//! connect ≤ 1.05× and bulk ≥ 0.95× the stream mode. Each round runs both modes in random order.
//!
//! ```sh
//! cargo bench --bench local_socket
//! LOCAL_SOCKET_ROUNDS=400 LOCAL_SOCKET_BULK_ROUNDS=10 cargo bench --bench local_socket
//! ```

use std::time::{Duration, Instant};

use cloudsql::core::{Connector, Credentials, LocalSocket};
use cloudsql_emulator::{Emulator, InstanceConfig};

#[path = "support/order.rs"]
mod order;
use order::shuffle;

/// Connect rounds and bulk rounds unless `LOCAL_SOCKET_ROUNDS` / `LOCAL_SOCKET_BULK_ROUNDS` say.
const CONNECT_ITERATIONS: usize = 200;
const BULK_ITERATIONS: usize = 10;
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

fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort();
    samples[((samples.len() as f64 - 1.0) * p).round() as usize]
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
        .max(1)
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

    let (rounds, bulk_rounds) = (
        env_usize("LOCAL_SOCKET_ROUNDS", CONNECT_ITERATIONS),
        env_usize("LOCAL_SOCKET_BULK_ROUNDS", BULK_ITERATIONS),
    );
    println!(
        "cloudsql-rs local socket vs stream mode (release build, tokio-postgres both ways, random order each round)"
    );
    let (mut stream_samples, mut socket_samples) = (Vec::new(), Vec::new());
    let mut turns = [true, false];
    for _ in 0..rounds {
        shuffle(&mut turns);
        for stream_turn in turns {
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
    let (stream_median, socket_median) = (
        percentile(&mut stream_samples, 0.5),
        percentile(&mut socket_samples, 0.5),
    );
    let (stream_p90, socket_p90) = (
        percentile(&mut stream_samples, 0.9),
        percentile(&mut socket_samples, 0.9),
    );
    println!(
        "connect -> first row, stream mode   median {stream_median:>10.2?}  p90 {stream_p90:>10.2?} (n={rounds})"
    );
    println!(
        "connect -> first row, local socket  median {socket_median:>10.2?}  p90 {socket_p90:>10.2?} (n={rounds})  \
         ratio vs stream: median {:.3}x  p90 {:.3}x  (goal <= 1.05x)",
        socket_median.as_secs_f64() / stream_median.as_secs_f64(),
        socket_p90.as_secs_f64() / stream_p90.as_secs_f64()
    );

    let stream_conn = stream_client(&connector, &name).await?;
    let socket_conn = socket_client(&socket).await?;
    bulk(&stream_conn).await?;
    bulk(&socket_conn).await?;
    let (mut stream_rates, mut socket_rates) = (Vec::new(), Vec::new());
    for _ in 0..bulk_rounds {
        shuffle(&mut turns);
        for stream_turn in turns {
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
    println!("bulk read (~100 MB), stream mode     median {stream_rate:>8.1} MB/s (n={bulk_rounds})");
    println!(
        "bulk read (~100 MB), local socket    median {socket_rate:>8.1} MB/s (n={bulk_rounds})  ratio vs stream {:.3}x  (goal >= 0.95x)",
        socket_rate / stream_rate
    );
    connector.close().await;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
