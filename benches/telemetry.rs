//! What recording metrics costs: warm connect→first row and bulk read throughput through two
//! connectors of the same build (feature `telemetry` on), one recording into the OpenTelemetry
//! SDK and one into the no-op meter provider, measured interleaved in one run because these
//! machines are noisy. The no-op side still counts bytes in its streams' plain fields, as the
//! recording side does; the difference is the SDK's aggregation at connect, drop and every
//! 64 KiB. A build without the feature has no counting at all (its meter types are empty).
//!
//! ```sh
//! cargo bench --bench telemetry --features telemetry
//! ```

use std::time::{Duration, Instant};

use cloudsql::core::telemetry::{BYTES_RECEIVED, DIAL_LATENCY};
use cloudsql::core::{Connector, Credentials};
use cloudsql_emulator::{Emulator, InstanceConfig};
use opentelemetry::metrics::noop::NoopMeterProvider;
use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData};
use opentelemetry_sdk::metrics::{InMemoryMetricExporter, PeriodicReader, SdkMeterProvider};

const CONNECT_ITERATIONS: usize = 200;
const BULK_ITERATIONS: usize = 8;
/// About 100 MB per bulk read.
const BULK_SQL: &str = "SELECT repeat('x', 1000) FROM generate_series(1, 100000)";

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

fn median(samples: &mut [Duration]) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn median_f64(samples: &mut [f64]) -> f64 {
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
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
    for _ in 0..20 {
        for connector in [&recording, &noop] {
            client(connector, &name).await?.query_one("SELECT 1", &[]).await?;
        }
    }

    println!("cloudsql-rs telemetry: SDK meter provider vs no-op meter provider (release, tokio-postgres)");
    let (mut sdk_samples, mut noop_samples) = (Vec::new(), Vec::new());
    for i in 0..CONNECT_ITERATIONS {
        for sdk_turn in [i % 2 == 0, i % 2 != 0] {
            let connector = if sdk_turn { &recording } else { &noop };
            let t = Instant::now();
            client(connector, &name).await?.query_one("SELECT 1", &[]).await?;
            let elapsed = t.elapsed();
            if sdk_turn {
                sdk_samples.push(elapsed);
            } else {
                noop_samples.push(elapsed);
            }
        }
    }
    let (sdk_median, noop_median) = (median(&mut sdk_samples), median(&mut noop_samples));
    println!("warm connect -> first row, no-op meter  median {noop_median:>10.2?} (n={CONNECT_ITERATIONS})");
    println!(
        "warm connect -> first row, SDK meter    median {sdk_median:>10.2?} (n={CONNECT_ITERATIONS})  ratio {:.3}",
        sdk_median.as_secs_f64() / noop_median.as_secs_f64()
    );

    let sdk_conn = client(&recording, &name).await?;
    let noop_conn = client(&noop, &name).await?;
    let (mut sdk_rates, mut noop_rates) = (Vec::new(), Vec::new());
    for i in 0..BULK_ITERATIONS {
        for sdk_turn in [i % 2 == 0, i % 2 != 0] {
            let conn = if sdk_turn { &sdk_conn } else { &noop_conn };
            let t = Instant::now();
            let bytes = bulk(conn).await?;
            let rate = bytes as f64 / t.elapsed().as_secs_f64() / 1e6;
            if sdk_turn {
                sdk_rates.push(rate);
            } else {
                noop_rates.push(rate);
            }
        }
    }
    let (sdk_rate, noop_rate) = (median_f64(&mut sdk_rates), median_f64(&mut noop_rates));
    println!("bulk read (~100 MB), no-op meter        median {noop_rate:>8.1} MB/s (n={BULK_ITERATIONS})");
    println!(
        "bulk read (~100 MB), SDK meter          median {sdk_rate:>8.1} MB/s (n={BULK_ITERATIONS})  ratio {:.3}",
        sdk_rate / noop_rate
    );

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
    drop((sdk_conn, noop_conn));
    recording.close().await;
    noop.close().await;
    provider.shutdown()?;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
