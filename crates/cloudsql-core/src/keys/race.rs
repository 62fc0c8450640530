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
//! race's cost: until the losers finish they hold their cores, and at a cold start the runtime,
//! the credentials, the HTTP client and the first TLS handshakes want a core too. So the race
//! comes in two waves ([`Plan`]):
//! - **at once**, one racer per core but one ([`std::thread::available_parallelism`], at most
//!   [`MAX_RACERS`]), at least one;
//! - **hedged**: if no key has come [`HEDGE_AFTER`] after the random generator was seeded, one
//!   more racer starts on the core left free, which by then the rest of a cold start (waiting
//!   for the Admin API and the key) has given back. An unlucky first draw is what makes the slow
//!   cold starts, and that is exactly when the hedge runs; a lucky one never pays for it.
//!
//! [`THREADS_ENV`] sets the number of racers instead (all at once, no hedge), never above the
//! cores.

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
/// most [`MAX_RACERS`]), all started at once.
pub(super) const THREADS_ENV: &str = "CLOUDSQL_RSA_KEYGEN_THREADS";

/// How long after the random generator is seeded the hedged racer waits for a key before it
/// starts. Below the median of one generation on the machines measured (55–80 ms on a 2-core
/// Xeon VM), past the start-up work that a racer would slow down (about 20–30 ms).
pub(super) const HEDGE_AFTER: Duration = Duration::from_millis(40);

/// Who races, and when.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Plan {
    /// Racers started at once (at least one).
    pub(super) at_once: usize,
    /// Racers started [`HEDGE_AFTER`] after seeding if no key has come by then.
    pub(super) hedged: usize,
}

impl Plan {
    fn racers(self) -> usize {
        self.at_once + self.hedged
    }
}

/// The plan for this process: [`THREADS_ENV`] when set, otherwise by its cores.
pub(super) fn plan() -> Plan {
    let cores = std::thread::available_parallelism().map_or(1, NonZeroUsize::get);
    plan_for(cores, std::env::var(THREADS_ENV).ok().as_deref())
}

fn plan_for(cores: usize, wanted: Option<&str>) -> Plan {
    let cap = cores.clamp(1, MAX_RACERS);
    match wanted.and_then(|v| v.trim().parse::<usize>().ok()) {
        Some(n) => Plan {
            at_once: n.clamp(1, cap),
            hedged: 0,
        },
        None => {
            let at_once = cores.saturating_sub(1).clamp(1, MAX_RACERS);
            Plan {
                at_once,
                hedged: cap.saturating_sub(at_once),
            }
        }
    }
}

/// A plan of `n` racers at once and no hedge (tests, and callers that chose a number).
#[cfg(test)]
pub(super) fn at_once(n: usize) -> Plan {
    Plan {
        at_once: n.max(1),
        hedged: 0,
    }
}

/// Who gets the outcome: called exactly once, with the first key or, when every racer failed,
/// the last error.
type Deliver = Box<dyn FnOnce(Result<ClientKey, Error>) + Send>;

/// What each racer runs: [`ClientKey::generate`], or a stand-in in tests.
type Generate = Arc<dyn Fn() -> Result<ClientKey, Error> + Send + Sync>;

