//! Local socket mode, for drivers that cannot take a custom stream (sqlx, mysql_async): the
//! connector serves an instance on a Unix domain socket or a loopback TCP port, dials the
//! instance for each accepted connection (its own TLS 1.3 stream, current certificate, IAM
//! authn) and relays bytes both ways.
//!
//! Lifecycle: a reusable socket is created once per (instance, listen, options), however many
//! callers race for it. [`Connector::close`](crate::Connector::close) leaves sockets listening but every new connection is
//! refused with [`Error::Closed`]; dropping the last connector clone stops the listeners and
//! removes the files. Either way, relayed connections stay open until their client or server
//! ends them; only [`LocalSocket::shutdown`] cuts them.

mod addr;
mod bidirectional;
mod dialer;
mod refusal;
mod registry;
mod relay;
#[cfg(unix)]
mod unix;

use std::marker::PhantomData;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::debug;

pub use addr::{ListenAddr, UnixSocketAddr};
pub(crate) use dialer::{DialFuture, InstanceDialer};
use refusal::Refusal;
pub(crate) use registry::SocketRegistry;
use registry::{Endpoint, ReuseKey, SocketEntry, SocketState};
use relay::Listener;

use crate::{ClientProtocol, DialOptions, Error};

/// Where the socket listens.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
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
/// [`Connector::local_socket`](crate::Connector::local_socket).
///
/// It listens on a Unix domain socket unless [`tcp`](LocalSocketBuilder::tcp) is called, which
/// makes it a `LocalSocketBuilder<SocketAddr>`; either way [`serve`](LocalSocketBuilder::serve)
/// returns a [`LocalSocket`] whose [`addr`](LocalSocket::addr) is of that kind.
///
/// ```no_run
/// # async fn run() -> Result<(), cloudsql_core::Error> {
/// let connector = cloudsql_core::Connector::builder().build()?;
/// let socket = connector.local_socket("my-project:us-central1:my-db").postgres_unix().serve().await?;
/// // libpq-style clients: host=<dir>, port 5432.
/// println!("host={}", socket.dir().display());
///
/// let tcp = connector
///     .local_socket("my-project:us-central1:my-db")
///     .tcp("127.0.0.1:0".parse().unwrap())
///     .serve()
///     .await?;
/// println!("port={}", tcp.addr().port());
/// # Ok(()) }
/// ```
#[must_use]
#[derive(Debug)]
pub struct LocalSocketBuilder<A = UnixSocketAddr> {
    dialer: Arc<dyn InstanceDialer>,
    sockets: Arc<SocketRegistry>,
    instance: String,
    listen: Listen,
    dir: Option<PathBuf>,
    options: DialOptions,
    kind: PhantomData<fn() -> A>,
}

impl LocalSocketBuilder<UnixSocketAddr> {
    /// A builder for a socket of `sockets`' connector, dialing through `dialer`.
    pub(crate) fn new(dialer: Arc<dyn InstanceDialer>, sockets: Arc<SocketRegistry>, instance: &str) -> Self {
        Self {
            dialer,
            sockets,
            instance: instance.to_owned(),
            listen: Listen::UnixFile("cloudsql.sock".to_owned()),
            dir: None,
            options: DialOptions::new(),
            kind: PhantomData,
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
    pub fn tcp(self, addr: SocketAddr) -> LocalSocketBuilder<SocketAddr> {
        LocalSocketBuilder {
            dialer: self.dialer,
            sockets: self.sockets,
            instance: self.instance,
            listen: Listen::Tcp(addr),
            dir: None,
            options: self.options,
            kind: PhantomData,
        }
    }

    /// Put the socket in this directory, which must be private to the current user (mode
    /// 0700); it is created if missing. Default: a new private directory under the system
    /// temporary directory, removed on shutdown.
    pub fn dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.dir = Some(dir.into());
        self
    }
}

impl<A: ListenAddr> LocalSocketBuilder<A> {
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
    pub async fn serve(self) -> Result<LocalSocket<A>, Error> {
        if self.dialer.is_closed() {
            return Err(Error::Closed);
        }
        self.options.validate()?;
        let reuse_key = match (&self.dir, &self.listen) {
            (None, Listen::Tcp(addr)) if addr.port() != 0 => None,
            (None, listen) => Some(ReuseKey {
                instance: self.instance.clone(),
                listen: listen.clone(),
                options: self.options.clone(),
            }),
            (Some(_), _) => None,
        };
        let Some(key) = reuse_key else {
            let entry = self.create().await?;
            self.sockets.add(entry.clone());
            return self.registered(entry);
        };
        loop {
            let slot = self.sockets.slot(&key);
            let created = slot
                .get_or_init(|| async {
                    self.create()
                        .await
                        .and_then(|e| self.registered(e))
                        .map(|s| s.entry)
                })
                .await;
            match created {
                Ok(entry) if !entry.is_stopped() => return LocalSocket::new(entry.clone()),
                // Shut down explicitly: make a new one.
                Ok(_) => self.sockets.forget(&key, &slot),
                Err(e) => {
                    self.sockets.forget(&key, &slot);
                    return Err(e.clone());
                }
            }
        }
    }

