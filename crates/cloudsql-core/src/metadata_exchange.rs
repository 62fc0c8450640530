//! The metadata exchange (MDX) wire format, both directions.
//!
//! Right after the TLS handshake, before any database bytes, a client may tell the instance's
//! server-side proxy how the application reached the connector, when the instance's connect
//! settings advertise `CLIENT_PROTOCOL_TYPE`. The connector does this for you (see
//! [`DriverDial::metadata_exchange`](crate::driver::DriverDial::metadata_exchange)); this module is the
//! codec it uses, public so that a server side (such as `cloudsql-emulator`) speaks exactly the
//! same format. Applications never need it.
//!
//! A frame is [`MAGIC`], a big-endian `u32` length, then a protobuf message:
//! `MetadataExchangeRequest { string user_agent = 1; ClientProtocolType client_protocol_type = 2; }`
//! from the client, answered by `MetadataExchangeResponse { ResponseStatusCode
//! response_status_code = 1; string error_message = 2; }`. Messages are at most
//! [`MAX_MESSAGE_LEN`] bytes.
//!
//! ```
//! use cloudsql_core::ClientProtocol;
//! use cloudsql_core::metadata_exchange::{Request, Response, ResponseStatus, MAGIC};
//!
//! let frame = Request::new("my-app/1.0", ClientProtocol::Uds).encode();
//! assert_eq!(&frame[..8], MAGIC);
//! let request = Request::decode(&frame[12..]).unwrap();
//! assert_eq!(request.client_protocol, ClientProtocol::Uds);
//!
//! let answer = Response::ok().encode();
//! assert_eq!(Response::decode(&answer[12..]).unwrap().status, ResponseStatus::Ok);
//! ```

use std::fmt;

/// The magic prefix of every frame, in both directions.
pub const MAGIC: &[u8; 8] = b"CSQLMDEX";
/// The largest message (after the 12-byte frame header) either side accepts.
pub const MAX_MESSAGE_LEN: usize = 16 * 1024;
/// The frame header: [`MAGIC`] and the big-endian `u32` message length.
pub const HEADER_LEN: usize = 12;

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
    /// The `ClientProtocolType` enum value on the wire.
    pub fn wire_value(self) -> u64 {
        match self {
            ClientProtocol::Tcp => 1,
            ClientProtocol::Tls => 2,
            ClientProtocol::Uds => 3,
        }
    }

    /// The protocol for a wire value, if it is a known one.
    pub fn from_wire_value(value: u64) -> Option<Self> {
        match value {
            1 => Some(ClientProtocol::Tcp),
            2 => Some(ClientProtocol::Tls),
            3 => Some(ClientProtocol::Uds),
            _ => None,
        }
    }
}

/// What the server answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ResponseStatus {
    /// `OK` (1).
    Ok,
    /// `ERROR` (2).
    Error,
    /// A status this codec does not know (including the unset 0).
    Other(u64),
}

impl ResponseStatus {
    fn wire_value(self) -> u64 {
        match self {
            ResponseStatus::Ok => 1,
            ResponseStatus::Error => 2,
            ResponseStatus::Other(value) => value,
        }
    }

    fn from_wire_value(value: u64) -> Self {
        match value {
            1 => ResponseStatus::Ok,
            2 => ResponseStatus::Error,
            other => ResponseStatus::Other(other),
        }
    }
}

/// A message that could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireError(String);

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "malformed metadata exchange message: {}", self.0)
    }
}

impl std::error::Error for WireError {}

fn wire_error(detail: impl Into<String>) -> WireError {
    WireError(detail.into())
}

/// `MetadataExchangeRequest`, sent by the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The connector's user agent.
    pub user_agent: String,
    /// How the application reached the connector.
    pub client_protocol: ClientProtocol,
}

impl Request {
    /// A request with this user agent and protocol.
    pub fn new(user_agent: impl Into<String>, client_protocol: ClientProtocol) -> Self {
        Request {
            user_agent: user_agent.into(),
            client_protocol,
        }
    }

    /// The whole frame: header and message.
    pub fn encode(&self) -> Vec<u8> {
        let mut message = Vec::with_capacity(self.user_agent.len() + 8);
        put_bytes(&mut message, 1, self.user_agent.as_bytes());
        put_varint_field(&mut message, 2, self.client_protocol.wire_value());
        frame(&message)
    }

