//! One connector's local sockets: each socket's shared state, and the registry that creates a
//! reusable socket once however many callers ask for it at the same time.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::OnceCell;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::Listen;
#[cfg(unix)]
use super::addr::UnixSocketAddr;
use super::refusal::Refusal;
use crate::{DialOptions, Error};

/// Where a running socket listens.
#[derive(Debug)]
pub(super) enum Endpoint {
    Tcp(SocketAddr),
    #[cfg(unix)]
    Unix {
        addr: UnixSocketAddr,
        /// Whether the connector made the directory (and so removes it).
        owns_dir: bool,
    },
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Tcp(addr) => write!(f, "tcp://{addr}"),
            #[cfg(unix)]
            Endpoint::Unix { addr, .. } => addr.fmt(f),
        }
    }
}

/// What a socket's accept loop and relays share with its handles. The tasks hold this, never
/// the [`SocketEntry`], so dropping every entry reference stops the listener.
#[derive(Debug)]
pub(super) struct SocketState {
    pub(super) instance: String,
    pub(super) endpoint: Endpoint,
    /// How to tell a client why its connection is refused.
    pub(super) refusal: Refusal,
    /// Cancelled by an explicit shutdown only: it ends the relays too.
    pub(super) relay_stop: CancellationToken,
    last_error: Mutex<Option<Error>>,
    failed_dials: AtomicU64,
}

impl SocketState {
    pub(super) fn new(instance: String, endpoint: Endpoint, refusal: Refusal) -> Self {
        Self {
            instance,
            endpoint,
            refusal,
            relay_stop: CancellationToken::new(),
            last_error: Mutex::new(None),
            failed_dials: AtomicU64::new(0),
        }
    }

    /// Records a failed dial; the error is stored before the count moves, so a caller that sees
    /// the count change also sees this error (or a later one).
    pub(super) fn record_failure(&self, error: &Error) {
        *self.last_error.lock().unwrap_or_else(PoisonError::into_inner) = Some(error.clone());
        self.failed_dials.fetch_add(1, Ordering::AcqRel);
    }

    pub(super) fn last_error(&self) -> Option<Error> {
        self.last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub(super) fn failed_dials(&self) -> u64 {
        self.failed_dials.load(Ordering::Acquire)
    }
}

/// One running local socket, shared by its handles and the connector's registry.
#[derive(Debug)]
pub(crate) struct SocketEntry {
    pub(super) state: Arc<SocketState>,
    /// Cancelled when the socket stops listening (shutdown, connector dropped, entry dropped).
    pub(super) accept_stop: CancellationToken,
    pub(super) tasks: TaskTracker,
}

impl SocketEntry {
    pub(super) fn is_stopped(&self) -> bool {
        self.accept_stop.is_cancelled()
    }

    /// Stops accepting and removes the socket file (and the directory, if the connector made
    /// it). Relayed connections go on until their client or server ends them. Idempotent.
    pub(super) fn stop_listening(&self) {
        self.accept_stop.cancel();
        self.tasks.close();
        #[cfg(unix)]
        if let Endpoint::Unix { addr, owns_dir } = &self.state.endpoint {
            let _ = std::fs::remove_file(addr.path());
            if *owns_dir {
                let _ = std::fs::remove_dir(addr.dir());
            }
        }
    }

    /// Stops accepting and ends every relayed connection too.
    pub(super) fn shutdown(&self) {
        self.stop_listening();
        self.state.relay_stop.cancel();
    }
}

impl Drop for SocketEntry {
    fn drop(&mut self) {
        self.stop_listening();
    }
}

/// What makes two sockets interchangeable: the same instance, listening the same way, dialing
/// with the same options.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct ReuseKey {
    pub(super) instance: String,
    pub(super) listen: Listen,
    pub(super) options: DialOptions,
}

/// A reusable socket being created or created; every caller of one key awaits the same cell, so
/// a failed creation reaches them all once and is then forgotten.
type Slot = Arc<OnceCell<Result<Arc<SocketEntry>, Error>>>;

/// The local sockets of one connector. Closing the connector leaves them listening (a dial
/// then fails with [`Error::Closed`] and the client is told so); dropping it stops them.
#[derive(Debug, Default)]
pub(crate) struct SocketRegistry {
    state: Mutex<RegistryState>,
}

#[derive(Debug, Default)]
struct RegistryState {
    /// Reusable sockets.
    shared: HashMap<ReuseKey, Slot>,
    /// Sockets with an explicit directory or port, never reused.
    others: Vec<Arc<SocketEntry>>,
}

impl SocketRegistry {
    fn lock(&self) -> std::sync::MutexGuard<'_, RegistryState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The slot for `key`, new if none.
    pub(super) fn slot(&self, key: &ReuseKey) -> Slot {
        self.lock().shared.entry(key.clone()).or_default().clone()
    }

    /// Drops `slot` from the map (if it is still the one there), so the next caller creates anew.
    pub(super) fn forget(&self, key: &ReuseKey, slot: &Slot) {
        let mut state = self.lock();
        if state.shared.get(key).is_some_and(|s| Arc::ptr_eq(s, slot)) {
            state.shared.remove(key);
        }
    }

    pub(super) fn add(&self, entry: Arc<SocketEntry>) {
        let mut state = self.lock();
        state.others.retain(|e| !e.is_stopped());
        state.others.push(entry);
    }

    /// Stops every socket's listener; relayed connections stay open. Called when the last
    /// connector clone drops.
    pub(crate) fn stop_all(&self) {
        let (shared, others) = {
            let mut state = self.lock();
            (
                std::mem::take(&mut state.shared),
                std::mem::take(&mut state.others),
            )
        };
        let created = shared
            .into_values()
            .filter_map(|slot| slot.get().and_then(|r| r.as_ref().ok()).cloned());
        for entry in created.chain(others) {
            entry.stop_listening();
        }
    }
}
