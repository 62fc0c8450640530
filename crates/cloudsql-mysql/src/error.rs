//! The crate's error type.

use std::error::Error as StdError;
use std::fmt;

/// Connecting through the connector, or the MySQL login after it, failed.
///
/// `Display` names the whole cause — the connector's error and every error under it (the
/// failed server identity check, the Admin API's status, a closed connector) — so printing it
/// with `{}` alone is enough. Because the text already holds the cause, [`source`] returns
/// `None`: an error-chain printer such as anyhow's `{:#}` prints each cause once. Reach the
/// typed errors by matching the variant or with [`Error::as_connector`].
///
/// [`source`]: std::error::Error::source
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The connector could not serve or reach the instance.
    Connector(cloudsql_core::Error),
    /// MySQL refused the login or the connection broke.
    MySql(mysql_async::Error),
}

impl Error {
    /// The connector error, if that is what failed.
    pub fn as_connector(&self) -> Option<&cloudsql_core::Error> {
        match self {
            Error::Connector(e) => Some(e),
            _ => None,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Connector(e) => fmt::Display::fmt(&cloudsql_core::ErrorChain(e), f),
            Error::MySql(e) => fmt::Display::fmt(&cloudsql_core::ErrorChain(e), f),
        }
    }
}

/// No source: `Display` already names the whole cause (see [`Error`]).
impl StdError for Error {}

impl From<cloudsql_core::Error> for Error {
    fn from(error: cloudsql_core::Error) -> Self {
        Error::Connector(error)
    }
}

impl From<mysql_async::Error> for Error {
    fn from(error: mysql_async::Error) -> Self {
        Error::MySql(error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connector_errors_print_as_the_connector_does_and_have_no_source() {
        let error = Error::from(cloudsql_core::Error::Closed);
        assert_eq!(error.to_string(), cloudsql_core::Error::Closed.to_string());
        assert!(error.source().is_none());
        assert!(matches!(error.as_connector(), Some(cloudsql_core::Error::Closed)));
    }
}
