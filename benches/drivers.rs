//! Every driver path against its floor, in one run on one emulator: warm connect → first row and
//! bulk read, for tokio-postgres, deadpool, bb8, sqlx (PostgreSQL and MySQL), mysql_async and
//! tiberius (SQL Server; warm connect and resources only: the emulator's TDS responder answers
//! `SELECT <integer>`, not bulk reads).
//!
//! The floor is what a hand-written client with a certificate issued beforehand must do at least
//! (benches/support/floor.rs): for tokio-postgres and its pools, a TLS 1.3 mTLS stream to the
//! instance's proxy handed to `connect_raw` (for tiberius, to `Client::connect`); for the drivers
//! that cannot take a stream (sqlx, mysql_async), the same driver through a bare Unix-socket relay
//! over such a stream. Each
//! contender is compared with the floor of its own driver, so the ratio is what the connector
//! costs, not what one driver costs against another. The pools' lines are a new connection made
//! by the pool (`Pool::get` with the previous connection taken out of it, and bb8's manager
//! `connect`), i.e. the manager's path; their bulk reads run on the same tokio-postgres stream and
//! are not repeated.
//!
//! deadpool has a second floor, deadpool-postgres itself over the floor stream (a `Connect` of the
//! bench's own), so that deadpool's own cost is told from its manager's.
//!
//! Every round runs every line once, in random order (the machine is noisy; compare ratios).
//! MySQL connects are bimodal on this VM (a fast mode near 1.3 ms and a slow one near 3 ms,
//! for the floors as much as for the connector), so a median that falls between the modes moves
//! a lot with small changes in their mix: `DRIVERS_DECILES=1` prints every line's deciles.
//!
//! RSS and CPU per connection: each line opens `DRIVERS_RESOURCE_CONNS` connections (each with
//! its first row) and holds them, in a child process of its own that connects to the emulator in
//! this one, so that neither the emulator (the instance's side: its TLS and proxying) nor the
//! other lines' leftovers are counted. The child warms its line up first (three connections
//! opened and closed), then reads its resident set (`VmRSS`) and the CPU time of all its threads
//! (`/proc/self/task/*/schedstat`, nanoseconds) before and after; both deltas are divided by the
//! number of connections. The connector's and the floors' relays run in the child: they are the
//! client's side.
//!
//! `DRIVERS_PROFILE_DIR=/tmp/prof` runs each resource child under `perf record -e cpu-clock -g`,
//! one file per line and round in that directory (`perf report -i …`). perf starts disabled and
//! the child switches it on only for its measured window (opening the connections), through
//! perf's control FIFO, so that its setup (keys, certificates, warm-up) stays out of the profile.
//!
//! ```sh
//! cargo bench --bench drivers                  # 150 warm rounds, 12 bulk rounds, 5 resource rounds of 30
//! DRIVERS_ROUNDS=300 DRIVERS_BULK_ROUNDS=20 DRIVERS_RESOURCE_ROUNDS=7 DRIVERS_RESOURCE_CONNS=50 cargo bench --bench drivers
//! ```

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cloudsql::core::{Connector, Credentials, DialOptions, RsaKey};
use cloudsql_emulator::{CaMode, Emulator, InstanceConfig};
use mysql_async::prelude::Queryable;
use sqlx::ConnectOptions;
use sqlx::mysql::MySqlConnectOptions;
use sqlx::postgres::PgConnectOptions;
use tokio_util::compat::TokioAsyncWriteCompatExt;

#[path = "support/cpu.rs"]
mod cpu;
#[path = "support/floor.rs"]
mod floor;
use cpu::cpu_ns;
#[path = "support/order.rs"]
mod order;
use floor::{Floor, FloorRelay, FloorTarget};
use order::shuffle;

const MYSQL_USER: &str = "cloudsql_admin";
const MYSQL_PASSWORD: &str = "cloudsql-mysql-admin";
const MYSQL_DB: &str = "cloudsql_test";
/// About 25 MB per bulk read.
const PG_BULK: &str = "SELECT repeat('x', 1000) FROM generate_series(1, 25000)";
const MYSQL_BULK: &str = "SELECT REPEAT('x', 1000) FROM seq_1_to_25000";
/// The SQL login the emulated SQL Server instance accepts (its TDS responder checks it).
const MSSQL_LOGIN: (&str, &str) = ("sqlserver", "bench-S3cret!");

fn pg_config() -> tokio_postgres::Config {
    let mut config = tokio_postgres::Config::new();
    config.user("postgres").dbname("postgres");
    config
}

fn sqlx_pg_options() -> PgConnectOptions {
    PgConnectOptions::new().username("postgres").database("postgres")
}

