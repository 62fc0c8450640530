//! Telemetry: what the connector's OpenTelemetry metrics say after a few connections, one failed
//! dial and one refresh, against the Cloud SQL emulator in front of the local PostgreSQL. The
//! metrics go to the OpenTelemetry SDK's in-memory exporter and are printed, each with its
//! attributes and value. No cloud account needed.
//!
//! ```sh
//! cargo run --example telemetry --features telemetry
//! ```
//!
//! `PGHOST`/`PGPORT`/`PGUSER`/`PGPASSWORD`/`PGDATABASE` point it at another PostgreSQL.

use std::time::{Duration, Instant};

use cloudsql::core::telemetry::{METRIC_NAMES, REFRESH_SUCCESS_COUNT};
use cloudsql::core::{Connector, Credentials};
use cloudsql_emulator::{Emulator, InstanceConfig};
use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData, ResourceMetrics};
use opentelemetry_sdk::metrics::{InMemoryMetricExporter, PeriodicReader, SdkMeterProvider};

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

/// The metrics as of now: the provider pushes its cumulative state to the exporter.
fn collect(
    provider: &SdkMeterProvider,
    exporter: &InMemoryMetricExporter,
) -> anyhow::Result<Option<ResourceMetrics>> {
    exporter.reset();
    provider.force_flush()?;
    Ok(exporter.get_finished_metrics()?.pop())
}

/// One line per data point: the metric's name, its value, its attributes.
fn print(metrics: &ResourceMetrics) {
    for scope in metrics.scope_metrics() {
        for metric in scope.metrics() {
            let unit = if metric.unit().is_empty() {
                String::new()
            } else {
                format!(" {}", metric.unit())
            };
            let lines: Vec<(String, String)> = match metric.data() {
                AggregatedMetrics::U64(MetricData::Sum(sum)) => sum
                    .data_points()
                    .map(|p| (format!("{}{unit}", p.value()), attributes(p.attributes())))
                    .collect(),
                AggregatedMetrics::I64(MetricData::Sum(sum)) => sum
                    .data_points()
                    .map(|p| (format!("{}{unit}", p.value()), attributes(p.attributes())))
                    .collect(),
                AggregatedMetrics::F64(MetricData::Histogram(h)) => h
                    .data_points()
                    .map(|p| {
                        let value = format!(
                            "count={} sum={:.1}{unit} min={:.1} max={:.1}",
                            p.count(),
                            p.sum(),
                            p.min().unwrap_or_default(),
                            p.max().unwrap_or_default()
                        );
                        (value, attributes(p.attributes()))
                    })
                    .collect(),
                other => vec![(format!("{other:?}"), String::new())],
            };
            for (value, attributes) in lines {
                println!("  {:<36} {value:<40} {attributes}", metric.name());
            }
        }
    }
}

fn attributes<'a>(kvs: impl Iterator<Item = &'a opentelemetry::KeyValue>) -> String {
    let mut pairs: Vec<String> = kvs.map(|kv| format!("{}={}", kv.key, kv.value)).collect();
    pairs.sort();
    pairs.join(" ")
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .init();

    // The application's meter provider; here the SDK's, exporting to memory.
    let exporter = InMemoryMetricExporter::default();
    let provider = SdkMeterProvider::builder()
        .with_reader(PeriodicReader::builder(exporter.clone()).build())
        .build();

    let backend = format!("{}:{}", env_or("PGHOST", "127.0.0.1"), env_or("PGPORT", "5432"));
    let emulator = Emulator::start().await?;
    let instance = emulator
        .add_instance(InstanceConfig::new(
            "telemetry-project:us-central1:telemetry-pg",
            "POSTGRES_15",
            backend.parse()?,
        ))
        .await?;
    let name = instance.connection_name().to_owned();
    let dir = std::env::temp_dir().join(format!("cloudsql-telemetry-{}", std::process::id()));
    let key_file =
        emulator.write_service_account_file("telemetry@telemetry-project.iam.gserviceaccount.com", &dir)?;

    // Without `.meter_provider(..)`, the connector takes OpenTelemetry's global provider.
    let connector = Connector::builder()
        .credentials(Credentials::from_file(&key_file)?)
        .admin_api_endpoint(emulator.admin_api_url())
        .meter_provider(&provider)
        .build()?;

    let mut config = tokio_postgres::Config::new();
    config
        .user(env_or("PGUSER", "postgres"))
        .password(env_or("PGPASSWORD", ""))
        .dbname(env_or("PGDATABASE", "postgres"));

    println!("three connections, one query each, all open at once:");
    let mut clients = Vec::new();
    for _ in 0..3 {
        let (client, connection) = cloudsql::postgres::connect(&connector, &name, &config).await?;
        let task = tokio::spawn(connection);
        let rows = client
            .query("SELECT generate_series(1, 1000), repeat('x', 100)", &[])
            .await?;
        println!("  read {} rows", rows.len());
        clients.push((client, task));
    }
    if let Some(metrics) = collect(&provider, &exporter)? {
        print(&metrics);
    }
    for (client, task) in clients {
        drop(client);
        task.await??;
    }

    println!("the server-side proxy stops: one failed dial");
    instance.stop();
    match connector.connect(&name).await {
        Ok(_) => anyhow::bail!("the connect should have failed"),
        Err(e) => println!("  connect failed: {}", cloudsql::core::ErrorChain(&e)),
    }
    instance.start();

    // The failed dial made the connector refresh the certificate in the background.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let refreshed = collect(&provider, &exporter)?.is_some_and(|m| {
            m.scope_metrics().flat_map(|s| s.metrics()).any(|metric| {
                metric.name() == REFRESH_SUCCESS_COUNT
                    && matches!(metric.data(), AggregatedMetrics::U64(MetricData::Sum(s)) if s.data_points().map(|p| p.value()).sum::<u64>() >= 2)
            })
        });
        if refreshed || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    println!("after closing the connections, the failed dial and its refresh:");
    let metrics = collect(&provider, &exporter)?.ok_or_else(|| anyhow::anyhow!("no metrics exported"))?;
    print(&metrics);
    let seen: Vec<&str> = metrics
        .scope_metrics()
        .flat_map(|s| s.metrics())
        .map(|m| m.name())
        .collect();
    let missing: Vec<&&str> = METRIC_NAMES
        .iter()
        .filter(|n| !seen.contains(n) && **n != cloudsql::core::telemetry::REFRESH_FAILURE_COUNT)
        .collect();
    if !missing.is_empty() {
        anyhow::bail!("metrics missing: {missing:?}");
    }
    println!(
        "  ({} is recorded on the first failed refresh; none failed here)",
        cloudsql::core::telemetry::REFRESH_FAILURE_COUNT
    );

    connector.close().await;
    provider.shutdown()?;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
