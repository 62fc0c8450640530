//! One `StreamSqlData` call: bearer token, `StartSession`, faults, then the database protocol
//! relayed through the same login step as the server-side proxy, with the token's principal as
//! the connection's IAM identity (so an IAM user logs in as itself without a password).

use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use cloudsql_core::sql_data::messages::{
    DataPacket, SessionMetadata, Status, StreamSqlDataRequest, StreamSqlDataResponse, TerminateSession,
    request, response,
};
use futures_util::StreamExt as _;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tracing::debug;

use super::Shared;
use crate::instance::{Instance, Issued};
use crate::oauth::ADMIN_SCOPE;

/// How long a client may take to send `StartSession`.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// Bytes read from the database at once.
const CHUNK: usize = 16 * 1024;

type Responses = futures_util::stream::BoxStream<'static, Result<StreamSqlDataResponse, tonic::Status>>;

/// Checks the call and starts relaying; a refusal is the call's status (sent at once, before
/// any response header, as Google's frontend does for a refused session).
pub(crate) async fn serve(
    shared: Arc<Shared>,
    request: tonic::Request<tonic::Streaming<StreamSqlDataRequest>>,
) -> Result<tonic::Response<Responses>, tonic::Status> {
    let token = request
        .metadata()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| {
            tonic::Status::unauthenticated("Request is missing required authentication credential.")
        })?;
    let grant =
        shared.state.oauth.verify_bearer(token).ok_or_else(|| {
            tonic::Status::unauthenticated("Request had invalid authentication credentials.")
        })?;
    if !grant.allows(ADMIN_SCOPE) {
        return Err(tonic::Status::permission_denied(
            "Request had insufficient authentication scopes.",
        ));
    }
    let mut requests = request.into_inner();
    let first = tokio::time::timeout(START_TIMEOUT, requests.message())
        .await
        .map_err(|_| tonic::Status::deadline_exceeded("no StartSession"))??
        .ok_or_else(|| tonic::Status::invalid_argument("the stream ended before StartSession"))?;
    let start = match first.message {
        Some(request::Message::StartSession(start)) => start,
        Some(request::Message::ContinueSession(_)) => {
            return Err(tonic::Status::failed_precondition(
                "this server does not support reconnecting sessions",
            ));
        }
        _ => {
            return Err(tonic::Status::invalid_argument(
                "the first message must be StartSession",
            ));
        }
    };
    let instance = lookup(&shared, &start.instance_id, &start.location_id)?;
    shared.record_call(instance.connection_name());
    let faults = shared.faults.snapshot();
    if faults.failed_precondition {
        return Err(tonic::Status::failed_precondition(
            "unsupported instance edition: the instance does not offer the SQL Data Service",
        ));
    }
    if faults.resource_exhausted {
        return Err(tonic::Status::resource_exhausted(
            "too many SQL Data Service sessions for this instance",
        ));
    }
    if instance.is_stopped() {
        return Err(tonic::Status::unavailable("the instance is not running"));
    }
    debug!(instance = instance.connection_name(), principal = %grant.principal, "SQL Data Service session started");
    let (tx, rx) = mpsc::channel(16);
    let metadata = StreamSqlDataResponse {
        ack: None,
        message: Some(response::Message::SessionMetadata(SessionMetadata {
            supported_features: Vec::new(),
        })),
    };
    let _ = tx.try_send(Ok(metadata));
    tokio::spawn(relay(instance, grant.principal, requests, tx, faults));
    let responses =
        futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|r| (r, rx)) });
    Ok(tonic::Response::new(responses.boxed()))
}

/// The instance `projects/P/instances/I` in `locations/R`.
fn lookup(shared: &Shared, instance_id: &str, location_id: &str) -> Result<Arc<Instance>, tonic::Status> {
    let not_found =
        || tonic::Status::not_found(format!("instance `{instance_id}` not found in `{location_id}`"));
    let rest = instance_id.strip_prefix("projects/").ok_or_else(not_found)?;
    let (project, name) = rest.split_once("/instances/").ok_or_else(not_found)?;
    let instance = shared.state.lookup(project, name).ok_or_else(not_found)?;
    let region = instance.connection_name().split(':').nth(1).unwrap_or_default();
    if location_id.strip_prefix("locations/") != Some(region) {
        return Err(not_found());
    }
    Ok(instance)
}