fn sqlx_mysql_options() -> MySqlConnectOptions {
    MySqlConnectOptions::new()
        .username(MYSQL_USER)
        .password(MYSQL_PASSWORD)
        .database(MYSQL_DB)
}

fn tiberius_config() -> tiberius::Config {
    let mut config = tiberius::Config::new();
    config.authentication(tiberius::AuthMethod::sql_server(MSSQL_LOGIN.0, MSSQL_LOGIN.1));
    config
}

fn mysql_opts() -> mysql_async::OptsBuilder {
    mysql_async::OptsBuilder::default()
        .user(Some(MYSQL_USER))
        .pass(Some(MYSQL_PASSWORD))
        .db_name(Some(MYSQL_DB))
        .prefer_socket(false)
}

/// A line of the report: a driver path, and the floor it is compared with.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Path {
    FloorPostgres,
    TokioPostgres,
    FloorDeadpool,
    Deadpool,
    Bb8,
    FloorSqlxPostgres,
    SqlxPostgres,
    FloorMysqlAsync,
    MysqlAsync,
    FloorSqlxMysql,
    SqlxMysql,
    FloorTiberius,
    Tiberius,
}

impl Path {
    const ALL: [Path; 13] = [
        Path::FloorPostgres,
        Path::TokioPostgres,
        Path::FloorDeadpool,
        Path::Deadpool,
        Path::Bb8,
        Path::FloorSqlxPostgres,
        Path::SqlxPostgres,
        Path::FloorMysqlAsync,
        Path::MysqlAsync,
        Path::FloorSqlxMysql,
        Path::SqlxMysql,
        Path::FloorTiberius,
        Path::Tiberius,
    ];
    const BULK: [Path; 8] = [
        Path::FloorPostgres,
        Path::TokioPostgres,
        Path::FloorSqlxPostgres,
        Path::SqlxPostgres,
        Path::FloorMysqlAsync,
        Path::MysqlAsync,
        Path::FloorSqlxMysql,
        Path::SqlxMysql,
    ];

    fn label(self) -> &'static str {
        match self {
            Path::FloorPostgres => "floor: rustls mTLS stream + tokio-postgres",
            Path::TokioPostgres => "tokio-postgres (cloudsql_postgres::connect)",
            Path::FloorDeadpool => "floor: deadpool-postgres over the floor stream",
            Path::Deadpool => "deadpool-postgres (new pooled connection)",
            Path::Bb8 => "bb8 (manager connect)",
            Path::FloorSqlxPostgres => "floor: bare relay + sqlx PgConnection",
            Path::SqlxPostgres => "sqlx PgConnection (cloudsql_sqlx)",
            Path::FloorMysqlAsync => "floor: bare relay + mysql_async Conn",
            Path::MysqlAsync => "mysql_async Conn (cloudsql_mysql)",
            Path::FloorSqlxMysql => "floor: bare relay + sqlx MySqlConnection",
            Path::SqlxMysql => "sqlx MySqlConnection (cloudsql_sqlx)",
            Path::FloorTiberius => "floor: rustls mTLS stream + tiberius",
            Path::Tiberius => "tiberius (cloudsql_mssql::connect)",
        }
    }

    /// The floor this line is measured against (`None` for the floors, but deadpool's own floor
    /// is measured against tokio-postgres' to show what deadpool itself costs).
    fn floor(self) -> Option<Path> {
        match self {
            Path::TokioPostgres | Path::FloorDeadpool | Path::Deadpool | Path::Bb8 => {
                Some(Path::FloorPostgres)
            }
            Path::SqlxPostgres => Some(Path::FloorSqlxPostgres),
            Path::MysqlAsync => Some(Path::FloorMysqlAsync),
            Path::SqlxMysql => Some(Path::FloorSqlxMysql),
            Path::Tiberius => Some(Path::FloorTiberius),
            _ => None,
        }
    }

    /// A second floor for this line: deadpool's own.
    fn second_floor(self) -> Option<Path> {
        (self == Path::Deadpool).then_some(Path::FloorDeadpool)
    }

    fn index(self) -> usize {
        self as usize
    }

    fn from_index(index: usize) -> Option<Path> {
        Path::ALL.get(index).copied()
    }
}

/// The ratio columns of a line: to its floor, and to its second floor if it has one.
fn ratios(path: Path, value: impl Fn(Path) -> f64) -> String {
    let mut out = String::new();
    if let Some(f) = path.floor() {
        out.push_str(&format!("  / floor: {:.3}x", value(path) / value(f)));
    }
    if let Some(f) = path.second_floor() {
        out.push_str(&format!("  / deadpool floor: {:.3}x", value(path) / value(f)));
    }
    out
}

