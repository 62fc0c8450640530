#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod connect;
mod error;
#[cfg(feature = "deadpool")]
mod failed_stream;

#[cfg(feature = "bb8")]
#[cfg_attr(docsrs, doc(cfg(feature = "bb8")))]
pub mod bb8;
#[cfg(feature = "deadpool")]
#[cfg_attr(docsrs, doc(cfg(feature = "deadpool")))]
pub mod deadpool;
#[cfg(feature = "diesel-async")]
#[cfg_attr(docsrs, doc(cfg(feature = "diesel-async")))]
pub mod diesel;

pub use cloudsql_core;
pub use connect::{CloudSqlConnection, connect, connect_with};
/// deadpool-postgres, re-exported so that an application needs no dependency of its own on it
/// (`cloudsql_postgres::deadpool_postgres::Pool`).
#[cfg(feature = "deadpool")]
#[cfg_attr(docsrs, doc(cfg(feature = "deadpool")))]
pub use deadpool_postgres;
pub use error::{Error, connector_error};
pub use tokio_postgres;
