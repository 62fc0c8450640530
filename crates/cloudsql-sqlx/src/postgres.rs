//! `PgConnectOptions` and `PgPool` that reach a Cloud SQL for PostgreSQL instance.

use cloudsql_core::{Connector, DialOptions, Engine, LocalSocket};
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
    Ok(socket_options(connector, instance, options, dial).await?.0)
}

/// The options and the socket they point at.
async fn socket_options(
    connector: &Connector,
    instance: &str,
    options: PgConnectOptions,
    dial: &DialOptions,
) -> Result<(PgConnectOptions, LocalSocket), Error> {
    let dial = dial.clone().engine(Engine::Postgres);
    let iam_authn = dial.iam_authn_override().unwrap_or(connector.iam_authn());
    let socket = connector
        .local_socket(instance)
        .postgres_unix_port(SOCKET_PORT)
        .options(dial)
        .serve()
        .await?;
    let mut options = options
        .socket(socket.dir())
        .port(SOCKET_PORT)
        .ssl_mode(PgSslMode::Disable);
    if iam_authn {
        let user = Engine::Postgres.iam_user_name(options.get_username());
        options = options.username(&user);
    }
    Ok((options, socket))
}

/// A `PgPool` whose every new connection goes through the connector.
///
/// The pool keeps the connector and its local socket alive until it is closed or dropped, so
/// it keeps working when the application drops its own connector handles. After
/// [`Connector::close`] its open connections keep working and new ones fail with a database
/// error saying the connector is closed.
///
/// `pool_options.connect_with` opens a first connection at once. If the connector cannot reach
/// the instance for it (a refused server certificate, a timeout), the error is the connector's
/// ([`Error::Connector`]), as the local socket recorded it. If it fails
/// inside sqlx (a connection the server drops, but also a wrong password), the error is returned
/// as sqlx reported it and the connector starts a paced background refresh of the instance's
/// certificate and settings ([`Connector::force_refresh`]); later connects do not wait for it
/// while the current certificate is valid. Later connections are opened by the pool itself,
/// which has no hook for a failed connect: their login failures do not start a refresh, and a
/// failed dial reaches them as a database error carrying the connector's message (the typed
/// error is in [`LocalSocket::last_error`] and the `warn` log). The connector still refreshes by
/// itself when a dial fails or the instance refuses the client certificate (it sees the TLS
/// alert in the relayed stream).
pub async fn pool(
    connector: &Connector,
    instance: &str,
    options: PgConnectOptions,
    pool_options: PgPoolOptions,
) -> Result<PgPool, Error> {
    pool_with(connector, instance, options, pool_options, &DialOptions::new()).await
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
    let (options, socket) = socket_options(connector, instance, options, dial).await?;
    crate::connect_pool(connector, instance, &socket, options, pool_options).await
}
