//! Per-instance caches of connection data, refreshed in the background or lazily.

mod background;
mod cache;
mod pacing;
mod schedule;

use std::sync::Arc;
use std::time::SystemTime;

use tracing::{Instrument, Span, debug};

pub(crate) use cache::{Cache, ForceReason, RejectionHook};

use crate::admin_api::{AdminClient, Attempts};
use crate::client_cert::ClientCert;
use crate::conn_info::ConnInfo;
use crate::credentials::TokenSource;
use crate::instance_settings::InstanceSettings;
use crate::keys::SharedKey;
use crate::telemetry::RefreshMeter;
use crate::{Error, InstanceConnectionName};

/// Performs one refresh: `connectSettings` and `generateEphemeralCert`, concurrently (or one
/// after the other when `settings_first`).
///
/// Only data dependencies order a first refresh: `connectSettings` waits for the admin token
/// alone; `generateEphemeralCert` for the admin token, the key (generating since the connector
/// was built) and, with IAM authn, the login token, all three in flight at once. The admin token
/// is fetched once for both calls (its cached source makes the second caller wait for the first
/// fetch). So a cold refresh takes max(token, key) + max(both calls), not their sum;
/// `tests/cold_start.rs` checks this with injected delays.
#[derive(Debug)]
pub(crate) struct Refresher {
    pub(crate) name: InstanceConnectionName,
    pub(crate) iam_authn: bool,
    pub(crate) client: Arc<AdminClient>,
    pub(crate) key: SharedKey,
    pub(crate) login: Arc<dyn TokenSource>,
    /// Counts this instance's refreshes.
    pub(crate) telemetry: RefreshMeter,
}

impl Refresher {
    /// Runs inside `span` (see [`crate::telemetry::refresh_span`]).
    pub(crate) async fn refresh(
        &self,
        attempts: Attempts,
        settings_first: bool,
        span: Span,
    ) -> Result<Arc<ConnInfo>, Error> {
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
                // The key generates (since build) while the tokens and connectSettings are in
                // flight.
                let key = self.key.clone().await?;
                let response = self
                    .client
                    .generate_ephemeral_cert(&self.name, key.public_key_pem(), login_token.as_ref(), attempts)
                    .await?;
                Ok::<_, Error>((key, response, login_token.and_then(|t| t.expires_at())))
            };
            let settings = self.client.connect_settings(&self.name, attempts);
            let (settings, (key, cert, token_expiry)) = if settings_first {
                let settings = settings.await?;
                (settings, cert.await?)
            } else {
                tokio::try_join!(settings, cert)?
            };
            let settings = InstanceSettings::from_wire(&self.name, settings)?;
            let cert = ClientCert::from_pem(&self.name, &cert.ephemeral_cert.cert)?;
            let info = ConnInfo::new(&self.name, settings, cert, &key, token_expiry, SystemTime::now())?;
            debug!(expires_at = ?info.expires_at, "refresh done");
            Ok(Arc::new(info))
        }
        .instrument(span)
        .await
    }
}
