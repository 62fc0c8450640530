//! The gRPC channel to the SQL Data Service: HTTP/2 over TLS to the Admin API host, with our
//! own rustls configuration (aws-lc-rs, like every other TLS connection of the connector).

use std::io;
use std::sync::Arc;

use hyper_util::rt::TokioIo;
use rustls::ClientConfig;
use rustls_pki_types::{CertificateDer, ServerName, pem::PemObject};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tonic::transport::{Channel, Endpoint, Uri};

use crate::Error;

/// The TLS client configuration for the tunnel: the given roots (a test or private deployment's
/// CA) or the platform's trust store (the process's one verifier, loaded on first use), TLS 1.3,
/// ALPN `h2`.
pub(crate) fn tls_config(root_ca_pem: Option<&str>) -> Result<Arc<ClientConfig>, Error> {
    let builder = ClientConfig::builder_with_provider(crate::tls::provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| Error::config(format!("TLS 1.3 is unavailable: {e}")))?;
    let mut config = match root_ca_pem {
        Some(pem) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
                let cert = cert.map_err(|e| {
                    Error::config(format!("the SQL Data Service root CA is not valid PEM: {e}"))
                })?;
                roots
                    .add(cert)
                    .map_err(|e| Error::config(format!("the SQL Data Service root CA is unusable: {e}")))?;
            }
            if roots.is_empty() {
                return Err(Error::config(
                    "the SQL Data Service root CA PEM holds no certificate",
                ));
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        None => builder
            .dangerous()
            .with_custom_certificate_verifier(crate::tls::platform_verifier()?)
            .with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}

/// Checks an endpoint URL (`https://host[:port]`) and splits out what dialing needs.
pub(crate) fn parse_endpoint(url: &str) -> Result<(Uri, String, u16), Error> {
    let bad = |why: &str| Error::config(format!("SQL Data Service endpoint `{url}` {why}"));
    let uri: Uri = url.parse().map_err(|_| bad("is not a valid URL"))?;
    if uri.scheme_str() != Some("https") {
        return Err(bad("must start with https:// (the tunnel always runs over TLS)"));
    }
    let host = uri.host().ok_or_else(|| bad("has no host"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']').to_owned();
    let port = uri.port_u16().unwrap_or(443);
    Ok((uri, host, port))
}

/// Opens the HTTP/2 connection (TCP, TLS) the tunnel's streams share.
pub(crate) async fn connect(
    uri: Uri,
    host: String,
    port: u16,
    tls: Arc<ClientConfig>,
    user_agent: &str,
) -> Result<Channel, tonic::transport::Error> {
    let server_name = ServerName::try_from(host.clone())
        .map(|n| n.to_owned())
        .unwrap_or_else(|_| {
            ServerName::try_from("invalid.invalid")
                .expect("a valid DNS name")
                .to_owned()
        });
    let connector = TlsConnector::from(tls);
    let dial = tower::service_fn(move |_: Uri| {
        let connector = connector.clone();
        let host = host.clone();
        let server_name = server_name.clone();
        async move {
            let tcp = TcpStream::connect((host.as_str(), port)).await?;
            tcp.set_nodelay(true)?;
            let tls = connector.connect(server_name, tcp).await?;
            Ok::<_, io::Error>(TokioIo::new(tls))
        }
    });
    let mut endpoint = Endpoint::from(uri);
    if let Ok(with_agent) = endpoint.clone().user_agent(user_agent.to_owned()) {
        endpoint = with_agent;
    }
    endpoint.connect_with_connector(dial).await
}
