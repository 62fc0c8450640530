//! The lazy strategy: no background task; a connect refreshes inline under a per-instance lock
//! when the certificate has under four minutes left.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::SystemTime;

use tokio::sync::Mutex;

use super::Refresher;
use super::schedule::lazy_is_fresh;
use crate::Error;
use crate::conn_info::ConnInfo;

/// Lazy refresh for one instance.
#[derive(Debug)]
pub(crate) struct Lazy {
    refresher: Refresher,
    current: Mutex<Option<Arc<ConnInfo>>>,
    stale: AtomicBool,
    closed: AtomicBool,
}

impl Lazy {
    pub(crate) fn new(refresher: Refresher) -> Self {
        Self {
            refresher,
            current: Mutex::new(None),
            stale: AtomicBool::new(false),
            closed: AtomicBool::new(false),
        }
    }

    pub(crate) async fn conn_info(&self) -> Result<Arc<ConnInfo>, Error> {
        if self.closed.load(Ordering::Acquire) {
            return Err(Error::Closed);
        }
        let mut current = self.current.lock().await;
        let now = SystemTime::now();
        if let Some(info) = current.as_ref()
            && !self.stale.load(Ordering::Acquire)
            && lazy_is_fresh(info.remaining(now))
        {
            return Ok(info.clone());
        }
        self.stale.store(false, Ordering::Release);
        match self.refresher.refresh().await {
            Ok(info) => {
                *current = Some(info.clone());
                Ok(info)
            }
            // A failed refresh never replaces a still-valid result.
            Err(error) => match current.as_ref() {
                Some(info) if info.expires_at > SystemTime::now() && !error.evicts_cache() => {
                    Ok(info.clone())
                }
                _ => Err(error),
            },
        }
    }

    pub(crate) fn force_refresh(&self) {
        self.stale.store(true, Ordering::Release);
    }

    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::Release);
    }
}
