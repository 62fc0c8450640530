//! What a finished connect or refresh records: its error (with its causes) on its span, and its
//! metrics.

use std::sync::Arc;

use tracing::Span;

use super::{ConnectMeter, RefreshMeter, record_error};
use crate::conn_info::ConnInfo;
use crate::{CloudSqlStream, Error, InstanceConnectionName};

/// Records a finished connect and hands its result back: a stream gets its connection meter
/// (latency recorded, one more open connection); an error goes on the span and into the dial
/// failure count, labelled with the connection name when it was resolved, else the input.
pub(crate) fn connect_finished(
    span: &Span,
    meter: ConnectMeter,
    result: Result<CloudSqlStream, Error>,
    input: &str,
    resolved: Option<&InstanceConnectionName>,
) -> Result<CloudSqlStream, Error> {
    match result {
        Ok(mut stream) => {
            let connection = meter.succeeded(stream.instance());
            stream.set_meter(connection);
            Ok(stream)
        }
        Err(error) => {
            record_error(span, &error);
            meter.failed(input, resolved, &error);
            Err(error)
        }
    }
}

/// Records a finished refresh on its span and in the refresh counts.
pub(crate) fn refresh_finished(span: &Span, meter: &RefreshMeter, result: &Result<Arc<ConnInfo>, Error>) {
    if let Err(error) = result {
        record_error(span, error);
    }
    meter.record(result.as_ref().map(|_| ()));
}
