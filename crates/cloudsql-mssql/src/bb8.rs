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
//! real error by themselves.

use std::cell::Cell;
use std::collections::VecDeque;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use bb8::ErrorSink;
/// bb8's pool types, re-exported so that an application needs no `bb8` dependency of its own.
pub use bb8::{Builder, Pool, PooledConnection, RunError};
use cloudsql_core::{Connector, DialOptions};
use tiberius::Config;
use tokio::sync::watch;

use crate::{CloudSqlClient, Error, connect_with};

/// How many failed connects [`ConnectErrors`] keeps for checkouts to pick up.
const KEPT_ERRORS: usize = 16;

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
            errors: ConnectErrors::new(&instance),
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
            mark_check_failure();
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

/// The failed connects of one manager's pools: a bb8 error sink that logs each at `warn!`
/// (fields `instance` and `error`, the error naming its whole cause) and keeps the last few
/// for [`ConnectErrors::get`]. A pooled connection that fails bb8's check on checkout is logged
/// at `debug!` only: bb8 replaces it.
#[derive(Clone)]
pub struct ConnectErrors {
    shared: Arc<Shared>,
}

struct Shared {
    instance: String,
    /// Failed connects, oldest first, each with its sequence number.
    kept: Mutex<VecDeque<(u64, Error)>>,
    /// The sequence number of the newest failed connect.
    newest: watch::Sender<u64>,
}

impl ConnectErrors {
    fn new(instance: &str) -> Self {
        Self {
            shared: Arc::new(Shared {
                instance: instance.to_owned(),
                kept: Mutex::new(VecDeque::new()),
                newest: watch::Sender::new(0),
            }),
        }
    }

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
        let mut newest = self.shared.newest.subscribe();
        let start = *newest.borrow_and_update();
        let checkout = pool.get();
        tokio::pin!(checkout);
        if pool.config().retry_connection {
            return match checkout.await {
                Err(RunError::TimedOut) => Err(self
                    .take_newest_after(start)
                    .map_or(RunError::TimedOut, RunError::User)),
                other => other,
            };
        }
        loop {
            tokio::select! {
                biased;
                result = &mut checkout => {
                    return match result {
                        Err(RunError::TimedOut) => Err(self.take_oldest_after(start).map_or(RunError::TimedOut, RunError::User)),
                        other => other,
                    };
                }
                Ok(()) = newest.changed() => {
                    if let Some(error) = self.take_oldest_after(start) {
                        // Dropping bb8's checkout is safe: it holds no connection yet.
                        return Err(RunError::User(error));
                    }
                }
            }
        }
    }

    fn record(&self, error: Error) {
        tracing::warn!(
            instance = %self.shared.instance,
            error = %error,
            "could not open a pooled connection"
        );
        let mut kept = self.shared.kept.lock().unwrap_or_else(PoisonError::into_inner);
        let seq = *self.shared.newest.borrow() + 1;
        kept.push_back((seq, error));
        if kept.len() > KEPT_ERRORS {
            kept.pop_front();
        }
        self.shared.newest.send_replace(seq);
    }

    /// Takes the oldest failure newer than `start`: with no retries, each failed connect
    /// answers one waiting checkout.
    fn take_oldest_after(&self, start: u64) -> Option<Error> {
        let mut kept = self.shared.kept.lock().unwrap_or_else(PoisonError::into_inner);
        let index = kept.iter().position(|(seq, _)| *seq > start)?;
        kept.remove(index).map(|(_, error)| error)
    }

    /// Takes the newest failure newer than `start`: with retries, the last attempt's.
    fn take_newest_after(&self, start: u64) -> Option<Error> {
        let mut kept = self.shared.kept.lock().unwrap_or_else(PoisonError::into_inner);
        let index = kept.iter().rposition(|(seq, _)| *seq > start)?;
        kept.remove(index).map(|(_, error)| error)
    }
}

impl ErrorSink<Error> for ConnectErrors {
    fn sink(&self, error: Error) {
        if take_check_failure() {
            tracing::debug!(
                instance = %self.shared.instance,
                error = %error,
                "a pooled connection failed its check; bb8 replaces it"
            );
        } else {
            self.record(error);
        }
    }

    fn boxed_clone(&self) -> Box<dyn ErrorSink<Error>> {
        Box::new(self.clone())
    }
}

impl fmt::Debug for ConnectErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectErrors")
            .field("instance", &self.shared.instance)
            .finish_non_exhaustive()
    }
}

thread_local! {
    /// Set by `is_valid` as it fails and read by the sink: bb8 hands a failed check to the sink
    /// in the same poll, on the same thread, with no await in between, so the flag tells a
    /// failed check (bb8 replaces the connection) from a failed connect.
    static CHECK_FAILED: Cell<bool> = const { Cell::new(false) };
}

fn mark_check_failure() {
    CHECK_FAILED.with(|flag| flag.set(true));
}

fn take_check_failure() -> bool {
    CHECK_FAILED.with(|flag| flag.replace(false))
}
