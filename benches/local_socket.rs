//! Local-socket mode against direct stream mode, same driver (tokio-postgres) and same emulated
//! instance, measured interleaved in one run: connect→first row latency, bulk read throughput,
//! and the client's CPU per MB of bulk read. The ratio is what the extra Unix-socket hop and
//! relay cost; issue 13's goals are connect ≤ 1.05× and bulk ≥ 0.95× the stream mode. Each round
//! runs its lines in a new random order.
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
//! The bulk rounds also run a floor pair that takes the connector out altogether: tokio-postgres
//! straight to PostgreSQL over TCP (no TLS), against the same through a bare relay (a Unix
//! socket, tokio's `copy_bidirectional_with_sizes` with the relay's buffer sizes, plain TCP to
//! PostgreSQL). Its ratio is what a Unix-socket hop with a plain copy costs on this machine with
//! nothing else in it, so the local socket's ratio can be read against what the hop alone takes
//! (the client CPU per MB it adds is the figure to compare; the ratios' denominators differ).
//! On Linux a fifth line runs the same bare relay with `splice(2)` through a 64 KiB pipe for the
//! bytes from PostgreSQL: no copy in user space, and on kernels since 6.5 (which take spliced
//! pages into a Unix socket) none into the socket either: a relay that does not copy, as one
//! could with TLS in the kernel (kTLS), though kTLS would also decrypt into new pages.
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
/// The PostgreSQL the emulated instance fronts, reached directly by the floor pair.
const POSTGRES: (&str, u16) = ("127.0.0.1", 5432);
/// The bare relay's Unix socket port (its file is `.s.PGSQL.<port>` in the socket's directory).
const BARE_RELAY_PORT: u16 = 5433;
/// The splicing relay's Unix socket port.
const SPLICE_RELAY_PORT: u16 = 5434;
/// The local socket relay's buffer sizes (`local_socket/relay.rs`), for the bare relay.
const RELAY_BUFFERS: (usize, usize) = (16 * 1024, 64 * 1024);

/// One line of the bulk rounds; its discriminant is its place in [`Line::ALL`] and in the
/// per-line results.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Line {
    /// The connector's stream, read by the driver.
    Stream,
    /// The connector's local socket.
    Socket,
    /// Plain TCP to PostgreSQL, no connector, no TLS.
    Direct,
    /// The same through a bare Unix-socket relay.
    BareRelay,
    /// The same through a bare relay that splices PostgreSQL's bytes (Linux).
    SpliceRelay,
}

impl Line {
    /// Every line, in discriminant order.
    const ALL: [Line; 5] = [
        Line::Stream,
        Line::Socket,
        Line::Direct,
        Line::BareRelay,
        Line::SpliceRelay,
    ];

    /// This line's place in [`Line::ALL`] and in the per-line results.
    fn index(self) -> usize {
        self as usize
    }
}

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
    unix_client(socket.dir(), 5432).await
}

/// tokio-postgres without TLS to where `config` points, its connection on a task of its own.
async fn plain_client(config: &tokio_postgres::Config) -> anyhow::Result<tokio_postgres::Client> {
    let (client, connection) = config.connect(tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    Ok(client)
}

/// tokio-postgres through the Unix socket `.s.PGSQL.<port>` in `dir`.
async fn unix_client(dir: &std::path::Path, port: u16) -> anyhow::Result<tokio_postgres::Client> {
    plain_client(base().host_path(dir).port(port)).await
}

/// tokio-postgres straight to [`POSTGRES`] over TCP, without TLS.
async fn direct_client() -> anyhow::Result<tokio_postgres::Client> {
    plain_client(base().host(POSTGRES.0).port(POSTGRES.1)).await
}

/// A Unix socket in `dir` whose connections are copied to PostgreSQL's TCP port and back, with
/// nothing else: what the hop alone costs, with tokio's own copy.
fn bare_relay(dir: &std::path::Path) -> anyhow::Result<()> {
    let listener = tokio::net::UnixListener::bind(dir.join(format!(".s.PGSQL.{BARE_RELAY_PORT}")))?;
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Ok(mut server) = tokio::net::TcpStream::connect(POSTGRES).await else {
                    return;
                };
                let _ = server.set_nodelay(true);
                let (up, down) = RELAY_BUFFERS;
                let _ = tokio::io::copy_bidirectional_with_sizes(&mut client, &mut server, up, down).await;
            });
        }
    });
    Ok(())
}

/// As [`bare_relay`], but the bytes from PostgreSQL cross by `splice(2)`, TCP → pipe → Unix
/// socket, never entering user space (the client's queries are copied as before).
#[cfg(target_os = "linux")]
fn splice_relay(dir: &std::path::Path) -> anyhow::Result<()> {
    use tokio::io::AsyncWriteExt as _;

    let listener = tokio::net::UnixListener::bind(dir.join(format!(".s.PGSQL.{SPLICE_RELAY_PORT}")))?;
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Ok(server) = tokio::net::TcpStream::connect(POSTGRES).await else {
                    return;
                };
                let _ = server.set_nodelay(true);
                let (mut client_read, client_write) = client.into_split();
                let (server_read, mut server_write) = server.into_split();
                let up = async {
                    tokio::io::copy(&mut client_read, &mut server_write).await?;
                    server_write.shutdown().await
                };
                let down = splice_down(server_read.as_ref(), client_write);
                let _ = tokio::try_join!(up, down);
            });
        }
    });
    Ok(())
}

