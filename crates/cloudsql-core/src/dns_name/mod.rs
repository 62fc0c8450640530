//! Instance names given as DNS names, and the cache of what they resolved to.
//!
//! - **Single flight**: one lookup per name at a time, whatever the number of callers. The lookup
//!   runs in a task of its own, so a caller that gives up (timeout, cancellation) does not cancel
//!   it for the others; closing or dropping the connector stops it.
//! - **Serve stale**: an answer is fresh for the cache TTL (30 s by default). After that, callers
//!   get it at once while a refresh runs in the background. A failed refresh (DNS server down,
//!   timeout, SERVFAIL, and also NXDOMAIN or no TXT record) keeps the last good answer in service
//!   for up to [`SERVE_STALE_FOR`], logging one `warn!` per failing streak, and is retried after
//!   another TTL. A refresh that finds another connection name switches to it.
//! - **Failover** (see `ticker.rs` and [`crate::failover`]): names that can move (custom names, write endpoints) are
//!   looked up again every failover period while the connector lives. When the name points at
//!   another instance, or stops resolving for good (NXDOMAIN, no usable TXT record, CNAME loop,
//!   403/404 from `resolveConnectSettings`), every connection made through it to the old
//!   instance is closed and new connects follow the new answer. Transient failures are logged
//!   and served stale, as above. Cloud SQL's own instance names never move: not watched.
//! - **Custom names are dialled by their own A/AAAA record** ([`NameResolver::dial_target`],
//!   reused for the TTL), falling back to the address in the instance's metadata when they have
//!   none, and the
//!   server certificate must then name them (or carry the instance's CN).
//! - **Errors name the DNS name**: resolution errors are [`Error::DnsResolution`]; errors after
//!   resolution get the DNS name in their `instance` field (see [`named`]).

mod dial_target;
mod lookup;
mod ticker;

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio::task::AbortHandle;
use tracing::{debug, info, warn};

pub(crate) use dial_target::DialTarget;
use lookup::{Failed, Lookup};
pub(crate) use lookup::{NameKind, looks_like_dns_name};

use crate::admin_api::AdminClient;
use crate::failover::{FailoverSignal, NameMoved};
use crate::{Error, InstanceConnectionName};

/// How long a resolved name is used before it is looked up again, by default.
pub const DEFAULT_DNS_CACHE_TTL: Duration = Duration::from_secs(30);
/// How often a DNS name that can move is looked up again to catch a failover, by default.
pub const DEFAULT_FAILOVER_PERIOD: Duration = Duration::from_secs(30);
/// How long the last good answer for a name keeps being served while refreshes fail.
pub(crate) const SERVE_STALE_FOR: Duration = Duration::from_secs(24 * 60 * 60);

type Outcome = Option<Result<InstanceConnectionName, Error>>;

/// What the cache knows about one name.
#[derive(Default)]
struct Entry {
    /// The last good answer and when it was looked up.
    good: Option<(InstanceConnectionName, Instant)>,
    /// The lookup in flight: its result, once there is one.
    in_flight: Option<(watch::Receiver<Outcome>, AbortHandle)>,
    /// When the current failing streak started (its `warn!` was logged then).
    failing_since: Option<Instant>,
    /// No background refresh before this (set after a failed one).
    retry_at: Option<Instant>,
    /// The instance that connections made through the name reach, and the signal closing them.
    binding: Option<(InstanceConnectionName, FailoverSignal)>,
    /// The failover ticker of the name, while it is watched.
    ticker: Option<AbortHandle>,
}

/// The cache key of a DNS name: lower case, no trailing dot.
fn key(dns_name: &str) -> String {
    dns_name.trim_end_matches('.').to_ascii_lowercase()
}

/// What a caller does with an entry.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Plan {
    /// Use this answer.
    Serve(InstanceConnectionName),
    /// Use this answer and start a refresh in the background.
    ServeAndRefresh(InstanceConnectionName),
    /// Nothing usable: wait for the lookup in flight, starting one if there is none.
    Wait,
}

impl Entry {
    /// Whether a lookup is running (one whose task died without an answer does not count).
    fn lookup_running(&self) -> bool {
        self.in_flight
            .as_ref()
            .is_some_and(|(result, _)| result.has_changed().is_ok())
    }
}

