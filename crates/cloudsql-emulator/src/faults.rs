//! Fault injection, switchable at run time: Admin API errors, delays and malformed bodies;
//! proxy resets; a wrong server identity or CA.

use std::sync::Mutex;
use std::time::Duration;

use serde::Deserialize;

use crate::oauth::lock;

/// The faults in force for one instance. Every setter takes effect on the next request.
#[derive(Debug, Default)]
pub struct Faults {
    state: Mutex<FaultState>,
}

/// A snapshot of what is switched on; also the JSON body of the faults HTTP endpoint.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct FaultState {
    /// Answer Admin API calls with this HTTP status (and a Google-shaped error body).
    pub admin_status: Option<u16>,
    /// How many calls get `admin_status`; `None` means all of them until cleared.
    pub admin_status_times: Option<u32>,
    /// Delay every Admin API answer by this many milliseconds.
    pub admin_delay_ms: u64,
    /// Answer with a body that is not JSON.
    pub malformed_json: bool,
    /// Report this region in connectSettings instead of the instance's own.
    pub reported_region: Option<String>,
    /// Drop proxy connections right after accepting them.
    pub proxy_reset: bool,
    /// Present a server certificate, signed by the right CA, that names another instance.
    pub wrong_identity: bool,
    /// Present a server certificate signed by an unrelated CA.
    pub wrong_ca: bool,
}

impl Faults {
    /// Replaces every fault at once.
    pub fn set(&self, state: FaultState) {
        *lock(&self.state) = state;
    }

    /// Clears every fault.
    pub fn clear(&self) {
        self.set(FaultState::default());
    }

    /// A copy of the faults in force.
    pub fn snapshot(&self) -> FaultState {
        lock(&self.state).clone()
    }

    /// Answer the next `times` Admin API calls (all, if `None`) with `status`.
    pub fn admin_status(&self, status: u16, times: Option<u32>) {
        let mut s = lock(&self.state);
        s.admin_status = Some(status);
        s.admin_status_times = times;
    }

    /// Delay every Admin API answer.
    pub fn admin_delay(&self, delay: Duration) {
        lock(&self.state).admin_delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
    }

    /// Answer Admin API calls with a body that is not JSON.
    pub fn malformed_json(&self, on: bool) {
        lock(&self.state).malformed_json = on;
    }

    /// Report another region in connectSettings.
    pub fn reported_region(&self, region: Option<&str>) {
        lock(&self.state).reported_region = region.map(str::to_owned);
    }

    /// Drop proxy connections right after accepting them.
    pub fn proxy_reset(&self, on: bool) {
        lock(&self.state).proxy_reset = on;
    }

    /// Present a server certificate that names another instance.
    pub fn wrong_identity(&self, on: bool) {
        lock(&self.state).wrong_identity = on;
    }

    /// Present a server certificate signed by an unrelated CA.
    pub fn wrong_ca(&self, on: bool) {
        lock(&self.state).wrong_ca = on;
    }

    /// The status to answer this Admin API call with, consuming one use.
    pub(crate) fn take_admin_status(&self) -> Option<u16> {
        let mut s = lock(&self.state);
        let status = s.admin_status?;
        match s.admin_status_times {
            Some(0) => {
                s.admin_status = None;
                None
            }
            Some(n) => {
                s.admin_status_times = Some(n - 1);
                if n == 1 {
                    s.admin_status = None;
                }
                Some(status)
            }
            None => Some(status),
        }
    }
}
