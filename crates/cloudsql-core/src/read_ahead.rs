//! A read-ahead buffer under TLS: one system call per burst of TLS records instead of one per
//! record.
//!
//! rustls reads into the free room of its own buffer, which grows 4 KiB at a time up to one
//! record and shrinks back to 4 KiB when empty, so a bulk read of the proxy's 8 KiB records costs
//! about a `recvfrom` per record (8,214 bytes each in `strace`) even when the socket already
//! holds many. [`ReadAhead`] reads whatever is there, up to its capacity,
//! and serves rustls' reads from that. It holds its buffer only while it holds unread bytes (then
//! the buffer goes back to the thread's [spares](crate::spare_buffers)): an idle connection keeps
//! none (RSS per connection is one of the connector's measured costs).
//!
//! Only the local socket's relay uses it: the relay reads everything received before it writes,
//! so records wait in the socket, and a bulk read through the local socket costs 2–5 % less
//! client CPU per MB with it. On a stream read by its driver it cut the `recvfrom` calls by 85 %
//! but not the CPU (+2–4 %, the extra copy of the ciphertext), so the stream does without
//! (docs/performance.md, run J).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_util::io::poll_read_buf;

use crate::spare_buffers;

/// How much one read may take from the socket: eight of the proxy's records.
pub(crate) const READ_AHEAD: usize = 64 * 1024;

/// `T` with reads gathered into bursts of up to a set capacity; writes pass straight through.
#[derive(Debug)]
pub(crate) struct ReadAhead<T> {
    inner: T,
    /// Read from `inner` and not yet handed out; no allocation while empty.
    buf: BytesMut,
    capacity: usize,
}

impl<T> ReadAhead<T> {
    pub(crate) fn new(inner: T, capacity: usize) -> Self {
        Self {
            inner,
            buf: BytesMut::new(),
            capacity: capacity.max(1),
        }
    }

    pub(crate) fn get_ref(&self) -> &T {
        &self.inner
    }

    /// Bytes held (tests: an idle reader holds none).
    #[cfg(test)]
    fn held(&self) -> usize {
        self.buf.capacity()
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for ReadAhead<T> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, out: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.buf.is_empty() {
            // A caller asking for at least a burst gains nothing from a copy.
            if out.remaining() >= this.capacity {
                return Pin::new(&mut this.inner).poll_read(cx, out);
            }
            if this.buf.capacity() < this.capacity {
                this.buf = spare_buffers::take(this.capacity);
            }
            match poll_read_buf(Pin::new(&mut this.inner), cx, &mut this.buf) {
                Poll::Ready(Ok(_)) => {}
                Poll::Ready(Err(e)) => {
                    spare_buffers::give_back(&mut this.buf, this.capacity);
                    return Poll::Ready(Err(e));
                }
                Poll::Pending => {
                    // Waiting is what an idle connection does: it holds no buffer meanwhile.
                    spare_buffers::give_back(&mut this.buf, this.capacity);
                    return Poll::Pending;
                }
            }
        }
        let n = out.remaining().min(this.buf.len());
        out.put_slice(&this.buf[..n]);
        this.buf.advance(n);
        if this.buf.is_empty() {
            // Drained (or the end of the stream): give the buffer back.
            spare_buffers::give_back(&mut this.buf, this.capacity);
        }
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for ReadAhead<T> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt, duplex};

    use super::*;

