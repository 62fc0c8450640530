//! Local socket mode, for drivers that cannot take a custom stream (sqlx, mysql_async): the
//! connector serves an instance on a Unix domain socket or a loopback TCP port, dials the
//! instance for each accepted connection (its own TLS 1.3 stream, current certificate, IAM
//! authn) and relays bytes both ways.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, warn};

use crate::connector::WeakConnector;
use crate::{ClientProtocol, Connector, DialOptions, Error};

/// Relay buffer size each way; larger than tokio's 8 KiB default for bulk reads.
const RELAY_BUFFER: usize = 64 * 1024;

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
    /// connection does not pile up listeners.
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
        if let Some(entry) = reuse_key
            .as_deref()
            .and_then(|key| self.connector.sockets().find(key))
        {
            return Ok(LocalSocket { entry });
        }
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
        let entry = Arc::new(SocketEntry {
            reuse_key,
            instance: self.instance.clone(),
            endpoint,
            cancel: CancellationToken::new(),
            tasks: TaskTracker::new(),
        });
        let options = self.options.metadata_exchange(protocol);
        debug!(instance = %self.instance, endpoint = %entry.endpoint, "local socket serving");
        entry.tasks.spawn(accept_loop(
            listener,
            self.connector.downgrade(),
            self.instance,
            options,
            entry.clone(),
        ));
        self.connector.sockets().add(entry.clone());
        if self.connector.is_closed() {
            entry.stop();
            return Err(Error::Closed);
        }
        Ok(LocalSocket { entry })
    }
}

/// A running local socket. It lives until [`shutdown`](LocalSocket::shutdown) or until the
/// connector is closed or dropped; dropping this handle does not stop it.
#[derive(Debug, Clone)]
pub struct LocalSocket {
    entry: Arc<SocketEntry>,
}

impl LocalSocket {
    /// The Unix socket's path, if it is one.
    pub fn path(&self) -> Option<&Path> {
        match &self.entry.endpoint {
            #[cfg(unix)]
            Endpoint::Unix { path, .. } => Some(path),
            Endpoint::Tcp(_) => None,
        }
    }

    /// The directory holding the Unix socket (the `host` for Postgres clients).
    pub fn dir(&self) -> Option<&Path> {
        match &self.entry.endpoint {
            #[cfg(unix)]
            Endpoint::Unix { dir, .. } => Some(dir),
            Endpoint::Tcp(_) => None,
        }
    }

    /// The TCP address, if it listens on TCP.
    pub fn tcp_addr(&self) -> Option<SocketAddr> {
        match &self.entry.endpoint {
            Endpoint::Tcp(addr) => Some(*addr),
            #[cfg(unix)]
            Endpoint::Unix { .. } => None,
        }
    }

    /// The instance it serves.
    pub fn instance(&self) -> &str {
        &self.entry.instance
    }

    /// Stops accepting, ends every relayed connection, and removes the socket file (and the
    /// directory, if the connector created it).
    pub async fn shutdown(&self) {
        self.entry.stop();
        self.entry.tasks.wait().await;
    }
}

enum Listener {
    Tcp(TcpListener),
    #[cfg(unix)]
    Unix(tokio::net::UnixListener),
}

#[derive(Debug)]
enum Endpoint {
    Tcp(SocketAddr),
    #[cfg(unix)]
    Unix {
        dir: PathBuf,
        path: PathBuf,
        owns_dir: bool,
    },
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Tcp(addr) => write!(f, "tcp://{addr}"),
            #[cfg(unix)]
            Endpoint::Unix { path, .. } => write!(f, "unix://{}", path.display()),
        }
    }
}

/// One local socket's state, shared by its handle, its tasks and the connector's registry.
#[derive(Debug)]
pub(crate) struct SocketEntry {
    reuse_key: Option<String>,
    instance: String,
    endpoint: Endpoint,
    cancel: CancellationToken,
    tasks: TaskTracker,
}

