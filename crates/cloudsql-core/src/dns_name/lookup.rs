//! One lookup of a DNS name, by its kind ([`NameKind`]):
//! - Cloud SQL's own instance names `<label>.<label>.<region>.sql.goog` (also `sql-psa.goog`,
//!   `sql-psc.goog`): the Admin API's `resolveConnectSettings` (remembered: they never move);
//! - Global Write Endpoints (`….global.sql-psc.goog` and friends): their CNAME chain is followed
//!   to the current regional instance name, which is resolved as above;
//! - any other name: its TXT record (several: sorted, first that parses; CNAMEs followed by the
//!   resolver, loops named).
//!
//! A failure says whether it is permanent (the name does not exist, has no usable record, loops,
//! or the Admin API answered 403/404) or may pass (timeouts, SERVFAIL, 5xx): failover closes
//! connections on the first kind only.
//!
//! The DNS queries (TXT, CNAME, A/AAAA) need the `dns` feature (hickory-resolver). Without it,
//! Cloud SQL's own instance names still resolve (through the Admin API alone); write endpoints
//! and custom names fail with [`Error::Config`] saying the feature is needed.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Mutex, PoisonError};
#[cfg(feature = "dns")]
use std::time::Duration;

#[cfg(feature = "dns")]
use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig};
#[cfg(feature = "dns")]
use hickory_resolver::net::runtime::TokioRuntimeProvider;
#[cfg(feature = "dns")]
use hickory_resolver::proto::rr::{RData, RecordType};
#[cfg(feature = "dns")]
use hickory_resolver::{Resolver, TokioResolver};
#[cfg(feature = "dns")]
use tokio::sync::OnceCell;

use crate::admin_api::AdminClient;
#[cfg(feature = "dns")]
use crate::excerpt::excerpt;
use crate::{Error, InstanceConnectionName};

/// How long one DNS request waits for an answer.
#[cfg(feature = "dns")]
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);
/// The bound on the DNS part of a lookup (TXT query, CNAME walk), whatever the resolver does:
/// with the DNS server down, a first lookup fails within this.
#[cfg(feature = "dns")]
pub(crate) const DNS_TIMEOUT: Duration = Duration::from_secs(5);
/// CNAMEs followed, at most, when looking for a loop (the resolver gives up after 8).
#[cfg(feature = "dns")]
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

/// What a DNS name standing for an instance is, which decides how it resolves and whether it
/// can move.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NameKind {
    /// `<label>.<label>.<region>.sql.goog` (or `sql-psa`, `sql-psc`): Cloud SQL's own name of
    /// one instance. It never points elsewhere, so it is not watched for failover.
    Instance,
    /// `….global.sql.goog` (or `sql-psa`, `sql-psc`): a Global Write Endpoint, a CNAME to the
    /// current primary's instance name. `global` is not an Admin API region.
    WriteEndpoint,
    /// Any other name: a TXT record holds the connection name. Dialled by its own A/AAAA
    /// record when it has one.
    Custom,
}

impl NameKind {
    /// The kind of `name` (any case, trailing dot or not).
    pub(crate) fn of(name: &str) -> Self {
        let name = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
        let labels: Vec<&str> = name.split('.').collect();
        match labels.as_slice() {
            [.., "global", "sql" | "sql-psa" | "sql-psc", "goog"] => NameKind::WriteEndpoint,
            _ if cloud_sql_region(&name).is_some() => NameKind::Instance,
            _ => NameKind::Custom,
        }
    }

    /// Whether the instance behind the name can change.
    pub(crate) fn can_move(self) -> bool {
        self != NameKind::Instance
    }
}

/// A failed lookup: the error for callers, and whether it is permanent.
#[derive(Debug)]
pub(crate) struct Failed {
    pub(crate) error: Error,
    /// The name does not resolve and waiting will not help: NXDOMAIN, no usable TXT record,
    /// a CNAME loop, a 403/404 from `resolveConnectSettings`.
    pub(crate) permanent: bool,
}

