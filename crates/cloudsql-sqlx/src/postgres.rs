//! `PgConnectOptions` and `PgPool` that reach a Cloud SQL for PostgreSQL instance.

use cloudsql_core::{Connector, DialOptions, Engine};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgSslMode};

use crate::Error;

/// The port in the socket's name, `.s.PGSQL.5432`.
const SOCKET_PORT: u16 = 5432;

/// Options that reach `instance` through the connector's local socket, keeping everything else
/// in `options`. With IAM authn a service account's `.gserviceaccount.com` suffix is dropped
/// from the user name.
pub async fn connect_options(
    connector: &Connector,
    instance: &str,
    options: PgConnectOptions,
) -> Result<PgConnectOptions, Error> {
    connect_options_with(connector, instance, options, &DialOptions::new()).await
}

/// [`connect_options`] with per-connection options (IP type, IAM authn, timeout).
pub async fn connect_options_with(
    connector: &Connector,
    instance: &str,
    options: PgConnectOptions,
    dial: &DialOptions,
) -> Result<PgConnectOptions, Error> {
    let dial = dial.clone().engine(Engine::Postgres);
    let iam_authn = dial.iam_authn_override().unwrap_or(connector.iam_authn());
    let socket = connector
        .local_socket(instance)
        .postgres_unix_port(SOCKET_PORT)
        .options(dial)
        .serve()
        .await?;
    let dir = socket.dir().ok_or_else(|| cloudsql_core::Error::Config {
        message: "the local socket has no directory".to_owned(),
    })?;
    let mut options = options.socket(dir).port(SOCKET_PORT).ssl_mode(PgSslMode::Disable);
    if iam_authn {
        let user = Engine::Postgres.iam_user_name(options.get_username());
        options = options.username(&user);
    }
    Ok(options)
}

/// A `PgPool` whose every new connection goes through the connector.
///
/// `pool_options.connect_with` opens a first connection at once. If it fails inside sqlx (a
/// connection the server drops, but also a wrong password), the error is returned as sqlx
/// reported it and the connector starts a paced background refresh of the instance's
/// certificate and settings ([`Connector::force_refresh`]); later connects do not wait for it
/// while the current certificate is valid. Later connections are opened by the pool itself,
/// which has no hook for a failed connect: their login failures do not start a refresh, but
/// the connector still refreshes by itself when a dial fails or the instance refuses the
/// client certificate (it sees the TLS alert in the relayed stream).
pub async fn pool(
    connector: &Connector,
    instance: &str,
    options: PgConnectOptions,
    pool_options: PgPoolOptions,
) -> Result<PgPool, Error> {
    let options = connect_options(connector, instance, options).await?;
    connect_pool(connector, instance, options, pool_options).await
}

/// A `PgPool` with per-connection dial options; a failed first connection starts a paced
/// background refresh, as with [`pool`].
pub async fn pool_with(
    connector: &Connector,
    instance: &str,
    options: PgConnectOptions,
    pool_options: PgPoolOptions,
    dial: &DialOptions,
) -> Result<PgPool, Error> {
    let options = connect_options_with(connector, instance, options, dial).await?;
    connect_pool(connector, instance, options, pool_options).await
}

/// Opens the pool; a failure inside sqlx starts a background refresh.
async fn connect_pool(
    connector: &Connector,
    instance: &str,
    options: PgConnectOptions,
    pool_options: PgPoolOptions,
) -> Result<PgPool, Error> {
    match pool_options.connect_with(options).await {
        Ok(pool) => Ok(pool),
        Err(e) => {
            crate::refresh_after_failure(connector, instance, &e).await;
            Err(e.into())
        }
    }
}
