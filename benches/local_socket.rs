//! Local-socket mode against direct stream mode, same driver (tokio-postgres) and same emulated
//! instance, measured interleaved in one run: connect→first row latency, bulk read throughput,
//! and the client's CPU per MB of bulk read. The ratio is what the extra Unix-socket hop and
//! relay cost; issue 13's goals are connect ≤ 1.05× and bulk ≥ 0.95× the stream mode. Each round
//! runs both modes in random order.
//!
//! The client (the connector, its local socket and tokio-postgres) runs in a child process of
//! the bench, as an application would against a real instance; the emulator stays in this one.
//! So the client's CPU is its own (`/proc/self/task/*/schedstat`), and the two sides do not
//! share one tokio runtime's worker threads, which would add wake-ups between them that a real
//! deployment does not have.
//!
//! ```sh
//! cargo bench --bench local_socket
//! LOCAL_SOCKET_ROUNDS=400 LOCAL_SOCKET_BULK_ROUNDS=30 cargo bench --bench local_socket
//! ```
//!
//! `LOCAL_SOCKET_ONLY=stream` (or `socket`) runs only that mode's bulk reads and skips the
//! connect rounds, to count one mode's system calls and wake-ups under `perf stat` (run it on
//! the child: `perf stat -- env LOCAL_SOCKET_CHILD=… target/release/deps/local_socket-… --bench`
//! with the values the parent prints at `LOCAL_SOCKET_VERBOSE=1`).

use std::time::{Duration, Instant};

use cloudsql::core::{Connector, Credentials, LocalSocket};
use cloudsql_emulator::{Emulator, InstanceConfig};

#[path = "support/cpu.rs"]
mod cpu;
#[path = "support/order.rs"]
mod order;
use cpu::cpu_ns;
use order::shuffle;

/// The child's instructions: `<Admin API URL> <key file> <instance>`.
const CHILD_ENV: &str = "LOCAL_SOCKET_CHILD";

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
    if let Ok(target) = std::env::var(CHILD_ENV) {
        let parts: Vec<&str> = target.splitn(3, ' ').collect();
        let [url, key, name] = parts[..] else {
            anyhow::bail!("{CHILD_ENV}={target}: expected `<Admin API URL> <key file> <instance>`");
        };
        return client(url, std::path::Path::new(key), name).await;
    }
    let emulator = Emulator::start().await?;
    let instance = emulator
        .add_instance(InstanceConfig::new(
            "bench-project:us-central1:bench-sock",
            "POSTGRES_15",
            "127.0.0.1:5432".parse()?,
        ))
        .await?;
    let dir = std::env::temp_dir().join(format!("cloudsql-bench-sock-{}", std::process::id()));
    let key = emulator.write_service_account_file("bench@bench-project.iam.gserviceaccount.com", &dir)?;
    let target = format!(
        "{} {} {}",
        emulator.admin_api_url(),
        key.display(),
        instance.connection_name()
    );
    if std::env::var_os("LOCAL_SOCKET_VERBOSE").is_some() {
        println!("{CHILD_ENV}={target}");
    }
    // The client runs in a child of its own; its report goes straight to this one's output.
    let status = tokio::process::Command::new(std::env::current_exe()?)
        .args(std::env::args_os().skip(1))
        .env(CHILD_ENV, &target)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .status()
        .await?;
    let _ = std::fs::remove_dir_all(&dir);
    anyhow::ensure!(status.success(), "the bench's client process failed: {status}");
    Ok(())
}

/// One bulk read, timed: (MB, seconds, CPU ms of this process).
async fn timed_bulk(client: &tokio_postgres::Client) -> anyhow::Result<(f64, f64, f64)> {
    let (t, cpu) = (Instant::now(), cpu_ns()?);
    let bytes = bulk(client).await?;
    let (elapsed, cpu) = (t.elapsed().as_secs_f64(), cpu_ns()?.saturating_sub(cpu));
    Ok((bytes as f64 / 1e6, elapsed, cpu as f64 / 1e6))
}

