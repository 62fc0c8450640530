//! The relay's copy loop: bytes both ways between an accepted client and its instance stream
//! until both sides have closed, as [`tokio::io::copy_bidirectional`] does, with two
//! differences that a relay of bulk reads wants:
//!
//! - **Bursts, not records.** Each direction reads everything already received (up to its
//!   buffer) before it writes, so a bulk read reaches the client in one write, and one wake-up
//!   of the driver, per burst rather than per TLS record. tokio's copy writes after every read.
//! - **No idle buffers.** A buffer is taken when its direction has bytes to move and given back
//!   once they are written and the reader has nothing more, so an idle relayed connection holds
//!   no relay buffer at all, and a connection that once ran a bulk read does not keep its peak.
//!   Given-back buffers wait among a few spares per thread ([`spare_buffers`]), not in the
//!   allocator, which would shrink and regrow its heap around them on every wake-up.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::io::poll_read_buf;

use crate::spare_buffers;

/// Copies both ways until each side has ended its stream (passed on as a write shutdown of the
/// other side). Resolves to (bytes client → server, bytes server → client), or to the first
/// error of either direction.
pub(super) fn relay<'a, C, S>(
    client: &'a mut C,
    server: &'a mut S,
    client_buffer: usize,
    server_buffer: usize,
) -> impl Future<Output = io::Result<(u64, u64)>> + 'a
where
    C: AsyncRead + AsyncWrite + Unpin,
    S: AsyncRead + AsyncWrite + Unpin,
{
    Relay {
        client,
        server,
        up: Direction::new(client_buffer),
        down: Direction::new(server_buffer),
    }
}

struct Relay<'a, C, S> {
    client: &'a mut C,
    server: &'a mut S,
    /// Client → server.
    up: Direction,
    /// Server → client.
    down: Direction,
}

/// Where a direction is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Copying,
    /// The reader ended; shutting the writer down.
    ShuttingDown,
    Done,
}

/// One direction's copy: read a burst, write it all, repeat.
struct Direction {
    /// Read but not yet written from `written` on; empty (no allocation) when idle.
    buf: BytesMut,
    written: usize,
    capacity: usize,
    read_done: bool,
    /// A read error that came after bytes still to be written: it is returned once they are.
    read_error: Option<io::Error>,
    need_flush: bool,
    amt: u64,
    state: State,
}

impl Direction {
    fn new(capacity: usize) -> Self {
        Self {
            buf: BytesMut::new(),
            written: 0,
            capacity: capacity.max(1),
            read_done: false,
            read_error: None,
            need_flush: false,
            amt: 0,
            state: State::Copying,
        }
    }

    /// Copies, then shuts the writer down; ready when both are done.
    fn poll<R, W>(&mut self, cx: &mut Context<'_>, reader: &mut R, writer: &mut W) -> Poll<io::Result<()>>
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        if self.state == State::Copying {
            ready!(self.poll_copy(cx, reader, writer))?;
            self.state = State::ShuttingDown;
        }
        if self.state == State::ShuttingDown {
            ready!(Pin::new(&mut *writer).poll_shutdown(cx))?;
            self.state = State::Done;
        }
        Poll::Ready(Ok(()))
    }