impl Failed {
    fn permanent(error: Error) -> Self {
        Self {
            error,
            permanent: true,
        }
    }

    #[cfg(feature = "dns")]
    fn transient(error: Error) -> Self {
        Self {
            error,
            permanent: false,
        }
    }

    /// An Admin API error: permanent when the API says the name is unknown or not allowed.
    fn admin(error: Error) -> Self {
        let permanent = matches!(
            &error,
            Error::AdminApi {
                status: 403 | 404,
                ..
            }
        );
        Self { error, permanent }
    }
}

/// Why a TXT lookup found no connection name: a message for the user, and whether it is final.
#[cfg(feature = "dns")]
struct NoTxt {
    detail: String,
    permanent: bool,
}

/// The first TXT value, in sorted order, that parses as a connection name.
#[cfg(feature = "dns")]
pub(crate) fn pick_connection_name(mut values: Vec<String>) -> Option<InstanceConnectionName> {
    values.sort();
    values.iter().find_map(|v| v.trim().parse().ok())
}

/// Where a chain of CNAMEs starting at a name leads.
#[cfg(feature = "dns")]
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
#[cfg(feature = "dns")]
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

#[cfg(feature = "dns")]
impl NoTxt {
    fn permanent(detail: String) -> Self {
        Self {
            detail,
            permanent: true,
        }
    }
}

/// The DNS resolver, built on first use, and the lookups made with it.
pub(crate) struct Lookup {
    nameserver: Option<SocketAddr>,
    #[cfg(feature = "dns")]
    resolver: OnceCell<TokioResolver>,
    /// Cloud SQL instance names resolved so far (they never move), by lower-case name.
    instances: Mutex<HashMap<String, InstanceConnectionName>>,
}

impl Lookup {
    pub(crate) fn new(nameserver: Option<SocketAddr>) -> Self {
        Self {
            nameserver,
            #[cfg(feature = "dns")]
            resolver: OnceCell::new(),
            instances: Mutex::new(HashMap::new()),
        }
    }

    pub(crate) fn nameserver(&self) -> Option<SocketAddr> {
        self.nameserver
    }
}

#[cfg(feature = "dns")]
impl Lookup {
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
                        // No cache of the resolver's own: answers are cached above it (the DNS
                        // cache TTL), and a failover check must see the record as it is now,
                        // not as it was up to a record TTL ago.
                        options.cache_size = 0;
                        builder.build()
                    })
                    .map_err(|e| Error::DnsResolution {
                        name: name.to_owned(),
                        detail: format!("no DNS resolver available: {e}"),
                    })
            })
            .await
    }
}

impl Lookup {
    /// The connection name `name` (lower case, no trailing dot) stands for.
    pub(crate) async fn run(
        &self,
        name: &str,
        admin: &AdminClient,
    ) -> Result<InstanceConnectionName, Failed> {
        match NameKind::of(name) {
            NameKind::Instance => self.instance(name, admin).await,
            #[cfg(not(feature = "dns"))]
            NameKind::WriteEndpoint | NameKind::Custom => Err(Failed::permanent(needs_dns_feature(name))),
            #[cfg(feature = "dns")]
            NameKind::WriteEndpoint => {
                let followed = tokio::time::timeout(DNS_TIMEOUT, self.follow_to_instance(name))
                    .await
                    .unwrap_or_else(|_| Err(self.no_answer(name)))?;
                match followed {
                    Some(target) => self.instance(&target, admin).await.map_err(|mut failed| {
                        if let Error::DnsResolution { detail, .. } = &mut failed.error {
                            *detail = format!("via its CNAME to {target}: {detail}");
                        }
                        failed
                    }),
                    None => self.txt_name(name).await,
                }
            }
            #[cfg(feature = "dns")]
            NameKind::Custom => self.txt_name(name).await,
        }
    }

