//! TCP to the server-side proxy on port 3307, then the TLS 1.3 handshake.

use std::fmt;
use std::future::Future;
use std::io;
use std::sync::Arc;

use futures_util::future::BoxFuture;
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tracing::debug;

use crate::conn_info::ConnInfo;
use crate::error::ConnectStage;
use crate::read_ahead::{READ_AHEAD, ReadAhead};
use crate::refresh::RejectionHook;
use crate::stream::{AsyncStream, BoxedStream, CloudSqlStream, Transport};
use crate::tls::{is_certificate_rejection, rejection_source};
use crate::{Error, SERVER_PROXY_PORT};

/// A custom way to open the transport to `host:port` (SOCKS, corporate proxies, tests).
#[derive(Clone)]
pub(crate) struct DialFn(
    Arc<dyn Fn(String, u16) -> BoxFuture<'static, io::Result<BoxedStream>> + Send + Sync>,
);

impl DialFn {
    pub(crate) fn new<F, Fut, S>(f: F) -> Self
    where
        F: Fn(String, u16) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = io::Result<S>> + Send + 'static,
        S: AsyncStream,
    {
        Self(Arc::new(move |host, port| {
            let fut = f(host, port);
            Box::pin(async move { fut.await.map(|s| Box::new(s) as BoxedStream) })
        }))
    }
}

impl fmt::Debug for DialFn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DialFn(..)")
    }
}

/// Opens the transport and runs the TLS handshake, keeping `stage` up to date for a timeout's
/// message. A server that refuses the client certificate during the handshake fires `rejection`
/// (the returned stream fires it if the refusal comes later, on a read). `server_name`, when
/// given (a custom DNS name), is the name the server certificate must carry in place of the
/// instance's own DNS names. `read_ahead` reads TCP in bursts (the local socket's relay).
pub(crate) async fn dial(
    info: &ConnInfo,
    host: &str,
    server_name: Option<ServerName<'static>>,
    dial_fn: Option<&DialFn>,
    rejection: Option<RejectionHook>,
    stage: &crate::connector::StageCell,
    read_ahead: bool,
) -> Result<CloudSqlStream, Error> {
    stage.set(ConnectStage::Dialing);
    let instance = info.name.to_string();
    let address = format!("{host}:{SERVER_PROXY_PORT}");
    let dial_err = |e: io::Error| Error::Dial {
        instance: instance.clone(),
        address: address.clone(),
        source: Arc::new(e),
    };
    let transport = match dial_fn {
        Some(f) => Transport::Custom(
            (f.0)(host.to_owned(), SERVER_PROXY_PORT)
                .await
                .map_err(dial_err)?,
        ),
        None => {
            let tcp = TcpStream::connect((host, SERVER_PROXY_PORT))
                .await
                .map_err(dial_err)?;
            tcp.set_nodelay(true).map_err(dial_err)?;
            if read_ahead {
                Transport::TcpReadAhead(ReadAhead::new(tcp, READ_AHEAD))
            } else {
                Transport::Tcp(tcp)
            }
        }
    };
    debug!(%instance, %address, "TCP connected; starting TLS 1.3 handshake");
    stage.set(ConnectStage::Handshake);
    let tls = TlsConnector::from(info.tls.clone())
        .connect(server_name.unwrap_or_else(|| info.server_name.clone()), transport)
        .await
        .map_err(|e| {
            if is_certificate_rejection(&e)
                && let Some(hook) = &rejection
            {
                hook.fire(rejection_source(&e));
            }
            Error::Tls {
                instance: instance.clone(),
                address: address.clone(),
                source: tls_source(e),
            }
        })?;
    Ok(CloudSqlStream::new(tls, instance, rejection))
}

/// Unwraps rustls' error from the I/O error tokio-rustls reports, and our verifier's error from
/// rustls', so the message names the check that failed.
fn tls_source(e: io::Error) -> crate::error::Source {
    match e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        Some(rustls::Error::InvalidCertificate(rustls::CertificateError::Other(other))) => other.0.clone(),
        Some(rustls_error) => Arc::new(rustls_error.clone()),
        None => Arc::new(e),
    }
}
