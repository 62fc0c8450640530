//! What recording metrics costs: warm connect→first row and bulk read throughput through
//! connectors of the same build (feature `telemetry` on), one recording into the OpenTelemetry
//! SDK and one into the no-op meter provider, measured interleaved in one run because these
//! machines are noisy; a second no-op connector (A/A) shows how much of a difference is noise. The no-op side still counts bytes in its streams' plain fields, as the
//! recording side does; the difference is the SDK's aggregation at connect, drop and every
//! 64 KiB. A build without the feature has no counting at all (its meter types are empty).
//!
//! ```sh
//! cargo bench --bench telemetry --features telemetry
//! ```

use std::time::Instant;

use cloudsql::core::telemetry::{BYTES_RECEIVED, DIAL_LATENCY};
use cloudsql::core::{Connector, Credentials};
use cloudsql_emulator::{Emulator, InstanceConfig};
use opentelemetry::metrics::noop::NoopMeterProvider;
use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData};
use opentelemetry_sdk::metrics::{InMemoryMetricExporter, PeriodicReader, SdkMeterProvider};

const CONNECT_ROUNDS: usize = 300;
const BULK_ROUNDS: usize = 40;
/// About 25 MB per bulk read.
const BULK_SQL: &str = "SELECT repeat('x', 1000) FROM generate_series(1, 25000)";

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

async fn bulk(client: &tokio_postgres::Client) -> anyhow::Result<usize> {
    let rows = client.query(BULK_SQL, &[]).await?;
    Ok(rows.iter().map(|r| r.get::<_, &str>(0).len()).sum())
}

fn median(samples: &[f64]) -> f64 {
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted[sorted.len() / 2]
}

/// Each arm's median, its ratio to the first arm's median, and the median of the per-round
/// ratios (each round measures every arm once, in rotating order, so drift cancels out).
fn report(what: &str, unit: &str, arms: &[(&str, &Connector)], samples: &[Vec<f64>], rounds: usize) {
    let base = median(&samples[0]);
    for (i, (label, _)) in arms.iter().enumerate() {
        let m = median(&samples[i]);
        if i == 0 {
            println!("{what:<28} {label:<10} median {m:>9.2} {unit} (n={rounds})");
        } else {
            let paired: Vec<f64> = samples[i].iter().zip(&samples[0]).map(|(a, b)| a / b).collect();
            println!(
                "{what:<28} {label:<10} median {m:>9.2} {unit} (n={rounds})  ratio of medians {:.3}, median of paired ratios {:.3}",
                m / base,
                median(&paired)
            );
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let emulator = Emulator::start().await?;
    let instance = emulator
        .add_instance(InstanceConfig::new(
            "bench-project:us-central1:bench-telemetry",
            "POSTGRES_15",
            "127.0.0.1:5432".parse()?,
        ))
        .await?;
    let name = instance.connection_name().to_owned();
    let dir = std::env::temp_dir().join(format!("cloudsql-bench-telemetry-{}", std::process::id()));
    let key = emulator.write_service_account_file("bench@bench-project.iam.gserviceaccount.com", &dir)?;
    let exporter = InMemoryMetricExporter::default();
    let provider = SdkMeterProvider::builder()
        .with_reader(PeriodicReader::builder(exporter.clone()).build())
        .build();
    let builder = || {
        Connector::builder()
            .credentials(Credentials::from_file(&key).expect("credentials"))
            .admin_api_endpoint(emulator.admin_api_url())
    };
    let recording = builder().meter_provider(&provider).build()?;
    let noop = builder().meter_provider(&NoopMeterProvider::new()).build()?;
    let noop_again = builder().meter_provider(&NoopMeterProvider::new()).build()?;
    for _ in 0..20 {
        for connector in [&recording, &noop, &noop_again] {
            client(connector, &name).await?.query_one("SELECT 1", &[]).await?;
        }
    }

    println!("cloudsql-rs telemetry: SDK meter provider vs no-op meter provider (release, tokio-postgres)");
    println!("(a second no-op connector, A/A, shows the noise floor of this run)");
    let arms = [("no-op", &noop), ("SDK", &recording), ("no-op A/A", &noop_again)];
    let mut connect_samples: [Vec<f64>; 3] = Default::default();
    for round in 0..CONNECT_ROUNDS {
        for k in 0..arms.len() {
            let arm = (round + k) % arms.len();
            let t = Instant::now();
            client(arms[arm].1, &name)
                .await?
                .query_one("SELECT 1", &[])
                .await?;
            connect_samples[arm].push(t.elapsed().as_secs_f64() * 1e3);
        }
    }
    report(
        "warm connect -> first row",
        "ms",
        &arms,
        &connect_samples,
        CONNECT_ROUNDS,
    );

    let mut conns = Vec::new();
    for (_, connector) in &arms {
        conns.push(client(connector, &name).await?);
    }
    let mut bulk_samples: [Vec<f64>; 3] = Default::default();
    for round in 0..BULK_ROUNDS {
        for k in 0..arms.len() {
            let arm = (round + k) % arms.len();
            let t = Instant::now();
            let bytes = bulk(&conns[arm]).await?;
            bulk_samples[arm].push(bytes as f64 / t.elapsed().as_secs_f64() / 1e6);
        }
    }
    report("bulk read (~25 MB)", "MB/s", &arms, &bulk_samples, BULK_ROUNDS);

    // The recording side did record: latency points and received bytes.
    provider.force_flush()?;
    let exported = exporter.get_finished_metrics()?;
    let last = exported
        .last()
        .ok_or_else(|| anyhow::anyhow!("nothing exported"))?;
    for metric in last.scope_metrics().flat_map(|s| s.metrics()) {
        match (metric.name(), metric.data()) {
            (DIAL_LATENCY, AggregatedMetrics::F64(MetricData::Histogram(h))) => {
                let count: u64 = h.data_points().map(|p| p.count()).sum();
                println!("recorded: {DIAL_LATENCY} count {count}");
            }
            (BYTES_RECEIVED, AggregatedMetrics::U64(MetricData::Sum(s))) => {
                let bytes: u64 = s.data_points().map(|p| p.value()).sum();
                println!("recorded: {BYTES_RECEIVED} {:.1} MB", bytes as f64 / 1e6);
            }
            _ => {}
        }
    }
    drop(conns);
    for (_, connector) in arms {
        connector.close().await;
    }
    provider.shutdown()?;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
