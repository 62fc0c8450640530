//! Faults of the SQL Data Service, switchable at run time; they apply to every instance.

use std::sync::Mutex;

use crate::oauth::lock;

/// What the SQL Data Service does wrong; every field off by default.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SqlDataFaultState {
    /// Refuse sessions with `FAILED_PRECONDITION` (`unsupported instance edition:`), as for an
    /// instance that does not offer the service.
    pub failed_precondition: bool,
    /// Refuse sessions with `RESOURCE_EXHAUSTED`.
    pub resource_exhausted: bool,
    /// End each stream with `UNAVAILABLE` once this many database bytes went to the client (a
    /// frontend reset mid-stream). The emulator never advertises `RECONNECT`.
    pub reset_after_bytes: Option<u64>,
    /// Hold the first database byte to the client back this many milliseconds.
    pub first_byte_delay_ms: u64,
}

/// The faults in force; every change applies to the next session.
#[derive(Debug, Default)]
pub struct SqlDataFaults {
    state: Mutex<SqlDataFaultState>,
}

impl SqlDataFaults {
    /// Replaces every fault.
    pub fn set(&self, state: SqlDataFaultState) {
        *lock(&self.state) = state;
    }

    /// Clears every fault.
    pub fn clear(&self) {
        self.set(SqlDataFaultState::default());
    }

    /// The faults in force.
    pub fn snapshot(&self) -> SqlDataFaultState {
        lock(&self.state).clone()
    }
}
