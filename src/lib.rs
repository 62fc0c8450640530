//! # cloudsql
//!
//! The Cloud SQL connector for Rust: secure, IAM-authorized connections to Google Cloud SQL
//! from the drivers Rust programs already use. This facade re-exports the workspace crates:
//!
//! - [`core`]: the connector itself (certificate refresh, Admin API, TLS 1.3 dialing);
//! - [`postgres`] (feature `postgres`): tokio-postgres, deadpool-postgres and bb8.
//!
//! See the repository README for a two-command quickstart against the bundled emulator.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub use cloudsql_core as core;
pub use cloudsql_core::{
    Connector, ConnectorBuilder, Credentials, DialOptions, Error, IpType, RefreshStrategy,
};

#[cfg(feature = "postgres")]
pub use cloudsql_postgres as postgres;
