//! What one refresh yields: addresses by IP type, the TLS client config holding the client
//! certificate, the server identity to check, and when it all expires.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use tracing::debug;

use crate::admin_api::wire::ConnectSettings;
use crate::excerpt::{excerpt, is_hidden};
use crate::keys::ClientKey;
use crate::tls::{self, InstanceVerifier, ServerIdentity};
use crate::{Engine, Error, InstanceConnectionName, IpType};

/// The CA mode of legacy instances, whose server CA is per instance.
const LEGACY_CA_MODE: &str = "GOOGLE_MANAGED_INTERNAL_CA";

/// Connection data for one instance, valid until `expires_at`.
pub(crate) struct ConnInfo {
    pub(crate) name: InstanceConnectionName,
    pub(crate) database_version: String,
    pub(crate) engine: Option<Engine>,
    addresses: Vec<(IpType, String)>,
    pub(crate) expires_at: SystemTime,
    pub(crate) tls: Arc<ClientConfig>,
    pub(crate) server_name: ServerName<'static>,
    /// The instance accepts a metadata exchange (`CLIENT_PROTOCOL_TYPE`).
    pub(crate) mdx_supported: bool,
}

impl fmt::Debug for ConnInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnInfo")
            .field("name", &self.name)
            .field("database_version", &self.database_version)
            .field("addresses", &self.addresses)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

impl ConnInfo {
    /// Fails with [`Error::IamAuthnNotSupported`] when IAM authn is on for an engine without it.
    pub(crate) fn check_iam_authn(&self, iam_authn: bool) -> Result<(), Error> {
        match self.engine.filter(|e| iam_authn && !e.supports_iam_authn()) {
            Some(engine) => Err(Error::IamAuthnNotSupported {
                instance: self.name.to_string(),
                engine,
            }),
            None => Ok(()),
        }
    }

    /// Builds connection data from the two Admin API answers.
    pub(crate) fn new(
        name: &InstanceConnectionName,
        settings: ConnectSettings,
        client_cert_pem: &str,
        key: &ClientKey,
        login_token_expiry: Option<SystemTime>,
        now: SystemTime,
    ) -> Result<Self, Error> {
        let instance = name.to_string();
        let bad = |detail: String| Error::AdminApiResponse {
            instance: instance.clone(),
            method: "connectSettings",
            detail,
        };
        match settings.region.as_deref() {
            None | Some("") => {
                return Err(bad(
                    "connectSettings has no region; the Admin API answer is incomplete, \
                     so the instance cannot be checked against its connection name"
                        .into(),
                ));
            }
            Some(region) if region != name.region() => {
                return Err(Error::RegionMismatch {
                    instance: instance.clone(),
                    expected: name.region().to_owned(),
                    actual: excerpt(region),
                });
            }
            Some(_) => {}
        }
        if let Some(backend) = settings.backend_type.as_deref()
            && backend != "SECOND_GEN"
        {
            return Err(Error::config(format!(
                "instance `{instance}` has backend type {}; only SECOND_GEN instances are supported",
                excerpt(backend)
            )));
        }
        let raw_version = settings.database_version.as_deref().unwrap_or_default();
        let engine = Engine::from_database_version(raw_version);
        let database_version = excerpt(raw_version);

        let addresses = addresses(&settings.ip_addresses, psc_dns_name(&settings));

        let server_ca = settings
            .server_ca_cert
            .ok_or_else(|| bad("no serverCaCert".into()))?;
        let ca_certs = tls::parse_pem_certs(&server_ca.cert, &instance, "serverCaCert")?;
        let common_name = name.legacy_common_name();
        let ca_mode = settings.server_ca_mode.as_deref().unwrap_or(LEGACY_CA_MODE);
        let identity = if ca_mode == LEGACY_CA_MODE {
            ServerIdentity::CommonName(common_name)
        } else {
            let mut dns_names: Vec<String> = settings
                .dns_names
                .iter()
                .map(|d| d.name.trim_end_matches('.').to_owned())
                .chain(
                    settings
                        .dns_name
                        .iter()
                        .map(|d| d.trim_end_matches('.').to_owned()),
                )
                .filter(|d| !d.is_empty())
                .collect();
            dns_names.dedup();
            ServerIdentity::DnsName {
                dns_names,
                common_name,
            }
        };
        let verifier = InstanceVerifier::new(ca_certs, identity)
            .map_err(|e| bad(format!("serverCaCert is not a usable CA: {e}")))?;
        let server_name = verifier.server_name();

        let cert_err = |detail: String| Error::InvalidCertificate {
            instance: instance.clone(),
            detail,
        };
        let client_cert = tls::parse_pem_certs(client_cert_pem, &instance, "ephemeralCert")?
            .into_iter()
            .next()
            .ok_or_else(|| cert_err("no certificate".into()))?;
        let (_, parsed) = x509_parser::parse_x509_certificate(client_cert.as_ref())
            .map_err(|e| cert_err(format!("cannot parse it: {e}")))?;
        let not_after = SystemTime::UNIX_EPOCH
            + Duration::from_secs(u64::try_from(parsed.validity().not_after.timestamp()).unwrap_or(0));
        let expires_at = match login_token_expiry {
            Some(token_expiry) => not_after.min(token_expiry),
            None => not_after,
        };
        if expires_at <= now {
            return Err(cert_err(format!(
                "it expired at {} before it could be used",
                humantime(expires_at)
            )));
        }
        let tls = tls::client_config(&instance, verifier, client_cert, key)?;
        let mdx_supported = settings
            .mdx_protocol_support
            .iter()
            .any(|p| p == "CLIENT_PROTOCOL_TYPE");

        Ok(Self {
            name: name.clone(),
            database_version,
            engine,
            addresses,
            expires_at,
            tls,
            server_name,
            mdx_supported,
        })
    }

