//! What the `telemetry` feature costs against the same code built without it: warm connect →
//! first row and bulk read throughput, through tokio-postgres, measured by two builds of this
//! bench (feature off, and feature on with an OpenTelemetry SDK meter provider recording) run as
//! worker processes against one emulator, interleaved round by round in random order. A second
//! run of the feature-off build in every round (A/A) shows how much of a difference is this
//! machine's noise.
//!
//! ```sh
//! cargo bench --bench telemetry_cost
//! ```
//!
//! `TELEMETRY_COST_ROUNDS` (default 15) sets the rounds; each worker run makes
//! `CONNECTS` warm connects and `BULK_READS` bulk reads of about 25 MB and reports its medians.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use cloudsql::core::{Connector, Credentials};
use cloudsql_emulator::{Emulator, InstanceConfig};

/// Set in a worker's environment: the admin API URL, key file and instance, tab-separated.
const WORKER_ENV: &str = "CLOUDSQL_TELEMETRY_COST_WORKER";
const CONNECTS: usize = 60;
const BULK_READS: usize = 6;
/// About 25 MB per bulk read.
const BULK_SQL: &str = "SELECT repeat('x', 1000) FROM generate_series(1, 25000)";

fn median(samples: &[f64]) -> f64 {
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted[sorted.len() / 2]
}

fn base() -> tokio_postgres::Config {
    let mut config = tokio_postgres::Config::new();
    config.user("postgres").dbname("postgres");
    config
}

async fn client(connector: &Connector, instance: &str) -> anyhow::Result<tokio_postgres::Client> {
    let (client, connection) = cloudsql::postgres::connect(connector, instance, &base()).await?;
    tokio::spawn(connection);
    Ok(client)
}

/// The connector a worker measures: with the feature, recording into an SDK meter provider.
#[cfg(feature = "telemetry")]
fn connector(admin_api: &str, key_file: &Path) -> anyhow::Result<(Connector, Box<dyn std::any::Any>)> {
    use opentelemetry_sdk::metrics::{InMemoryMetricExporter, PeriodicReader, SdkMeterProvider};
    let provider = SdkMeterProvider::builder()
        .with_reader(PeriodicReader::builder(InMemoryMetricExporter::default()).build())
        .build();
    let connector = Connector::builder()
        .credentials(Credentials::from_file(key_file)?)
        .admin_api_endpoint(admin_api)
        .meter_provider(&provider)
        .build()?;
    Ok((connector, Box::new(provider)))
}

#[cfg(not(feature = "telemetry"))]
fn connector(admin_api: &str, key_file: &Path) -> anyhow::Result<(Connector, Box<dyn std::any::Any>)> {
    let connector = Connector::builder()
        .credentials(Credentials::from_file(key_file)?)
        .admin_api_endpoint(admin_api)
        .build()?;
    Ok((connector, Box::new(())))
}

/// One worker run: prints `<connect median ms> <bulk median MB/s>`.
async fn worker(setup: &str) -> anyhow::Result<()> {
    let mut parts = setup.split('\t');
    let (Some(admin_api), Some(key_file), Some(instance)) = (parts.next(), parts.next(), parts.next()) else {
        anyhow::bail!("malformed {WORKER_ENV}");
    };
    let (connector, _provider) = connector(admin_api, Path::new(key_file))?;
    for _ in 0..10 {
        client(&connector, instance)
            .await?
            .query_one("SELECT 1", &[])
            .await?;
    }
    let mut connects = Vec::with_capacity(CONNECTS);
    for _ in 0..CONNECTS {
        let t = Instant::now();
        client(&connector, instance)
            .await?
            .query_one("SELECT 1", &[])
            .await?;
        connects.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let bulk_client = client(&connector, instance).await?;
    let mut bulk = Vec::with_capacity(BULK_READS);
    for _ in 0..BULK_READS {
        let t = Instant::now();
        let rows = bulk_client.query(BULK_SQL, &[]).await?;
        let bytes: usize = rows.iter().map(|r| r.get::<_, &str>(0).len()).sum();
        bulk.push(bytes as f64 / t.elapsed().as_secs_f64() / 1e6);
    }
    println!("{} {}", median(&connects), median(&bulk));
    connector.close().await;
    Ok(())
}

/// Builds this bench with or without the feature and returns its executable.
fn build(with_feature: bool) -> anyhow::Result<PathBuf> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let mut command = Command::new(cargo);
    command.args([
        "bench",
        "--bench",
        "telemetry_cost",
        "--no-run",
        "--message-format=json",
    ]);
    if with_feature {
        command.args(["--features", "telemetry"]);
    }
    let output = command.output()?;
    anyhow::ensure!(
        output.status.success(),
        "building the bench {} the feature failed:\n{}",
        if with_feature { "with" } else { "without" },
        String::from_utf8_lossy(&output.stderr)
    );
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        let Ok(message) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if message["target"]["name"] == "telemetry_cost"
            && let Some(executable) = message["executable"].as_str()
        {
            return Ok(PathBuf::from(executable));
        }
    }
    anyhow::bail!("cargo named no executable for the bench")
}