    /// A Cloud SQL instance name through `resolveConnectSettings`, remembered once resolved.
    async fn instance(&self, name: &str, admin: &AdminClient) -> Result<InstanceConnectionName, Failed> {
        if let Some(known) = self.instances().get(name) {
            return Ok(known.clone());
        }
        let Some(region) = cloud_sql_region(name) else {
            return Err(Failed::permanent(Error::DnsResolution {
                name: name.to_owned(),
                detail: "not a Cloud SQL instance DNS name".into(),
            }));
        };
        let resolved: InstanceConnectionName = admin
            .resolve_connect_settings(region, &format!("{name}."))
            .await
            .map_err(Failed::admin)?
            .parse()
            .map_err(|_| {
                Failed::permanent(Error::DnsResolution {
                    name: name.to_owned(),
                    detail: "resolveConnectSettings returned an invalid connection name".into(),
                })
            })?;
        self.instances().insert(name.to_owned(), resolved.clone());
        Ok(resolved)
    }

    fn instances(&self) -> std::sync::MutexGuard<'_, HashMap<String, InstanceConnectionName>> {
        self.instances.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Without the `dns` feature there is no resolver to find a custom name's own address: the
    /// connect dials the address in the instance's metadata. (No custom name gets this far
    /// without the feature: it cannot be resolved to an instance in the first place.)
    #[cfg(not(feature = "dns"))]
    pub(crate) async fn addresses(&self, name: &str) -> Result<Vec<IpAddr>, String> {
        Err(needs_dns_feature(name).to_string())
    }
}

/// The error for a DNS name that needs DNS queries when the `dns` feature is off.
#[cfg(not(feature = "dns"))]
fn needs_dns_feature(name: &str) -> Error {
    Error::config(format!(
        "instance DNS name `{}` needs DNS lookups (TXT/CNAME records), which need the `dns` feature \
         of cloudsql-core (on by default; also forwarded by the driver crates and the `cloudsql` \
         facade); enable it, or connect with the connection name PROJECT:REGION:INSTANCE",
        crate::excerpt::excerpt(name)
    ))
}

#[cfg(feature = "dns")]
impl Lookup {
    /// The connection name in the TXT records of `name`.
    async fn txt_name(&self, name: &str) -> Result<InstanceConnectionName, Failed> {
        let fqdn = format!("{name}.");
        let txt = match tokio::time::timeout(DNS_TIMEOUT, self.txt(name, &fqdn)).await {
            Ok(result) => result.map_err(Failed::transient)?,
            Err(_) => return Err(self.no_answer(name)),
        };
        txt.map_err(|NoTxt { detail, permanent }| Failed {
            error: Error::DnsResolution {
                name: name.to_owned(),
                detail,
            },
            permanent,
        })
    }

    fn no_answer(&self, name: &str) -> Failed {
        Failed::transient(Error::DnsResolution {
            name: name.to_owned(),
            detail: format!(
                "the DNS server gave no answer within {DNS_TIMEOUT:?}; check that it is reachable{}",
                self.nameserver_hint()
            ),
        })
    }

