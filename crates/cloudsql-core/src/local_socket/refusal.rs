//! Telling a local socket's client why its connection is refused, in its own protocol, so the
//! driver reports the connector's error ("no SAN DNS name matching …", "the connector is closed")
//! instead of a bare "connection closed".

use std::error::Error as StdError;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::{Engine, Error};

/// The longest message sent to a client, in bytes.
const MAX_MESSAGE: usize = 4096;
/// How long a refusal may take (reading a Postgres startup message, writing the error).
const REFUSAL_TIMEOUT: Duration = Duration::from_secs(5);
/// MySQL client error CR_CONN_HOST_ERROR ("Can't connect to MySQL server").
const MYSQL_CONN_ERROR: u16 = 2003;
/// SQLSTATE sqlclient_unable_to_establish_sqlconnection.
const PG_SQLSTATE: &str = "08001";
const PG_SSL_REQUEST: u32 = 80_877_103;
const PG_GSSENC_REQUEST: u32 = 80_877_104;

/// The protocol a socket's clients speak, as far as a refusal needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Refusal {
    /// Answer the startup message with an `ErrorResponse`.
    Postgres,
    /// Greet with an ERR packet instead of the server handshake.
    MySql,
    /// Unknown protocol: just close.
    Close,
}

impl Refusal {
    pub(super) fn new(postgres_socket: bool, engine: Option<Engine>) -> Self {
        match engine {
            Some(Engine::MySql) => Refusal::MySql,
            Some(Engine::Postgres) => Refusal::Postgres,
            None if postgres_socket => Refusal::Postgres,
            _ => Refusal::Close,
        }
    }

    /// Sends `error` to the client (bounded in time; failures are ignored) and closes.
    pub(super) async fn send<S>(self, client: &mut S, error: &Error)
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let message = message(error);
        let refuse = async {
            match self {
                Refusal::Postgres => {
                    read_startup(client).await?;
                    client.write_all(&postgres_error(&message)).await?;
                }
                Refusal::MySql => client.write_all(&mysql_error(&message)).await?,
                Refusal::Close => {}
            }
            client.shutdown().await
        };
        let _ = tokio::time::timeout(REFUSAL_TIMEOUT, refuse).await;
    }
}

/// The error and its sources on one line, each cause once, cut to [`MAX_MESSAGE`] bytes.
pub(super) fn message(error: &Error) -> String {
    let mut out = format!("Cloud SQL connector: {error}");
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = cause.source();
    }
    if out.len() > MAX_MESSAGE {
        let mut end = MAX_MESSAGE;
        while !out.is_char_boundary(end) {
            end -= 1;
        }
        out.truncate(end);
    }
    out.replace('\0', " ")
}

/// Reads the client's startup message, declining SSL and GSS encryption requests first.
async fn read_startup<S>(client: &mut S) -> std::io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    for _ in 0..3 {
        let len = client.read_u32().await?;
        let Some(body) = (len as usize).checked_sub(4).filter(|n| (4..=10_000).contains(n)) else {
            return Ok(());
        };
        let mut buf = vec![0; body];
        client.read_exact(&mut buf).await?;
        let code = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
        if code == PG_SSL_REQUEST || code == PG_GSSENC_REQUEST {
            client.write_all(b"N").await?;
        } else {
            break;
        }
    }
    Ok(())
}

/// A Postgres `ErrorResponse`: severity FATAL, SQLSTATE 08001, the message.
fn postgres_error(message: &str) -> Vec<u8> {
    let mut fields = Vec::with_capacity(message.len() + 32);
    for (code, value) in [
        (b'S', "FATAL"),
        (b'V', "FATAL"),
        (b'C', PG_SQLSTATE),
        (b'M', message),
    ] {
        fields.push(code);
        fields.extend_from_slice(value.as_bytes());
        fields.push(0);
    }
    fields.push(0);
    let mut out = Vec::with_capacity(fields.len() + 5);
    out.push(b'E');
    // At most MAX_MESSAGE + a few dozen bytes: fits in a u32.
    out.extend_from_slice(&u32::try_from(fields.len() + 4).unwrap_or(u32::MAX).to_be_bytes());
    out.extend_from_slice(&fields);
    out
}

