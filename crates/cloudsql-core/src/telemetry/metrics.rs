//! The connector's OpenTelemetry instruments, and what one connect or one refresh records.

use std::fmt;
use std::sync::Arc;
use std::time::Instant;

use opentelemetry::metrics::{Counter, Histogram, Meter, MeterProvider, UpDownCounter};
use opentelemetry::{InstrumentationScope, KeyValue, Value};

use super::connection::ConnectionMeter;
use super::connector_id::connector_id;
use super::names::{
    BYTES_RECEIVED, BYTES_SENT, CONNECTOR_ID_KEY, DIAL_FAILURE_COUNT, DIAL_LATENCY, ERROR_CODE_KEY,
    INSTANCE_KEY, IP_TYPE_KEY, METER_NAME, OPEN_CONNECTIONS, REFRESH_FAILURE_COUNT, REFRESH_STRATEGY_KEY,
    REFRESH_SUCCESS_COUNT,
};
use crate::{Error, InstanceConnectionName, IpType, RefreshStrategy};

/// Go's dial latency buckets, in milliseconds.
const LATENCY_BOUNDARIES_MS: [f64; 10] = [
    0.0, 5.0, 25.0, 100.0, 250.0, 500.0, 1000.0, 2000.0, 5000.0, 30000.0,
];

/// The meter a connector records with: one taken from a provider given to the builder, or
/// (by default) one from OpenTelemetry's global provider when the connector is built.
#[derive(Clone, Default)]
pub(crate) struct MeterChoice(Option<Meter>);

impl MeterChoice {
    /// A meter of `provider`, under the connector's instrumentation scope.
    pub(crate) fn from_provider<P: MeterProvider + ?Sized>(provider: &P) -> Self {
        Self(Some(provider.meter_with_scope(scope())))
    }
}

impl fmt::Debug for MeterChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_some() {
            "MeterChoice(given provider)"
        } else {
            "MeterChoice(global provider)"
        })
    }
}

fn scope() -> InstrumentationScope {
    InstrumentationScope::builder(METER_NAME)
        .with_version(env!("CARGO_PKG_VERSION"))
        .build()
}

/// One connector's instruments and id; cheap to clone.
#[derive(Clone)]
pub(crate) struct Metrics(Arc<Instruments>);

/// The instruments, shared by a connector, its caches and its streams.
pub(super) struct Instruments {
    connector_id: Value,
    dial_latency: Histogram<f64>,
    pub(super) open_connections: UpDownCounter<i64>,
    dial_failures: Counter<u64>,
    refresh_successes: Counter<u64>,
    refresh_failures: Counter<u64>,
    pub(super) bytes_sent: Counter<u64>,
    pub(super) bytes_received: Counter<u64>,
}

impl Metrics {
    /// Creates the instruments on `choice`'s meter, with a new connector id.
    pub(crate) fn new(choice: MeterChoice) -> Self {
        let meter = choice
            .0
            .unwrap_or_else(|| opentelemetry::global::meter_provider().meter_with_scope(scope()));
        Self(Arc::new(Instruments {
            connector_id: Value::from(connector_id()),
            dial_latency: meter
                .f64_histogram(DIAL_LATENCY)
                .with_description("The distribution of dialer latencies (ms)")
                .with_unit("ms")
                .with_boundaries(LATENCY_BOUNDARIES_MS.to_vec())
                .build(),
            open_connections: meter
                .i64_up_down_counter(OPEN_CONNECTIONS)
                .with_description("The current number of open Cloud SQL connections")
                .build(),
            dial_failures: meter
                .u64_counter(DIAL_FAILURE_COUNT)
                .with_description("The number of failed dial attempts")
                .build(),
            refresh_successes: meter
                .u64_counter(REFRESH_SUCCESS_COUNT)
                .with_description("The number of successful certificate refresh operations")
                .build(),
            refresh_failures: meter
                .u64_counter(REFRESH_FAILURE_COUNT)
                .with_description("The number of failed certificate refresh operations")
                .build(),
            bytes_sent: meter
                .u64_counter(BYTES_SENT)
                .with_description("The number of bytes sent to Cloud SQL")
                .with_unit("By")
                .build(),
            bytes_received: meter
                .u64_counter(BYTES_RECEIVED)
                .with_description("The number of bytes received from Cloud SQL")
                .with_unit("By")
                .build(),
        }))
    }

    /// Starts timing a connect that dials `ip_type`.
    pub(crate) fn connect(&self, ip_type: IpType, strategy: RefreshStrategy) -> ConnectMeter {
        ConnectMeter {
            metrics: self.clone(),
            started: Instant::now(),
            ip_type,
            strategy,
        }
    }