/// Moves everything `from` receives to `to` through a pipe; when `from` ends, shuts `to`'s
/// writing down, so the client sees the end too.
#[cfg(target_os = "linux")]
async fn splice_down(
    from: &tokio::net::TcpStream,
    mut to: tokio::net::unix::OwnedWriteHalf,
) -> std::io::Result<()> {
    use rustix::pipe::{PipeFlags, SpliceFlags, fcntl_setpipe_size, pipe_with, splice};
    use tokio::io::{AsyncWriteExt as _, Interest};

    let flags = SpliceFlags::NONBLOCK;
    let (pipe_read, pipe_write) = pipe_with(PipeFlags::NONBLOCK | PipeFlags::CLOEXEC)?;
    // As much as the relay's buffer holds.
    let capacity = fcntl_setpipe_size(&pipe_write, RELAY_BUFFERS.1)?;
    loop {
        from.readable().await?;
        // The pipe is empty here, so a `WouldBlock` can only be the socket's (which `try_io`
        // then clears).
        let moved = match from.try_io(Interest::READABLE, || {
            Ok(splice(from, None, &pipe_write, None, capacity, flags)?)
        }) {
            Ok(0) => return to.shutdown().await,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        };
        let mut left = moved;
        while left > 0 {
            let socket: &tokio::net::UnixStream = to.as_ref();
            socket.writable().await?;
            match socket.try_io(Interest::WRITABLE, || {
                Ok(splice(&pipe_read, None, socket, None, left, flags)?)
            }) {
                Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
                Ok(n) => left -= n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
    }
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
            format!("{}:{}", POSTGRES.0, POSTGRES.1).parse()?,
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

    let bare_dir = std::env::temp_dir().join(format!("cloudsql-bench-bare-{}", std::process::id()));
    std::fs::create_dir_all(&bare_dir)?;
    bare_relay(&bare_dir)?;
    #[cfg(target_os = "linux")]
    splice_relay(&bare_dir)?;
    let mut clients = Vec::new();
    for line in Line::ALL {
        let client = match line {
            Line::Stream => stream_client(&connector, name).await?,
            Line::Socket => socket_client(&socket).await?,
            Line::Direct => direct_client().await?,
            Line::BareRelay => unix_client(&bare_dir, BARE_RELAY_PORT).await?,
            Line::SpliceRelay if cfg!(target_os = "linux") => {
                unix_client(&bare_dir, SPLICE_RELAY_PORT).await?
            }
            Line::SpliceRelay => continue,
        };
        bulk(&client).await?;
        clients.push((line, client));
    }
    // Per line: MB/s and client CPU ms per MB of each round.
    let mut rates: [Vec<f64>; Line::ALL.len()] = std::array::from_fn(|_| Vec::new());
    let mut cpus: [Vec<f64>; Line::ALL.len()] = std::array::from_fn(|_| Vec::new());
    for _ in 0..bulk_rounds {
        shuffle(&mut clients);
        for (line, client) in &clients {
            let (mb, secs, cpu) = timed_bulk(client).await?;
            rates[line.index()].push(mb / secs);
            cpus[line.index()].push(cpu / mb);
        }
    }
    let mid = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
    };
    let median_rate: Vec<f64> = rates.iter_mut().map(mid).collect();
    let median_cpu: Vec<f64> = cpus.iter_mut().map(mid).collect();
    let (rate, cpu) = (
        |line: Line| median_rate[line.index()],
        |line: Line| median_cpu[line.index()],
    );
    let (stream, socket_mode, direct, bare, spliced) = (
        Line::Stream,
        Line::Socket,
        Line::Direct,
        Line::BareRelay,
        Line::SpliceRelay,
    );
    println!(
        "bulk read (~100 MB), stream mode     median {:>8.1} MB/s, client CPU {:.3} ms per MB (n={bulk_rounds})",
        rate(stream),
        cpu(stream)
    );
    println!(
        "bulk read (~100 MB), local socket    median {:>8.1} MB/s, client CPU {:.3} ms per MB (n={bulk_rounds})  \
         ratio vs stream {:.3}x  (goal >= 0.95x), CPU per MB {:.3}x ({:+.3} ms)",
        rate(socket_mode),
        cpu(socket_mode),
        rate(socket_mode) / rate(stream),
        cpu(socket_mode) / cpu(stream),
        cpu(socket_mode) - cpu(stream)
    );
    println!(
        "floor pair, no connector, no TLS: direct TCP median {:>8.1} MB/s, client CPU {:.3} ms per MB; \
         bare Unix-socket relay {:>8.1} MB/s, {:.3} ms per MB  ratio {:.3}x, CPU per MB {:.3}x ({:+.3} ms)",
        rate(direct),
        cpu(direct),
        rate(bare),
        cpu(bare),
        rate(bare) / rate(direct),
        cpu(bare) / cpu(direct),
        cpu(bare) - cpu(direct)
    );
    if cfg!(target_os = "linux") {
        println!(
            "floor pair, spliced: bare relay with splice(2) for PostgreSQL's bytes {:>8.1} MB/s, {:.3} ms per MB  \
             ratio {:.3}x vs direct TCP, CPU per MB {:.3}x ({:+.3} ms)",
            rate(spliced),
            cpu(spliced),
            rate(spliced) / rate(direct),
            cpu(spliced) / cpu(direct),
            cpu(spliced) - cpu(direct)
        );
    }
    let _ = std::fs::remove_dir_all(&bare_dir);
    connector.close().await;
    Ok(())
}