    /// Follows the CNAMEs of a write endpoint to the first Cloud SQL instance name (not another
    /// `global` one); `None` when the chain ends before one (the TXT record decides then).
    async fn follow_to_instance(&self, name: &str) -> Result<Option<String>, Failed> {
        let resolver = self.resolver(name).await.map_err(Failed::transient)?;
        let failed = |detail: String, permanent: bool| Failed {
            error: Error::DnsResolution {
                name: name.to_owned(),
                detail,
            },
            permanent,
        };
        let mut names = vec![name.to_owned()];
        loop {
            let Some(current) = names.last() else {
                return Ok(None);
            };
            let target = match resolver.lookup(format!("{current}."), RecordType::CNAME).await {
                Ok(lookup) => lookup.answers().iter().find_map(|record| match &record.data {
                    RData::CNAME(target) => {
                        Some(target.0.to_ascii().trim_end_matches('.').to_ascii_lowercase())
                    }
                    _ => None,
                }),
                Err(e) if e.is_nx_domain() => {
                    return Err(failed(
                        format!(
                            "{current} does not exist (NXDOMAIN); a write endpoint is a CNAME to \
                             the primary instance's DNS name"
                        ),
                        true,
                    ));
                }
                Err(e) if e.is_no_records_found() => None,
                Err(e) => {
                    return Err(failed(
                        format!(
                            "CNAME lookup of {current} failed ({e}); check that the DNS server is reachable{}",
                            self.nameserver_hint()
                        ),
                        false,
                    ));
                }
            };
            let Some(target) = target else {
                return Ok(None);
            };
            if NameKind::of(&target) == NameKind::Instance {
                return Ok(Some(target));
            }
            names.push(target);
            match classify(&names) {
                Some(Chain::Loop(names)) => {
                    return Err(failed(
                        format!("CNAME loop: {}", excerpt(&names.join(" → "))),
                        true,
                    ));
                }
                Some(Chain::TooLong) => {
                    return Err(failed(
                        format!("its CNAME chain is longer than {MAX_CNAME_HOPS} names"),
                        true,
                    ));
                }
                Some(Chain::Ends) | None => {}
            }
        }
    }

    /// The A/AAAA addresses of `name` (the resolver follows CNAMEs), or why there are none.
    pub(crate) async fn addresses(&self, name: &str) -> Result<Vec<IpAddr>, String> {
        let resolver = self.resolver(name).await.map_err(|e| e.to_string())?;
        match tokio::time::timeout(REQUEST_TIMEOUT, resolver.lookup_ip(format!("{name}."))).await {
            Ok(Ok(lookup)) => Ok(lookup.iter().collect()),
            Ok(Err(e)) if e.is_no_records_found() || e.is_nx_domain() => Ok(Vec::new()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no answer within {REQUEST_TIMEOUT:?}")),
        }
    }

    /// The connection name in `name`'s TXT records, or why there is none (a message for the user).
    async fn txt(&self, name: &str, fqdn: &str) -> Result<Result<InstanceConnectionName, NoTxt>, Error> {
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
                    None => Err(NoTxt::permanent(format!(
                        "no TXT record of it holds PROJECT:REGION:INSTANCE (found {}); {how_to}",
                        excerpt(&format!("{values:?}"))
                    ))),
                }
            }
            Err(e) if e.is_nx_domain() => Err(NoTxt::permanent(format!(
                "the name does not exist (NXDOMAIN); {how_to}"
            ))),
            // The resolver reports a CNAME loop (or a chain past its depth limit) as "no records"
            // (not NXDOMAIN): walk the chain to tell those apart.
            Err(e) if e.is_no_records_found() => {
                Err(NoTxt::permanent(match self.cname_chain(resolver, name).await {
                    Chain::Loop(names) => format!(
                        "CNAME loop: {}; fix the CNAME records so the chain ends at a name with a TXT record",
                        excerpt(&names.join(" → "))
                    ),
                    Chain::TooLong => format!(
                        "its CNAME chain is longer than {MAX_CNAME_HOPS} names; point it more directly at \
                     the name with the TXT record"
                    ),
                    Chain::Ends => format!("it has no TXT record; {how_to}"),
                }))
            }
            Err(e) => Err(NoTxt {
                detail: format!(
                    "TXT lookup failed ({e}); check that the DNS server is reachable{}, or connect with \
                     the connection name",
                    self.nameserver_hint()
                ),
                permanent: false,
            }),
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
    fn names_are_sorted_into_instance_names_write_endpoints_and_custom_names() {
        for name in [
            "a1b2.c3d4.us-central1.sql.goog",
            "A.B.europe-west1.sql-psc.goog.",
            "a.b.asia-east1.sql-psa.goog",
        ] {
            assert_eq!(NameKind::of(name), NameKind::Instance, "{name}");
            assert!(!NameKind::of(name).can_move());
        }
        for name in [
            "orders.global.sql-psc.goog",
            "a.b.global.sql-psc.goog.",
            "x.global.sql.goog",
            "x.GLOBAL.sql-psa.goog",
        ] {
            assert_eq!(NameKind::of(name), NameKind::WriteEndpoint, "{name}");
            assert!(NameKind::of(name).can_move());
        }
        for name in [
            "db.example.com",
            "b.us-central1.sql.goog",
            "a.b.us-central1.sql.example",
            "global.sql-psc.goog.example.com",
        ] {
            assert_eq!(NameKind::of(name), NameKind::Custom, "{name}");
        }
    }