/// The caller's plan for `entry` at `now`.
fn plan(entry: &Entry, now: Instant, ttl: Duration) -> Plan {
    match &entry.good {
        Some((name, at)) if now.saturating_duration_since(*at) < ttl => Plan::Serve(name.clone()),
        Some((name, at)) if now.saturating_duration_since(*at) < SERVE_STALE_FOR => {
            let refresh_due = !entry.lookup_running() && entry.retry_at.is_none_or(|t| now >= t);
            if refresh_due {
                Plan::ServeAndRefresh(name.clone())
            } else {
                Plan::Serve(name.clone())
            }
        }
        _ => Plan::Wait,
    }
}

/// Resolves DNS names to connection names: single flight, serving stale answers in outages.
pub(crate) struct NameResolver {
    shared: Arc<Shared>,
}

struct Shared {
    lookup: Lookup,
    ttl: Duration,
    /// Zero: names are not watched.
    failover_period: Duration,
    entries: Mutex<HashMap<String, Entry>>,
    /// Custom names' own addresses (see `dial_target.rs`).
    addresses: dial_target::AddressCache,
    closed: AtomicBool,
}

impl fmt::Debug for NameResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NameResolver")
            .field("nameserver", &self.shared.lookup.nameserver())
            .field("ttl", &self.shared.ttl)
            .field("failover_period", &self.shared.failover_period)
            .finish_non_exhaustive()
    }
}

impl NameResolver {
    pub(crate) fn new(nameserver: Option<SocketAddr>, ttl: Duration, failover_period: Duration) -> Self {
        Self {
            shared: Arc::new(Shared {
                lookup: Lookup::new(nameserver),
                ttl,
                failover_period,
                entries: Mutex::new(HashMap::new()),
                addresses: dial_target::AddressCache::default(),
                closed: AtomicBool::new(false),
            }),
        }
    }

    /// The connection name `dns_name` stands for.
    pub(crate) async fn resolve(
        &self,
        dns_name: &str,
        admin: &Arc<AdminClient>,
    ) -> Result<InstanceConnectionName, Error> {
        let key = key(dns_name);
        let mut result = {
            let mut entries = self.shared.entries();
            let entry = entries.entry(key.clone()).or_default();
            match plan(entry, Instant::now(), self.shared.ttl) {
                Plan::Serve(name) => return Ok(name),
                Plan::ServeAndRefresh(name) => {
                    debug!(dns_name = %key, instance = %name, "DNS name is stale; refreshing it in the background");
                    self.shared.start(&key, entry, admin);
                    return Ok(name);
                }
                Plan::Wait => match &entry.in_flight {
                    Some((result, _)) if entry.lookup_running() => result.clone(),
                    _ => self.shared.start(&key, entry, admin),
                },
            }
        };
        match result.wait_for(Option::is_some).await {
            Ok(outcome) => outcome.clone().unwrap_or(Err(Error::Closed)),
            // The lookup task was aborted: the connector was closed or dropped.
            Err(_) => Err(Error::Closed),
        }
    }

    /// Stops every lookup in flight (their callers get [`Error::Closed`]) and every failover
    /// ticker. Connections already made stay open.
    pub(crate) fn close(&self) {
        self.shared.closed.store(true, Ordering::Release);
        for entry in self.shared.entries().values_mut() {
            if let Some((_, task)) = entry.in_flight.take() {
                task.abort();
            }
            if let Some(ticker) = entry.ticker.take() {
                ticker.abort();
            }
        }
    }
}

impl Drop for NameResolver {
    fn drop(&mut self) {
        self.close();
    }
}

