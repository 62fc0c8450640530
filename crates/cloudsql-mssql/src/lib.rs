#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(feature = "bb8")]
#[cfg_attr(docsrs, doc(cfg(feature = "bb8")))]
pub mod bb8;
mod error;

use cloudsql_core::driver::DriverDial;
use cloudsql_core::{CloudSqlStream, Connector, DialOptions, Engine};
use tiberius::{Client, Config, EncryptionLevel};
use tokio_util::compat::{Compat, TokioAsyncWriteCompatExt};

pub use cloudsql_core;
pub use error::Error;
pub use tiberius;

/// A tiberius client over the connector's stream.
pub type CloudSqlClient = Client<Compat<CloudSqlStream>>;

/// Connects to a Cloud SQL for SQL Server instance with the connector's defaults.
///
/// `config` supplies the authentication, database and application name; its host and port are
/// ignored (the connector dials the instance) and its encryption is set to
/// `EncryptionLevel::NotSupported` because the connector's TLS 1.3 tunnel already encrypts.
///
/// If the TDS login fails after the connector handed over its stream (a refused client
/// certificate, a server that drops the session, but also a wrong password), the error is
/// returned as tiberius reported it and the connector starts a paced background refresh of the
/// instance's certificate and settings ([`Connector::force_refresh`]); later connects do not
/// wait for it while the current certificate is valid.
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let connector = cloudsql_core::Connector::builder().build()?;
/// let mut config = tiberius::Config::new();
/// config.authentication(tiberius::AuthMethod::sql_server("sqlserver", "secret"));
/// let mut client = cloudsql_mssql::connect(&connector, "proj:region:inst", config).await?;
/// client.simple_query("SELECT 1").await?.into_row().await?;
/// # Ok(()) }
/// ```
pub async fn connect(connector: &Connector, instance: &str, config: Config) -> Result<CloudSqlClient, Error> {
    connect_with(connector, instance, config, &DialOptions::new()).await
}

/// [`connect`] with per-connection options (IP type, timeout). A failed login starts a paced
/// background refresh, as with [`connect`].
///
/// ```no_run
/// use std::time::Duration;
/// use cloudsql_core::{DialOptions, IpType};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let connector = cloudsql_core::Connector::builder().build()?;
/// let mut config = tiberius::Config::new();
/// config.authentication(tiberius::AuthMethod::sql_server("sqlserver", "secret"));
/// let options = DialOptions::new().ip_type(IpType::Private).timeout(Duration::from_secs(10));
/// let mut client = cloudsql_mssql::connect_with(&connector, "proj:region:inst", config, &options).await?;
/// client.simple_query("SELECT 1").await?.into_row().await?;
/// # Ok(()) }
/// ```
pub async fn connect_with(
    connector: &Connector,
    instance: &str,
    mut config: Config,
    options: &DialOptions,
) -> Result<CloudSqlClient, Error> {
    let dial = DriverDial::new(connector, instance, Engine::SqlServer, options);
    let stream = dial.connect().await?;
    config.encryption(EncryptionLevel::NotSupported);
    tracing::debug!(instance, "starting TDS session over the connector stream");
    Ok(dial.login(Client::connect(config, stream.compat_write())).await?)
}
