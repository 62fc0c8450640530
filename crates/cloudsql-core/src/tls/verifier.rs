//! The server verifier: the chain must end at the instance's `serverCaCert`, and the leaf must
//! name the instance. Each failed check is reported by name.

use std::fmt;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{WebPkiSupportedAlgorithms, verify_tls13_signature};
use rustls::server::ParsedCertificate;
use rustls::{CertificateError, DigitallySignedStruct, OtherError, RootCertStore, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use x509_cert::der::asn1::{Any, Ia5StringRef, ObjectIdentifier, PrintableStringRef, Utf8StringRef};
use x509_cert::der::{Decode, Tag, Tagged};

/// What the server certificate must name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ServerIdentity {
    /// Legacy per-instance CA: subject CN equals `project:instance`.
    CommonName(String),
    /// CAS-based CA: a SAN DNS entry matches one of the instance's DNS names; the CN
    /// (`project:instance`) is the fallback.
    DnsName {
        dns_names: Vec<String>,
        common_name: String,
    },
}

/// A server certificate failed one of our checks.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ServerCertError {
    #[error("server certificate does not chain to the instance's server CA (serverCaCert): {0}")]
    Chain(rustls::Error),
    #[error("server certificate names `{found}`, expected common name `{expected}` (legacy CA mode)")]
    CommonName { expected: String, found: String },
    #[error(
        "server certificate has no SAN DNS name matching `{expected}` and its common name is `{found}` (CAS mode)"
    )]
    DnsName { expected: String, found: String },
    #[error("server certificate cannot be parsed: {0}")]
    Unparsable(String),
    #[error("the server asked for a TLS 1.2 signature; only TLS 1.3 is allowed")]
    Tls12,
}

impl From<ServerCertError> for rustls::Error {
    fn from(e: ServerCertError) -> Self {
        rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(e))))
    }
}

/// Verifies a Cloud SQL server certificate.
pub(crate) struct InstanceVerifier {
    roots: RootCertStore,
    identity: ServerIdentity,
    algorithms: WebPkiSupportedAlgorithms,
}

impl InstanceVerifier {
    pub(crate) fn new(
        ca_certs: Vec<CertificateDer<'static>>,
        identity: ServerIdentity,
    ) -> Result<Self, rustls::Error> {
        let mut roots = RootCertStore::empty();
        for cert in ca_certs {
            roots.add(cert)?;
        }
        Ok(Self {
            roots,
            identity,
            algorithms: super::provider().signature_verification_algorithms,
        })
    }

    /// Send SNI only where the server certificate carries the DNS name.
    pub(crate) fn sends_sni(&self) -> bool {
        matches!(self.identity, ServerIdentity::DnsName { .. })
    }

    /// The name to hand rustls; the verifier itself decides what the certificate must say.
    pub(crate) fn server_name(&self) -> ServerName<'static> {
        match &self.identity {
            ServerIdentity::DnsName { dns_names, .. } => dns_names
                .iter()
                .find_map(|name| ServerName::try_from(name.clone()).ok())
                .unwrap_or_else(placeholder_name),
            ServerIdentity::CommonName(_) => placeholder_name(),
        }
    }
}

impl fmt::Debug for InstanceVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InstanceVerifier")
            .field("roots", &self.roots.len())
            .field("identity", &self.identity)
            .finish()
    }
}

/// The name rustls is given where the certificate is checked by CN instead.
const PLACEHOLDER: &str = "cloudsql.invalid";

/// A syntactically valid name for rustls where the certificate is checked by CN instead.
fn placeholder_name() -> ServerName<'static> {
    ServerName::DnsName(
        rustls_pki_types::DnsName::try_from(PLACEHOLDER)
            .expect("a constant, valid DNS name")
            .to_owned(),
    )
}

/// The custom DNS name a connect was made through, when `server_name` is one: not the
/// placeholder and none of the instance's own names.
fn custom_name<'a>(server_name: &'a ServerName<'_>, dns_names: &[String]) -> Option<&'a str> {
    match server_name {
        ServerName::DnsName(name) => {
            let name = name.as_ref();
            let own = name.eq_ignore_ascii_case(PLACEHOLDER)
                || dns_names.iter().any(|d| d.eq_ignore_ascii_case(name));
            (!own).then_some(name)
        }
        _ => None,
    }
}

