//! The platform's trust store, as one verifier for the whole process.
//!
//! Building a platform verifier reads and parses every root certificate of the system (about
//! 10 ms with rustls-platform-verifier 0.7). The Admin API's HTTP client and the SQL Data
//! Service tunnel both trust the platform, so they share this one verifier: the roots are loaded
//! once per process, on whichever thread first needs them (`http::prepare` starts that off
//! `ConnectorBuilder::build`'s thread).

use std::sync::{Arc, OnceLock};

use rustls::client::danger::ServerCertVerifier;
use rustls_platform_verifier::Verifier;

use crate::Error;

static VERIFIER: OnceLock<Result<Arc<Verifier>, String>> = OnceLock::new();

/// The process's platform verifier, built on first use; an unusable trust store is an
/// [`Error::Config`] that says so (every caller gets the same answer).
pub(crate) fn platform_verifier() -> Result<Arc<dyn ServerCertVerifier>, Error> {
    VERIFIER
        .get_or_init(|| {
            Verifier::new(super::provider())
                .map(Arc::new)
                .map_err(|e| e.to_string())
        })
        .as_ref()
        .map(|v| v.clone() as Arc<dyn ServerCertVerifier>)
        .map_err(|e| Error::config(format!("the platform's TLS trust store is unusable: {e}")))
}
