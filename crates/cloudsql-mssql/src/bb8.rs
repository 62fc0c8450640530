//! A bb8 connection manager for tiberius whose every new connection goes through the connector.
//!
//! The published tiberius pool crates pin an older tiberius and hard-code a TCP stream, so this
//! crate carries its own.

use cloudsql_core::{Connector, DialOptions};
use tiberius::Config;

use crate::{CloudSqlClient, Error, connect_with};

/// Opens pooled tiberius connections to one instance through the connector.
///
/// A new connection whose TDS login fails starts a paced background refresh of the instance
/// (see [`connect`](crate::connect)); bb8 gets the error as is.
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// use cloudsql_mssql::bb8::CloudSqlConnectionManager;
/// let connector = cloudsql_core::Connector::builder().build()?;
/// let mut config = tiberius::Config::new();
/// config.authentication(tiberius::AuthMethod::sql_server("sqlserver", "secret"));
/// let manager = CloudSqlConnectionManager::new(connector, "proj:region:inst", config);
/// let pool = bb8::Pool::builder().max_size(16).build(manager).await?;
/// let mut client = pool.get().await?;
/// client.simple_query("SELECT 1").await?.into_row().await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct CloudSqlConnectionManager {
    connector: Connector,
    instance: String,
    config: Config,
    options: DialOptions,
}

impl CloudSqlConnectionManager {
    /// A manager for `instance` with the connector's default options.
    pub fn new(connector: Connector, instance: impl Into<String>, config: Config) -> Self {
        Self {
            connector,
            instance: instance.into(),
            config,
            options: DialOptions::new(),
        }
    }

    /// Uses these per-connection options for every pooled connection.
    #[must_use]
    pub fn options(mut self, options: DialOptions) -> Self {
        self.options = options;
        self
    }
}

impl bb8::ManageConnection for CloudSqlConnectionManager {
    type Connection = CloudSqlClient;
    type Error = Error;

    async fn connect(&self) -> Result<CloudSqlClient, Error> {
        connect_with(
            &self.connector,
            &self.instance,
            self.config.clone(),
            &self.options,
        )
        .await
    }

    async fn is_valid(&self, client: &mut CloudSqlClient) -> Result<(), Error> {
        client.simple_query("SELECT 1").await?.into_row().await?;
        Ok(())
    }

    fn has_broken(&self, _client: &mut CloudSqlClient) -> bool {
        false
    }
}
