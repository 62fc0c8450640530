//! One lookup of a DNS name: its TXT record (several: sorted, first that parses; CNAMEs followed
//! by the resolver, loops named), or, for Cloud SQL's own names
//! `<label>.<label>.<region>.sql.goog` (also `sql-psa.goog`, `sql-psc.goog`) without a usable
//! TXT record, the Admin API's `resolveConnectSettings`.

use std::net::SocketAddr;
use std::time::Duration;

use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::{RData, RecordType};
use hickory_resolver::{Resolver, TokioResolver};
use tokio::sync::OnceCell;

use crate::admin_api::AdminClient;
use crate::excerpt::excerpt;
use crate::{Error, InstanceConnectionName};

/// How long one DNS request waits for an answer.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);
/// The bound on the DNS part of a lookup (TXT query, CNAME walk), whatever the resolver does:
/// with the DNS server down, a first lookup fails within this.
pub(crate) const DNS_TIMEOUT: Duration = Duration::from_secs(5);
/// CNAMEs followed, at most, when looking for a loop (the resolver gives up after 8).
const MAX_CNAME_HOPS: usize = 16;

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

/// Where a chain of CNAMEs starting at a name leads.
#[derive(Debug, PartialEq, Eq)]
enum Chain {
    /// The chain ends (or cannot be followed further).
    Ends,
    /// The chain comes back to a name already in it: every name, the repeated one last.
    Loop(Vec<String>),
    /// More than [`MAX_CNAME_HOPS`] names without an end.
    TooLong,
}

/// What the chain `names` (each the CNAME target of the one before) is, so far.
fn classify(names: &[String]) -> Option<Chain> {
    let (last, before) = names.split_last()?;
    if before.contains(last) {
        Some(Chain::Loop(names.to_vec()))
    } else if names.len() > MAX_CNAME_HOPS {
        Some(Chain::TooLong)
    } else {
        None
    }
}

/// The DNS resolver, built on first use, and the lookups made with it.
pub(crate) struct Lookup {
    nameserver: Option<SocketAddr>,
    resolver: OnceCell<TokioResolver>,
}

impl Lookup {
    pub(crate) fn new(nameserver: Option<SocketAddr>) -> Self {
        Self {
            nameserver,
            resolver: OnceCell::new(),
        }
    }

    pub(crate) fn nameserver(&self) -> Option<SocketAddr> {
        self.nameserver
    }

    async fn resolver(&self, name: &str) -> Result<&TokioResolver, Error> {
        self.resolver
            .get_or_try_init(|| async {
                let builder = match self.nameserver {
                    Some(addr) => {
                        let mut udp = ConnectionConfig::udp();
                        udp.port = addr.port();
                        let mut tcp = ConnectionConfig::tcp();
                        tcp.port = addr.port();
                        let server = NameServerConfig::new(addr.ip(), true, vec![udp, tcp]);
                        Ok(Resolver::builder_with_config(
                            ResolverConfig::from_name_servers(vec![server]),
                            TokioRuntimeProvider::default(),
                        ))
                    }
                    None => Resolver::builder_tokio(),
                };
                builder
                    .and_then(|mut builder| {
                        // Short, so a first lookup with the DNS server down fails within seconds
                        // (hickory's defaults, 5 s and 2 attempts, per name server, add up).
                        let options = builder.options_mut();
                        options.timeout = REQUEST_TIMEOUT;
                        options.attempts = 1;
                        builder.build()
                    })
                    .map_err(|e| Error::DnsResolution {
                        name: name.to_owned(),
                        detail: format!("no DNS resolver available: {e}"),
                    })
            })
            .await
    }

