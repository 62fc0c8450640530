//! A bb8 connection manager whose every new connection goes through the connector.

use cloudsql_core::{Connector, DialOptions};
use tokio_postgres::{Client, Config};

use crate::Error;
use crate::connect::connect_with;

/// Opens pooled tokio-postgres connections to one instance through the connector.
///
/// A new connection whose PostgreSQL startup or login fails starts a paced background refresh
/// of the instance (see [`connect`](crate::connect)); bb8 gets the error as is.
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// use cloudsql_postgres::bb8::CloudSqlConnectionManager;
/// let connector = cloudsql_core::Connector::builder().build()?;
/// let mut config = tokio_postgres::Config::new();
/// config.user("app").password("secret").dbname("appdb");
/// let manager = CloudSqlConnectionManager::new(connector, "proj:region:inst", config);
/// let pool = bb8::Pool::builder().max_size(16).build(manager).await?;
/// let client = pool.get().await?;
/// client.query_one("SELECT 1", &[]).await?;
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
    type Connection = Client;
    type Error = Error;

    async fn connect(&self) -> Result<Client, Error> {
        let (client, connection) =
            connect_with(&self.connector, &self.instance, &self.config, &self.options).await?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "pooled PostgreSQL connection ended");
            }
        });
        Ok(client)
    }

    async fn is_valid(&self, client: &mut Client) -> Result<(), Error> {
        client.simple_query("").await?;
        Ok(())
    }

    fn has_broken(&self, client: &mut Client) -> bool {
        client.is_closed()
    }
}
