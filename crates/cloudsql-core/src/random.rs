//! Random bytes from aws-lc-rs's system generator, the one TLS draws from, and its seeding.

mod seed;

pub(crate) use seed::{claim as claim_seed, prepare as prepare_seed, seed};

/// `N` random bytes.
pub(crate) fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    // aws-lc fails only when the operating system's generator does, which nothing here can
    // recover from (and nothing that needs randomness could proceed without).
    #[allow(clippy::expect_used)]
    aws_lc_rs::rand::fill(&mut bytes).expect("the system random number generator failed");
    bytes
}

/// A uniformly distributed `f64` in `[0, 1)`.
pub(crate) fn random_unit() -> f64 {
    // The top 53 bits: every f64 in [0, 1) with that spacing equally likely.
    (u64::from_le_bytes(random_bytes()) >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_differ_and_units_stay_in_range() {
        assert_ne!(random_bytes::<16>(), random_bytes::<16>());
        for _ in 0..1000 {
            let u = random_unit();
            assert!((0.0..1.0).contains(&u), "{u}");
        }
    }
}
