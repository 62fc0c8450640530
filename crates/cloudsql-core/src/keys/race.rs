//! RSA key generation raced on several threads, prime by prime: the first two primes found make
//! the key.
//!
//! Generating an RSA-2048 key means searching for two random 1024-bit primes. How many
//! candidates a search takes is a matter of luck, so one generation's time is heavy-tailed: most
//! take a few tens of milliseconds, some several times that. Here every racer searches for primes
//! ([`primes::random_prime`]) and hands each one it finds to the race; the first two (distinct,
//! usable with e = 65537, far enough apart) make the key, whichever racers found them. So a key
//! takes the time of the two fastest prime searches among `width` running at once, which cuts the
//! median and, most, the tail. Every prime is searched and tested the same way, so the key is
//! exactly as strong as one generated alone.
//!
//! Racers ask whether the race is decided before each candidate they test, so the losers stop
//! within a candidate (well under a millisecond) of the key being made and give their cores back
//! to the rest of the cold start. When the process has not seeded aws-lc's random generator yet
//! (every TLS handshake needs it; tens of milliseconds of CPU in a default build), one racer
//! seeds it first and then joins, so the seed and the key share the cores without more busy
//! threads than racers. The width is one per core but one
//! ([`std::thread::available_parallelism`], at most [`MAX_RACERS`]), and two on 2 cores; 1 core
//! never races. [`THREADS_ENV`] sets the width, never above the cores (`docs/performance.md` has
//! the measurements).

use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use crypto_bigint::{BoxedUint, NonZero, Resize};
use tracing::debug;
use zeroize::Zeroize;

use super::ClientKey;
use super::pkcs1::PUBLIC_EXPONENT;
use super::primes::{self, Stopped};
use crate::{Error, random};

/// At most this many generations race. Beyond four the minimum of the draws barely moves
/// while each racer still costs a whole core.
pub(super) const MAX_RACERS: usize = 4;

/// Sets how many generations race, from 1 (no race) up to the cores this process may use (at
/// most [`MAX_RACERS`]).
pub(super) const THREADS_ENV: &str = "CLOUDSQL_RSA_KEYGEN_THREADS";

/// How many generations race: [`THREADS_ENV`] when set, bounded by the cores and [`MAX_RACERS`];
/// otherwise one per core but one (the rest of a cold start, the runtime, TLS and the
/// application's own start-up, gets a core), except on 2 cores, where both race, at most
/// [`MAX_RACERS`], at least one (`docs/performance.md` has the measurements).
pub(super) fn width() -> usize {
    let cores = std::thread::available_parallelism().map_or(1, NonZeroUsize::get);
    width_for(cores, std::env::var(THREADS_ENV).ok().as_deref())
}

fn width_for(cores: usize, wanted: Option<&str>) -> usize {
    let cap = cores.clamp(1, MAX_RACERS);
    match wanted.and_then(|v| v.trim().parse::<usize>().ok()) {
        Some(n) => n.clamp(1, cap),
        None => cores.saturating_sub(1).max(cores.min(2)).clamp(1, MAX_RACERS),
    }
}

/// Who gets the outcome: called exactly once, with the key or, when every racer failed, the
/// last error.
type Deliver = Box<dyn FnOnce(Result<ClientKey, Error>) + Send>;

struct Race {
    deliver: Mutex<Option<Deliver>>,
    /// Set once the outcome is delivered: racers stop at their next candidate.
    decided: AtomicBool,
    /// A prime found and not yet paired.
    found: Mutex<Option<BoxedUint>>,
    failed: AtomicUsize,
    width: usize,
    started: Instant,
}

impl Race {
    fn decided(&self) -> bool {
        self.decided.load(Ordering::Acquire)
    }

    /// One racer: searches primes and offers each until the race is decided or its search fails.
    fn run(&self) {
        while !self.decided() {
            match primes::random_prime(primes::PRIME_BITS, &|| self.decided()) {
                Ok(prime) => {
                    if let Some((mut p, mut q)) = self.pair(prime) {
                        self.offer(ClientKey::from_primes(&p, &q));
                        p.zeroize();
                        q.zeroize();
                    }
                }
                Err(Stopped::Cancelled) => return,
                Err(Stopped::Failed(error)) => {
                    self.offer(Err(error));
                    return;
                }
            }
        }
    }

