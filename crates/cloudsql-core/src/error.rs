//! The crate's one error type.

use std::error::Error as StdError;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::credentials::CredentialsError;

/// A shareable source error.
pub(crate) type Source = Arc<dyn StdError + Send + Sync + 'static>;

/// Everything that can go wrong while connecting to a Cloud SQL instance.
///
/// Errors are `Clone` so one failed refresh can be reported to every caller that waited for it.
/// Use [`Error::kind`] to decide whether retrying can help.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The instance connection name is malformed.
    #[error(
        "invalid instance connection name `{input}`: {reason}; it must have format PROJECT:REGION:INSTANCE \
         (or DOMAIN:PROJECT:REGION:INSTANCE for legacy domain-scoped projects) with lowercase parts, \
         or be a DNS name whose TXT record holds one"
    )]
    InvalidInstanceName {
        /// The input as given, cut short when long and with control characters escaped.
        input: String,
        /// Which part is wrong and why.
        reason: String,
    },

    /// A connector or dial option is invalid.
    #[error("invalid configuration: {message}")]
    Config {
        /// What is wrong and how to fix it.
        message: String,
    },

    /// Credentials could not be loaded or a token could not be obtained.
    #[error("could not obtain credentials for instance `{instance}`")]
    Credentials {
        /// The instance the token was needed for.
        instance: String,
        /// Why the token could not be obtained.
        #[source]
        source: CredentialsError,
    },

    /// The Cloud SQL Admin API answered with an error status.
    #[error(
        "Cloud SQL Admin API {method} for instance `{instance}` failed with HTTP {status}: {message}{}",
        admin_api_hint(*.status, .message)
    )]
    AdminApi {
        /// The instance the call was for.
        instance: String,
        /// The API method (`connectSettings`, `generateEphemeralCert`).
        method: &'static str,
        /// The HTTP status code.
        status: u16,
        /// The API's status name, such as `PERMISSION_DENIED`, when the body carried one.
        api_status: Option<String>,
        /// The API's own `error.message`, or the start of the raw body when it had none; either
        /// way at most a few hundred bytes, with control characters escaped.
        message: String,
    },

    /// The Cloud SQL Admin API could not be reached.
    #[error("Cloud SQL Admin API {method} for instance `{instance}` could not be reached")]
    AdminApiUnreachable {
        /// The instance the call was for.
        instance: String,
        /// The API method.
        method: &'static str,
        /// The transport error.
        #[source]
        source: Source,
    },

    /// The Cloud SQL Admin API answered with a body this connector cannot use.
    #[error("Cloud SQL Admin API {method} for instance `{instance}` returned an unusable response: {detail}")]
    AdminApiResponse {
        /// The instance the call was for.
        instance: String,
        /// The API method.
        method: &'static str,
        /// What was wrong with the body.
        detail: String,
    },

    /// The Cloud SQL Admin API answered with a body larger than the connector accepts.
    ///
    /// Real answers are a few kilobytes, so this points at a wrong endpoint or something in
    /// between (a proxy, a captive portal) rather than a passing fault; the call is not retried.
    #[error(
        "Cloud SQL Admin API {method} for instance `{instance}` answered with a body over {limit} bytes, \
         which is not an Admin API answer; check the Admin API endpoint and any proxy in between"
    )]
    AdminApiResponseTooLarge {
        /// The instance the call was for.
        instance: String,
        /// The API method.
        method: &'static str,
        /// The largest body accepted, in bytes.
        limit: u64,
    },

    /// The instance is in another region than its connection name says.
    #[error(
        "instance `{instance}` is in region `{actual}`, but the connection name says `{expected}`; \
         correct the region in the connection name"
    )]
    RegionMismatch {
        /// The instance connection name.
        instance: String,
        /// The region in the connection name.
        expected: String,
        /// The region the Admin API reported (cut short when long).
        actual: String,
    },

    /// The instance has no address of the requested IP type.
    #[error(
        "instance `{instance}` has no {wanted} address; it has {available} — choose one of those with IpType"
    )]
    NoIpAddress {
        /// The instance connection name.
        instance: String,
        /// The IP type asked for.
        wanted: crate::IpType,
        /// The address types the instance does have.
        available: String,
    },

    /// The driver does not speak the instance's database engine.
    #[error(
        "a {driver} driver cannot connect to instance `{instance}`, which runs {database_version}; \
         use the driver crate for that engine"
    )]
    IncompatibleDriver {
        /// The instance connection name.
        instance: String,
        /// The engine the driver speaks.
        driver: crate::Engine,
        /// The instance's `databaseVersion`.
        database_version: String,
    },

    /// Automatic IAM database authentication was asked for an engine that does not support it.
    #[error(
        "automatic IAM database authentication is not supported for {engine} (instance `{instance}`); \
         turn it off and log in with a database user and password"
    )]
    IamAuthnNotSupported {
        /// The instance connection name.
        instance: String,
        /// The instance's engine.
        engine: crate::Engine,
    },

    /// The ephemeral client certificate cannot be used.
    #[error("the ephemeral certificate for instance `{instance}` is unusable: {detail}")]
    InvalidCertificate {
        /// The instance connection name.
        instance: String,
        /// What is wrong with it.
        detail: String,
    },

    /// The TCP connection to the instance's server-side proxy failed.
    #[error("could not reach instance `{instance}` at {address}")]
    Dial {
        /// The instance connection name.
        instance: String,
        /// The address dialed (`host:port`).
        address: String,
        /// The I/O error.
        #[source]
        source: Source,
    },

    /// The TLS handshake with the instance failed, including a failed server identity check.
    #[error("TLS handshake with instance `{instance}` at {address} failed")]
    Tls {
        /// The instance connection name.
        instance: String,
        /// The address dialed (`host:port`).
        address: String,
        /// The TLS error; for a refused server it names the check that failed.
        #[source]
        source: Source,
    },

    /// The metadata exchange with the server-side proxy failed.
    #[error("metadata exchange with instance `{instance}` failed: {detail}")]
    MetadataExchange {
        /// The instance connection name.
        instance: String,
        /// What went wrong.
        detail: String,
    },

    /// A DNS name given as the instance could not be resolved to a connection name.
    #[error("cannot resolve `{name}` to a Cloud SQL instance: {detail}")]
    DnsResolution {
        /// The DNS name as given.
        name: String,
        /// What went wrong and what to do.
        detail: String,
    },

    /// Connecting took longer than the configured timeout.
    ///
    /// `stage` says what the connect was doing when time ran out; when it was waiting for
    /// instance data and an earlier refresh had failed, that failure is the source.
    #[error("connecting to instance `{instance}` timed out after {timeout:?} while {stage}; {hint}", hint = stage.hint())]
    Timeout {
        /// The instance connection name (or the DNS name being resolved).
        instance: String,
        /// The timeout that elapsed.
        timeout: Duration,
        /// What the connect was waiting for.
        stage: ConnectStage,
        /// The last refresh failure for this instance, when the connect was waiting for a refresh.
        #[source]
        last_error: Option<Source>,
    },

    /// The SQL Data Service ([`IpType::SqlData`](crate::IpType::SqlData)) refused or ended the
    /// tunnel with a gRPC status.
    #[error(
        "SQL Data Service tunnel to instance `{instance}` failed with gRPC status {code}: {message}; {hint}"
    )]
    SqlData {
        /// The instance connection name.
        instance: String,
        /// The gRPC status code name, such as `PERMISSION_DENIED` or `UNAVAILABLE`.
        code: &'static str,
        /// The server's message, cut short when long.
        message: String,
        /// What to do about it.
        hint: &'static str,
    },

    /// The SQL Data Service answered `RESOURCE_EXHAUSTED` for the instance: no tunnel to it is
    /// tried again until `retry_after` has passed (the wait doubles from 5 s with each refusal).
    #[error(
        "the SQL Data Service is out of capacity for instance `{instance}` (gRPC RESOURCE_EXHAUSTED: \
         {message}); no tunnel to it is tried for {retry_after:?} — retry later, or connect with \
         another IpType"
    )]
    SqlDataExhausted {
        /// The instance connection name.
        instance: String,
        /// The server's message (empty when the cooldown refused the connect before any call).
        message: String,
        /// How long until the tunnel is tried again.
        retry_after: Duration,
    },

    /// The connector was closed; no more connections can be made with it.
    #[error("the connector is closed; build a new Connector to connect again")]
    Closed,

    /// A local socket could not be set up: its directory could not be made or inspected, a
    /// stale socket file could not be removed, or it could not listen.
    #[error("cannot {action} {} for a local socket", path.display())]
    LocalSocketIo {
        /// What failed, such as `listen on` or `create the directory`.
        action: &'static str,
        /// The socket file or its directory; for a TCP socket, the address.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: Source,
    },
}

