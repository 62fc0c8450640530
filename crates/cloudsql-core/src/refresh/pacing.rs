//! How often one instance may call the Admin API: a token bucket (two refreshes at once, then
//! one every 30 s) and a cool-down after a failed refresh. Pure arithmetic on instants the
//! caller passes in, so it is tested with tables instead of clocks.

use std::time::Duration;

use tokio::time::Instant;

/// Refreshes allowed at once.
const BURST: u32 = 2;
/// One more refresh is allowed every this long.
pub(crate) const REFILL: Duration = Duration::from_secs(30);
/// After a failed refresh, the next one waits this long: during an outage an instance makes at
/// most one attempt per 30 s, whatever triggers it (schedule, failed dials, lazy connects).
pub(crate) const FAILURE_COOLDOWN: Duration = REFILL;

/// The refresh budget of one instance.
#[derive(Debug, Clone)]
pub(crate) struct Pacing {
    /// Whole refreshes available at `updated`, at most [`BURST`].
    tokens: u32,
    /// When `tokens` was last brought up to date; the next token arrives `REFILL` after it.
    updated: Instant,
    /// When the last refresh failed, while the failure streak lasts.
    last_failure: Option<Instant>,
}

impl Pacing {
    /// A full bucket at `now`.
    pub(crate) fn new(now: Instant) -> Self {
        Self {
            tokens: BURST,
            updated: now,
            last_failure: None,
        }
    }

    fn refill(&mut self, now: Instant) {
        if self.tokens >= BURST {
            self.updated = now;
            return;
        }
        let elapsed = now.saturating_duration_since(self.updated);
        let earned = u32::try_from(elapsed.as_nanos() / REFILL.as_nanos()).unwrap_or(u32::MAX);
        if earned == 0 {
            return;
        }
        self.tokens = self.tokens.saturating_add(earned).min(BURST);
        self.updated = if self.tokens >= BURST {
            now
        } else {
            self.updated + REFILL * earned
        };
    }

    /// The earliest instant a refresh may start.
    pub(crate) fn ready_at(&self, now: Instant) -> Instant {
        let mut bucket = self.clone();
        bucket.refill(now);
        let token_at = if bucket.tokens > 0 {
            now
        } else {
            bucket.updated + REFILL
        };
        match self.last_failure {
            Some(failed) => token_at.max(failed + FAILURE_COOLDOWN),
            None => token_at,
        }
    }

    /// Takes one refresh from the budget if one may start at `now`.
    pub(crate) fn try_take(&mut self, now: Instant) -> bool {
        if self.ready_at(now) > now {
            return false;
        }
        self.refill(now);
        if self.tokens >= BURST {
            self.updated = now;
        }
        self.tokens -= 1;
        true
    }

    /// A refresh failed at `now`: the next one waits for the cool-down.
    pub(crate) fn failed(&mut self, now: Instant) {
        self.last_failure = Some(now);
    }

    /// A refresh succeeded: the failure streak is over.
    pub(crate) fn succeeded(&mut self) {
        self.last_failure = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn two_at_once_then_one_every_thirty_seconds() {
        let t0 = Instant::now();
        let mut p = Pacing::new(t0);
        // (offset in seconds, whether a refresh may start then)
        let table = [
            (0, true),
            (0, true),
            (0, false),
            (29, false),
            (30, true),
            (31, false),
            (59, false),
            (60, true),
            // A long quiet spell refills the burst, and no more than the burst.
            (300, true),
            (300, true),
            (300, false),
        ];
        for (offset, allowed) in table {
            assert_eq!(p.try_take(t0 + secs(offset)), allowed, "at +{offset}s");
        }
    }

    #[test]
    fn ready_at_names_the_next_allowed_instant() {
        let t0 = Instant::now();
        let mut p = Pacing::new(t0);
        assert_eq!(p.ready_at(t0), t0);
        assert!(p.try_take(t0));
        assert!(p.try_take(t0 + secs(10)));
        assert_eq!(p.ready_at(t0 + secs(10)), t0 + secs(30));
        assert!(p.try_take(t0 + secs(30)));
        assert_eq!(p.ready_at(t0 + secs(30)), t0 + secs(60));
    }

    #[test]
    fn a_failure_holds_the_next_refresh_for_the_cool_down_even_with_tokens_left() {
        let t0 = Instant::now();
        let mut p = Pacing::new(t0);
        assert!(p.try_take(t0));
        p.failed(t0 + secs(1));
        // A token is left, but the cool-down rules.
        assert!(!p.try_take(t0 + secs(2)));
        assert_eq!(p.ready_at(t0 + secs(2)), t0 + secs(31));
        assert!(p.try_take(t0 + secs(31)));
        p.failed(t0 + secs(32));
        assert!(!p.try_take(t0 + secs(61)));
        assert!(p.try_take(t0 + secs(62)));
        // Success ends the streak: the bucket alone decides again.
        p.succeeded();
        assert_eq!(p.ready_at(t0 + secs(62)), t0 + secs(62));
    }

    #[test]
    fn an_outage_costs_at_most_one_attempt_per_thirty_seconds() {
        let t0 = Instant::now();
        let mut p = Pacing::new(t0);
        let mut attempts = Vec::new();
        // Something asks for a refresh every second for 120 s; every attempt fails.
        for s in 0..120 {
            let now = t0 + secs(s);
            if p.try_take(now) {
                attempts.push(s);
                p.failed(now);
            }
        }
        assert_eq!(attempts, vec![0, 30, 60, 90]);
    }
}
