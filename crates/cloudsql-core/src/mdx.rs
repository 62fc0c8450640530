//! Metadata exchange (MDX): before any database bytes, tell the server-side proxy how the
//! application reached the connector (TCP, TLS or a Unix socket), when the instance advertises
//! `CLIENT_PROTOCOL_TYPE`.
//!
//! Frame: `CSQLMDEX`, a big-endian u32 length, then a protobuf message:
//! `MetadataExchangeRequest { string user_agent = 1; ClientProtocolType client_protocol_type = 2; }`
//! answered by `MetadataExchangeResponse { ResponseStatusCode response_status_code = 1;
//! string error_message = 2; }` (OK = 1, ERROR = 2), at most 16 KiB.

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The frame's magic prefix.
pub(crate) const MAGIC: &[u8; 8] = b"CSQLMDEX";
/// Largest response accepted.
const MAX_RESPONSE: usize = 16 * 1024;
const STATUS_OK: u64 = 1;

/// How the application reached the connector, as reported to the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ClientProtocol {
    /// Plain TCP (a local TCP listener).
    Tcp,
    /// TLS.
    Tls,
    /// A Unix domain socket; counts as a secure channel for MySQL's `caching_sha2_password`.
    Uds,
}

impl ClientProtocol {
    fn wire(self) -> u64 {
        match self {
            ClientProtocol::Tcp => 1,
            ClientProtocol::Tls => 2,
            ClientProtocol::Uds => 3,
        }
    }
}

fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn take_varint(input: &mut &[u8]) -> Option<u64> {
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

/// The whole request frame.
pub(crate) fn encode_request(user_agent: &str, protocol: ClientProtocol) -> Vec<u8> {
    let mut message = Vec::with_capacity(user_agent.len() + 8);
    message.push(0x0a); // field 1, length-delimited
    put_varint(&mut message, user_agent.len() as u64);
    message.extend_from_slice(user_agent.as_bytes());
    message.push(0x10); // field 2, varint
    put_varint(&mut message, protocol.wire());
    let mut frame = Vec::with_capacity(12 + message.len());
    frame.extend_from_slice(MAGIC);
    frame.extend_from_slice(&(message.len() as u32).to_be_bytes());
    frame.extend_from_slice(&message);
    frame
}

/// Decodes a response message body into (status, error message).
pub(crate) fn decode_response(mut body: &[u8]) -> Result<(u64, String), String> {
    let (mut status, mut message) = (0, String::new());
    while !body.is_empty() {
        let key = take_varint(&mut body).ok_or("truncated field key")?;
        match (key >> 3, key & 7) {
            (1, 0) => status = take_varint(&mut body).ok_or("truncated status")?,
            (field, 2) => {
                let len = usize::try_from(take_varint(&mut body).ok_or("truncated length")?)
                    .map_err(|_| "length overflow")?;
                if len > body.len() {
                    return Err("field longer than the message".into());
                }
                let (value, rest) = body.split_at(len);
                if field == 2 {
                    message = String::from_utf8_lossy(value).into_owned();
                }
                body = rest;
            }
            (_, 0) => {
                take_varint(&mut body).ok_or("truncated varint")?;
            }
            (_, wire) => return Err(format!("unsupported wire type {wire}")),
        }
    }
    Ok((status, message))
}

/// Runs the exchange on a fresh stream; `Err` says what went wrong.
pub(crate) async fn exchange<S>(
    stream: &mut S,
    user_agent: &str,
    protocol: ClientProtocol,
) -> Result<(), String>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let io = |e: std::io::Error| e.to_string();
    stream
        .write_all(&encode_request(user_agent, protocol))
        .await
        .map_err(io)?;
    stream.flush().await.map_err(io)?;
    let mut magic = [0u8; 8];
    stream.read_exact(&mut magic).await.map_err(io)?;
    if &magic != MAGIC {
        return Err("the server did not answer with a metadata exchange frame".into());
    }
    let len = stream.read_u32().await.map_err(io)? as usize;
    if len > MAX_RESPONSE {
        return Err(format!("response of {len} bytes exceeds 16 KiB"));
    }
    let mut body = vec![0; len];
    stream.read_exact(&mut body).await.map_err(io)?;
    let (status, message) = decode_response(&body)?;
    if status == STATUS_OK {
        Ok(())
    } else {
        Err(format!("the server refused it: {message}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_frame_is_magic_length_and_protobuf() {
        let frame = encode_request("ua/1", ClientProtocol::Uds);
        assert_eq!(&frame[..8], MAGIC);
        assert_eq!(&frame[8..12], &[0, 0, 0, 8]);
        assert_eq!(&frame[12..], &[0x0a, 4, b'u', b'a', b'/', b'1', 0x10, 3]);
    }

    #[test]
    fn long_user_agents_use_multi_byte_lengths() {
        let ua = "x".repeat(300);
        let frame = encode_request(&ua, ClientProtocol::Tcp);
        assert_eq!(&frame[12..15], &[0x0a, 0xac, 0x02]);
        assert_eq!(frame.len(), 12 + 3 + 300 + 2);
    }

    #[test]
    fn responses_decode_and_skip_unknown_fields() {
        assert_eq!(decode_response(&[0x08, 1]).unwrap(), (1, String::new()));
        let body = [0x08, 2, 0x12, 3, b'b', b'a', b'd', 0x18, 7, 0x22, 1, b'z'];
        assert_eq!(decode_response(&body).unwrap(), (2, "bad".to_owned()));
        assert!(decode_response(&[0x12, 9, b'a']).is_err());
        assert!(decode_response(&[0x08]).is_err());
        assert!(decode_response(&[0x0d, 0, 0, 0, 0]).is_err());
    }
}
