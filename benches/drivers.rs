//! Every driver path against its floor, in one run on one emulator: warm connect → first row and
//! bulk read, for tokio-postgres, deadpool, bb8, sqlx (PostgreSQL and MySQL) and mysql_async.
//!
//! The floor is what a hand-written client with a certificate issued beforehand must do at least
//! (benches/support/floor.rs): for tokio-postgres and its pools, a TLS 1.3 mTLS stream to the
//! instance's proxy handed to `connect_raw`; for the drivers that cannot take a stream (sqlx,
//! mysql_async), the same driver through a bare Unix-socket relay over such a stream. Each
//! contender is compared with the floor of its own driver, so the ratio is what the connector
//! costs, not what one driver costs against another. The pools' lines are a new connection made
//! by the pool (`Pool::get` with the previous connection taken out of it, and bb8's manager
//! `connect`), i.e. the manager's path; their bulk reads run on the same tokio-postgres stream and
//! are not repeated.
//!
//! Every round runs every line once, in random order (the machine is noisy; compare ratios).
//!
//! ```sh
//! cargo bench --bench drivers                  # 150 warm rounds, 12 bulk rounds
//! DRIVERS_ROUNDS=300 DRIVERS_BULK_ROUNDS=20 cargo bench --bench drivers
//! ```

use std::sync::Arc;
use std::time::{Duration, Instant};

use cloudsql::core::{Connector, Credentials, DialOptions};
use cloudsql_emulator::{CaMode, Emulator, InstanceConfig};
use mysql_async::prelude::Queryable;
use sqlx::ConnectOptions;
use sqlx::mysql::MySqlConnectOptions;
use sqlx::postgres::PgConnectOptions;

#[path = "support/floor.rs"]
mod floor;
#[path = "support/order.rs"]
mod order;
use floor::{Floor, FloorRelay};
use order::shuffle;

const MYSQL_USER: &str = "cloudsql_admin";
const MYSQL_PASSWORD: &str = "cloudsql-mysql-admin";
const MYSQL_DB: &str = "cloudsql_test";
/// About 25 MB per bulk read.
const PG_BULK: &str = "SELECT repeat('x', 1000) FROM generate_series(1, 25000)";
const MYSQL_BULK: &str = "SELECT REPEAT('x', 1000) FROM seq_1_to_25000";

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
    Deadpool,
    Bb8,
    FloorSqlxPostgres,
    SqlxPostgres,
    FloorMysqlAsync,
    MysqlAsync,
    FloorSqlxMysql,
    SqlxMysql,
}

impl Path {
    const ALL: [Path; 10] = [
        Path::FloorPostgres,
        Path::TokioPostgres,
        Path::Deadpool,
        Path::Bb8,
        Path::FloorSqlxPostgres,
        Path::SqlxPostgres,
        Path::FloorMysqlAsync,
        Path::MysqlAsync,
        Path::FloorSqlxMysql,
        Path::SqlxMysql,
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
            Path::Deadpool => "deadpool-postgres (new pooled connection)",
            Path::Bb8 => "bb8 (manager connect)",
            Path::FloorSqlxPostgres => "floor: bare relay + sqlx PgConnection",
            Path::SqlxPostgres => "sqlx PgConnection (cloudsql_sqlx)",
            Path::FloorMysqlAsync => "floor: bare relay + mysql_async Conn",
            Path::MysqlAsync => "mysql_async Conn (cloudsql_mysql)",
            Path::FloorSqlxMysql => "floor: bare relay + sqlx MySqlConnection",
            Path::SqlxMysql => "sqlx MySqlConnection (cloudsql_sqlx)",
        }
    }

    /// The floor this line is measured against (`None` for the floors).
    fn floor(self) -> Option<Path> {
        match self {
            Path::TokioPostgres | Path::Deadpool | Path::Bb8 => Some(Path::FloorPostgres),
            Path::SqlxPostgres => Some(Path::FloorSqlxPostgres),
            Path::MysqlAsync => Some(Path::FloorMysqlAsync),
            Path::SqlxMysql => Some(Path::FloorSqlxMysql),
            _ => None,
        }
    }
}

