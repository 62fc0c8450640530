//! The virtualenv with Google's Python connector that the Python conformance suites share, kept
//! outside the clone so reruns do not reinstall. Suites run in parallel processes, so the first to
//! find it missing installs it under a lock file while the others wait; a venv is used only once
//! its install finished (a marker file written last).
#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime};

/// Where the virtualenv lives.
pub const VENV: &str = "/var/tmp/cloudsql-conformance-venv";
/// What is installed in it.
pub const PACKAGE: &str = "cloud-sql-python-connector[pg8000,asyncpg,pymysql]";
/// An install older than this holding the lock is taken to have died.
const STALE_LOCK: Duration = Duration::from_secs(15 * 60);

/// The venv's interpreter.
pub fn python() -> PathBuf {
    Path::new(VENV).join("bin/python")
}

fn marker() -> PathBuf {
    Path::new(VENV).join(".cloudsql-conformance-ready")
}

fn ready() -> bool {
    marker().exists()
        && Command::new(python())
            .args([
                "-c",
                "import google.cloud.sql.connector, google.cloud.sqladmin_v1beta4, pg8000, asyncpg, pymysql",
            ])
            .status()
            .is_ok_and(|s| s.success())
}

/// Makes sure the venv is installed; blocks while another process installs it.
pub fn ensure() {
    let lock = PathBuf::from(format!("{VENV}.lock"));
    loop {
        if ready() {
            return;
        }
        match OpenOptions::new().write(true).create_new(true).open(&lock) {
            Ok(_) => break,
            Err(_) => {
                let stale = std::fs::metadata(&lock)
                    .and_then(|m| m.modified())
                    .is_ok_and(|at| SystemTime::now().duration_since(at).unwrap_or_default() > STALE_LOCK);
                if stale {
                    let _ = std::fs::remove_file(&lock);
                }
                std::thread::sleep(Duration::from_secs(1));
            }
        }
    }
    let installed = install();
    let _ = std::fs::remove_file(&lock);
    installed.unwrap_or_else(|e| panic!("{e}"));
}

fn install() -> Result<(), String> {
    if ready() {
        return Ok(());
    }
    let _ = std::fs::remove_dir_all(VENV);
    let status = Command::new("python3")
        .args(["-m", "venv", VENV])
        .status()
        .map_err(|e| format!("python3 does not run: {e}"))?;
    if !status.success() {
        return Err(format!("python3 -m venv {VENV} failed; install python3-venv"));
    }
    let status = Command::new(python())
        .args(["-m", "pip", "install", "--quiet", PACKAGE])
        .status()
        .map_err(|e| format!("pip does not run: {e}"))?;
    if !status.success() {
        return Err(format!(
            "pip install {PACKAGE} failed; PyPI must be reachable (the conformance suite needs Google's connector)"
        ));
    }
    std::fs::write(marker(), b"").map_err(|e| format!("cannot mark {VENV} ready: {e}"))
}
