//! aws-lc's random generator, seeded ahead of the first TLS handshake.
//!
//! aws-lc seeds a process-wide random generator on its first use, and every TLS handshake (the
//! Admin API's, the instance's) draws from it. A default build of `aws-lc-sys` takes that seed
//! from CPU jitter: tens of milliseconds of CPU, once per process, during which any thread that
//! wants random bytes waits; built with `AWS_LC_SYS_NO_JITTER_ENTROPY=1` it seeds from the
//! operating system in microseconds (`docs/performance.md`, "Seeding aws-lc's random
//! generator"). So the seed starts when the first connector is built, on a thread of its own,
//! beside the key generation (whose primes come from the operating system and never wait for
//! it), instead of on the runtime thread of the first handshake. When the key is raced, that
//! thread is one of the racers: it seeds first, then joins the race ([`claim`]).

use std::sync::Once;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use tracing::debug;

/// Whether some thread has taken on the seeding.
static CLAIMED: AtomicBool = AtomicBool::new(false);
static SEEDED: Once = Once::new();

/// Takes on the seeding for the caller, which must then call [`seed`]: true for the first
/// caller in a process, false for every later one.
pub(crate) fn claim() -> bool {
    !CLAIMED.swap(true, Ordering::AcqRel)
}

/// Seeds aws-lc's random generator on this thread, or waits for the thread seeding it; at once
/// when it is seeded. The `aws-lc random generator seeded` debug event carries `seed_ms`.
pub(crate) fn seed() {
    SEEDED.call_once(|| {
        let started = Instant::now();
        // A generator that cannot seed fails every handshake, each of which reports it.
        let seeded = aws_lc_rs::rand::fill(&mut [0u8; 1]).is_ok();
        let seed_ms = started.elapsed().as_secs_f64() * 1000.0;
        debug!(seed_ms, seeded, "aws-lc random generator seeded");
    });
}

/// Starts the seed on a thread of its own unless a thread has already taken it on, and returns
/// at once.
pub(crate) fn prepare() {
    if claim() {
        // A thread that cannot start only means the first handshake seeds it instead.
        let _ = std::thread::Builder::new()
            .name("cloudsql-rng-seed".to_owned())
            .spawn(seed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seed_is_claimed_once_and_seeding_twice_is_harmless() {
        prepare();
        assert!(!claim(), "prepare claimed it");
        seed();
        seed();
        assert!(SEEDED.is_completed());
        let mut bytes = [0u8; 32];
        aws_lc_rs::rand::fill(&mut bytes).unwrap();
        assert_ne!(bytes, [0u8; 32]);
    }
}
