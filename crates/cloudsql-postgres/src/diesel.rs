//! [diesel-async](https://docs.rs/diesel-async) on Cloud SQL for PostgreSQL: `AsyncPgConnection`s
//! over the connector's TLS 1.3 stream, one at a time or in diesel-async's deadpool.
//!
//! diesel-async opens its connections from a URL, which cannot name a Cloud SQL instance, but
//! its pool manager takes a `custom_setup` hook: [`manager`] fills it with [`connect_with`],
//! which connects tokio-postgres through the connector ([`crate::connect_with`]) and hands the
//! client to `AsyncPgConnection::try_from`. The connection's driver task runs on its own, so
//! `LISTEN`/`NOTIFY` notifications are not delivered to diesel-async.
//!
//! diesel's `ConnectionError` has no variant that carries another error, except
//! `CouldntSetupConfiguration` through `diesel::result::Error::QueryBuilderError`: a failed
//! connect comes back as that, holding this crate's [`Error`] (its text is exactly
//! that error's). [`cloudsql_error`] and [`connector_error`] find it again inside diesel's,
//! diesel-async's and deadpool's errors, whose `source()` chains skip it.

use std::error::Error as StdError;

use ::diesel::ConnectionError;
use ::diesel::result::Error as DieselError;
use cloudsql_core::{Connector, DialOptions};
use diesel_async::AsyncPgConnection;
use diesel_async::pooled_connection::deadpool::{Pool, PoolBuilder, PoolError as DeadpoolError};
use diesel_async::pooled_connection::{
    AsyncDieselConnectionManager, ManagerConfig, PoolError, SetupCallback,
};
use futures_util::FutureExt;
use tokio_postgres::Config;

use crate::Error;

/// Opens one `AsyncPgConnection` to `instance` through the connector.
///
/// `config` supplies the user, password, database and session options, as for
/// [`crate::connect`]; with IAM authn on the connector, give the IAM principal as the user and
/// no password.
///
/// ```no_run
/// use diesel_async::RunQueryDsl;
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let connector = cloudsql_core::Connector::builder().build()?;
/// let mut config = tokio_postgres::Config::new();
/// config.user("app").password("secret").dbname("appdb");
/// let mut conn = cloudsql_postgres::diesel::connect(&connector, "proj:region:inst", &config).await?;
/// diesel::sql_query("SELECT 1").execute(&mut conn).await?;
/// # Ok(()) }
/// ```
pub async fn connect(
    connector: &Connector,
    instance: &str,
    config: &Config,
) -> Result<AsyncPgConnection, ConnectionError> {
    connect_with(connector, instance, config, &DialOptions::new()).await
}

/// [`connect`] with per-connection options (IP type, IAM authn, timeout).
pub async fn connect_with(
    connector: &Connector,
    instance: &str,
    config: &Config,
    options: &DialOptions,
) -> Result<AsyncPgConnection, ConnectionError> {
    let (client, connection) = crate::connect_with(connector, instance, config, options)
        .await
        .map_err(connection_error)?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "diesel-async PostgreSQL connection ended");
        }
    });
    AsyncPgConnection::try_from(client).await
}

/// A diesel-async connection manager whose every connection goes through the connector to
/// `instance`, with per-connection `options`. Pass it to a diesel-async pool
/// (`Pool::builder(manager)`); [`pool_builder`] does that for deadpool.
pub fn manager(
    connector: Connector,
    instance: &str,
    config: Config,
    options: DialOptions,
) -> AsyncDieselConnectionManager<AsyncPgConnection> {
    let mut manager_config = ManagerConfig::default();
    manager_config.custom_setup = setup(connector, instance.to_owned(), config, options);
    // The URL is only handed to `custom_setup`, which does not read it.
    AsyncDieselConnectionManager::new_with_config(instance, manager_config)
}

/// The `custom_setup` hook: every new pooled connection through the connector.
fn setup(
    connector: Connector,
    instance: String,
    config: Config,
    options: DialOptions,
) -> SetupCallback<AsyncPgConnection> {
    Box::new(move |_url: &str| {
        let (connector, instance, config, options) = (
            connector.clone(),
            instance.clone(),
            config.clone(),
            options.clone(),
        );
        async move { connect_with(&connector, &instance, &config, &options).await }.boxed()
    })
}

