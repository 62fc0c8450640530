//! One instance's refresh state machine, shared by both strategies.
//!
//! The rules, in the shape of Google's Go connector (`internal/cloudsql/instance.go`) and
//! stricter than its lazy cache:
//! - **A valid certificate is always served.** Callers wait only when nothing valid is cached
//!   (none yet, expired, or refused by the server).
//! - **One refresh at a time, in its own task.** A caller that times out or is cancelled never
//!   cancels it; every caller waiting for it gets its result.
//! - **Paced.** Two refreshes at once, then one per 30 s, and 30 s after a failure
//!   ([`Pacing`]). A caller that finds nothing valid while the last refresh failed and the next
//!   may not start yet gets that failure at once instead of repeating it.
//! - **A failure never replaces a valid result.** While a valid certificate exists, a refresh
//!   makes one try per Admin API method; full in-call retries only when callers are waiting.
//! - **Close** cancels the refresh in flight and wakes every waiter with [`Error::Closed`].
//!
//! The strategies differ only in what triggers a refresh: in [`Background`] a task per instance
//! refreshes ahead of expiry (see [`super::background`]); in [`Lazy`] there is no task and no
//! timer between connects — a connect that finds the certificate near expiry starts a one-shot
//! refresh task and is served the still-valid certificate meanwhile.
//!
//! [`Background`]: crate::RefreshStrategy::Background
//! [`Lazy`]: crate::RefreshStrategy::Lazy

use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::SystemTime;

use tokio::sync::{Notify, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::Refresher;
use super::pacing::Pacing;
use super::schedule::lazy_is_fresh;
use crate::admin_api::Attempts;
use crate::conn_info::ConnInfo;
use crate::error::Source;
use crate::telemetry;
use crate::{Error, RefreshStrategy};

/// Why a refresh is forced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ForceReason {
    /// A dial, handshake or driver login failed: the certificate may be fine, so it is still
    /// served while the refresh runs.
    ConnectFailed,
    /// The server refused the client certificate (a fatal TLS alert such as `UnknownCA`): it is
    /// not served again; callers wait for the new one.
    CertificateRejected,
}

/// Where the refresh of an instance stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// No refresh is under way or scheduled to start now.
    Idle,
    /// A refresh will start as soon as pacing allows.
    Pending,
    /// The Admin API calls are in flight.
    Calling,
}

#[derive(Debug)]
struct State {
    /// The last good result; kept while valid, whatever later refreshes do.
    current: Option<Arc<ConnInfo>>,
    /// The server refused `current`'s client certificate, with the error that said so: reported
    /// to callers while no refresh can replace it yet.
    rejected: Option<Error>,
    /// The error of the last refresh, while the failure streak lasts.
    last_error: Option<Error>,
    phase: Phase,
    /// Lazy: a refresh was asked for while pacing forbade one; the next connect starts it.
    wanted: bool,
    /// Background: a forced refresh already took its pacing token; the task starts at once.
    granted: bool,
    pacing: Pacing,
    /// Refreshes failed in a row since the last success.
    failures: u32,
    closed: bool,
}

impl State {
    /// `current`, if it may be served at `now`.
    fn valid(&self, now: SystemTime) -> Option<&Arc<ConnInfo>> {
        self.current
            .as_ref()
            .filter(|info| self.rejected.is_none() && info.expires_at > now)
    }

    /// What to tell a caller when nothing valid is cached and no refresh is in flight.
    fn failure(&self) -> Option<&Error> {
        self.last_error.as_ref().or(self.rejected.as_ref())
    }
}

/// Everything the cache handle, its refresh tasks and its streams' rejection hooks share.
#[derive(Debug)]
pub(crate) struct Shared {
    refresher: Refresher,
    strategy: RefreshStrategy,
    state: Mutex<State>,
    /// Bumped on every state change callers may be waiting for.
    changed: watch::Sender<()>,
    /// Wakes the background task for a forced refresh.
    pub(super) wake: Notify,
    pub(super) cancel: CancellationToken,
}