impl Shared {
    fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Spawns the lookup of `key` (the caller holds the entries' lock, so there is one at most).
    fn start(
        self: &Arc<Self>,
        key: &str,
        entry: &mut Entry,
        admin: &Arc<AdminClient>,
    ) -> watch::Receiver<Outcome> {
        let (done, result) = watch::channel(None);
        let shared = self.clone();
        let admin = admin.clone();
        let key = key.to_owned();
        let task = tokio::spawn(async move {
            let outcome = shared.lookup.run(&key, &admin).await;
            let outcome = shared.finish(&key, outcome);
            let _ = done.send(Some(outcome));
        });
        entry.in_flight = Some((result.clone(), task.abort_handle()));
        result
    }

    /// Records a lookup's outcome; returns what its waiting callers get. A new answer, or a
    /// permanent failure of a watched name, closes the connections made through the old one.
    fn finish(
        &self,
        key: &str,
        outcome: Result<InstanceConnectionName, Failed>,
    ) -> Result<InstanceConnectionName, Error> {
        let now = Instant::now();
        let mut entries = self.entries();
        let entry = entries.entry(key.to_owned()).or_default();
        entry.in_flight = None;
        match outcome {
            Ok(name) => {
                match entry.good.clone() {
                    Some((old, _)) if old != name => {
                        let closed = close_binding(entry, |from| NameMoved::Repointed {
                            dns_name: key.to_owned(),
                            from,
                            to: name.to_string(),
                        });
                        info!(
                            dns_name = %key, from = %old, to = %name, closed_connections_to_old = closed,
                            "DNS name now points to another instance; new connections go to it"
                        );
                    }
                    _ => debug!(dns_name = %key, instance = %name, "resolved DNS name"),
                }
                if let Some(since) = entry.failing_since.take() {
                    info!(dns_name = %key, instance = %name, failing_for = ?now.duration_since(since), "DNS name resolves again");
                }
                entry.retry_at = None;
                entry.good = Some((name.clone(), now));
                Ok(name)
            }
            Err(Failed { error, permanent }) => match &entry.good {
                Some((name, _)) if permanent && self.watches(key) => {
                    let name = name.clone();
                    close_binding(entry, |from| NameMoved::Gone {
                        dns_name: key.to_owned(),
                        from,
                        detail: crate::ErrorChain(&error).to_string(),
                    });
                    warn!(
                        dns_name = %key, instance = %name, error = &error as &dyn std::error::Error,
                        "DNS name no longer resolves; closed the connections made through it"
                    );
                    if let Some(ticker) = entry.ticker.take() {
                        ticker.abort();
                    }
                    entries.remove(key);
                    Err(error)
                }
                Some((name, at)) if now.saturating_duration_since(*at) < SERVE_STALE_FOR => {
                    if entry.failing_since.is_none() {
                        warn!(
                            dns_name = %key, instance = %name, error = &error as &dyn std::error::Error,
                            "could not refresh DNS name; serving its last good answer, for up to 24 h, \
                             until a refresh succeeds"
                        );
                        entry.failing_since = Some(now);
                    } else {
                        debug!(dns_name = %key, error = &error as &dyn std::error::Error, "DNS name refresh failed again");
                    }
                    entry.retry_at = Some(now + self.ttl);
                    Ok(name.clone())
                }
                _ => {
                    // Nothing to serve: the error goes to the callers. Forget an expired answer.
                    if let Some(mut entry) = entries.remove(key) {
                        if let Some(ticker) = entry.ticker.take() {
                            ticker.abort();
                        }
                        close_binding(&mut entry, |from| NameMoved::Gone {
                            dns_name: key.to_owned(),
                            from,
                            detail: crate::ErrorChain(&error).to_string(),
                        });
                    }
                    Err(error)
                }
            },
        }
    }

    /// Whether `key` is watched for failover (a period is set and the name can move).
    fn watches(&self, key: &str) -> bool {
        !self.failover_period.is_zero() && NameKind::of(key).can_move()
    }
}

/// Fires the entry's binding signal, if any, with the reason made from its instance; returns
/// whether there was one.
fn close_binding(entry: &mut Entry, reason: impl FnOnce(String) -> NameMoved) -> bool {
    match entry.binding.take() {
        Some((instance, signal)) => {
            signal.fire(reason(instance.to_string()));
            true
        }
        None => false,
    }
}

/// `error`, from a connect to `input`; when `input` is a DNS name, with that name in the error's
/// `instance` field: `p:r:i (DNS name db.example.com)`. Errors that already name the DNS name
/// ([`Error::DnsResolution`], [`Error::Timeout`], Admin API errors of `resolveConnectSettings`)
/// are left as they are.
///
/// A field of its own on every variant would be more precise but changes every variant; a
/// wrapping variant would break matching on the variants. Only the text changes here.
pub(crate) fn named(error: Error, input: &str) -> Error {
    if !looks_like_dns_name(input) {
        return error;
    }
    let mut error = error;
    let instance = match &mut error {
        Error::Credentials { instance, .. }
        | Error::AdminApi { instance, .. }
        | Error::AdminApiUnreachable { instance, .. }
        | Error::AdminApiResponse { instance, .. }
        | Error::AdminApiResponseTooLarge { instance, .. }
        | Error::RegionMismatch { instance, .. }
        | Error::NoIpAddress { instance, .. }
        | Error::IncompatibleDriver { instance, .. }
        | Error::IamAuthnNotSupported { instance, .. }
        | Error::InvalidCertificate { instance, .. }
        | Error::Dial { instance, .. }
        | Error::Tls { instance, .. }
        | Error::MetadataExchange { instance, .. } => instance,
        _ => return error,
    };
    let dns_name = input.trim_end_matches('.');
    if !instance.contains(dns_name) {
        *instance = format!("{instance} (DNS name {})", crate::excerpt::excerpt(dns_name));
    }
    error
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> InstanceConnectionName {
        s.parse().unwrap()
    }

    #[test]
    fn fresh_answers_are_served_stale_ones_refreshed_once_and_old_ones_waited_for() {
        let ttl = Duration::from_secs(30);
        let t0 = Instant::now();
        let at = |secs: u64| t0 + Duration::from_secs(secs);
        let good = |retry_at: Option<Instant>| Entry {
            good: Some((name("p:r:i"), t0)),
            retry_at,
            ..Entry::default()
        };
        let serve = Plan::Serve(name("p:r:i"));
        let refresh = Plan::ServeAndRefresh(name("p:r:i"));
        let day = SERVE_STALE_FOR.as_secs();
        let cases = [
            // (entry, now, plan)
            (Entry::default(), at(0), Plan::Wait),
            (good(None), at(0), serve.clone()),
            (good(None), at(29), serve.clone()),
            (good(None), at(30), refresh.clone()),
            (good(None), at(day - 1), refresh.clone()),
            (good(None), at(day), Plan::Wait),
            // After a failed refresh: served, not refreshed again before retry_at.
            (good(Some(at(60))), at(59), serve.clone()),
            (good(Some(at(60))), at(60), refresh.clone()),
        ];
        for (i, (entry, now, expected)) in cases.into_iter().enumerate() {
            assert_eq!(plan(&entry, now, ttl), expected, "case {i}");
        }
    }

    #[tokio::test]
    async fn a_refresh_in_flight_is_not_started_twice_unless_its_task_died() {
        let (done, result) = watch::channel(None);
        let task = tokio::spawn(async {});
        let mut entry = Entry {
            good: Some((name("p:r:i"), Instant::now() - Duration::from_secs(60))),
            in_flight: Some((result, task.abort_handle())),
            ..Entry::default()
        };
        let ttl = Duration::from_secs(30);
        assert_eq!(plan(&entry, Instant::now(), ttl), Plan::Serve(name("p:r:i")));
        drop(done);
        assert_eq!(
            plan(&entry, Instant::now(), ttl),
            Plan::ServeAndRefresh(name("p:r:i"))
        );
        entry.good = None;
        assert!(!entry.lookup_running());
    }

    fn dns_error(permanent: bool) -> Failed {
        Failed {
            error: Error::DnsResolution {
                name: "db.example.com".into(),
                detail: "test".into(),
            },
            permanent,
        }
    }

    fn bound(resolver: &NameResolver, key: &str, instance: &str) -> FailoverSignal {
        let signal = FailoverSignal::new();
        resolver.shared.entries().insert(
            key.into(),
            Entry {
                good: Some((name(instance), Instant::now())),
                binding: Some((name(instance), signal.clone())),
                ..Entry::default()
            },
        );
        signal
    }

    #[test]
    fn a_new_answer_or_a_permanent_failure_closes_the_old_binding_and_a_transient_failure_does_not() {
        let resolver = NameResolver::new(None, Duration::from_secs(30), Duration::from_secs(30));
        let shared = &resolver.shared;
        let key = "db.example.com";
        let signal = bound(&resolver, key, "p:r:a");

        assert_eq!(shared.finish(key, Err(dns_error(false))).unwrap(), name("p:r:a"));
        assert_eq!(shared.finish(key, Ok(name("p:r:a"))).unwrap(), name("p:r:a"));
        assert!(
            !signal.is_fired(),
            "a transient failure or the same answer closes nothing"
        );

        assert_eq!(shared.finish(key, Ok(name("p:r:b"))).unwrap(), name("p:r:b"));
        assert!(signal.is_fired(), "another instance closes the old binding");
        assert!(shared.entries()[key].binding.is_none());

        let signal = bound(&resolver, key, "p:r:b");
        assert!(shared.finish(key, Err(dns_error(true))).is_err());
        assert!(signal.is_fired(), "a permanent failure closes the binding");
        assert!(!shared.entries().contains_key(key), "and forgets the answer");
    }

    #[test]
    fn without_failover_or_for_names_that_cannot_move_a_permanent_failure_serves_stale() {
        let off = NameResolver::new(None, Duration::from_secs(30), Duration::ZERO);
        let signal = bound(&off, "db.example.com", "p:r:a");
        assert_eq!(
            off.shared.finish("db.example.com", Err(dns_error(true))).unwrap(),
            name("p:r:a")
        );
        assert!(!signal.is_fired());

        let on = NameResolver::new(None, Duration::from_secs(30), Duration::from_secs(30));
        let psc = "a1.b2.us-central1.sql-psc.goog";
        let signal = bound(&on, psc, "p:us-central1:a");
        assert!(on.shared.finish(psc, Err(dns_error(true))).is_ok());
        assert!(!signal.is_fired());
    }

    #[tokio::test]
    async fn watches_are_handed_out_per_binding_and_fire_at_once_after_a_move() {
        let resolver = NameResolver::new(None, Duration::from_secs(30), Duration::from_secs(3600));
        let admin = Arc::new(
            AdminClient::new(
                "http://127.0.0.1:9".into(),
                "test".into(),
                None,
                crate::Credentials::from_token("t").admin,
            )
            .unwrap(),
        );
        let key = "db.example.com";
        bound(&resolver, key, "p:r:a");
        let waker = std::task::Waker::noop();
        let mut cx = std::task::Context::from_waker(waker);
        let mut watch = resolver.failover_watch(key, &name("p:r:a"), &admin).unwrap();
        assert!(watch.poll_moved(&mut cx).is_none());
        assert!(
            resolver.shared.entries()[key].ticker.is_some(),
            "the ticker started"
        );
        // A connect that resolved the old instance just before the name moved.
        let mut late = resolver.failover_watch(key, &name("p:r:z"), &admin).unwrap();
        let error = late.poll_moved(&mut cx).unwrap();
        assert!(
            error.to_string().contains("now points to instance `p:r:a`"),
            "{error}"
        );
        // Cloud SQL's own names and unknown names.
        assert!(
            resolver
                .failover_watch("a1.b2.us-central1.sql.goog", &name("p:us-central1:a"), &admin)
                .is_none()
        );
        assert!(
            resolver
                .failover_watch("gone.example.com", &name("p:r:a"), &admin)
                .unwrap()
                .poll_moved(&mut cx)
                .is_some()
        );
        resolver.close();
        assert!(resolver.failover_watch(key, &name("p:r:a"), &admin).is_none());
        assert!(
            watch.poll_moved(&mut cx).is_none(),
            "close leaves connections open"
        );
    }

    #[test]
    fn errors_after_resolution_name_the_dns_name_once() {
        let dial = Error::Dial {
            instance: "p:r:i".into(),
            address: "10.0.0.1:3307".into(),
            source: Arc::new(std::io::Error::other("refused")),
        };
        let untouched = named(dial.clone(), "p:r:i");
        assert!(matches!(&untouched, Error::Dial { instance, .. } if instance == "p:r:i"));
        let tagged = named(dial, "db.example.com.");
        assert!(
            matches!(&tagged, Error::Dial { instance, .. } if instance == "p:r:i (DNS name db.example.com)")
        );
        let again = named(tagged, "db.example.com");
        assert!(
            again
                .to_string()
                .contains("instance `p:r:i (DNS name db.example.com)` at"),
            "{again}"
        );
        let closed = named(Error::Closed, "db.example.com");
        assert!(matches!(closed, Error::Closed));
    }
}