/// deadpool-postgres' `Connect` over the floor stream: deadpool with nothing of ours.
struct FloorConnect(Arc<Floor>);

impl deadpool_postgres::Connect for FloorConnect {
    fn connect(
        &self,
        pg_config: &tokio_postgres::Config,
    ) -> Pin<
        Box<
            dyn Future<
                    Output = Result<
                        (tokio_postgres::Client, tokio::task::JoinHandle<()>),
                        tokio_postgres::Error,
                    >,
                > + Send
                + '_,
        >,
    > {
        let mut config = pg_config.clone();
        config.ssl_mode(tokio_postgres::config::SslMode::Disable);
        Box::pin(async move {
            match self.0.connect().await {
                Ok(stream) => {
                    let (client, connection) = config.connect_raw(stream, tokio_postgres::NoTls).await?;
                    Ok((client, tokio::spawn(async move { drop(connection.await) })))
                }
                Err(e) => {
                    eprintln!("floor connect failed: {e:#}");
                    // The pool wants a tokio-postgres error: that of a stream already closed.
                    let (closed, _) = tokio::io::duplex(1);
                    let (client, connection) = config.connect_raw(closed, tokio_postgres::NoTls).await?;
                    Ok((client, tokio::spawn(async move { drop(connection.await) })))
                }
            }
        })
    }
}

/// Everything each line connects with, made once.
struct Setup {
    connector: Connector,
    pg_instance: String,
    pg_floor: Arc<Floor>,
    deadpool: deadpool_postgres::Pool,
    deadpool_floor: deadpool_postgres::Pool,
    bb8: cloudsql::postgres::bb8::CloudSqlConnectionManager,
    sqlx_pg: PgConnectOptions,
    sqlx_pg_floor: PgConnectOptions,
    mysql: mysql_async::Opts,
    mysql_floor: mysql_async::Opts,
    sqlx_mysql: MySqlConnectOptions,
    sqlx_mysql_floor: MySqlConnectOptions,
    ms_instance: String,
    ms_floor: Arc<Floor>,
    _relays: Vec<FloorRelay>,
}

/// A connection of any line, for the bulk reads.
enum Conn {
    Postgres(tokio_postgres::Client),
    Pooled(deadpool_postgres::Object),
    SqlxPostgres(sqlx::PgConnection),
    MysqlAsync(mysql_async::Conn),
    SqlxMysql(sqlx::MySqlConnection),
    // Boxed: a tiberius client is several times larger than the others.
    Tiberius(Box<cloudsql::mssql::CloudSqlClient>),
    FloorTiberius(Box<FloorTiberiusClient>),
}

/// tiberius over the floor's TLS stream.
type FloorTiberiusClient =
    tiberius::Client<tokio_util::compat::Compat<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>>;

impl Setup {
    async fn tokio_postgres(&self, floor: bool) -> anyhow::Result<tokio_postgres::Client> {
        let (client, connection) = if floor {
            let mut config = pg_config();
            config.ssl_mode(tokio_postgres::config::SslMode::Disable);
            let (client, connection) = config
                .connect_raw(self.pg_floor.connect().await?, tokio_postgres::NoTls)
                .await?;
            (client, tokio::spawn(async move { drop(connection.await) }))
        } else {
            let (client, connection) =
                cloudsql::postgres::connect(&self.connector, &self.pg_instance, &pg_config()).await?;
            (client, tokio::spawn(async move { drop(connection.await) }))
        };
        drop(connection);
        Ok(client)
    }

    /// Opens a connection on `path` (for the pools, a new one made by the pool or its manager).
    async fn open(&self, path: Path) -> anyhow::Result<Conn> {
        Ok(match path {
            Path::FloorPostgres => Conn::Postgres(self.tokio_postgres(true).await?),
            Path::TokioPostgres => Conn::Postgres(self.tokio_postgres(false).await?),
            Path::FloorDeadpool => Conn::Pooled(self.deadpool_floor.get().await?),
            Path::Deadpool => Conn::Pooled(self.deadpool.get().await?),
            Path::Bb8 => Conn::Postgres(bb8::ManageConnection::connect(&self.bb8).await?),
            Path::FloorSqlxPostgres => Conn::SqlxPostgres(self.sqlx_pg_floor.connect().await?),
            Path::SqlxPostgres => Conn::SqlxPostgres(self.sqlx_pg.connect().await?),
            Path::FloorMysqlAsync => {
                Conn::MysqlAsync(mysql_async::Conn::new(self.mysql_floor.clone()).await?)
            }
            Path::MysqlAsync => Conn::MysqlAsync(mysql_async::Conn::new(self.mysql.clone()).await?),
            Path::FloorSqlxMysql => Conn::SqlxMysql(self.sqlx_mysql_floor.connect().await?),
            Path::SqlxMysql => Conn::SqlxMysql(self.sqlx_mysql.connect().await?),
            Path::FloorTiberius => {
                let mut config = tiberius_config();
                // The floor's TLS is the encryption, as the connector's is.
                config.encryption(tiberius::EncryptionLevel::NotSupported);
                let stream = self.ms_floor.connect().await?.compat_write();
                Conn::FloorTiberius(Box::new(tiberius::Client::connect(config, stream).await?))
            }
            Path::Tiberius => Conn::Tiberius(Box::new(
                cloudsql::mssql::connect(&self.connector, &self.ms_instance, tiberius_config()).await?,
            )),
        })
    }

