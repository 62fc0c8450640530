//! rustls client configuration for one instance: TLS 1.3 only, the ephemeral client certificate,
//! and trust in nothing but the instance's server CA.

mod platform;
mod rejection;
mod verifier;

use std::sync::Arc;

use rustls::ClientConfig;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

pub(crate) use platform::platform_verifier;
pub(crate) use rejection::{is_certificate_rejection, rejection_source};
pub(crate) use verifier::{InstanceVerifier, ServerIdentity};

use crate::Error;
use crate::keys::ClientKey;

/// The one crypto provider used for everything: aws-lc-rs.
pub(crate) fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// Parses every certificate in a PEM bundle: the field `what` of the Admin API `method`'s answer
/// (`serverCaCert` of `connectSettings`, `ephemeralCert` of `generateEphemeralCert`), which the
/// errors name.
pub(crate) fn parse_pem_certs(
    pem: &str,
    instance: &str,
    method: &'static str,
    what: &str,
) -> Result<Vec<CertificateDer<'static>>, Error> {
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Error::AdminApiResponse {
            instance: instance.to_owned(),
            method,
            detail: format!("{what} is not valid PEM: {e}"),
        })?;
    if certs.is_empty() {
        return Err(Error::AdminApiResponse {
            instance: instance.to_owned(),
            method,
            detail: format!("{what} holds no certificate"),
        });
    }
    Ok(certs)
}

/// Builds the client config for one refresh's worth of instance data.
pub(crate) fn client_config(
    instance: &str,
    verifier: InstanceVerifier,
    client_cert: CertificateDer<'static>,
    key: &ClientKey,
) -> Result<Arc<ClientConfig>, Error> {
    let sni = verifier.sends_sni();
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| Error::config(format!("TLS 1.3 is unavailable: {e}")))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_client_auth_cert(vec![client_cert], key.private_key_der())
        .map_err(|e| Error::InvalidCertificate {
            instance: instance.to_owned(),
            detail: format!("it does not match the connector's key: {e}"),
        })?;
    config.enable_sni = sni;
    Ok(Arc::new(config))
}
