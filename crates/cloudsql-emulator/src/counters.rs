//! Counts of Admin API calls per instance and method.

use std::collections::BTreeMap;
use std::sync::Mutex;

use crate::oauth::lock;

/// Admin API call counts, keyed by method name (`connectSettings`, `generateEphemeralCert`).
#[derive(Debug, Default)]
pub struct Counters {
    calls: Mutex<BTreeMap<String, u64>>,
}

impl Counters {
    pub(crate) fn record(&self, method: &str) {
        *lock(&self.calls).entry(method.to_owned()).or_default() += 1;
    }

    /// Calls of one method so far.
    pub fn calls(&self, method: &str) -> u64 {
        lock(&self.calls).get(method).copied().unwrap_or(0)
    }

    /// Calls of every method so far.
    pub fn total(&self) -> u64 {
        lock(&self.calls).values().sum()
    }

    /// All counts.
    pub fn snapshot(&self) -> BTreeMap<String, u64> {
        lock(&self.calls).clone()
    }
}
