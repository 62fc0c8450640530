//! The client side of the metadata exchange: before any database bytes, tell the server-side
//! proxy how the application reached the connector (TCP, TLS or a Unix socket), when the instance
//! advertises `CLIENT_PROTOCOL_TYPE`. The wire format is in [`crate::metadata_exchange`].

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::metadata_exchange::{self, ClientProtocol, HEADER_LEN, Request, Response, ResponseStatus};

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
        .write_all(&Request::new(user_agent, protocol).encode())
        .await
        .map_err(io)?;
    stream.flush().await.map_err(io)?;
    let mut header = [0u8; HEADER_LEN];
    stream.read_exact(&mut header).await.map_err(io)?;
    if &header[..8] != metadata_exchange::MAGIC {
        return Err("the server did not answer with a metadata exchange frame".into());
    }
    let len = metadata_exchange::decode_header(&header).map_err(|e| e.to_string())?;
    let mut body = vec![0; len];
    stream.read_exact(&mut body).await.map_err(io)?;
    let response = Response::decode(&body).map_err(|e| e.to_string())?;
    match response.status {
        ResponseStatus::Ok => Ok(()),
        _ => Err(format!("the server refused it: {}", response.error_message)),
    }
}
