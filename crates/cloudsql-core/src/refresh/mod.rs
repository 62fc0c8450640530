//! Per-instance caches of connection data, refreshed in the background or lazily.

mod background;
mod lazy;
mod schedule;

use std::sync::Arc;
use std::time::SystemTime;

use tracing::{Instrument, debug, debug_span};

pub(crate) use background::Background;
pub(crate) use lazy::Lazy;

use crate::admin_api::AdminClient;
use crate::conn_info::ConnInfo;
use crate::credentials::TokenSource;
use crate::keys::SharedKey;
use crate::{Error, InstanceConnectionName};

/// Performs one refresh: `connectSettings` and `generateEphemeralCert`, concurrently.
#[derive(Debug)]
pub(crate) struct Refresher {
    pub(crate) name: InstanceConnectionName,
    pub(crate) iam_authn: bool,
    pub(crate) client: Arc<AdminClient>,
    pub(crate) key: SharedKey,
    pub(crate) login: Arc<dyn TokenSource>,
}

impl Refresher {
    pub(crate) async fn refresh(&self) -> Result<Arc<ConnInfo>, Error> {
        let span = debug_span!("refresh", instance = %self.name, iam_authn = self.iam_authn);
        async {
            debug!("refreshing connection info");
            let cert = async {
                let login_token = if self.iam_authn {
                    let token = self.login.token().await.map_err(|source| Error::Credentials {
                        instance: self.name.to_string(),
                        source,
                    })?;
                    Some(token)
                } else {
                    None
                };
                // The key is generated while connectSettings is in flight.
                let key = self.key.clone().await?;
                let response = self
                    .client
                    .generate_ephemeral_cert(
                        &self.name,
                        key.public_key_pem(),
                        login_token.as_ref(),
                        crate::admin_api::Attempts::Full,
                    )
                    .await?;
                Ok::<_, Error>((key, response, login_token.and_then(|t| t.expires_at())))
            };
            let (settings, (key, cert, token_expiry)) =
                tokio::try_join!(self.client.connect_settings(&self.name, crate::admin_api::Attempts::Full), cert)?;
            let info = ConnInfo::new(
                &self.name,
                settings,
                &cert.ephemeral_cert.cert,
                &key,
                token_expiry,
                SystemTime::now(),
            )?;
            debug!(expires_at = ?info.expires_at, "refresh done");
            Ok(Arc::new(info))
        }
        .instrument(span)
        .await
        .inspect_err(|e| debug!(instance = %self.name, error = %e, "refresh failed"))
    }
}

/// One instance's cache, by strategy.
#[derive(Debug)]
pub(crate) enum Cache {
    Background(Background),
    Lazy(Lazy),
}

impl Cache {
    /// Connection data that is valid now, refreshing if needed.
    pub(crate) async fn conn_info(&self) -> Result<Arc<ConnInfo>, Error> {
        match self {
            Cache::Background(c) => c.conn_info().await,
            Cache::Lazy(c) => c.conn_info().await,
        }
    }

    /// Marks the cached data stale after a failed dial: the next connect waits for new data.
    pub(crate) fn force_refresh(&self) {
        match self {
            Cache::Background(c) => c.force_refresh(),
            Cache::Lazy(c) => c.force_refresh(),
        }
    }

    /// Stops all background work.
    pub(crate) fn close(&self) {
        match self {
            Cache::Background(c) => c.close(),
            Cache::Lazy(c) => c.close(),
        }
    }
}
