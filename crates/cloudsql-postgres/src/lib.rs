//! # cloudsql-postgres
//!
//! tokio-postgres on Google Cloud SQL through the [`cloudsql_core`] connector: the driver runs
//! over the connector's TLS 1.3 stream (its `connect_raw` hook), so there is no proxy process and
//! no local socket. Pools: deadpool-postgres (feature `deadpool`) and bb8 (feature `bb8`), each
//! opening every new connection through the connector.
//!
//! Connecting to an instance that is not PostgreSQL fails with
//! [`cloudsql_core::Error::IncompatibleDriver`] before any database bytes are sent.
#![forbid(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod connect;
mod error;

#[cfg(feature = "bb8")]
#[cfg_attr(docsrs, doc(cfg(feature = "bb8")))]
pub mod bb8;
#[cfg(feature = "deadpool")]
#[cfg_attr(docsrs, doc(cfg(feature = "deadpool")))]
pub mod deadpool;

pub use cloudsql_core;
pub use connect::{CloudSqlConnection, connect, connect_with};
pub use error::{Error, connector_error};
pub use tokio_postgres;