    /// The handle for a registered entry, unless the connector closed meanwhile.
    fn registered(&self, entry: Arc<SocketEntry>) -> Result<LocalSocket<A>, Error> {
        if self.dialer.is_closed() {
            entry.stop_listening();
            return Err(Error::Closed);
        }
        LocalSocket::new(entry)
    }

    /// Checks the instance, binds the listener and starts accepting.
    async fn create(&self) -> Result<Arc<SocketEntry>, Error> {
        // Resolve the name (and check the engine) early; the first connection would fail anyway.
        self.dialer.clone().check(&self.instance, &self.options).await?;
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
                    .map_err(|e| Error::local_socket_io("listen on", addr.to_string(), e))?;
                let bound = listener
                    .local_addr()
                    .map_err(|e| Error::local_socket_io("read the bound address of", addr.to_string(), e))?;
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
                    Endpoint::Unix {
                        addr: UnixSocketAddr::new(dir, path),
                        owns_dir,
                    },
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
            Arc::downgrade(&self.dialer),
            self.options.clone().metadata_exchange(protocol).read_ahead(),
            state,
            entry.accept_stop.clone(),
            entry.tasks.clone(),
        ));
        Ok(entry)
    }
}

/// A running local socket, listening on an address of kind `A`: a [`UnixSocketAddr`] (the
/// default) or a loopback TCP [`SocketAddr`].
///
/// It listens until [`shutdown`](LocalSocket::shutdown) or until the last clone of its connector
/// is dropped; dropping this handle does not stop it, and it does not keep the connector alive.
/// After [`Connector::close`](crate::Connector::close) it keeps its file but refuses every new
/// connection with [`Error::Closed`] (see [`last_error`](LocalSocket::last_error)). Connections
/// already relayed stay open through a close or a drop of the connector, until their client or
/// server ends them.
#[derive(Debug, Clone)]
pub struct LocalSocket<A = UnixSocketAddr> {
    entry: Arc<SocketEntry>,
    addr: A,
}

impl<A: ListenAddr> LocalSocket<A> {
    /// The handle of a running entry, which listens on an `A` (reused entries are keyed by how
    /// they listen, so the kind always matches; a mismatch is refused rather than trusted).
    fn new(entry: Arc<SocketEntry>) -> Result<Self, Error> {
        match addr::of::<A>(&entry.state.endpoint) {
            Some(addr) => Ok(Self { entry, addr }),
            None => Err(Error::config(format!(
                "the local socket for `{}` listens on {}, not on the kind of address asked for",
                entry.state.instance, entry.state.endpoint
            ))),
        }
    }

    /// Where the socket listens.
    pub fn addr(&self) -> &A {
        &self.addr
    }

    /// The instance it serves.
    pub fn instance(&self) -> &str {
        &self.entry.state.instance
    }
    /// The error of the last connection the socket could not dial (a refused server certificate,
    /// a timeout, [`Error::Closed`] after [`Connector::close`](crate::Connector::close), …), if
    /// any.
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

impl LocalSocket<UnixSocketAddr> {
    /// The socket file.
    pub fn path(&self) -> &Path {
        self.addr.path()
    }

    /// The directory holding the socket (the `host` for Postgres clients).
    pub fn dir(&self) -> &Path {
        self.addr.dir()
    }
}
