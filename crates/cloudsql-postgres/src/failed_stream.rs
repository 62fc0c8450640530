//! Connector errors carried through `tokio_postgres::Error` to deadpool-postgres, whose
//! `Connect` hook can only return that type (it has no public constructor).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::{Config, NoTls};

/// A stream that fails at once with a connector error, so that the error can travel inside a
/// `tokio_postgres::Error` (which has no public constructor) to deadpool-postgres. It travels as
/// this crate's `Error`, whose text names the whole cause, so deadpool's message does too.
pub(crate) struct FailedStream(Option<crate::Error>);

impl FailedStream {
    pub(crate) fn new(error: crate::Error) -> Self {
        Self(Some(error))
    }

    fn error(&mut self) -> io::Error {
        match self.0.take() {
            Some(e) => io::Error::other(e),
            None => io::Error::from(io::ErrorKind::NotConnected),
        }
    }
}

impl AsyncRead for FailedStream {
    fn poll_read(self: Pin<&mut Self>, _: &mut Context<'_>, _: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Err(self.get_mut().error()))
    }
}

impl AsyncWrite for FailedStream {
    fn poll_write(self: Pin<&mut Self>, _: &mut Context<'_>, _: &[u8]) -> Poll<io::Result<usize>> {
        Poll::Ready(Err(self.get_mut().error()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Err(self.get_mut().error()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// Turns a connector error into the `tokio_postgres::Error` deadpool-postgres expects.
pub(crate) async fn into_postgres_error(config: &Config, error: crate::Error) -> tokio_postgres::Error {
    match config.connect_raw(FailedStream::new(error), NoTls).await {
        Err(e) => e,
        Ok(_) => unreachable_login(),
    }
}

#[cold]
fn unreachable_login() -> tokio_postgres::Error {
    // connect_raw cannot log in over a stream that fails every write; if it ever did, the
    // invariant is broken and there is nothing sensible to return.
    panic!("tokio-postgres logged in over a stream that fails every write")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn connector_errors_survive_the_trip_through_tokio_postgres() {
        let config = Config::new();
        let error = into_postgres_error(&config, cloudsql_core::Error::Closed.into()).await;
        assert!(matches!(
            crate::connector_error(&error),
            Some(cloudsql_core::Error::Closed)
        ));
    }
}