/// The subject common name of a certificate, if it has one.
fn common_name(cert: &CertificateDer<'_>) -> Result<String, ServerCertError> {
    let parsed = x509_cert::Certificate::from_der(cert.as_ref())
        .map_err(|e| ServerCertError::Unparsable(e.to_string()))?;
    let cn = parsed
        .tbs_certificate
        .subject
        .0
        .iter()
        .flat_map(|rdn| rdn.0.iter())
        .find(|attribute| attribute.oid == COMMON_NAME)
        .and_then(|attribute| directory_string(&attribute.value))
        .unwrap_or_default();
    Ok(cn)
}

/// The `id-at-commonName` attribute type (RFC 4519).
const COMMON_NAME: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.4.3");

/// The text of a name attribute, in the string types certificates use for it.
fn directory_string(value: &Any) -> Option<String> {
    let text = match value.tag() {
        Tag::Utf8String => value.decode_as::<Utf8StringRef<'_>>().ok()?.as_str().to_owned(),
        Tag::PrintableString => value
            .decode_as::<PrintableStringRef<'_>>()
            .ok()?
            .as_str()
            .to_owned(),
        Tag::Ia5String => value.decode_as::<Ia5StringRef<'_>>().ok()?.as_str().to_owned(),
        _ => return None,
    };
    Some(text)
}

impl ServerCertVerifier for InstanceVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let parsed = ParsedCertificate::try_from(end_entity)?;
        rustls::client::verify_server_cert_signed_by_trust_anchor(
            &parsed,
            &self.roots,
            intermediates,
            now,
            self.algorithms.all,
        )
        .map_err(ServerCertError::Chain)?;
        match &self.identity {
            ServerIdentity::CommonName(expected) => {
                let found = common_name(end_entity)?;
                if &found != expected {
                    return Err(ServerCertError::CommonName {
                        expected: expected.clone(),
                        found,
                    }
                    .into());
                }
            }
            ServerIdentity::DnsName {
                dns_names,
                common_name: expected_cn,
            } => {
                // Connected through a custom DNS name (Go's and Python's semantics): that name,
                // not the instance's own, must be in the SAN; the CN is the fallback either way.
                let custom = custom_name(server_name, dns_names);
                let san_ok = match custom {
                    Some(_) => rustls::client::verify_server_name(&parsed, server_name).is_ok(),
                    None => dns_names.iter().any(|dns_name| {
                        ServerName::try_from(dns_name.as_str())
                            .ok()
                            .is_some_and(|name| rustls::client::verify_server_name(&parsed, &name).is_ok())
                    }),
                };
                if !san_ok {
                    let found = common_name(end_entity)?;
                    if &found != expected_cn {
                        return Err(ServerCertError::DnsName {
                            expected: custom.map_or_else(|| dns_names.join("`, `"), str::to_owned),
                            found,
                        }
                        .into());
                    }
                }
            }
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(ServerCertError::Tls12.into())
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use rcgen::{CertificateParams, DistinguishedName, DnType, DnValue, KeyPair};

    use super::*;

    fn cert_with(cn: Option<DnValue>) -> CertificateDer<'static> {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        // rcgen names a certificate "rcgen self signed cert" unless told otherwise.
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::OrganizationName, "Google, Inc");
        if let Some(cn) = cn {
            params.distinguished_name.push(DnType::CommonName, cn);
        }
        let key = KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().der().clone()
    }

    #[test]
    fn the_common_name_is_read_in_each_string_type_certificates_use() {
        let name = "my-project:my-instance";
        for value in [
            DnValue::Utf8String(name.to_owned()),
            DnValue::PrintableString(name.try_into().unwrap()),
            DnValue::Ia5String(name.try_into().unwrap()),
        ] {
            let kind = format!("{value:?}");
            assert_eq!(common_name(&cert_with(Some(value))).unwrap(), name, "{kind}");
        }
    }

    #[test]
    fn a_certificate_without_a_common_name_has_an_empty_one_and_garbage_is_unparsable() {
        assert_eq!(common_name(&cert_with(None)).unwrap(), "");
        let garbage = CertificateDer::from(vec![0x30, 0x03, 0x02, 0x01]);
        assert!(matches!(
            common_name(&garbage),
            Err(ServerCertError::Unparsable(_))
        ));
    }
}
