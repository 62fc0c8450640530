#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![forbid(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]

mod error;
pub use error::Error;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use cloudsql_core::driver::{DriverDial, LoginError};
use cloudsql_core::{Connector, DialOptions, Engine, LocalSocket};
use mysql_async::prelude::GlobalHandler;
use mysql_async::{Conn, InfileData, LocalInfileError, Opts, OptsBuilder, Pool};

pub use cloudsql_core;
pub use mysql_async;

/// mysql_async options that reach `instance` through the connector's local socket.
///
/// Keeps everything in `opts` (user, password, database, pool constraints, …) except the
/// address: the socket replaces it, and `prefer_socket` is turned off so mysql_async never
/// switches to the server's own `@@socket` path and bypasses the connector.
///
/// The options hold a clone of the connector (inside their `LOCAL INFILE` handler slot, which
/// still calls any handler set in `opts`), so every `Conn` and `Pool` made from them keeps the
/// connector and its socket alive; dropping your own connector handles does not cut them off.
/// After [`Connector::close`] new connections are refused with a MySQL error saying the
/// connector is closed; connections already open keep working.
pub async fn opts(connector: &Connector, instance: &str, opts: OptsBuilder) -> Result<Opts, Error> {
    opts_with(connector, instance, opts, &DialOptions::new()).await
}

/// [`opts`] with per-connection options (IP type, IAM authn, timeout).
pub async fn opts_with(
    connector: &Connector,
    instance: &str,
    opts: OptsBuilder,
    options: &DialOptions,
) -> Result<Opts, Error> {
    let dial = DriverDial::new(connector, instance, Engine::MySql, options);
    Ok(socket_opts(&dial, opts).await?.0)
}

/// The options and the socket they point at.
async fn socket_opts(dial: &DriverDial<'_>, opts: OptsBuilder) -> Result<(Opts, LocalSocket), Error> {
    let socket = dial.local_socket().unix_file("mysql.sock").serve().await?;
    let path = socket.path().to_string_lossy().into_owned();
    let mut builder = opts
        .ip_or_hostname("localhost")
        .socket(Some(path))
        .prefer_socket(false);
    let current = Opts::from(builder.clone());
    if let Some(user) = current.user().and_then(|user| dial.iam_user(user)) {
        builder = builder.user(Some(user)).pass(None::<String>);
    }
    builder = builder.local_infile_handler(Some(KeepAlive {
        inner: current.local_infile_handler(),
        _connector: dial.connector().clone(),
        _socket: socket.clone(),
    }));
    tracing::debug!(
        instance = dial.instance(),
        iam_authn = dial.iam_authn(),
        "mysql_async options point at the local socket"
    );
    Ok((Opts::from(builder), socket))
}

/// One mysql_async connection to `instance`.
///
/// When the connector could not reach the instance for this connection (a refused server
/// certificate, a timeout, a closed connector), the error is the connector's
/// ([`Error::Connector`]), as the local socket recorded it; the driver's own error, which only
/// carries its text, is logged at `debug`. If the MySQL handshake or login fails (a wrong
/// password, say), the error is returned as mysql_async reported it and the connector starts a
/// paced background refresh of the instance's certificate and settings
/// ([`Connector::force_refresh`]); later connects do not wait for it while the current
/// certificate is valid.
///
/// ```no_run
/// use mysql_async::prelude::Queryable;
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let connector = cloudsql_core::Connector::builder().build()?;
/// let opts = mysql_async::OptsBuilder::default().user(Some("app")).pass(Some("secret")).db_name(Some("appdb"));
/// let mut conn = cloudsql_mysql::connect(&connector, "proj:region:inst", opts).await?;
/// let one: Option<i64> = conn.query_first("SELECT 1").await?;
/// assert_eq!(one, Some(1));
/// # Ok(()) }
/// ```
pub async fn connect(connector: &Connector, instance: &str, opts: OptsBuilder) -> Result<Conn, Error> {
    connect_with(connector, instance, opts, &DialOptions::new()).await
}

/// [`connect`] with per-connection options (IP type, IAM authn, timeout).
///
/// ```no_run
/// use cloudsql_core::{DialOptions, IpType};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let connector = cloudsql_core::Connector::builder().build()?;
/// // IAM database authn: the principal as the user, no password.
/// let opts = mysql_async::OptsBuilder::default().user(Some("app@my-project.iam.gserviceaccount.com"));
/// let options = DialOptions::new().ip_type(IpType::Private).iam_authn(true);
/// let conn = cloudsql_mysql::connect_with(&connector, "proj:region:inst", opts, &options).await?;
/// # let _ = conn; Ok(()) }
/// ```
pub async fn connect_with(
    connector: &Connector,
    instance: &str,
    opts: OptsBuilder,
    options: &DialOptions,
) -> Result<Conn, Error> {
    let dial = DriverDial::new(connector, instance, Engine::MySql, options);
    let (opts, socket) = socket_opts(&dial, opts).await?;
    dial.login_via(&socket, Conn::new(opts))
        .await
        .map_err(LoginError::into_error)
}

/// A mysql_async pool for `instance`; every new pooled connection goes through the connector.
///
/// The pool keeps the connector alive (see [`opts`]): it works until it is dropped or
/// disconnected, whatever happens to the application's own connector handles. After
/// [`Connector::close`] its open connections keep working and new ones fail with a MySQL error
/// saying the connector is closed.
///
/// The pool connects lazily and internally, with no hook for a failed connect, so a pooled
/// connection's failed login does not start a refresh the way [`connect`] does, and a failed dial
/// reaches the application as a MySQL error carrying the connector's message (the typed error is
/// in [`LocalSocket::last_error`](cloudsql_core::LocalSocket::last_error) and the `warn` log). The
/// connector still refreshes by itself when a dial fails, and when the instance refuses the
/// client certificate (it sees the TLS alert in the relayed stream).
pub async fn pool(connector: &Connector, instance: &str, opts: OptsBuilder) -> Result<Pool, Error> {
    pool_with(connector, instance, opts, &DialOptions::new()).await
}

/// [`pool`] with per-connection options.
pub async fn pool_with(
    connector: &Connector,
    instance: &str,
    opts: OptsBuilder,
    options: &DialOptions,
) -> Result<Pool, Error> {
    Ok(Pool::new(opts_with(connector, instance, opts, options).await?))
}

/// Keeps the connector and its socket alive for as long as mysql_async keeps the options (every
/// `Conn` and `Pool` made from them does), in the one slot of `Opts` that can hold a value of
/// ours; `LOCAL INFILE` requests go to the handler the caller set, as before.
struct KeepAlive {
    inner: Option<Arc<dyn GlobalHandler>>,
    _connector: Connector,
    _socket: LocalSocket,
}

impl GlobalHandler for KeepAlive {
    fn handle(
        &self,
        file_name: &[u8],
    ) -> Pin<Box<dyn Future<Output = Result<InfileData, LocalInfileError>> + Send + 'static>> {
        match &self.inner {
            Some(handler) => handler.handle(file_name),
            None => Box::pin(std::future::ready(Err(LocalInfileError::NoHandler))),
        }
    }
}
