//! Connect benchmark: prints, in one run, warm connect→first row through the connector against
//! the floor (a hand-built rustls mTLS + tokio-postgres connection through the same emulator
//! proxy with a pre-issued certificate), cold start (new connector→first row), and Admin API
//! calls per 1,000 connects, and connects during an Admin API outage (503 after 5 s) while the
//! certificate is still valid, one at a time and 100 at once, in both refresh strategies. Ratios
//! are against the floor measured in the same run, interleaved, because these machines are noisy.
//!
//! ```sh
//! cargo bench --bench connect
//! ```

use std::sync::Arc;
use std::time::{Duration, Instant};

use cloudsql::core::{Connector, Credentials, RefreshStrategy};
use cloudsql_emulator::{CaMode, Emulator, InstanceConfig};

const WARM_ITERATIONS: usize = 300;
const COLD_ITERATIONS: usize = 15;
const QUOTA_CONNECTS: usize = 1000;
const OUTAGE_ITERATIONS: usize = 100;
const CONCURRENT: usize = 100;

fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort();
    let idx = ((samples.len() as f64 - 1.0) * p).round() as usize;
    samples[idx]
}

fn pg_config() -> tokio_postgres::Config {
    let mut config = tokio_postgres::Config::new();
    config.user("postgres").dbname("postgres");
    config
}

#[path = "support/floor.rs"]
mod floor;
use floor::Floor;

