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
