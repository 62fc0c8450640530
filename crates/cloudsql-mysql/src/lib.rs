//! # cloudsql-mysql
//!
//! [mysql_async] on Google Cloud SQL for MySQL through the [`cloudsql_core`] connector.
//!
//! mysql_async cannot take a custom stream, so it reaches the instance through a local Unix
//! socket that the connector serves in-process: each connection accepted there is dialed
//! through the connector (its own TLS 1.3 stream, the current certificate, IAM authn) and the
//! bytes are relayed both ways. The socket lives in a directory only the current user can
//! enter, and goes away when the connector is closed or dropped.
//!
//! ```no_run
//! use mysql_async::prelude::*;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let connector = cloudsql_core::Connector::builder().build()?;
//! let opts = mysql_async::OptsBuilder::default().user(Some("app")).pass(Some("secret")).db_name(Some("appdb"));
//! let pool = cloudsql_mysql::pool(&connector, "my-project:us-central1:my-mysql", opts).await?;
//! let mut conn = pool.get_conn().await?;
//! let one: Option<i64> = conn.query_first("SELECT 1").await?;
//! # let _ = one; Ok(()) }
//! ```
//!
//! With automatic IAM database authentication, the user is the IAM principal (the part before
//! `@` is taken for you) and no password is sent. Connecting to an instance that is not MySQL
//! fails with [`cloudsql_core::Error::IncompatibleDriver`] before any socket is created.
//!
//! Keep the [`Connector`](cloudsql_core::Connector) alive as long as the pools that use it: the
//! local socket belongs to the connector and is removed when it is closed or dropped.
#![forbid(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]

mod error;
pub use error::Error;

use cloudsql_core::{Connector, DialOptions, Engine};
use mysql_async::{Conn, Opts, OptsBuilder, Pool};

pub use cloudsql_core;
pub use mysql_async;

/// mysql_async options that reach `instance` through the connector's local socket.
///
/// Keeps everything in `opts` (user, password, database, pool constraints, …) except the
/// address: the socket replaces it, and `prefer_socket` is turned off so mysql_async never
/// switches to the server's own `@@socket` path and bypasses the connector.
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
    let options = options.clone().engine(Engine::MySql);
    let iam_authn = options.iam_authn_override().unwrap_or(connector.iam_authn());
    let socket = connector
        .local_socket(instance)
        .unix_file("mysql.sock")
        .options(options)
        .serve()
        .await?;
    let path = socket
        .path()
        .ok_or_else(|| cloudsql_core::Error::Config {
            message: "the local socket has no Unix path".to_owned(),
        })?
        .to_string_lossy()
        .into_owned();
    let mut builder = opts
        .ip_or_hostname("localhost")
        .socket(Some(path))
        .prefer_socket(false);
    if iam_authn {
        let current = Opts::from(builder.clone());
        if let Some(user) = current.user() {
            let user = Engine::MySql.iam_user_name(user);
            builder = builder.user(Some(user)).pass(None::<String>);
        }
    }
    tracing::debug!(
        instance,
        iam_authn,
        "mysql_async options point at the local socket"
    );
    Ok(Opts::from(builder))
}

/// One mysql_async connection to `instance`.
///
/// If the MySQL handshake or login fails (a connection the server drops, but also a wrong
/// password), the error is returned as mysql_async reported it and the connector starts a paced
/// background refresh of the instance's certificate and settings
/// ([`Connector::force_refresh`]); later connects do not wait for it while the current
/// certificate is valid.
pub async fn conn(connector: &Connector, instance: &str, opts: OptsBuilder) -> Result<Conn, Error> {
    let opts = self::opts(connector, instance, opts).await?;
    match Conn::new(opts).await {
        Ok(conn) => Ok(conn),
        Err(e) => {
            refresh_after_failure(connector, instance, &e).await;
            Err(e.into())
        }
    }
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
/// The pool connects lazily and internally, with no hook for a failed connect, so a pooled
/// connection's failed login does not start a refresh the way [`conn`] does. The connector
/// still refreshes by itself when a dial fails, and when the instance refuses the client
/// certificate (it sees the TLS alert in the relayed stream).
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
