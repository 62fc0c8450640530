//! Random primes for the connector's RSA key, drawn from the operating system's random source by
//! a search that can be stopped between any two candidates.
//!
//! An RSA-2048 key is two random 1024-bit primes. The search is the one RustCrypto's `rsa`
//! crate makes, on `crypto-primes`' building blocks: a random odd start with its top two bits set (so
//! the modulus has exactly 2048 bits), a sieve that skips multiples of small primes, and the
//! Baillie-PSW test (Miller-Rabin to base 2 and a strong Lucas test, the 2021 variant) on what
//! the sieve lets through. A prime that passes is then confirmed by the random-base Miller-Rabin
//! rounds FIPS 186-5 (appendix B.3) asks for an error below 2⁻¹⁰⁰, as aws-lc's own key
//! generation does. Both halves run on the candidate: a prime here passes every test either
//! library applies, so the key is at least as strong as one aws-lc would have made.
//!
//! Two things make this faster on a cold start than aws-lc's own generation: its randomness comes
//! from `getrandom` directly, so it never waits for aws-lc to seed its random generator (tens of
//! milliseconds of CPU jitter in a default build; see `docs/performance.md`), and it checks a
//! cancellation flag before each candidate, so racers stop as soon as the key is made instead of
//! holding their cores until their own search ends.

use std::num::NonZeroU32;

use crypto_bigint::rand_core::TryCryptoRng;
use crypto_bigint::{BitOps, BoxedUint, NonZero, Odd, RandomBits, RandomMod, Resize};
use crypto_primes::hazmat::{MillerRabin, SmallFactorsSieve, minimum_mr_iterations};
use crypto_primes::{Flavor, is_prime};
use getrandom::SysRng;

use crate::Error;

/// The size of each prime of an RSA-2048 key.
pub(super) const PRIME_BITS: u32 = 1024;

/// FIPS 186-5's error bound for the confirming Miller-Rabin rounds: 2⁻¹⁰⁰.
const LOG2_ERROR_BOUND: u32 = 100;

/// Why a search ended without a prime.
#[derive(Debug)]
pub(super) enum Stopped {
    /// The caller no longer wants one (another racer made the key).
    Cancelled,
    /// The search could not go on; says why.
    Failed(Error),
}

/// Searches for a random prime of exactly `bits` bits whose top two bits are set, asking
/// `cancelled` before each candidate it tests. Its randomness comes from the operating system.
pub(super) fn random_prime(bits: u32, cancelled: &dyn Fn() -> bool) -> Result<BoxedUint, Stopped> {
    random_prime_from(&mut SysRng, bits, cancelled)
}

/// [`random_prime`] drawing from `rng`.
fn random_prime_from<R>(rng: &mut R, bits: u32, cancelled: &dyn Fn() -> bool) -> Result<BoxedUint, Stopped>
where
    R: TryCryptoRng + ?Sized,
{
    let width = NonZeroU32::new(bits)
        .filter(|bits| bits.get() >= 16)
        .ok_or_else(|| failed(format!("a {bits}-bit prime is not a key's prime")))?;
    let rounds = minimum_mr_iterations(bits, LOG2_ERROR_BOUND)
        .ok_or_else(|| failed(format!("no Miller-Rabin round count for {bits}-bit primes")))?;
    loop {
        let mut start = BoxedUint::try_random_bits(rng, bits).map_err(|e| {
            failed(format!(
                "the operating system's random source failed ({e:?}) while generating the \
                 connector's RSA key"
            ))
        })?;
        start.set_bit_vartime(0, true);
        start.set_bit_vartime(bits - 1, true);
        start.set_bit_vartime(bits - 2, true);
        // The sieve walks up from `start` and ends at the bit length; a new start follows.
        let sieve = SmallFactorsSieve::new(start, width, false)
            .map_err(|e| failed(format!("the prime sieve refused its start: {e:?}")))?;
        for candidate in sieve {
            if cancelled() {
                return Err(Stopped::Cancelled);
            }
            if is_prime(Flavor::Any, &candidate) && confirmed(rng, &candidate, rounds)? {
                return Ok(candidate);
            }
        }
    }
}

