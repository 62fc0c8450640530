//! Counts of Admin API calls per instance and method, and of the proxy's connections.

use std::collections::BTreeMap;
use std::sync::Mutex;

use crate::unpoisoned::lock;

/// Admin API call counts, keyed by method name (`connectSettings`, `generateEphemeralCert`), and
/// what the last call said about its caller.
#[derive(Debug, Default)]
pub struct Counters {
    calls: Mutex<BTreeMap<String, u64>>,
    last: Mutex<Option<RequestInfo>>,
    mdx: Mutex<Vec<MdxRecord>>,
    connections: std::sync::atomic::AtomicU64,
    attempts: std::sync::atomic::AtomicU64,
}

/// A metadata exchange the proxy received.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct MdxRecord {
    /// The client's user agent.
    pub user_agent: String,
    /// TCP = 1, TLS = 2, UDS = 3.
    pub client_protocol_type: u64,
}

/// What an Admin API call carried besides its body.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RequestInfo {
    /// The method called.
    pub method: String,
    /// The `User-Agent` header.
    pub user_agent: Option<String>,
    /// The `x-goog-api-client` header.
    pub api_client: Option<String>,
    /// The `x-goog-user-project` header (the quota project).
    pub quota_project: Option<String>,
    /// The principal the bearer token belongs to.
    pub principal: String,
}

impl Counters {
    pub(crate) fn record(&self, info: RequestInfo) {
        *lock(&self.calls).entry(info.method.clone()).or_default() += 1;
        *lock(&self.last) = Some(info);
    }

    pub(crate) fn record_connection(&self) {
        self.connections
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    pub(crate) fn record_attempt(&self) {
        self.attempts.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// TCP connections the server-side proxy accepted so far, including those that then failed
    /// the TLS handshake or were dropped by a fault.
    pub fn connection_attempts(&self) -> u64 {
        self.attempts.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Client connections the server-side proxy accepted (TLS handshake completed) so far.
    pub fn connections(&self) -> u64 {
        self.connections.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub(crate) fn record_mdx(&self, record: MdxRecord) {
        lock(&self.mdx).push(record);
    }

    /// Every metadata exchange the proxy received, oldest first.
    pub fn metadata_exchanges(&self) -> Vec<MdxRecord> {
        lock(&self.mdx).clone()
    }

    /// The last call's headers and principal.
    pub fn last_request(&self) -> Option<RequestInfo> {
        lock(&self.last).clone()
    }

    /// Calls of one method so far.
    pub fn calls(&self, method: &str) -> u64 {
        lock(&self.calls).get(method).copied().unwrap_or(0)
    }

    /// Calls of every method so far.
    pub fn total(&self) -> u64 {
        lock(&self.calls).values().sum()
    }

    /// Zeroes every count and forgets the last request and the metadata exchanges.
    pub fn reset(&self) {
        lock(&self.calls).clear();
        *lock(&self.last) = None;
        lock(&self.mdx).clear();
        self.connections.store(0, std::sync::atomic::Ordering::Relaxed);
        self.attempts.store(0, std::sync::atomic::Ordering::Relaxed);
    }

    /// All counts.
    pub fn snapshot(&self) -> BTreeMap<String, u64> {
        lock(&self.calls).clone()
    }
}
