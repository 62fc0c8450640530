// The README's quickstart uses the `postgres` and `deadpool` features; without them the front
// page is a short pointer to the features, so `cargo test` passes with any feature set.
#![cfg_attr(all(feature = "postgres", feature = "deadpool"), doc = include_str!("../README.md"))]
#![cfg_attr(
    not(all(feature = "postgres", feature = "deadpool")),
    doc = "Secure, IAM-authorized connections to Google Cloud SQL. Turn on the drivers you use \
           with features (`dns` (default), `postgres`, `deadpool`, `bb8`, `mysql`, `mssql`, `sqlx-postgres`, \
           `sqlx-mysql`, `emulator`, `telemetry`, `sql-data`); the crate README has the whole table."
)]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![forbid(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]

/// The connector itself: [`Connector`], its builder, options, credentials and errors.
pub use cloudsql_core as core;
pub use cloudsql_core::{
    Connector, ConnectorBuilder, Credentials, DialOptions, Error, ErrorKind, IpType, RefreshStrategy,
};

/// tokio-postgres on Cloud SQL for PostgreSQL, with deadpool-postgres (feature `deadpool`) and
/// bb8 (feature `bb8`) pools.
#[cfg(feature = "postgres")]
#[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
pub use cloudsql_postgres as postgres;

/// mysql_async on Cloud SQL for MySQL, through the connector's local socket.
#[cfg(feature = "mysql")]
#[cfg_attr(docsrs, doc(cfg(feature = "mysql")))]
pub use cloudsql_mysql as mysql;

/// tiberius on Cloud SQL for SQL Server, with a bb8 pool (feature `bb8`).
#[cfg(feature = "mssql")]
#[cfg_attr(docsrs, doc(cfg(feature = "mssql")))]
pub use cloudsql_mssql as mssql;

/// sqlx on Cloud SQL: `sqlx::postgres` (feature `sqlx-postgres`) and `sqlx::mysql` (feature
/// `sqlx-mysql`).
#[cfg(any(feature = "sqlx-postgres", feature = "sqlx-mysql"))]
#[cfg_attr(docsrs, doc(cfg(any(feature = "sqlx-postgres", feature = "sqlx-mysql"))))]
pub use cloudsql_sqlx as sqlx;

/// A local Cloud SQL (Admin API, OAuth2 token endpoint, server-side proxy) for your tests.
#[cfg(feature = "emulator")]
#[cfg_attr(docsrs, doc(cfg(feature = "emulator")))]
pub use cloudsql_emulator as emulator;