    /// Decodes a message (the bytes after the frame header). The protocol type is required and
    /// must be a known one; the user agent must be UTF-8; unknown fields are skipped.
    pub fn decode(body: &[u8]) -> Result<Self, WireError> {
        let (mut user_agent, mut protocol) = (String::new(), None);
        for field in Fields(body) {
            match field? {
                (1, Value::Bytes(value)) => {
                    user_agent = String::from_utf8(value.to_vec())
                        .map_err(|_| wire_error("user_agent is not UTF-8"))?;
                }
                (2, Value::Varint(value)) => protocol = Some(value),
                _ => {}
            }
        }
        let value = protocol.ok_or_else(|| wire_error("client_protocol_type is missing"))?;
        let client_protocol = ClientProtocol::from_wire_value(value)
            .ok_or_else(|| wire_error(format!("unknown client_protocol_type {value}")))?;
        Ok(Request {
            user_agent,
            client_protocol,
        })
    }
}

/// `MetadataExchangeResponse`, sent by the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The status code.
    pub status: ResponseStatus,
    /// Why the server refused, when it did.
    pub error_message: String,
}

impl Response {
    /// An `OK` answer.
    pub fn ok() -> Self {
        Response {
            status: ResponseStatus::Ok,
            error_message: String::new(),
        }
    }

    /// An `ERROR` answer with a message (cut to fit in [`MAX_MESSAGE_LEN`] at a character
    /// boundary when longer).
    pub fn error(message: impl Into<String>) -> Self {
        let mut error_message = message.into();
        let max = MAX_MESSAGE_LEN - 16;
        if error_message.len() > max {
            let cut = (0..=max)
                .rev()
                .find(|i| error_message.is_char_boundary(*i))
                .unwrap_or(0);
            error_message.truncate(cut);
        }
        Response {
            status: ResponseStatus::Error,
            error_message,
        }
    }

    /// The whole frame: header and message.
    pub fn encode(&self) -> Vec<u8> {
        let mut message = Vec::with_capacity(self.error_message.len() + 8);
        put_varint_field(&mut message, 1, self.status.wire_value());
        if !self.error_message.is_empty() {
            put_bytes(&mut message, 2, self.error_message.as_bytes());
        }
        frame(&message)
    }

    /// Decodes a message (the bytes after the frame header); unknown fields are skipped and a
    /// message that is not UTF-8 is decoded lossily.
    pub fn decode(body: &[u8]) -> Result<Self, WireError> {
        let mut response = Response {
            status: ResponseStatus::Other(0),
            error_message: String::new(),
        };
        for field in Fields(body) {
            match field? {
                (1, Value::Varint(value)) => response.status = ResponseStatus::from_wire_value(value),
                (2, Value::Bytes(value)) => {
                    response.error_message = String::from_utf8_lossy(value).into_owned();
                }
                _ => {}
            }
        }
        Ok(response)
    }
}

/// Parses a frame header: the message length, or why the header is not one.
pub fn decode_header(header: &[u8; HEADER_LEN]) -> Result<usize, WireError> {
    if &header[..8] != MAGIC {
        return Err(wire_error("the frame does not start with CSQLMDEX"));
    }
    let len = u32::from_be_bytes([header[8], header[9], header[10], header[11]]) as usize;
    if len > MAX_MESSAGE_LEN {
        return Err(wire_error(format!("a message of {len} bytes exceeds 16 KiB")));
    }
    Ok(len)
}

fn frame(message: &[u8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(HEADER_LEN + message.len());
    frame.extend_from_slice(MAGIC);
    frame.extend_from_slice(&(message.len() as u32).to_be_bytes());
    frame.extend_from_slice(message);
    frame
}

fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn put_varint_field(out: &mut Vec<u8>, field: u64, value: u64) {
    put_varint(out, field << 3);
    put_varint(out, value);
}

fn put_bytes(out: &mut Vec<u8>, field: u64, value: &[u8]) {
    put_varint(out, (field << 3) | 2);
    put_varint(out, value.len() as u64);
    out.extend_from_slice(value);
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

/// A protobuf field value of the wire types these messages use.
enum Value<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    /// A fixed-width field (wire types 1 and 5), skipped.
    Fixed,
}

/// The fields of a protobuf message, in order.
struct Fields<'a>(&'a [u8]);

impl<'a> Iterator for Fields<'a> {
    type Item = Result<(u64, Value<'a>), WireError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.0.is_empty() {
            return None;
        }
        let field = self.read_field();
        if field.is_err() {
            self.0 = &[];
        }
        Some(field)
    }
}