struct Race {
    deliver: Mutex<Option<Deliver>>,
    failed: AtomicUsize,
    /// Every racer of the plan, hedged ones included: the race fails when all of them did.
    width: usize,
    started: Instant,
    generate: Generate,
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

/// Starts the generations of `plan` on threads of their own and returns at once; `deliver`
/// gets the first key. Needs no async runtime.
pub(super) fn start(plan: Plan, deliver: impl FnOnce(Result<ClientKey, Error>) + Send + 'static) {
    start_with(
        plan,
        HEDGE_AFTER,
        Arc::new(ClientKey::generate),
        Box::new(deliver),
    );
}

fn start_with(plan: Plan, hedge_after: Duration, generate: Generate, deliver: Deliver) {
    let plan = Plan {
        at_once: plan.at_once.max(1),
        hedged: plan.hedged,
    };
    let race = Arc::new(Race {
        deliver: Mutex::new(Some(deliver)),
        failed: AtomicUsize::new(0),
        width: plan.racers(),
        started: Instant::now(),
        generate,
    });
    debug!(
        racers = plan.at_once,
        hedged = plan.hedged,
        "generating the RSA key"
    );
    for i in 0..plan.at_once {
        // The first racer starts the hedge once the generator is seeded: seeding happens once
        // per process and may take tens of milliseconds, which no racer can shorten.
        let hedge = (i == 0 && plan.hedged > 0).then_some((plan.hedged, hedge_after));
        spawn_racer(&race, move |race| {
            if race.decided() {
                return;
            }
            let seeded = seed();
            if let Some((hedged, after)) = hedge {
                for _ in 0..hedged {
                    spawn_racer(race, move |race| {
                        std::thread::sleep(after);
                        if race.decided() {
                            return;
                        }
                        debug!(
                            after_ms = after.as_millis() as u64,
                            "no RSA key yet: a hedged racer starts"
                        );
                        race.offer((race.generate)(), seed());
                    });
                }
            }
            race.offer((race.generate)(), seeded);
        });
    }
}

/// Runs `racer` on a thread of its own; a thread that cannot start counts as a failed racer.
fn spawn_racer(race: &Arc<Race>, racer: impl FnOnce(&Arc<Race>) + Send + 'static) {
    let own = race.clone();
    let spawned = std::thread::Builder::new()
        .name("cloudsql-keygen".to_owned())
        .spawn(move || racer(&own));
    if let Err(e) = spawned {
        race.offer(
            Err(Error::config(format!(
                "could not start a thread to generate the connector's RSA key: {e}"
            ))),
            Duration::ZERO,
        );
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

/// Races the generations of `plan` and waits for the first key, blocking the calling thread.
pub(super) fn generate_blocking(plan: Plan) -> Result<ClientKey, Error> {
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    start(plan, move |outcome| {
        let _ = tx.send(outcome);
    });
    rx.recv()
        .map_err(|_| Error::config("RSA key generation stopped without a result"))?
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;

    use super::*;

    #[test]
    fn the_plan_leaves_a_core_to_the_hedge_unless_told_and_never_exceeds_cores_or_the_cap() {
        // (cores, THREADS_ENV, at once, hedged)
        let table = [
            (1, None, 1, 0),
            (2, None, 1, 1),
            (3, None, 2, 1),
            (4, None, 3, 1),
            (5, None, 4, 0),
            (64, None, MAX_RACERS, 0),
            (2, Some("2"), 2, 0),
            (8, Some("1"), 1, 0),
            (8, Some(" 3 "), 3, 0),
            (2, Some("3"), 2, 0),
            (64, Some("16"), MAX_RACERS, 0),
            (8, Some("0"), 1, 0),
            (8, Some("many"), MAX_RACERS, 0),
            (0, None, 1, 0),
        ];
        for (cores, wanted, at_once, hedged) in table {
            assert_eq!(
                plan_for(cores, wanted),
                Plan { at_once, hedged },
                "{cores} cores, {wanted:?}"
            );
        }
        let plan = plan();
        assert!((1..=MAX_RACERS).contains(&plan.racers()), "{plan:?}");
    }

    #[test]
    fn a_race_yields_one_full_strength_key() {
        let hedged = Plan {
            at_once: 1,
            hedged: 1,
        };
        for plan in [at_once(1), at_once(3), hedged] {
            let key = generate_blocking(plan).unwrap();
            let spki = pem::parse(key.public_key_pem()).unwrap();
            // An RSA-2048 SubjectPublicKeyInfo is 294 bytes.
            assert_eq!(spki.contents().len(), 294, "{plan:?}");
        }
    }

    fn copy(key: &ClientKey) -> ClientKey {
        ClientKey {
            pkcs8: key.pkcs8.clone(),
            public_key_pem: key.public_key_pem.clone(),
        }
    }

    fn delivered_to(tx: mpsc::Sender<Result<ClientKey, Error>>) -> Deliver {
        Box::new(move |outcome| {
            let _ = tx.send(outcome);
        })
    }

    /// Long enough that a hedge set for 10 ms has surely run, on any machine.
    const NO_HEDGE: Duration = Duration::from_secs(30);

    const ONE_PLUS_HEDGE: Plan = Plan {
        at_once: 1,
        hedged: 1,
    };

    #[test]
    fn a_slow_first_draw_is_hedged_and_its_late_key_dropped() {
        let (first, hedge) = (ClientKey::generate().unwrap(), ClientKey::generate().unwrap());
        let hedge_pem = hedge.public_key_pem().to_owned();
        let calls = Arc::new(AtomicUsize::new(0));
        // The first racer's generation does not end until the test says so.
        let (release, released) = mpsc::channel::<()>();
        let released = Mutex::new(released);
        let counted = calls.clone();
        let generate: Generate = Arc::new(move || {
            if counted.fetch_add(1, Ordering::SeqCst) == 0 {
                let _ = released.lock().unwrap().recv();
                return Ok(copy(&first));
            }
            Ok(copy(&hedge))
        });
        let (tx, rx) = mpsc::channel();
        start_with(
            ONE_PLUS_HEDGE,
            Duration::from_millis(10),
            generate,
            delivered_to(tx),
        );

        let key = rx
            .recv_timeout(NO_HEDGE)
            .expect("no key: the hedged racer did not start")
            .unwrap();
        assert_eq!(key.public_key_pem(), hedge_pem, "the hedged racer's key wins");
        release.send(()).unwrap();
        // Delivered once: the sender went with the delivery, the late key goes nowhere.
        assert!(rx.recv().is_err());
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn a_quick_first_draw_starts_no_hedge() {
        let key = ClientKey::generate().unwrap();
        let calls = Arc::new(AtomicUsize::new(0));
        let counted = calls.clone();
        let generate: Generate = Arc::new(move || {
            counted.fetch_add(1, Ordering::SeqCst);
            Ok(copy(&key))
        });
        let (tx, rx) = mpsc::channel();
        let hedge_after = Duration::from_millis(200);
        start_with(ONE_PLUS_HEDGE, hedge_after, generate, delivered_to(tx));
        rx.recv().unwrap().unwrap();
        // Past the hedge's wake-up: it found the race decided and did not generate.
        std::thread::sleep(hedge_after * 3);
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn a_race_fails_only_when_the_hedged_racer_failed_too() {
        let calls = Arc::new(AtomicUsize::new(0));
        let counted = calls.clone();
        let generate: Generate = Arc::new(move || {
            let n = counted.fetch_add(1, Ordering::SeqCst) + 1;
            Err(Error::config(format!("racer {n} failed")))
        });
        let (tx, rx) = mpsc::channel();
        start_with(
            ONE_PLUS_HEDGE,
            Duration::from_millis(10),
            generate,
            delivered_to(tx),
        );
        let err = rx
            .recv_timeout(NO_HEDGE)
            .expect("no outcome: the hedged racer did not run")
            .unwrap_err();
        assert_eq!(
            calls.load(Ordering::SeqCst),
            2,
            "both racers ran before the race failed"
        );
        assert!(err.to_string().contains("racer 2 failed"), "{err}");
        assert!(rx.recv().is_err(), "delivered once");
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
            generate: Arc::new(ClientKey::generate),
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
