//! Pure timing rules for refreshes, tested with tables instead of clocks.

use std::time::Duration;

/// Refresh this long before a certificate expires.
pub(crate) const REFRESH_BUFFER: Duration = Duration::from_secs(4 * 60);

/// Certificates living longer than this are refreshed at half their remaining life.
const LONG_LIVED: Duration = Duration::from_secs(60 * 60);

/// How long the background task waits before refreshing a certificate with `remaining` life:
/// `remaining − 4 min` under an hour (at once under four minutes), half of it over an hour.
pub(crate) fn refresh_delay(remaining: Duration) -> Duration {
    if remaining < LONG_LIVED {
        remaining.saturating_sub(REFRESH_BUFFER)
    } else {
        remaining / 2
    }
}

/// Whether the lazy strategy can still use a certificate with `remaining` life.
pub(crate) fn lazy_is_fresh(remaining: Duration) -> bool {
    remaining >= REFRESH_BUFFER
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: u64 = 60;

    #[test]
    fn refresh_delay_table() {
        let table = [
            (0, 0),
            (3 * MIN, 0),
            (4 * MIN, 0),
            (5 * MIN, MIN),
            (59 * MIN, 55 * MIN),
            (60 * MIN, 30 * MIN),
            (2 * 60 * MIN, 60 * MIN),
            (24 * 60 * MIN, 12 * 60 * MIN),
        ];
        for (remaining, delay) in table {
            assert_eq!(
                refresh_delay(Duration::from_secs(remaining)),
                Duration::from_secs(delay),
                "remaining {remaining}s"
            );
        }
    }

    #[test]
    fn lazy_needs_four_minutes() {
        assert!(!lazy_is_fresh(Duration::from_secs(0)));
        assert!(!lazy_is_fresh(Duration::from_secs(4 * MIN - 1)));
        assert!(lazy_is_fresh(Duration::from_secs(4 * MIN)));
        assert!(lazy_is_fresh(Duration::from_secs(60 * MIN)));
    }
}
