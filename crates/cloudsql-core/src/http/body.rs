//! Reading HTTP response bodies with a size cap, chunk by chunk, so a broken or hostile server
//! cannot make the connector buffer more than the cap.

/// The largest body a successful Admin API or token endpoint answer may have. Real answers are a
/// few kilobytes.
pub(crate) const BODY_LIMIT: usize = 1 << 20;

/// How much of an error answer is read: enough for any JSON error body, while an HTML error
/// page of megabytes is cut off.
pub(crate) const ERROR_BODY_LIMIT: usize = 64 << 10;

use super::client::Response;
use super::error::TransportError;

/// Why a capped body could not be read.
#[derive(Debug)]
pub(crate) enum BodyError {
    /// The body is larger than the cap (by its `content-length`, or by what arrived).
    TooLarge,
    /// The connection failed or broke off while the body was read.
    Transport(TransportError),
}

/// The first bytes of a body, and whether there was more.
#[derive(Debug)]
pub(crate) struct Prefix {
    pub(crate) bytes: Vec<u8>,
    pub(crate) cut_off: bool,
}

/// The whole body, or [`BodyError::TooLarge`] as soon as it is known to exceed `limit` bytes.
pub(crate) async fn read_limited(response: Response, limit: usize) -> Result<Vec<u8>, BodyError> {
    if declared_over(&response, limit) {
        return Err(BodyError::TooLarge);
    }
    let prefix = read_prefix(response, limit).await.map_err(BodyError::Transport)?;
    if prefix.cut_off {
        return Err(BodyError::TooLarge);
    }
    Ok(prefix.bytes)
}

/// At most `limit` bytes of the body; reading stops (and the connection is dropped) once more
/// arrive.
pub(crate) async fn read_prefix(mut response: Response, limit: usize) -> Result<Prefix, TransportError> {
    let expected = response
        .content_length()
        .map_or(0, |len| usize::try_from(len).unwrap_or(usize::MAX));
    let mut bytes = Vec::with_capacity(expected.min(limit));
    while let Some(chunk) = response.chunk().await? {
        let room = limit - bytes.len();
        if chunk.len() > room {
            bytes.extend_from_slice(&chunk[..room]);
            return Ok(Prefix { bytes, cut_off: true });
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(Prefix {
        bytes,
        cut_off: false,
    })
}

/// Whether the response's `content-length` already says it is over `limit`.
fn declared_over(response: &Response, limit: usize) -> bool {
    response
        .content_length()
        .is_some_and(|len| usize::try_from(len).map_or(true, |len| len > limit))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;

    /// Serves one HTTP/1.1 answer: `head` (status line and headers), then `chunks` chunks of
    /// `chunk_len` bytes, then closes. Returns the response the client got.
    async fn serve(head: &'static str, chunks: usize, chunk_len: usize) -> Response {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut request = [0; 4096];
            let _ = socket.read(&mut request).await;
            let _ = socket.write_all(head.as_bytes()).await;
            let chunk = vec![b'x'; chunk_len];
            for _ in 0..chunks {
                if socket.write_all(&chunk).await.is_err() {
                    return; // The client stopped reading, as it should.
                }
            }
        });
        let url = format!("http://{addr}/").parse().unwrap();
        crate::http::client()
            .unwrap()
            .send(crate::http::Request::get(url), Duration::from_secs(30))
            .await
            .unwrap()
    }

    const UNDECLARED: &str = "HTTP/1.1 200 OK\r\nconnection: close\r\n\r\n";

    #[tokio::test]
    async fn small_bodies_are_read_whole() {
        let head = "HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\n";
        let body = read_limited(serve(head, 1, 4).await, 10).await.unwrap();
        assert_eq!(body, b"xxxx");
    }

    #[tokio::test]
    async fn a_declared_length_over_the_cap_is_refused_unread() {
        let head = "HTTP/1.1 200 OK\r\ncontent-length: 536870912\r\n\r\n";
        let err = read_limited(serve(head, 1, 10).await, 1000).await.unwrap_err();
        assert!(matches!(err, BodyError::TooLarge), "{err:?}");
    }

    #[tokio::test]
    async fn an_undeclared_stream_is_cut_off_at_the_cap() {
        let err = read_limited(serve(UNDECLARED, 10_000, 1000).await, 10_000)
            .await
            .unwrap_err();
        assert!(matches!(err, BodyError::TooLarge), "{err:?}");

        let prefix = read_prefix(serve(UNDECLARED, 10_000, 1000).await, 2500)
            .await
            .unwrap();
        assert_eq!(prefix.bytes.len(), 2500);
        assert!(prefix.cut_off);

        let whole = read_prefix(serve(UNDECLARED, 3, 1000).await, 3000).await.unwrap();
        assert_eq!(whole.bytes.len(), 3000);
        assert!(!whole.cut_off);
    }

    #[tokio::test]
    async fn a_body_that_breaks_off_is_a_transport_error() {
        let head = "HTTP/1.1 200 OK\r\ncontent-length: 5000\r\n\r\n";
        let err = read_limited(serve(head, 1, 10).await, 10_000).await.unwrap_err();
        assert!(
            matches!(err, BodyError::Transport(TransportError::Body { .. })),
            "{err:?}"
        );
    }
}
