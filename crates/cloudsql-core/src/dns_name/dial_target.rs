//! Where a connect through a custom DNS name dials (Go 1.20, Python 1.20): the name's own A/AAAA
//! record when it has one, else the address in the instance's metadata; and the name the
//! server certificate must then carry (a customer-managed CAS instance with custom SANs).
//!
//! The address found is reused for the DNS cache TTL, like the name's TXT answer, then served
//! stale while one lookup refreshes it in the background: a connect never waits for a lookup
//! of an address it has seen before, so a DNS outage does not slow connects down. A failed
//! refresh keeps the last answer.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};
use std::time::Instant;

use rustls_pki_types::ServerName;
use tracing::debug;

use super::{NameKind, NameResolver};
use crate::InstanceConnectionName;

/// What is known of one custom name's address.
#[derive(Debug, Clone, Copy)]
struct Known {
    /// The address (`None`: the name has none).
    address: Option<IpAddr>,
    /// When it was looked up.
    at: Instant,
    /// A background refresh is running.
    refreshing: bool,
}

/// The address each custom name was last found to have.
#[derive(Debug, Default)]
pub(super) struct AddressCache(Mutex<HashMap<String, Known>>);

impl AddressCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Known>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records a lookup's outcome; a failed one keeps the last answer (or records none).
    fn record(&self, name: &str, found: Result<Vec<IpAddr>, String>) -> Option<IpAddr> {
        let mut known = self.lock();
        let last = known.get(name).and_then(|k| k.address);
        let address = match found {
            Ok(addresses) => addresses.first().copied(),
            Err(detail) => {
                debug!(dns_name = %name, error = %detail, last_known = ?last,
                    "custom DNS name's A/AAAA lookup failed; keeping its last known address");
                last
            }
        };
        known.insert(
            name.to_owned(),
            Known {
                address,
                at: Instant::now(),
                refreshing: false,
            },
        );
        address
    }
}

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
        let shared = &self.shared;
        let cached = {
            let mut known = shared.addresses.lock();
            match known.get_mut(&name) {
                Some(k) if k.at.elapsed() >= shared.ttl && !k.refreshing => {
                    k.refreshing = true;
                    let shared = shared.clone();
                    let name = name.clone();
                    tokio::spawn(async move {
                        let found = shared.lookup.addresses(&name).await;
                        shared.addresses.record(&name, found);
                    });
                    Some(k.address)
                }
                Some(k) => Some(k.address),
                None => None,
            }
        };
        let address = match cached {
            Some(address) => address,
            None => {
                let found = shared.lookup.addresses(&name).await;
                shared.addresses.record(&name, found)
            }
        };
        match address {
            Some(ip) => {
                debug!(%instance, dns_name = %name, address = %ip, "dialling the custom DNS name's own address")
            }
            None => debug!(%instance, dns_name = %name, address = metadata_host,
                "custom DNS name has no A/AAAA record; dialling the address from the instance's metadata"),
        }
        DialTarget {
            host: address.map(|ip| ip.to_string()),
            server_name,
        }
    }
}
