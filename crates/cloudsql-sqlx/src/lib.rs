#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod error;
pub use error::Error;

#[cfg(feature = "mysql")]
#[cfg_attr(docsrs, doc(cfg(feature = "mysql")))]
pub mod mysql;
#[cfg(feature = "postgres")]
#[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
pub mod postgres;
#[cfg(feature = "sea-orm")]
#[cfg_attr(docsrs, doc(cfg(feature = "sea-orm")))]
pub mod sea_orm;

pub use cloudsql_core;
pub use sqlx;

/// A dial for sqlx: a failure sqlx finds in its own configuration, before it sends anything,
/// starts no refresh.
#[cfg(any(feature = "postgres", feature = "mysql"))]
fn driver_dial<'a>(
    connector: &'a cloudsql_core::Connector,
    instance: &'a str,
    engine: cloudsql_core::Engine,
    options: &cloudsql_core::DialOptions,
) -> cloudsql_core::driver::DriverDial<'a> {
    cloudsql_core::driver::DriverDial::new(connector, instance, engine, options).skip_refresh_for(|e| {
        matches!(
            e.downcast_ref::<sqlx::Error>(),
            Some(sqlx::Error::Configuration(_))
        )
    })
}

/// Keeps the connector and its local socket alive until `pool` is closed or dropped (sqlx fires
/// its close event either way); the task holds no reference to the pool itself.
#[cfg(any(feature = "postgres", feature = "mysql"))]
fn keep_alive<DB: sqlx::Database>(
    pool: &sqlx::Pool<DB>,
    connector: &cloudsql_core::Connector,
    socket: &cloudsql_core::LocalSocket,
) {
    let closed = pool.close_event();
    let guard = (connector.clone(), socket.clone());
    tokio::spawn(async move {
        closed.await;
        drop(guard);
    });
}

/// Opens the pool. When the first connection fails because the local socket could not dial the
/// instance, the error is the connector's, as the socket recorded it; any other failure inside
/// sqlx starts a background refresh.
#[cfg(any(feature = "postgres", feature = "mysql"))]
async fn connect_pool<DB: sqlx::Database>(
    dial: &cloudsql_core::driver::DriverDial<'_>,
    socket: &cloudsql_core::LocalSocket,
    options: <DB::Connection as sqlx::Connection>::Options,
    pool_options: sqlx::pool::PoolOptions<DB>,
) -> Result<sqlx::Pool<DB>, Error> {
    let pool = dial
        .login_via(socket, pool_options.connect_with(options))
        .await
        .map_err(cloudsql_core::driver::LoginError::into_error::<Error>)?;
    keep_alive(&pool, dial.connector(), socket);
    Ok(pool)
}

/// Opens one connection, with the errors and refresh of [`connect_pool`].
#[cfg(any(feature = "postgres", feature = "mysql"))]
async fn connect_one<C: sqlx::Connection>(
    dial: &cloudsql_core::driver::DriverDial<'_>,
    socket: &cloudsql_core::LocalSocket,
    options: C::Options,
) -> Result<C, Error> {
    dial.login_via(socket, C::connect_with(&options))
        .await
        .map_err(cloudsql_core::driver::LoginError::into_error)
}
