//! The typed address of a local socket: a [`UnixSocketAddr`] for a Unix domain socket, a
//! [`SocketAddr`] for loopback TCP. The builder's type says which one [`serve`] returns, so a
//! caller never has to handle the kind it did not ask for.
//!
//! [`serve`]: super::LocalSocketBuilder::serve

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use super::registry::Endpoint;

/// Where a Unix domain local socket listens: the socket file and the directory holding it.
///
/// ```no_run
/// # async fn run(connector: cloudsql_core::Connector) -> Result<(), cloudsql_core::Error> {
/// let socket = connector.local_socket("my-project:us-central1:my-db").postgres_unix().serve().await?;
/// let addr = socket.addr();
/// assert_eq!(addr.path(), addr.dir().join(".s.PGSQL.5432"));
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UnixSocketAddr {
    dir: PathBuf,
    path: PathBuf,
}

impl UnixSocketAddr {
    pub(super) fn new(dir: PathBuf, path: PathBuf) -> Self {
        Self { dir, path }
    }

    /// The directory holding the socket: the `host` for Postgres clients.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The socket file: the `socket` option of MySQL clients.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl fmt::Display for UnixSocketAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unix://{}", self.path.display())
    }
}

mod sealed {
    use std::net::SocketAddr;

    use super::UnixSocketAddr;

    pub trait Sealed: Sized {
        /// This kind's address, out of a running socket's one address.
        fn pick(unix: Option<&UnixSocketAddr>, tcp: Option<SocketAddr>) -> Option<Self>;
    }

    impl Sealed for UnixSocketAddr {
        fn pick(unix: Option<&UnixSocketAddr>, _: Option<SocketAddr>) -> Option<Self> {
            unix.cloned()
        }
    }

    impl Sealed for SocketAddr {
        fn pick(_: Option<&UnixSocketAddr>, tcp: Option<SocketAddr>) -> Option<Self> {
            tcp
        }
    }
}

/// The kinds of address a local socket can listen on: [`UnixSocketAddr`] (the default) or a
/// loopback TCP [`SocketAddr`]. Sealed: there are no others.
pub trait ListenAddr: sealed::Sealed + Clone + fmt::Debug + Send + Sync + 'static {}

impl ListenAddr for UnixSocketAddr {}

impl ListenAddr for SocketAddr {}

/// `A`'s address of a running socket, if it listens on that kind.
pub(super) fn of<A: ListenAddr>(endpoint: &Endpoint) -> Option<A> {
    match endpoint {
        Endpoint::Tcp(addr) => A::pick(None, Some(*addr)),
        #[cfg(unix)]
        Endpoint::Unix { addr, .. } => A::pick(Some(addr), None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_reads_only_its_own_address() {
        let tcp = Endpoint::Tcp("127.0.0.1:5432".parse().unwrap());
        assert_eq!(of::<SocketAddr>(&tcp), Some("127.0.0.1:5432".parse().unwrap()));
        assert_eq!(of::<UnixSocketAddr>(&tcp), None);
        #[cfg(unix)]
        {
            let unix_addr = UnixSocketAddr::new("/d".into(), "/d/s".into());
            let unix = Endpoint::Unix {
                addr: unix_addr.clone(),
                owns_dir: false,
            };
            assert_eq!(of::<UnixSocketAddr>(&unix), Some(unix_addr));
            assert_eq!(of::<SocketAddr>(&unix), None);
            assert_eq!(unix.to_string(), "unix:///d/s");
        }
    }
}
