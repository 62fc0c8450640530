//! What operators see in the logs when refreshes fail: one `warn!` per failing streak with the
//! error chain and stable fields, an `info!` when it recovers. Its own test binary, because it
//! installs the process-wide tracing subscriber.
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

mod support;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::*;
use tracing_subscriber::fmt::MakeWriter;

/// Collects everything the subscriber writes.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Captured {
    fn lines(&self) -> Vec<String> {
        String::from_utf8_lossy(&self.0.lock().unwrap())
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Captured {
    type Writer = Captured;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

async fn wait_for_line(captured: &Captured, needle: &str, within: Duration) -> Option<String> {
    let deadline = Instant::now() + within;
    loop {
        if let Some(line) = captured.lines().into_iter().find(|l| l.contains(needle)) {
            return Some(line);
        }
        if Instant::now() > deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_failing_streak_warns_once_with_the_error_chain_and_recovery_is_logged() {
    let captured = Captured::default();
    tracing_subscriber::fmt()
        .with_writer(captured.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::INFO)
        .init();

    let env = Env::new().await;
    let inst = env.add(env.pg_config()).await;
    let connector = env.connector();
    let name = inst.connection_name().to_owned();
    assert_eq!(select_one(&connector, &name, &trust_login()).await.unwrap(), 1);

    inst.faults().admin_status(503, None);
    // A failed dial forces a refresh; with the certificate valid it makes one try and fails.
    connector.force_refresh(&name).await.unwrap();
    let warn = wait_for_line(&captured, "refresh failed", Duration::from_secs(10))
        .await
        .expect("a warning for the failing refresh");
    assert!(warn.contains("WARN"), "{warn}");
    assert!(warn.contains(&format!("instance={name}")), "{warn}");
    assert!(warn.contains("strategy=Background"), "{warn}");
    assert!(warn.contains("503"), "the error is in the line: {warn}");
    // Still served meanwhile.
    assert_eq!(select_one(&connector, &name, &trust_login()).await.unwrap(), 1);

    // The paced retry 30 s later fails too: still one warning for the streak.
    let before = inst.counters().calls("connectSettings");
    assert!(wait_for_calls_within(&inst, "connectSettings", before + 1, Duration::from_secs(40)).await);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let warnings = captured
        .lines()
        .iter()
        .filter(|l| l.contains("refresh failed"))
        .count();
    assert_eq!(
        warnings,
        1,
        "one warning per failing streak: {:#?}",
        captured.lines()
    );

    inst.faults().clear();
    let recovered = wait_for_line(&captured, "refresh recovered", Duration::from_secs(40))
        .await
        .expect("recovery is logged");
    assert!(
        recovered.contains("INFO") && recovered.contains(&format!("instance={name}")),
        "{recovered}"
    );
    for line in captured.lines() {
        assert!(
            !line.contains("ya29") && !line.contains("Bearer"),
            "no token in logs: {line}"
        );
    }
}

async fn wait_for_calls_within(
    inst: &cloudsql_emulator::Instance,
    method: &str,
    n: u64,
    within: Duration,
) -> bool {
    let deadline = Instant::now() + within;
    while inst.counters().calls(method) < n {
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    true
}
