//! `MySqlConnectOptions` and `MySqlPool` that reach a Cloud SQL for MySQL instance.

use cloudsql_core::{Connector, DialOptions, Engine, LocalSocket};
use sqlx::mysql::{MySqlConnectOptions, MySqlPool, MySqlPoolOptions, MySqlSslMode};

use crate::Error;

/// Options that reach `instance` through the connector's local socket, keeping everything else
/// in `options`. With IAM authn the user name is the part of the principal before `@`.
pub async fn connect_options(
    connector: &Connector,
    instance: &str,
    options: MySqlConnectOptions,
) -> Result<MySqlConnectOptions, Error> {
    connect_options_with(connector, instance, options, &DialOptions::new()).await
}

/// [`connect_options`] with per-connection options (IP type, IAM authn, timeout).
pub async fn connect_options_with(
    connector: &Connector,
    instance: &str,
    options: MySqlConnectOptions,
    dial: &DialOptions,
) -> Result<MySqlConnectOptions, Error> {
    Ok(socket_options(connector, instance, options, dial).await?.0)
}

/// The options and the socket they point at.
async fn socket_options(
    connector: &Connector,
    instance: &str,
    options: MySqlConnectOptions,
    dial: &DialOptions,
) -> Result<(MySqlConnectOptions, LocalSocket), Error> {
    let dial = dial.clone().engine(Engine::MySql);
    let iam_authn = dial.iam_authn_override().unwrap_or(connector.iam_authn());
    let socket = connector
        .local_socket(instance)
        .unix_file("mysql.sock")
        .options(dial)
        .serve()
        .await?;
    let mut options = options.socket(socket.path()).ssl_mode(MySqlSslMode::Disabled);
    if iam_authn {
        let user = Engine::MySql.iam_user_name(options.get_username());
        options = options.username(&user);
    }
    Ok((options, socket))
}

/// A `MySqlPool` whose every new connection goes through the connector.
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
    options: MySqlConnectOptions,
    pool_options: MySqlPoolOptions,
) -> Result<MySqlPool, Error> {
    pool_with(connector, instance, options, pool_options, &DialOptions::new()).await
}

/// A `MySqlPool` with per-connection dial options; a failed first connection starts a paced
/// background refresh, as with [`pool`].
pub async fn pool_with(
    connector: &Connector,
    instance: &str,
    options: MySqlConnectOptions,
    pool_options: MySqlPoolOptions,
    dial: &DialOptions,
) -> Result<MySqlPool, Error> {
    let (options, socket) = socket_options(connector, instance, options, dial).await?;
    crate::connect_pool(connector, instance, &socket, options, pool_options).await
}
