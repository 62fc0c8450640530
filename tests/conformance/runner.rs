//! Runs one conformance script (Python or Node) in a child process against the emulator: serves
//! its `EMULATOR <action> <instance>` requests on stdin/stdout, and returns the JSON object it
//! prints last (`{case: {"ok": bool, "detail": "..."}}`).
#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use std::time::Duration;

use cloudsql_emulator::Emulator;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::Command;

/// Runs `command`; panics with its output when it fails, hangs or prints no JSON.
pub async fn run(mut command: Command, emulator: &Emulator, what: &str) -> serde_json::Value {
    command
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    let mut child = command
        .spawn()
        .unwrap_or_else(|e| panic!("{what} does not start: {e}"));
    let mut stdin = child.stdin.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let stderr_task = tokio::spawn(async move {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text).await;
        text
    });
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut stdout = String::new();
    let work = async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(request) = line.strip_prefix("EMULATOR ") {
                let (action, name) = request.split_once(' ').unwrap();
                let inst = emulator.instance(name).unwrap();
                match action {
                    "rotate_client_ca" => inst.rotate_client_ca().unwrap(),
                    other => panic!("{what} asked for an unknown action {other}"),
                }
                stdin.write_all(b"done\n").await.unwrap();
                stdin.flush().await.unwrap();
            } else {
                stdout.push_str(&line);
                stdout.push('\n');
            }
        }
        child.wait().await.unwrap()
    };
    let status = tokio::time::timeout(Duration::from_secs(300), work).await;
    let stderr = stderr_task.await.unwrap_or_default();
    let status = status.unwrap_or_else(|_| panic!("{what} hung for 5 minutes:\n{stdout}\n{stderr}"));
    assert!(status.success(), "{what} failed ({status}):\n{stdout}\n{stderr}");
    eprintln!("{what}:\n{stderr}");
    serde_json::from_str(stdout.trim().lines().last().unwrap_or_default())
        .unwrap_or_else(|e| panic!("no JSON from {what} ({e}):\n{stdout}\n{stderr}"))
}

/// Asserts every case in `expected` passed, naming all failures at once.
pub fn assert_cases(results: &serde_json::Value, expected: &[&str], what: &str) {
    let failed: Vec<String> = expected
        .iter()
        .filter(|case| results[**case]["ok"] != serde_json::Value::Bool(true))
        .map(|case| format!("  {case}: {}", results[*case]["detail"]))
        .collect();
    assert!(
        failed.is_empty(),
        "{what}: cases that must pass failed or did not run:\n{}\nall results: {results:#}",
        failed.join("\n")
    );
}