/// The floor's connect → first row: a TLS connection with the certificate issued beforehand.
async fn floor_first_row(floor: &Floor) -> anyhow::Result<()> {
    let tls = floor.connect().await?;
    let mut config = pg_config();
    config.ssl_mode(tokio_postgres::config::SslMode::Disable);
    let (client, connection) = config.connect_raw(tls, tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    let _: i32 = client.query_one("SELECT 1", &[]).await?.get(0);
    Ok(())
}

async fn connector_first_row(connector: &Connector, instance: &str) -> anyhow::Result<()> {
    let (client, connection) = cloudsql::postgres::connect(connector, instance, &pg_config()).await?;
    tokio::spawn(connection);
    let _: i32 = client.query_one("SELECT 1", &[]).await?.get(0);
    Ok(())
}

fn report(label: &str, samples: &mut [Duration], floor_median: Option<Duration>) -> Duration {
    let median = percentile(samples, 0.5);
    let p90 = percentile(samples, 0.9);
    let ratio = floor_median.map_or(String::new(), |f| {
        format!("  ratio vs floor {:.2}x", median.as_secs_f64() / f.as_secs_f64())
    });
    println!(
        "{label:<44} median {median:>10.2?}  p90 {p90:>10.2?}  (n={}){ratio}",
        samples.len()
    );
    median
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let emulator = Emulator::start().await?;
    let instance = emulator
        .add_instance(
            InstanceConfig::new(
                "bench-project:us-central1:bench-pg",
                "POSTGRES_15",
                "127.0.0.1:5432".parse()?,
            )
            .ca_mode(CaMode::GoogleManagedCas),
        )
        .await?;
    let name = instance.connection_name().to_owned();
    let dir = std::env::temp_dir().join(format!("cloudsql-bench-{}", std::process::id()));
    let key_file =
        emulator.write_service_account_file("bench@bench-project.iam.gserviceaccount.com", &dir)?;
    let build_with = |strategy: RefreshStrategy| -> anyhow::Result<Connector> {
        Ok(Connector::builder()
            .credentials(Credentials::from_file(&key_file)?)
            .admin_api_endpoint(emulator.admin_api_url())
            .refresh_strategy(strategy)
            .build()?)
    };
    let build = || build_with(RefreshStrategy::Background);

    let floor = Floor::new(&emulator, &instance).await?;
    let connector = build()?;
    // Warm up both paths (and the backend's caches).
    for _ in 0..20 {
        floor_first_row(&floor).await?;
        connector_first_row(&connector, &name).await?;
    }

    println!(
        "cloudsql-rs connect benchmark (release build, PostgreSQL at 127.0.0.1:5432 behind the emulator proxy)"
    );
    let mut floor_samples = Vec::with_capacity(WARM_ITERATIONS);
    let mut warm_samples = Vec::with_capacity(WARM_ITERATIONS);
    for i in 0..WARM_ITERATIONS {
        // Alternate which goes first so neither pays for the other's backend teardown.
        for floor_turn in [i % 2 == 0, i % 2 != 0] {
            let t = Instant::now();
            if floor_turn {
                floor_first_row(&floor).await?;
                floor_samples.push(t.elapsed());
            } else {
                connector_first_row(&connector, &name).await?;
                warm_samples.push(t.elapsed());
            }
        }
    }
    let floor_median = report("floor: rustls mTLS + tokio-postgres", &mut floor_samples, None);
    report(
        "warm: connector connect -> first row",
        &mut warm_samples,
        Some(floor_median),
    );

    let mut cold_samples = Vec::with_capacity(COLD_ITERATIONS);
    for _ in 0..COLD_ITERATIONS {
        let t = Instant::now();
        let fresh = build()?;
        connector_first_row(&fresh, &name).await?;
        cold_samples.push(t.elapsed());
        fresh.close().await;
    }
    report(
        "cold: new connector -> first row",
        &mut cold_samples,
        Some(floor_median),
    );

    let before = instance.counters().total();
    let quota_connector = build()?;
    for _ in 0..QUOTA_CONNECTS {
        drop(quota_connector.connect(&name).await?);
    }
    let calls = instance.counters().total() - before;
    println!(
        "Admin API calls per {QUOTA_CONNECTS} connects: {calls} (connectSettings + generateEphemeralCert per refresh)"
    );
    outage(&emulator, &build_with).await?;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// Connects while the Admin API fails (503 after 5 s) and the certificate is still valid: 200 s
/// certificates keep both strategies wanting a refresh the whole time, so any connect that waited
/// for the API would show up as a 5 s sample.
async fn outage(
    emulator: &Emulator,
    build_with: &dyn Fn(RefreshStrategy) -> anyhow::Result<Connector>,
) -> anyhow::Result<()> {
    let instance = emulator
        .add_instance(
            InstanceConfig::new(
                "bench-project:us-central1:bench-pg-outage",
                "POSTGRES_15",
                "127.0.0.1:5432".parse()?,
            )
            .ca_mode(CaMode::GoogleManagedCas)
            .cert_lifetime(Duration::from_secs(200)),
        )
        .await?;
    let name = instance.connection_name().to_owned();
    let floor = Arc::new(Floor::new(emulator, &instance).await?);
    let background = build_with(RefreshStrategy::Background)?;
    let lazy = build_with(RefreshStrategy::Lazy)?;
    for _ in 0..10 {
        floor_first_row(&floor).await?;
        connector_first_row(&background, &name).await?;
        connector_first_row(&lazy, &name).await?;
    }
    instance.faults().admin_delay(Duration::from_secs(5));
    instance.faults().admin_status(503, None);
    let calls_before = instance.counters().total();
    let started = Instant::now();

    let (mut floor_samples, mut bg_samples, mut lazy_samples) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..OUTAGE_ITERATIONS {
        let t = Instant::now();
        floor_first_row(&floor).await?;
        floor_samples.push(t.elapsed());
        let t = Instant::now();
        connector_first_row(&background, &name).await?;
        bg_samples.push(t.elapsed());
        let t = Instant::now();
        connector_first_row(&lazy, &name).await?;
        lazy_samples.push(t.elapsed());
    }
    println!("Admin API outage (503 after 5 s), certificate still valid:");
    let floor_median = report("  floor: rustls mTLS + tokio-postgres", &mut floor_samples, None);
    report(
        "  background: connect -> first row",
        &mut bg_samples,
        Some(floor_median),
    );
    report(
        "  lazy: connect -> first row",
        &mut lazy_samples,
        Some(floor_median),
    );

    let mut floor_p99 = Duration::ZERO;
    for (label, connector) in [
        ("floor", None),
        ("background", Some(&background)),
        ("lazy", Some(&lazy)),
    ] {
        let tasks: Vec<_> = (0..CONCURRENT)
            .map(|_| {
                let floor = floor.clone();
                let connector = connector.cloned();
                let name = name.clone();
                tokio::spawn(async move {
                    let t = Instant::now();
                    match connector {
                        Some(c) => connector_first_row(&c, &name).await?,
                        None => floor_first_row(&floor).await?,
                    }
                    Ok::<_, anyhow::Error>(t.elapsed())
                })
            })
            .collect();
        let mut samples = Vec::with_capacity(CONCURRENT);
        for task in tasks {
            samples.push(task.await??);
        }
        let p99 = percentile(&mut samples, 0.99);
        if connector.is_none() {
            floor_p99 = p99;
        }
        println!(
            "  {CONCURRENT} at once, {label:<10} p99 {p99:>10.2?}  max {:>10.2?}  ratio vs floor p99 {:.2}x",
            samples[samples.len() - 1],
            p99.as_secs_f64() / floor_p99.as_secs_f64().max(f64::EPSILON)
        );
    }
    println!(
        "  Admin API calls during the {:.0?} outage: {} (both connectors)",
        started.elapsed(),
        instance.counters().total() - calls_before
    );
    instance.faults().clear();
    Ok(())
}
