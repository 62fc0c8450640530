//! The database connection behind one session: it outlives the calls that carry it, so a
//! resumed session (`ContinueSession`) finds it with every byte the client has not acknowledged.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use cloudsql_core::sql_data::messages::DataPacket;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{Notify, mpsc};
use tracing::debug;

use crate::instance::{Instance, Issued};
use crate::unpoisoned::lock;

/// Bytes read from the database at once.
const CHUNK: usize = 16 * 1024;

/// What the database sent that the client has not acknowledged.
#[derive(Default)]
struct Outbox {
    /// The session offset of `bytes[0]`.
    base: i64,
    bytes: Vec<u8>,
    closed: bool,
}

/// One database session, shared by the calls that carry it.
pub(crate) struct Database {
    instance: Arc<Instance>,
    principal: String,
    /// Client bytes to the database; `None` shuts its write side.
    to_db: mpsc::Sender<Option<Bytes>>,
    /// Client bytes received so far (the offset the next new byte has).
    received: tokio::sync::Mutex<i64>,
    outbox: Mutex<Outbox>,
    changed: Notify,
    reset_done: AtomicBool,
    /// Client offsets are honoured (a resumable session). Otherwise packets are taken in order
    /// as they come: Google's Go and Python clients leave `first_byte_offset` at 0.
    offsets: bool,
}

impl Database {
    /// Starts the login step and relay for `principal` on `instance`.
    pub(crate) fn open(instance: Arc<Instance>, principal: String, offsets: bool) -> Arc<Self> {
        let (to_db, mut from_client) = mpsc::channel::<Option<Bytes>>(16);
        let database = Arc::new(Self {
            instance: instance.clone(),
            principal: principal.clone(),
            to_db,
            received: tokio::sync::Mutex::new(0),
            outbox: Mutex::default(),
            changed: Notify::new(),
            reset_done: AtomicBool::new(false),
            offsets,
        });
        let (ours, theirs) = tokio::io::duplex(64 * 1024);
        let (mut rd, mut wr) = tokio::io::split(ours);
        let reset = instance.reset_token();
        tokio::spawn(async move {
            let issued = Issued {
                principal: Some(principal),
            };
            let session = crate::proxy::session(&instance, theirs, issued);
            tokio::select! {
                result = session => if let Err(e) = result {
                    debug!(instance = instance.connection_name(), error = %e, "SQL Data Service database session ended with an error");
                },
                () = reset.cancelled() => {}
                () = instance.shutdown.cancelled() => {}
            }
        });
        tokio::spawn(async move {
            while let Some(Some(data)) = from_client.recv().await {
                if wr.write_all(&data).await.is_err() {
                    break;
                }
            }
            let _ = wr.shutdown().await;
        });
        let weak = Arc::downgrade(&database);
        tokio::spawn(async move {
            loop {
                let mut buf = BytesMut::with_capacity(CHUNK);
                let n = rd.read_buf(&mut buf).await.unwrap_or(0);
                let Some(database) = weak.upgrade() else { return };
                {
                    let mut outbox = lock(&database.outbox);
                    if n == 0 {
                        outbox.closed = true;
                    } else {
                        outbox.bytes.extend_from_slice(&buf);
                    }
                }
                database.changed.notify_waiters();
                if n == 0 {
                    return;
                }
            }
        });
        database
    }

    pub(crate) fn instance(&self) -> &Arc<Instance> {
        &self.instance
    }

    pub(crate) fn principal(&self) -> &str {
        &self.principal
    }

    /// Passes a client packet on, without the bytes already received; returns the client bytes
    /// received so far, or `None` for a gap or a closed database.
    pub(crate) async fn write(&self, packet: DataPacket) -> Option<i64> {
        let mut received = self.received.lock().await;
        let skip = if self.offsets {
            usize::try_from(*received - packet.first_byte_offset).ok()?
        } else {
            0
        };
        if skip < packet.data.len() {
            let fresh = packet.data.slice(skip..);
            let len = i64::try_from(fresh.len()).ok()?;
            self.to_db.send(Some(fresh)).await.ok()?;
            *received += len;
        }
        Some(*received)
    }

    /// The client received everything before `offset`: it is never resent.
    pub(crate) fn acked(&self, offset: i64) {
        let mut outbox = lock(&self.outbox);
        let drop = usize::try_from(offset - outbox.base)
            .unwrap_or(0)
            .min(outbox.bytes.len());
        outbox.bytes.drain(..drop);
        outbox.base += i64::try_from(drop).unwrap_or(0);
    }

    /// The database's bytes from `offset` on, waiting for some; `None` once it closed and all
    /// was read.
    pub(crate) async fn read_from(&self, offset: i64) -> Option<Bytes> {
        loop {
            let notified = self.changed.notified();
            {
                let outbox = lock(&self.outbox);
                let start = usize::try_from(offset - outbox.base).unwrap_or(0);
                if start < outbox.bytes.len() {
                    return Some(Bytes::copy_from_slice(&outbox.bytes[start..]));
                }
                if outbox.closed {
                    return None;
                }
            }
            notified.await;
        }
    }

    /// Ends the client's side; the database closes the connection.
    pub(crate) async fn close(&self) {
        let _ = self.to_db.send(None).await;
    }

    /// Whether the once-per-session reset fault is still to fire (and marks it fired).
    pub(crate) fn take_reset(&self) -> bool {
        !self.reset_done.swap(true, Ordering::AcqRel)
    }
}
