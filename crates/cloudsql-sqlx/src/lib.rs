//! # cloudsql-sqlx
//!
//! [sqlx] on Google Cloud SQL through the [`cloudsql_core`] connector, for PostgreSQL
//! (feature `postgres`) and MySQL (feature `mysql`).
//!
//! sqlx cannot take a custom stream, so it reaches the instance through a local Unix socket
//! that the connector serves in-process; every connection accepted there is dialed through the
//! connector (its own TLS 1.3 stream, the current certificate, IAM authn). Start from the
//! options you already have — user, password, database, statement cache — and get options that
//! point at the socket, with TLS off inside the tunnel (the tunnel is TLS 1.3 already).
//!
//! ```no_run
//! # #[cfg(feature = "postgres")]
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
//!
//! let connector = cloudsql_core::Connector::builder().build()?;
//! let base = PgConnectOptions::new().username("app").password("secret").database("appdb");
//! let pool = cloudsql_sqlx::postgres::pool(&connector, "my-project:us-central1:my-db", base, PgPoolOptions::new()).await?;
//! let one: i32 = sqlx::query_scalar("SELECT 1").fetch_one(&pool).await?;
//! # let _ = one; Ok(()) }
//! ```
//!
//! The pools built here (`postgres::pool`, `mysql::pool`, …) keep the
//! [`Connector`](cloudsql_core::Connector) and its local socket alive until they are closed or
//! dropped, so dropping your own connector handles does not cut them off.
//! [`Connector::close`](cloudsql_core::Connector::close) leaves open connections working; new
//! ones fail with a database error saying the connector is closed. Options from
//! `connect_options` do not hold the connector: keep a clone of it while you use them.
#![forbid(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod error;
pub use error::Error;

#[cfg(feature = "mysql")]
#[cfg_attr(docsrs, doc(cfg(feature = "mysql")))]
pub mod mysql;
#[cfg(feature = "postgres")]
#[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
pub mod postgres;

pub use cloudsql_core;
pub use sqlx;

/// sqlx failed on a connection the local socket relayed: the connector could not see why, so
/// it refreshes in the background (paced; connects keep using a valid certificate). sqlx's own
/// configuration errors do not count.
#[cfg(any(feature = "postgres", feature = "mysql"))]
async fn refresh_after_failure(connector: &cloudsql_core::Connector, instance: &str, error: &sqlx::Error) {
    if matches!(error, sqlx::Error::Configuration(_)) {
        return;
    }
    tracing::debug!(
        instance,
        error = error as &dyn std::error::Error,
        "login failed; refreshing in the background"
    );
    if let Err(e) = connector.force_refresh(instance).await {
        tracing::debug!(
            instance,
            error = &e as &dyn std::error::Error,
            "could not start a refresh"
        );
    }
}

/// Keeps the connector and its local socket alive until `pool` is closed or dropped (sqlx fires
/// its close event either way); the task holds no reference to the pool itself.
#[cfg(any(feature = "postgres", feature = "mysql"))]
fn keep_alive<DB: sqlx::Database>(
    pool: &sqlx::Pool<DB>,
    connector: &cloudsql_core::Connector,
    socket: &cloudsql_core::LocalSocket,
) {
    let closed = pool.close_event();
    let guard = (connector.clone(), socket.clone());
    tokio::spawn(async move {
        closed.await;
        drop(guard);
    });
}

/// Opens the pool. When the first connection fails because the local socket could not dial the
/// instance (since `failed_dials`), the error is the connector's, as the socket recorded it;
/// any other failure inside sqlx starts a background refresh.
#[cfg(any(feature = "postgres", feature = "mysql"))]
async fn connect_pool<DB: sqlx::Database>(
    connector: &cloudsql_core::Connector,
    instance: &str,
    socket: &cloudsql_core::LocalSocket,
    options: <DB::Connection as sqlx::Connection>::Options,
    pool_options: sqlx::pool::PoolOptions<DB>,
) -> Result<sqlx::Pool<DB>, Error> {
    let failed_dials = socket.failed_dials();
    match pool_options.connect_with(options).await {
        Ok(pool) => {
            keep_alive(&pool, connector, socket);
            Ok(pool)
        }
        Err(e) => {
            if socket.failed_dials() != failed_dials
                && let Some(cause) = socket.last_error()
            {
                tracing::debug!(
                    instance,
                    error = &e as &dyn std::error::Error,
                    "sqlx connect failed because the local socket could not dial the instance"
                );
                return Err(cause.into());
            }
            refresh_after_failure(connector, instance, &e).await;
            Err(e.into())
        }
    }
}
