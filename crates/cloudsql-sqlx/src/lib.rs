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

/// sqlx failed on a connection the local socket relayed: the connector could not see why, so
/// it refreshes in the background (paced; connects keep using a valid certificate). sqlx's own
/// configuration errors do not count.
#[cfg(any(feature = "postgres", feature = "mysql"))]
async fn refresh_after_failure(connector: &cloudsql_core::Connector, instance: &str, error: &sqlx::Error) {
    if matches!(error, sqlx::Error::Configuration(_)) {
        return;
    }
    tracing::debug!(
        instance,
        error = error as &dyn std::error::Error,
        "login failed; refreshing in the background"
    );
    if let Err(e) = connector.force_refresh(instance).await {
        tracing::debug!(
            instance,
            error = &e as &dyn std::error::Error,
            "could not start a refresh"
        );
    }
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
/// instance (since `failed_dials`), the error is the connector's, as the socket recorded it;
/// any other failure inside sqlx starts a background refresh.
#[cfg(any(feature = "postgres", feature = "mysql"))]
async fn connect_pool<DB: sqlx::Database>(
    connector: &cloudsql_core::Connector,
    instance: &str,
    socket: &cloudsql_core::LocalSocket,
    options: <DB::Connection as sqlx::Connection>::Options,
    pool_options: sqlx::pool::PoolOptions<DB>,
) -> Result<sqlx::Pool<DB>, Error> {
    let failed_dials = socket.failed_dials();
    match pool_options.connect_with(options).await {
        Ok(pool) => {
            keep_alive(&pool, connector, socket);
            Ok(pool)
        }
        Err(e) => {
            if socket.failed_dials() != failed_dials
                && let Some(cause) = socket.last_error()
            {
                tracing::debug!(
                    instance,
                    error = &e as &dyn std::error::Error,
                    "sqlx connect failed because the local socket could not dial the instance"
                );
                return Err(cause.into());
            }
            refresh_after_failure(connector, instance, &e).await;
            Err(e.into())
        }
    }
}
