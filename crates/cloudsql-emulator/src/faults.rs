//! Fault injection, switchable at run time: Admin API errors, delays, malformed and oversized
//! bodies (for every method or one); proxy resets; a wrong server identity or CA; token
//! endpoint errors, delays and malformed bodies.

use std::sync::Mutex;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::unpoisoned::lock;

/// The faults in force for one instance. Every setter takes effect on the next request.
#[derive(Debug, Default)]
pub struct Faults {
    state: Mutex<FaultState>,
}

/// A snapshot of what is switched on; also the JSON body of the faults HTTP endpoint.
///
/// Every field is optional in JSON (`{}` clears every fault); an unknown field is refused, so
/// a misspelt fault is an error rather than silently off.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct FaultState {
    /// Answer Admin API calls with this HTTP status (and a Google-shaped error body).
    pub admin_status: Option<u16>,
    /// How many calls get `admin_status`; `None` means all of them until cleared.
    pub admin_status_times: Option<u32>,
    /// Apply `admin_status` only to calls of this method (`connectSettings` or
    /// `generateEphemeralCert`); `None` means every method.
    pub admin_status_method: Option<String>,
    /// Delay every Admin API answer by this many milliseconds.
    pub admin_delay_ms: u64,
    /// Apply `admin_delay_ms` only to calls of this method; `None` means every method.
    pub admin_delay_method: Option<String>,
    /// When `admin_status` answers, send an HTML page (`text/html`) of exactly this many bytes
    /// instead of Google's JSON error, as a disabled API or a front end in the way does.
    pub error_body_bytes: Option<u64>,
    /// Answer successful `connectSettings` / `generateEphemeralCert` calls with a streamed
    /// `application/json` body of exactly this many bytes (not valid JSON past its start).
    pub success_body_bytes: Option<u64>,
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
    /// Present a server certificate with this defect (validity or one of its two names).
    pub server_cert: Option<ServerCertFault>,
    /// Close proxy connections right after the TLS handshake, before any database byte.
    pub reset_after_handshake: bool,
    /// Wait this many milliseconds before answering the client's TLS hello.
    pub handshake_delay_ms: u64,
    /// The database behind the proxy is unreachable: the proxy completes the TLS handshake, then
    /// closes the connection without a database greeting.
    pub backend_unreachable: bool,
    /// The Cloud SQL Admin API is disabled in the project: every call answers 403
    /// `SERVICE_DISABLED` with Google's `ErrorInfo` details.
    pub api_disabled: bool,
}

/// A server certificate signed by the right CA but defective in one way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ServerCertFault {
    /// Its validity ended an hour ago.
    Expired,
    /// Its validity starts in an hour.
    NotYetValid,
    /// The right common name (`project:instance`) but SAN DNS names of another instance.
    WrongSan,
    /// The instance's SAN DNS names but the common name of another instance.
    WrongCn,
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
        s.admin_status_method = None;
    }

    /// Answer the next `times` calls of `method` (all, if `None`) with `status`; other methods
    /// answer normally.
    pub fn admin_status_for(&self, method: &str, status: u16, times: Option<u32>) {
        let mut s = lock(&self.state);
        s.admin_status = Some(status);
        s.admin_status_times = times;
        s.admin_status_method = Some(method.to_owned());
    }

    /// Delay every Admin API answer.
    pub fn admin_delay(&self, delay: Duration) {
        let mut s = lock(&self.state);
        s.admin_delay_ms = millis(delay);
        s.admin_delay_method = None;
    }

    /// Delay the answers to calls of `method` only.
    pub fn admin_delay_for(&self, method: &str, delay: Duration) {
        let mut s = lock(&self.state);
        s.admin_delay_ms = millis(delay);
        s.admin_delay_method = Some(method.to_owned());
    }

    /// Send `admin_status` errors as an HTML page of exactly this many bytes (`None`: Google's
    /// JSON error).
    pub fn error_body_bytes(&self, bytes: Option<u64>) {
        lock(&self.state).error_body_bytes = bytes;
    }

    /// Answer successful calls with a streamed JSON body of exactly this many bytes (`None`: the
    /// real answer).
    pub fn success_body_bytes(&self, bytes: Option<u64>) {
        lock(&self.state).success_body_bytes = bytes;
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

    /// Present a server certificate with `fault` (`None`: the real one).
    pub fn server_cert(&self, fault: Option<ServerCertFault>) {
        lock(&self.state).server_cert = fault;
    }

    /// Close proxy connections right after the TLS handshake.
    pub fn reset_after_handshake(&self, on: bool) {
        lock(&self.state).reset_after_handshake = on;
    }

    /// Delay the proxy's TLS handshake.
    pub fn handshake_delay(&self, delay: Duration) {
        lock(&self.state).handshake_delay_ms = millis(delay);
    }

    /// Make the database behind the proxy unreachable.
    pub fn backend_unreachable(&self, on: bool) {
        lock(&self.state).backend_unreachable = on;
    }

    /// Answer every Admin API call with 403 `SERVICE_DISABLED`, as a project without the
    /// Cloud SQL Admin API enabled does.
    pub fn api_disabled(&self, on: bool) {
        lock(&self.state).api_disabled = on;
    }

    /// Present a server certificate that names another instance.
    pub fn wrong_identity(&self, on: bool) {
        lock(&self.state).wrong_identity = on;
    }

    /// Present a server certificate signed by an unrelated CA.
    pub fn wrong_ca(&self, on: bool) {
        lock(&self.state).wrong_ca = on;
    }

    /// The status to answer this call of `method` with, consuming one use.
    pub(crate) fn take_admin_status(&self, method: &str) -> Option<u16> {
        let mut s = lock(&self.state);
        let status = s.admin_status?;
        if !applies(s.admin_status_method.as_deref(), method) {
            return None;
        }
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

impl FaultState {
    /// The delay to apply to a call of `method`.
    pub(crate) fn admin_delay(&self, method: &str) -> Duration {
        if applies(self.admin_delay_method.as_deref(), method) {
            Duration::from_millis(self.admin_delay_ms)
        } else {
            Duration::ZERO
        }
    }
}

/// Whether a fault restricted to `only` (every method if `None`) applies to `method`.
fn applies(only: Option<&str>, method: &str) -> bool {
    only.is_none_or(|m| m == method)
}

fn millis(delay: Duration) -> u64 {
    u64::try_from(delay.as_millis()).unwrap_or(u64::MAX)
}

/// Faults of the OAuth2 token endpoint and the metadata server's token endpoint, for the whole
/// emulator. Every setter takes effect on the next request.
#[derive(Debug, Default)]
pub struct TokenFaults {
    state: Mutex<TokenFaultState>,
}

/// A snapshot of the token endpoint faults; also the JSON body of `POST /emulator/v1/tokenFaults`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct TokenFaultState {
    /// Answer token requests with this HTTP status and an `internal_failure` JSON error.
    pub status: Option<u16>,
    /// How many requests get `status`; `None` means all of them until cleared.
    pub times: Option<u32>,
    /// Delay every token answer by this many milliseconds.
    pub delay_ms: u64,
    /// Answer 200 with a body that is not JSON.
    pub malformed: bool,
}

/// What a faulted token request gets instead of a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TokenFault {
    /// An error status with an `internal_failure` body.
    Status(u16),
    /// A 200 whose body is not JSON.
    Malformed,
}

