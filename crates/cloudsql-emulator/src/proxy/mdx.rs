//! The server side of the metadata exchange: after the TLS handshake, a client may send
//! `CSQLMDEX` + u32 length + `MetadataExchangeRequest { user_agent = 1; client_protocol_type = 2 }`;
//! the proxy answers `MetadataExchangeResponse { response_status_code = 1 (OK = 1, ERROR = 2);
//! error_message = 2 }` and records what it heard. Malformed frames get ERROR and the connection
//! is closed.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::prefixed::Prefixed;
use crate::counters::MdxRecord;
use crate::instance::Instance;

pub(crate) const MAGIC: &[u8; 8] = b"CSQLMDEX";
const MAX_REQUEST: usize = 16 * 1024;
/// How long a server-first protocol (MySQL) waits for a metadata exchange before greeting.
const SERVER_FIRST_WAIT: Duration = Duration::from_millis(50);

fn varint(input: &mut &[u8]) -> Option<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let (&byte, rest) = input.split_first()?;
        *input = rest;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

/// Parses a request body into (user agent, client protocol type).
fn parse_request(mut body: &[u8]) -> Result<(String, u64), String> {
    let (mut user_agent, mut protocol) = (String::new(), 0);
    while !body.is_empty() {
        let key = varint(&mut body).ok_or("truncated key")?;
        match (key >> 3, key & 7) {
            (2, 0) => protocol = varint(&mut body).ok_or("truncated client_protocol_type")?,
            (_, 0) => {
                varint(&mut body).ok_or("truncated varint")?;
            }
            (field, 2) => {
                let len = usize::try_from(varint(&mut body).ok_or("truncated length")?)
                    .map_err(|_| "bad length")?;
                if len > body.len() {
                    return Err("field longer than the message".into());
                }
                let (value, rest) = body.split_at(len);
                if field == 1 {
                    user_agent = String::from_utf8(value.to_vec()).map_err(|_| "user_agent is not UTF-8")?;
                }
                body = rest;
            }
            (_, wire) => return Err(format!("unsupported wire type {wire}")),
        }
    }
    if !(1..=3).contains(&protocol) {
        return Err(format!("unknown client_protocol_type {protocol}"));
    }
    Ok((user_agent, protocol))
}

fn response(ok: bool, message: &str) -> Vec<u8> {
    let mut body = vec![0x08, if ok { 1 } else { 2 }];
    if !message.is_empty() {
        body.push(0x12);
        body.push(message.len().min(127) as u8);
        body.extend_from_slice(&message.as_bytes()[..message.len().min(127)]);
    }
    let mut frame = MAGIC.to_vec();
    frame.extend_from_slice(&(body.len() as u32).to_be_bytes());
    frame.extend_from_slice(&body);
    frame
}

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
    if len > MAX_REQUEST {
        client
            .write_all(&response(false, "request exceeds 16 KiB"))
            .await?;
        return Ok(false);
    }
    let mut body = vec![0; len];
    client.read_exact(&mut body).await?;
    match parse_request(&body) {
        Ok((user_agent, client_protocol_type)) => {
            instance.counters().record_mdx(MdxRecord {
                user_agent,
                client_protocol_type,
            });
            client.write_all(&response(true, "")).await?;
            client.flush().await?;
            Ok(true)
        }
        Err(e) => {
            client
                .write_all(&response(false, &format!("malformed metadata exchange: {e}")))
                .await?;
            client.flush().await?;
            Ok(false)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_parse_and_malformed_ones_do_not() {
        let body = [0x0a, 2, b'u', b'a', 0x10, 3];
        assert_eq!(parse_request(&body).unwrap(), ("ua".to_owned(), 3));
        assert!(parse_request(&[0x0a, 5, b'u']).is_err());
        assert!(parse_request(&[0x10, 9]).is_err(), "unknown protocol type");
        assert!(parse_request(&[]).is_err(), "protocol type is required");
    }

    #[test]
    fn responses_carry_status_and_message() {
        assert_eq!(&response(true, "")[8..], &[0, 0, 0, 2, 0x08, 1]);
        assert_eq!(&response(false, "no")[12..], &[0x08, 2, 0x12, 2, b'n', b'o']);
    }
}
