//! `IpType::SqlData`: the database protocol carried in a bidirectional gRPC stream
//! (`google.cloud.sql.v1beta4.SqlDataService/StreamSqlData`) to the Admin API host, for
//! applications with no network path to the instance.
//!
//! One HTTP/2 connection per connector carries every tunnel. A connect fetches an access token,
//! opens the connection if needed (within the connect timeout, stage
//! [`crate::ConnectStage::Tunnel`]), and starts a session task; the call
//! itself is opened by the task so that the application can write at once (PostgreSQL's client
//! speaks first, and a server may hold its response headers until it has bytes to send).
//!
//! A `FAILED_PRECONDITION` before the first server byte means the instance does not offer the
//! service: the task dials the instance directly (private, then PSC, then public IP), replays
//! the bytes the application wrote, and the connector remembers to connect directly to that
//! instance from then on. `RESOURCE_EXHAUSTED` starts a per-instance cooldown (5 s, doubling).

mod call;
mod channel;
mod cooldown;
pub mod messages;
mod session;
mod status;
mod stream;

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::{OnceCell, mpsc};
use tonic::transport::Channel;
use tracing::debug;

use crate::credentials::TokenSource;
use crate::error::ConnectStage;
use crate::{Error, InstanceConnectionName};

pub(crate) use cooldown::Memory;
pub(crate) use session::Fallback;

/// Database bytes queued between the application and the session task, each way.
const QUEUE: usize = 16;

/// The connector's tunnel state: where the service is, how to reach it, and what it learnt.
pub(crate) struct Tunnel {
    uri: tonic::transport::Uri,
    host: String,
    port: u16,
    /// Set at `new` for a given CA (so a bad PEM fails `build()`); for the platform's trust store,
    /// at the first connect (its roots load once per process, off `build()`).
    tls: std::sync::OnceLock<Arc<rustls::ClientConfig>>,
    user_agent: String,
    quota_project: Option<String>,
    token: Arc<dyn TokenSource>,
    channel: OnceCell<Channel>,
    memory: Arc<Memory>,
}

impl std::fmt::Debug for Tunnel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tunnel")
            .field("endpoint", &self.uri)
            .finish_non_exhaustive()
    }
}

impl Tunnel {
    /// Tunnel settings; nothing is dialed until the first connect.
    pub(crate) fn new(
        endpoint: &str,
        root_ca_pem: Option<&str>,
        user_agent: String,
        quota_project: Option<String>,
        token: Arc<dyn TokenSource>,
    ) -> Result<Self, Error> {
        let (uri, host, port) = channel::parse_endpoint(endpoint)?;
        let tls = std::sync::OnceLock::new();
        if let Some(pem) = root_ca_pem {
            let _ = tls.set(channel::tls_config(Some(pem))?);
        }
        Ok(Self {
            uri,
            host,
            port,
            tls,
            user_agent,
            quota_project,
            token,
            channel: OnceCell::new(),
            memory: Arc::default(),
        })
    }

    /// Whether connects to `name` should skip the tunnel (it refused with `FAILED_PRECONDITION`).
    pub(crate) fn is_unsupported(&self, name: &InstanceConnectionName) -> bool {
        self.memory.is_unsupported(name)
    }

    /// Opens a tunnel to `name`; `fallback` dials it directly if it turns out not to offer one.
    pub(crate) async fn connect(
        &self,
        name: &InstanceConnectionName,
        fallback: Fallback,
        stage: &crate::connector::StageCell,
    ) -> Result<crate::BoxedStream, Error> {
        let instance = name.to_string();
        if let Some(retry_after) = self.memory.cooling(name, Instant::now()) {
            return Err(Error::SqlDataExhausted {
                instance,
                message: String::new(),
                retry_after,
            });
        }
        stage.set(ConnectStage::Tunnel);
        let token = self.token.token().await.map_err(|source| Error::Credentials {
            instance: instance.clone(),
            source,
        })?;
        let tls = match self.tls.get() {
            Some(tls) => tls.clone(),
            None => {
                let platform = channel::tls_config(None)?;
                self.tls.get_or_init(|| platform).clone()
            }
        };
        let channel = self
            .channel
            .get_or_try_init(|| {
                channel::connect(
                    self.uri.clone(),
                    self.host.clone(),
                    self.port,
                    tls,
                    &self.user_agent,
                )
            })
            .await
            .map_err(|e| Error::Dial {
                instance: instance.clone(),
                address: format!("{}:{} (SQL Data Service)", self.host, self.port),
                source: Arc::new(e),
            })?
            .clone();
        let target = Arc::new(call::Target {
            instance: instance.clone(),
            location_id: format!("locations/{}", name.region()),
            instance_id: format!("projects/{}/instances/{}", name.project(), name.instance()),
            session_id: session_id(),
            quota_project: self.quota_project.clone(),
        });
        let (to_task, writes) = mpsc::channel(QUEUE);
        let (reads_tx, reads) = mpsc::channel(QUEUE);
        let session = session::Session {
            channel,
            target,
            name: name.clone(),
            token: token.secret().to_owned(),
            tokens: self.token.clone(),
            memory: self.memory.clone(),
            fallback: Some(fallback),
        };
        tokio::spawn(session::run(
            session,
            session::Pipes {
                writes,
                reads: reads_tx,
            },
        ));
        debug!(%instance, "SQL Data Service session started");
        Ok(Box::new(stream::TunnelStream::new(to_task, reads)))
    }
}

/// 128 random bits, hex: unguessable, as the API asks.
fn session_id() -> String {
    let bytes: [u8; 16] = crate::random::random_bytes();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
