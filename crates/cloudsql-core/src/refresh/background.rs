//! The refresh-ahead strategy: a task per instance refreshes before the certificate expires,
//! and at once (paced) when a refresh is forced or the last one failed.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tracing::debug;

use super::cache::Shared;
use super::schedule::refresh_delay;

/// The task's loop: wait for the schedule or a forced refresh, then refresh through pacing.
/// Stops when the cache closes, or after an error that no retry can fix (the instance is gone
/// or forbidden) while nothing valid is cached: the connector then evicts the cache.
pub(super) async fn run(shared: Arc<Shared>) {
    let name = shared.refresher().name.clone();
    let mut delay = Duration::ZERO;
    loop {
        if delay.is_zero() {
            // Going again at once: a wake-up stored meanwhile asked for this very refresh.
            tokio::select! {
                biased;
                () = shared.wake.notified() => {}
                () = std::future::ready(()) => {}
            }
        } else {
            debug!(instance = %name, ?delay, "next refresh scheduled");
            tokio::select! {
                () = shared.cancel.cancelled() => break,
                () = tokio::time::sleep(delay) => {}
                () = shared.wake.notified() => debug!(instance = %name, "refresh forced early"),
            }
        }
        if !shared.paced().await {
            break;
        }
        delay = match shared.attempt().await {
            None => break,
            Some(Ok(info)) => refresh_delay(info.remaining(SystemTime::now())),
            Some(Err(error)) if error.evicts_cache() && !shared.serving() => {
                debug!(instance = %name, "refresh failed for good with nothing valid cached; stopping");
                return;
            }
            // Pacing holds the retry for the failure cool-down.
            Some(Err(_)) => Duration::ZERO,
        };
    }
    debug!(instance = %name, "background refresh stopped");
}
