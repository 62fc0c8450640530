//! Bounded, jittered exponential backoff for transient HTTP failures, shared by the Admin API
//! client and the OAuth2 token exchanges.

use std::time::Duration;

const BASE: Duration = Duration::from_millis(200);
const CAP: Duration = Duration::from_secs(5);

/// The pause before retry number `retry` (0-based), scaled by `jitter` in `[0.5, 1.5)`.
pub(crate) fn backoff(retry: u32, jitter: f64) -> Duration {
    let exp = BASE.saturating_mul(2u32.saturating_pow(retry.min(16)));
    exp.min(CAP).mul_f64(jitter.clamp(0.5, 1.5))
}

/// [`backoff`] with a random jitter.
pub(crate) fn jittered_backoff(retry: u32) -> Duration {
    backoff(retry, 0.5 + crate::random::random_unit())
}

/// Whether an HTTP status is worth retrying: server errors and quota (429).
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
    fn jitter_stays_within_half_and_one_and_a_half() {
        for _ in 0..100 {
            let pause = jittered_backoff(1);
            assert!(pause >= Duration::from_millis(200) && pause <= Duration::from_millis(600));
        }
    }

    #[test]
    fn only_server_errors_and_quota_retry() {
        assert!(retryable_status(500) && retryable_status(503) && retryable_status(429));
        assert!(!retryable_status(400) && !retryable_status(403) && !retryable_status(404));
    }
}
