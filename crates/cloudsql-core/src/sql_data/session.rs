//! The task that runs one tunnel: database bytes from the application become `DataPacket`s with
//! their offsets, the server's packets are checked against the offset received so far and
//! acknowledged, and a refusal before the first byte becomes a fallback or a cooldown.

use std::collections::VecDeque;
use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use futures_util::future::BoxFuture;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tonic::transport::Channel;
use tracing::debug;

use super::call::{self, Call, Target};
use super::cooldown::Memory;
use super::messages::{Ack, DataPacket, Status, StreamSqlDataRequest, TerminateSession, request, response};
use super::status;
use crate::credentials::TokenSource;
use crate::{CloudSqlStream, Error, InstanceConnectionName};

/// How long a closing tunnel waits for the server to end the stream after `TerminateSession`.
const CLOSE_GRACE: Duration = Duration::from_secs(5);
/// Bytes read at once from a direct connection after a fallback.
const READ_CHUNK: usize = 16 * 1024;

/// Opens the direct TLS connection a refused tunnel falls back to.
pub(crate) type Fallback = Box<dyn FnOnce() -> BoxFuture<'static, Result<CloudSqlStream, Error>> + Send>;

/// Everything the task needs.
pub(crate) struct Session {
    pub(crate) channel: Channel,
    pub(crate) target: Arc<Target>,
    pub(crate) name: InstanceConnectionName,
    pub(crate) token: String,
    /// Tokens for resumed calls (the first call's may have expired by then).
    pub(crate) tokens: Arc<dyn TokenSource>,
    pub(crate) memory: Arc<Memory>,
    pub(crate) fallback: Option<Fallback>,
}

/// The application's side of the task: bytes it wrote, and where its reads come from.
pub(crate) struct Pipes {
    pub(crate) writes: mpsc::Receiver<Bytes>,
    pub(crate) reads: mpsc::Sender<io::Result<Bytes>>,
}

fn io_error(error: Error) -> io::Error {
    let kind = match error {
        Error::SqlData {
            code: "UNAVAILABLE" | "ABORTED" | "CANCELLED",
            ..
        } => io::ErrorKind::ConnectionReset,
        _ => io::ErrorKind::Other,
    };
    io::Error::new(kind, error)
}

/// Runs the tunnel until either side ends it.
pub(crate) async fn run(session: Session, mut pipes: Pipes) {
    let Session {
        channel,
        target,
        name,
        token,
        tokens,
        memory,
        fallback,
    } = session;
    // Bytes written before the first byte arrives, replayed on a fallback.
    let mut prelude: Vec<Bytes> = Vec::new();
    let resume = Resume {
        channel: &channel,
        target: &target,
        tokens: &tokens,
        memory: &memory,
        name: &name,
    };
    let refused = match call::start(channel.clone(), &target, &token).await {
        Ok(call) => match pump(call, &resume, &mut pipes, &mut prelude).await {
            Ok(()) => return,
            Err(status) => status,
        },
        Err(status) => status,
    };
    // Refused before the first byte.
    if status::is_unsupported(&refused)
        && let Some(fallback) = fallback
    {
        memory.mark_unsupported(&name);
        debug!(instance = %target.instance, status = %refused.message(), "SQL Data Service not offered; falling back to direct TLS");
        match fallback().await {
            Ok(direct) => relay_direct(direct, prelude, pipes).await,
            Err(e) => {
                let _ = pipes.reads.send(Err(io_error(e))).await;
            }
        }
        return;
    }
    let error = if refused.code() == tonic::Code::ResourceExhausted {
        let retry_after = memory.exhausted(&name, Instant::now());
        Error::SqlDataExhausted {
            instance: target.instance.clone(),
            message: crate::excerpt::excerpt(refused.message()),
            retry_after,
        }
    } else {
        status::error(&target.instance, &refused)
    };
    debug!(instance = %target.instance, error = &error as &dyn std::error::Error, "SQL Data Service tunnel refused");
    let _ = pipes.reads.send(Err(io_error(error))).await;
}

