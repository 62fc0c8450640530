//! The `tracing` spans of a connect, a refresh and a relayed local-socket connection, with
//! their stable fields.

use std::error::Error as StdError;
use std::fmt::Display;

use tracing::field::{Empty, display};
use tracing::{Span, info_span};

use crate::{ErrorChain, InstanceConnectionName, IpType, RefreshStrategy};

/// One connect: `instance` as given, the `ip_type`, `iam_authn` and refresh `strategy` it uses,
/// and its `error` if it fails.
pub(crate) fn connect_span(
    instance: &str,
    ip_type: IpType,
    iam_authn: bool,
    strategy: RefreshStrategy,
) -> Span {
    info_span!(
        "connect",
        instance = %instance,
        ip_type = ?ip_type,
        iam_authn,
        strategy = ?strategy,
        error = Empty,
    )
}

/// One refresh of an instance's certificate and connect settings. `attempt` is 1 for the
/// first refresh after a success (or the first ever), and counts up while refreshes fail.
pub(crate) fn refresh_span(
    instance: &InstanceConnectionName,
    iam_authn: bool,
    strategy: RefreshStrategy,
    attempt: u32,
) -> Span {
    info_span!(
        "refresh",
        instance = %instance,
        iam_authn,
        strategy = ?strategy,
        attempt,
        error = Empty,
    )
}

/// One connection a local socket relays: `bytes_sent` and `bytes_received` (to and from the
/// instance) are recorded when both sides closed, `error` when it could not be dialled or ended
/// with an I/O error.
pub(crate) fn relay_span(instance: &str, socket: &dyn Display) -> Span {
    info_span!(
        "relay",
        instance = %instance,
        socket = %socket,
        bytes_sent = Empty,
        bytes_received = Empty,
        error = Empty,
    )
}

/// Records `error` with its causes in the span's `error` field.
pub(crate) fn record_error(span: &Span, error: &(dyn StdError + 'static)) {
    span.record("error", display(ErrorChain(error)));
}