/// Runs `rounds` Miller-Rabin tests with bases drawn uniformly from `[2, candidate - 2]`.
fn confirmed<R: TryCryptoRng + ?Sized>(
    rng: &mut R,
    candidate: &BoxedUint,
    rounds: usize,
) -> Result<bool, Stopped> {
    let odd = Odd::new(candidate.clone())
        .into_option()
        .ok_or_else(|| failed("an even number passed the primality test".to_owned()))?;
    let test = MillerRabin::new(odd);
    let three = BoxedUint::from(3u32).resize(candidate.bits_precision());
    let range = NonZero::new(candidate.wrapping_sub(&three))
        .into_option()
        .ok_or_else(|| failed("a prime of three passed for a key's prime".to_owned()))?;
    let two = BoxedUint::from(2u32).resize(candidate.bits_precision());
    for _ in 0..rounds {
        let base = BoxedUint::try_random_mod_vartime(rng, &range)
            .map_err(|e| {
                failed(format!(
                    "the operating system's random source failed ({e:?}) while checking a prime"
                ))
            })?
            .wrapping_add(&two);
        if test.test(&base).is_composite() {
            return Ok(false);
        }
    }
    Ok(true)
}

fn failed(why: String) -> Stopped {
    Stopped::Failed(Error::config(format!(
        "could not generate the connector's RSA key: {why}"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn primes_have_the_asked_size_and_their_top_two_bits_set() {
        for _ in 0..3 {
            let p = random_prime(PRIME_BITS, &|| false).unwrap();
            assert_eq!(p.bit_width(), PRIME_BITS);
            assert!(p.bit_vartime(PRIME_BITS - 2), "second bit from the top");
            assert!(is_prime(Flavor::Any, &p));
        }
    }

    #[test]
    fn a_cancelled_search_stops_before_testing_anything() {
        let asked = std::cell::Cell::new(0);
        let outcome = random_prime(PRIME_BITS, &|| {
            asked.set(asked.get() + 1);
            true
        });
        assert!(matches!(outcome, Err(Stopped::Cancelled)), "{outcome:?}");
        assert_eq!(asked.get(), 1);
    }

    #[test]
    fn the_confirming_rounds_catch_what_base_two_alone_lets_through() {
        // 2047 = 23 × 89 is the smallest strong pseudoprime to base 2: Miller-Rabin with base 2
        // says "probably prime"; random bases expose it.
        let n = BoxedUint::from(2047u32);
        let odd = Odd::new(n.clone()).unwrap();
        assert!(!MillerRabin::new(odd).test_base_two().is_composite());
        assert!(!confirmed(&mut SysRng, &n, 40).unwrap());
        // And a real prime of a key's size passes them.
        let p = random_prime(PRIME_BITS, &|| false).unwrap();
        let rounds = minimum_mr_iterations(PRIME_BITS, LOG2_ERROR_BOUND).unwrap();
        assert!(confirmed(&mut SysRng, &p, rounds).unwrap());
    }

    /// A random source that works for `left` draws, then fails as a broken `getrandom` would.
    struct FailingRandom {
        left: usize,
    }

    impl crypto_bigint::rand_core::TryRng for FailingRandom {
        type Error = getrandom::Error;

        fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
            let mut bytes = [0; 4];
            self.try_fill_bytes(&mut bytes)?;
            Ok(u32::from_le_bytes(bytes))
        }

        fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
            let mut bytes = [0; 8];
            self.try_fill_bytes(&mut bytes)?;
            Ok(u64::from_le_bytes(bytes))
        }

        fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
            if self.left == 0 {
                return Err(getrandom::Error::UNSUPPORTED);
            }
            self.left -= 1;
            getrandom::fill(dst)
        }
    }

    impl TryCryptoRng for FailingRandom {}

    #[test]
    fn a_failing_random_source_fails_the_search_saying_so() {
        // At the first draw, and after some (in the confirming rounds or a later start).
        for left in [0, 1, 3, 20] {
            let outcome = random_prime_from(&mut FailingRandom { left }, PRIME_BITS, &|| false);
            match outcome {
                Err(Stopped::Failed(error)) => {
                    assert_eq!(error.kind(), crate::ErrorKind::Config);
                    let text = error.to_string();
                    assert!(text.contains("random source failed"), "{text}");
                    assert!(text.contains("RSA key") || text.contains("prime"), "{text}");
                }
                // Enough draws can find a prime before the source breaks.
                Ok(prime) if left > 0 => assert_eq!(prime.bit_width(), PRIME_BITS),
                other => panic!("{left} draws: {other:?}"),
            }
        }
    }

    #[test]
    fn sizes_no_key_uses_are_refused_not_panicked_on() {
        for bits in [0, 1, 15] {
            assert!(
                matches!(random_prime(bits, &|| false), Err(Stopped::Failed(_))),
                "{bits}"
            );
        }
    }
}