/// Resumes allowed in a row before a reset fails the connection.
const MAX_RESUMES: u32 = 3;
/// The wait before the first resume; it doubles for each further one.
const RESUME_BACKOFF: Duration = Duration::from_millis(100);

/// What outlives one call of a session.
#[derive(Default)]
struct Flow {
    /// Bytes sent to the server so far (the next packet's offset).
    sent: i64,
    /// Bytes received from the server and delivered.
    received: i64,
    first_byte: bool,
    /// The server advertised `RECONNECT`.
    reconnect: bool,
    /// Sent packets the server has not acknowledged, kept only where it can resume.
    unacked: VecDeque<DataPacket>,
    /// The application shut its side down.
    closing: bool,
    /// The server sent `TerminateSession`: never resume.
    terminated: bool,
}

impl Flow {
    fn acked(&mut self, ack: Option<Ack>) {
        let Some(ack) = ack else { return };
        while let Some(front) = self.unacked.front() {
            let end = front.first_byte_offset + i64::try_from(front.data.len()).unwrap_or(i64::MAX);
            if end > ack.received_offset {
                break;
            }
            self.unacked.pop_front();
        }
    }
}

/// Relays the session over `call` and, where the server advertised `RECONNECT`, over the calls
/// that resume it after a transient reset, resending what the server had not acknowledged.
/// `Err` is a status received before the first server byte, for the caller to fall back or cool
/// down; every later failure goes to the application's reads.
async fn pump(
    mut call: Call,
    resume: &Resume<'_>,
    pipes: &mut Pipes,
    prelude: &mut Vec<Bytes>,
) -> Result<(), tonic::Status> {
    let mut flow = Flow::default();
    loop {
        let Some(mut failure) = relay_call(call, &mut flow, resume, pipes, prelude).await else {
            return Ok(());
        };
        let before_first_byte = !flow.first_byte && !flow.closing;
        // A refusal before the first byte is for the caller (fallback, cooldown), not a reset.
        let refused = before_first_byte
            && (status::is_unsupported(&failure) || failure.code() == tonic::Code::ResourceExhausted);
        let resumable = flow.reconnect && !flow.closing && !flow.terminated && !refused;
        if resumable && status::is_transient(failure.code()) {
            match resume.again(&flow).await {
                Ok(resumed) => {
                    debug!(instance = %resume.target.instance, received = flow.received, resent = flow.unacked.len(), "SQL Data Service session resumed");
                    call = resumed;
                    continue;
                }
                Err(last) => failure = last,
            }
        }
        if before_first_byte {
            return Err(failure);
        }
        if !flow.closing {
            let _ = pipes
                .reads
                .send(Err(io_error(status::error(&resume.target.instance, &failure))))
                .await;
        }
        return Ok(());
    }
}

/// How to resume a session on a new call.
struct Resume<'a> {
    channel: &'a Channel,
    target: &'a Arc<Target>,
    tokens: &'a Arc<dyn TokenSource>,
    memory: &'a Memory,
    name: &'a InstanceConnectionName,
}

impl Resume<'_> {
    /// The first byte arrived: the instance's cooldown is over.
    fn memory_succeeded(&self) {
        self.memory.succeeded(self.name);
    }

    /// A new call with `ContinueSession`, the unacknowledged packets resent on it.
    async fn again(&self, flow: &Flow) -> Result<Call, tonic::Status> {
        let mut last = tonic::Status::unavailable("the session could not be resumed");
        for attempt in 0..MAX_RESUMES {
            tokio::time::sleep(RESUME_BACKOFF * 2u32.pow(attempt)).await;
            let token = match self.tokens.token().await {
                Ok(token) => token,
                Err(e) => {
                    return Err(tonic::Status::unauthenticated(format!(
                        "no access token to resume with: {e}"
                    )));
                }
            };
            match call::resume(self.channel.clone(), self.target, token.secret(), flow.received).await {
                Ok(call) => {
                    for packet in &flow.unacked {
                        let resend = StreamSqlDataRequest {
                            ack: Some(Ack {
                                received_offset: flow.received,
                            }),
                            message: Some(request::Message::Data(packet.clone())),
                            instance_id: String::new(),
                        };
                        call.outbound
                            .send(resend)
                            .await
                            .map_err(|_| tonic::Status::unavailable("the resumed call ended at once"))?;
                    }
                    return Ok(call);
                }
                Err(status) if status::is_transient(status.code()) => last = status,
                Err(status) => return Err(status),
            }
        }
        Err(last)
    }
}

