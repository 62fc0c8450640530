//! Oversized bodies for the body-size faults, streamed in 64 KiB chunks so that a body of
//! hundreds of megabytes costs the emulator no memory.

use std::io::Cursor;

use axum::body::Body;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use tokio::io::AsyncReadExt as _;
use tokio_util::io::ReaderStream;

/// The size of each streamed chunk.
const CHUNK: usize = 64 * 1024;

/// A response of exactly `len` bytes: `prefix`, then `fill` bytes, then `suffix` (cut short at
/// `len` when the two alone are longer).
pub(crate) fn oversized(
    status: StatusCode,
    content_type: &'static str,
    prefix: Vec<u8>,
    fill: u8,
    suffix: &'static [u8],
    len: u64,
) -> Response {
    let fixed = u64::try_from(prefix.len() + suffix.len()).unwrap_or(u64::MAX);
    let reader = Cursor::new(prefix)
        .chain(tokio::io::repeat(fill).take(len.saturating_sub(fixed)))
        .chain(suffix)
        .take(len);
    let body = Body::from_stream(ReaderStream::with_capacity(reader, CHUNK));
    (status, [("content-type", content_type)], body).into_response()
}

/// An HTML error page of exactly `len` bytes, as a front end in the way of the API sends.
pub(crate) fn html_error(status: StatusCode, len: u64) -> Response {
    let code = status.as_u16();
    let reason = status.canonical_reason().unwrap_or("Error");
    let prefix = format!(
        "<!DOCTYPE html>\n<html lang=en>\n<meta charset=utf-8>\n<title>Error {code} ({reason})!!1</title>\n\
         <p><b>{code}.</b> <ins>That\u{2019}s an error.</ins>\n<p>The request was refused. \
         <ins>That\u{2019}s all we know.</ins>\n<!--"
    );
    oversized(
        status,
        "text/html; charset=UTF-8",
        prefix.into_bytes(),
        b' ',
        b"-->\n</html>\n",
        len,
    )
}

/// A 200 JSON answer of exactly `len` bytes that starts like `kind`'s real answer and goes on
/// with one endless string.
pub(crate) fn json_success(kind_prefix: &str, len: u64) -> Response {
    let prefix = format!("{kind_prefix}\"padding\":\"").into_bytes();
    oversized(StatusCode::OK, "application/json", prefix, b'a', b"\"}", len)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    async fn body(response: Response) -> Vec<u8> {
        axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap()
            .to_vec()
    }

    #[tokio::test]
    async fn bodies_have_exactly_the_asked_length() {
        for len in [0, 5, 150, 200, 64 * 1024 + 7, 300_000] {
            let html = body(html_error(StatusCode::FORBIDDEN, len)).await;
            assert_eq!(html.len() as u64, len);
            let json = body(json_success("{\"kind\":\"sql#connectSettings\",", len)).await;
            assert_eq!(json.len() as u64, len);
        }
        let html = body(html_error(StatusCode::FORBIDDEN, 4096)).await;
        assert!(html.starts_with(b"<!DOCTYPE html>"));
        assert!(html.ends_with(b"</html>\n"));
        let json = body(json_success("{\"kind\":\"sql#connectSettings\",", 4096)).await;
        assert!(json.starts_with(b"{\"kind\":\"sql#connectSettings\",\"padding\":\"aaa"));
        assert!(serde_json::from_slice::<serde_json::Value>(&json).is_ok());
    }
}
