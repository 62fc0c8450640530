//! # cloudsql-emulator
//!
//! A local, faithful stand-in for Google Cloud SQL, for testing applications offline:
//!
//! - the **Admin API** (`connectSettings`, `generateEphemeralCert`, under `v1beta4` and `v1`)
//!   on loopback HTTP, with Google-shaped errors and a bearer-token check;
//! - an **OAuth2 token endpoint** (JWT-bearer and refresh-token grants) and the credentials
//!   files that point at it, **Workload Identity Federation** (an OIDC identity provider and STS's
//!   token exchange, `POST /v1/token`), **service-account impersonation** (IAM Credentials'
//!   `generateAccessToken`), a GCE **metadata server** (`GCE_METADATA_HOST`), and a small
//!   **DNS server** for instance DNS names (TXT and CNAME records);
//! - per instance, a **server-side proxy** on its own loopback address and port 3307: TLS 1.3,
//!   a required client certificate, a server certificate per CA mode, then a relay to a real
//!   database, with automatic IAM database authentication enforced for real;
//! - a **control API** under `/emulator/v1/` on the Admin API's port (list instances, read and
//!   reset counters, set and clear faults, rotate CAs, stop and start instances, edit DNS
//!   records), so test suites in any language can drive the `cloudsql-emulator` binary; the
//!   repository's `docs/emulator.md` documents it and the binary's config file;
//! - for SQL Server, which cannot run on the test machines, a small **TDS test responder**
//!   (`InstanceConfig::sql_server`): not a database, just enough of the protocol for tiberius to
//!   log in with a SQL login, run `SELECT 1` / `SELECT @@VERSION`, and get real errors.
//!
//! ```no_run
//! use cloudsql_emulator::{Emulator, InstanceConfig};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let emulator = Emulator::start().await?;
//! let instance = emulator
//!     .add_instance(InstanceConfig::new("proj:us-central1:pg", "POSTGRES_15", "127.0.0.1:5432".parse()?))
//!     .await?;
//! println!("Admin API at {}, proxy at {:?}:3307", emulator.admin_api_url(), instance.public_ip());
//! # Ok(()) }
//! ```
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
mod iam_credentials;
mod instance;
mod listeners;
mod metadata;
mod naming;
mod oauth;
mod oversized;
mod proxy;
mod sts;
mod tds_responder;

pub use config::{CaMode, DnsRecord, FileConfig, IamUser, InstanceConfig, MetadataConfig, SqlLogin};
pub use counters::{Counters, MdxRecord, RequestInfo};
pub use emulator::Emulator;
pub(crate) use emulator::State;
pub use error::Error;
pub use faults::{FaultState, Faults, ServerCertFault, TokenFaultState, TokenFaults};
pub use instance::{Instance, PROXY_PORT};
