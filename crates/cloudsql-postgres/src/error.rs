//! The crate's error type.

use std::error::Error as StdError;
use std::fmt;

/// Connecting through the Cloud SQL connector, or the Postgres login after it, failed.
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
    /// The connector could not reach the instance (refresh, dial, TLS, wrong engine, …).
    Connector(cloudsql_core::Error),
    /// The database refused the login or the connection broke.
    Postgres(tokio_postgres::Error),
    /// deadpool-postgres could not hand out a connection for another reason (a timeout, a
    /// closed pool), from [`deadpool::pool`](crate::deadpool::pool).
    #[cfg(feature = "deadpool")]
    #[cfg_attr(docsrs, doc(cfg(feature = "deadpool")))]
    Pool(deadpool_postgres::PoolError),
}

impl Error {
    /// The connector error, if that is what failed.
    pub fn as_connector(&self) -> Option<&cloudsql_core::Error> {
        match self {
            Error::Connector(e) => Some(e),
            Error::Postgres(e) => connector_error(e),
            #[cfg(feature = "deadpool")]
            Error::Pool(_) => None,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Connector(e) => fmt::Display::fmt(&cloudsql_core::ErrorChain(e), f),
            Error::Postgres(e) => fmt::Display::fmt(&cloudsql_core::ErrorChain(e), f),
            #[cfg(feature = "deadpool")]
            Error::Pool(e) => fmt::Display::fmt(&cloudsql_core::ErrorChain(e), f),
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

impl From<tokio_postgres::Error> for Error {
    fn from(error: tokio_postgres::Error) -> Self {
        Error::Postgres(error)
    }
}

/// Finds the connector error inside a `tokio_postgres::Error`, as deadpool-postgres reports it.
///
/// deadpool-postgres only carries `tokio_postgres::Error`, which has no public constructor, so a
/// connector failure reaches it as an I/O error whose inner error is this crate's [`Error`]
/// holding the [`cloudsql_core::Error`] (its text names the whole cause, so deadpool's message
/// does too).
pub fn connector_error(error: &tokio_postgres::Error) -> Option<&cloudsql_core::Error> {
    let mut source = StdError::source(error);
    while let Some(e) = source {
        if let Some(found) = connector_in(e) {
            return Some(found);
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>()
            && let Some(found) = io.get_ref().and_then(|inner| connector_in(inner))
        {
            return Some(found);
        }
        source = e.source();
    }
    None
}

/// The connector error `e` is, or that this crate's `Error::Connector` holds.
fn connector_in<'a>(e: &'a (dyn StdError + 'static)) -> Option<&'a cloudsql_core::Error> {
    if let Some(found) = e.downcast_ref::<cloudsql_core::Error>() {
        return Some(found);
    }
    match e.downcast_ref::<Error>() {
        Some(Error::Connector(found)) => Some(found),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An error whose text may or may not repeat its cause's, like drivers' errors.
    #[derive(Debug)]
    struct Outer {
        repeats_cause: bool,
        cause: std::io::Error,
    }

    impl fmt::Display for Outer {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            match self.repeats_cause {
                true => write!(f, "handshake failed: {}", self.cause),
                false => f.write_str("handshake failed"),
            }
        }
    }

    impl StdError for Outer {
        fn source(&self) -> Option<&(dyn StdError + 'static)> {
            Some(&self.cause)
        }
    }

    struct Chain<'a>(&'a (dyn StdError + 'static));

    impl fmt::Display for Chain<'_> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            fmt::Display::fmt(&cloudsql_core::ErrorChain(self.0), f)
        }
    }

    #[test]
    fn display_names_every_cause_once() {
        for repeats_cause in [false, true] {
            let outer = Outer {
                repeats_cause,
                cause: std::io::Error::other("expected common name p:i"),
            };
            assert_eq!(
                Chain(&outer).to_string(),
                "handshake failed: expected common name p:i"
            );
        }
    }

    #[test]
    fn connector_errors_print_as_the_connector_does_and_have_no_source() {
        let error = Error::from(cloudsql_core::Error::Closed);
        assert_eq!(error.to_string(), cloudsql_core::Error::Closed.to_string());
        assert!(error.source().is_none());
        assert!(matches!(error.as_connector(), Some(cloudsql_core::Error::Closed)));
    }
}