    fn poll_copy<R, W>(
        &mut self,
        cx: &mut Context<'_>,
        reader: &mut R,
        writer: &mut W,
    ) -> Poll<io::Result<()>>
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        loop {
            // Gather what the reader already has, up to the buffer.
            let mut pending = false;
            while !self.read_done && self.buf.len() < self.capacity {
                if self.buf.capacity() == 0 {
                    self.buf = spare_buffers::take(self.capacity);
                }
                match poll_read_buf(Pin::new(&mut *reader), cx, &mut self.buf) {
                    Poll::Ready(Ok(0)) => self.read_done = true,
                    Poll::Ready(Ok(_)) => {}
                    // What came before the error still goes out first: a server's last words
                    // (a login refusal, say) before it drops the connection.
                    Poll::Ready(Err(e)) if self.buf.len() > self.written => {
                        self.read_error = Some(e);
                        break;
                    }
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    Poll::Pending => {
                        pending = true;
                        break;
                    }
                }
            }
            while self.written < self.buf.len() {
                let n = ready!(Pin::new(&mut *writer).poll_write(cx, &self.buf[self.written..]))?;
                if n == 0 {
                    return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                }
                self.written += n;
                self.amt += n as u64;
                self.need_flush = true;
            }
            self.written = 0;
            if let Some(e) = self.read_error.take() {
                spare_buffers::give_back(&mut self.buf, self.capacity);
                let _ = Pin::new(&mut *writer).poll_flush(cx);
                return Poll::Ready(Err(e));
            }
            if self.read_done {
                spare_buffers::give_back(&mut self.buf, self.capacity);
                ready!(Pin::new(&mut *writer).poll_flush(cx))?;
                return Poll::Ready(Ok(()));
            }
            if pending {
                // Idle until the reader wakes this task: give the buffer back.
                spare_buffers::give_back(&mut self.buf, self.capacity);
                if self.need_flush {
                    ready!(Pin::new(&mut *writer).poll_flush(cx))?;
                    self.need_flush = false;
                }
                return Poll::Pending;
            }
            // The buffer was full: reuse it for the next burst.
            self.buf.clear();
        }
    }
}