    /// Keeps a first prime until a second comes; returns both once a usable pair exists. A
    /// prime `p` with `p - 1` divisible by e cannot be in the key (e would have no inverse), and
    /// a second prime within 2^924 of the first is dropped as FIPS 186-5 (A.1.3) asks; both
    /// happen to about one prime in 65 537 and never in practice, respectively.
    fn pair(&self, mut prime: BoxedUint) -> Option<(BoxedUint, BoxedUint)> {
        let exponent =
            NonZero::new(BoxedUint::from(PUBLIC_EXPONENT).resize(prime.bits_precision())).into_option()?;
        if prime.rem_vartime(&exponent) == BoxedUint::one().resize(prime.bits_precision()) {
            prime.zeroize();
            return None;
        }
        let mut found = self.found.lock().unwrap_or_else(PoisonError::into_inner);
        // Checked under the lock that `offer` takes after deciding: a prime found as the race
        // was won is wiped here, never left behind.
        if self.decided() {
            prime.zeroize();
            return None;
        }
        match found.take() {
            None => {
                *found = Some(prime);
                None
            }
            Some(first) => {
                let distance = if first > prime {
                    first.wrapping_sub(&prime)
                } else {
                    prime.wrapping_sub(&first)
                };
                if distance.bit_width() <= primes::PRIME_BITS - 100 {
                    *found = Some(first);
                    prime.zeroize();
                    return None;
                }
                Some((first, prime))
            }
        }
    }

    /// Ends the race: racers stop at their next candidate, and a prime found but not paired is
    /// wiped (after the flag is set, so that `pair` wipes any prime that comes later).
    fn decide(&self) {
        self.decided.store(true, Ordering::Release);
        if let Some(mut unpaired) = self.found.lock().unwrap_or_else(PoisonError::into_inner).take() {
            unpaired.zeroize();
        }
    }

    /// Hands a key to the caller if the race is still open; a late key is dropped.
    fn offer(&self, outcome: Result<ClientKey, Error>) {
        let mut deliver = self.deliver.lock().unwrap_or_else(PoisonError::into_inner);
        match outcome {
            Ok(key) => {
                if let Some(deliver) = deliver.take() {
                    self.decide();
                    let elapsed_ms = self.started.elapsed().as_secs_f64() * 1000.0;
                    debug!(racers = self.width, elapsed_ms, "RSA key generated");
                    deliver(Ok(key));
                }
            }
            // Another racer may still succeed: fail only when none is left.
            Err(error) => {
                if self.failed.fetch_add(1, Ordering::AcqRel) + 1 == self.width
                    && let Some(deliver) = deliver.take()
                {
                    self.decide();
                    deliver(Err(error));
                }
            }
        }
    }
}

/// Starts `width` racers on threads of their own and returns at once; `deliver` gets the key.
/// Needs no async runtime.
pub(super) fn start(width: usize, deliver: impl FnOnce(Result<ClientKey, Error>) + Send + 'static) {
    let width = width.max(1);
    let race = Arc::new(Race {
        deliver: Mutex::new(Some(Box::new(deliver))),
        decided: AtomicBool::new(false),
        found: Mutex::new(None),
        failed: AtomicUsize::new(0),
        width,
        started: Instant::now(),
    });
    debug!(racers = width, "generating the RSA key");
    // With a race, one racer first seeds aws-lc's random generator (which every TLS handshake
    // needs, and which costs tens of milliseconds of CPU in a default build) and then joins:
    // never more busy threads than racers.
    let seeds_first = width >= 2 && random::claim_seed();
    for racer_index in 0..width {
        let racer = race.clone();
        let seeds = seeds_first && racer_index == width - 1;
        let spawned = std::thread::Builder::new()
            .name("cloudsql-keygen".to_owned())
            .spawn(move || {
                if seeds {
                    random::seed();
                }
                racer.run();
            });
        if let Err(e) = spawned {
            if seeds {
                // The first handshake will seed it instead.
                debug!("the seeding racer did not start");
            }
            race.offer(Err(Error::config(format!(
                "could not start a thread to generate the connector's RSA key: {e}"
            ))));
        }
    }
}

