#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![forbid(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]

mod error;
pub use error::Error;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

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
    Ok(socket_opts(connector, instance, opts, options).await?.0)
}

/// The options and the socket they point at.
async fn socket_opts(
    connector: &Connector,
    instance: &str,
    opts: OptsBuilder,
    options: &DialOptions,
) -> Result<(Opts, LocalSocket), Error> {
    let options = options.clone().engine(Engine::MySql);
    let iam_authn = options.iam_authn_override().unwrap_or(connector.iam_authn());
    let socket = connector
        .local_socket(instance)
        .unix_file("mysql.sock")
        .options(options)
        .serve()
        .await?;
    let path = socket.path().to_string_lossy().into_owned();
    let mut builder = opts
        .ip_or_hostname("localhost")
        .socket(Some(path))
        .prefer_socket(false);
    let current = Opts::from(builder.clone());
    if iam_authn && let Some(user) = current.user() {
        let user = Engine::MySql.iam_user_name(user);
        builder = builder.user(Some(user)).pass(None::<String>);
    }
    builder = builder.local_infile_handler(Some(KeepAlive {
        inner: current.local_infile_handler(),
        _connector: connector.clone(),
        _socket: socket.clone(),
    }));
    tracing::debug!(
        instance,
        iam_authn,
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
pub async fn conn(connector: &Connector, instance: &str, opts: OptsBuilder) -> Result<Conn, Error> {
    let (opts, socket) = socket_opts(connector, instance, opts, &DialOptions::new()).await?;
    let failed_dials = socket.failed_dials();
    match Conn::new(opts).await {
        Ok(conn) => Ok(conn),
        Err(e) => Err(connect_error(connector, instance, &socket, failed_dials, e).await),
    }
}

/// The error for a failed driver connect: the socket's dial error when one was recorded since
/// `failed_dials`, else the driver's, after starting a background refresh.
async fn connect_error(
    connector: &Connector,
    instance: &str,
    socket: &LocalSocket,
    failed_dials: u64,
    error: mysql_async::Error,
) -> Error {
    if socket.failed_dials() != failed_dials
        && let Some(cause) = socket.last_error()
    {
        tracing::debug!(
            instance,
            error = &error as &dyn std::error::Error,
            "mysql_async connect failed because the local socket could not dial the instance"
        );
        return cause.into();
    }
    refresh_after_failure(connector, instance, &error).await;
    error.into()
}

/// The driver failed on a connection the local socket relayed: the connector could not see
/// why, so it refreshes in the background (paced; connects keep using a valid certificate).
async fn refresh_after_failure(connector: &Connector, instance: &str, error: &mysql_async::Error) {
    tracing::debug!(
        instance,
        error = error as &dyn std::error::Error,
        "MySQL login failed; refreshing in the background"
    );
    if let Err(e) = connector.force_refresh(instance).await {
        tracing::debug!(
            instance,
            error = &e as &dyn std::error::Error,
            "could not start a refresh"
        );
    }
}

/// A mysql_async pool for `instance`; every new pooled connection goes through the connector.
///
/// The pool keeps the connector alive (see [`opts`]): it works until it is dropped or
/// disconnected, whatever happens to the application's own connector handles. After
/// [`Connector::close`] its open connections keep working and new ones fail with a MySQL error
/// saying the connector is closed.
///
/// The pool connects lazily and internally, with no hook for a failed connect, so a pooled
/// connection's failed login does not start a refresh the way [`conn`] does, and a failed dial
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
