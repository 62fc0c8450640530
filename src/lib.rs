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

/// Every page of `docs/`, compiled as doctests so that no example in them can drift from the API.
#[cfg(doctest)]
mod guide {
    #[doc = include_str!("../docs/architecture.md")]
    struct Architecture;
    #[doc = include_str!("../docs/credentials.md")]
    struct Credentials;
    #[doc = include_str!("../docs/dns-names.md")]
    struct DnsNames;
    #[doc = include_str!("../docs/emulator.md")]
    struct Emulator;
    #[doc = include_str!("../docs/mssql.md")]
    struct Mssql;
    #[doc = include_str!("../docs/mysql.md")]
    struct Mysql;
    #[cfg(all(feature = "sea-orm", feature = "diesel-async"))]
    #[doc = include_str!("../docs/orm.md")]
    struct Orm;
    #[doc = include_str!("../docs/performance.md")]
    struct Performance;
    #[doc = include_str!("../docs/postgres.md")]
    struct Postgres;
    #[doc = include_str!("../docs/refresh.md")]
    struct Refresh;
    #[doc = include_str!("../docs/sqlx.md")]
    struct Sqlx;
    #[cfg(feature = "sql-data")]
    #[doc = include_str!("../docs/sql-data.md")]
    struct SqlData;
    #[cfg(feature = "telemetry")]
    #[doc = include_str!("../docs/telemetry.md")]
    struct Telemetry;
}
