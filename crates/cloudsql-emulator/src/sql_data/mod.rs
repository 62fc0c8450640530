//! The SQL Data Service (`google.cloud.sql.v1beta4.SqlDataService/StreamSqlData`): gRPC over
//! TLS 1.3 with a CA of its own, on a loopback port of its own (the Admin API is plain HTTP).
//! Start it with [`Emulator::start_sql_data`]; point a connector at it with
//! `ConnectorBuilder::sql_data_endpoint(server.url())` and
//! `ConnectorBuilder::sql_data_root_ca(server.root_ca_pem())`.

mod database;
mod faults;
mod service;
mod session;
mod tls;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tracing::debug;

pub use faults::{SqlDataFaultState, SqlDataFaults};

use crate::unpoisoned::lock;
use crate::{Emulator, Error, State};

/// What every call shares.
pub(crate) struct Shared {
    state: Arc<State>,
    faults: Arc<SqlDataFaults>,
    calls: Mutex<HashMap<String, u64>>,
    /// Sessions that can be resumed, by session id.
    sessions: Mutex<HashMap<String, Arc<database::Database>>>,
}

impl Shared {
    fn keep(&self, session_id: &str, database: Arc<database::Database>) {
        lock(&self.sessions).insert(session_id.to_owned(), database);
    }

    fn kept(&self, session_id: &str) -> Option<Arc<database::Database>> {
        lock(&self.sessions).get(session_id).cloned()
    }

    fn is_kept(&self, database: &Arc<database::Database>) -> bool {
        lock(&self.sessions).values().any(|d| Arc::ptr_eq(d, database))
    }

    fn forget(&self, database: &Arc<database::Database>) {
        lock(&self.sessions).retain(|_, d| !Arc::ptr_eq(d, database));
    }

    fn record_call(&self, connection_name: &str) {
        *lock(&self.calls).entry(connection_name.to_owned()).or_default() += 1;
    }
}

/// A running SQL Data Service; it stops with the emulator.
#[derive(Clone)]
pub struct SqlDataServer {
    addr: SocketAddr,
    root_ca_pem: String,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for SqlDataServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlDataServer")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl SqlDataServer {
    /// The endpoint URL, `https://127.0.0.1:PORT`, for `ConnectorBuilder::sql_data_endpoint`.
    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// The CA that signed the service's certificate, for `ConnectorBuilder::sql_data_root_ca`.
    pub fn root_ca_pem(&self) -> &str {
        &self.root_ca_pem
    }

    /// The service's faults.
    pub fn faults(&self) -> &SqlDataFaults {
        &self.shared.faults
    }

    /// How many sessions were asked for the instance (`project:region:instance`), refused ones
    /// included.
    pub fn calls(&self, connection_name: &str) -> u64 {
        lock(&self.shared.calls)
            .get(connection_name)
            .copied()
            .unwrap_or(0)
    }
}

impl Emulator {
    /// Starts the SQL Data Service on a free port of 127.0.0.1, serving this emulator's
    /// instances to the bearer tokens of its token endpoint.
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), cloudsql_emulator::Error> {
    /// let emulator = cloudsql_emulator::Emulator::start().await?;
    /// let sql_data = emulator.start_sql_data().await?;
    /// println!("tunnel endpoint: {}", sql_data.url());
    /// # Ok(()) }
    /// ```
    pub async fn start_sql_data(&self) -> Result<SqlDataServer, Error> {
        let bind = |source| Error::Bind {
            purpose: "SQL Data Service".into(),
            addr: "127.0.0.1:0".into(),
            source,
        };
        let listener = TcpListener::bind(("127.0.0.1", 0)).await.map_err(bind)?;
        let addr = listener.local_addr().map_err(bind)?;
        let (root_ca_pem, config) = tls::server_config().map_err(|e| Error::Certificate {
            instance: "SQL Data Service".into(),
            source: e.into(),
        })?;
        let shared = Arc::new(Shared {
            state: self.state().clone(),
            faults: Arc::default(),
            calls: Mutex::default(),
            sessions: Mutex::default(),
        });
        let shutdown = self.shutdown_token();
        let (accepted, incoming) = tokio::sync::mpsc::channel::<std::io::Result<tls::TlsIo>>(16);
        let acceptor = TlsAcceptor::from(config);
        let stop = shutdown.clone();
        tokio::spawn(async move {
            loop {
                let tcp = tokio::select! {
                    () = stop.cancelled() => break,
                    accepted = listener.accept() => match accepted {
                        Ok((tcp, _)) => tcp,
                        Err(e) => {
                            debug!(error = %e, "SQL Data Service accept failed");
                            continue;
                        }
                    },
                };
                let _ = tcp.set_nodelay(true);
                let acceptor = acceptor.clone();
                let accepted = accepted.clone();
                tokio::spawn(async move {
                    match acceptor.accept(tcp).await {
                        Ok(tls) => {
                            let _ = accepted.send(Ok(tls::TlsIo(tls))).await;
                        }
                        Err(e) => debug!(error = %e, "SQL Data Service TLS handshake failed"),
                    }
                });
            }
        });
        let incoming =
            futures_util::stream::unfold(incoming, |mut rx| async move { rx.recv().await.map(|r| (r, rx)) });
        let service = service::SqlDataService(shared.clone());
        tokio::spawn(async move {
            let result = tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming_shutdown(incoming, shutdown.cancelled_owned())
                .await;
            if let Err(e) = result {
                debug!(error = %e, "SQL Data Service stopped with an error");
            }
        });
        Ok(SqlDataServer {
            addr,
            root_ca_pem,
            shared,
        })
    }
}
