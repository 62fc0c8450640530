//! Local socket mode, for drivers that cannot take a custom stream (sqlx, mysql_async): the
//! connector serves an instance on a Unix domain socket or a loopback TCP port, dials the
//! instance for each accepted connection (its own TLS 1.3 stream, current certificate, IAM
//! authn) and relays bytes both ways.
//!
//! Lifecycle: a reusable socket is created once per (instance, listen, options), however many
//! callers race for it. [`Connector::close`] leaves sockets listening but every new connection is
//! refused with [`Error::Closed`]; dropping the last connector clone stops the listeners and
//! removes the files. Either way, relayed connections stay open until their client or server
//! ends them; only [`LocalSocket::shutdown`] cuts them.

mod refusal;
mod registry;
mod relay;
#[cfg(unix)]
mod unix;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::debug;

use refusal::Refusal;
pub(crate) use registry::SocketRegistry;
use registry::{Endpoint, SocketEntry, SocketState};
use relay::Listener;

use crate::{ClientProtocol, Connector, DialOptions, Error};

/// Where the socket listens.
#[derive(Debug, Clone)]
enum Listen {
    /// `<dir>/.s.PGSQL.<port>`, so that `host=<dir>` (libpq, sqlx, tokio-postgres) finds it.
    PostgresUnix(u16),
    /// `<dir>/<file name>`.
    UnixFile(String),
    /// A loopback TCP address.
    Tcp(SocketAddr),
}

impl Listen {
    fn file_name(&self) -> String {
        match self {
            Listen::PostgresUnix(port) => format!(".s.PGSQL.{port}"),
            Listen::UnixFile(name) => name.clone(),
            Listen::Tcp(addr) => addr.to_string(),
        }
    }
}

/// Configures and starts a local socket for one instance. Get one from
/// [`Connector::local_socket`].
///
/// ```no_run
/// # async fn run() -> Result<(), cloudsql_core::Error> {
/// let connector = cloudsql_core::Connector::builder().build()?;
/// let socket = connector.local_socket("my-project:us-central1:my-db").postgres_unix().serve().await?;
/// // libpq-style clients: host=<dir>, port 5432.
/// println!("host={}", socket.dir().unwrap().display());
/// # Ok(()) }
/// ```
#[must_use]
#[derive(Debug)]
pub struct LocalSocketBuilder {
    connector: Connector,
    instance: String,
    listen: Listen,
    dir: Option<PathBuf>,
    options: DialOptions,
}

impl LocalSocketBuilder {
    pub(crate) fn new(connector: Connector, instance: &str) -> Self {
        Self {
            connector,
            instance: instance.to_owned(),
            listen: Listen::UnixFile("cloudsql.sock".to_owned()),
            dir: None,
            options: DialOptions::new(),
        }
    }

    /// Listen on `<dir>/.s.PGSQL.5432`, the name Postgres clients derive from a directory host.
    pub fn postgres_unix(self) -> Self {
        self.postgres_unix_port(5432)
    }

    /// Listen on `<dir>/.s.PGSQL.<port>`.
    pub fn postgres_unix_port(mut self, port: u16) -> Self {
        self.listen = Listen::PostgresUnix(port);
        self
    }

    /// Listen on `<dir>/<name>` (the default is `cloudsql.sock`), as MySQL clients expect.
    pub fn unix_file(mut self, name: impl Into<String>) -> Self {
        self.listen = Listen::UnixFile(name.into());
        self
    }

    /// Listen on a loopback TCP address instead (port 0 picks a free one). Anything that can
    /// reach the port can use the connection, so only loopback addresses are accepted.
    pub fn tcp(mut self, addr: SocketAddr) -> Self {
        self.listen = Listen::Tcp(addr);
        self
    }

