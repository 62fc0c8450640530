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

#[cfg(test)]
mod tests {
    use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData};
    use opentelemetry_sdk::metrics::{InMemoryMetricExporter, PeriodicReader, SdkMeterProvider};

    use super::*;
    use crate::telemetry::{BYTES_RECEIVED, BYTES_SENT, MeterChoice, OPEN_CONNECTIONS};
    use crate::{IpType, RefreshStrategy};

    struct Sdk {
        provider: SdkMeterProvider,
        exporter: InMemoryMetricExporter,
    }

    impl Sdk {
        fn new() -> Self {
            let exporter = InMemoryMetricExporter::default();
            let provider = SdkMeterProvider::builder()
                .with_reader(PeriodicReader::builder(exporter.clone()).build())
                .build();
            Self { provider, exporter }
        }

        /// A metric's sum over its points (0 if never recorded).
        fn total(&self, name: &str) -> i64 {
            self.exporter.reset();
            self.provider.force_flush().unwrap();
            let exported = self.exporter.get_finished_metrics().unwrap();
            let Some(last) = exported.last() else { return 0 };
            last.scope_metrics()
                .flat_map(|s| s.metrics())
                .filter(|m| m.name() == name)
                .map(|m| match m.data() {
                    AggregatedMetrics::U64(MetricData::Sum(s)) => s
                        .data_points()
                        .map(|p| i64::try_from(p.value()).unwrap())
                        .sum::<i64>(),
                    AggregatedMetrics::I64(MetricData::Sum(s)) => {
                        s.data_points().map(|p| p.value()).sum::<i64>()
                    }
                    other => panic!("{other:?}"),
                })
                .sum::<i64>()
        }

        fn opened(&self) -> ConnectionMeter {
            let metrics = Metrics::new(MeterChoice::from_provider(&self.provider));
            metrics
                .connect(IpType::Public, RefreshStrategy::Background)
                .succeeded("p:r:i")
        }
    }

    #[test]
    fn small_traffic_is_reported_on_drop_and_the_connection_closes() {
        let sdk = Sdk::new();
        let mut meter = sdk.opened();
        assert_eq!(sdk.total(OPEN_CONNECTIONS), 1);
        meter.sent(100);
        meter.received(1000);
        meter.received(24);
        assert_eq!(sdk.total(BYTES_SENT), 0, "pending until a report is due");
        drop(meter);
        assert_eq!(sdk.total(BYTES_SENT), 100);
        assert_eq!(sdk.total(BYTES_RECEIVED), 1024);
        assert_eq!(sdk.total(OPEN_CONNECTIONS), 0);
    }

    #[test]
    fn bulk_traffic_is_reported_every_64_kib_while_open() {
        let sdk = Sdk::new();
        let mut meter = sdk.opened();
        for _ in 0..15 {
            meter.received(4096);
        }
        assert_eq!(sdk.total(BYTES_RECEIVED), 0, "60 KiB: not yet");
        meter.received(4096);
        assert_eq!(sdk.total(BYTES_RECEIVED), 64 * 1024);
        meter.received(10);
        meter.sent(5);
        drop(meter);
        assert_eq!(sdk.total(BYTES_RECEIVED), 64 * 1024 + 10);
        assert_eq!(sdk.total(BYTES_SENT), 5);
    }

    #[test]
    fn an_inactive_meter_counts_nothing_and_replacing_it_drops_its_bytes() {
        let sdk = Sdk::new();
        let mut meter = ConnectionMeter::inactive();
        for _ in 0..100 {
            meter.sent(4096);
        }
        meter = sdk.opened();
        meter.received(7);
        drop(meter);
        assert_eq!(sdk.total(BYTES_SENT), 0);
        assert_eq!(sdk.total(BYTES_RECEIVED), 7);
        assert_eq!(sdk.total(OPEN_CONNECTIONS), 0);
    }
}
