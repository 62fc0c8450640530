//! One stream's share of the connection metrics: one more open connection while it lives, and
//! the bytes it carries.
//!
//! Reads and writes only add to plain fields of the stream; the counters are updated every
//! [`FLUSH_BYTES`] of traffic, on the first read or write [`FLUSH_INTERVAL`] after the last
//! update (the clock is looked at once every [`CLOCK_EVERY`] calls), and when the stream is
//! dropped. No atomic operation, lock or allocation happens per read or write.

use std::fmt;
use std::time::{Duration, Instant};

use opentelemetry::KeyValue;

use super::Metrics;

/// Pending bytes (both ways) that update the counters at once.
const FLUSH_BYTES: u64 = 64 * 1024;
/// Pending bytes older than this update the counters on the next check.
const FLUSH_INTERVAL: Duration = Duration::from_secs(5);
/// Reads and writes between two looks at the clock.
const CLOCK_EVERY: u32 = 64;

/// The metrics of one stream. A stream not returned by a connect yet (during the metadata
/// exchange, say) has an inactive one, which counts nothing anywhere.
pub(crate) struct ConnectionMeter {
    opened: Option<Opened>,
    sent: u64,
    received: u64,
    calls: u32,
}

struct Opened {
    metrics: Metrics,
    attributes: Box<[KeyValue]>,
    flushed_at: Instant,
}

impl ConnectionMeter {
    /// A meter that counts nothing, until [`open`](Self::open) replaces it.
    pub(crate) fn inactive() -> Self {
        Self {
            opened: None,
            sent: 0,
            received: 0,
            calls: 0,
        }
    }

    /// A connection just returned: counts one more open connection until dropped.
    pub(super) fn open(metrics: Metrics, attributes: Vec<KeyValue>) -> Self {
        metrics.instruments().open_connections.add(1, &attributes);
        Self {
            opened: Some(Opened {
                metrics,
                attributes: attributes.into_boxed_slice(),
                flushed_at: Instant::now(),
            }),
            sent: 0,
            received: 0,
            calls: 0,
        }
    }

    /// `n` bytes were written to the instance.
    #[inline]
    pub(crate) fn sent(&mut self, n: usize) {
        self.sent += n as u64;
        self.tick();
    }

    /// `n` bytes were read from the instance.
    #[inline]
    pub(crate) fn received(&mut self, n: usize) {
        self.received += n as u64;
        self.tick();
    }

    #[inline]
    fn tick(&mut self) {
        self.calls = self.calls.wrapping_add(1);
        if self.sent + self.received >= FLUSH_BYTES || self.calls.is_multiple_of(CLOCK_EVERY) {
            self.maybe_flush();
        }
    }

    #[cold]
    fn maybe_flush(&mut self) {
        let due = match &self.opened {
            None => true,
            Some(opened) => {
                self.sent + self.received >= FLUSH_BYTES || opened.flushed_at.elapsed() >= FLUSH_INTERVAL
            }
        };
        if due {
            self.flush();
        }
    }

    /// Adds the pending bytes to the counters (drops them when inactive).
    fn flush(&mut self) {
        let (sent, received) = (std::mem::take(&mut self.sent), std::mem::take(&mut self.received));
        let Some(opened) = &mut self.opened else {
            return;
        };
        let instruments = opened.metrics.instruments();
        if sent > 0 {
            instruments.bytes_sent.add(sent, &opened.attributes);
        }
        if received > 0 {
            instruments.bytes_received.add(received, &opened.attributes);
        }
        opened.flushed_at = Instant::now();
    }
}

impl Drop for ConnectionMeter {
    fn drop(&mut self) {
        self.flush();
        if let Some(opened) = &self.opened {
            opened
                .metrics
                .instruments()
                .open_connections
                .add(-1, &opened.attributes);
        }
    }
}

impl fmt::Debug for ConnectionMeter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectionMeter")
            .field("active", &self.opened.is_some())
            .field("pending_sent", &self.sent)
            .field("pending_received", &self.received)
            .finish()
    }
}
