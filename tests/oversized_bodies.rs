//! A 512 MiB Admin API answer and an 8 MiB HTML error page cost the connector almost no memory:
//! bodies are read chunk by chunk up to a cap. Alone in its test binary so that no other test
//! disturbs the process's peak RSS.
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

mod support;

use cloudsql::core::Error;
use support::*;

const MIB: u64 = 1 << 20;

/// A `/proc/self/status` field in bytes (`VmHWM`: peak resident set; `VmRSS`: current).
fn proc_status_bytes(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status
        .lines()
        .find(|l| l.starts_with(&format!("{field}:")))
        .unwrap_or_else(|| panic!("no {field} in /proc/self/status"));
    let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib * 1024
}

#[tokio::test]
async fn oversized_bodies_do_not_grow_memory() {
    let env = Env::new().await;
    // Warm up every lazily built piece (TLS, HTTP clients, key, token) with a normal connect.
    let warm = env.add(env.pg_config()).await;
    let connector = env.connector();
    assert_eq!(
        select_one(&connector, warm.connection_name(), &trust_login())
            .await
            .unwrap(),
        1
    );

    let huge = env.add(env.pg_config()).await;
    huge.faults().success_body_bytes(Some(512 * MIB));
    let html = env.add(env.pg_config()).await;
    html.faults().admin_status(500, None);
    html.faults().error_body_bytes(Some(8 * MIB));

    let peak_before = proc_status_bytes("VmHWM");
    let rss_before = proc_status_bytes("VmRSS");

    let err = connector.connect(huge.connection_name()).await.unwrap_err();
    assert!(matches!(err, Error::AdminApiResponseTooLarge { .. }), "{err:?}");
    assert!(
        err.to_string().contains("too") || err.to_string().contains("over"),
        "{err}"
    );

    let err = connector.connect(html.connection_name()).await.unwrap_err();
    assert!(matches!(err, Error::AdminApi { status: 500, .. }), "{err:?}");
    assert!(err.to_string().len() < 1024, "{err}");

    let peak_growth = proc_status_bytes("VmHWM").saturating_sub(peak_before);
    let rss_growth = proc_status_bytes("VmRSS").saturating_sub(rss_before);
    eprintln!(
        "peak RSS growth {:.1} MiB, RSS growth {:.1} MiB",
        peak_growth as f64 / MIB as f64,
        rss_growth as f64 / MIB as f64
    );
    assert!(
        peak_growth < 16 * MIB,
        "peak RSS grew by {peak_growth} bytes reading oversized bodies"
    );
}
