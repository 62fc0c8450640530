//! Bounded, jittered exponential backoff for transient Admin API failures.

use std::time::Duration;

/// How many attempts a call gets in all (the first plus retries) when nothing valid is cached.
const MAX_ATTEMPTS: u32 = 5;

/// How hard one Admin API call tries before it reports failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Attempts {
    /// Up to five tries with backoff: nothing valid is cached, a caller is waiting.
    Full,
    /// One try: a still-valid certificate is served meanwhile and the refresh limiter paces the
    /// next attempt, so in-call retries would only multiply calls during an outage.
    Single,
}

impl Attempts {
    /// The number of tries in all.
    pub(crate) fn max(self) -> u32 {
        match self {
            Attempts::Full => MAX_ATTEMPTS,
            Attempts::Single => 1,
        }
    }
}
const BASE: Duration = Duration::from_millis(200);
const CAP: Duration = Duration::from_secs(5);

/// The pause before retry number `retry` (0-based), scaled by `jitter` in `[0.5, 1.5)`.
pub(crate) fn backoff(retry: u32, jitter: f64) -> Duration {
    let exp = BASE.saturating_mul(2u32.saturating_pow(retry.min(16)));
    exp.min(CAP).mul_f64(jitter.clamp(0.5, 1.5))
}

/// Whether an HTTP status is worth retrying.
pub(crate) fn retryable_status(status: u16) -> bool {
    status >= 500 || status == 429
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_is_capped() {
        let table = [
            (0, 1.0, 200),
            (1, 1.0, 400),
            (2, 1.0, 800),
            (3, 1.0, 1600),
            (5, 1.0, 5000),
            (30, 1.0, 5000),
            (0, 0.5, 100),
            (1, 1.49, 596),
            (2, 9.0, 1200),
        ];
        for (retry, jitter, millis) in table {
            assert_eq!(
                backoff(retry, jitter).as_millis(),
                millis,
                "retry {retry} jitter {jitter}"
            );
        }
    }

    #[test]
    fn only_server_errors_and_quota_retry() {
        assert!(retryable_status(500) && retryable_status(503) && retryable_status(429));
        assert!(!retryable_status(400) && !retryable_status(403) && !retryable_status(404));
    }
}
