//! [SeaORM](https://docs.rs/sea-orm) on Cloud SQL for PostgreSQL: a `DatabaseConnection` on the
//! [`PgPool`](sqlx::postgres::PgPool) this crate builds, so every connection goes through the
//! connector.
//!
//! SeaORM runs on sqlx 0.8, and `SqlxPostgresConnector::from_sqlx_postgres_pool` takes a pool
//! built elsewhere: [`connect`] builds it with [`postgres::pool`](crate::postgres::pool) and
//! hands it over. Errors are SeaORM's own [`DbErr`], so `?` works in SeaORM code; a failure of
//! the connector itself stays inside it, typed, for [`connector_error`].

use std::error::Error as StdError;

use ::sea_orm::{DatabaseConnection, DbErr, RuntimeErr, SqlxPostgresConnector};
use cloudsql_core::{Connector, DialOptions};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use crate::Error;

/// A SeaORM `DatabaseConnection` whose pool opens every connection through the connector.
///
/// `options` carries the user, password and database (its host and port are replaced by the
/// connector's local socket); `pool_options` the pool's size and timeouts. A first connection
/// is opened at once, as with [`postgres::pool`](crate::postgres::pool), whose notes on later
/// connections and background refreshes hold here too. With IAM authn on the connector
/// (`Connector::builder().iam_authn(true)`), give the IAM principal as the user and no password.
///
/// The error is the one SeaORM's `Database::connect` would give,
/// `DbErr::Conn(RuntimeErr::SqlxError(..))`: sqlx's own error when the login fails, and when the
/// connector cannot reach the instance (an unknown instance, the Admin API refusing, a failed
/// TLS handshake) `sqlx::Error::Io` holding the connector's [`cloudsql_core::Error`], whose text
/// names the whole cause. Get that typed error back with [`connector_error`].
///
/// ```no_run
/// use sea_orm::ConnectionTrait;
/// use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let connector = cloudsql_core::Connector::builder().build()?;
/// let options = PgConnectOptions::new().username("app").password("secret").database("appdb");
/// let db = cloudsql_sqlx::sea_orm::connect(
///     &connector,
///     "my-project:us-central1:my-db",
///     options,
///     PgPoolOptions::new().max_connections(8),
/// )
/// .await?;
/// db.execute_unprepared("SELECT 1").await?;
/// # Ok(()) }
/// ```
pub async fn connect(
    connector: &Connector,
    instance: &str,
    options: PgConnectOptions,
    pool_options: PgPoolOptions,
) -> Result<DatabaseConnection, DbErr> {
    connect_with(connector, instance, options, pool_options, &DialOptions::new()).await
}

/// [`connect`] with per-connection options (IP type, IAM authn, timeout) for every connection
/// of the pool.
///
/// ```no_run
/// use cloudsql_core::{DialOptions, IpType};
/// use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let connector = cloudsql_core::Connector::builder().build()?;
/// // IAM database authn: the principal as the user, no password.
/// let options = PgConnectOptions::new()
///     .username("app@my-project.iam.gserviceaccount.com")
///     .database("appdb");
/// let dial = DialOptions::new().ip_type(IpType::Private).iam_authn(true);
/// let db = cloudsql_sqlx::sea_orm::connect_with(
///     &connector,
///     "my-project:us-central1:my-db",
///     options,
///     PgPoolOptions::new(),
///     &dial,
/// )
/// .await?;
/// # let _ = db; Ok(()) }
/// ```
pub async fn connect_with(
    connector: &Connector,
    instance: &str,
    options: PgConnectOptions,
    pool_options: PgPoolOptions,
    dial: &DialOptions,
) -> Result<DatabaseConnection, DbErr> {
    let pool = crate::postgres::pool_with(connector, instance, options, pool_options, dial)
        .await
        .map_err(db_err)?;
    Ok(SqlxPostgresConnector::from_sqlx_postgres_pool(pool))
}

/// The connector error inside `error`: a [`DbErr`] from [`connect`], or any error whose source
/// chain holds a [`crate::Error`] or a `sqlx::Error::Io` built as [`connect`] builds it.
///
/// ```
/// # fn check(error: &sea_orm::DbErr) {
/// if let Some(cloudsql_core::Error::AdminApi { status: 404, .. }) =
///     cloudsql_sqlx::sea_orm::connector_error(error)
/// {
///     eprintln!("no such Cloud SQL instance");
/// }
/// # }
/// ```
pub fn connector_error<'a>(error: &'a (dyn StdError + 'static)) -> Option<&'a cloudsql_core::Error> {
    let mut next = Some(error);
    while let Some(e) = next {
        if let Some(found) = e.downcast_ref::<cloudsql_core::Error>() {
            return Some(found);
        }
        if let Some(found) = e.downcast_ref::<Error>() {
            return found.as_connector();
        }
        // `io::Error::source` skips the error it wraps; look inside it.
        if let Some(inner) = e
            .downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::get_ref)
            && let Some(found) = connector_error(inner)
        {
            return Some(found);
        }
        next = e.source();
    }
    None
}

/// This crate's error as SeaORM's `Database::connect` would report it.
fn db_err(error: Error) -> DbErr {
    let sqlx_error = match error {
        Error::Sqlx(e) => e,
        connector => sqlx::Error::Io(std::io::Error::other(connector)),
    };
    DbErr::Conn(RuntimeErr::SqlxError(sqlx_error))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connector_errors_travel_inside_sea_orm_errors() {
        let error = db_err(Error::Connector(cloudsql_core::Error::Closed));
        assert!(matches!(
            connector_error(&error),
            Some(cloudsql_core::Error::Closed)
        ));
        assert!(
            error
                .to_string()
                .contains(&cloudsql_core::Error::Closed.to_string()),
            "{error}"
        );
        let login = db_err(Error::Sqlx(sqlx::Error::PoolTimedOut));
        assert!(connector_error(&login).is_none());
        assert!(matches!(
            login,
            DbErr::Conn(RuntimeErr::SqlxError(sqlx::Error::PoolTimedOut))
        ));
    }
}
