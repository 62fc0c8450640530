//! The refresh-ahead strategy: a task per instance refreshes before expiry, rate-limited.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use governor::{Quota, RateLimiter};
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;
use tracing::debug;

use super::Refresher;
use super::schedule::refresh_delay;
use crate::Error;
use crate::conn_info::ConnInfo;

/// Refreshes allowed at once.
const BURST: u32 = 2;
/// One more refresh is allowed every this long.
const REFILL: Duration = Duration::from_secs(30);

#[derive(Debug, Default)]
struct State {
    /// The last good result; kept while valid even if later refreshes fail.
    current: Option<Arc<ConnInfo>>,
    /// The error of the last refresh, if it failed.
    error: Option<Error>,
    /// A refresh is under way or about to start.
    refreshing: bool,
    /// A dial failed with `current`: callers wait for the next refresh.
    stale: bool,
    /// The task has stopped (closed, or a fatal error in `error`).
    stopped: bool,
}

/// Background refresh for one instance.
#[derive(Debug)]
pub(crate) struct Background {
    state: watch::Receiver<State>,
    sender: Arc<watch::Sender<State>>,
    force: Arc<Notify>,
    cancel: CancellationToken,
}

impl Background {
    /// Starts the refresh task; the first refresh begins at once.
    pub(crate) fn spawn(refresher: Refresher) -> Self {
        let (tx, rx) = watch::channel(State {
            refreshing: true,
            ..State::default()
        });
        let sender = Arc::new(tx);
        let force = Arc::new(Notify::new());
        let cancel = CancellationToken::new();
        tokio::spawn(run(refresher, sender.clone(), force.clone(), cancel.clone()));
        Self {
            state: rx,
            sender,
            force,
            cancel,
        }
    }

    pub(crate) async fn conn_info(&self) -> Result<Arc<ConnInfo>, Error> {
        let mut rx = self.state.clone();
        loop {
            {
                let state = rx.borrow_and_update();
                if state.stopped {
                    return Err(state.error.clone().unwrap_or(Error::Closed));
                }
                let now = SystemTime::now();
                if let Some(info) = &state.current
                    && !state.stale
                    && info.expires_at > now
                {
                    return Ok(info.clone());
                }
                if !state.refreshing
                    && !state.stale
                    && let Some(error) = &state.error
                {
                    return Err(error.clone());
                }
            }
            if rx.changed().await.is_err() {
                return Err(Error::Closed);
            }
        }
    }

    pub(crate) fn force_refresh(&self) {
        self.sender.send_modify(|s| s.stale = true);
        self.force.notify_one();
    }

    pub(crate) fn close(&self) {
        self.cancel.cancel();
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

async fn run(
    refresher: Refresher,
    state: Arc<watch::Sender<State>>,
    force: Arc<Notify>,
    cancel: CancellationToken,
) {
    let quota = Quota::with_period(REFILL)
        .expect("30 s is a non-zero period")
        .allow_burst(NonZeroU32::new(BURST).expect("burst is non-zero"));
    let limiter = RateLimiter::direct(quota);
    loop {
        tokio::select! {
            () = cancel.cancelled() => break,
            () = limiter.until_ready() => {}
        }
        state.send_modify(|s| s.refreshing = true);
        let result = tokio::select! {
            () = cancel.cancelled() => break,
            result = refresher.refresh() => result,
        };
        let delay = match result {
            Ok(info) => {
                let delay = refresh_delay(info.remaining(SystemTime::now()));
                state.send_modify(|s| {
                    s.current = Some(info);
                    s.error = None;
                    s.refreshing = false;
                    s.stale = false;
                });
                debug!(instance = %refresher.name, ?delay, "next refresh scheduled");
                delay
            }
            Err(error) => {
                let fatal = error.evicts_cache();
                state.send_modify(|s| {
                    s.error = Some(error);
                    s.refreshing = false;
                    s.stale = false;
                    s.stopped = fatal;
                });
                if fatal {
                    debug!(instance = %refresher.name, "refresh failed for good; stopping");
                    return;
                }
                // Retry at once; the rate limiter paces the attempts.
                Duration::ZERO
            }
        };
        tokio::select! {
            () = cancel.cancelled() => break,
            () = tokio::time::sleep(delay) => {}
            () = force.notified() => debug!(instance = %refresher.name, "forced refresh"),
        }
    }
    state.send_modify(|s| {
        s.stopped = true;
        s.error = Some(Error::Closed);
    });
    debug!(instance = %refresher.name, "background refresh stopped");
}