impl<'a> Fields<'a> {
    fn read_field(&mut self) -> Result<(u64, Value<'a>), WireError> {
        let key = take_varint(&mut self.0).ok_or_else(|| wire_error("truncated field key"))?;
        let value = match key & 7 {
            0 => Value::Varint(take_varint(&mut self.0).ok_or_else(|| wire_error("truncated varint"))?),
            2 => {
                let len = take_varint(&mut self.0).ok_or_else(|| wire_error("truncated length"))?;
                let len = usize::try_from(len)
                    .ok()
                    .filter(|len| *len <= self.0.len())
                    .ok_or_else(|| wire_error("field longer than the message"))?;
                let (value, rest) = self.0.split_at(len);
                self.0 = rest;
                Value::Bytes(value)
            }
            wire @ (1 | 5) => {
                let width = if wire == 1 { 8 } else { 4 };
                if self.0.len() < width {
                    return Err(wire_error("truncated fixed-width field"));
                }
                self.0 = &self.0[width..];
                Value::Fixed
            }
            wire => return Err(wire_error(format!("unsupported wire type {wire}"))),
        };
        Ok((key >> 3, value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_frame_is_magic_length_and_protobuf() {
        let frame = Request::new("ua/1", ClientProtocol::Uds).encode();
        assert_eq!(&frame[..8], MAGIC);
        assert_eq!(&frame[8..12], &[0, 0, 0, 8]);
        assert_eq!(&frame[12..], &[0x0a, 4, b'u', b'a', b'/', b'1', 0x10, 3]);
    }

    #[test]
    fn long_user_agents_use_multi_byte_lengths() {
        let ua = "x".repeat(300);
        let frame = Request::new(ua.clone(), ClientProtocol::Tcp).encode();
        assert_eq!(&frame[12..15], &[0x0a, 0xac, 0x02]);
        assert_eq!(frame.len(), 12 + 3 + 300 + 2);
        assert_eq!(Request::decode(&frame[12..]).unwrap().user_agent, ua);
    }

    #[test]
    fn requests_round_trip_and_malformed_ones_are_refused() {
        for protocol in [ClientProtocol::Tcp, ClientProtocol::Tls, ClientProtocol::Uds] {
            let request = Request::new("a", protocol);
            assert_eq!(Request::decode(&request.encode()[12..]).unwrap(), request);
        }
        assert!(Request::decode(&[0x0a, 5, b'u']).is_err(), "truncated");
        assert!(Request::decode(&[0x10, 9]).is_err(), "unknown protocol type");
        assert!(Request::decode(&[]).is_err(), "protocol type is required");
        assert!(Request::decode(&[0x0a, 1, 0xff, 0x10, 1]).is_err(), "not UTF-8");
    }

    #[test]
    fn responses_round_trip_and_skip_unknown_fields() {
        assert_eq!(&Response::ok().encode()[8..], &[0, 0, 0, 2, 0x08, 1]);
        assert_eq!(
            &Response::error("no").encode()[12..],
            &[0x08, 2, 0x12, 2, b'n', b'o']
        );
        let body = [
            0x08, 2, 0x12, 3, b'b', b'a', b'd', 0x18, 7, 0x22, 1, b'z', 0x2d, 0, 0, 0, 0,
        ];
        let response = Response::decode(&body).unwrap();
        assert_eq!(response.status, ResponseStatus::Error);
        assert_eq!(response.error_message, "bad");
        assert!(Response::decode(&[0x12, 9, b'a']).is_err());
        assert!(Response::decode(&[0x08]).is_err());
        assert!(Response::decode(&[0x0b]).is_err(), "group wire type");
    }

    #[test]
    fn long_error_messages_are_cut_to_fit_at_a_character_boundary() {
        let response = Response::error("é".repeat(MAX_MESSAGE_LEN));
        let frame = response.encode();
        assert!(frame.len() - HEADER_LEN <= MAX_MESSAGE_LEN);
        assert!(
            Response::decode(&frame[HEADER_LEN..])
                .unwrap()
                .error_message
                .starts_with('é')
        );
    }

    #[test]
    fn headers_are_checked() {
        let frame = Response::ok().encode();
        let header: [u8; HEADER_LEN] = frame[..HEADER_LEN].try_into().unwrap();
        assert_eq!(decode_header(&header).unwrap(), 2);
        let mut too_long = header;
        too_long[8..].copy_from_slice(&(MAX_MESSAGE_LEN as u32 + 1).to_be_bytes());
        assert!(decode_header(&too_long).is_err());
        let mut wrong = header;
        wrong[0] = b'X';
        assert!(decode_header(&wrong).is_err());
    }
}
