//! gRPC statuses from the SQL Data Service, turned into errors that name the instance, the
//! status and what to do.

use tonic::Code;

use crate::Error;

/// The upper-case gRPC name of a code, as Google's docs spell it.
pub(crate) fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

fn hint(code: Code) -> &'static str {
    match code {
        Code::Unauthenticated => "the access token was refused: check the connector's credentials",
        Code::PermissionDenied => {
            "make sure the account has the Cloud SQL Client role on the instance's project"
        }
        Code::NotFound => "check the connection name `project:region:instance`",
        Code::FailedPrecondition => {
            "the instance does not offer the SQL Data Service; connect with another IpType"
        }
        Code::Unimplemented => {
            "the endpoint does not serve the SQL Data Service; check ConnectorBuilder::sql_data_endpoint"
        }
        Code::DeadlineExceeded => "the tunnel reached its maximum duration; open a new connection",
        _ => "the tunnel may work again: retry the connection",
    }
}

/// The connector error for a status that ended (or refused) a tunnel to `instance`.
pub(crate) fn error(instance: &str, status: &tonic::Status) -> Error {
    Error::SqlData {
        instance: instance.to_owned(),
        code: code_name(status.code()),
        message: crate::excerpt::excerpt(status.message()),
        hint: hint(status.code()),
    }
}

/// Whether the status says the instance does not offer the tunnel (Go checks for the
/// `unsupported instance edition:` prefix; any `FAILED_PRECONDITION` before the first byte
/// means the same here).
pub(crate) fn is_unsupported(status: &tonic::Status) -> bool {
    status.code() == Code::FailedPrecondition
}

/// Whether a call that ended with this status may be resumed with `ContinueSession`.
pub(crate) fn is_transient(code: Code) -> bool {
    matches!(
        code,
        Code::Unavailable | Code::Aborted | Code::Internal | Code::Unknown | Code::Cancelled
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_the_instance_status_and_remedy() {
        let err = error("p:r:i", &tonic::Status::permission_denied("nope"));
        let text = err.to_string();
        assert!(text.contains("p:r:i") && text.contains("PERMISSION_DENIED") && text.contains("nope"));
        assert!(text.contains("Cloud SQL Client role"), "{text}");
        assert_eq!(err.kind(), crate::ErrorKind::Config);
        let err = error("p:r:i", &tonic::Status::unavailable("later"));
        assert!(err.is_retryable());
    }
}
