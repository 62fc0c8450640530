//! The SQL Data Service wire messages (`google.cloud.sql.v1beta4`), derived by hand from
//! `proto/sql_data.proto` with `prost::Message`.
//!
//! Hand-derived rather than generated: generating needs `protoc` at build time (or a vendored
//! binary crate per platform), while these nine small messages are stable and published, so
//! deriving them keeps the build free of any tool beyond cargo. Field numbers are the published
//! ones; the tests below pin a few encodings byte for byte.

use std::fmt;

/// The gRPC method path of `SqlDataService.StreamSqlData`.
pub const STREAM_SQL_DATA_PATH: &str = "/google.cloud.sql.v1beta4.SqlDataService/StreamSqlData";

/// A client-to-server message.
#[derive(Clone, PartialEq, prost::Message)]
pub struct StreamSqlDataRequest {
    /// Acknowledges the server's bytes received so far.
    #[prost(message, optional, tag = "4")]
    pub ack: Option<Ack>,
    /// The message proper.
    #[prost(oneof = "request::Message", tags = "5, 6, 7, 8")]
    pub message: Option<request::Message>,
    /// Deprecated; never set by this connector.
    #[prost(string, tag = "9")]
    pub instance_id: String,
}

/// The oneof of [`StreamSqlDataRequest`].
pub mod request {
    /// What a request carries.
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Message {
        /// Starts a new session; the first message of a new stream.
        #[prost(message, tag = "5")]
        StartSession(super::StartSession),
        /// Resumes a session on a new stream (only where the server advertises `RECONNECT`).
        #[prost(message, tag = "6")]
        ContinueSession(super::ContinueSession),
        /// Database bytes.
        #[prost(message, tag = "7")]
        Data(super::DataPacket),
        /// Ends the session and closes the database connection.
        #[prost(message, tag = "8")]
        TerminateSession(super::TerminateSession),
    }
}

/// Starts a session with an instance.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct StartSession {
    /// `locations/<region>`.
    #[prost(string, tag = "1")]
    pub location_id: String,
    /// `projects/<project>/instances/<instance>`.
    #[prost(string, tag = "2")]
    pub instance_id: String,
    /// Chosen by the client, unguessable; needed to reconnect.
    #[prost(string, tag = "3")]
    pub session_id: String,
}

/// Resumes a session on a new stream.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct ContinueSession {
    /// `locations/<region>`.
    #[prost(string, tag = "1")]
    pub location_id: String,
    /// `projects/<project>/instances/<instance>`.
    #[prost(string, tag = "2")]
    pub instance_id: String,
    /// The session to resume.
    #[prost(string, tag = "3")]
    pub session_id: String,
}

/// A server-to-client message.
#[derive(Clone, PartialEq, prost::Message)]
pub struct StreamSqlDataResponse {
    /// Acknowledges the client's bytes received so far.
    #[prost(message, optional, tag = "2")]
    pub ack: Option<Ack>,
    /// The message proper.
    #[prost(oneof = "response::Message", tags = "3, 4, 5")]
    pub message: Option<response::Message>,
}

/// The oneof of [`StreamSqlDataResponse`].
pub mod response {
    /// What a response carries.
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Message {
        /// The session's features; the server's first message.
        #[prost(message, tag = "3")]
        SessionMetadata(super::SessionMetadata),
        /// Database bytes.
        #[prost(message, tag = "4")]
        Data(super::DataPacket),
        /// The database connection is closed; do not reconnect.
        #[prost(message, tag = "5")]
        TerminateSession(super::TerminateSession),
    }
}

/// What the server supports for this session.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct SessionMetadata {
    /// [`SqlDataFeature`] values.
    #[prost(enumeration = "SqlDataFeature", repeated, tag = "1")]
    pub supported_features: Vec<i32>,
}

impl SessionMetadata {
    /// Whether the server can resume this session on a new stream.
    pub fn supports_reconnect(&self) -> bool {
        self.supported_features
            .contains(&(SqlDataFeature::Reconnect as i32))
    }
}

/// Optional server features.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum SqlDataFeature {
    /// Not a feature.
    Unspecified = 0,
    /// The session can be resumed with `ContinueSession`.
    Reconnect = 1,
}

/// Database bytes and where they sit in the session's byte stream.
#[derive(Clone, PartialEq, Eq, prost::Message)]
#[prost(skip_debug)]
pub struct DataPacket {
    /// The absolute offset of `data[0]` in this direction of the session.
    #[prost(int64, tag = "1")]
    pub first_byte_offset: i64,
    /// The bytes.
    #[prost(bytes = "bytes", tag = "2")]
    pub data: bytes::Bytes,
}

/// Debug shows the offset and length only: database bytes hold passwords and data.
impl fmt::Debug for DataPacket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DataPacket")
            .field("first_byte_offset", &self.first_byte_offset)
            .field("len", &self.data.len())
            .finish()
    }
}

/// How many bytes of the other direction were received.
#[derive(Clone, Copy, PartialEq, Eq, prost::Message)]
pub struct Ack {
    /// The absolute number of bytes processed.
    #[prost(int64, tag = "1")]
    pub received_offset: i64,
}

/// Ends a session.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct TerminateSession {
    /// Why; `code` 0 for a normal close.
    #[prost(message, optional, tag = "1")]
    pub status: Option<Status>,
}

/// `google.rpc.Status` without its details (unknown fields are skipped when decoding).
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct Status {
    /// A `google.rpc.Code`.
    #[prost(int32, tag = "1")]
    pub code: i32,
    /// A developer-facing message.
    #[prost(string, tag = "2")]
    pub message: String,
}

#[cfg(test)]
mod tests {
    use prost::Message as _;

    use super::*;

    #[test]
    fn start_session_encodes_with_the_published_field_numbers() {
        let request = StreamSqlDataRequest {
            ack: None,
            message: Some(request::Message::StartSession(StartSession {
                location_id: "l".into(),
                instance_id: "i".into(),
                session_id: "s".into(),
            })),
            instance_id: String::new(),
        };
        // Field 5, length-delimited (0x2a), holding fields 1, 2, 3.
        assert_eq!(
            request.encode_to_vec(),
            [0x2a, 9, 0x0a, 1, b'l', 0x12, 1, b'i', 0x1a, 1, b's']
        );
    }

    #[test]
    fn data_and_ack_round_trip_and_debug_hides_bytes() {
        let response = StreamSqlDataResponse {
            ack: Some(Ack { received_offset: 7 }),
            message: Some(response::Message::Data(DataPacket {
                first_byte_offset: 3,
                data: bytes::Bytes::from_static(b"secret"),
            })),
        };
        let bytes = response.encode_to_vec();
        // Ack is field 2 (0x12), data field 4 (0x22).
        assert_eq!(&bytes[..4], &[0x12, 2, 0x08, 7]);
        assert_eq!(bytes[4], 0x22);
        let back = StreamSqlDataResponse::decode(bytes.as_slice()).unwrap();
        assert_eq!(back, response);
        assert!(!format!("{back:?}").contains("secret"));
    }

    #[test]
    fn reconnect_is_read_from_session_metadata() {
        let meta = SessionMetadata::decode([0x08, 1].as_slice()).unwrap();
        assert!(meta.supports_reconnect());
        assert!(!SessionMetadata::default().supports_reconnect());
    }
}
