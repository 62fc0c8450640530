//! The service's own CA and TLS 1.3 server configuration (ALPN `h2`), and the accepted stream
//! type tonic serves.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use rustls::ServerConfig;
use time::OffsetDateTime;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use crate::ca::Ca;

/// A CA of its own and a server configuration for `localhost` and `127.0.0.1` signed by it.
pub(crate) fn server_config() -> anyhow::Result<(String, Arc<ServerConfig>)> {
    let ca = Ca::root("cloudsql-emulator SQL Data Service CA")?;
    let now = OffsetDateTime::now_utc();
    let cert = ca.server_cert_valid(
        "localhost",
        &["localhost".to_owned(), "127.0.0.1".to_owned()],
        &[],
        (now - time::Duration::hours(1), now + time::Duration::days(30)),
    )?;
    let mut config =
        ServerConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_no_client_auth()
            .with_single_cert(cert.chain, cert.key)?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok((ca.pem().to_owned(), Arc::new(config)))
}

/// An accepted TLS connection, as tonic's server takes it.
pub(crate) struct TlsIo(pub(crate) tokio_rustls::server::TlsStream<TcpStream>);

impl tonic::transport::server::Connected for TlsIo {
    type ConnectInfo = ();

    fn connect_info(&self) -> Self::ConnectInfo {}
}

impl AsyncRead for TlsIo {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsIo {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_shutdown(cx)
    }
}