    /// A new connection on `path` → `SELECT 1`, closed after (not timed).
    async fn first_row(&self, path: Path) -> anyhow::Result<Duration> {
        let t = Instant::now();
        let conn = self.opened(path).await?;
        let took = t.elapsed();
        close(conn).await;
        Ok(took)
    }

    /// A new connection on `path` that has read its first row.
    async fn opened(&self, path: Path) -> anyhow::Result<Conn> {
        let mut conn = self.open(path).await?;
        let one = query_one(&mut conn).await?;
        anyhow::ensure!(one == 1, "{path:?}: SELECT 1 returned {one}");
        Ok(conn)
    }
}

async fn query_one(conn: &mut Conn) -> anyhow::Result<i64> {
    Ok(match conn {
        Conn::Postgres(c) => i64::from(c.query_one("SELECT 1", &[]).await?.get::<_, i32>(0)),
        Conn::Pooled(c) => i64::from(c.query_one("SELECT 1", &[]).await?.get::<_, i32>(0)),
        Conn::SqlxPostgres(c) => i64::from(sqlx::query_scalar::<_, i32>("SELECT 1").fetch_one(c).await?),
        Conn::MysqlAsync(c) => c
            .query_first::<i64, _>("SELECT 1")
            .await?
            .ok_or_else(|| anyhow::anyhow!("no row"))?,
        Conn::SqlxMysql(c) => sqlx::query_scalar::<_, i64>("SELECT 1").fetch_one(c).await?,
        Conn::Tiberius(c) => tiberius_one(c.simple_query("SELECT 1").await?).await?,
        Conn::FloorTiberius(c) => tiberius_one(c.simple_query("SELECT 1").await?).await?,
    })
}

/// The `int` of a one-row, one-column answer.
async fn tiberius_one(answer: tiberius::QueryStream<'_>) -> anyhow::Result<i64> {
    let row = answer
        .into_row()
        .await?
        .ok_or_else(|| anyhow::anyhow!("no row"))?;
    Ok(i64::from(
        row.get::<i32, _>(0).ok_or_else(|| anyhow::anyhow!("a NULL"))?,
    ))
}

async fn close(conn: Conn) {
    match conn {
        Conn::Postgres(c) => drop(c),
        // Out of the pool, so that the next `get` makes a new connection.
        Conn::Pooled(c) => drop(deadpool_postgres::Object::take(c)),
        Conn::SqlxPostgres(c) => drop(sqlx::Connection::close(c).await),
        Conn::MysqlAsync(c) => drop(c.disconnect().await),
        Conn::SqlxMysql(c) => drop(sqlx::Connection::close(c).await),
        Conn::Tiberius(c) => drop((*c).close().await),
        Conn::FloorTiberius(c) => drop((*c).close().await),
    }
}

/// Reads the bulk result; the bytes read.
async fn bulk(conn: &mut Conn) -> anyhow::Result<usize> {
    Ok(match conn {
        Conn::Pooled(c) => c
            .query(PG_BULK, &[])
            .await?
            .iter()
            .map(|r| r.get::<_, &str>(0).len())
            .sum(),
        Conn::Postgres(c) => c
            .query(PG_BULK, &[])
            .await?
            .iter()
            .map(|r| r.get::<_, &str>(0).len())
            .sum(),
        Conn::SqlxPostgres(c) => sqlx::query_scalar::<_, String>(PG_BULK)
            .fetch_all(c)
            .await?
            .iter()
            .map(String::len)
            .sum(),
        Conn::MysqlAsync(c) => c
            .query::<String, _>(MYSQL_BULK)
            .await?
            .iter()
            .map(String::len)
            .sum(),
        Conn::SqlxMysql(c) => sqlx::query_scalar::<_, String>(MYSQL_BULK)
            .fetch_all(c)
            .await?
            .iter()
            .map(String::len)
            .sum(),
        Conn::Tiberius(_) | Conn::FloorTiberius(_) => {
            anyhow::bail!("the emulator's TDS responder answers no bulk reads")
        }
    })
}

