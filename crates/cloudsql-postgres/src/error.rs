//! The crate's error type.

/// Connecting through the Cloud SQL connector, or the Postgres login after it, failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The connector could not reach the instance (refresh, dial, TLS, wrong engine, …).
    #[error("Cloud SQL connector error")]
    Connector(#[from] cloudsql_core::Error),
    /// The database refused the login or the connection broke.
    #[error("PostgreSQL error")]
    Postgres(#[from] tokio_postgres::Error),
}

impl Error {
    /// The connector error, if that is what failed.
    pub fn as_connector(&self) -> Option<&cloudsql_core::Error> {
        match self {
            Error::Connector(e) => Some(e),
            Error::Postgres(e) => connector_error(e),
        }
    }
}

/// Finds the connector error inside a `tokio_postgres::Error`, as deadpool-postgres reports it.
///
/// deadpool-postgres only carries `tokio_postgres::Error`, which has no public constructor, so a
/// connector failure reaches it as an I/O error whose inner error is the [`cloudsql_core::Error`].
pub fn connector_error(error: &tokio_postgres::Error) -> Option<&cloudsql_core::Error> {
    let mut source = std::error::Error::source(error);
    while let Some(e) = source {
        if let Some(found) = e.downcast_ref::<cloudsql_core::Error>() {
            return Some(found);
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>()
            && let Some(found) = io
                .get_ref()
                .and_then(|inner| inner.downcast_ref::<cloudsql_core::Error>())
        {
            return Some(found);
        }
        source = e.source();
    }
    None
}
