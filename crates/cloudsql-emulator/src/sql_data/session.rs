//! One `StreamSqlData` call: bearer token, `StartSession` or `ContinueSession`, faults, then the
//! database protocol relayed through the same login step as the server-side proxy, with the
//! token's principal as the connection's IAM identity (so an IAM user logs in as itself
//! without a password).

use std::sync::Arc;
use std::time::Duration;

use cloudsql_core::sql_data::messages::{
    Ack, DataPacket, SessionMetadata, SqlDataFeature, Status, StreamSqlDataRequest, StreamSqlDataResponse,
    TerminateSession, request, response,
};
use futures_util::StreamExt as _;
use tokio::sync::mpsc;
use tracing::debug;

use super::Shared;
use super::database::Database;
use crate::instance::Instance;
use crate::oauth::ADMIN_SCOPE;

/// How long a client may take to send its first message.
const START_TIMEOUT: Duration = Duration::from_secs(10);

type Responses = futures_util::stream::BoxStream<'static, Result<StreamSqlDataResponse, tonic::Status>>;
type Sender = mpsc::Sender<Result<StreamSqlDataResponse, tonic::Status>>;

/// Checks the call and starts relaying; a refusal is the call's status (sent at once, before
/// any response header, as a frontend refusing the session does).
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
    let (tx, rx) = mpsc::channel(16);
    let (database, from_offset) = match first.message {
        Some(request::Message::StartSession(start)) => {
            let instance = lookup(&shared, &start.instance_id, &start.location_id)?;
            shared.record_call(instance.connection_name());
            let faults = shared.faults.snapshot();
            if faults.failed_precondition
                || faults
                    .unsupported_instances
                    .iter()
                    .any(|i| i == instance.connection_name())
            {
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
            let resumable = faults.reconnect && !start.session_id.is_empty();
            let database = Database::open(instance, grant.principal.clone(), resumable);
            let mut supported_features = Vec::new();
            if resumable {
                supported_features.push(SqlDataFeature::Reconnect as i32);
                shared.keep(&start.session_id, database.clone());
            }
            let metadata = StreamSqlDataResponse {
                ack: None,
                message: Some(response::Message::SessionMetadata(SessionMetadata {
                    supported_features,
                })),
            };
            let _ = tx.try_send(Ok(metadata));
            (database, 0)
        }
        Some(request::Message::ContinueSession(resume)) => {
            let instance = lookup(&shared, &resume.instance_id, &resume.location_id)?;
            shared.record_call(instance.connection_name());
            let database = shared
                .kept(&resume.session_id)
                .filter(|d| Arc::ptr_eq(d.instance(), &instance) && d.principal() == grant.principal)
                .ok_or_else(|| tonic::Status::not_found("no such session to continue"))?;
            let from = first.ack.map_or(0, |a| a.received_offset);
            database.acked(from);
            debug!(
                instance = instance.connection_name(),
                from, "SQL Data Service session resumed"
            );
            (database, from)
        }
        _ => {
            return Err(tonic::Status::invalid_argument(
                "the first message must be StartSession",
            ));
        }
    };
    let shared_for_call = shared.clone();
    tokio::spawn(async move {
        let faults = shared_for_call.faults.snapshot();
        tokio::select! {
            () = up(&shared_for_call, &database, requests, &tx) => {}
            () = down(&database, from_offset, &tx, &faults) => {}
        }
    });
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

/// Client to database: packets placed by offset (a resent overlap is dropped), acks trim what
/// would be resent. Ends with the call, or for good on `TerminateSession`.
async fn up(
    shared: &Shared,
    database: &Arc<Database>,
    mut requests: tonic::Streaming<StreamSqlDataRequest>,
    tx: &Sender,
) {
    while let Ok(Some(message)) = requests.message().await {
        if let Some(ack) = message.ack {
            database.acked(ack.received_offset);
        }
        match message.message {
            Some(request::Message::Data(packet)) => match database.write(packet).await {
                Some(received) => {
                    let _ = tx.try_send(Ok(StreamSqlDataResponse {
                        ack: Some(Ack {
                            received_offset: received,
                        }),
                        message: None,
                    }));
                }
                None => break,
            },
            Some(request::Message::TerminateSession(_)) => {
                database.close().await;
                shared.forget(database);
                break;
            }
            _ => {}
        }
    }
    // The call is over. A kept session waits for a `ContinueSession`; any other ends here.
    if !shared.is_kept(database) {
        database.close().await;
    }
    std::future::pending::<()>().await;
}

/// Database to client, from `cursor`: what the database sent, as it comes, then
/// `TerminateSession` when it closes.
async fn down(database: &Arc<Database>, mut cursor: i64, tx: &Sender, faults: &super::SqlDataFaultState) {
    loop {
        let Some(mut data) = database.read_from(cursor).await else {
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
            return;
        };
        if cursor == 0 && faults.first_byte_delay_ms > 0 {
            tokio::time::sleep(Duration::from_millis(faults.first_byte_delay_ms)).await;
        }
        if let Some(limit) = faults.reset_after_bytes {
            let limit = i64::try_from(limit).unwrap_or(i64::MAX);
            let end = cursor + i64::try_from(data.len()).unwrap_or(i64::MAX);
            if end > limit && database.take_reset() {
                data.truncate(usize::try_from(limit - cursor).unwrap_or(0));
                if !data.is_empty() {
                    let _ = tx.send(Ok(packet(cursor, data))).await;
                }
                debug!("fault: resetting the SQL Data Service stream");
                let _ = tx
                    .send(Err(tonic::Status::unavailable("fault: stream reset")))
                    .await;
                return;
            }
        }
        let len = i64::try_from(data.len()).unwrap_or(i64::MAX);
        if tx.send(Ok(packet(cursor, data))).await.is_err() {
            return;
        }
        cursor += len;
    }
}

fn packet(offset: i64, data: bytes::Bytes) -> StreamSqlDataResponse {
    StreamSqlDataResponse {
        ack: None,
        message: Some(response::Message::Data(DataPacket {
            first_byte_offset: offset,
            data,
        })),
    }
}
