//! A deadpool-postgres manager whose every new connection goes through the connector, so each
//! one uses the instance's current certificate.

use cloudsql_core::{Connector, DialOptions};
use deadpool_postgres::{Connect, Manager, ManagerConfig, Pool, PoolBuilder, PoolError, Runtime};
use futures_util::future::BoxFuture;
use tokio::task::JoinHandle;
use tokio_postgres::{Client, Config};

use crate::Error;
use crate::connect::connect_with;
use crate::failed_stream::into_postgres_error;

/// deadpool-postgres' connect hook, backed by the connector.
///
/// A pooled connection whose PostgreSQL startup or login fails starts a paced background
/// refresh of the instance (see [`connect`](crate::connect)); the pool gets the error as is.
#[derive(Debug, Clone)]
pub struct CloudSqlConnect {
    connector: Connector,
    instance: String,
    options: DialOptions,
}

impl CloudSqlConnect {
    /// Connects every pooled connection to `instance` through `connector`.
    pub fn new(connector: Connector, instance: impl Into<String>, options: DialOptions) -> Self {
        Self {
            connector,
            instance: instance.into(),
            options,
        }
    }
}

impl Connect for CloudSqlConnect {
    fn connect(
        &self,
        pg_config: &Config,
    ) -> BoxFuture<'_, Result<(Client, JoinHandle<()>), tokio_postgres::Error>> {
        let pg_config = pg_config.clone();
        Box::pin(async move {
            match connect_with(&self.connector, &self.instance, &pg_config, &self.options).await {
                Ok((client, connection)) => {
                    let handle = tokio::spawn(async move {
                        if let Err(e) = connection.await {
                            tracing::debug!(error = %e, "pooled PostgreSQL connection ended");
                        }
                    });
                    Ok((client, handle))
                }
                Err(Error::Postgres(e)) => Err(e),
                Err(other) => Err(into_postgres_error(&pg_config, other).await),
            }
        })
    }
}

/// A deadpool-postgres [`Manager`] for `instance`.
pub fn manager(
    connector: Connector,
    instance: &str,
    pg_config: Config,
    options: DialOptions,
    manager_config: ManagerConfig,
) -> Manager {
    Manager::from_connect(
        pg_config,
        CloudSqlConnect::new(connector, instance, options),
        manager_config,
    )
}

/// A deadpool-postgres [`PoolBuilder`] for `instance`; set its size and timeouts, then `build()`.
///
/// Timeouts need a runtime: `.runtime(deadpool_postgres::Runtime::Tokio1)`. A connection whose
/// login fails starts a paced background refresh (see [`connect`](crate::connect)).
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let connector = cloudsql_core::Connector::builder().build()?;
/// let mut config = tokio_postgres::Config::new();
/// config.user("app").password("secret").dbname("appdb");
/// let pool = cloudsql_postgres::deadpool::pool_builder(connector, "proj:region:inst", config)
///     .max_size(16)
///     .build()?;
/// let client = pool.get().await?;
/// client.query_one("SELECT 1", &[]).await?;
/// # Ok(()) }
/// ```
pub fn pool_builder(connector: Connector, instance: &str, pg_config: Config) -> PoolBuilder {
    pool_builder_with(connector, instance, pg_config, DialOptions::new())
}

/// [`pool_builder`] with per-connection options (IP type, IAM authn, timeout) for every
/// connection the pool opens.
///
/// ```no_run
/// use cloudsql_core::{DialOptions, IpType};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let connector = cloudsql_core::Connector::builder().build()?;
/// let mut config = tokio_postgres::Config::new();
/// config.user("app@my-project.iam").dbname("appdb");
/// let options = DialOptions::new().ip_type(IpType::Private).iam_authn(true);
/// let pool = cloudsql_postgres::deadpool::pool_builder_with(connector, "proj:region:inst", config, options)
///     .max_size(16)
///     .build()?;
/// # let _ = pool; Ok(()) }
/// ```
pub fn pool_builder_with(
    connector: Connector,
    instance: &str,
    pg_config: Config,
    options: DialOptions,
) -> PoolBuilder {
    let manager_config = ManagerConfig {
        recycling_method: deadpool_postgres::RecyclingMethod::Fast,
    };
    Pool::builder(manager(connector, instance, pg_config, options, manager_config))
}

/// A ready deadpool-postgres [`Pool`] for `instance`, with deadpool's default size and no
/// timeouts: it has opened its first connection, so an unknown instance, an instance running
/// another engine or a refused login fails here, with this crate's [`Error`], instead of at the
/// first checkout. For other sizes and timeouts use [`pool_builder`].
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let connector = cloudsql_core::Connector::builder().build()?;
/// let mut config = tokio_postgres::Config::new();
/// config.user("app").password("secret").dbname("appdb");
/// let pool = cloudsql_postgres::deadpool::pool(connector, "proj:region:inst", config).await?;
/// let client = pool.get().await?;
/// client.query_one("SELECT 1", &[]).await?;
/// # Ok(()) }
/// ```
pub async fn pool(connector: Connector, instance: &str, pg_config: Config) -> Result<Pool, Error> {
    pool_with(connector, instance, pg_config, DialOptions::new()).await
}

/// [`pool`] with per-connection options (IP type, IAM authn, timeout) for every connection the
/// pool opens.
///
/// ```no_run
/// use cloudsql_core::{DialOptions, IpType};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let connector = cloudsql_core::Connector::builder().build()?;
/// let mut config = tokio_postgres::Config::new();
/// config.user("app@my-project.iam").dbname("appdb");
/// let options = DialOptions::new().ip_type(IpType::Private).iam_authn(true);
/// let pool = cloudsql_postgres::deadpool::pool_with(connector, "proj:region:inst", config, options).await?;
/// # let _ = pool; Ok(()) }
/// ```
pub async fn pool_with(
    connector: Connector,
    instance: &str,
    pg_config: Config,
    options: DialOptions,
) -> Result<Pool, Error> {
    let pool = pool_builder_with(connector, instance, pg_config, options)
        .runtime(Runtime::Tokio1)
        .build()
        .map_err(|_| Error::Pool(PoolError::NoRuntimeSpecified))?;
    // The first connection goes back to the pool as it is dropped.
    drop(pool.get().await.map_err(pool_error)?);
    Ok(pool)
}

/// A failed checkout as this crate's error: the connector's or the login's when that is what
/// failed, deadpool's otherwise.
fn pool_error(error: PoolError) -> Error {
    match error {
        PoolError::Backend(e) => match crate::connector_error(&e) {
            Some(connector) => Error::Connector(connector.clone()),
            None => Error::Postgres(e),
        },
        other => Error::Pool(other),
    }
}
