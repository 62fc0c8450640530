//! The process's one HTTP client for Google's APIs (the Admin API and the token endpoints).
//!
//! Building a `reqwest::Client` loads and parses every root certificate of the system, which
//! takes several milliseconds, and a connector used to build three (two token sources and the
//! Admin API client), one after another, before its first token request could start: on a cold
//! start that was as long as the key generation. One client per process loads the roots once.
//! It keeps no idle connections (see [`client`]); timeouts are set per request by each caller.

use std::sync::OnceLock;

use crate::Error;

static CLIENT: OnceLock<Result<reqwest::Client, String>> = OnceLock::new();

/// The shared client, built on first use.
pub(crate) fn client() -> Result<reqwest::Client, Error> {
    CLIENT
        .get_or_init(|| {
            reqwest::Client::builder()
                // No idle connections: a pooled connection is a task on the runtime that opened
                // it, which would outlive a closed connector (and that runtime), and the calls
                // come minutes apart anyway; concurrent calls never shared one over HTTP/1.1.
                .pool_max_idle_per_host(0)
                .build()
                .map_err(|e| e.to_string())
        })
        .clone()
        .map_err(|e| Error::config(format!("cannot build the HTTP client for Google's APIs: {e}")))
}
