//! Per-connection options and the enums they are made of; defaults are documented constants.

use std::fmt;
use std::time::Duration;

use crate::{ClientProtocol, Engine, Error};

/// How long a connect may take, refresh included, unless configured otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// The port of every Cloud SQL server-side proxy.
pub const SERVER_PROXY_PORT: u16 = 3307;

/// Which of an instance's addresses to dial.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum IpType {
    /// The public IP address (`PRIMARY` in the Admin API). The default.
    #[default]
    Public,
    /// The private IP address inside the VPC (`PRIVATE`).
    Private,
    /// The Private Service Connect DNS name.
    Psc,
    /// No address at all: the database protocol is carried in a gRPC stream to the Cloud SQL
    /// Admin API host (the SQL Data Service), for applications with no network path to the
    /// instance. Needs the `sql-data` feature; without it a connect fails with
    /// [`Error::Config`](crate::Error::Config). The variant exists either way so that matches
    /// and configuration parsing do not depend on features. See `docs/sql-data.md`.
    ///
    /// When the instance does not offer the service (`FAILED_PRECONDITION` before its first
    /// byte), the connect falls back to direct TLS over the private, then PSC, then public
    /// address, and remembers that for the instance.
    SqlData,
}

impl fmt::Display for IpType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            IpType::Public => "public (PRIMARY)",
            IpType::Private => "private (PRIVATE)",
            IpType::Psc => "Private Service Connect (PSC)",
            IpType::SqlData => "SQL Data Service tunnel (no IP)",
        })
    }
}

/// When the connector refreshes an instance's certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum RefreshStrategy {
    /// A background task refreshes ahead of expiry. The default; best for long-running processes.
    #[default]
    Background,
    /// No background task: a connect refreshes inline when the certificate has under four
    /// minutes left. For serverless CPUs that are throttled between requests (Cloud Run, Functions),
    /// where a background task would stall and let certificates expire.
    Lazy,
}

/// Options for one connection, overriding the connector's defaults.
///
/// Driver crates take these from the user and add what only they know (the engine their driver
/// speaks) with [`DriverDial`](crate::driver::DriverDial).
///
/// ```
/// use std::time::Duration;
/// use cloudsql_core::{DialOptions, IpType};
///
/// let opts = DialOptions::new()
///     .ip_type(IpType::Private)
///     .iam_authn(true)
///     .timeout(Duration::from_secs(5));
/// # let _ = opts;
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct DialOptions {
    pub(crate) ip_type: Option<IpType>,
    pub(crate) iam_authn: Option<bool>,
    pub(crate) timeout: Option<Duration>,
    /// Set by driver crates through [`DriverDial`](crate::driver::DriverDial) only.
    pub(crate) engine: Option<Engine>,
    /// Set by local sockets, and by driver crates through
    /// [`DriverDial::metadata_exchange`](crate::driver::DriverDial::metadata_exchange).
    pub(crate) metadata_exchange: Option<ClientProtocol>,
    /// Set by local sockets: their relay reads everything received before it writes, so the
    /// TCP stream under TLS is read in bursts rather than a record per system call (TCP dials
    /// only: a custom dialer's stream is read as it is).
    pub(crate) read_ahead: bool,
}

impl DialOptions {
    /// Options that change nothing: the connector's defaults apply.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Dial this IP type instead of the connector's default.
    #[must_use]
    pub fn ip_type(mut self, ip_type: IpType) -> Self {
        self.ip_type = Some(ip_type);
        self
    }

    /// Turn automatic IAM database authentication on or off for this connection.
    #[must_use]
    pub fn iam_authn(mut self, on: bool) -> Self {
        self.iam_authn = Some(on);
        self
    }

    /// Give up after this long (refresh, dial and TLS handshake together).
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Report how the application reached the connector with a metadata exchange (local
    /// sockets set this for the connections they relay).
    #[must_use]
    pub(crate) fn metadata_exchange(mut self, protocol: ClientProtocol) -> Self {
        self.metadata_exchange = Some(protocol);
        self
    }

    /// Read the TCP stream under TLS in bursts (local sockets set this for their relays).
    #[must_use]
    pub(crate) fn read_ahead(mut self) -> Self {
        self.read_ahead = true;
        self
    }

    /// Refuses options no connect could honour, before any work is done.
    pub(crate) fn validate(&self) -> Result<(), Error> {
        if self.timeout.is_some_and(|t| t.is_zero()) {
            return Err(Error::config(
                "DialOptions::timeout must be greater than zero; leave it unset to use the connector's timeout",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_zero_timeout_is_refused() {
        let err = DialOptions::new().timeout(Duration::ZERO).validate().unwrap_err();
        assert!(matches!(err, Error::Config { .. }), "{err:?}");
        assert!(
            err.to_string().contains("timeout must be greater than zero"),
            "{err}"
        );
        assert_eq!(err.kind(), crate::ErrorKind::Config);
    }

    #[test]
    fn usable_options_pass() {
        DialOptions::new().validate().unwrap();
        DialOptions::new()
            .timeout(Duration::from_nanos(1))
            .ip_type(IpType::Psc)
            .validate()
            .unwrap();
    }
}
