//! A bb8 connection manager for tiberius whose every new connection goes through the
//! connector, and the error sink that keeps bb8 from hiding why a connect failed. (The
//! published tiberius pool crates pin an older tiberius and hard-code a TCP stream, so this
//! crate carries its own.)
//!
//! bb8 opens connections in background tasks: when one fails, [`bb8::Pool::get`] does not see
//! the error, keeps waiting, and answers `RunError::TimedOut` ("Timed out in bb8") once the
//! pool's connection timeout has passed — also with `retry_connection(false)`, which only stops
//! the background task from trying again. The error itself goes to the pool's error sink
//! (nowhere, by default). So build pools with [`pool_builder`]: its sink logs every failed
//! connect at `warn!` with the instance and the whole cause, and [`ConnectErrors::get`] checks
//! out a connection and answers `RunError::User` with the real error:
//!
//! - with `retry_connection(false)`, as soon as a connect fails (no waiting for the timeout);
//! - with retries on (bb8's default), when the timeout has passed, with the last failure instead
//!   of `TimedOut`.
//!
//! `Builder::build` with `min_idle` set, and [`bb8::Pool::dedicated_connection`], return the
//! real error by themselves, as does [`pool`], which opens the pool's first connection.
//!
//! The collecting is `cloudsql_core::driver::ConnectErrors`, shared with the other driver
//! crates; the log lines are this module's (target `cloudsql_mssql::bb8`).

use bb8::ErrorSink;
/// bb8's pool types, re-exported so that an application needs no `bb8` dependency of its own.
pub use bb8::{Builder, Pool, PooledConnection, RunError};
use cloudsql_core::driver::{self, PooledFailure};
use cloudsql_core::{Connector, DialOptions};
use tiberius::Config;

use crate::{CloudSqlClient, Error, connect_with};

/// Opens pooled tiberius connections to one instance through the connector.
///
/// A new connection whose TDS login fails starts a paced background refresh
/// of the instance (see [`connect`](crate::connect)); bb8 gets the error as is. Build the pool
/// with [`pool_builder`] and check out with [`ConnectErrors::get`] to see that error.
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// use cloudsql_mssql::bb8::{CloudSqlConnectionManager, pool_builder};
/// let connector = cloudsql_core::Connector::builder().build()?;
/// let mut config = tiberius::Config::new();
/// config.authentication(tiberius::AuthMethod::sql_server("sqlserver", "secret"));
/// let manager = CloudSqlConnectionManager::new(connector, "proj:region:inst", config);
/// let errors = manager.connect_errors();
/// let pool = pool_builder(&manager)
///     .max_size(16)
///     .retry_connection(false)
///     .build(manager)
///     .await?;
/// // A failed connect comes back as `RunError::User(error)`, not "Timed out in bb8".
/// let mut client = errors.get(&pool).await?;
/// client.simple_query("SELECT 1").await?.into_row().await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct CloudSqlConnectionManager {
    connector: Connector,
    instance: String,
    config: Config,
    options: DialOptions,
    errors: ConnectErrors,
}

impl CloudSqlConnectionManager {
    /// A manager for `instance` with the connector's default options.
    pub fn new(connector: Connector, instance: impl Into<String>, config: Config) -> Self {
        let instance = instance.into();
        Self {
            errors: ConnectErrors(driver::ConnectErrors::new(&instance)),
            connector,
            instance,
            config,
            options: DialOptions::new(),
        }
    }

    /// Uses these per-connection options for every pooled connection.
    #[must_use]
    pub fn options(mut self, options: DialOptions) -> Self {
        self.options = options;
        self
    }

    /// The error sink of pools built with [`pool_builder`] for this manager (or given it with
    /// `Builder::error_sink`), shared by all its clones.
    pub fn connect_errors(&self) -> ConnectErrors {
        self.errors.clone()
    }
}

impl bb8::ManageConnection for CloudSqlConnectionManager {
    type Connection = CloudSqlClient;
    type Error = Error;

    async fn connect(&self) -> Result<CloudSqlClient, Error> {
        connect_with(
            &self.connector,
            &self.instance,
            self.config.clone(),
            &self.options,
        )
        .await
    }

    async fn is_valid(&self, client: &mut CloudSqlClient) -> Result<(), Error> {
        let checked = match client.simple_query("SELECT 1").await {
            Ok(stream) => stream.into_row().await.map(drop),
            Err(e) => Err(e),
        };
        checked.map_err(|e| {
            driver::mark_check_failure();
            e.into()
        })
    }

    fn has_broken(&self, _client: &mut CloudSqlClient) -> bool {
        false
    }
}

