//! # cloudsql-core
//!
//! The core of the Cloud SQL connector for Rust: it asks the Cloud SQL Admin API for an
//! instance's connect settings and a short-lived client certificate, keeps that certificate
//! fresh, and dials the instance's server-side proxy with TLS 1.3, verifying the server against
//! the instance's own CA and identity. Driver crates (`cloudsql-postgres`, …) plug the stream it
//! returns into each driver.
//!
//! ```no_run
//! use cloudsql_core::{Connector, DialOptions, IpType};
//!
//! # async fn run() -> Result<(), cloudsql_core::Error> {
//! let connector = Connector::builder().iam_authn(true).build()?;
//! let stream = connector
//!     .connect_with("my-project:us-central1:my-db", &DialOptions::new().ip_type(IpType::Private))
//!     .await?;
//! # drop(stream); Ok(()) }
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]

mod admin_api;
mod backoff;
mod capped_body;
mod conn_info;
mod connector;
mod credentials;
mod dial;
mod dns_name;
mod engine;
mod error;
mod error_chain;
mod excerpt;
mod http;
mod instance_name;
mod keys;
mod local_socket;
mod mdx;
mod options;
mod refresh;
mod stream;
mod tls;

pub use connector::builder::{DEFAULT_UNIVERSE_DOMAIN, USER_AGENT_PREFIX};
pub use connector::{Connector, ConnectorBuilder};
pub use credentials::{
    ADMIN_SCOPE, AccessToken, Credentials, CredentialsError, LOGIN_SCOPE, TokenFuture, TokenSource,
};
pub use dns_name::DEFAULT_DNS_CACHE_TTL;
pub use engine::Engine;
pub use error::{ConnectStage, Error, ErrorKind};
pub use error_chain::ErrorChain;
pub use instance_name::InstanceConnectionName;
pub use keys::{MIN_RSA_KEY_BITS, RsaKey};
pub use local_socket::{LocalSocket, LocalSocketBuilder};
pub use mdx::ClientProtocol;
pub use options::{DEFAULT_TIMEOUT, DialOptions, IpType, RefreshStrategy, SERVER_PROXY_PORT};
pub use stream::{AsyncStream, BoxedStream, CloudSqlStream};
