//! Certificate authorities: the per-instance legacy server CA, the CAS root → intermediate
//! hierarchy, per-instance client CAs, and the certificates they sign.

use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
    KeyPair, KeyUsagePurpose, SerialNumber, SubjectPublicKeyInfo,
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use time::OffsetDateTime;

/// A CA that can sign certificates.
pub(crate) struct Ca {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
    der: CertificateDer<'static>,
}

/// A server certificate chain and its key.
pub(crate) struct ServerCert {
    pub(crate) chain: Vec<CertificateDer<'static>>,
    pub(crate) key: PrivateKeyDer<'static>,
}

fn name(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CountryName, "US");
    dn.push(DnType::OrganizationName, "Google, Inc");
    dn.push(DnType::CommonName, common_name);
    dn
}

fn random_serial() -> SerialNumber {
    let mut bytes: [u8; 16] = rand::random();
    bytes[0] &= 0x7f;
    SerialNumber::from_slice(&bytes)
}

fn ca_params(common_name: &str) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = name(common_name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.not_before = OffsetDateTime::now_utc() - Duration::from_secs(3600);
    params.not_after = OffsetDateTime::now_utc() + Duration::from_secs(10 * 365 * 24 * 3600);
    params.serial_number = Some(random_serial());
    params
}

impl Ca {
    /// A self-signed root CA.
    pub(crate) fn root(common_name: &str) -> anyhow::Result<Self> {
        let key = KeyPair::generate()?;
        let params = ca_params(common_name);
        let cert = params.self_signed(&key)?;
        Ok(Self {
            pem: cert.pem(),
            der: cert.der().clone(),
            issuer: Issuer::new(params, key),
        })
    }

    /// An intermediate CA signed by this one.
    pub(crate) fn intermediate(&self, common_name: &str) -> anyhow::Result<Self> {
        let key = KeyPair::generate()?;
        let params = ca_params(common_name);
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(Self {
            pem: cert.pem(),
            der: cert.der().clone(),
            issuer: Issuer::new(params, key),
        })
    }

    /// The CA certificate in PEM.
    pub(crate) fn pem(&self) -> &str {
        &self.pem
    }

    /// The CA certificate in DER.
    pub(crate) fn der(&self) -> &CertificateDer<'static> {
        &self.der
    }

    /// A server certificate with `common_name` and the given SAN DNS names (none for legacy),
    /// valid from `validity.0` to `validity.1`. `chain_tail` are the certificates to send after
    /// the leaf (intermediates).
    pub(crate) fn server_cert_valid(
        &self,
        common_name: &str,
        dns_names: &[String],
        chain_tail: &[CertificateDer<'static>],
        validity: (OffsetDateTime, OffsetDateTime),
    ) -> anyhow::Result<ServerCert> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(dns_names.to_vec())?;
        params.distinguished_name = name(common_name);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.not_before = validity.0;
        params.not_after = validity.1;
        params.serial_number = Some(random_serial());
        let cert = params.signed_by(&key, &self.issuer)?;
        let mut chain = vec![cert.der().clone()];
        chain.extend(chain_tail.iter().cloned());
        Ok(ServerCert {
            chain,
            key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        })
    }

    /// A client certificate over someone else's public key (PEM SubjectPublicKeyInfo).
    pub(crate) fn client_cert(
        &self,
        public_key_pem: &str,
        common_name: &str,
        not_after: SystemTime,
    ) -> anyhow::Result<(String, CertificateDer<'static>)> {
        let spki = SubjectPublicKeyInfo::from_pem(public_key_pem)?;
        let mut params = CertificateParams::default();
        params.distinguished_name = name(common_name);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.not_before = OffsetDateTime::now_utc() - Duration::from_secs(60);
        params.not_after = OffsetDateTime::from(not_after);
        params.serial_number = Some(random_serial());
        let cert = params.signed_by(&spki, &self.issuer)?;
        Ok((cert.pem(), cert.der().clone()))
    }
}

/// The `sql#sslCert` resource describing the first certificate in `pem`, as the Admin API returns
/// it: every field (serial number, subject, SHA-1 fingerprint, validity) read from the
/// certificate itself, so it always agrees with what the TLS handshake presents.
pub(crate) fn ssl_cert(pem: &str, instance: &str) -> anyhow::Result<serde_json::Value> {
    let first = pem::parse_many(pem)?
        .into_iter()
        .next()
        .ok_or_else(|| anyhow::anyhow!("no certificate in the PEM"))?;
    let (_, cert) = x509_parser::parse_x509_certificate(first.contents())
        .map_err(|e| anyhow::anyhow!("unparsable certificate: {e}"))?;
    let rfc3339 = |t: x509_parser::time::ASN1Time| {
        t.to_datetime()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default()
    };
    let sha1 = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY, first.contents());
    Ok(serde_json::json!({
        "kind": "sql#sslCert",
        "certSerialNumber": cert.tbs_certificate.serial.to_string(),
        "cert": pem,
        "commonName": cert.subject().to_string().replace(", ", ","),
        "sha1Fingerprint": crate::hex::hex(sha1.as_ref()),
        "createTime": rfc3339(cert.validity().not_before),
        "expirationTime": rfc3339(cert.validity().not_after),
        "instance": instance,
    }))
}
