#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![forbid(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]

mod admin_api;
mod backoff;
mod client_cert;
mod conn_info;
mod connector;
mod credentials;
mod dial;
mod dns_name;
pub mod driver;
mod engine;
mod error;
mod error_chain;
mod excerpt;
mod failover;
mod http;
mod instance_name;
mod instance_settings;
mod keys;
mod local_socket;
mod mdx;
pub mod metadata_exchange;
mod options;
mod random;
mod read_ahead;
mod refresh;
mod spare_buffers;
#[cfg(feature = "sql-data")]
#[cfg_attr(docsrs, doc(cfg(feature = "sql-data")))]
pub mod sql_data;
mod stream;
pub mod telemetry;
mod tls;

pub use connector::builder::{DEFAULT_UNIVERSE_DOMAIN, USER_AGENT_PREFIX};
pub use connector::{Connector, ConnectorBuilder};
pub use credentials::{
    ADMIN_SCOPE, AccessToken, Credentials, CredentialsError, ImpersonationBuilder, LOGIN_SCOPE, TokenFuture,
    TokenSource,
};
pub use dns_name::{DEFAULT_DNS_CACHE_TTL, DEFAULT_FAILOVER_PERIOD};
pub use engine::Engine;
pub use error::{ConnectStage, Error, ErrorKind};
pub use error_chain::ErrorChain;
pub use instance_name::InstanceConnectionName;
pub use keys::{MIN_RSA_KEY_BITS, RsaKey};
pub use local_socket::{ListenAddr, LocalSocket, LocalSocketBuilder, UnixSocketAddr};
pub use metadata_exchange::ClientProtocol;
pub use options::{DEFAULT_TIMEOUT, DialOptions, IpType, RefreshStrategy, SERVER_PROXY_PORT};
pub use stream::{AsyncStream, BoxedStream, CloudSqlStream};
