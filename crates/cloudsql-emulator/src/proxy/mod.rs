//! The server-side proxy: TLS 1.3 with a required client certificate from the instance's client
//! CA, then a relay to the real backend database (through the Postgres login step for IAM users).

mod mdx;
mod mysql;
mod postgres;
mod prefixed;

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tracing::{debug, warn};

use crate::instance::{Instance, Issued};

/// How long a client may take to finish the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves every listener of an instance until it shuts down.
pub(crate) fn spawn(instance: &Arc<Instance>) {
    for index in 0..instance.listeners().len() {
        tokio::spawn(accept_loop(instance.clone(), index));
    }
}

/// Accepts on listener `index` while the instance runs; looks again after every stop or start.
async fn accept_loop(instance: Arc<Instance>, index: usize) {
    let listeners = instance.listeners();
    let mut changes = listeners.changes();
    loop {
        tokio::select! {
            () = instance.shutdown.cancelled() => break,
            changed = changes.changed() => if changed.is_err() {
                break;
            },
            accepted = listeners.accept(index) => match accepted {
                Ok(tcp) => {
                    instance.counters().record_attempt();
                    tokio::spawn(serve(instance.clone(), tcp));
                }
                Err(e) => {
                    warn!(error = %e, "proxy accept failed");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            },
        }
    }
    listeners.close(index);
}

async fn serve(instance: Arc<Instance>, tcp: TcpStream) {
    if instance.faults().snapshot().proxy_reset {
        debug!(
            instance = instance.connection_name(),
            "fault: resetting proxy connection"
        );
        return;
    }
    let _ = tcp.set_nodelay(true);
    let reset = instance.reset_token();
    if instance.is_stopped() {
        // Accepted just before a stop: cut like every other open connection.
        return;
    }
    let delay = instance.faults().snapshot().handshake_delay_ms;
    if delay > 0 {
        tokio::select! {
            () = reset.cancelled() => return,
            () = tokio::time::sleep(Duration::from_millis(delay)) => {}
        }
    }
    let acceptor = TlsAcceptor::from(instance.tls_config());
    let handshake = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp));
    let tls = tokio::select! {
        () = reset.cancelled() => return,
        handshake = handshake => match handshake {
            Ok(Ok(tls)) => tls,
            Ok(Err(e)) => {
                debug!(instance = instance.connection_name(), error = %e, "proxy TLS handshake failed");
                return;
            }
            Err(_) => return,
        },
    };
    instance.counters().record_connection();
    if instance.faults().snapshot().reset_after_handshake {
        debug!(
            instance = instance.connection_name(),
            "fault: closing the connection after the TLS handshake"
        );
        return;
    }
    let issued = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|certs| certs.first())
        .and_then(|cert| instance.issued(cert))
        .unwrap_or(Issued { principal: None });
    let result = tokio::select! {
        () = reset.cancelled() => Ok(()),
        () = instance.shutdown.cancelled() => Ok(()),
        result = session(&instance, tls, issued) => result,
    };
    if let Err(e) = result {
        debug!(instance = instance.connection_name(), error = %e, "proxy session ended with an error");
    }
}

/// Bounds a read of the client's login handshake by the instance's login timeout, so a silent
/// client cannot hold a proxy connection forever.
pub(super) async fn within_login<T>(
    instance: &Instance,
    read: impl std::future::Future<Output = std::io::Result<T>>,
) -> std::io::Result<T> {
    tokio::time::timeout(instance.config.login_timeout, read)
        .await
        .map_err(|_| {
            std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the client did not finish its login handshake in time",
            )
        })?
}

/// Serves one client connection already past TLS (or carried by the SQL Data Service).
pub(crate) async fn session<S>(instance: &Instance, client: S, issued: Issued) -> std::io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut client = prefixed::Prefixed::new(client);
    let version = instance.database_version();
    let mysql = version.starts_with("MYSQL");
    if instance.config.mdx && !mdx::handle(&mut client, instance, mysql).await? {
        return Ok(());
    }
    if version.starts_with("POSTGRES") {
        postgres::serve(client, instance, issued).await
    } else if mysql {
        mysql::serve(client, instance, issued).await
    } else if version.starts_with("SQLSERVER") && instance.config.tds_responder {
        let logins: Vec<(String, String)> = instance
            .config
            .sql_logins
            .iter()
            .map(|l| (l.user.clone(), l.password.clone()))
            .collect();
        crate::tds_responder::serve(client, &logins).await
    } else {
        relay(client, instance).await
    }
}

async fn relay<S>(mut client: S, instance: &Instance) -> std::io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut backend = instance.connect_backend().await?;
    tokio::io::copy_bidirectional(&mut client, &mut backend).await?;
    Ok(())
}