/// What a connect was doing when its timeout elapsed (see [`Error::Timeout`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConnectStage {
    /// Resolving a DNS name to an instance connection name.
    ResolvingName,
    /// Waiting for instance data (connect settings and a client certificate) from the Admin API.
    Refreshing,
    /// Opening the TCP connection to the server-side proxy.
    Dialing,
    /// Running the TLS 1.3 handshake with the server-side proxy.
    Handshake,
    /// Running the metadata exchange with the server-side proxy.
    MetadataExchange,
    /// Opening the SQL Data Service tunnel (the gRPC connection to the Admin API host).
    Tunnel,
}

impl ConnectStage {
    fn hint(self) -> &'static str {
        match self {
            ConnectStage::ResolvingName => "check the DNS server or raise the timeout",
            ConnectStage::Refreshing => {
                "the Cloud SQL Admin API is slow or failing; the refresh goes on in the background, \
                 so a later connect can succeed — raise the timeout or retry"
            }
            ConnectStage::Dialing | ConnectStage::Handshake | ConnectStage::MetadataExchange => {
                "check the network path to the instance (firewall, IP type) or raise the timeout"
            }
            ConnectStage::Tunnel => {
                "check the network path to the Cloud SQL Admin API host or raise the timeout"
            }
        }
    }
}

