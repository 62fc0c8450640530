//! An instance's proxy listeners, one per address: closed when the instance stops (so a TCP
//! connect is refused) and bound again on the same addresses when it starts.

use std::future::poll_fn;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Handle;
use tokio::sync::watch;
use tracing::warn;

use crate::Error;
use crate::unpoisoned::lock;

/// How long `start` keeps trying to bind an address that is busy.
const REBIND_FOR: Duration = Duration::from_secs(2);
/// The pause between two bind attempts.
const REBIND_EVERY: Duration = Duration::from_millis(50);

/// One address and, while the instance runs, its bound socket.
#[derive(Debug)]
struct Slot {
    addr: SocketAddr,
    socket: Mutex<Option<TcpListener>>,
}

/// The listeners of one instance and whether it runs.
#[derive(Debug)]
pub(crate) struct Listeners {
    slots: Vec<Arc<Slot>>,
    /// `true` while the instance runs; every send wakes the accept loops to look again.
    running: Arc<watch::Sender<bool>>,
    runtime: Handle,
}

impl Listeners {
    /// Takes over bound listeners; must be called inside the Tokio runtime that will serve them.
    pub(crate) fn new(listeners: Vec<TcpListener>) -> Result<Self, Error> {
        let runtime = Handle::try_current().map_err(|_| Error::NoRuntime)?;
        let slots = listeners
            .into_iter()
            .map(|l| {
                let addr = l.local_addr().map_err(|source| Error::Bind {
                    purpose: "instance proxy".into(),
                    addr: "a loopback address".into(),
                    source,
                })?;
                Ok(Arc::new(Slot {
                    addr,
                    socket: Mutex::new(Some(l)),
                }))
            })
            .collect::<Result<_, Error>>()?;
        Ok(Self {
            slots,
            running: Arc::new(watch::Sender::new(true)),
            runtime,
        })
    }

    /// How many addresses there are.
    pub(crate) fn len(&self) -> usize {
        self.slots.len()
    }

    /// A receiver that sees every stop, start and re-bind.
    pub(crate) fn changes(&self) -> watch::Receiver<bool> {
        self.running.subscribe()
    }

    /// Accepts the next connection on address `index`; pending while it is closed (watch
    /// [`changes`](Self::changes) to try again when it opens).
    pub(crate) async fn accept(&self, index: usize) -> io::Result<TcpStream> {
        let Some(slot) = self.slots.get(index) else {
            return poll_fn(|_| Poll::Pending).await;
        };
        poll_fn(|cx| match lock(&slot.socket).as_ref() {
            Some(listener) => listener.poll_accept(cx).map_ok(|(tcp, _)| tcp),
            None => Poll::Pending,
        })
        .await
    }

    /// Whether the instance is stopped.
    pub(crate) fn is_stopped(&self) -> bool {
        !*self.running.borrow()
    }

    /// Closes every listener; new connections are refused from now on.
    pub(crate) fn stop(&self) {
        // Flag first: a re-bind in flight checks the flag under the slot's lock.
        self.running.send_replace(false);
        for slot in &self.slots {
            drop(lock(&slot.socket).take());
        }
    }

    /// Closes one listener for good (the instance shut down).
    pub(crate) fn close(&self, index: usize) {
        if let Some(slot) = self.slots.get(index) {
            drop(lock(&slot.socket).take());
        }
    }

    /// Binds every closed listener again on its address. An address that is busy is retried in
    /// the background for a while.
    pub(crate) fn start(&self) {
        self.running.send_replace(true);
        for slot in &self.slots {
            let mut socket = lock(&slot.socket);
            if socket.is_some() {
                continue;
            }
            match bind(&self.runtime, slot.addr) {
                Ok(listener) => *socket = Some(listener),
                Err(e) => {
                    warn!(addr = %slot.addr, error = %e, "proxy cannot listen yet; retrying");
                    drop(socket);
                    self.rebind_later(slot.clone());
                }
            }
        }
        // Wake the accept loops to poll the new sockets.
        self.running.send_replace(true);
    }

    fn rebind_later(&self, slot: Arc<Slot>) {
        let running = self.running.clone();
        let runtime = self.runtime.clone();
        self.runtime.spawn(async move {
            let deadline = Instant::now() + REBIND_FOR;
            loop {
                tokio::time::sleep(REBIND_EVERY).await;
                if !*running.borrow() {
                    return;
                }
                match bind(&runtime, slot.addr) {
                    Ok(listener) => {
                        let mut socket = lock(&slot.socket);
                        if *running.borrow() && socket.is_none() {
                            *socket = Some(listener);
                            drop(socket);
                            running.send_replace(true);
                        }
                        return;
                    }
                    Err(e) if Instant::now() >= deadline => {
                        warn!(addr = %slot.addr, error = %e, "proxy cannot listen; giving up");
                        return;
                    }
                    Err(_) => {}
                }
            }
        });
    }
}

/// Binds `addr` for the runtime's reactor, from any thread.
fn bind(runtime: &Handle, addr: SocketAddr) -> io::Result<TcpListener> {
    let listener = std::net::TcpListener::bind(addr)?;
    listener.set_nonblocking(true)?;
    let _runtime = runtime.enter();
    TcpListener::from_std(listener)
}