    /// Put the socket in this directory, which must be private to the current user (mode
    /// 0700); it is created if missing. Default: a new private directory under the system
    /// temporary directory, removed on shutdown.
    pub fn dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.dir = Some(dir.into());
        self
    }

    /// Options for every connection dialed through the socket.
    pub fn options(mut self, options: DialOptions) -> Self {
        self.options = options;
        self
    }

    /// Starts serving. When the options name an engine, the instance is checked first and a
    /// mismatch fails here with [`Error::IncompatibleDriver`].
    ///
    /// Without an explicit [`dir`](Self::dir) or TCP port, a socket already serving the same
    /// instance with the same options on this connector is reused, so calling this once per
    /// connection does not pile up listeners. Concurrent first calls share one creation: they
    /// all get the same socket, or the same error (which is not kept: the next call tries again).
    pub async fn serve(self) -> Result<LocalSocket, Error> {
        if self.connector.is_closed() {
            return Err(Error::Closed);
        }
        self.options.validate()?;
        let reuse_key = match (&self.dir, &self.listen) {
            (None, Listen::Tcp(addr)) if addr.port() != 0 => None,
            (None, listen) => Some(format!("{}|{listen:?}|{:?}", self.instance, self.options)),
            (Some(_), _) => None,
        };
        let Some(key) = reuse_key else {
            let entry = self.create().await?;
            self.connector.sockets().add(entry.clone());
            return self.registered(entry);
        };
        loop {
            let slot = self.connector.sockets().slot(&key);
            let created = slot
                .get_or_init(|| async {
                    self.create()
                        .await
                        .and_then(|e| self.registered(e))
                        .map(|s| s.entry)
                })
                .await;
            match created {
                Ok(entry) if !entry.is_stopped() => return Ok(LocalSocket { entry: entry.clone() }),
                // Shut down explicitly: make a new one.
                Ok(_) => self.connector.sockets().forget(&key, &slot),
                Err(e) => {
                    self.connector.sockets().forget(&key, &slot);
                    return Err(e.clone());
                }
            }
        }
    }

    /// The handle for a registered entry, unless the connector closed meanwhile.
    fn registered(&self, entry: Arc<SocketEntry>) -> Result<LocalSocket, Error> {
        if self.connector.is_closed() {
            entry.stop_listening();
            return Err(Error::Closed);
        }
        Ok(LocalSocket { entry })
    }

    /// Checks the instance, binds the listener and starts accepting.
    async fn create(&self) -> Result<Arc<SocketEntry>, Error> {
        if self.options.engine.is_some() {
            self.connector.check_engine(&self.instance, &self.options).await?;
        } else {
            // Validate (or resolve) the name early; the first connection would fail anyway.
            self.connector.instance_name(&self.instance).await?;
        }
        let (listener, endpoint, protocol) = match &self.listen {
            Listen::Tcp(addr) => {
                if !addr.ip().is_loopback() {
                    return Err(Error::config(format!(
                        "local socket address {addr} is not a loopback address; anything that reaches it \
                         could use the database connection"
                    )));
                }
                let listener = TcpListener::bind(addr)
                    .await
                    .map_err(|e| Error::config(format!("cannot listen on {addr}: {e}")))?;
                let bound = listener
                    .local_addr()
                    .map_err(|e| Error::config(format!("cannot read the bound address: {e}")))?;
                (Listener::Tcp(listener), Endpoint::Tcp(bound), ClientProtocol::Tcp)
            }
            #[cfg(unix)]
            Listen::PostgresUnix(_) | Listen::UnixFile(_) => {
                let file = self.listen.file_name();
                if file.contains('/') || file.is_empty() {
                    return Err(Error::config(format!(
                        "socket file name `{file}` must be a plain file name"
                    )));
                }
                let (dir, owns_dir) = unix::private_dir(self.dir.as_deref())?;
                let path = dir.join(&file);
                let listener = match unix::bind(&path) {
                    Ok(listener) => listener,
                    Err(e) => {
                        if owns_dir {
                            let _ = std::fs::remove_dir(&dir);
                        }
                        return Err(e);
                    }
                };
                (
                    Listener::Unix(listener),
                    Endpoint::Unix { dir, path, owns_dir },
                    ClientProtocol::Uds,
                )
            }
            #[cfg(not(unix))]
            Listen::PostgresUnix(_) | Listen::UnixFile(_) => {
                return Err(Error::config(
                    "Unix domain sockets need a Unix platform; use .tcp(addr)",
                ));
            }
        };
        let refusal = Refusal::new(
            matches!(self.listen, Listen::PostgresUnix(_)),
            self.options.engine,
        );
        let state = Arc::new(SocketState::new(self.instance.clone(), endpoint, refusal));
        let entry = Arc::new(SocketEntry {
            state: state.clone(),
            accept_stop: CancellationToken::new(),
            tasks: TaskTracker::new(),
        });
        debug!(instance = %self.instance, endpoint = %state.endpoint, "local socket serving");
        entry.tasks.spawn(relay::accept_loop(
            listener,
            self.connector.downgrade(),
            self.options.clone().metadata_exchange(protocol),
            state,
            entry.accept_stop.clone(),
            entry.tasks.clone(),
        ));
        Ok(entry)
    }
}

