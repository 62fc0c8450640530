//! The names of the metrics and of their attributes: Google's Go connector's, so that
//! dashboards line up across languages.

/// Histogram of the time, in milliseconds, from a call to `connect` to the stream it returns
/// (name resolution, waiting for a certificate, dial, TLS handshake), for each successful
/// connect.
pub const DIAL_LATENCY: &str = "cloudsqlconn/dial_latency";
/// Up-down counter of the streams returned by `connect` and not dropped yet (those a local
/// socket relays included).
pub const OPEN_CONNECTIONS: &str = "cloudsqlconn/open_connections";
/// Counter of failed connects (every error but [`Error::Closed`](crate::Error::Closed)).
pub const DIAL_FAILURE_COUNT: &str = "cloudsqlconn/dial_failure_count";
/// Counter of successful certificate refreshes (one per pair of Admin API calls that gave a
/// usable certificate).
pub const REFRESH_SUCCESS_COUNT: &str = "cloudsqlconn/refresh_success_count";
/// Counter of failed certificate refreshes.
pub const REFRESH_FAILURE_COUNT: &str = "cloudsqlconn/refresh_failure_count";
/// Counter of the bytes written to instances through the connector's streams (the database
/// protocol's bytes, inside TLS).
pub const BYTES_SENT: &str = "cloudsqlconn/bytes_sent";
/// Counter of the bytes read from instances through the connector's streams.
pub const BYTES_RECEIVED: &str = "cloudsqlconn/bytes_received";

/// Every metric the connector records.
pub const METRIC_NAMES: [&str; 7] = [
    DIAL_LATENCY,
    OPEN_CONNECTIONS,
    DIAL_FAILURE_COUNT,
    REFRESH_SUCCESS_COUNT,
    REFRESH_FAILURE_COUNT,
    BYTES_SENT,
    BYTES_RECEIVED,
];

/// Attribute: the instance connection name (`project:region:instance`); for a connect that
/// failed before its DNS name was resolved, the name as given.
pub const INSTANCE_KEY: &str = "cloudsql_instance";
/// Attribute: the connector's id, random per connector (Go's "dialer id").
pub const CONNECTOR_ID_KEY: &str = "cloudsql_dialer_id";
/// Attribute: the connector's refresh strategy, `background` or `lazy`.
pub const REFRESH_STRATEGY_KEY: &str = "cloudsql_refresh_strategy";
/// Attribute of connection metrics: the IP type dialled, `PUBLIC`, `PRIVATE`, `PSC` or
/// `SQL_DATA` (the SQL Data Service tunnel).
pub const IP_TYPE_KEY: &str = "cloudsql_ip_type";
/// Attribute of refresh failures: the Admin API's status name (`PERMISSION_DENIED`, …) when
/// its answer carried one.
pub const ERROR_CODE_KEY: &str = "cloudsql_error_code";

/// The instrumentation scope (meter) name the metrics are recorded under.
pub const METER_NAME: &str = "cloudsql-core";
