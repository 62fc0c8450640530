#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![forbid(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]
// HTTP handlers return a ready `Response` as their error, as axum handlers do.
#![allow(clippy::result_large_err)]

mod admin_api;
mod ca;
mod config;
mod control_api;
mod counters;
mod dns;
mod emulator;
mod error;
mod faults;
mod hex;
mod iam_credentials;
mod instance;
mod listeners;
mod metadata;
mod naming;
mod oauth;
mod oversized;
mod proxy;
mod sql_data;
mod sts;
mod tds_responder;
mod unpoisoned;

pub use config::{CaMode, DnsRecord, FileConfig, IamUser, InstanceConfig, MetadataConfig, SqlLogin};
pub use counters::{Counters, MdxRecord, RequestInfo};
pub use emulator::Emulator;
pub(crate) use emulator::State;
pub use error::{DnsRecordError, Error};
pub use faults::{FaultState, Faults, ServerCertFault, TokenFaultState, TokenFaults};
pub use instance::{Instance, PROXY_PORT};
pub use sql_data::{SqlDataFaultState, SqlDataFaults, SqlDataServer};