    #[test]
    fn only_unknown_or_forbidden_names_are_permanent_admin_api_failures() {
        let api = |status| Error::AdminApi {
            instance: "a.b.r.sql.goog".into(),
            method: "resolveConnectSettings",
            status,
            api_status: None,
            message: "m".into(),
        };
        assert!(Failed::admin(api(404)).permanent);
        assert!(Failed::admin(api(403)).permanent);
        assert!(!Failed::admin(api(503)).permanent);
        assert!(!Failed::admin(api(429)).permanent);
        assert!(
            !Failed::admin(Error::AdminApiUnreachable {
                instance: "a.b.r.sql.goog".into(),
                method: "resolveConnectSettings",
                source: std::sync::Arc::new(std::io::Error::other("refused")),
            })
            .permanent
        );
    }

    #[cfg(feature = "dns")]
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

    #[cfg(feature = "dns")]
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

    /// Without the `dns` feature, a name that needs DNS queries is a configuration error that
    /// names the feature, before any query or Admin API call (the Admin API here is unreachable).
    #[cfg(not(feature = "dns"))]
    #[tokio::test]
    async fn without_the_dns_feature_custom_names_and_write_endpoints_are_config_errors() {
        let admin = AdminClient::new(
            "http://127.0.0.1:9".into(),
            "test".into(),
            None,
            crate::Credentials::from_token("t").admin,
        )
        .unwrap();
        let lookup = Lookup::new(None);
        for name in ["db.example.com", "w1.global.sql-psc.goog"] {
            let failed = lookup.run(name, &admin).await.unwrap_err();
            assert!(failed.permanent, "{name}");
            match &failed.error {
                Error::Config { message } => {
                    assert!(message.contains("`dns` feature"), "{message}");
                    assert!(message.contains(name), "{message}");
                }
                other => panic!("{name}: expected Error::Config, got {other:?}"),
            }
        }
        assert!(lookup.addresses("db.example.com").await.is_err());
        // Cloud SQL's own instance names still go to the Admin API (unreachable here, and
        // retried: the call is still running, or failed with something other than Config).
        let instance = lookup.run("a.b.us-central1.sql.goog", &admin);
        if let Ok(result) = tokio::time::timeout(std::time::Duration::from_millis(100), instance).await {
            let failed = result.unwrap_err();
            assert!(
                !matches!(failed.error, Error::Config { .. }),
                "{:?}",
                failed.error
            );
        }
    }

    /// The same through the public API: a connect by custom DNS name fails with the typed
    /// config error (not retryable), one by connection name does not.
    #[cfg(not(feature = "dns"))]
    #[tokio::test]
    async fn without_the_dns_feature_a_connect_by_custom_name_is_a_config_error() {
        let connector = crate::Connector::builder()
            .credentials(crate::Credentials::from_token("t"))
            .admin_api_endpoint("http://127.0.0.1:9")
            .timeout(std::time::Duration::from_millis(300))
            .build()
            .unwrap();
        let error = connector.connect("orders.db.example.com").await.unwrap_err();
        assert_eq!(error.kind(), crate::ErrorKind::Config, "{error:?}");
        assert!(error.to_string().contains("`dns` feature"), "{error}");
        let error = connector.connect("p:r:i").await.unwrap_err();
        assert!(!matches!(error, Error::Config { .. }), "{error:?}");
        connector.close().await;
    }
}