/// Relays one call until it ends: `None` when the session is over, or the status that broke
/// the call.
async fn relay_call(
    call: Call,
    flow: &mut Flow,
    resume: &Resume<'_>,
    pipes: &mut Pipes,
    prelude: &mut Vec<Bytes>,
) -> Option<tonic::Status> {
    let Call {
        outbound,
        mut inbound,
    } = call;
    let target = resume.target;
    let mut outbound = (!flow.closing).then_some(outbound);
    let mut closing: Option<tokio::time::Instant> = None;
    loop {
        let grace = async {
            match closing {
                Some(deadline) => tokio::time::sleep_until(deadline).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            message = inbound.message() => match message {
                Ok(Some(message)) => {
                    flow.acked(message.ack);
                    match message.message {
                        Some(response::Message::SessionMetadata(meta)) => flow.reconnect = meta.supports_reconnect(),
                        Some(response::Message::Data(packet)) => {
                            // Offsets matter only where the session can be resumed; Google's
                            // own clients ignore them, so a server may leave them at 0.
                            let fresh = if flow.reconnect {
                                fresh_bytes(&packet, flow.received)
                            } else {
                                Some(packet.data.clone())
                            };
                            let Some(data) = fresh else {
                                let error = Error::SqlData {
                                    instance: target.instance.clone(),
                                    code: "DATA_LOSS",
                                    message: format!(
                                        "the server's packet starts at byte {} but {} bytes were received",
                                        packet.first_byte_offset, flow.received
                                    ),
                                    hint: "bytes were lost in the tunnel; open a new connection",
                                };
                                let _ = pipes.reads.send(Err(io_error(error))).await;
                                return None;
                            };
                            if data.is_empty() {
                                continue;
                            }
                            if !flow.first_byte {
                                flow.first_byte = true;
                                prelude.clear();
                                resume.memory_succeeded();
                            }
                            flow.received += i64::try_from(data.len()).unwrap_or(i64::MAX);
                            if pipes.reads.send(Ok(data)).await.is_err() {
                                terminate(outbound.as_ref(), flow);
                                return None;
                            }
                            if let Some(out) = &outbound {
                                // Best effort: a full queue carries the next data packet's ack instead.
                                let _ = out.try_send(StreamSqlDataRequest {
                                    ack: Some(Ack { received_offset: flow.received }),
                                    message: None,
                                    instance_id: String::new(),
                                });
                            }
                        }
                        Some(response::Message::TerminateSession(end)) => {
                            flow.terminated = true;
                            let code = end.status.as_ref().map_or(0, |s| s.code);
                            if code == 0 {
                                return None;
                            }
                            return Some(tonic::Status::new(
                                tonic::Code::from_i32(code),
                                end.status.map(|s| s.message).unwrap_or_default(),
                            ));
                        }
                        None => {}
                    }
                }
                Ok(None) => return None,
                Err(status) => return (closing.is_none()).then_some(status),
            },
            write = pipes.writes.recv(), if closing.is_none() && !flow.closing => match write {
                Some(data) => send_data(flow, outbound.as_ref(), prelude, data).await,
                None => {
                    terminate(outbound.as_ref(), flow);
                    flow.closing = true;
                    outbound = None;
                    closing = Some(tokio::time::Instant::now() + CLOSE_GRACE);
                }
            },
            () = pipes.reads.closed(), if closing.is_none() && !flow.closing => {
                // The stream was dropped: pass on what it wrote last (a driver's goodbye), then
                // end the session and let the call finish so nothing queued is cut off.
                while let Ok(data) = pipes.writes.try_recv() {
                    send_data(flow, outbound.as_ref(), prelude, data).await;
                }
                terminate(outbound.as_ref(), flow);
                flow.closing = true;
                outbound = None;
                closing = Some(tokio::time::Instant::now() + CLOSE_GRACE);
            }
            () = grace => return None,
        }
    }
}

/// Sends application bytes as the session's next packet.
async fn send_data(
    flow: &mut Flow,
    outbound: Option<&mpsc::Sender<StreamSqlDataRequest>>,
    prelude: &mut Vec<Bytes>,
    data: Bytes,
) {
    if !flow.first_byte {
        prelude.push(data.clone());
    }
    let len = i64::try_from(data.len()).unwrap_or(i64::MAX);
    let packet = DataPacket {
        first_byte_offset: flow.sent,
        data,
    };
    if flow.reconnect {
        flow.unacked.push_back(packet.clone());
    }
    flow.sent += len;
    let request = StreamSqlDataRequest {
        ack: (flow.received > 0).then_some(Ack {
            received_offset: flow.received,
        }),
        message: Some(request::Message::Data(packet)),
        instance_id: String::new(),
    };
    if let Some(out) = outbound {
        // A failed send means the call ended; its status comes from the inbound side.
        let _ = out.send(request).await;
    }
}

/// The part of `packet` past the `received` bytes already delivered, or `None` for a gap.
fn fresh_bytes(packet: &DataPacket, received: i64) -> Option<Bytes> {
    let start = packet.first_byte_offset;
    if start > received || start < 0 {
        return None;
    }
    let skip = usize::try_from(received - start).ok()?;
    Some(if skip >= packet.data.len() {
        Bytes::new()
    } else {
        packet.data.slice(skip..)
    })
}

/// Tells the server the application closed the connection.
fn terminate(outbound: Option<&mpsc::Sender<StreamSqlDataRequest>>, flow: &Flow) {
    let sent = flow.sent;
    if let Some(out) = outbound {
        let _ = out.try_send(StreamSqlDataRequest {
            ack: Some(Ack {
                received_offset: flow.received,
            }),
            message: Some(request::Message::TerminateSession(TerminateSession {
                status: Some(Status {
                    code: 0,
                    message: format!("client closed after {sent} bytes"),
                }),
            })),
            instance_id: String::new(),
        });
    }
}

/// After a fallback: replays what the application already wrote, then relays between it and
/// the direct connection.
async fn relay_direct(direct: CloudSqlStream, prelude: Vec<Bytes>, pipes: Pipes) {
    let Pipes { mut writes, reads } = pipes;
    let (mut rd, mut wr) = tokio::io::split(direct);
    let up = async {
        for data in prelude {
            wr.write_all(&data).await?;
        }
        wr.flush().await?;
        while let Some(data) = writes.recv().await {
            wr.write_all(&data).await?;
            wr.flush().await?;
        }
        wr.shutdown().await?;
        std::future::pending::<io::Result<()>>().await
    };
    let down = async {
        loop {
            let mut buf = BytesMut::with_capacity(READ_CHUNK);
            if rd.read_buf(&mut buf).await? == 0 {
                return Ok::<(), io::Error>(());
            }
            if reads.send(Ok(buf.freeze())).await.is_err() {
                return Ok(());
            }
        }
    };
    let result = tokio::select! {
        r = up => r,
        r = down => r,
    };
    if let Err(e) = result {
        let _ = reads.send(Err(e)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(offset: i64, data: &'static [u8]) -> DataPacket {
        DataPacket {
            first_byte_offset: offset,
            data: Bytes::from_static(data),
        }
    }

    #[test]
    fn packets_are_placed_by_offset() {
        assert_eq!(fresh_bytes(&packet(0, b"abc"), 0).unwrap(), &b"abc"[..]);
        // A resent packet overlapping what was delivered gives only the new bytes.
        assert_eq!(fresh_bytes(&packet(1, b"bcd"), 3).unwrap(), &b"d"[..]);
        assert!(fresh_bytes(&packet(0, b"abc"), 3).unwrap().is_empty());
        // A gap is refused.
        assert!(fresh_bytes(&packet(5, b"x"), 3).is_none());
        assert!(fresh_bytes(&packet(-1, b"x"), 0).is_none());
    }
}