    /// A server's last words, then a reset: the words on the first read, the error after.
    struct LastWords(Option<&'static [u8]>);
    impl AsyncRead for LastWords {
        fn poll_read(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            out: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            match self.0.take() {
                Some(words) => {
                    out.put_slice(words);
                    Poll::Ready(Ok(()))
                }
                None => Poll::Ready(Err(io::ErrorKind::ConnectionReset.into())),
            }
        }
    }

    /// A burst larger than the buffer, read in small pieces, arrives whole and in order, and the
    /// reader holds nothing once it has handed everything out.
    #[tokio::test]
    async fn bytes_arrive_in_order_through_a_small_buffer() {
        let (mut far, near) = duplex(1 << 20);
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        far.write_all(&data).await.unwrap();
        let mut reader = ReadAhead::new(near, 4096);
        let mut got = Vec::new();
        let mut piece = [0u8; 1000];
        while got.len() < data.len() {
            let n = reader.read(&mut piece).await.unwrap();
            assert!(n > 0);
            got.extend_from_slice(&piece[..n]);
        }
        assert_eq!(got, data);
        assert_eq!(reader.held(), 0, "a drained reader keeps its buffer");
    }

    /// One read takes what the socket holds (up to the capacity), not just what was asked for.
    #[tokio::test]
    async fn one_read_gathers_what_is_there() {
        let (mut far, near) = duplex(1 << 16);
        far.write_all(&[7u8; 3000]).await.unwrap();
        let mut reader = ReadAhead::new(near, 4096);
        let mut first = [0u8; 100];
        assert_eq!(reader.read(&mut first).await.unwrap(), 100);
        // The rest is already held: the far side can go away and it is still delivered.
        drop(far);
        let mut rest = Vec::new();
        reader.read_to_end(&mut rest).await.unwrap();
        assert_eq!(rest.len(), 2900);
    }

    /// A short answer is handed out at once, not held for a full buffer.
    #[tokio::test]
    async fn a_short_answer_is_not_held_back() {
        let (mut far, near) = duplex(1 << 16);
        let mut reader = ReadAhead::new(near, READ_AHEAD);
        far.write_all(b"ok").await.unwrap();
        let mut buf = [0u8; 16];
        let n = tokio::time::timeout(Duration::from_secs(5), reader.read(&mut buf))
            .await
            .expect("a two-byte answer waited for more")
            .unwrap();
        assert_eq!(&buf[..n], b"ok");
    }

    /// A reader waiting for bytes (an idle connection) holds no buffer.
    #[tokio::test]
    async fn a_waiting_reader_holds_no_buffer() {
        let (mut far, near) = duplex(1 << 16);
        let mut reader = ReadAhead::new(near, READ_AHEAD);
        let mut buf = [0u8; 8];
        let waited = tokio::time::timeout(Duration::from_millis(50), reader.read(&mut buf)).await;
        assert!(waited.is_err(), "nothing was sent, yet the read ended");
        assert_eq!(reader.held(), 0, "an idle reader keeps a buffer");
        // And it still reads once bytes come.
        far.write_all(b"hi").await.unwrap();
        let n = reader.read(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"hi");
    }

    /// The end of the stream comes after every byte before it.
    #[tokio::test]
    async fn end_of_stream_follows_the_last_bytes() {
        let (mut far, near) = duplex(1 << 16);
        let mut reader = ReadAhead::new(near, READ_AHEAD);
        let mut buf = [0u8; 8];
        far.write_all(b"last").await.unwrap();
        far.shutdown().await.unwrap();
        let n = reader.read(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"last");
        assert_eq!(reader.held(), 0);
        assert_eq!(reader.read(&mut buf).await.unwrap(), 0);
        assert_eq!(reader.held(), 0);
    }

    /// A read error reaches the caller (and the buffer is given back).
    #[tokio::test]
    async fn a_read_error_reaches_the_caller() {
        let mut reader = ReadAhead::new(LastWords(None), 4096);
        let mut buf = [0u8; 8];
        let e = reader.read(&mut buf).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::ConnectionReset);
        assert_eq!(reader.held(), 0);
    }

    /// Bytes read before the socket failed are handed out before the error (a server's last
    /// words, such as a login refusal, before it resets the connection).
    #[tokio::test]
    async fn bytes_before_an_error_come_first() {
        let mut reader = ReadAhead::new(LastWords(Some(b"access denied")), 4096);
        let mut buf = [0u8; 6];
        let mut got = Vec::new();
        let error = loop {
            match reader.read(&mut buf).await {
                Ok(0) => panic!("the error became an end of stream"),
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) => break e,
            }
        };
        assert_eq!(got, b"access denied");
        assert_eq!(error.kind(), io::ErrorKind::ConnectionReset);
    }

    /// A caller with room for a whole burst reads directly, without the buffer.
    #[tokio::test]
    async fn a_large_read_bypasses_the_buffer() {
        let (mut far, near) = duplex(1 << 16);
        far.write_all(&[1u8; 5000]).await.unwrap();
        let mut reader = ReadAhead::new(near, 4096);
        let mut buf = vec![0u8; 8192];
        assert_eq!(reader.read(&mut buf).await.unwrap(), 5000);
        assert_eq!(reader.held(), 0);
    }

    /// Writes, flushes and shutdowns pass through.
    #[tokio::test]
    async fn writes_pass_through() {
        let (mut far, near) = duplex(1 << 16);
        let mut stream = ReadAhead::new(near, 4096);
        stream.write_all(b"query").await.unwrap();
        stream.flush().await.unwrap();
        stream.shutdown().await.unwrap();
        let mut got = Vec::new();
        far.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"query");
    }
}