    /// The connection name `name` (lower case, no trailing dot) stands for.
    pub(crate) async fn run(&self, name: &str, admin: &AdminClient) -> Result<InstanceConnectionName, Error> {
        let failed = |detail: String| Error::DnsResolution {
            name: name.to_owned(),
            detail,
        };
        let fqdn = format!("{name}.");
        let txt = match tokio::time::timeout(DNS_TIMEOUT, self.txt(name, &fqdn)).await {
            Ok(result) => result?,
            Err(_) => Err(format!(
                "the DNS server gave no answer within {DNS_TIMEOUT:?}; check that it is reachable{}",
                self.nameserver_hint()
            )),
        };
        let txt_error = match txt {
            Ok(found) => return Ok(found),
            Err(detail) => detail,
        };
        match cloud_sql_region(name) {
            Some(region) => admin
                .resolve_connect_settings(region, &fqdn)
                .await?
                .parse()
                .map_err(|_| failed("resolveConnectSettings returned an invalid connection name".into())),
            None => Err(failed(txt_error)),
        }
    }

    /// The connection name in `name`'s TXT records, or why there is none (a message for the user).
    async fn txt(&self, name: &str, fqdn: &str) -> Result<Result<InstanceConnectionName, String>, Error> {
        let resolver = self.resolver(name).await?;
        let how_to =
            "give it a TXT record holding PROJECT:REGION:INSTANCE, or connect with the connection name";
        Ok(match resolver.txt_lookup(fqdn).await {
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
                    Some(found) => Ok(found),
                    None => Err(format!(
                        "no TXT record of it holds PROJECT:REGION:INSTANCE (found {}); {how_to}",
                        excerpt(&format!("{values:?}"))
                    )),
                }
            }
            Err(e) if e.is_nx_domain() => Err(format!("the name does not exist (NXDOMAIN); {how_to}")),
            // The resolver reports a CNAME loop (or a chain past its depth limit) as "no records"
            // (not NXDOMAIN): walk the chain to tell those apart.
            Err(e) if e.is_no_records_found() => Err(match self.cname_chain(resolver, name).await {
                Chain::Loop(names) => format!(
                    "CNAME loop: {}; fix the CNAME records so the chain ends at a name with a TXT record",
                    excerpt(&names.join(" → "))
                ),
                Chain::TooLong => format!(
                    "its CNAME chain is longer than {MAX_CNAME_HOPS} names; point it more directly at \
                     the name with the TXT record"
                ),
                Chain::Ends => format!("it has no TXT record; {how_to}"),
            }),
            Err(e) => Err(format!(
                "TXT lookup failed ({e}); check that the DNS server is reachable{}, or connect with the \
                 connection name",
                self.nameserver_hint()
            )),
        })
    }

    /// Follows `name`'s CNAMEs one query at a time (a CNAME query is not chased by the resolver).
    async fn cname_chain(&self, resolver: &TokioResolver, name: &str) -> Chain {
        let mut names = vec![name.to_owned()];
        loop {
            let Some(current) = names.last() else {
                return Chain::Ends;
            };
            let Ok(lookup) = resolver.lookup(format!("{current}."), RecordType::CNAME).await else {
                return Chain::Ends;
            };
            let Some(target) = lookup.answers().iter().find_map(|record| match &record.data {
                RData::CNAME(target) => Some(target.0.to_ascii().trim_end_matches('.').to_ascii_lowercase()),
                _ => None,
            }) else {
                return Chain::Ends;
            };
            names.push(target);
            if let Some(chain) = classify(&names) {
                return chain;
            }
        }
    }

    fn nameserver_hint(&self) -> String {
        match self.nameserver {
            Some(addr) => format!(" (the name server set with ConnectorBuilder::dns_nameserver is {addr})"),
            None => " (the system's resolver configuration is used)".to_owned(),
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

    #[test]
    fn cname_chains_are_classified() {
        let chain = |names: &[&str]| names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>();
        assert_eq!(classify(&chain(&["a"])), None);
        assert_eq!(classify(&chain(&["a", "b"])), None);
        assert_eq!(
            classify(&chain(&["a", "b", "a"])),
            Some(Chain::Loop(chain(&["a", "b", "a"])))
        );
        assert_eq!(
            classify(&chain(&["a", "b", "b"])),
            Some(Chain::Loop(chain(&["a", "b", "b"])))
        );
        let long: Vec<String> = (0..=MAX_CNAME_HOPS).map(|i| format!("n{i}")).collect();
        assert_eq!(classify(&long), Some(Chain::TooLong));
        assert_eq!(classify(&[]), None);
    }
}
