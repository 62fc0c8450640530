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
//! Keep the [`Connector`](cloudsql_core::Connector) alive as long as the pools that use it: the
//! local socket belongs to the connector and is removed when it is closed or dropped.
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