impl TokenFaults {
    /// Replaces every token fault at once.
    pub fn set(&self, state: TokenFaultState) {
        *lock(&self.state) = state;
    }

    /// Clears every token fault.
    pub fn clear(&self) {
        self.set(TokenFaultState::default());
    }

    /// A copy of the token faults in force.
    pub fn snapshot(&self) -> TokenFaultState {
        lock(&self.state).clone()
    }

    /// Answer the next `times` token requests (all, if `None`) with `status`.
    pub fn status(&self, status: u16, times: Option<u32>) {
        let mut s = lock(&self.state);
        s.status = Some(status);
        s.times = times;
    }

    /// Delay every token answer.
    pub fn delay(&self, delay: Duration) {
        lock(&self.state).delay_ms = millis(delay);
    }

    /// Answer token requests with 200 and a body that is not JSON.
    pub fn malformed(&self, on: bool) {
        lock(&self.state).malformed = on;
    }

    /// The delay to wait and the fault to answer this request with, consuming one use of
    /// `status`.
    pub(crate) fn take(&self) -> (Duration, Option<TokenFault>) {
        let mut s = lock(&self.state);
        let delay = Duration::from_millis(s.delay_ms);
        let status = match (s.status, s.times) {
            (None, _) => None,
            (Some(_), Some(0)) => {
                s.status = None;
                None
            }
            (Some(status), Some(n)) => {
                s.times = Some(n - 1);
                if n == 1 {
                    s.status = None;
                }
                Some(status)
            }
            (Some(status), None) => Some(status),
        };
        let fault = match status {
            Some(status) => Some(TokenFault::Status(status)),
            None => s.malformed.then_some(TokenFault::Malformed),
        };
        (delay, fault)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn method_restricted_status_only_hits_that_method_and_counts_its_calls() {
        let faults = Faults::default();
        faults.admin_status_for("generateEphemeralCert", 503, Some(2));
        assert_eq!(faults.take_admin_status("connectSettings"), None);
        assert_eq!(faults.take_admin_status("generateEphemeralCert"), Some(503));
        assert_eq!(faults.take_admin_status("connectSettings"), None);
        assert_eq!(faults.take_admin_status("generateEphemeralCert"), Some(503));
        assert_eq!(faults.take_admin_status("generateEphemeralCert"), None);
    }

    #[test]
    fn unrestricted_status_hits_every_method() {
        let faults = Faults::default();
        faults.admin_status_for("connectSettings", 500, None);
        faults.admin_status(429, Some(2));
        assert_eq!(faults.take_admin_status("connectSettings"), Some(429));
        assert_eq!(faults.take_admin_status("generateEphemeralCert"), Some(429));
        assert_eq!(faults.take_admin_status("connectSettings"), None);
    }

    #[test]
    fn delay_applies_per_method() {
        let faults = Faults::default();
        faults.admin_delay_for("connectSettings", Duration::from_millis(250));
        let s = faults.snapshot();
        assert_eq!(s.admin_delay("connectSettings"), Duration::from_millis(250));
        assert_eq!(s.admin_delay("generateEphemeralCert"), Duration::ZERO);
        faults.admin_delay(Duration::from_millis(10));
        assert_eq!(
            faults.snapshot().admin_delay("generateEphemeralCert"),
            Duration::from_millis(10)
        );
    }

    #[test]
    fn token_status_runs_out_then_malformed_shows() {
        let faults = TokenFaults::default();
        faults.status(500, Some(1));
        faults.malformed(true);
        assert_eq!(faults.take().1, Some(TokenFault::Status(500)));
        assert_eq!(faults.take().1, Some(TokenFault::Malformed));
        faults.clear();
        assert_eq!(faults.take(), (Duration::ZERO, None));
    }
}
