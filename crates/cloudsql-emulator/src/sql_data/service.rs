//! The `SqlDataService` as a tower service, written out as tonic's generated code would be
//! (the messages come from `cloudsql_core::sql_data::messages`, so no code generation is needed).

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use cloudsql_core::sql_data::messages::{STREAM_SQL_DATA_PATH, StreamSqlDataRequest, StreamSqlDataResponse};
use futures_util::stream::BoxStream;
use tonic::codegen::{BoxFuture, Service, StdError, http};

use super::Shared;

/// The service; cheap to clone.
#[derive(Clone)]
pub(crate) struct SqlDataService(pub(crate) Arc<Shared>);

impl tonic::server::NamedService for SqlDataService {
    const NAME: &'static str = "google.cloud.sql.v1beta4.SqlDataService";
}

struct StreamSqlData(Arc<Shared>);

type Responses = BoxStream<'static, Result<StreamSqlDataResponse, tonic::Status>>;

impl tonic::server::StreamingService<StreamSqlDataRequest> for StreamSqlData {
    type Response = StreamSqlDataResponse;
    type ResponseStream = Responses;
    type Future = BoxFuture<tonic::Response<Responses>, tonic::Status>;

    fn call(&mut self, request: tonic::Request<tonic::Streaming<StreamSqlDataRequest>>) -> Self::Future {
        let shared = self.0.clone();
        Box::pin(async move { super::session::serve(shared, request).await })
    }
}

impl<B> Service<http::Request<B>> for SqlDataService
where
    B: tonic::codegen::Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        if request.uri().path() == STREAM_SQL_DATA_PATH {
            let handler = StreamSqlData(self.0.clone());
            let codec = tonic_prost::ProstCodec::<StreamSqlDataResponse, StreamSqlDataRequest>::default();
            Box::pin(async move { Ok(tonic::server::Grpc::new(codec).streaming(handler, request).await) })
        } else {
            Box::pin(async { Ok(tonic::Status::unimplemented("no such method").into_http()) })
        }
    }
}
