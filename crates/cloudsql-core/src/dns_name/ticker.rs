//! Failover: while a connector lives, every DNS name that can move and has been connected
//! through is looked up again each failover period (Go's and Python's `checkDomainName`), with
//! the same single-flight lookup as connects. [`Shared::finish`](super::Shared) acts on what a
//! lookup finds: another instance, or a permanent failure, fires the name's [`FailoverSignal`],
//! closing every stream connected through it.

use std::sync::{Arc, Weak};

use tokio::task::AbortHandle;
use tokio::time::MissedTickBehavior;
use tracing::debug;

use super::{NameKind, NameResolver, Shared};
use crate::InstanceConnectionName;
use crate::admin_api::AdminClient;
use crate::failover::{FailoverSignal, FailoverWatch, NameMoved};

impl NameResolver {
    /// The watch for a stream connected to `instance` through `dns_name`, starting the name's
    /// ticker if it has none. `None` when failover is off or the name cannot move.
    ///
    /// If the name moved while the stream was being connected, the watch has already fired: the
    /// stream fails at once rather than stay on an instance the name no longer points to.
    pub(crate) fn failover_watch(
        &self,
        dns_name: &str,
        instance: &InstanceConnectionName,
        admin: &Arc<AdminClient>,
    ) -> Option<FailoverWatch> {
        let shared = &self.shared;
        let key = super::key(dns_name);
        if !shared.watches(&key) || shared.is_closed() {
            return None;
        }
        let mut entries = shared.entries();
        let Some(entry) = entries.get_mut(&key) else {
            return Some(fired(NameMoved::Gone {
                dns_name: key,
                from: instance.to_string(),
                detail: "it stopped resolving while the connection was made".into(),
            }));
        };
        match &entry.good {
            Some((current, _)) if current == instance => {}
            Some((current, _)) => {
                return Some(fired(NameMoved::Repointed {
                    dns_name: key.clone(),
                    from: instance.to_string(),
                    to: current.to_string(),
                }));
            }
            None => {
                return Some(fired(NameMoved::Gone {
                    dns_name: key,
                    from: instance.to_string(),
                    detail: "it stopped resolving while the connection was made".into(),
                }));
            }
        }
        if entry.ticker.is_none() {
            entry.ticker = Some(shared.spawn_ticker(&key, admin));
            debug!(dns_name = %key, period = ?shared.failover_period, "watching DNS name for failover");
        }
        let signal = match &entry.binding {
            Some((bound, signal)) if bound == instance && !signal.is_fired() => signal.clone(),
            _ => {
                let signal = FailoverSignal::new();
                entry.binding = Some((instance.clone(), signal.clone()));
                signal
            }
        };
        Some(signal.watch())
    }
}

/// A watch that has already fired with `reason`.
fn fired(reason: NameMoved) -> FailoverWatch {
    let signal = FailoverSignal::new();
    signal.fire(reason);
    signal.watch()
}

impl Shared {
    /// Looks `key` up every failover period until aborted (by close, or when the name stops
    /// resolving); holds the resolver weakly, so it never keeps a dropped connector's state.
    fn spawn_ticker(self: &Arc<Self>, key: &str, admin: &Arc<AdminClient>) -> AbortHandle {
        debug_assert!(NameKind::of(key).can_move());
        let weak: Weak<Shared> = Arc::downgrade(self);
        let period = self.failover_period;
        let admin = admin.clone();
        let key = key.to_owned();
        let task = tokio::spawn(async move {
            let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
            ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                let Some(shared) = weak.upgrade() else {
                    return;
                };
                if shared.is_closed() {
                    return;
                }
                let mut result = {
                    let mut entries = shared.entries();
                    let entry = entries.entry(key.clone()).or_default();
                    match &entry.in_flight {
                        Some((result, _)) if entry.lookup_running() => result.clone(),
                        _ => shared.start(&key, entry, &admin),
                    }
                };
                drop(shared);
                debug!(dns_name = %key, "failover check");
                // What the lookup found is acted on in `finish`; the result itself is not needed.
                let _ = result.wait_for(Option::is_some).await;
            }
        });
        task.abort_handle()
    }
}
