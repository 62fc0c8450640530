#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub use cloudsql_core as core;
pub use cloudsql_core::{
    Connector, ConnectorBuilder, Credentials, DialOptions, Error, IpType, RefreshStrategy,
};

/// tokio-postgres, deadpool-postgres and bb8 on Cloud SQL (feature `postgres`).
#[cfg(feature = "postgres")]
pub use cloudsql_postgres as postgres;

/// mysql_async on Cloud SQL for MySQL (feature `mysql`).
#[cfg(feature = "mysql")]
pub use cloudsql_mysql as mysql;

/// tiberius on Cloud SQL for SQL Server (feature `mssql`).
#[cfg(feature = "mssql")]
pub use cloudsql_mssql as mssql;

/// sqlx on Cloud SQL (features `sqlx-postgres`, `sqlx-mysql`).
#[cfg(any(feature = "sqlx-postgres", feature = "sqlx-mysql"))]
pub use cloudsql_sqlx as sqlx;