/// The client side: connects through `url`'s Admin API with the key in `key`, both ways.
async fn client(url: &str, key: &std::path::Path, name: &str) -> anyhow::Result<()> {
    let connector = Connector::builder()
        .credentials(Credentials::from_file(key)?)
        .admin_api_endpoint(url)
        .build()?;
    let socket = connector.local_socket(name).postgres_unix().serve().await?;
    for _ in 0..20 {
        stream_client(&connector, name)
            .await?
            .query_one("SELECT 1", &[])
            .await?;
        socket_client(&socket).await?.query_one("SELECT 1", &[]).await?;
    }
    if let Ok(mode) = std::env::var("LOCAL_SOCKET_ONLY") {
        let client = match mode.as_str() {
            "stream" => stream_client(&connector, name).await?,
            "socket" => socket_client(&socket).await?,
            other => anyhow::bail!("LOCAL_SOCKET_ONLY={other}: expected `stream` or `socket`"),
        };
        bulk(&client).await?;
        let (mut mb, mut secs, mut cpu) = (0.0, 0.0, 0.0);
        for _ in 0..env_usize("LOCAL_SOCKET_BULK_ROUNDS", BULK_ITERATIONS) {
            let (m, s, c) = timed_bulk(&client).await?;
            (mb, secs, cpu) = (mb + m, secs + s, cpu + c);
        }
        println!(
            "bulk read, {mode} only: {mb:.1} MB in {secs:.2} s ({:.1} MB/s), client CPU {:.3} ms per MB",
            mb / secs,
            cpu / mb
        );
        connector.close().await;
        return Ok(());
    }

    let (rounds, bulk_rounds) = (
        env_usize("LOCAL_SOCKET_ROUNDS", CONNECT_ITERATIONS),
        env_usize("LOCAL_SOCKET_BULK_ROUNDS", BULK_ITERATIONS),
    );
    println!(
        "cloudsql-rs local socket vs stream mode (release build, tokio-postgres both ways, random order each round, \
         client in a process of its own)"
    );
    let (mut stream_samples, mut socket_samples) = (Vec::new(), Vec::new());
    let mut turns = [true, false];
    for _ in 0..rounds {
        shuffle(&mut turns);
        for stream_turn in turns {
            let t = Instant::now();
            if stream_turn {
                stream_client(&connector, name)
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

    let stream_conn = stream_client(&connector, name).await?;
    let socket_conn = socket_client(&socket).await?;
    bulk(&stream_conn).await?;
    bulk(&socket_conn).await?;
    let (mut stream_rates, mut socket_rates) = (Vec::new(), Vec::new());
    let (mut stream_cpu, mut socket_cpu) = (Vec::new(), Vec::new());
    for _ in 0..bulk_rounds {
        shuffle(&mut turns);
        for stream_turn in turns {
            let client = if stream_turn { &stream_conn } else { &socket_conn };
            let (mb, secs, cpu) = timed_bulk(client).await?;
            let (rates, cpus) = if stream_turn {
                (&mut stream_rates, &mut stream_cpu)
            } else {
                (&mut socket_rates, &mut socket_cpu)
            };
            rates.push(mb / secs);
            cpus.push(cpu / mb);
        }
    }
    let mid = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (stream_rate, socket_rate) = (mid(&mut stream_rates), mid(&mut socket_rates));
    let (stream_cpu, socket_cpu) = (mid(&mut stream_cpu), mid(&mut socket_cpu));
    println!(
        "bulk read (~100 MB), stream mode     median {stream_rate:>8.1} MB/s, client CPU {stream_cpu:.3} ms per MB (n={bulk_rounds})"
    );
    println!(
        "bulk read (~100 MB), local socket    median {socket_rate:>8.1} MB/s, client CPU {socket_cpu:.3} ms per MB (n={bulk_rounds})  \
         ratio vs stream {:.3}x  (goal >= 0.95x), CPU per MB {:.3}x",
        socket_rate / stream_rate,
        socket_cpu / stream_cpu
    );
    connector.close().await;
    Ok(())
}
