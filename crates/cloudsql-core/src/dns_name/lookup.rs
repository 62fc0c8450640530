//! Instance names given as DNS names: a TXT record holding `project:region:instance` (several:
//! sorted, first that parses; CNAMEs followed by the resolver), or, for Cloud SQL's own names
//! `<label>.<label>.<region>.sql.goog` (also `sql-psa.goog`, `sql-psc.goog`) without a TXT
//! record, the Admin API's `resolveConnectSettings`.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::RData;
use hickory_resolver::{Resolver, TokioResolver};
use tokio::sync::OnceCell;
use tracing::debug;

use crate::admin_api::AdminClient;
use crate::excerpt::excerpt;
use crate::{Error, InstanceConnectionName};

/// How long a resolved name is reused before it is looked up again (failover may repoint it).
const CACHE_FOR: Duration = Duration::from_secs(30);

/// Whether `input` is shaped like a DNS name rather than a connection name.
pub(crate) fn looks_like_dns_name(input: &str) -> bool {
    let name = input.strip_suffix('.').unwrap_or(input);
    !name.contains(':')
        && name.contains('.')
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        })
}

/// The region of a Cloud SQL DNS name `<label>.<label>.<region>.sql.goog`, if it is one.
pub(crate) fn cloud_sql_region(name: &str) -> Option<&str> {
    let labels: Vec<&str> = name.strip_suffix('.').unwrap_or(name).split('.').collect();
    match labels.as_slice() {
        [_, _, region, "sql" | "sql-psa" | "sql-psc", "goog"] => Some(region),
        _ => None,
    }
}

/// The first TXT value, in sorted order, that parses as a connection name.
pub(crate) fn pick_connection_name(mut values: Vec<String>) -> Option<InstanceConnectionName> {
    values.sort();
    values.iter().find_map(|v| v.trim().parse().ok())
}

/// Resolves DNS names to connection names, caching each for a short while.
pub(crate) struct NameResolver {
    nameserver: Option<SocketAddr>,
    resolver: OnceCell<TokioResolver>,
    cache: Mutex<HashMap<String, (InstanceConnectionName, Instant)>>,
}

impl fmt::Debug for NameResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NameResolver")
            .field("nameserver", &self.nameserver)
            .finish_non_exhaustive()
    }
}

impl NameResolver {
    pub(crate) fn new(nameserver: Option<SocketAddr>) -> Self {
        Self {
            nameserver,
            resolver: OnceCell::new(),
            cache: Mutex::new(HashMap::new()),
        }
    }

    async fn resolver(&self, name: &str) -> Result<&TokioResolver, Error> {
        self.resolver
            .get_or_try_init(|| async {
                let built = match self.nameserver {
                    Some(addr) => {
                        let mut udp = ConnectionConfig::udp();
                        udp.port = addr.port();
                        let mut tcp = ConnectionConfig::tcp();
                        tcp.port = addr.port();
                        let server = NameServerConfig::new(addr.ip(), true, vec![udp, tcp]);
                        Resolver::builder_with_config(
                            ResolverConfig::from_name_servers(vec![server]),
                            TokioRuntimeProvider::default(),
                        )
                        .build()
                    }
                    None => Resolver::builder_tokio().and_then(|b| b.build()),
                };
                built.map_err(|e| Error::DnsResolution {
                    name: name.to_owned(),
                    detail: format!("no DNS resolver available: {e}"),
                })
            })
            .await
    }

    /// The connection name `dns_name` stands for.
    pub(crate) async fn resolve(
        &self,
        dns_name: &str,
        admin: &AdminClient,
    ) -> Result<InstanceConnectionName, Error> {
        let key = dns_name.trim_end_matches('.').to_ascii_lowercase();
        if let Some((name, at)) = self
            .cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&key)
            && at.elapsed() < CACHE_FOR
        {
            return Ok(name.clone());
        }
        let resolved = self.lookup(&key, admin).await?;
        debug!(dns_name = %key, instance = %resolved, "resolved DNS name");
        self.cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(key, (resolved.clone(), Instant::now()));
        Ok(resolved)
    }

    async fn lookup(&self, name: &str, admin: &AdminClient) -> Result<InstanceConnectionName, Error> {
        let failed = |detail: String| Error::DnsResolution {
            name: name.to_owned(),
            detail,
        };
        let resolver = self.resolver(name).await?;
        let fqdn = format!("{name}.");
        let txt_error = match resolver.txt_lookup(fqdn.as_str()).await {
            Ok(lookup) => {
                let values: Vec<String> = lookup
                    .answers()
                    .iter()
                    .filter_map(|record| match &record.data {
                        RData::TXT(txt) => Some(
                            txt.txt_data
                                .iter()
                                .map(|part| String::from_utf8_lossy(part))
                                .collect::<String>(),
                        ),
                        _ => None,
                    })
                    .collect();
                match pick_connection_name(values.clone()) {
                    Some(found) => return Ok(found),
                    None => format!(
                        "no TXT record of it holds PROJECT:REGION:INSTANCE (found {})",
                        excerpt(&format!("{values:?}"))
                    ),
                }
            }
            Err(e) if e.is_no_records_found() => "it has no TXT record".to_owned(),
            Err(e) => format!("TXT lookup failed: {e}"),
        };
        match cloud_sql_region(name) {
            Some(region) => admin
                .resolve_connect_settings(region, &fqdn)
                .await?
                .parse()
                .map_err(|_| failed("resolveConnectSettings returned an invalid connection name".into())),
            None => Err(failed(format!(
                "{txt_error}; give a TXT record with PROJECT:REGION:INSTANCE or use the connection name"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_names_are_told_from_connection_names() {
        for name in [
            "db.example.com",
            "db.example.com.",
            "a1b2.c3d4.us-central1.sql.goog",
        ] {
            assert!(looks_like_dns_name(name), "{name}");
        }
        for name in [
            "p:r:i",
            "example.com:p:r:i",
            "nodots",
            "bad..name",
            "spa ce.example",
            "x.-bad!.com",
        ] {
            assert!(!looks_like_dns_name(name), "{name}");
        }
    }

    #[test]
    fn cloud_sql_names_carry_their_region() {
        assert_eq!(cloud_sql_region("a.b.us-central1.sql.goog"), Some("us-central1"));
        assert_eq!(
            cloud_sql_region("a.b.europe-west1.sql-psc.goog."),
            Some("europe-west1")
        );
        assert_eq!(
            cloud_sql_region("a.b.asia-east1.sql-psa.goog"),
            Some("asia-east1")
        );
        assert_eq!(cloud_sql_region("b.us-central1.sql.goog"), None);
        assert_eq!(cloud_sql_region("a.b.us-central1.example.com"), None);
    }

    #[test]
    fn the_first_sorted_valid_txt_value_wins() {
        let values = vec![
            "v=spf1 -all".into(),
            "z:r:i".into(),
            "b:r:i".into(),
            "garbage".into(),
        ];
        assert_eq!(pick_connection_name(values).unwrap().to_string(), "b:r:i");
        assert!(pick_connection_name(vec!["nothing".into()]).is_none());
    }
}
