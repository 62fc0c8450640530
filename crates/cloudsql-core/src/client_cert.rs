//! The ephemeral client certificate, parsed from `generateEphemeralCert`'s PEM answer.

use std::time::SystemTime;

use rustls_pki_types::CertificateDer;
use x509_cert::der::Decode;

use crate::tls;
use crate::{Error, InstanceConnectionName};

/// The ephemeral client certificate `generateEphemeralCert` signed, parsed.
#[derive(Debug)]
pub(crate) struct ClientCert {
    pub(crate) der: CertificateDer<'static>,
    /// The end of its validity.
    pub(crate) not_after: SystemTime,
}

impl ClientCert {
    /// Parses the PEM certificate `generateEphemeralCert` returned for `name`.
    pub(crate) fn from_pem(name: &InstanceConnectionName, pem: &str) -> Result<Self, Error> {
        let instance = name.to_string();
        let cert_err = |detail: String| Error::InvalidCertificate {
            instance: instance.clone(),
            detail,
        };
        let der = tls::parse_pem_certs(pem, &instance, "generateEphemeralCert", "ephemeralCert")?
            .into_iter()
            .next()
            .ok_or_else(|| cert_err("no certificate".into()))?;
        let parsed = x509_cert::Certificate::from_der(der.as_ref())
            .map_err(|e| cert_err(format!("cannot parse it: {e}")))?;
        let not_after = parsed.tbs_certificate.validity.not_after.to_system_time();
        Ok(Self { der, not_after })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(pem: &str) -> Error {
        let name: InstanceConnectionName = "p:r:i".parse().unwrap();
        ClientCert::from_pem(&name, pem).unwrap_err()
    }

    #[test]
    fn an_answer_without_a_certificate_is_refused() {
        let err = refused("not a certificate");
        assert!(
            err.to_string().contains("ephemeralCert holds no certificate"),
            "{err}"
        );
    }

    #[test]
    fn a_certificate_that_is_no_x509_is_refused() {
        let pem = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        let err = refused(pem);
        assert!(matches!(err, Error::InvalidCertificate { .. }), "{err:?}");
        assert!(err.to_string().contains("cannot parse it"), "{err}");
    }
}
