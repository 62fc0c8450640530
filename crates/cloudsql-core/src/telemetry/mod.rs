//! What the connector tells operators: OpenTelemetry metrics and `tracing` spans.
//!
//! **Metrics** (feature `telemetry`) use the names and meanings of Google's Go connector, so
//! dashboards built for it work for this one:
//!
//! | name | instrument | what |
//! | --- | --- | --- |
//! | [`cloudsqlconn/dial_latency`](DIAL_LATENCY) | histogram, ms | time from the call to `connect` to the stream, for each successful connect |
//! | [`cloudsqlconn/open_connections`](OPEN_CONNECTIONS) | up-down counter | streams returned and not yet dropped |
//! | [`cloudsqlconn/dial_failure_count`](DIAL_FAILURE_COUNT) | counter | failed connects |
//! | [`cloudsqlconn/refresh_success_count`](REFRESH_SUCCESS_COUNT) | counter | successful certificate refreshes |
//! | [`cloudsqlconn/refresh_failure_count`](REFRESH_FAILURE_COUNT) | counter | failed certificate refreshes |
//! | [`cloudsqlconn/bytes_sent`](BYTES_SENT) | counter, bytes | bytes written to instances |
//! | [`cloudsqlconn/bytes_received`](BYTES_RECEIVED) | counter, bytes | bytes read from instances |
//!
//! Every point carries the instance ([`INSTANCE_KEY`]), the connector's random id
//! ([`CONNECTOR_ID_KEY`]) and the refresh strategy ([`REFRESH_STRATEGY_KEY`]); connection
//! metrics also the IP type ([`IP_TYPE_KEY`]), and refresh failures the Admin API's status
//! name when it gave one ([`ERROR_CODE_KEY`]). The meter comes from OpenTelemetry's global
//! provider when the connector is built, or from
//! [`ConnectorBuilder::meter_provider`](crate::ConnectorBuilder::meter_provider).
//!
//! Bytes are counted in plain fields of each stream and added to the counters every 64 KiB,
//! every few seconds of traffic, and when the stream is dropped: no atomic operation or
//! allocation per read or write. Without the feature, nothing is counted and `opentelemetry` is
//! not a dependency.
//!
//! **Spans** (always, at `INFO`): `connect` (fields `instance`, `ip_type`, `iam_authn`,
//! `strategy`, `error`), `refresh` (`instance`, `iam_authn`, `strategy`, `attempt`, `error`) and
//! `relay`, one per connection a local socket relays (`instance`, `socket`, `bytes_sent`,
//! `bytes_received`, `error`). `error` holds the error with its causes, on one line.
//!
//! See `docs/telemetry.md` for wiring a meter provider and what the counting costs.

mod names;
mod outcome;
mod spans;

#[cfg(feature = "telemetry")]
mod connection;
#[cfg(feature = "telemetry")]
mod connector_id;
#[cfg(feature = "telemetry")]
mod metrics;
#[cfg(not(feature = "telemetry"))]
mod noop;

#[cfg(feature = "telemetry")]
pub(crate) use connection::ConnectionMeter;
#[cfg(feature = "telemetry")]
pub(crate) use metrics::{ConnectMeter, MeterChoice, Metrics, RefreshMeter};
pub use names::{
    BYTES_RECEIVED, BYTES_SENT, CONNECTOR_ID_KEY, DIAL_FAILURE_COUNT, DIAL_LATENCY, ERROR_CODE_KEY,
    INSTANCE_KEY, IP_TYPE_KEY, METER_NAME, METRIC_NAMES, OPEN_CONNECTIONS, REFRESH_FAILURE_COUNT,
    REFRESH_STRATEGY_KEY, REFRESH_SUCCESS_COUNT,
};
#[cfg(not(feature = "telemetry"))]
pub(crate) use noop::{ConnectMeter, ConnectionMeter, MeterChoice, Metrics, RefreshMeter};
pub(crate) use outcome::{connect_finished, refresh_finished};
pub(crate) use spans::{connect_span, record_error, refresh_span, relay_span};