/// A bb8 pool builder whose error sink is `manager`'s [`ConnectErrors`]: every failed connect
/// is logged at `warn!` and kept for [`ConnectErrors::get`]. Set the size and timeouts, then
/// `build(manager)`.
pub fn pool_builder(manager: &CloudSqlConnectionManager) -> Builder<CloudSqlConnectionManager> {
    Pool::builder().error_sink(Box::new(manager.connect_errors()))
}

/// A ready bb8 pool for `instance`, built with [`pool_builder`] and bb8's defaults: it has
/// opened its first connection, so an unknown instance, an instance running another engine or
/// a refused login fails here with this crate's [`Error`] (not bb8's timeout). Check out with
/// [`ConnectErrors::get`] (from [`CloudSqlConnectionManager::connect_errors`]) or `Pool::get`.
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let connector = cloudsql_core::Connector::builder().build()?;
/// let mut config = tiberius::Config::new();
/// config.authentication(tiberius::AuthMethod::sql_server("sqlserver", "secret"));
/// let pool = cloudsql_mssql::bb8::pool(connector, "proj:region:inst", config).await?;
/// let mut client = pool.get().await?;
/// client.simple_query("SELECT 1").await?.into_row().await?;
/// # Ok(()) }
/// ```
pub async fn pool(
    connector: Connector,
    instance: &str,
    config: Config,
) -> Result<Pool<CloudSqlConnectionManager>, Error> {
    pool_with(connector, instance, config, DialOptions::new()).await
}

/// [`pool`] with per-connection options (IP type, timeout) for every connection the
/// pool opens.
///
/// ```no_run
/// use cloudsql_core::{DialOptions, IpType};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let connector = cloudsql_core::Connector::builder().build()?;
/// let mut config = tiberius::Config::new();
/// config.authentication(tiberius::AuthMethod::sql_server("sqlserver", "secret"));
/// let options = DialOptions::new().ip_type(IpType::Private);
/// let pool = cloudsql_mssql::bb8::pool_with(connector, "proj:region:inst", config, options).await?;
/// # let _ = pool; Ok(()) }
/// ```
pub async fn pool_with(
    connector: Connector,
    instance: &str,
    config: Config,
    options: DialOptions,
) -> Result<Pool<CloudSqlConnectionManager>, Error> {
    let manager = CloudSqlConnectionManager::new(connector, instance, config).options(options);
    let first = bb8::ManageConnection::connect(&manager).await?;
    let pool = pool_builder(&manager).build_unchecked(manager);
    // An empty pool has room for it; were it full, the connection would only be dropped.
    let _ = pool.add(first);
    Ok(pool)
}

/// The failed connects of one manager's pools: a bb8 error sink that logs each at `warn!`
/// (fields `instance` and `error`, the error naming its whole cause) and keeps the last few
/// for [`ConnectErrors::get`]. A pooled connection that fails bb8's check on checkout is logged
/// at `debug!` only: bb8 replaces it.
#[derive(Debug, Clone)]
pub struct ConnectErrors(driver::ConnectErrors<Error>);

impl ConnectErrors {
    /// Checks out a connection from `pool`, answering a failed connect with
    /// `RunError::User(error)` instead of bb8's `RunError::TimedOut`.
    ///
    /// With `retry_connection(false)` it answers as soon as a connect fails; with retries on
    /// it waits, like [`Pool::get`], for the connection timeout and then answers with the last
    /// failure (`TimedOut` when no connect failed, e.g. every connection was busy). The pool
    /// must have been built with this sink ([`pool_builder`]).
    pub async fn get<'a>(
        &self,
        pool: &'a Pool<CloudSqlConnectionManager>,
    ) -> Result<PooledConnection<'a, CloudSqlConnectionManager>, RunError<Error>> {
        // Dropping bb8's checkout early is safe: it holds no connection yet.
        let timed_out = |r: &Result<_, _>| matches!(r, Err(RunError::TimedOut));
        match self
            .0
            .checkout(pool.config().retry_connection, pool.get(), timed_out)
            .await
        {
            Ok(result) => result,
            Err(error) => Err(RunError::User(error)),
        }
    }
}

impl ErrorSink<Error> for ConnectErrors {
    fn sink(&self, error: Error) {
        self.0.sink(error, |failure, instance, error| match failure {
            PooledFailure::Connect => {
                tracing::warn!(instance = %instance, error = %error, "could not open a pooled connection");
            }
            _ => tracing::debug!(
                instance = %instance,
                error = %error,
                "a pooled connection failed its check; bb8 replaces it"
            ),
        });
    }

    fn boxed_clone(&self) -> Box<dyn ErrorSink<Error>> {
        Box::new(self.clone())
    }
}