impl<C, S> Future for Relay<'_, C, S>
where
    C: AsyncRead + AsyncWrite + Unpin,
    S: AsyncRead + AsyncWrite + Unpin,
{
    type Output = io::Result<(u64, u64)>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let Relay {
            client,
            server,
            up,
            down,
        } = self.get_mut();
        // Both directions are polled every time, so that each registers its wake-ups.
        let down_ready = down.poll(cx, &mut **server, &mut **client)?;
        let up_ready = up.poll(cx, &mut **client, &mut **server)?;
        ready!(down_ready);
        ready!(up_ready);
        Poll::Ready(Ok((up.amt, down.amt)))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt, duplex};

    use super::*;

    /// Runs a relay between the far ends of two duplex pipes; returns the near ends (the
    /// client's and the server's) and the relay's task.
    fn relayed(
        pipe: usize,
        client_buffer: usize,
        server_buffer: usize,
    ) -> (
        tokio::io::DuplexStream,
        tokio::io::DuplexStream,
        tokio::task::JoinHandle<io::Result<(u64, u64)>>,
    ) {
        let (client, mut client_far) = duplex(pipe);
        let (server, mut server_far) = duplex(pipe);
        let task = tokio::spawn(async move {
            relay(&mut client_far, &mut server_far, client_buffer, server_buffer).await
        });
        (client, server, task)
    }

    #[tokio::test]
    async fn bytes_cross_both_ways_in_order_and_are_counted() {
        // Buffers smaller than the data and a pipe smaller than a buffer: every path through
        // the loop (full buffer, partial writes, pending reads) is taken.
        let (client, server, task) = relayed(1000, 700, 3000);
        let up: Vec<u8> = (0..50_000u32).map(|i| (i % 251) as u8).collect();
        let down: Vec<u8> = (0..200_000u32).map(|i| (i % 241) as u8).collect();
        let (up2, down2) = (up.clone(), down.clone());
        let client_side = tokio::spawn(exchange(client, up2));
        let server_side = tokio::spawn(exchange(server, down2));
        assert_eq!(client_side.await.unwrap().unwrap(), down);
        assert_eq!(server_side.await.unwrap().unwrap(), up);
        assert_eq!(task.await.unwrap().unwrap(), (up.len() as u64, down.len() as u64));
    }

    /// Sends `data` and ends the stream, while reading everything the other side sends.
    async fn exchange(stream: tokio::io::DuplexStream, data: Vec<u8>) -> io::Result<Vec<u8>> {
        let (mut read, mut write) = tokio::io::split(stream);
        let mut received = Vec::new();
        let writer = async {
            write.write_all(&data).await?;
            write.shutdown().await
        };
        let (w, r) = tokio::join!(writer, read.read_to_end(&mut received));
        w?;
        r?;
        Ok(received)
    }

    #[tokio::test]
    async fn a_small_answer_is_passed_on_without_waiting_for_more() {
        let (mut client, mut server, _task) = relayed(64 * 1024, 16 * 1024, 64 * 1024);
        client.write_all(b"SELECT 1").await.unwrap();
        let mut query = [0; 8];
        server.read_exact(&mut query).await.unwrap();
        assert_eq!(&query, b"SELECT 1");
        // Far less than the buffer: it must arrive now, not when the buffer fills.
        server.write_all(b"1 row").await.unwrap();
        let mut answer = [0; 5];
        tokio::time::timeout(Duration::from_secs(10), client.read_exact(&mut answer))
            .await
            .expect("a short answer was held back")
            .unwrap();
        assert_eq!(&answer, b"1 row");
    }

    #[tokio::test]
    async fn one_side_ending_is_passed_on_and_the_other_keeps_flowing() {
        let (mut client, mut server, task) = relayed(4096, 1024, 4096);
        // The client is done sending: the server sees its end of stream…
        client.shutdown().await.unwrap();
        let mut rest = Vec::new();
        server.read_to_end(&mut rest).await.unwrap();
        assert!(rest.is_empty());
        // …and can still answer, then end too.
        server.write_all(b"bye").await.unwrap();
        server.shutdown().await.unwrap();
        let mut answer = Vec::new();
        client.read_to_end(&mut answer).await.unwrap();
        assert_eq!(answer, b"bye");
        assert_eq!(task.await.unwrap().unwrap(), (0, 3));
    }

    #[tokio::test]
    async fn a_server_that_goes_away_is_seen_by_the_client_and_the_relay_ends() {
        let (mut client, server, task) = relayed(4096, 1024, 4096);
        drop(server);
        let mut rest = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), client.read_to_end(&mut rest))
            .await
            .expect("the client never saw the server's end")
            .unwrap();
        assert!(rest.is_empty());
        drop(client);
        let ended = tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .expect("the relay kept running after both sides went away")
            .unwrap();
        if let Ok(counts) = ended {
            assert_eq!(counts, (0, 0));
        }
    }

    /// A server that sends `data`, then fails with `error`; it accepts every write.
    struct FailingServer {
        data: Option<Vec<u8>>,
        error: io::ErrorKind,
    }

    impl AsyncRead for FailingServer {
        fn poll_read(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &mut tokio::io::ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            match self.data.take() {
                Some(data) => {
                    buf.put_slice(&data);
                    Poll::Ready(Ok(()))
                }
                None => Poll::Ready(Err(self.error.into())),
            }
        }
    }

    impl AsyncWrite for FailingServer {
        fn poll_write(self: Pin<&mut Self>, _: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
            Poll::Ready(Ok(buf.len()))
        }

        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }

        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn what_the_server_sent_before_failing_reaches_the_client() {
        let (mut client, mut client_far) = duplex(4096);
        let mut server = FailingServer {
            data: Some(b"ERR 1045 access denied".to_vec()),
            error: io::ErrorKind::ConnectionReset,
        };
        let ended = relay(&mut client_far, &mut server, 1024, 4096).await;
        assert_eq!(
            ended.expect_err("the server's error was lost").kind(),
            io::ErrorKind::ConnectionReset
        );
        drop(client_far);
        let mut received = Vec::new();
        client.read_to_end(&mut received).await.unwrap();
        assert_eq!(received, b"ERR 1045 access denied");
    }

    #[tokio::test]
    async fn an_idle_relay_holds_no_buffer() {
        let (mut client, mut server) = (duplex(4096), duplex(4096));
        let mut relay = Relay {
            client: &mut client.1,
            server: &mut server.1,
            up: Direction::new(1024),
            down: Direction::new(4096),
        };
        client.0.write_all(b"ping").await.unwrap();
        server.0.write_all(b"pong").await.unwrap();
        // Let the relay move both and go idle.
        assert!(poll_once(&mut relay).await.is_pending());
        let Relay { up, down, .. } = &relay;
        assert_eq!(up.buf.capacity(), 0, "the client direction kept its buffer");
        assert_eq!(down.buf.capacity(), 0, "the server direction kept its buffer");
        assert_eq!((up.amt, down.amt), (4, 4));
    }

    /// Polls `future` once.
    async fn poll_once<F: Future + Unpin>(future: &mut F) -> Poll<F::Output> {
        std::future::poll_fn(|cx| Poll::Ready(Pin::new(&mut *future).poll(cx))).await
    }
}