    /// The address to dial for `ip_type`.
    pub(crate) fn address(&self, ip_type: IpType) -> Result<&str, Error> {
        self.addresses
            .iter()
            .find(|(t, _)| *t == ip_type)
            .map(|(_, addr)| addr.as_str())
            .ok_or_else(|| {
                let available: Vec<String> = self.addresses.iter().map(|(t, _)| t.to_string()).collect();
                Error::NoIpAddress {
                    instance: self.name.to_string(),
                    wanted: ip_type,
                    available: if available.is_empty() {
                        "no addresses".to_owned()
                    } else {
                        available.join(", ")
                    },
                }
            })
    }

    /// Fails with [`Error::IncompatibleDriver`] unless the instance runs the driver's engine.
    pub(crate) fn check_driver(&self, driver: Option<Engine>) -> Result<(), Error> {
        match driver {
            Some(driver) if self.engine != Some(driver) => Err(Error::IncompatibleDriver {
                instance: self.name.to_string(),
                driver,
                database_version: self.database_version.clone(),
            }),
            _ => Ok(()),
        }
    }

    /// Time left before the client certificate expires.
    pub(crate) fn remaining(&self, now: SystemTime) -> Duration {
        self.expires_at.duration_since(now).unwrap_or_default()
    }
}

/// The PSC DNS name: `dnsNames` entries for PRIVATE_SERVICE_CONNECT at INSTANCE scope (names in
/// `.sql-psc.goog` first), else the legacy `dnsName`; only when PSC is enabled.
fn psc_dns_name(settings: &ConnectSettings) -> Option<String> {
    if !settings.psc_enabled {
        return None;
    }
    let mut candidates: Vec<&str> = settings
        .dns_names
        .iter()
        .filter(|d| {
            d.connection_type.as_deref() == Some("PRIVATE_SERVICE_CONNECT")
                && d.dns_scope.as_deref().is_none_or(|s| s == "INSTANCE")
        })
        .map(|d| d.name.trim_end_matches('.'))
        .collect();
    candidates.sort_by_key(|name| !name.ends_with(".sql-psc.goog"));
    candidates
        .first()
        .map(|s| (*s).to_owned())
        .or_else(|| {
            settings
                .dns_name
                .as_ref()
                .map(|d| d.trim_end_matches('.').to_owned())
        })
        .filter(|d| !d.is_empty())
}

/// Addresses by IP type; unknown types are ignored and a repeated type keeps the last.
fn addresses(ips: &[crate::admin_api::wire::IpMapping], psc: Option<String>) -> Vec<(IpType, String)> {
    let mut out: Vec<(IpType, String)> = Vec::new();
    for ip in ips {
        let ip_type = match ip.kind.as_str() {
            "PRIMARY" => IpType::Public,
            "PRIVATE" => IpType::Private,
            _ => continue,
        };
        if !plausible_host(&ip.ip_address) {
            debug!(ip_type = %ip_type, "ignoring an address that is no IP address or host name");
            continue;
        }
        out.retain(|(t, _)| *t != ip_type);
        out.push((ip_type, ip.ip_address.clone()));
    }
    if let Some(psc) = psc.filter(|name| plausible_host(name)) {
        out.push((IpType::Psc, psc));
    }
    out
}

/// Whether an address from the Admin API can be dialed and quoted in messages: a host name or IP
/// address of at most 253 visible ASCII characters.
fn plausible_host(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 253
        && host
            .chars()
            .all(|c| c.is_ascii_graphic() && !is_hidden(c) && !matches!(c, '/' | '\\' | '@'))
}

