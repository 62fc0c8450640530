//! `MySqlConnectOptions` and `MySqlPool` that reach a Cloud SQL for MySQL instance.

use cloudsql_core::driver::DriverDial;
use cloudsql_core::{Connector, DialOptions, Engine, LocalSocket};
use sqlx::mysql::{MySqlConnectOptions, MySqlConnection, MySqlPool, MySqlPoolOptions, MySqlSslMode};

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
    let dial = crate::driver_dial(connector, instance, Engine::MySql, dial);
    Ok(socket_options(&dial, options).await?.0)
}

/// The options and the socket they point at.
async fn socket_options(
    dial: &DriverDial<'_>,
    options: MySqlConnectOptions,
) -> Result<(MySqlConnectOptions, LocalSocket), Error> {
    let socket = dial.local_socket().unix_file("mysql.sock").serve().await?;
    let mut options = options.socket(socket.path()).ssl_mode(MySqlSslMode::Disabled);
    if let Some(user) = dial.iam_user(options.get_username()) {
        options = options.username(&user);
    }
    Ok((options, socket))
}

/// One `MySqlConnection` to `instance` through the connector's local socket.
///
/// `options` carries the user, password and database; its host and port are replaced by the
/// socket. If the connector cannot reach the instance for this connection (an unknown instance,
/// a refused server certificate, a timeout), the error is the connector's
/// ([`Error::Connector`]). If it fails inside sqlx (a wrong password, say), the error is
/// returned as sqlx reported it and the connector starts a paced background refresh of the
/// instance's certificate and settings ([`Connector::force_refresh`]).
///
/// The connection does not keep the connector alive, and needs not: once open it stays open
/// when the connector is closed or dropped.
///
/// ```no_run
/// use sqlx::Connection;
/// use sqlx::mysql::MySqlConnectOptions;
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let connector = cloudsql_core::Connector::builder().build()?;
/// let options = MySqlConnectOptions::new().username("app").password("secret").database("appdb");
/// let mut conn = cloudsql_sqlx::mysql::connect(&connector, "proj:region:inst", options).await?;
/// conn.ping().await?;
/// # Ok(()) }
/// ```
pub async fn connect(
    connector: &Connector,
    instance: &str,
    options: MySqlConnectOptions,
) -> Result<MySqlConnection, Error> {
    connect_with(connector, instance, options, &DialOptions::new()).await
}

/// [`connect`] with per-connection options (IP type, IAM authn, timeout).
///
/// ```no_run
/// use cloudsql_core::{DialOptions, IpType};
/// use sqlx::mysql::MySqlConnectOptions;
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let connector = cloudsql_core::Connector::builder().build()?;
/// // IAM database authn: the principal as the user, no password.
/// let options = MySqlConnectOptions::new().username("app@my-project.iam.gserviceaccount.com").database("appdb");
/// let dial = DialOptions::new().ip_type(IpType::Private).iam_authn(true);
/// let conn = cloudsql_sqlx::mysql::connect_with(&connector, "proj:region:inst", options, &dial).await?;
/// # let _ = conn; Ok(()) }
/// ```
pub async fn connect_with(
    connector: &Connector,
    instance: &str,
    options: MySqlConnectOptions,
    dial: &DialOptions,
) -> Result<MySqlConnection, Error> {
    let dial = crate::driver_dial(connector, instance, Engine::MySql, dial);
    let (options, socket) = socket_options(&dial, options).await?;
    crate::connect_one(&dial, &socket, options).await
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
    let dial = crate::driver_dial(connector, instance, Engine::MySql, dial);
    let (options, socket) = socket_options(&dial, options).await?;
    crate::connect_pool(&dial, &socket, options, pool_options).await
}
