//! Cold start benchmark: a new connector's first row, ours against Google's Cloud SQL Python
//! Connector 1.23 with asyncpg, on one emulator in one run, rounds interleaved in random order, at
//! 0 ms and at 50 ms injected latency on every Admin API call and token request. Prints medians,
//! p90 and ratios.
//!
//! ```sh
//! cargo bench --bench cold_start                 # 30 rounds
//! COLD_START_ROUNDS=60 cargo bench --bench cold_start
//! ```
//!
//! What each line measures:
//! - **ours, new process**: the true cold start of a Cloud Run or Cloud Functions instance. This
//!   binary runs itself again as a child that times, from the first line of `main`, a Tokio
//!   runtime, `Connector::builder()…build()`, `cloudsql_postgres::connect` and `SELECT 1`. The
//!   key is generated in that process, as on every new instance.
//! - **ours, new process, key raced on every core**: the same child with
//!   `CLOUDSQL_RSA_KEYGEN_THREADS` set to the number of cores (the default leaves one free, so on
//!   2 cores it does not race), to show what racing costs or buys on this machine.
//! - **ours, new connector in a warm process**: the same without the runtime, in this process,
//!   where the process-wide key already exists (a second connector costs no key generation).
//! - **Python connector (asyncpg)**: `create_async_connector()` → `connect_async(…, "asyncpg")` →
//!   `SELECT 1`, timed inside one long-lived Python process (benches/python_cold_start.py), so
//!   that the interpreter's start and imports are not counted against it. Every round builds a
//!   new `Connector`, which generates its own key.
//! - **warm connect**: an existing connector's connect → first row, the floor under every cold
//!   start; with it the 50 ms run prints the critical path (token ∥ key → connectSettings ∥
//!   generateEphemeralCert → dial → first row ≈ 2 × 50 ms + warm connect).
//!
//! Google's connector comes from PyPI into a virtualenv this bench creates at
//! /var/tmp/cloudsql-bench-venv (kept between runs); without Python or PyPI its lines are skipped.

use std::hash::{BuildHasher, Hasher};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cloudsql::core::{Connector, Credentials};
use cloudsql_emulator::{CaMode, Emulator, Instance, InstanceConfig};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout};

const VENV: &str = "/var/tmp/cloudsql-bench-venv";
const PACKAGE: &str = "cloud-sql-python-connector[asyncpg]==1.23.0";
/// Set in the child that measures one cold start in a new process.
const CHILD_ENV: &str = "CLOUDSQL_COLD_START_CHILD";
/// The connector's knob for how many threads race to generate its key.
const THREADS_ENV: &str = "CLOUDSQL_RSA_KEYGEN_THREADS";
const LATENCIES: [Duration; 2] = [Duration::ZERO, Duration::from_millis(50)];

#[derive(Serialize, Deserialize)]
struct Setup {
    admin_api: String,
    key_file: PathBuf,
    instance: String,
}

fn pg_config() -> tokio_postgres::Config {
    let mut config = tokio_postgres::Config::new();
    config.user("postgres").dbname("postgres");
    config
}

async fn first_row(connector: &Connector, instance: &str) -> anyhow::Result<()> {
    let (client, connection) = cloudsql::postgres::connect(connector, instance, &pg_config()).await?;
    let connection = tokio::spawn(connection);
    let one: i32 = client.query_one("SELECT 1", &[]).await?.get(0);
    anyhow::ensure!(one == 1, "SELECT 1 returned {one}");
    drop(client);
    let _ = connection.await;
    Ok(())
}

fn build(setup: &Setup) -> anyhow::Result<Connector> {
    Ok(Connector::builder()
        .credentials(Credentials::from_file(&setup.key_file)?)
        .admin_api_endpoint(&setup.admin_api)
        .build()?)
}