/// The `p` quantile of `samples` (NaN when there are none).
fn percentile(samples: &[f64], p: f64) -> f64 {
    if samples.is_empty() {
        return f64::NAN;
    }
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Where the emulator is, in plain values, for this process and its resource children.
#[derive(serde::Serialize, serde::Deserialize)]
struct Target {
    admin_api_url: String,
    key_file: PathBuf,
    pg: FloorTarget,
    my: FloorTarget,
    ms: FloorTarget,
}

/// The three instances on `emulator`, and a service account key in `dir`.
async fn instances(emulator: &Emulator, dir: &std::path::Path) -> anyhow::Result<Target> {
    let pg = emulator
        .add_instance(
            InstanceConfig::new(
                "bench-project:us-central1:drivers-pg",
                "POSTGRES_15",
                "127.0.0.1:5432".parse()?,
            )
            .ca_mode(CaMode::GoogleManagedCas),
        )
        .await?;
    let my = emulator
        .add_instance(
            InstanceConfig::new(
                "bench-project:us-central1:drivers-my",
                "MYSQL_8_0",
                "127.0.0.1:3306".parse()?,
            )
            .ca_mode(CaMode::GoogleManagedCas),
        )
        .await?;
    let ms = emulator
        .add_instance(
            InstanceConfig::sql_server("bench-project:us-central1:drivers-ms")
                .sql_login(MSSQL_LOGIN.0, MSSQL_LOGIN.1)
                .ca_mode(CaMode::GoogleManagedCas),
        )
        .await?;
    Ok(Target {
        admin_api_url: emulator.admin_api_url(),
        key_file: emulator.write_service_account_file("bench@bench-project.iam.gserviceaccount.com", dir)?,
        pg: FloorTarget::of(emulator, &pg),
        my: FloorTarget::of(emulator, &my),
        ms: FloorTarget::of(emulator, &ms),
    })
}

/// Everything every line needs; the pools can hold `pool_size` connections.
async fn setup(target: &Target, dir: &std::path::Path, pool_size: usize) -> anyhow::Result<Setup> {
    // The connector's key is made here, before anything is measured. Built without one, the
    // connector races its generation on two threads of its own, which a floor line never waits
    // for: in a resource child that work could still be running when the floor's window opens.
    let key = tokio::task::spawn_blocking(RsaKey::generate).await??;
    let connector = Connector::builder()
        .rsa_key(key)
        .credentials(Credentials::from_file(&target.key_file)?)
        .admin_api_endpoint(target.admin_api_url.clone())
        .build()?;
    let pg_instance = target.pg.connection_name.clone();
    let my_instance = target.my.connection_name.clone();

    let pg_floor = Arc::new(Floor::at(&target.pg).await?);
    let my_floor = Arc::new(Floor::at(&target.my).await?);
    let ms_floor = Arc::new(Floor::at(&target.ms).await?);
    let pg_relay = FloorRelay::start(pg_floor.clone(), &dir.join("pg"), ".s.PGSQL.5432")?;
    let my_relay = FloorRelay::start(my_floor, &dir.join("my"), "mysql.sock")?;

    let deadpool = cloudsql::postgres::deadpool::pool_builder(connector.clone(), &pg_instance, pg_config())
        .max_size(pool_size)
        .build()?;
    let deadpool_floor = deadpool_postgres::Pool::builder(deadpool_postgres::Manager::from_connect(
        pg_config(),
        FloorConnect(pg_floor.clone()),
        deadpool_postgres::ManagerConfig {
            recycling_method: deadpool_postgres::RecyclingMethod::Fast,
        },
    ))
    .max_size(pool_size)
    .build()?;
    let bb8 =
        cloudsql::postgres::bb8::CloudSqlConnectionManager::new(connector.clone(), &pg_instance, pg_config())
            .options(DialOptions::new());
    let sqlx_pg =
        cloudsql::sqlx::postgres::connect_options(&connector, &pg_instance, sqlx_pg_options()).await?;
    let sqlx_pg_floor = sqlx_pg_options().socket(pg_relay.dir()).port(5432);
    let mysql = cloudsql::mysql::opts(&connector, &my_instance, mysql_opts()).await?;
    let mysql_floor = mysql_async::Opts::from(mysql_opts().socket(Some(my_relay.path().to_string_lossy())));
    let sqlx_mysql =
        cloudsql::sqlx::mysql::connect_options(&connector, &my_instance, sqlx_mysql_options()).await?;
    let sqlx_mysql_floor = sqlx_mysql_options().socket(my_relay.path());
    Ok(Setup {
        connector,
        pg_instance,
        pg_floor,
        deadpool,
        deadpool_floor,
        bb8,
        sqlx_pg,
        sqlx_pg_floor,
        mysql,
        mysql_floor,
        sqlx_mysql,
        sqlx_mysql_floor,
        ms_instance: target.ms.connection_name.clone(),
        ms_floor,
        _relays: vec![pg_relay, my_relay],
    })
}

/// This process's resident set, in KiB.
fn rss_kib() -> anyhow::Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no VmRSS in /proc/self/status"))
}