/// RFC 3339 for messages.
fn humantime(t: SystemTime) -> String {
    time::OffsetDateTime::from(t)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| format!("{t:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admin_api::wire::{DnsNameMapping, IpMapping};

    fn settings(json: serde_json::Value) -> ConnectSettings {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn repeated_ip_types_keep_the_last_and_unknown_types_are_ignored() {
        let ips = vec![
            IpMapping {
                kind: "PRIMARY".into(),
                ip_address: "1.1.1.1".into(),
            },
            IpMapping {
                kind: "OUTGOING".into(),
                ip_address: "2.2.2.2".into(),
            },
            IpMapping {
                kind: "PRIMARY".into(),
                ip_address: "3.3.3.3".into(),
            },
            IpMapping {
                kind: "PRIVATE".into(),
                ip_address: "10.0.0.1".into(),
            },
        ];
        let addrs = addresses(&ips, None);
        assert_eq!(
            addrs,
            vec![
                (IpType::Public, "3.3.3.3".to_owned()),
                (IpType::Private, "10.0.0.1".to_owned())
            ]
        );
    }

    #[test]
    fn psc_name_prefers_instance_scoped_sql_psc_goog_names() {
        let s = settings(serde_json::json!({
            "pscEnabled": true,
            "dnsName": "legacy.example.",
            "dnsNames": [
                {"name": "a.other.", "connectionType": "PRIVATE_SERVICE_CONNECT", "dnsScope": "INSTANCE"},
                {"name": "b.us-central1.sql-psc.goog.", "connectionType": "PRIVATE_SERVICE_CONNECT", "dnsScope": "INSTANCE"},
                {"name": "c.cluster.", "connectionType": "PRIVATE_SERVICE_CONNECT", "dnsScope": "CLUSTER"},
                {"name": "d.public.", "connectionType": "PUBLIC", "dnsScope": "INSTANCE"}
            ]
        }));
        assert_eq!(psc_dns_name(&s).as_deref(), Some("b.us-central1.sql-psc.goog"));
    }

    #[test]
    fn psc_name_falls_back_to_dns_name_and_needs_psc_enabled() {
        let mut s = settings(serde_json::json!({"pscEnabled": true, "dnsName": "x.sql-psc.goog."}));
        assert_eq!(psc_dns_name(&s).as_deref(), Some("x.sql-psc.goog"));
        s.psc_enabled = false;
        assert_eq!(psc_dns_name(&s), None);
        s.dns_names.push(DnsNameMapping {
            name: "y".into(),
            connection_type: Some("PRIVATE_SERVICE_CONNECT".into()),
            dns_scope: None,
        });
        assert_eq!(psc_dns_name(&s), None);
    }

    fn refused(json: serde_json::Value) -> Error {
        let name: InstanceConnectionName = "p:us-central1:i".parse().unwrap();
        let key = ClientKey::generate().unwrap();
        ConnInfo::new(&name, settings(json), "", &key, None, SystemTime::now()).unwrap_err()
    }

    #[test]
    fn a_missing_region_is_an_incomplete_answer_not_a_mismatch() {
        for json in [serde_json::json!({}), serde_json::json!({"region": ""})] {
            let err = refused(json);
            assert!(matches!(err, Error::AdminApiResponse { .. }), "{err:?}");
            assert!(err.to_string().contains("connectSettings has no region"), "{err}");
        }
    }

    #[test]
    fn api_fields_in_messages_are_bounded() {
        let huge = format!("x\u{1b}[2J{}", "x".repeat(100_000));
        let err = refused(serde_json::json!({"region": huge}));
        let Error::RegionMismatch { actual, .. } = &err else {
            panic!("{err:?}");
        };
        assert!(actual.len() < 300 && actual.contains("truncated"), "{actual}");
        assert!(!err.to_string().contains('\u{1b}'));

        let err = refused(serde_json::json!({"region": "us-central1", "backendType": huge}));
        assert!(err.to_string().len() < 600, "{err}");
    }

    #[test]
    fn implausible_addresses_are_ignored() {
        let ip = |kind: &str, addr: &str| IpMapping {
            kind: kind.into(),
            ip_address: addr.into(),
        };
        let long = "1".repeat(300);
        let ips = vec![
            ip("PRIMARY", "1.2.3.4"),
            ip("PRIMARY", &long),
            ip("PRIVATE", "10.0.0.1\n"),
            ip("PRIVATE", "evil.example/x"),
        ];
        assert_eq!(
            addresses(&ips, Some("x\u{200b}.sql-psc.goog".into())),
            vec![(IpType::Public, "1.2.3.4".to_owned())]
        );
        assert!(plausible_host("fd00::1") && plausible_host("a.b.sql-psc.goog"));
    }
}
