//! The server side of the metadata exchange: after the TLS handshake, a client may send
//! `CSQLMDEX` + u32 length + `MetadataExchangeRequest { user_agent = 1; client_protocol_type = 2 }`;
//! the proxy answers `MetadataExchangeResponse { response_status_code = 1 (OK = 1, ERROR = 2);
//! error_message = 2 }` and records what it heard. Malformed frames get ERROR and the connection
//! is closed. The codec is core's ([`cloudsql_core::metadata_exchange`]), so both sides speak
//! exactly one format.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use cloudsql_core::metadata_exchange::{MAGIC, MAX_MESSAGE_LEN, Request, Response};

use super::prefixed::Prefixed;
use crate::counters::MdxRecord;
use crate::instance::Instance;

/// How long a server-first protocol (MySQL) waits for a metadata exchange before greeting.
const SERVER_FIRST_WAIT: Duration = Duration::from_millis(50);

/// Reads up to 8 bytes: all of them for client-first protocols, whatever arrives within a short
/// wait for server-first ones.
async fn first_bytes<S: AsyncRead + Unpin>(stream: &mut S, server_first: bool) -> std::io::Result<Vec<u8>> {
    let mut buf = vec![0u8; 8];
    let mut filled = 0;
    let read = async {
        while filled < 8 {
            let n = stream.read(&mut buf[filled..]).await?;
            if n == 0 {
                break;
            }
            filled += n;
        }
        Ok::<_, std::io::Error>(())
    };
    if server_first {
        if let Ok(result) = tokio::time::timeout(SERVER_FIRST_WAIT, read).await {
            result?;
        }
    } else {
        read.await?;
    }
    buf.truncate(filled);
    Ok(buf)
}

/// Handles a metadata exchange if the client starts with one. Returns false when the
/// connection must be closed.
pub(crate) async fn handle<S>(
    client: &mut Prefixed<S>,
    instance: &Instance,
    server_first: bool,
) -> std::io::Result<bool>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let first = first_bytes(client, server_first).await?;
    if first.as_slice() != MAGIC {
        client.unread(&first);
        return Ok(true);
    }
    let len = client.read_u32().await? as usize;
    if len > MAX_MESSAGE_LEN {
        client
            .write_all(&Response::error("request exceeds 16 KiB").encode())
            .await?;
        return Ok(false);
    }
    let mut body = vec![0; len];
    client.read_exact(&mut body).await?;
    match Request::decode(&body) {
        Ok(request) => {
            instance.counters().record_mdx(MdxRecord {
                user_agent: request.user_agent,
                client_protocol_type: request.client_protocol.wire_value(),
            });
            client.write_all(&Response::ok().encode()).await?;
            client.flush().await?;
            Ok(true)
        }
        Err(e) => {
            client.write_all(&Response::error(e.to_string()).encode()).await?;
            client.flush().await?;
            Ok(false)
        }
    }
}
