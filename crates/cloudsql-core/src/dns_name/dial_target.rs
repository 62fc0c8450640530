//! Where a connect through a custom DNS name dials (Go 1.20, Python 1.20): the name's own A/AAAA
//! record when it has one, else the address in the instance's metadata; and the name the
//! server certificate must then carry (a customer-managed CAS instance with custom SANs).

use rustls_pki_types::ServerName;
use tracing::debug;

use super::{NameKind, NameResolver};
use crate::InstanceConnectionName;

/// How a connect through a DNS name departs from one through the connection name.
#[derive(Debug, Default)]
pub(crate) struct DialTarget {
    /// The address from the name's own A/AAAA record, in place of the metadata address.
    pub(crate) host: Option<String>,
    /// The name the server certificate must carry (else its CN must name the instance), in
    /// place of the instance's own DNS names.
    pub(crate) server_name: Option<ServerName<'static>>,
}

impl NameResolver {
    /// The dial target for a connect to `instance` through `dns_name`, whose metadata address
    /// is `metadata_host`. Only custom names change anything: Cloud SQL's own names are dialled
    /// by the metadata address and checked against the metadata names.
    pub(crate) async fn dial_target(
        &self,
        dns_name: &str,
        instance: &InstanceConnectionName,
        metadata_host: &str,
    ) -> DialTarget {
        let name = super::key(dns_name);
        if NameKind::of(&name) != NameKind::Custom {
            return DialTarget::default();
        }
        let server_name = ServerName::try_from(name.clone()).ok();
        let host = match self.shared.lookup.addresses(&name).await {
            Ok(addresses) => match addresses.first() {
                Some(ip) => {
                    debug!(%instance, dns_name = %name, address = %ip, "dialling the custom DNS name's own address");
                    Some(ip.to_string())
                }
                None => {
                    debug!(%instance, dns_name = %name, address = metadata_host,
                        "custom DNS name has no A/AAAA record; dialling the address from the instance's metadata");
                    None
                }
            },
            Err(detail) => {
                debug!(%instance, dns_name = %name, address = metadata_host, error = %detail,
                    "custom DNS name's A/AAAA lookup failed; dialling the address from the instance's metadata");
                None
            }
        };
        DialTarget { host, server_name }
    }
}
