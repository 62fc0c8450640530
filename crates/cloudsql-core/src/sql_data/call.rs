//! Opening one `StreamSqlData` call: the request metadata (bearer token, routing and quota
//! project headers) and the first message.

use std::sync::Arc;

use tokio::sync::mpsc;
use tonic::codegen::http::uri::PathAndQuery;
use tonic::metadata::MetadataValue;
use tonic::transport::Channel;

use super::messages::{
    Ack, ContinueSession, STREAM_SQL_DATA_PATH, StartSession, StreamSqlDataRequest, StreamSqlDataResponse,
    request,
};

/// The largest message accepted from the server (Go's limit).
const MAX_MESSAGE: usize = 100 * 1024 * 1024;
/// Requests queued for the HTTP/2 stream before senders wait.
const OUTBOUND_QUEUE: usize = 32;

/// Where a tunnel goes, in the Admin API's resource names.
#[derive(Debug)]
pub(crate) struct Target {
    /// `project:region:instance`, for errors and logs.
    pub(crate) instance: String,
    /// `locations/<region>`.
    pub(crate) location_id: String,
    /// `projects/<project>/instances/<instance>`.
    pub(crate) instance_id: String,
    /// Random and unguessable.
    pub(crate) session_id: String,
    pub(crate) quota_project: Option<String>,
}

/// An open call: requests go into `outbound`, responses come from `inbound`.
pub(crate) struct Call {
    pub(crate) outbound: mpsc::Sender<StreamSqlDataRequest>,
    pub(crate) inbound: tonic::Streaming<StreamSqlDataResponse>,
}

/// Starts a call with `StartSession` as its first message and waits for the response headers
/// (or a status, which a server refusing the session sends at once).
pub(crate) async fn start(
    channel: Channel,
    target: &Arc<Target>,
    token: &str,
) -> Result<Call, tonic::Status> {
    let first = StreamSqlDataRequest {
        ack: None,
        message: Some(request::Message::StartSession(StartSession {
            location_id: target.location_id.clone(),
            instance_id: target.instance_id.clone(),
            session_id: target.session_id.clone(),
        })),
        instance_id: String::new(),
    };
    open(channel, target, token, first).await
}

/// Resumes the session on a new call with `ContinueSession`, acknowledging the `received` bytes.
pub(crate) async fn resume(
    channel: Channel,
    target: &Arc<Target>,
    token: &str,
    received: i64,
) -> Result<Call, tonic::Status> {
    let first = StreamSqlDataRequest {
        ack: Some(Ack {
            received_offset: received,
        }),
        message: Some(request::Message::ContinueSession(ContinueSession {
            location_id: target.location_id.clone(),
            instance_id: target.instance_id.clone(),
            session_id: target.session_id.clone(),
        })),
        instance_id: String::new(),
    };
    open(channel, target, token, first).await
}

async fn open(
    channel: Channel,
    target: &Arc<Target>,
    token: &str,
    first: StreamSqlDataRequest,
) -> Result<Call, tonic::Status> {
    let (outbound, queue) = mpsc::channel(OUTBOUND_QUEUE);
    outbound
        .try_send(first)
        .map_err(|_| tonic::Status::internal("the tunnel's request queue refused its first message"))?;
    let requests = futures_util::stream::unfold(queue, |mut queue| async move {
        queue.recv().await.map(|message| (message, queue))
    });
    let mut request = tonic::Request::new(requests);
    let metadata = request.metadata_mut();
    let mut bearer = MetadataValue::try_from(format!("Bearer {token}"))
        .map_err(|_| tonic::Status::unauthenticated("the access token is not a valid header value"))?;
    bearer.set_sensitive(true);
    metadata.insert("authorization", bearer);
    let params = format!(
        "instance_id={}&location_id={}",
        target.instance_id, target.location_id
    );
    if let Ok(value) = MetadataValue::try_from(params) {
        metadata.insert("x-goog-request-params", value);
    }
    if let Some(project) = &target.quota_project
        && let Ok(value) = MetadataValue::try_from(project.as_str())
    {
        metadata.insert("x-goog-user-project", value);
    }
    let mut grpc = tonic::client::Grpc::new(channel).max_decoding_message_size(MAX_MESSAGE);
    grpc.ready()
        .await
        .map_err(|e| tonic::Status::unavailable(format!("the tunnel's HTTP/2 connection failed: {e}")))?;
    let codec = tonic_prost::ProstCodec::<StreamSqlDataRequest, StreamSqlDataResponse>::default();
    let response = grpc
        .streaming(request, PathAndQuery::from_static(STREAM_SQL_DATA_PATH), codec)
        .await?;
    Ok(Call {
        outbound,
        inbound: response.into_inner(),
    })
}