/// Everything each line connects with, made once.
struct Setup {
    connector: Connector,
    pg_instance: String,
    pg_floor: Arc<Floor>,
    deadpool: deadpool_postgres::Pool,
    bb8: cloudsql::postgres::bb8::CloudSqlConnectionManager,
    sqlx_pg: PgConnectOptions,
    sqlx_pg_floor: PgConnectOptions,
    mysql: mysql_async::Opts,
    mysql_floor: mysql_async::Opts,
    sqlx_mysql: MySqlConnectOptions,
    sqlx_mysql_floor: MySqlConnectOptions,
    _relays: Vec<FloorRelay>,
}

/// A connection of any line, for the bulk reads.
enum Conn {
    Postgres(tokio_postgres::Client),
    SqlxPostgres(sqlx::PgConnection),
    MysqlAsync(mysql_async::Conn),
    SqlxMysql(sqlx::MySqlConnection),
}

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

    /// Opens a connection on `path`.
    async fn open(&self, path: Path) -> anyhow::Result<Conn> {
        Ok(match path {
            Path::FloorPostgres => Conn::Postgres(self.tokio_postgres(true).await?),
            Path::TokioPostgres => Conn::Postgres(self.tokio_postgres(false).await?),
            Path::Deadpool | Path::Bb8 => anyhow::bail!("pools are measured in `first_row`"),
            Path::FloorSqlxPostgres => Conn::SqlxPostgres(self.sqlx_pg_floor.connect().await?),
            Path::SqlxPostgres => Conn::SqlxPostgres(self.sqlx_pg.connect().await?),
            Path::FloorMysqlAsync => {
                Conn::MysqlAsync(mysql_async::Conn::new(self.mysql_floor.clone()).await?)
            }
            Path::MysqlAsync => Conn::MysqlAsync(mysql_async::Conn::new(self.mysql.clone()).await?),
            Path::FloorSqlxMysql => Conn::SqlxMysql(self.sqlx_mysql_floor.connect().await?),
            Path::SqlxMysql => Conn::SqlxMysql(self.sqlx_mysql.connect().await?),
        })
    }

    /// A new connection on `path` → `SELECT 1`, closed after (not timed by the caller).
    async fn first_row(&self, path: Path) -> anyhow::Result<Duration> {
        let t = Instant::now();
        match path {
            Path::Deadpool => {
                let object = self.deadpool.get().await?;
                let one: i32 = object.query_one("SELECT 1", &[]).await?.get(0);
                let took = t.elapsed();
                anyhow::ensure!(one == 1);
                // Out of the pool, so that the next `get` makes a new connection.
                drop(deadpool_postgres::Object::take(object));
                return Ok(took);
            }
            Path::Bb8 => {
                let client = bb8::ManageConnection::connect(&self.bb8).await?;
                let one: i32 = client.query_one("SELECT 1", &[]).await?.get(0);
                let took = t.elapsed();
                anyhow::ensure!(one == 1);
                return Ok(took);
            }
            _ => {}
        }
        let mut conn = self.open(path).await?;
        let one = query_one(&mut conn).await?;
        let took = t.elapsed();
        anyhow::ensure!(one == 1, "{path:?}: SELECT 1 returned {one}");
        close(conn).await;
        Ok(took)
    }
}

async fn query_one(conn: &mut Conn) -> anyhow::Result<i64> {
    Ok(match conn {
        Conn::Postgres(c) => i64::from(c.query_one("SELECT 1", &[]).await?.get::<_, i32>(0)),
        Conn::SqlxPostgres(c) => i64::from(sqlx::query_scalar::<_, i32>("SELECT 1").fetch_one(c).await?),
        Conn::MysqlAsync(c) => c
            .query_first::<i64, _>("SELECT 1")
            .await?
            .ok_or_else(|| anyhow::anyhow!("no row"))?,
        Conn::SqlxMysql(c) => sqlx::query_scalar::<_, i64>("SELECT 1").fetch_one(c).await?,
    })
}

