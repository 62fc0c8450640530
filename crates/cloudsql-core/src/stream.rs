//! The stream a connect returns: TLS 1.3 to the instance over TCP or a custom dialer's stream.

use std::fmt;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use crate::failover::FailoverWatch;
use crate::read_ahead::ReadAhead;
use crate::refresh::RejectionHook;
use crate::telemetry::ConnectionMeter;
use crate::tls::{is_certificate_rejection, rejection_source};

/// Any async byte stream a custom dialer may return.
pub trait AsyncStream: AsyncRead + AsyncWrite + Send + Sync + Unpin + 'static {}

impl<T: AsyncRead + AsyncWrite + Send + Sync + Unpin + 'static> AsyncStream for T {}

/// A boxed [`AsyncStream`].
pub type BoxedStream = Box<dyn AsyncStream>;

/// The transport under TLS.
pub(crate) enum Transport {
    Tcp(TcpStream),
    /// TCP read in bursts of TLS records rather than one record per system call: for the local
    /// socket's relay, which reads everything received before it writes (see [`ReadAhead`]).
    TcpReadAhead(ReadAhead<TcpStream>),
    Custom(BoxedStream),
}

macro_rules! delegate {
    ($self:ident, $s:ident => $call:expr) => {
        match $self.get_mut() {
            Transport::Tcp($s) => $call,
            Transport::TcpReadAhead($s) => $call,
            Transport::Custom($s) => $call,
        }
    };
}

impl AsyncRead for Transport {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        delegate!(self, s => Pin::new(s).poll_read(cx, buf))
    }
}

impl AsyncWrite for Transport {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        delegate!(self, s => Pin::new(s).poll_write(cx, buf))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        delegate!(self, s => Pin::new(s).poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        delegate!(self, s => Pin::new(s).poll_shutdown(cx))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        delegate!(self, s => Pin::new(s).poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Transport::Tcp(s) => s.is_write_vectored(),
            Transport::TcpReadAhead(s) => s.get_ref().is_write_vectored(),
            Transport::Custom(s) => s.is_write_vectored(),
        }
    }
}

/// An open, authenticated connection to a Cloud SQL instance, already past the TLS 1.3
/// handshake. The database protocol runs in plain form inside it.
///
/// If the instance refuses the client certificate (TLS 1.3 reports that on the first read, as
/// a fatal alert such as `UnknownCA` after a client CA rotation), the stream tells the connector,
/// which fetches a new certificate for the next connect.
pub struct CloudSqlStream {
    inner: Body,
    instance: String,
    rejection: Option<RejectionHook>,
    /// Set when connected through a DNS name that may move to another instance.
    failover: Option<FailoverWatch>,
    meter: ConnectionMeter,
}

impl CloudSqlStream {
    pub(crate) fn new(
        inner: TlsStream<Transport>,
        instance: String,
        rejection: Option<RejectionHook>,
    ) -> Self {
        Self {
            inner: Body::Tls(Box::new(inner)),
            instance,
            rejection,
            failover: None,
            meter: ConnectionMeter::inactive(),
        }
    }

    /// Fails reads and writes once `watch` fires (the DNS name moved).
    pub(crate) fn set_failover(&mut self, watch: FailoverWatch) {
        self.failover = Some(watch);
    }

    /// The error for a stream whose DNS name moved (and a wake-up registered if it has not).
    fn moved(&mut self, cx: &mut Context<'_>) -> Option<io::Error> {
        self.failover.as_mut().and_then(|w| w.poll_moved(cx))
    }

    /// Counts this stream's bytes, and the stream as an open connection, from now on.
    pub(crate) fn set_meter(&mut self, meter: ConnectionMeter) {
        self.meter = meter;
    }

    /// A stream without TLS of its own: the SQL Data Service tunnel, whose gRPC connection is
    /// already TLS.
    #[cfg_attr(not(feature = "sql-data"), allow(dead_code))]
    pub(crate) fn tunnel(inner: BoxedStream, instance: String) -> Self {
        Self {
            inner: Body::Tunnel(inner),
            instance,
            rejection: None,
            failover: None,
            meter: ConnectionMeter::inactive(),
        }
    }

    /// Reports a refused client certificate to the connector, once.
    fn check<T>(&mut self, result: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        if let Poll::Ready(Err(e)) = &result
            && is_certificate_rejection(e)
            && let Some(hook) = self.rejection.take()
        {
            hook.fire(rejection_source(e));
        }
        result
    }

    /// The instance connection name this stream reaches.
    pub fn instance(&self) -> &str {
        &self.instance
    }
}

impl fmt::Debug for CloudSqlStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CloudSqlStream")
            .field("instance", &self.instance)
            .finish_non_exhaustive()
    }
}

impl AsyncRead for CloudSqlStream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Some(moved) = this.moved(cx) {
            return Poll::Ready(Err(moved));
        }
        let before = buf.filled().len();
        let result = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = result {
            this.meter.received(buf.filled().len().saturating_sub(before));
        }
        this.check(result)
    }
}

impl AsyncWrite for CloudSqlStream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if let Some(moved) = this.moved(cx) {
            return Poll::Ready(Err(moved));
        }
        let result = Pin::new(&mut this.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = result {
            this.meter.sent(n);
        }
        this.check(result)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.inner).poll_flush(cx);
        this.check(result)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if let Some(moved) = this.moved(cx) {
            return Poll::Ready(Err(moved));
        }
        let result = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = result {
            this.meter.sent(n);
        }
        this.check(result)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// What a [`CloudSqlStream`] carries bytes over.
enum Body {
    /// TLS 1.3 to the server-side proxy.
    Tls(Box<TlsStream<Transport>>),
    /// A stream that is secured below (the SQL Data Service tunnel).
    #[cfg_attr(not(feature = "sql-data"), allow(dead_code))]
    Tunnel(BoxedStream),
}

macro_rules! body {
    ($self:ident, $s:ident => $call:expr) => {
        match $self.get_mut() {
            Body::Tls($s) => $call,
            Body::Tunnel($s) => $call,
        }
    };
}

impl AsyncRead for Body {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        body!(self, s => Pin::new(s).poll_read(cx, buf))
    }
}

impl AsyncWrite for Body {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        body!(self, s => Pin::new(s).poll_write(cx, buf))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        body!(self, s => Pin::new(s).poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        body!(self, s => Pin::new(s).poll_shutdown(cx))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        body!(self, s => Pin::new(s).poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Body::Tls(s) => s.is_write_vectored(),
            Body::Tunnel(s) => s.is_write_vectored(),
        }
    }
}