/// A diesel-async deadpool [`PoolBuilder`] for `instance`; set its size, then `build()`.
///
/// A failed connect comes back from `pool.get()` at once as
/// `PoolError::Backend(diesel_async::pooled_connection::PoolError::ConnectionError(..))`;
/// [`connector_error`] finds the connector's error inside it.
///
/// ```no_run
/// use diesel_async::RunQueryDsl;
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let connector = cloudsql_core::Connector::builder().build()?;
/// let mut config = tokio_postgres::Config::new();
/// config.user("app").password("secret").dbname("appdb");
/// let pool = cloudsql_postgres::diesel::pool_builder(connector, "proj:region:inst", config)
///     .max_size(16)
///     .build()?;
/// let mut conn = pool.get().await?;
/// diesel::sql_query("SELECT 1").execute(&mut conn).await?;
/// # Ok(()) }
/// ```
pub fn pool_builder(connector: Connector, instance: &str, config: Config) -> PoolBuilder<AsyncPgConnection> {
    pool_builder_with(connector, instance, config, DialOptions::new())
}

/// [`pool_builder`] with per-connection options (IP type, IAM authn, timeout) for every
/// connection the pool opens.
///
/// ```no_run
/// use cloudsql_core::DialOptions;
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let connector = cloudsql_core::Connector::builder().build()?;
/// // IAM database authn: the principal as the user, no password.
/// let mut config = tokio_postgres::Config::new();
/// config.user("app@my-project.iam.gserviceaccount.com").dbname("appdb");
/// let options = DialOptions::new().iam_authn(true);
/// let pool = cloudsql_postgres::diesel::pool_builder_with(connector, "proj:region:inst", config, options)
///     .max_size(16)
///     .build()?;
/// # let _ = pool; Ok(()) }
/// ```
pub fn pool_builder_with(
    connector: Connector,
    instance: &str,
    config: Config,
    options: DialOptions,
) -> PoolBuilder<AsyncPgConnection> {
    Pool::builder(manager(connector, instance, config, options))
}

/// This crate's [`Error`] inside `error`: a diesel `ConnectionError` from
/// [`connect`], a diesel-async `PoolError`, a deadpool `PoolError` from `pool.get()`, or any
/// error whose source chain holds one of these.
///
/// The login's own failure is there too (`Error::Postgres`, with the server's SQLSTATE).
pub fn cloudsql_error<'a>(error: &'a (dyn StdError + 'static)) -> Option<&'a Error> {
    let mut next = Some(error);
    while let Some(e) = next {
        if let Some(found) = e.downcast_ref::<Error>() {
            return Some(found);
        }
        next = if let Some(pool) = e.downcast_ref::<DeadpoolError>() {
            match pool {
                DeadpoolError::Backend(inner) => Some(inner),
                _ => None,
            }
        } else if let Some(pool) = e.downcast_ref::<PoolError>() {
            match pool {
                PoolError::ConnectionError(inner) => Some(inner),
                PoolError::QueryError(inner) => Some(inner),
            }
        } else if let Some(ConnectionError::CouldntSetupConfiguration(inner)) =
            e.downcast_ref::<ConnectionError>()
        {
            Some(inner)
        } else if let Some(DieselError::QueryBuilderError(inner)) = e.downcast_ref::<DieselError>() {
            Some(&**inner)
        } else {
            e.source()
        };
    }
    None
}

/// The connector error inside `error` (see [`cloudsql_error`]), if the connector is what
/// failed: an unknown instance, the Admin API refusing, a failed TLS handshake, a closed
/// connector.
///
/// ```
/// # fn check(error: &diesel_async::pooled_connection::deadpool::PoolError) {
/// if let Some(cloudsql_core::Error::AdminApi { status: 404, .. }) =
///     cloudsql_postgres::diesel::connector_error(error)
/// {
///     eprintln!("no such Cloud SQL instance");
/// }
/// # }
/// ```
pub fn connector_error<'a>(error: &'a (dyn StdError + 'static)) -> Option<&'a cloudsql_core::Error> {
    cloudsql_error(error).and_then(Error::as_connector)
}

/// This crate's error as a diesel `ConnectionError` that keeps it (see the module docs).
fn connection_error(error: Error) -> ConnectionError {
    ConnectionError::CouldntSetupConfiguration(DieselError::QueryBuilderError(Box::new(error)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connector_errors_travel_inside_diesel_and_pool_errors() {
        let error = connection_error(Error::Connector(cloudsql_core::Error::Closed));
        assert_eq!(error.to_string(), cloudsql_core::Error::Closed.to_string());
        assert!(matches!(
            connector_error(&error),
            Some(cloudsql_core::Error::Closed)
        ));
        let pooled = DeadpoolError::Backend(PoolError::ConnectionError(error));
        assert!(matches!(
            connector_error(&pooled),
            Some(cloudsql_core::Error::Closed)
        ));
        let other = DeadpoolError::Backend(PoolError::ConnectionError(ConnectionError::BadConnection(
            "refused".to_owned(),
        )));
        assert!(cloudsql_error(&other).is_none());
    }
}