async fn close(conn: Conn) {
    match conn {
        Conn::Postgres(c) => drop(c),
        Conn::SqlxPostgres(c) => drop(sqlx::Connection::close(c).await),
        Conn::MysqlAsync(c) => drop(c.disconnect().await),
        Conn::SqlxMysql(c) => drop(sqlx::Connection::close(c).await),
    }
}

/// Reads the bulk result; the bytes read.
async fn bulk(conn: &mut Conn) -> anyhow::Result<usize> {
    Ok(match conn {
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
    })
}

fn percentile(samples: &[f64], p: f64) -> f64 {
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

async fn setup(emulator: &Emulator, dir: &std::path::Path) -> anyhow::Result<Setup> {
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
    let key = emulator.write_service_account_file("bench@bench-project.iam.gserviceaccount.com", dir)?;
    let connector = Connector::builder()
        .credentials(Credentials::from_file(&key)?)
        .admin_api_endpoint(emulator.admin_api_url())
        .build()?;
    let pg_instance = pg.connection_name().to_owned();
    let my_instance = my.connection_name().to_owned();

    let pg_floor = Arc::new(Floor::new(emulator, &pg).await?);
    let my_floor = Arc::new(Floor::new(emulator, &my).await?);
    let pg_relay = FloorRelay::start(pg_floor.clone(), &dir.join("pg"), ".s.PGSQL.5432")?;
    let my_relay = FloorRelay::start(my_floor, &dir.join("my"), "mysql.sock")?;

    let deadpool = cloudsql::postgres::deadpool::pool_builder(connector.clone(), &pg_instance, pg_config())
        .max_size(1)
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
        bb8,
        sqlx_pg,
        sqlx_pg_floor,
        mysql,
        mysql_floor,
        sqlx_mysql,
        sqlx_mysql_floor,
        _relays: vec![pg_relay, my_relay],
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let rounds = env_usize("DRIVERS_ROUNDS", 150);
    let bulk_rounds = env_usize("DRIVERS_BULK_ROUNDS", 12);
    let emulator = Emulator::start().await?;
    let dir = std::env::temp_dir().join(format!("cloudsql-drivers-bench-{}", std::process::id()));
    let setup = setup(&emulator, &dir).await?;

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
            connects[path as usize].push(d.as_secs_f64() * 1000.0);
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
            rates[*path as usize].push(bytes as f64 / t.elapsed().as_secs_f64() / 1e6);
        }
    }
    for (_, conn) in open {
        close(conn).await;
    }

    println!(
        "cloudsql-rs driver paths against their floors: {rounds} connect rounds, {bulk_rounds} bulk rounds, random order, {} cores, {:.0?}",
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        started.elapsed()
    );
    println!("warm connect -> first row (new connection, certificate cached), ms:");
    for path in Path::ALL {
        let s = &connects[path as usize];
        let (median, p90) = (percentile(s, 0.5), percentile(s, 0.9));
        let ratio = path.floor().map(|f| {
            let floor = &connects[f as usize];
            format!(
                "  / floor: median {:.3}x  p90 {:.3}x",
                median / percentile(floor, 0.5),
                p90 / percentile(floor, 0.9)
            )
        });
        println!(
            "  {:<46} median {median:>7.2}  p90 {p90:>7.2}  (n={}){}",
            path.label(),
            s.len(),
            ratio.unwrap_or_default()
        );
    }
    println!("bulk read (~25 MB on one open connection), MB/s:");
    for path in Path::BULK {
        let s = &rates[path as usize];
        let median = percentile(s, 0.5);
        let ratio = path
            .floor()
            .map(|f| format!("  / floor: {:.3}x", median / percentile(&rates[f as usize], 0.5)));
        println!(
            "  {:<46} median {median:>7.1}  (n={}){}",
            path.label(),
            s.len(),
            ratio.unwrap_or_default()
        );
    }
    setup.connector.close().await;
    drop(setup);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