/// A running local socket.
///
/// It listens until [`shutdown`](LocalSocket::shutdown) or until the last clone of its connector
/// is dropped; dropping this handle does not stop it, and it does not keep the connector alive.
/// After [`Connector::close`] it keeps its file but refuses every new connection with
/// [`Error::Closed`] (see [`last_error`](LocalSocket::last_error)). Connections already relayed
/// stay open through a close or a drop of the connector, until their client or server ends them.
#[derive(Debug, Clone)]
pub struct LocalSocket {
    entry: Arc<SocketEntry>,
}

impl LocalSocket {
    /// The Unix socket's path, if it is one.
    pub fn path(&self) -> Option<&Path> {
        match &self.entry.state.endpoint {
            #[cfg(unix)]
            Endpoint::Unix { path, .. } => Some(path),
            Endpoint::Tcp(_) => None,
        }
    }

    /// The directory holding the Unix socket (the `host` for Postgres clients).
    pub fn dir(&self) -> Option<&Path> {
        match &self.entry.state.endpoint {
            #[cfg(unix)]
            Endpoint::Unix { dir, .. } => Some(dir),
            Endpoint::Tcp(_) => None,
        }
    }

    /// The TCP address, if it listens on TCP.
    pub fn tcp_addr(&self) -> Option<SocketAddr> {
        match &self.entry.state.endpoint {
            Endpoint::Tcp(addr) => Some(*addr),
            #[cfg(unix)]
            Endpoint::Unix { .. } => None,
        }
    }

    /// The instance it serves.
    pub fn instance(&self) -> &str {
        &self.entry.state.instance
    }

    /// The error of the last connection the socket could not dial (a refused server certificate,
    /// a timeout, [`Error::Closed`] after [`Connector::close`], …), if any.
    ///
    /// A driver only sees its connection refused: the socket tells the client the error's text
    /// in its own protocol when it knows it (a Postgres `ErrorResponse`, a MySQL ERR packet), and
    /// logs it at `warn` with its chain. This is the typed error. Compare
    /// [`failed_dials`](LocalSocket::failed_dials) before and after a connect to tell whether
    /// this error is from it (with concurrent connects, it may be another's, from the same cause
    /// or a later one).
    ///
    /// ```no_run
    /// # async fn run(connector: cloudsql_core::Connector) -> Result<(), Box<dyn std::error::Error>> {
    /// let socket = connector.local_socket("my-project:us-central1:my-db").postgres_unix().serve().await?;
    /// let before = socket.failed_dials();
    /// // … a driver connects through socket.dir() and fails …
    /// if socket.failed_dials() != before {
    ///     if let Some(cause) = socket.last_error() {
    ///         eprintln!("the connector could not reach the instance: {cause}");
    ///     }
    /// }
    /// # Ok(()) }
    /// ```
    pub fn last_error(&self) -> Option<Error> {
        self.entry.state.last_error()
    }

    /// How many accepted connections the socket could not dial (each one's error replaces
    /// [`last_error`](LocalSocket::last_error)).
    pub fn failed_dials(&self) -> u64 {
        self.entry.state.failed_dials()
    }

    /// Stops accepting, ends every relayed connection, and removes the socket file (and the
    /// directory, if the connector created it).
    pub async fn shutdown(&self) {
        self.entry.shutdown();
        self.entry.tasks.wait().await;
    }
}
