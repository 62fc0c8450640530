//! RSA-2048 key generation: one aws-lc generation on the calling thread (what the connector used
//! until its primes came from `crypto-primes`) against `RsaKey::generate` (the connector's own:
//! `CLOUDSQL_RSA_KEYGEN_THREADS` racers, by default 2 on 2 cores and one per core but one with
//! more, the first two primes found make the key), interleaved in random order in one run;
//! prints median, p90, mean and the CPU each key costs, with ratios.
//!
//! ```sh
//! CLOUDSQL_RSA_KEYGEN_THREADS=1 cargo bench --bench keygen    # one generation against one
//! cargo bench --bench keygen                                  # the default race; 80 rounds
//! KEYGEN_ROUNDS=200 cargo bench --bench keygen
//! ```
//!
//! Wall times depend on how busy the machine is (a race only helps with idle cores), so it also
//! prints each single generation's own CPU time and, from those, the bootstrap estimate of
//! racing 2 and 4 generations on idle cores.
//!
//! A race's losers stop at their next candidate once the key is made; each sample is followed by
//! a quiet pause, so that nothing of one sample runs into the next or escapes the CPU count.

use std::hash::{BuildHasher, Hasher};
use std::time::{Duration, Instant};

use aws_lc_rs::rsa::{KeyPair, KeySize};
use cloudsql::core::RsaKey;

/// Long enough for a race's losers to stop before the next sample.
const QUIET: Duration = Duration::from_millis(400);

fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort();
    let idx = ((samples.len() as f64 - 1.0) * p).round() as usize;
    samples[idx]
}

/// User + system CPU time of this process so far (Linux `/proc/self/stat`, in clock ticks of
/// 10 ms: only meaningful summed over many samples).
fn cpu_time() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 10))
}

/// CPU time this thread has run, in nanoseconds (Linux `/proc/thread-self/schedstat`): unlike
/// wall time, it does not grow while other processes hold the cores.
fn thread_cpu() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    Some(Duration::from_nanos(
        stat.split_whitespace().next()?.parse().ok()?,
    ))
}

fn random() -> u64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(0);
    h.finish()
}

/// What racing `racers` generations would take if each had an idle core: the minimum of
/// `racers` single-generation CPU times drawn (with replacement) from those measured.
fn bootstrap_min(cpu: &[Duration], racers: usize, draws: usize) -> Vec<Duration> {
    (0..draws)
        .map(|_| {
            (0..racers)
                .map(|_| cpu[(random() % cpu.len() as u64) as usize])
                .min()
                .unwrap_or_default()
        })
        .collect()
}

fn coin() -> bool {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(Instant::now().elapsed().as_nanos());
    h.finish() & 1 == 0
}

struct Variant {
    label: &'static str,
    samples: Vec<Duration>,
    cpu: Duration,
}

fn main() -> anyhow::Result<()> {
    let rounds: usize = std::env::var("KEYGEN_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(80);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut single = Variant {
        label: "single: aws-lc KeyPair::generate, 1 thread",
        samples: Vec::with_capacity(rounds),
        cpu: Duration::ZERO,
    };
    let mut raced = Variant {
        label: "RsaKey::generate (crypto-primes, N racers)",
        samples: Vec::with_capacity(rounds),
        cpu: Duration::ZERO,
    };
    let mut single_thread_cpu = Vec::with_capacity(rounds);
    // Warm-up: page in aws-lc, start the thread machinery.
    for _ in 0..3 {
        KeyPair::generate(KeySize::Rsa2048).map_err(|_| anyhow::anyhow!("keygen"))?;
        RsaKey::generate()?;
    }
    std::thread::sleep(QUIET);
    for _ in 0..rounds {
        let order = if coin() { [true, false] } else { [false, true] };
        for is_single in order {
            let cpu_before = cpu_time();
            let t = Instant::now();
            let variant = if is_single {
                let cpu = thread_cpu();
                KeyPair::generate(KeySize::Rsa2048).map_err(|_| anyhow::anyhow!("keygen"))?;
                if let (Some(before), Some(after)) = (cpu, thread_cpu()) {
                    single_thread_cpu.push(after.saturating_sub(before));
                }
                &mut single
            } else {
                RsaKey::generate()?;
                &mut raced
            };
            variant.samples.push(t.elapsed());
            std::thread::sleep(QUIET);
            if let (Some(before), Some(after)) = (cpu_before, cpu_time()) {
                variant.cpu += after.saturating_sub(before);
            }
        }
    }
    println!(
        "RSA-2048 key generation, {rounds} rounds interleaved in random order, {cores} cores, CLOUDSQL_RSA_KEYGEN_THREADS={}",
        std::env::var("CLOUDSQL_RSA_KEYGEN_THREADS")
            .unwrap_or_else(|_| "unset (2 on 2 cores, cores - 1 beyond)".into())
    );
    let mut medians = Vec::new();
    for v in [&mut single, &mut raced] {
        let n = v.samples.len();
        let mean = v.samples.iter().sum::<Duration>() / n as u32;
        let median = percentile(&mut v.samples, 0.5);
        let p90 = percentile(&mut v.samples, 0.9);
        let max = v.samples[n - 1];
        let cpu = v.cpu / n as u32;
        println!(
            "{:<46} median {median:>9.2?}  p90 {p90:>9.2?}  mean {mean:>9.2?}  max {max:>9.2?}  CPU/key {cpu:>9.2?}  (n={n})",
            v.label
        );
        medians.push((median, p90, mean, cpu));
    }
    let ratio = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64().max(f64::EPSILON);
    if !single_thread_cpu.is_empty() {
        // Independent of how busy the machine is: what one generation computes, and what the
        // first of N would, each on an idle core of its own.
        let mut one = single_thread_cpu.clone();
        let (m1, p1) = (percentile(&mut one, 0.5), percentile(&mut one, 0.9));
        println!(
            "CPU time of one generation (this thread's, load-independent)   median {m1:>9.2?}  p90 {p1:>9.2?}  (n={})",
            one.len()
        );
        for racers in [2, 4] {
            let mut raced = bootstrap_min(&single_thread_cpu, racers, 10_000);
            let (m, p) = (percentile(&mut raced, 0.5), percentile(&mut raced, 0.9));
            println!(
                "  first of {racers} aws-lc generations, each on an idle core (bootstrap)  median {m:>9.2?}  p90 {p:>9.2?}  vs one: median {:.2}x  p90 {:.2}x",
                ratio(m, m1),
                ratio(p, p1)
            );
        }
    }
    let ((sm, sp, sa, sc), (rm, rp, ra, rc)) = (medians[0], medians[1]);
    println!(
        "ours / aws-lc: median {:.2}x  p90 {:.2}x  mean {:.2}x  CPU {:.2}x",
        ratio(rm, sm),
        ratio(rp, sp),
        ratio(ra, sa),
        ratio(rc, sc)
    );
    Ok(())
}
