//! The application's end of a tunnel: `AsyncRead + AsyncWrite` over the session task's channels.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::mpsc;
use tokio_util::sync::PollSender;

/// The largest `DataPacket` this side sends.
pub(crate) const MAX_PACKET: usize = 64 * 1024;

/// A byte stream carried by the SQL Data Service.
pub(crate) struct TunnelStream {
    writes: PollSender<Bytes>,
    reads: mpsc::Receiver<io::Result<Bytes>>,
    pending: Bytes,
}

impl TunnelStream {
    pub(crate) fn new(writes: mpsc::Sender<Bytes>, reads: mpsc::Receiver<io::Result<Bytes>>) -> Self {
        Self {
            writes: PollSender::new(writes),
            reads,
            pending: Bytes::new(),
        }
    }
}

fn closed() -> io::Error {
    io::Error::new(io::ErrorKind::BrokenPipe, "the SQL Data Service tunnel is closed")
}

impl AsyncRead for TunnelStream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        while this.pending.is_empty() {
            match ready!(this.reads.poll_recv(cx)) {
                Some(Ok(data)) => this.pending = data,
                Some(Err(e)) => return Poll::Ready(Err(e)),
                None => return Poll::Ready(Ok(())),
            }
        }
        let n = this.pending.len().min(buf.remaining());
        buf.put_slice(&this.pending[..n]);
        this.pending.advance(n);
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for TunnelStream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        ready!(this.writes.poll_reserve(cx)).map_err(|_| closed())?;
        let n = buf.len().min(MAX_PACKET);
        this.writes
            .send_item(Bytes::copy_from_slice(&buf[..n]))
            .map_err(|_| closed())?;
        Poll::Ready(Ok(n))
    }

    /// Written bytes are handed to the session task at once, which sends them in order.
    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    /// Ends the application's side: the task sends `TerminateSession` and half-closes the call.
    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().writes.close();
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    #[tokio::test]
    async fn bytes_flow_both_ways_and_shutdown_closes_the_write_side() {
        let (wtx, mut wrx) = mpsc::channel(4);
        let (rtx, rrx) = mpsc::channel(4);
        let mut stream = TunnelStream::new(wtx, rrx);
        stream.write_all(b"hello").await.unwrap();
        assert_eq!(wrx.recv().await.unwrap(), &b"hello"[..]);
        rtx.send(Ok(Bytes::from_static(b"wor"))).await.unwrap();
        rtx.send(Ok(Bytes::from_static(b"ld"))).await.unwrap();
        drop(rtx);
        let mut out = Vec::new();
        stream.read_to_end(&mut out).await.unwrap();
        assert_eq!(out, b"world");
        stream.shutdown().await.unwrap();
        assert!(wrx.recv().await.is_none());
        assert!(stream.write_all(b"x").await.is_err());
    }

    #[tokio::test]
    async fn large_writes_are_cut_into_packets() {
        let (wtx, mut wrx) = mpsc::channel(4);
        let (_rtx, rrx) = mpsc::channel(1);
        let mut stream = TunnelStream::new(wtx, rrx);
        let n = stream.write(&vec![7u8; MAX_PACKET + 10]).await.unwrap();
        assert_eq!(n, MAX_PACKET);
        assert_eq!(wrx.recv().await.unwrap().len(), MAX_PACKET);
    }
}