    /// The refresh counts of `instance`'s cache.
    pub(crate) fn refresh(
        &self,
        instance: &InstanceConnectionName,
        strategy: RefreshStrategy,
    ) -> RefreshMeter {
        RefreshMeter {
            metrics: self.clone(),
            attributes: vec![
                KeyValue::new(INSTANCE_KEY, instance.to_string()),
                KeyValue::new(CONNECTOR_ID_KEY, self.0.connector_id.clone()),
                KeyValue::new(REFRESH_STRATEGY_KEY, strategy_value(strategy)),
            ],
        }
    }

    pub(super) fn instruments(&self) -> &Instruments {
        &self.0
    }
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metrics")
            .field("connector_id", &self.0.connector_id.as_str())
            .finish_non_exhaustive()
    }
}

/// One connect, timed from its start.
#[derive(Debug)]
pub(crate) struct ConnectMeter {
    metrics: Metrics,
    started: Instant,
    ip_type: IpType,
    strategy: RefreshStrategy,
}

impl ConnectMeter {
    fn attributes(&self, instance: String) -> Vec<KeyValue> {
        vec![
            KeyValue::new(INSTANCE_KEY, instance),
            KeyValue::new(CONNECTOR_ID_KEY, self.metrics.0.connector_id.clone()),
            KeyValue::new(REFRESH_STRATEGY_KEY, strategy_value(self.strategy)),
            KeyValue::new(IP_TYPE_KEY, ip_type_value(self.ip_type)),
        ]
    }

    /// The connect returned a stream to `instance`: records its latency and one more open
    /// connection, and returns the meter the stream counts its bytes with.
    pub(crate) fn succeeded(self, instance: &str) -> ConnectionMeter {
        let attributes = self.attributes(instance.to_owned());
        let millis = self.started.elapsed().as_secs_f64() * 1000.0;
        self.metrics.0.dial_latency.record(millis, &attributes);
        ConnectionMeter::open(self.metrics, attributes)
    }

    /// The connect failed: one more dial failure, unless the connector was closed.
    pub(crate) fn failed(self, input: &str, resolved: Option<&InstanceConnectionName>, error: &Error) {
        if matches!(error, Error::Closed) {
            return;
        }
        let instance = match resolved {
            Some(name) => name.to_string(),
            None => crate::excerpt::excerpt(input),
        };
        self.metrics.0.dial_failures.add(1, &self.attributes(instance));
    }
}

/// The refresh counts of one instance's cache, with its attributes made once.
#[derive(Debug)]
pub(crate) struct RefreshMeter {
    metrics: Metrics,
    attributes: Vec<KeyValue>,
}

impl RefreshMeter {
    /// Counts one finished refresh; a failure carries the Admin API's status name if any.
    pub(crate) fn record(&self, result: Result<(), &Error>) {
        match result {
            Ok(()) => self.metrics.0.refresh_successes.add(1, &self.attributes),
            Err(Error::AdminApi {
                api_status: Some(code),
                ..
            }) => {
                let mut attributes = self.attributes.clone();
                attributes.push(KeyValue::new(ERROR_CODE_KEY, code.clone()));
                self.metrics.0.refresh_failures.add(1, &attributes);
            }
            Err(_) => self.metrics.0.refresh_failures.add(1, &self.attributes),
        }
    }
}

/// The IP type's attribute value: the Admin API's name for it, as Go's connector uses.
fn ip_type_value(ip_type: IpType) -> &'static str {
    match ip_type {
        IpType::Public => "PUBLIC",
        IpType::Private => "PRIVATE",
        IpType::Psc => "PSC",
        IpType::SqlData => "SQL_DATA",
    }
}

fn strategy_value(strategy: RefreshStrategy) -> &'static str {
    match strategy {
        RefreshStrategy::Background => "background",
        RefreshStrategy::Lazy => "lazy",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attribute_values_are_stable() {
        assert_eq!(ip_type_value(IpType::Public), "PUBLIC");
        assert_eq!(ip_type_value(IpType::Private), "PRIVATE");
        assert_eq!(ip_type_value(IpType::Psc), "PSC");
        assert_eq!(strategy_value(RefreshStrategy::Background), "background");
        assert_eq!(strategy_value(RefreshStrategy::Lazy), "lazy");
    }

    #[test]
    fn each_connector_gets_its_own_id() {
        let a = Metrics::new(MeterChoice::default());
        let b = Metrics::new(MeterChoice::default());
        assert_ne!(a.0.connector_id.as_str(), b.0.connector_id.as_str());
        assert!(format!("{a:?}").contains(&*a.0.connector_id.as_str()));
    }
}