impl SocketEntry {
    /// Stops the tasks and removes the files; safe to call more than once.
    fn stop(&self) {
        self.cancel.cancel();
        self.tasks.close();
        #[cfg(unix)]
        if let Endpoint::Unix { dir, path, owns_dir } = &self.endpoint {
            let _ = std::fs::remove_file(path);
            if *owns_dir {
                let _ = std::fs::remove_dir(dir);
            }
        }
    }
}

impl Drop for SocketEntry {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The local sockets of one connector, stopped when it closes or drops.
#[derive(Debug, Default)]
pub(crate) struct SocketRegistry {
    entries: Mutex<Vec<Arc<SocketEntry>>>,
}

impl SocketRegistry {
    fn add(&self, entry: Arc<SocketEntry>) {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        entries.retain(|e| !e.cancel.is_cancelled());
        entries.push(entry);
    }

    fn find(&self, key: &str) -> Option<Arc<SocketEntry>> {
        let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        entries
            .iter()
            .find(|e| !e.cancel.is_cancelled() && e.reuse_key.as_deref() == Some(key))
            .cloned()
    }

    pub(crate) fn shutdown_all(&self) {
        let entries = std::mem::take(&mut *self.entries.lock().unwrap_or_else(PoisonError::into_inner));
        for entry in entries {
            entry.stop();
        }
    }
}

async fn accept_loop(
    listener: Listener,
    connector: WeakConnector,
    instance: String,
    options: DialOptions,
    entry: Arc<SocketEntry>,
) {
    let cancel = entry.cancel.clone();
    let tasks = entry.tasks.clone();
    // Do not keep the entry alive from its own task: the registry and handles own it.
    drop(entry);
    loop {
        let accepted = tokio::select! {
            () = cancel.cancelled() => break,
            accepted = accept(&listener) => accepted,
        };
        match accepted {
            Ok(client) => {
                tasks.spawn(relay(
                    client,
                    connector.clone(),
                    instance.clone(),
                    options.clone(),
                    cancel.clone(),
                ));
            }
            Err(e) => {
                warn!(%instance, error = %e, "local socket accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
        }
    }
    debug!(%instance, "local socket stopped accepting");
}

/// An accepted client connection.
enum Client {
    Tcp(tokio::net::TcpStream),
    #[cfg(unix)]
    Unix(tokio::net::UnixStream),
}

async fn accept(listener: &Listener) -> io::Result<Client> {
    match listener {
        Listener::Tcp(l) => {
            let (stream, _) = l.accept().await?;
            stream.set_nodelay(true)?;
            Ok(Client::Tcp(stream))
        }
        #[cfg(unix)]
        Listener::Unix(l) => Ok(Client::Unix(l.accept().await?.0)),
    }
}

async fn relay(
    client: Client,
    connector: WeakConnector,
    instance: String,
    options: DialOptions,
    cancel: CancellationToken,
) {
    match client {
        Client::Tcp(s) => relay_stream(s, connector, instance, options, cancel).await,
        #[cfg(unix)]
        Client::Unix(s) => relay_stream(s, connector, instance, options, cancel).await,
    }
}

async fn relay_stream<S>(
    mut client: S,
    connector: WeakConnector,
    instance: String,
    options: DialOptions,
    cancel: CancellationToken,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let Some(connector) = connector.upgrade() else {
        return;
    };
    let dialed = tokio::select! {
        () = cancel.cancelled() => return,
        dialed = connector.connect_with(&instance, &options) => dialed,
    };
    // Do not keep the connector alive for the life of the relay.
    drop(connector);
    let mut server = match dialed {
        Ok(server) => server,
        Err(e) => {
            warn!(%instance, error = %e, "local socket could not dial the instance; closing the client connection");
            return;
        }
    };
    tokio::select! {
        () = cancel.cancelled() => {
            let _ = client.shutdown().await;
            let _ = server.shutdown().await;
        }
        result = tokio::io::copy_bidirectional_with_sizes(&mut client, &mut server, RELAY_BUFFER, RELAY_BUFFER) => {
            if let Err(e) = result {
                debug!(%instance, error = %e, "relayed connection ended with an error");
            }
        }
    }
}

#[cfg(unix)]
mod unix {
    use std::io;
    use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
    use std::path::{Path, PathBuf};

    use tokio::net::UnixListener;

    use crate::Error;

    fn private_mode(meta: &std::fs::Metadata) -> bool {
        meta.permissions().mode() & 0o077 == 0
    }

    /// The socket's directory: the given one (created if missing; it must be a directory private
    /// to this user), or a new private one under the temp dir. Returns whether we created it.
    pub(super) fn private_dir(dir: Option<&Path>) -> Result<(PathBuf, bool), Error> {
        let (dir, fresh) = match dir {
            Some(dir) => (dir.to_path_buf(), false),
            None => {
                let name = format!("cloudsql-{}-{:016x}", std::process::id(), rand::random::<u64>());
                (std::env::temp_dir().join(name), true)
            }
        };
        match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
            Ok(()) => return Ok((dir, true)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && !fresh => {}
            Err(e) => {
                return Err(Error::config(format!(
                    "cannot create socket directory {}: {e}",
                    dir.display()
                )));
            }
        }
        let meta = std::fs::symlink_metadata(&dir)
            .map_err(|e| Error::config(format!("cannot inspect {}: {e}", dir.display())))?;
        if !meta.is_dir() {
            return Err(Error::config(format!("{} is not a directory", dir.display())));
        }
        if !private_mode(&meta) || meta.uid() != current_uid() {
            return Err(Error::config(format!(
                "socket directory {} must belong to the current user with mode 0700 (it has {:o}); \
                 other users could reach the database through it",
                dir.display(),
                meta.permissions().mode() & 0o777
            )));
        }
        Ok((dir, false))
    }

    /// The uid of this process, read from a file it creates (no unsafe `getuid`).
    fn current_uid() -> u32 {
        static UID: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
        *UID.get_or_init(|| {
            std::fs::metadata("/proc/self")
                .map(|m| m.uid())
                .unwrap_or_else(|_| {
                    let probe = std::env::temp_dir().join(format!("cloudsql-uid-{}", std::process::id()));
                    let uid = std::fs::write(&probe, b"")
                        .and_then(|()| std::fs::metadata(&probe))
                        .map(|m| m.uid())
                        .unwrap_or(u32::MAX);
                    let _ = std::fs::remove_file(&probe);
                    uid
                })
        })
    }

    /// Binds the socket, replacing a stale one from a crashed run but never a live one or a
    /// file that is not a socket; the socket file gets mode 0600.
    pub(super) fn bind(path: &Path) -> Result<UnixListener, Error> {
        if let Ok(meta) = std::fs::symlink_metadata(path) {
            if !meta.file_type().is_socket() {
                return Err(Error::config(format!(
                    "{} exists and is not a socket; refusing to replace it",
                    path.display()
                )));
            }
            match std::os::unix::net::UnixStream::connect(path) {
                Ok(_) => {
                    return Err(Error::config(format!(
                        "{} is in use by a running process; choose another directory or name",
                        path.display()
                    )));
                }
                Err(_) => {
                    tracing::debug!(path = %path.display(), "replacing a stale socket");
                    std::fs::remove_file(path).map_err(|e| {
                        Error::config(format!("cannot remove stale socket {}: {e}", path.display()))
                    })?;
                }
            }
        }
        let listener = UnixListener::bind(path)
            .map_err(|e| Error::config(format!("cannot listen on {}: {e}", path.display())))?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| Error::config(format!("cannot restrict {}: {e}", path.display())))?;
        Ok(listener)
    }
}