/// Relays between the call and the instance's database, until either ends.
async fn relay(
    instance: Arc<Instance>,
    principal: String,
    mut requests: tonic::Streaming<StreamSqlDataRequest>,
    tx: mpsc::Sender<Result<StreamSqlDataResponse, tonic::Status>>,
    faults: super::SqlDataFaultState,
) {
    let (ours, theirs) = tokio::io::duplex(64 * 1024);
    let database = {
        let instance = instance.clone();
        async move {
            let issued = Issued {
                principal: Some(principal),
            };
            if let Err(e) = crate::proxy::session(&instance, theirs, issued).await {
                debug!(instance = instance.connection_name(), error = %e, "SQL Data Service session ended with an error");
            }
        }
    };
    let (mut rd, mut wr) = tokio::io::split(ours);
    let up = async {
        let mut received: i64 = 0;
        while let Ok(Some(message)) = requests.message().await {
            match message.message {
                Some(request::Message::Data(packet)) => {
                    // Skip bytes already delivered (a resent packet); a gap ends the session.
                    let skip = received - packet.first_byte_offset;
                    let Ok(skip) = usize::try_from(skip) else { break };
                    if skip < packet.data.len() {
                        if wr.write_all(&packet.data[skip..]).await.is_err() {
                            break;
                        }
                        received += i64::try_from(packet.data.len() - skip).unwrap_or(0);
                    }
                }
                Some(request::Message::TerminateSession(_)) => break,
                _ => {}
            }
        }
        let _ = wr.shutdown().await;
        std::future::pending::<()>().await;
    };
    let down = async {
        let mut sent: u64 = 0;
        loop {
            let mut buf = BytesMut::with_capacity(CHUNK);
            match rd.read_buf(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            if sent == 0 && faults.first_byte_delay_ms > 0 {
                tokio::time::sleep(Duration::from_millis(faults.first_byte_delay_ms)).await;
            }
            let mut data = buf.freeze();
            if let Some(limit) = faults.reset_after_bytes {
                let room = usize::try_from(limit.saturating_sub(sent)).unwrap_or(usize::MAX);
                if room < data.len() {
                    data.truncate(room);
                    if !data.is_empty() {
                        let _ = tx.send(Ok(packet(sent, data))).await;
                    }
                    debug!(
                        instance = instance.connection_name(),
                        "fault: resetting the SQL Data Service stream"
                    );
                    let _ = tx
                        .send(Err(tonic::Status::unavailable("fault: stream reset")))
                        .await;
                    return;
                }
            }
            let len = data.len() as u64;
            if tx.send(Ok(packet(sent, data))).await.is_err() {
                return;
            }
            sent += len;
        }
        let _ = tx
            .send(Ok(StreamSqlDataResponse {
                ack: None,
                message: Some(response::Message::TerminateSession(TerminateSession {
                    status: Some(Status {
                        code: 0,
                        message: "the database closed the connection".into(),
                    }),
                })),
            }))
            .await;
    };
    let reset = instance.reset_token();
    // `down` ends when the database side closes (which a client's TerminateSession, passed on
    // by `up` as a shutdown, brings about); `up` never ends on its own.
    tokio::select! {
        _ = async { tokio::join!(database, down) } => {}
        () = up => {}
        () = reset.cancelled() => {}
        () = instance.shutdown.cancelled() => {}
    }
}

fn packet(offset: u64, data: bytes::Bytes) -> StreamSqlDataResponse {
    StreamSqlDataResponse {
        ack: None,
        message: Some(response::Message::Data(DataPacket {
            first_byte_offset: i64::try_from(offset).unwrap_or(i64::MAX),
            data,
        })),
    }
}