impl std::fmt::Display for ConnectStage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ConnectStage::ResolvingName => "resolving the instance's DNS name",
            ConnectStage::Refreshing => "waiting for instance data from the Cloud SQL Admin API",
            ConnectStage::Dialing => "opening a TCP connection to the server-side proxy",
            ConnectStage::Handshake => "running the TLS handshake with the server-side proxy",
            ConnectStage::MetadataExchange => "running the metadata exchange with the server-side proxy",
            ConnectStage::Tunnel => "opening the SQL Data Service tunnel",
        })
    }
}

/// Broad classes of [`Error`], telling callers whether retrying can help.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// Bad input or configuration; retrying will fail the same way.
    Config,
    /// Credentials or Admin API trouble while refreshing instance data; may pass.
    Refresh,
    /// Network or handshake trouble reaching the instance; may pass.
    Dial,
    /// The connector was closed.
    Closed,
}

impl Error {
    /// The class of this error.
    ///
    /// ```
    /// use cloudsql_core::{ErrorKind, InstanceConnectionName};
    /// let err = "not-a-name".parse::<InstanceConnectionName>().unwrap_err();
    /// assert_eq!(err.kind(), ErrorKind::Config);
    /// ```
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::InvalidInstanceName { .. }
            | Error::Config { .. }
            | Error::RegionMismatch { .. }
            | Error::NoIpAddress { .. }
            | Error::IncompatibleDriver { .. }
            | Error::IamAuthnNotSupported { .. }
            | Error::LocalSocketIo { .. } => ErrorKind::Config,
            Error::AdminApi { status, .. } if (400..500).contains(status) && *status != 429 => {
                ErrorKind::Config
            }
            Error::Credentials { .. }
            | Error::AdminApi { .. }
            | Error::AdminApiUnreachable { .. }
            | Error::AdminApiResponse { .. }
            | Error::AdminApiResponseTooLarge { .. }
            | Error::InvalidCertificate { .. }
            | Error::DnsResolution { .. } => ErrorKind::Refresh,
            Error::Dial { .. }
            | Error::Tls { .. }
            | Error::MetadataExchange { .. }
            | Error::Timeout { .. }
            | Error::SqlDataExhausted { .. } => ErrorKind::Dial,
            Error::SqlData { code, .. } => match *code {
                "INVALID_ARGUMENT"
                | "NOT_FOUND"
                | "PERMISSION_DENIED"
                | "UNAUTHENTICATED"
                | "FAILED_PRECONDITION"
                | "UNIMPLEMENTED" => ErrorKind::Config,
                _ => ErrorKind::Dial,
            },
            Error::Closed => ErrorKind::Closed,
        }
    }

    /// Whether retrying the same call may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self.kind(), ErrorKind::Refresh | ErrorKind::Dial)
    }

    /// Errors that make an instance's cached data useless: no background work should keep
    /// running for it.
    pub(crate) fn evicts_cache(&self) -> bool {
        match self {
            Error::AdminApi { status, .. } => matches!(status, 400 | 403 | 404),
            Error::RegionMismatch { .. } | Error::NoIpAddress { .. } => true,
            _ => false,
        }
    }

    pub(crate) fn config(message: impl Into<String>) -> Self {
        Error::Config {
            message: message.into(),
        }
    }

    /// A local socket's I/O error: `action` on `path` failed.
    pub(crate) fn local_socket_io(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        Error::LocalSocketIo {
            action,
            path: path.into(),
            source: Arc::new(source),
        }
    }
}

/// What to do about an Admin API refusal, after the API's own message: the API's words say what
/// failed, not which knob to turn.
fn admin_api_hint(status: u16, message: &str) -> &'static str {
    match status {
        401 => " (the access token was refused: check the connector's credentials)",
        // SERVICE_DISABLED carries its own instructions (the URL to enable the API).
        403 if message.contains("Enable it") => "",
        403 => {
            " (make sure the account has the Cloud SQL Client role on the instance's project, and \
             that the project id in the connection name has no typo: Cloud SQL answers 403 for a \
             project the caller cannot see)"
        }
        404 => " (check the connection name `project:region:instance`: no such instance in that project)",
        _ => "",
    }
}

#[cfg(test)]
mod every_variant;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_send_sync_and_static() {
        fn assert_bounds<T: Send + Sync + 'static + StdError>() {}
        assert_bounds::<Error>();
    }

    #[test]
    fn client_errors_do_not_retry_but_server_errors_do() {
        let api = |status| Error::AdminApi {
            instance: "p:r:i".into(),
            method: "connectSettings",
            status,
            api_status: None,
            message: "m".into(),
        };
        assert!(!api(403).is_retryable());
        assert!(!api(404).is_retryable());
        assert!(api(429).is_retryable());
        assert!(api(503).is_retryable());
        assert!(api(404).evicts_cache());
        assert!(!api(500).evicts_cache());
    }
}