/// One instance's cache: cheap to share; dropping the last handle stops all its work.
#[derive(Debug)]
pub(crate) struct Cache {
    shared: Arc<Shared>,
}

impl Cache {
    /// A cache for `refresher`'s instance; the background strategy starts its task (and the first
    /// refresh) at once, the lazy one waits for the first connect.
    pub(crate) fn new(refresher: Refresher, strategy: RefreshStrategy) -> Self {
        let background = strategy == RefreshStrategy::Background;
        let shared = Arc::new(Shared {
            refresher,
            strategy,
            state: Mutex::new(State {
                current: None,
                rejected: None,
                last_error: None,
                phase: if background { Phase::Pending } else { Phase::Idle },
                wanted: false,
                granted: false,
                pacing: Pacing::new(Instant::now()),
                failures: 0,
                closed: false,
            }),
            changed: watch::Sender::new(()),
            wake: Notify::new(),
            cancel: CancellationToken::new(),
        });
        if background {
            tokio::spawn(super::background::run(shared.clone()));
        }
        Self { shared }
    }

    /// Connection data that is valid now: the cached result when valid (starting a refresh
    /// behind it when due), otherwise the result of the refresh in flight or of one started now,
    /// or — when the last refresh failed and pacing does not allow another yet — its error.
    pub(crate) async fn conn_info(&self) -> Result<Arc<ConnInfo>, Error> {
        let mut changes = self.shared.changed.subscribe();
        loop {
            {
                let mut state = self.shared.lock();
                if state.closed {
                    return Err(Error::Closed);
                }
                let now = SystemTime::now();
                if let Some(info) = state.valid(now).cloned() {
                    if self.shared.strategy == RefreshStrategy::Lazy
                        && (state.wanted || !lazy_is_fresh(info.remaining(now)))
                    {
                        // Behind the valid certificate, and only if pacing allows it now.
                        self.shared.start_lazy(&mut state, false);
                    }
                    return Ok(info);
                }
                let lazy = self.shared.strategy == RefreshStrategy::Lazy;
                if lazy && state.phase == Phase::Idle {
                    // Waits for pacing only when there is no remembered failure to report.
                    let wait_for_pacing = state.failure().is_none();
                    self.shared.start_lazy(&mut state, wait_for_pacing);
                }
                if state.phase != Phase::Calling {
                    if let Some(error) = state.failure() {
                        return Err(error.clone());
                    }
                    if !lazy && state.phase == Phase::Idle {
                        // Expired between scheduled refreshes (a suspended process, say).
                        self.shared.kick_background(&mut state);
                    }
                }
            }
            if changes.changed().await.is_err() {
                return Err(Error::Closed);
            }
        }
    }

    /// Starts a refresh without making anyone wait for it while the current certificate may
    /// still be served (see [`ForceReason`]). A refresh in flight or pending makes this a no-op
    /// apart from marking a rejected certificate.
    pub(crate) fn force_refresh(&self, reason: ForceReason) {
        self.shared.force(reason, None);
    }

    /// The error of the last refresh, while the failure streak lasts.
    pub(crate) fn last_error(&self) -> Option<Error> {
        self.shared.lock().last_error.clone()
    }

    /// A hook for a stream dialed with `info` to `address`: firing it reports that the server
    /// refused that certificate, without keeping the cache alive.
    pub(crate) fn rejection_hook(&self, info: &Arc<ConnInfo>, address: String) -> RejectionHook {
        RejectionHook {
            shared: Arc::downgrade(&self.shared),
            info: Arc::downgrade(info),
            address,
        }
    }

    /// The instance this cache is for.
    pub(crate) fn name(&self) -> &crate::InstanceConnectionName {
        &self.shared.refresher.name
    }

