#![doc = include_str!("../README.md")]
//!
//! This is the workspace root (`cloudsql-workspace`, not published): it hosts the integration
//! tests, examples and benchmarks, and compiles the README and every `docs/` page as doctests.
//! Applications depend on the facade crate `cloudsql` (crates/cloudsql).
#![forbid(unsafe_code)]
#![warn(missing_docs)]

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
