//! Recognising a server that refused our client certificate.
//!
//! With TLS 1.3 the client sends its certificate last, so a server that refuses it answers with
//! a fatal alert after the client already considers the handshake done: the refusal surfaces on
//! the first read (the driver's startup), not in the handshake. A server whose new client CA
//! has the old one's name reports the signature that no longer verifies as `DecryptError`.

use std::io;
use std::sync::Arc;

use rustls::AlertDescription;

use crate::error::Source;

/// Whether `e` carries a fatal alert by which the server refused the client certificate
/// (unknown CA, bad, expired, revoked or unsupported certificate, a signature it cannot verify,
/// access denied). Only alerts received from the server count, never errors raised locally.
pub(crate) fn is_certificate_rejection(e: &io::Error) -> bool {
    e.get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        .is_some_and(is_rejection_alert)
}

/// The rustls error inside `e`, as an error source (the I/O error itself if there is none).
pub(crate) fn rejection_source(e: &io::Error) -> Source {
    match e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        Some(rustls_error) => Arc::new(rustls_error.clone()),
        None => Arc::new(io::Error::new(e.kind(), e.to_string())),
    }
}

fn is_rejection_alert(e: &rustls::Error) -> bool {
    matches!(
        e,
        rustls::Error::AlertReceived(
            AlertDescription::UnknownCA
                | AlertDescription::BadCertificate
                | AlertDescription::CertificateExpired
                | AlertDescription::CertificateRevoked
                | AlertDescription::CertificateUnknown
                | AlertDescription::UnsupportedCertificate
                | AlertDescription::CertificateRequired
                | AlertDescription::DecryptError
                | AlertDescription::AccessDenied
        )
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificate_alerts_are_rejections_and_others_are_not() {
        let wrap = |e: rustls::Error| io::Error::new(io::ErrorKind::InvalidData, e);
        for alert in [
            AlertDescription::UnknownCA,
            AlertDescription::BadCertificate,
            AlertDescription::CertificateExpired,
            AlertDescription::CertificateRevoked,
            AlertDescription::DecryptError,
            AlertDescription::AccessDenied,
        ] {
            assert!(
                is_certificate_rejection(&wrap(rustls::Error::AlertReceived(alert))),
                "{alert:?}"
            );
        }
        for alert in [
            AlertDescription::CloseNotify,
            AlertDescription::HandshakeFailure,
            AlertDescription::InternalError,
        ] {
            assert!(
                !is_certificate_rejection(&wrap(rustls::Error::AlertReceived(alert))),
                "{alert:?}"
            );
        }
        assert!(!is_certificate_rejection(&io::Error::from(
            io::ErrorKind::ConnectionReset
        )));
        assert!(!is_certificate_rejection(&wrap(rustls::Error::DecryptError)));
    }
}