    /// Stops all work: cancels the refresh in flight (no Admin API call is made afterwards) and
    /// wakes every waiting caller with [`Error::Closed`].
    pub(crate) fn close(&self) {
        self.shared.close();
    }
}

impl Drop for Cache {
    fn drop(&mut self) {
        self.shared.close();
    }
}

/// Tells an instance's cache that the server refused the client certificate a stream was
/// dialed with.
#[derive(Debug, Clone)]
pub(crate) struct RejectionHook {
    shared: Weak<Shared>,
    info: Weak<ConnInfo>,
    address: String,
}

impl RejectionHook {
    /// Reports the rejection `alert` (the TLS error the stream or handshake saw): forces a
    /// refresh, and stops serving that certificate.
    pub(crate) fn fire(&self, alert: Source) {
        if let Some(shared) = self.shared.upgrade() {
            let error = Error::Tls {
                instance: shared.refresher.name.to_string(),
                address: self.address.clone(),
                source: alert,
            };
            shared.force(ForceReason::CertificateRejected, Some((&self.info, error)));
        }
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn notify(&self) {
        self.changed.send_replace(());
    }

    fn force(self: &Arc<Self>, reason: ForceReason, rejected: Option<(&Weak<ConnInfo>, Error)>) {
        let mut state = self.lock();
        if state.closed {
            return;
        }
        if reason == ForceReason::CertificateRejected {
            // Only the certificate the stream used: a newer one may already be in place.
            let Some((info, error)) = rejected else {
                return;
            };
            // Only the certificate the stream used: a newer one may already be in place.
            let same = match (info.upgrade(), &state.current) {
                (Some(info), Some(current)) => Arc::ptr_eq(&info, current),
                _ => false,
            };
            if !same {
                return;
            }
            if state.rejected.is_none() {
                warn!(
                    instance = %self.refresher.name,
                    strategy = ?self.strategy,
                    error = &error as &dyn std::error::Error,
                    "the instance refused the client certificate (its client CA may have rotated); \
                     fetching a new one"
                );
            }
            state.rejected = Some(error);
        }
        debug!(instance = %self.refresher.name, ?reason, phase = ?state.phase, "refresh forced");
        match self.strategy {
            RefreshStrategy::Lazy => {
                let waiting = state.valid(SystemTime::now()).is_none() && state.failure().is_none();
                if !self.start_lazy(&mut state, waiting) {
                    state.wanted = true;
                }
            }
            _ => self.kick_background(&mut state),
        }
        drop(state);
        self.notify();
    }

    /// Background: wakes the task for a refresh now. If pacing allows one, the token is taken
    /// here, so callers that arrive before the task runs wait for the refresh instead of being
    /// told the last failure.
    fn kick_background(&self, state: &mut State) {
        if state.phase != Phase::Idle {
            return;
        }
        if state.pacing.try_take(Instant::now()) {
            state.granted = true;
            state.phase = Phase::Calling;
        } else {
            state.phase = Phase::Pending;
        }
        self.wake.notify_one();
    }

    /// Lazy: starts a one-shot refresh task unless one is under way. Without `wait_for_pacing`
    /// it starts only if pacing allows one now (no timers while serving a valid certificate or a
    /// remembered failure); with it, the task waits for pacing itself (a caller waits anyway).
    /// Returns whether a refresh is now under way.
    fn start_lazy(self: &Arc<Self>, state: &mut State, wait_for_pacing: bool) -> bool {
        if state.phase != Phase::Idle {
            return true;
        }
        let taken = state.pacing.try_take(Instant::now());
        if !taken && !wait_for_pacing {
            return false;
        }
        state.wanted = false;
        state.phase = if taken { Phase::Calling } else { Phase::Pending };
        let shared = self.clone();
        tokio::spawn(async move {
            if !taken && !shared.paced().await {
                return;
            }
            shared.attempt().await;
        });
        true
    }

    fn close(&self) {
        self.cancel.cancel();
        let mut state = self.lock();
        if !state.closed {
            state.closed = true;
            state.phase = Phase::Idle;
            state.granted = false;
            drop(state);
            debug!(instance = %self.refresher.name, "refresh stopped");
            self.notify();
        }
    }

    /// Waits until pacing allows a refresh and takes it. `false` when the cache was closed.
    pub(super) async fn paced(&self) -> bool {
        loop {
            let ready_at = {
                let mut state = self.lock();
                if state.closed {
                    return false;
                }
                let now = Instant::now();
                if std::mem::take(&mut state.granted) || state.pacing.try_take(now) {
                    state.phase = Phase::Calling;
                    drop(state);
                    self.notify();
                    return true;
                }
                if state.phase == Phase::Idle {
                    state.phase = Phase::Pending;
                }
                state.pacing.ready_at(now)
            };
            tokio::select! {
                () = self.cancel.cancelled() => return false,
                () = tokio::time::sleep_until(ready_at) => {}
            }
        }
    }

    /// Runs one refresh (pacing already taken) and records its outcome. `None` when cancelled.
    pub(super) async fn attempt(&self) -> Option<Result<Arc<ConnInfo>, Error>> {
        let (attempts, settings_first, attempt) = {
            let mut state = self.lock();
            if state.closed {
                return None;
            }
            state.phase = Phase::Calling;
            let serving = state.valid(SystemTime::now()).is_some();
            // With a valid certificate served meanwhile, one try per method: pacing schedules
            // the next. After a failure, ask connectSettings first and skip the certificate call
            // if it fails too: an outage then costs one HTTP call per attempt.
            (
                if serving { Attempts::Single } else { Attempts::Full },
                state.last_error.is_some(),
                state.failures.saturating_add(1),
            )
        };
        self.notify();
        let refresher = &self.refresher;
        let span = telemetry::refresh_span(&refresher.name, refresher.iam_authn, self.strategy, attempt);
        let result = tokio::select! {
            () = self.cancel.cancelled() => return None,
            result = refresher.refresh(attempts, settings_first, span.clone()) => result,
        };
        telemetry::refresh_finished(&span, &refresher.telemetry, &result);
        let mut state = self.lock();
        if state.closed {
            return None;
        }
        state.phase = Phase::Idle;
        match &result {
            Ok(info) => {
                if state.last_error.is_some() {
                    info!(
                        instance = %self.refresher.name,
                        strategy = ?self.strategy,
                        iam_authn = self.refresher.iam_authn,
                        "refresh recovered"
                    );
                }
                state.current = Some(info.clone());
                state.failures = 0;
                state.rejected = None;
                state.last_error = None;
                state.pacing.succeeded();
            }
            Err(error) => {
                let now = SystemTime::now();
                let serving = state.valid(now).map(|info| info.remaining(now));
                if state.last_error.is_none() {
                    warn!(
                        instance = %self.refresher.name,
                        strategy = ?self.strategy,
                        iam_authn = self.refresher.iam_authn,
                        error = error as &dyn std::error::Error,
                        still_valid_for = ?serving,
                        "refresh failed; retrying at most every 30 s{}",
                        if serving.is_some() {
                            " while the current certificate is still served"
                        } else {
                            ""
                        }
                    );
                } else {
                    debug!(instance = %self.refresher.name, error = error as &dyn std::error::Error, "refresh failed again");
                }
                state.last_error = Some(error.clone());
                state.failures = state.failures.saturating_add(1);
                state.pacing.failed(Instant::now());
            }
        }
        drop(state);
        self.notify();
        Some(result)
    }

    /// Whether a valid certificate is being served.
    pub(super) fn serving(&self) -> bool {
        self.lock().valid(SystemTime::now()).is_some()
    }

    /// The instance this cache is for.
    pub(super) fn refresher(&self) -> &Refresher {
        &self.refresher
    }
}
