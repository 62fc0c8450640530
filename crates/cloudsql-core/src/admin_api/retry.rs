//! How hard one Admin API call tries; the backoff between tries is in [`crate::backoff`].

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_tries_five_times_and_single_once() {
        assert_eq!(Attempts::Full.max(), 5);
        assert_eq!(Attempts::Single.max(), 1);
    }
}
