//! The task that runs one tunnel: database bytes from the application become `DataPacket`s with
//! their offsets, the server's packets are checked against the offset received so far and
//! acknowledged, and a refusal before the first byte becomes a fallback or a cooldown.

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
        memory,
        fallback,
    } = session;
    // Bytes written before the first byte arrives, replayed on a fallback.
    let mut prelude: Vec<Bytes> = Vec::new();
    let refused = match call::start(channel, &target, &token).await {
        Ok(call) => match pump(call, &target, &memory, &name, &mut pipes, &mut prelude).await {
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

/// Relays an open call. `Err` is a status received before the first server byte, for the caller
/// to fall back or cool down; every later failure goes to the application's reads.
async fn pump(
    call: Call,
    target: &Target,
    memory: &Memory,
    name: &InstanceConnectionName,
    pipes: &mut Pipes,
    prelude: &mut Vec<Bytes>,
) -> Result<(), tonic::Status> {
    let Call {
        outbound,
        mut inbound,
    } = call;
    let mut outbound = Some(outbound);
    let mut sent: i64 = 0;
    let mut received: i64 = 0;
    let mut first_byte = false;
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
                    if let Some(response::Message::Data(packet)) = message.message {
                        let Some(data) = fresh_bytes(&packet, received) else {
                            let error = Error::SqlData {
                                instance: target.instance.clone(),
                                code: "DATA_LOSS",
                                message: format!(
                                    "the server's packet starts at byte {} but {received} bytes were received",
                                    packet.first_byte_offset
                                ),
                                hint: "bytes were lost in the tunnel; open a new connection",
                            };
                            let _ = pipes.reads.send(Err(io_error(error))).await;
                            return Ok(());
                        };
                        if data.is_empty() {
                            continue;
                        }
                        if !first_byte {
                            first_byte = true;
                            prelude.clear();
                            memory.succeeded(name);
                        }
                        received += i64::try_from(data.len()).unwrap_or(i64::MAX);
                        if pipes.reads.send(Ok(data)).await.is_err() {
                            terminate(outbound.as_ref(), sent, received);
                            return Ok(());
                        }
                        if let Some(out) = &outbound {
                            // Best effort: a full queue carries the next data packet's ack instead.
                            let _ = out.try_send(StreamSqlDataRequest {
                                ack: Some(Ack { received_offset: received }),
                                message: None,
                                instance_id: String::new(),
                            });
                        }
                    } else if let Some(response::Message::TerminateSession(end)) = message.message {
                        let code = end.status.as_ref().map_or(0, |s| s.code);
                        if code != 0 {
                            let status = tonic::Status::new(
                                tonic::Code::from_i32(code),
                                end.status.map(|s| s.message).unwrap_or_default(),
                            );
                            if !first_byte {
                                return Err(status);
                            }
                            let _ = pipes.reads.send(Err(io_error(status::error(&target.instance, &status)))).await;
                        }
                        return Ok(());
                    }
                }
                Ok(None) => return Ok(()),
                Err(status) => {
                    if !first_byte && closing.is_none() {
                        return Err(status);
                    }
                    if closing.is_none() {
                        let _ = pipes.reads.send(Err(io_error(status::error(&target.instance, &status)))).await;
                    }
                    return Ok(());
                }
            },
            write = pipes.writes.recv(), if closing.is_none() => match write {
                Some(data) => {
                    if !first_byte {
                        prelude.push(data.clone());
                    }
                    let len = i64::try_from(data.len()).unwrap_or(i64::MAX);
                    let packet = StreamSqlDataRequest {
                        ack: (received > 0).then_some(Ack { received_offset: received }),
                        message: Some(request::Message::Data(DataPacket { first_byte_offset: sent, data })),
                        instance_id: String::new(),
                    };
                    sent += len;
                    if let Some(out) = &outbound {
                        // A failed send means the call ended; its status comes from `inbound`.
                        let _ = out.send(packet).await;
                    }
                }
                None => {
                    terminate(outbound.as_ref(), sent, received);
                    outbound = None;
                    closing = Some(tokio::time::Instant::now() + CLOSE_GRACE);
                }
            },
            () = pipes.reads.closed(), if closing.is_none() => {
                terminate(outbound.as_ref(), sent, received);
                return Ok(());
            }
            () = grace => return Ok(()),
        }
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
fn terminate(outbound: Option<&mpsc::Sender<StreamSqlDataRequest>>, sent: i64, received: i64) {
    if let Some(out) = outbound {
        let _ = out.try_send(StreamSqlDataRequest {
            ack: Some(Ack {
                received_offset: received,
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