/// A MySQL ERR packet in place of the server greeting (no SQL state: nothing is negotiated yet).
fn mysql_error(message: &str) -> Vec<u8> {
    let mut payload = Vec::with_capacity(message.len() + 3);
    payload.push(0xFF);
    payload.extend_from_slice(&MYSQL_CONN_ERROR.to_le_bytes());
    payload.extend_from_slice(message.as_bytes());
    // At most MAX_MESSAGE + 3 bytes: fits in the 3-byte length.
    let len = u32::try_from(payload.len()).unwrap_or(u32::MAX).to_le_bytes();
    let mut out = vec![len[0], len[1], len[2], 0];
    out.extend_from_slice(&payload);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_protocol_follows_the_engine_or_the_postgres_socket_name() {
        assert_eq!(Refusal::new(false, Some(Engine::MySql)), Refusal::MySql);
        assert_eq!(Refusal::new(false, Some(Engine::Postgres)), Refusal::Postgres);
        assert_eq!(Refusal::new(true, None), Refusal::Postgres);
        assert_eq!(Refusal::new(false, None), Refusal::Close);
        assert_eq!(Refusal::new(false, Some(Engine::SqlServer)), Refusal::Close);
    }

    #[test]
    fn message_carries_the_chain_once_and_is_bounded() {
        let error = Error::Timeout {
            instance: "p:r:i".into(),
            timeout: Duration::from_secs(1),
            stage: crate::ConnectStage::Refreshing,
            last_error: Some(std::sync::Arc::new(std::io::Error::other("inner cause"))),
        };
        let text = message(&error);
        assert!(text.starts_with("Cloud SQL connector: "), "{text}");
        assert_eq!(text.matches("inner cause").count(), 1, "{text}");
        let long = Error::config("é".repeat(5000));
        assert!(message(&long).len() <= MAX_MESSAGE);
    }

    #[test]
    fn postgres_error_response_is_well_formed() {
        let frame = postgres_error("boom");
        assert_eq!(frame[0], b'E');
        let len = u32::from_be_bytes([frame[1], frame[2], frame[3], frame[4]]) as usize;
        assert_eq!(len, frame.len() - 1);
        assert!(frame.ends_with(b"Mboom\0\0"));
        assert!(frame.windows(7).any(|w| w == b"C08001\0"));
    }

    #[test]
    fn mysql_err_packet_is_well_formed() {
        let frame = mysql_error("boom");
        assert_eq!(&frame[..4], &[7, 0, 0, 0]);
        assert_eq!(&frame[4..7], &[0xFF, 0xD3, 0x07]);
        assert_eq!(&frame[7..], b"boom");
    }

    #[tokio::test]
    async fn postgres_refusal_declines_ssl_then_answers_the_startup() {
        let (mut client, mut server) = tokio::io::duplex(1024);
        let refuse = tokio::spawn(async move { Refusal::Postgres.send(&mut server, &Error::Closed).await });
        client.write_all(&8u32.to_be_bytes()).await.unwrap();
        client.write_all(&PG_SSL_REQUEST.to_be_bytes()).await.unwrap();
        assert_eq!(client.read_u8().await.unwrap(), b'N');
        client.write_all(&9u32.to_be_bytes()).await.unwrap();
        client.write_all(&196_608u32.to_be_bytes()).await.unwrap();
        client.write_all(&[0]).await.unwrap();
        let mut reply = Vec::new();
        client.read_to_end(&mut reply).await.unwrap();
        refuse.await.unwrap();
        assert_eq!(reply[0], b'E');
        assert!(String::from_utf8_lossy(&reply).contains("the connector is closed"));
    }
}
