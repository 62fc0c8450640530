//! An instance's connect settings, validated: the Admin API's `connectSettings` answer (the
//! wire type) turned into what a connection needs, with every check that can refuse it — the
//! region against the connection name, the backend, the server CA — done here, once.

use tracing::debug;

use crate::admin_api::wire::{ConnectSettings, IpMapping};
use crate::excerpt::{excerpt, is_hidden};
use crate::tls::{self, InstanceVerifier, ServerIdentity};
use crate::{Engine, Error, InstanceConnectionName, IpType};

/// The CA mode of legacy instances, whose server CA is per instance.
const LEGACY_CA_MODE: &str = "GOOGLE_MANAGED_INTERNAL_CA";

/// What `connectSettings` says about an instance, checked against its connection name.
#[derive(Debug)]
pub(crate) struct InstanceSettings {
    /// `databaseVersion`, cut short when long, for messages.
    pub(crate) database_version: String,
    /// The engine `databaseVersion` names, if known.
    pub(crate) engine: Option<Engine>,
    /// Dialable addresses by IP type, at most one of each.
    pub(crate) addresses: Vec<(IpType, String)>,
    /// Checks the server's certificate against the instance's CA and identity.
    pub(crate) verifier: InstanceVerifier,
    /// The instance accepts a metadata exchange (`CLIENT_PROTOCOL_TYPE`).
    pub(crate) mdx_supported: bool,
}

impl InstanceSettings {
    /// Validates the Admin API's answer for `name`.
    pub(crate) fn from_wire(name: &InstanceConnectionName, settings: ConnectSettings) -> Result<Self, Error> {
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
            .as_ref()
            .ok_or_else(|| bad("no serverCaCert".into()))?;
        let ca_certs = tls::parse_pem_certs(&server_ca.cert, &instance, "connectSettings", "serverCaCert")?;
        let verifier = InstanceVerifier::new(ca_certs, server_identity(name, &settings))
            .map_err(|e| bad(format!("serverCaCert is not a usable CA: {e}")))?;
        let mdx_supported = settings
            .mdx_protocol_support
            .iter()
            .any(|p| p == "CLIENT_PROTOCOL_TYPE");
        Ok(Self {
            database_version,
            engine,
            addresses,
            verifier,
            mdx_supported,
        })
    }
}

/// What the server certificate must name: the legacy `project:instance` CN for per-instance
/// CAs, else one of the instance's DNS names.
fn server_identity(name: &InstanceConnectionName, settings: &ConnectSettings) -> ServerIdentity {
    let common_name = name.legacy_common_name();
    let ca_mode = settings.server_ca_mode.as_deref().unwrap_or(LEGACY_CA_MODE);
    if ca_mode == LEGACY_CA_MODE {
        return ServerIdentity::CommonName(common_name);
    }
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
fn addresses(ips: &[IpMapping], psc: Option<String>) -> Vec<(IpType, String)> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admin_api::wire::DnsNameMapping;

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
        InstanceSettings::from_wire(&name, settings(json)).unwrap_err()
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
    fn a_server_ca_that_is_no_certificate_names_connect_settings() {
        let err = refused(serde_json::json!({"region": "us-central1", "serverCaCert": {"cert": "nothing"}}));
        assert!(
            matches!(
                err,
                Error::AdminApiResponse {
                    method: "connectSettings",
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(
            err.to_string().contains("serverCaCert holds no certificate"),
            "{err}"
        );
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
