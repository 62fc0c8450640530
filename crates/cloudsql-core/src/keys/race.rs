//! RSA key generation raced on several threads: the first key found wins.
//!
//! Generating an RSA-2048 key means searching for two random 1024-bit primes. How many
//! candidates that takes is a matter of luck, so one generation's time is heavy-tailed: most
//! take a few tens of milliseconds, some several times that. Racing `n` independent generations
//! and keeping the first key turns the time into the minimum of `n` draws, which cuts both the
//! median and, above all, the tail (see `docs/performance.md` for the numbers). Every racer runs
//! the same full aws-lc key generation, so the winner is exactly as strong as a single one.
//!
//! aws-lc cannot stop a generation half-way, so the losers are cancelled as far as that allows:
//! a racer that has not started when the race is won does not start, and a racer that finishes
//! after the winner drops its key at once (aws-lc clears a freed key's memory). That is also the
//! race's cost: until the losers finish they hold their cores. So the width is one per core but
//! one ([`std::thread::available_parallelism`], at most [`MAX_RACERS`]), and two on 2 cores: on
//! a quiet 2-core machine (what a new serverless instance is) racing both cores cut the cold
//! start's median and, most, its tail, while on a machine busy with other work it cost about as
//! much; 1 core never races. [`THREADS_ENV`] sets the width, never above the cores. A hedged
//! second racer on 2 cores (started only when no key had come 40 ms after seeding) was measured
//! too and lost: it started just when the TLS handshake and the first query needed the core
//! (`docs/performance.md`).

use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tracing::debug;

use super::ClientKey;
use crate::Error;

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

/// Who gets the outcome: called exactly once, with the first key or, when every racer failed,
/// the last error.
type Deliver = Box<dyn FnOnce(Result<ClientKey, Error>) + Send>;

struct Race {
    deliver: Mutex<Option<Deliver>>,
    failed: AtomicUsize,
    width: usize,
    started: Instant,
}

impl Race {
    fn decided(&self) -> bool {
        self.deliver
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_none()
    }

    /// Hands a key to the caller if the race is still open; a late key is dropped. `seeded` is
    /// how long the winner waited for aws-lc's random generator (see [`seed`]).
    fn offer(&self, outcome: Result<ClientKey, Error>, seeded: Duration) {
        let mut deliver = self.deliver.lock().unwrap_or_else(PoisonError::into_inner);
        match outcome {
            Ok(key) => {
                if let Some(deliver) = deliver.take() {
                    let elapsed_ms = self.started.elapsed().as_secs_f64() * 1000.0;
                    let seed_ms = seeded.as_secs_f64() * 1000.0;
                    debug!(racers = self.width, seed_ms, elapsed_ms, "RSA key generated");
                    deliver(Ok(key));
                }
            }
            // Another racer may still succeed: fail only when none is left.
            Err(error) => {
                if self.failed.fetch_add(1, Ordering::AcqRel) + 1 == self.width
                    && let Some(deliver) = deliver.take()
                {
                    deliver(Err(error));
                }
            }
        }
    }
}

/// Starts `width` generations on threads of their own and returns at once; `deliver` gets the
/// first key. Needs no async runtime.
pub(super) fn start(width: usize, deliver: impl FnOnce(Result<ClientKey, Error>) + Send + 'static) {
    let width = width.max(1);
    let race = Arc::new(Race {
        deliver: Mutex::new(Some(Box::new(deliver))),
        failed: AtomicUsize::new(0),
        width,
        started: Instant::now(),
    });
    debug!(racers = width, "generating the RSA key");
    for _ in 0..width {
        let racer = race.clone();
        let spawned = std::thread::Builder::new()
            .name("cloudsql-keygen".to_owned())
            .spawn(move || {
                if racer.decided() {
                    return;
                }
                let seeded = seed();
                racer.offer(ClientKey::generate(), seeded);
            });
        if let Err(e) = spawned {
            race.offer(
                Err(Error::config(format!(
                    "could not start a thread to generate the connector's RSA key: {e}"
                ))),
                Duration::ZERO,
            );
        }
    }
}

/// Waits until aws-lc's random generator is seeded and says how long that took: the first use
/// in a process seeds it, once for every thread. A default aws-lc build seeds from CPU jitter
/// (FIPS-style health tests included), which costs tens of milliseconds of CPU on the cold path,
/// before the key and the first TLS handshake can start; built with
/// `AWS_LC_SYS_NO_JITTER_ENTROPY=1` it seeds from the operating system (`getrandom`), as OpenSSL
/// and BoringSSL do, in microseconds. Timed apart so that the key's debug event tells the two
/// costs apart (`docs/performance.md`).
fn seed() -> Duration {
    let started = Instant::now();
    // A failure here would fail the generation that follows too, which reports it.
    let _ = aws_lc_rs::rand::fill(&mut [0u8; 1]);
    started.elapsed()
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

    #[test]
    fn the_first_key_is_delivered_once_and_errors_wait_for_every_racer() {
        let delivered = Arc::new(AtomicUsize::new(0));
        let counter = delivered.clone();
        let race = Race {
            deliver: Mutex::new(Some(Box::new(move |outcome: Result<ClientKey, Error>| {
                assert!(outcome.is_err());
                counter.fetch_add(1, Ordering::SeqCst);
            }))),
            failed: AtomicUsize::new(0),
            width: 2,
            started: Instant::now(),
        };
        race.offer(Err(Error::config("first racer failed")), Duration::ZERO);
        assert_eq!(delivered.load(Ordering::SeqCst), 0, "one racer is still running");
        assert!(!race.decided());
        race.offer(Err(Error::config("second racer failed")), Duration::ZERO);
        assert_eq!(delivered.load(Ordering::SeqCst), 1);
        assert!(race.decided());
        // A late key after the race is decided is dropped, not delivered.
        race.offer(ClientKey::generate(), Duration::ZERO);
        assert_eq!(delivered.load(Ordering::SeqCst), 1);
    }
}