/// Runs one worker and reads its two medians.
fn run(executable: &Path, setup: &str) -> anyhow::Result<(f64, f64)> {
    let output = Command::new(executable).env(WORKER_ENV, setup).output()?;
    anyhow::ensure!(
        output.status.success(),
        "a worker failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8_lossy(&output.stdout);
    let mut numbers = text.split_whitespace().map(str::parse::<f64>);
    match (numbers.next(), numbers.next()) {
        (Some(Ok(connect)), Some(Ok(bulk))) => Ok((connect, bulk)),
        _ => anyhow::bail!("a worker printed {text:?}"),
    }
}

/// A shuffle of `0..n` from the clock (no RNG crate needed for an order).
fn order(n: usize, round: usize) -> Vec<usize> {
    let clock = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos() as usize;
    let seed = clock ^ round.wrapping_mul(0x9E37_79B9);
    let mut arms: Vec<usize> = (0..n).collect();
    let mut state = seed | 1;
    for i in (1..n).rev() {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        arms.swap(i, state % (i + 1));
    }
    arms
}

fn main() -> anyhow::Result<()> {
    if let Ok(setup) = std::env::var(WORKER_ENV) {
        return tokio::runtime::Runtime::new()?.block_on(worker(&setup));
    }
    let rounds: usize = std::env::var("TELEMETRY_COST_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(15);
    eprintln!("building the bench without and with the telemetry feature...");
    let without = build(false)?;
    let with = build(true)?;
    let runtime = tokio::runtime::Runtime::new()?;
    let emulator = runtime.block_on(Emulator::start())?;
    let instance = runtime.block_on(emulator.add_instance(InstanceConfig::new(
        "bench-project:us-central1:telemetry-cost",
        "POSTGRES_15",
        "127.0.0.1:5432".parse()?,
    )))?;
    let dir = std::env::temp_dir().join(format!("cloudsql-telemetry-cost-{}", std::process::id()));
    let key = emulator.write_service_account_file("bench@bench-project.iam.gserviceaccount.com", &dir)?;
    let setup = format!(
        "{}\t{}\t{}",
        emulator.admin_api_url(),
        key.display(),
        instance.connection_name()
    );

    let arms = [
        ("feature off", &without),
        ("feature on (SDK)", &with),
        ("feature off A/A", &without),
    ];
    let mut connect: [Vec<f64>; 3] = Default::default();
    let mut bulk: [Vec<f64>; 3] = Default::default();
    for round in 0..rounds {
        for arm in order(arms.len(), round) {
            let (c, b) = run(arms[arm].1, &setup)?;
            connect[arm].push(c);
            bulk[arm].push(b);
        }
        eprintln!("round {}/{rounds} done", round + 1);
    }

    println!(
        "cloudsql-rs: telemetry feature on vs the same bench built without it (release, tokio-postgres, \
         {rounds} rounds in random order, each a worker's median of {CONNECTS} warm connects and {BULK_READS} bulk reads)"
    );
    for (what, unit, samples) in [
        ("warm connect -> first row", "ms", &connect),
        ("bulk read (~25 MB)", "MB/s", &bulk),
    ] {
        let base = median(&samples[0]);
        for (i, (label, _)) in arms.iter().enumerate() {
            let m = median(&samples[i]);
            if i == 0 {
                println!("{what:<26} {label:<17} median {m:>8.2} {unit}");
            } else {
                let paired: Vec<f64> = samples[i].iter().zip(&samples[0]).map(|(a, b)| a / b).collect();
                println!(
                    "{what:<26} {label:<17} median {m:>8.2} {unit}  ratio of medians {:.3}, median of paired ratios {:.3}",
                    m / base,
                    median(&paired)
                );
            }
        }
    }
    runtime.block_on(async { drop(instance) });
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
