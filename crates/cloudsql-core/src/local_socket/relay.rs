//! The accept loop and the per-connection relay: one dial through the connector per accepted
//! client, then bytes copied both ways until either side closes.

use std::io;
use std::sync::{Arc, Weak};

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, Span, debug, warn};

use super::bidirectional;
use super::dialer::InstanceDialer;
use super::registry::SocketState;
use crate::telemetry;
use crate::{DialOptions, Error};

/// The buffer for the client's bytes (queries, `COPY FROM` data): one full TLS record of
/// plaintext (16 KiB), so each write to the instance fills a record.
const CLIENT_BUFFER: usize = 16 * 1024;
/// The buffer for the instance's bytes. The relay gathers every TLS record already received
/// (up to this much) before it writes to the client, so that a bulk read costs the client one
/// write and one wake-up per burst instead of one per record (a third of the Unix-socket writes
/// in `cargo bench --bench local_socket`; the instance's proxy sends 8 KiB records). Each
/// buffer is taken on the first byte of its direction and given back when it is idle, so an idle
/// connection holds neither.
const SERVER_BUFFER: usize = 64 * 1024;

pub(super) enum Listener {
    Tcp(TcpListener),
    #[cfg(unix)]
    Unix(tokio::net::UnixListener),
}

/// An accepted client connection.
enum Client {
    Tcp(tokio::net::TcpStream),
    #[cfg(unix)]
    Unix(tokio::net::UnixStream),
}

/// Accepts until `stop` is cancelled; each client gets its own relay task in `tasks`.
pub(super) async fn accept_loop(
    listener: Listener,
    dialer: Weak<dyn InstanceDialer>,
    options: DialOptions,
    state: Arc<SocketState>,
    stop: CancellationToken,
    tasks: TaskTracker,
) {
    loop {
        let accepted = tokio::select! {
            () = stop.cancelled() => break,
            accepted = accept(&listener) => accepted,
        };
        match accepted {
            Ok(client) => {
                let span = telemetry::relay_span(&state.instance, &state.endpoint);
                tasks.spawn(relay(client, dialer.clone(), options.clone(), state.clone()).instrument(span));
            }
            Err(e) => {
                warn!(instance = %state.instance, socket = %state.endpoint, error = %e, "local socket accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
        }
    }
    debug!(instance = %state.instance, socket = %state.endpoint, "local socket stopped accepting");
}

async fn accept(listener: &Listener) -> io::Result<Client> {
    match listener {
        Listener::Tcp(l) => {
            let (stream, _) = l.accept().await?;
            stream.set_nodelay(true)?;
            Ok(Client::Tcp(stream))
        }
        #[cfg(unix)]
        Listener::Unix(l) => Ok(Client::Unix(l.accept().await?.0)),
    }
}

async fn relay(
    client: Client,
    dialer: Weak<dyn InstanceDialer>,
    options: DialOptions,
    state: Arc<SocketState>,
) {
    match client {
        Client::Tcp(s) => relay_stream(s, dialer, options, state).await,
        #[cfg(unix)]
        Client::Unix(s) => relay_stream(s, dialer, options, state).await,
    }
}

async fn relay_stream<S>(
    mut client: S,
    dialer: Weak<dyn InstanceDialer>,
    options: DialOptions,
    state: Arc<SocketState>,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let dialed = match dialer.upgrade() {
        Some(dialer) => {
            tokio::select! {
                () = state.relay_stop.cancelled() => return,
                dialed = dialer.dial(&state.instance, &options) => dialed,
            }
            // The dial future held the connector; it is dropped here: a relay does not keep
            // the connector alive.
        }
        None => Err(Error::Closed),
    };
    let mut server = match dialed {
        Ok(server) => server,
        Err(e) => {
            refuse(&mut client, &state, &e).await;
            return;
        }
    };
    tokio::select! {
        () = state.relay_stop.cancelled() => {
            let _ = client.shutdown().await;
            let _ = server.shutdown().await;
        }
        result = bidirectional::relay(&mut client, &mut server, CLIENT_BUFFER, SERVER_BUFFER) => {
            match result {
                Ok((sent, received)) => {
                    Span::current().record("bytes_sent", sent).record("bytes_received", received);
                }
                Err(e) => {
                    telemetry::record_error(&Span::current(), &e);
                    debug!(instance = %state.instance, error = %e, "relayed connection ended with an error");
                }
            }
        }
    }
}

/// Records the failure, logs it with its chain, and tells the client in its own protocol.
async fn refuse<S>(client: &mut S, state: &SocketState, error: &Error)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    state.record_failure(error);
    telemetry::record_error(&Span::current(), error);
    if matches!(error, Error::Closed) {
        warn!(
            instance = %state.instance,
            socket = %state.endpoint,
            error = error as &dyn std::error::Error,
            "the connector is closed; refusing a local socket connection"
        );
    } else {
        warn!(
            instance = %state.instance,
            socket = %state.endpoint,
            error = error as &dyn std::error::Error,
            "local socket could not dial the instance; refusing the client connection"
        );
    }
    state.refusal.send(client, error).await;
}