/// Races `width` generations and waits for the first key, blocking the calling thread.
pub(super) fn generate_blocking(width: usize) -> Result<ClientKey, Error> {
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    start(width, move |outcome| {
        let _ = tx.send(outcome);
    });
    rx.recv()
        .map_err(|_| Error::config("RSA key generation stopped without a result"))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn width_leaves_a_core_free_beyond_two_unless_told_and_never_exceeds_cores_or_the_cap() {
        let table = [
            (1, None, 1),
            (2, None, 2),
            (3, None, 2),
            (4, None, 3),
            (64, None, MAX_RACERS),
            (2, Some("2"), 2),
            (8, Some("1"), 1),
            (8, Some(" 3 "), 3),
            (2, Some("3"), 2),
            (64, Some("16"), MAX_RACERS),
            (8, Some("0"), 1),
            (8, Some("many"), 7.min(MAX_RACERS)),
            (0, None, 1),
        ];
        for (cores, wanted, expected) in table {
            assert_eq!(width_for(cores, wanted), expected, "{cores} cores, {wanted:?}");
        }
        assert!((1..=MAX_RACERS).contains(&width()));
    }

    #[test]
    fn a_race_yields_one_full_strength_key() {
        for racers in [1, 3] {
            let key = generate_blocking(racers).unwrap();
            let spki = pem::parse(key.public_key_pem()).unwrap();
            // An RSA-2048 SubjectPublicKeyInfo is 294 bytes.
            assert_eq!(spki.contents().len(), 294, "{racers} racers");
        }
    }

    fn open_race(width: usize, deliver: Deliver) -> Race {
        Race {
            deliver: Mutex::new(Some(deliver)),
            decided: AtomicBool::new(false),
            found: Mutex::new(None),
            failed: AtomicUsize::new(0),
            width,
            started: Instant::now(),
        }
    }

    #[test]
    fn the_first_key_is_delivered_once_and_errors_wait_for_every_racer() {
        let delivered = Arc::new(AtomicUsize::new(0));
        let counter = delivered.clone();
        let race = open_race(
            2,
            Box::new(move |outcome: Result<ClientKey, Error>| {
                assert!(outcome.is_err());
                counter.fetch_add(1, Ordering::SeqCst);
            }),
        );
        race.offer(Err(Error::config("first racer failed")));
        assert_eq!(delivered.load(Ordering::SeqCst), 0, "one racer is still running");
        assert!(!race.decided());
        race.offer(Err(Error::config("second racer failed")));
        assert_eq!(delivered.load(Ordering::SeqCst), 1);
        assert!(race.decided());
        // A late key after the race is decided is dropped, not delivered.
        race.offer(generate_blocking(1));
        assert_eq!(delivered.load(Ordering::SeqCst), 1);
        // And a racer that starts now stops at once.
        race.run();
    }

    #[test]
    fn primes_unusable_with_e_or_too_close_are_never_paired() {
        let race = open_race(1, Box::new(|_| {}));
        let prime = |bits| primes::random_prime(bits, &|| false).unwrap_or_else(|e| panic!("{e:?}"));
        let p = prime(primes::PRIME_BITS);
        // p - 1 divisible by 65537: 65537 · 2^1006 + 1 is not prime, but the pairing looks
        // only at the residue, which is what matters for e.
        let mut useless = BoxedUint::from(PUBLIC_EXPONENT).resize(p.bits_precision());
        useless = useless.shl_vartime(1006).unwrap().wrapping_add(BoxedUint::one());
        assert!(race.pair(useless).is_none());
        assert!(
            race.found.lock().unwrap().is_none(),
            "a prime unusable with e is not kept"
        );

        assert!(
            race.pair(p.clone()).is_none(),
            "the first prime waits for a second"
        );
        let close = p.wrapping_add(BoxedUint::from(2u32).resize(p.bits_precision()));
        assert!(
            race.pair(close).is_none(),
            "a second prime within 2^924 is dropped"
        );
        let q = prime(primes::PRIME_BITS);
        let (first, second) = race.pair(q.clone()).expect("two distant primes pair");
        assert_eq!((first, second), (p, q));
        assert!(race.found.lock().unwrap().is_none());
    }

    #[test]
    fn every_racer_ends_once_the_key_is_made_and_no_prime_is_left_behind() {
        // Several races: a racer that finds a prime just as the race is won is the case to catch.
        for _ in 0..8 {
            one_race_of_three();
        }
    }

    fn one_race_of_three() {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let race = Arc::new(open_race(
            3,
            Box::new(move |outcome| {
                let _ = tx.send(outcome);
            }),
        ));
        let racers: Vec<_> = (0..3)
            .map(|_| {
                let racer = race.clone();
                std::thread::spawn(move || racer.run())
            })
            .collect();
        let key = rx.recv().unwrap().unwrap();
        assert!(key.public_key_pem().starts_with("-----BEGIN PUBLIC KEY-----"));
        for racer in racers {
            racer.join().unwrap();
        }
        assert!(race.found.lock().unwrap().is_none(), "no prime is left behind");
    }
}
