//! Faults of the SQL Data Service, switchable at run time; they apply to every instance.

use std::sync::Mutex;

use crate::unpoisoned::lock;

/// What the SQL Data Service does wrong; every field off by default.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SqlDataFaultState {
    /// Refuse sessions with `FAILED_PRECONDITION` (`unsupported instance edition:`), as for an
    /// instance that does not offer the service.
    pub failed_precondition: bool,
    /// Refuse sessions with `FAILED_PRECONDITION` for these instances (connection names) only.
    pub unsupported_instances: Vec<String>,
    /// Refuse sessions with `RESOURCE_EXHAUSTED`.
    pub resource_exhausted: bool,
    /// End the stream with `UNAVAILABLE` once this many database bytes went to the client (a
    /// frontend reset mid-stream); once per session, so a resumed session goes on.
    pub reset_after_bytes: Option<u64>,
    /// Advertise `SQL_DATA_FEATURE_RECONNECT` in new sessions and accept `ContinueSession` for
    /// them (resending what the client has not acknowledged). Off: as Cloud SQL without the
    /// feature, a reset ends the database session.
    pub reconnect: bool,
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