/// Bulk reads a resource child times for its CPU per MB.
const BULK_CPU_READS: usize = 4;

/// Marks the line a resource child prints its result on.
const CHILD_RESULT: &str = "drivers-resource-child:";

/// A resource child: warms `path` up, then opens and holds `conns` connections on it; prints the
/// RSS (KiB) and CPU (ns) they added, per connection.
async fn resource_child(target: &str, path: &str, conns: usize) -> anyhow::Result<()> {
    let target: Target = serde_json::from_str(target)?;
    let path = path
        .parse()
        .ok()
        .and_then(Path::from_index)
        .ok_or_else(|| anyhow::anyhow!("no line {path}"))?;
    let dir = std::env::temp_dir().join(format!("cloudsql-drivers-child-{}", std::process::id()));
    let setup = setup(&target, &dir, conns + 1).await?;
    for _ in 0..3 {
        setup.first_row(path).await?;
    }
    let profile = ProfileWindow::from_env()?;
    let (rss, cpu) = (rss_kib()?, cpu_ns()?);
    profile.switch("enable")?;
    let mut held = Vec::with_capacity(conns);
    for _ in 0..conns {
        held.push(setup.opened(path).await?);
    }
    profile.switch("disable")?;
    let (rss_after, cpu_after) = (rss_kib()?, cpu_ns()?);
    // Bulk reads on one of them: the client side's CPU per MB.
    let mut bulk_ns_per_mb = f64::NAN;
    if let (true, Some(conn)) = (Path::BULK.contains(&path), held.first_mut()) {
        bulk(conn).await?;
        let (before, mut bytes) = (cpu_ns()?, 0);
        for _ in 0..BULK_CPU_READS {
            bytes += bulk(conn).await?;
        }
        bulk_ns_per_mb = cpu_ns()?.saturating_sub(before) as f64 / (bytes as f64 / 1e6);
    }
    println!(
        "{CHILD_RESULT} {} {} {bulk_ns_per_mb}",
        rss_after.saturating_sub(rss) as f64 / conns as f64,
        cpu_after.saturating_sub(cpu) as f64 / conns as f64
    );
    for conn in held {
        close(conn).await;
    }
    setup.connector.close().await;
    drop(setup);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// Where a profiled resource child finds perf's control and acknowledgement FIFOs.
const PROFILE_CTL: &str = "DRIVERS_PROFILE_CTL";
const PROFILE_ACK: &str = "DRIVERS_PROFILE_ACK";

/// perf's control FIFOs, when the child runs under `perf record -D -1 --control`: the child
/// switches the profile on and off around its measured window.
struct ProfileWindow(Option<(PathBuf, PathBuf)>);

impl ProfileWindow {
    fn from_env() -> anyhow::Result<Self> {
        Ok(Self(
            std::env::var_os(PROFILE_CTL)
                .zip(std::env::var_os(PROFILE_ACK))
                .map(|(c, a)| (c.into(), a.into())),
        ))
    }

    /// Makes a fresh pair of FIFOs for run `run` in `dir`.
    fn fifos(dir: &std::path::Path, run: usize) -> anyhow::Result<(PathBuf, PathBuf)> {
        let (ctl, ack) = (
            dir.join(format!("ctl-{run}.fifo")),
            dir.join(format!("ack-{run}.fifo")),
        );
        for fifo in [&ctl, &ack] {
            let _ = std::fs::remove_file(fifo);
            let status = std::process::Command::new("mkfifo").arg(fifo).status()?;
            anyhow::ensure!(status.success(), "mkfifo {} failed: {status}", fifo.display());
        }
        Ok((ctl, ack))
    }

    /// Sends perf `command` (`enable`, `disable`) and waits for its acknowledgement.
    fn switch(&self, command: &str) -> anyhow::Result<()> {
        use std::io::{BufRead, Write};
        let Some((ctl, ack)) = &self.0 else { return Ok(()) };
        std::fs::OpenOptions::new()
            .write(true)
            .open(ctl)?
            .write_all(format!("{command}\n").as_bytes())?;
        let mut line = String::new();
        std::io::BufReader::new(std::fs::File::open(ack)?).read_line(&mut line)?;
        anyhow::ensure!(
            line.trim() == "ack",
            "perf answered `{}` to `{command}`",
            line.trim()
        );
        Ok(())
    }
}

/// Runs a resource child for `path`: RSS (KiB) and CPU (µs) per connection, and CPU per MB of
/// bulk read (ms; NaN for the pools, whose bulk reads are tokio-postgres').
async fn resources(target: &str, path: Path, conns: usize) -> anyhow::Result<(f64, f64, f64)> {
    let exe = std::env::current_exe()?;
    // DRIVERS_PROFILE_DIR: each child runs under `perf record` (software clock, call graphs),
    // one file per line and run, to see where a line's CPU per connection goes.
    let mut fifos = Vec::new();
    let mut command = match std::env::var_os("DRIVERS_PROFILE_DIR") {
        Some(dir) => {
            static RUN: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
            let run = RUN.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let file = PathBuf::from(&dir).join(format!("{path:?}-{run}.data").replace(' ', "_"));
            let (ctl, ack) = ProfileWindow::fifos(&PathBuf::from(&dir), run)?;
            fifos.extend([ctl.clone(), ack.clone()]);
            let mut perf = tokio::process::Command::new("perf");
            perf.args(["record", "-q", "-e", "cpu-clock", "-g", "-D", "-1", "--control"])
                .arg(format!("fifo:{},{}", ctl.display(), ack.display()))
                .arg("-o")
                .arg(file)
                .arg("--")
                .arg(&exe)
                .env(PROFILE_CTL, ctl)
                .env(PROFILE_ACK, ack);
            perf
        }
        None => tokio::process::Command::new(&exe),
    };
    let output = command
        .env("DRIVERS_CHILD_TARGET", target)
        .env("DRIVERS_CHILD_PATH", path.index().to_string())
        .env("DRIVERS_CHILD_CONNS", conns.to_string())
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output()
        .await;
    for fifo in fifos {
        let _ = std::fs::remove_file(fifo);
    }
    let output = output?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    anyhow::ensure!(
        output.status.success(),
        "{path:?}: resource child failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let numbers: Vec<f64> = stdout
        .lines()
        .find_map(|l| l.strip_prefix(CHILD_RESULT))
        .map(|l| l.split_whitespace().filter_map(|v| v.parse().ok()).collect())
        .unwrap_or_default();
    match numbers[..] {
        [rss, cpu, bulk] => Ok((rss, cpu / 1000.0, bulk / 1e6)),
        _ => anyhow::bail!("{path:?}: resource child printed no result: {stdout}"),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    if let (Ok(target), Ok(path)) = (
        std::env::var("DRIVERS_CHILD_TARGET"),
        std::env::var("DRIVERS_CHILD_PATH"),
    ) {
        return resource_child(&target, &path, env_usize("DRIVERS_CHILD_CONNS", 30)).await;
    }
    let rounds = env_usize("DRIVERS_ROUNDS", 150);
    let bulk_rounds = env_usize("DRIVERS_BULK_ROUNDS", 12);
    let resource_rounds = env_usize("DRIVERS_RESOURCE_ROUNDS", 5);
    let resource_conns = env_usize("DRIVERS_RESOURCE_CONNS", 30).max(1);
    let emulator = Emulator::start().await?;
    let dir = std::env::temp_dir().join(format!("cloudsql-drivers-bench-{}", std::process::id()));
    let target = instances(&emulator, &dir).await?;
    let setup = setup(&target, &dir, 1).await?;

    // Warm-up: every line a few times (certificates, backend caches, the relays' first dials).
    for _ in 0..5 {
        for path in Path::ALL {
            setup.first_row(path).await?;
        }
    }
    let started = Instant::now();
    let mut connects: Vec<Vec<f64>> = vec![Vec::new(); Path::ALL.len()];
    let mut order = Path::ALL;
    for _ in 0..rounds {
        shuffle(&mut order);
        for path in order {
            let d = setup.first_row(path).await?;
            connects[path.index()].push(d.as_secs_f64() * 1000.0);
        }
    }
    let mut open = Vec::new();
    for path in Path::BULK {
        let mut conn = setup.open(path).await?;
        bulk(&mut conn).await?;
        open.push((path, conn));
    }
    let mut rates: Vec<Vec<f64>> = vec![Vec::new(); Path::ALL.len()];
    for _ in 0..bulk_rounds {
        shuffle(&mut open);
        for (path, conn) in &mut open {
            let t = Instant::now();
            let bytes = bulk(conn).await?;
            rates[path.index()].push(bytes as f64 / t.elapsed().as_secs_f64() / 1e6);
        }
    }
    for (_, conn) in open {
        close(conn).await;
    }
    let target_json = serde_json::to_string(&target)?;
    let mut rss: Vec<Vec<f64>> = vec![Vec::new(); Path::ALL.len()];
    let (mut cpu, mut bulk_cpu) = (rss.clone(), rss.clone());
    for _ in 0..resource_rounds {
        shuffle(&mut order);
        for path in order {
            // The databases are shared (other processes may hold many of their connections):
            // a child that could not open its connections is retried once, then left out.
            let mut measured = resources(&target_json, path, resource_conns).await;
            if let Err(e) = &measured {
                eprintln!("{path:?}: {e:#}; retrying once");
                tokio::time::sleep(Duration::from_secs(1)).await;
                measured = resources(&target_json, path, resource_conns).await;
            }
            match measured {
                Ok((kib, micros, ms_per_mb)) => {
                    rss[path.index()].push(kib);
                    cpu[path.index()].push(micros);
                    bulk_cpu[path.index()].push(ms_per_mb);
                }
                Err(e) => eprintln!("{path:?}: {e:#}; this resource round is left out"),
            }
        }
    }

    println!(
        "cloudsql-rs driver paths against their floors: {rounds} connect rounds, {bulk_rounds} bulk rounds, \
         {resource_rounds} resource rounds of {resource_conns} connections, random order, {} cores, {:.0?}",
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        started.elapsed()
    );
    println!("warm connect -> first row (new connection, certificate cached), ms:");
    for path in Path::ALL {
        let s = &connects[path.index()];
        let (median, p90) = (percentile(s, 0.5), percentile(s, 0.9));
        let ratio = path.floor().map(|f| {
            let floor = &connects[f.index()];
            let mut out = format!(
                "  / floor: median {:.3}x  p90 {:.3}x",
                median / percentile(floor, 0.5),
                p90 / percentile(floor, 0.9)
            );
            if let Some(second) = path.second_floor() {
                out.push_str(&format!(
                    "  / deadpool floor: median {:.3}x",
                    median / percentile(&connects[second.index()], 0.5)
                ));
            }
            out
        });
        println!(
            "  {:<46} median {median:>7.2}  p90 {p90:>7.2}  (n={}){}",
            path.label(),
            s.len(),
            ratio.unwrap_or_default()
        );
    }
    if std::env::var_os("DRIVERS_DECILES").is_some() {
        println!("warm connect -> first row, deciles (p10 … p90), ms:");
        for path in Path::ALL {
            let s = &connects[path.index()];
            let deciles: Vec<String> = (1..10)
                .map(|i| format!("{:.2}", percentile(s, f64::from(i) / 10.0)))
                .collect();
            println!("  {:<46} {}", path.label(), deciles.join(" "));
        }
    }
    println!("bulk read (~25 MB on one open connection), MB/s:");
    for path in Path::BULK {
        let s = &rates[path.index()];
        println!(
            "  {:<46} median {:>7.1}  (n={}){}",
            path.label(),
            percentile(s, 0.5),
            s.len(),
            ratios(path, |p| percentile(&rates[p.index()], 0.5))
        );
    }
    println!(
        "bulk read CPU per MB (client side: driver, relay, TLS; child process, no emulator), ms, median of {resource_rounds}:"
    );
    for path in Path::BULK {
        let s = &bulk_cpu[path.index()];
        println!(
            "  {:<46} median {:>7.3}  (n={}){}",
            path.label(),
            percentile(s, 0.5),
            s.len(),
            ratios(path, |p| percentile(&bulk_cpu[p.index()], 0.5))
        );
    }
    let resource_lines = [
        ("RSS", "KiB", &rss),
        ("CPU (connect + first row, all threads)", "us", &cpu),
    ];
    for (what, unit, samples) in resource_lines {
        println!(
            "{what} per connection ({resource_conns} held; child process, no emulator), {unit}, median of {resource_rounds}:"
        );
        for path in Path::ALL {
            let s = &samples[path.index()];
            // The spread (max − min over the median) says how far one round can be trusted.
            println!(
                "  {:<46} median {:>7.1}  (n={}, spread {:.0}%){}",
                path.label(),
                percentile(s, 0.5),
                s.len(),
                (percentile(s, 1.0) - percentile(s, 0.0)) / percentile(s, 0.5) * 100.0,
                ratios(path, |p| percentile(&samples[p.index()], 0.5))
            );
        }
    }
    setup.connector.close().await;
    drop(setup);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
