//! One RSA key per process, shared by every connector that was not given its own.
//!
//! A connector's key only signs its TLS handshakes and names it in `generateEphemeralCert`; each
//! certificate issued for it lives an hour at most. Google's connectors keep one key for a
//! connector's whole life and share it among all its instances; sharing it among the connectors
//! of one process as well changes nothing an attacker could use (the key never leaves memory)
//! and means a process pays for one generation, however many connectors it builds.

use std::sync::{Arc, Mutex, PoisonError};

use futures_util::FutureExt;

use super::{SharedKey, race};
use crate::Error;

static PROCESS_KEY: Mutex<Option<SharedKey>> = Mutex::new(None);

/// The process's key: starts generating it (raced, on threads of its own) on the first call,
/// and hands every later caller the same key. A generation that failed is not kept: the next
/// call starts another.
pub(crate) fn process_key() -> SharedKey {
    let mut slot = PROCESS_KEY.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(key) = slot.as_ref()
        && !matches!(key.peek(), Some(Err(_)))
    {
        return key.clone();
    }
    let key = generate_in_background();
    *slot = Some(key.clone());
    key
}

/// Starts a raced generation now, without needing an async runtime; the future yields its key.
fn generate_in_background() -> SharedKey {
    let (tx, rx) = tokio::sync::oneshot::channel();
    race::start(race::width(), move |outcome| {
        let _ = tx.send(outcome);
    });
    async move {
        rx.await
            .map_err(|_| Error::config("RSA key generation stopped without a result"))?
            .map(Arc::new)
    }
    .boxed()
    .shared()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_caller_gets_the_same_key() {
        let first = process_key();
        let second = process_key();
        let (a, b) = (first.await.unwrap(), second.await.unwrap());
        assert!(Arc::ptr_eq(&a, &b));
        // Also once it is ready.
        assert!(Arc::ptr_eq(&a, &process_key().await.unwrap()));
    }

    #[test]
    fn generation_starts_without_a_runtime() {
        let key = process_key();
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let key = runtime.block_on(key).unwrap();
        assert!(key.public_key_pem().starts_with("-----BEGIN PUBLIC KEY-----"));
    }
}