/// The child: one cold start in a new process, timed from the first line of `main`.
fn child(setup: &str) -> anyhow::Result<()> {
    let started = Instant::now();
    let setup: Setup = serde_json::from_str(setup)?;
    let runtime = tokio::runtime::Runtime::new()?;
    let runtime_ready = started.elapsed();
    runtime.block_on(async {
        let t = Instant::now();
        let credentials = Credentials::from_file(&setup.key_file)?;
        let read = t.elapsed();
        let connector = Connector::builder()
            .credentials(credentials)
            .admin_api_endpoint(&setup.admin_api)
            .build()?;
        let built = started.elapsed();
        first_row(&connector, &setup.instance).await?;
        println!(
            "us {} runtime {} credentials {} build {}",
            started.elapsed().as_micros(),
            runtime_ready.as_micros(),
            read.as_micros(),
            (built - runtime_ready - read).as_micros()
        );
        connector.close().await;
        Ok(())
    })
}

fn random() -> u64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(0);
    h.finish()
}

fn shuffle<T>(items: &mut [T]) {
    for i in (1..items.len()).rev() {
        let j = (random() % (i as u64 + 1)) as usize;
        items.swap(i, j);
    }
}

fn percentile(samples: &[Duration], p: f64) -> Duration {
    let mut sorted = samples.to_vec();
    sorted.sort();
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn ratio(a: Duration, b: Duration) -> f64 {
    a.as_secs_f64() / b.as_secs_f64().max(f64::EPSILON)
}

/// Google's connector in one long-lived Python process.
struct Python {
    _child: Child,
    stdin: ChildStdin,
    stdout: Lines<BufReader<ChildStdout>>,
}

impl Python {
    async fn start(setup: &Setup) -> anyhow::Result<Self> {
        let python = Path::new(VENV).join("bin/python");
        let ready = tokio::process::Command::new(&python)
            .args(["-c", "import google.cloud.sql.connector, asyncpg"])
            .status()
            .await
            .is_ok_and(|s| s.success());
        if !ready {
            eprintln!("creating {VENV} with {PACKAGE} from PyPI…");
            let created = tokio::process::Command::new("python3")
                .args(["-m", "venv", VENV])
                .status()
                .await?;
            anyhow::ensure!(created.success(), "python3 -m venv {VENV} failed");
            let installed = tokio::process::Command::new(&python)
                .args(["-m", "pip", "install", "--quiet", PACKAGE])
                .status()
                .await?;
            anyhow::ensure!(installed.success(), "pip install {PACKAGE} failed");
        }
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/python_cold_start.py");
        let config = serde_json::json!({
            "admin_api": setup.admin_api, "instance": setup.instance,
            "user": "postgres", "db": "postgres",
        });
        let mut child = tokio::process::Command::new(&python)
            .arg(script)
            .env("COLD_START", config.to_string())
            .env("GOOGLE_APPLICATION_CREDENTIALS", &setup.key_file)
            .env("NO_PROXY", "*")
            .env_remove("GOOGLE_CLOUD_PROJECT")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()?;
        let stdin = child.stdin.take().ok_or_else(|| anyhow::anyhow!("no stdin"))?;
        let stdout = child.stdout.take().ok_or_else(|| anyhow::anyhow!("no stdout"))?;
        Ok(Self {
            _child: child,
            stdin,
            stdout: BufReader::new(stdout).lines(),
        })
    }

    async fn round(&mut self) -> anyhow::Result<Duration> {
        self.stdin.write_all(b"round\n").await?;
        self.stdin.flush().await?;
        let line = self
            .stdout
            .next_line()
            .await?
            .ok_or_else(|| anyhow::anyhow!("the Python process ended"))?;
        let ms: f64 = line
            .strip_prefix("ms ")
            .ok_or_else(|| anyhow::anyhow!("Python connector: {line}"))?
            .parse()?;
        Ok(Duration::from_secs_f64(ms / 1000.0))
    }
}

/// What the child measured, and the wall time from spawning it to its exit.
struct ChildTimes {
    total: Duration,
    runtime: Duration,
    credentials: Duration,
    build: Duration,
    wall: Duration,
}

/// Runs this binary again as a child that measures one cold start.
async fn ours_new_process(setup_json: &str, race_every_core: bool) -> anyhow::Result<ChildTimes> {
    let started = Instant::now();
    let mut command = tokio::process::Command::new(std::env::current_exe()?);
    if race_every_core {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        command.env(THREADS_ENV, cores.to_string());
    } else {
        command.env_remove(THREADS_ENV);
    }
    let output = command
        .env(CHILD_ENV, setup_json)
        .stdin(Stdio::null())
        .output()
        .await?;
    let wall = started.elapsed();
    let stdout = String::from_utf8_lossy(&output.stdout);
    anyhow::ensure!(
        output.status.success(),
        "child failed: {stdout} {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let fields: Vec<u64> = stdout
        .lines()
        .find_map(|l| l.strip_prefix("us "))
        .ok_or_else(|| anyhow::anyhow!("child printed no time: {stdout}"))?
        .split_whitespace()
        .filter_map(|f| f.parse().ok())
        .collect();
    anyhow::ensure!(fields.len() == 4, "child printed {stdout}");
    let [total, runtime, credentials, build] = [0, 1, 2, 3].map(|i| Duration::from_micros(fields[i]));
    Ok(ChildTimes {
        total,
        runtime,
        credentials,
        build,
        wall,
    })
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Run {
    OursNewProcess,
    OursNewProcessEveryCore,
    OursWarmProcess,
    Python,
    Warm,
}

#[derive(Default)]
struct Samples {
    by: Vec<((Run, usize), Vec<Duration>)>,
    exec_wall: [Vec<Duration>; 2],
    runtime: Vec<Duration>,
    credentials: Vec<Duration>,
    build: Vec<Duration>,
}

impl Samples {
    fn push(&mut self, key: (Run, usize), d: Duration) {
        match self.by.iter_mut().find(|(k, _)| *k == key) {
            Some((_, v)) => v.push(d),
            None => self.by.push((key, vec![d])),
        }
    }

    fn get(&self, key: (Run, usize)) -> Option<&[Duration]> {
        self.by.iter().find(|(k, _)| *k == key).map(|(_, v)| v.as_slice())
    }
}

fn set_latency(emulator: &Emulator, instance: &Instance, latency: Duration) {
    instance.faults().admin_delay(latency);
    emulator.token_faults().delay(latency);
}

fn main() -> anyhow::Result<()> {
    if let Ok(setup) = std::env::var(CHILD_ENV) {
        return child(&setup);
    }
    tokio::runtime::Runtime::new()?.block_on(driver())
}

async fn driver() -> anyhow::Result<()> {
    let rounds: usize = std::env::var("COLD_START_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30);
    let emulator = Emulator::start().await?;
    let instance: Arc<Instance> = emulator
        .add_instance(
            InstanceConfig::new(
                "bench-project:us-central1:cold-pg",
                "POSTGRES_15",
                "127.0.0.1:5432".parse()?,
            )
            .ca_mode(CaMode::GoogleManagedCas),
        )
        .await?;
    let dir = std::env::temp_dir().join(format!("cloudsql-cold-bench-{}", std::process::id()));
    let key_file =
        emulator.write_service_account_file("bench@bench-project.iam.gserviceaccount.com", &dir)?;
    let setup = Setup {
        admin_api: emulator.admin_api_url().to_owned(),
        key_file,
        instance: instance.connection_name().to_owned(),
    };
    let setup_json = serde_json::to_string(&setup)?;

    let mut python = match Python::start(&setup).await {
        Ok(p) => Some(p),
        Err(e) => {
            eprintln!("Google's Python connector is unavailable, its lines are skipped: {e:#}");
            None
        }
    };
    let warm = build(&setup)?;
    // Warm-up: every path twice, at no latency (backend caches, page cache, Python imports).
    for _ in 0..2 {
        first_row(&warm, &setup.instance).await?;
        ours_new_process(&setup_json, false).await?;
        ours_new_process(&setup_json, true).await?;
        first_row(&build(&setup)?, &setup.instance).await?;
        if let Some(p) = python.as_mut() {
            p.round().await?;
        }
    }

    let mut items = Vec::new();
    for (l, _) in LATENCIES.iter().enumerate() {
        items.push((Run::OursNewProcess, l));
        items.push((Run::OursNewProcessEveryCore, l));
        items.push((Run::OursWarmProcess, l));
        if python.is_some() {
            items.push((Run::Python, l));
        }
    }
    items.push((Run::Warm, 0));
    let mut samples = Samples::default();
    let started = Instant::now();
    for _ in 0..rounds {
        shuffle(&mut items);
        for &(path, l) in &items {
            set_latency(&emulator, &instance, LATENCIES[l]);
            let d = match path {
                Run::OursNewProcess => {
                    let times = ours_new_process(&setup_json, false).await?;
                    samples.exec_wall[l].push(times.wall);
                    samples.runtime.push(times.runtime);
                    samples.credentials.push(times.credentials);
                    samples.build.push(times.build);
                    times.total
                }
                Run::OursNewProcessEveryCore => ours_new_process(&setup_json, true).await?.total,
                Run::OursWarmProcess => {
                    let t = Instant::now();
                    let connector = build(&setup)?;
                    first_row(&connector, &setup.instance).await?;
                    let d = t.elapsed();
                    connector.close().await;
                    d
                }
                Run::Python => match python.as_mut() {
                    Some(p) => p.round().await?,
                    None => continue,
                },
                Run::Warm => {
                    let t = Instant::now();
                    first_row(&warm, &setup.instance).await?;
                    t.elapsed()
                }
            };
            samples.push((path, l), d);
        }
    }
    set_latency(&emulator, &instance, Duration::ZERO);
    report(&samples, rounds, started.elapsed(), python.is_some());
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

fn line(label: &str, samples: &[Duration]) -> (Duration, Duration) {
    let median = percentile(samples, 0.5);
    let p90 = percentile(samples, 0.9);
    println!(
        "  {label:<52} median {median:>9.2?}  p90 {p90:>9.2?}  (n={})",
        samples.len()
    );
    (median, p90)
}

fn report(samples: &Samples, rounds: usize, took: Duration, with_python: bool) {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "cloudsql-rs cold start vs Google's Python connector 1.23 (asyncpg): {rounds} rounds in random order, {cores} cores, {:.0?}",
        took
    );
    let warm = samples
        .get((Run::Warm, 0))
        .map(|s| line("warm connect -> first row (floor)", s));
    line("ours, new process: Tokio runtime start", &samples.runtime);
    line("ours, new process: Credentials::from_file", &samples.credentials);
    line("ours, new process: ConnectorBuilder::build", &samples.build);
    for (l, latency) in LATENCIES.iter().enumerate() {
        println!("{latency:?} injected on each Admin API call and token request:");
        let ours = samples
            .get((Run::OursNewProcess, l))
            .map(|s| line("ours, new process (runtime+build+connect+SELECT 1)", s));
        line("  same, wall time incl. exec", &samples.exec_wall[l]);
        let every_core = samples
            .get((Run::OursNewProcessEveryCore, l))
            .map(|s| line("ours, new process, key raced on every core", s));
        if let (Some((om, op)), Some((em, ep))) = (ours, every_core) {
            println!(
                "  ratio raced on every core / default: median {:.2}x  p90 {:.2}x",
                ratio(em, om),
                ratio(ep, op)
            );
        }
        if let Some(s) = samples.get((Run::OursWarmProcess, l)) {
            line("ours, new connector in a warm process (key exists)", s);
        }
        let python = samples
            .get((Run::Python, l))
            .filter(|_| with_python)
            .map(|s| line("Python connector + asyncpg, new Connector", s));
        if let (Some((om, op)), Some((pm, pp))) = (ours, python) {
            println!(
                "  ratio ours (new process) / Python: median {:.2}x  p90 {:.2}x",
                ratio(om, pm),
                ratio(op, pp)
            );
        }
        if let (Some((om, op)), Some((wm, _)), false) = (ours, warm, latency.is_zero()) {
            // token ∥ key, then connectSettings ∥ generateEphemeralCert, then dial and first row.
            let critical = *latency * 2 + wm;
            println!(
                "  critical path 2 x {latency:?} + warm connect = {critical:.2?}; ours / critical path: median {:.2}x  p90 {:.2}x",
                ratio(om, critical),
                ratio(op, critical)
            );
        }
    }
}
