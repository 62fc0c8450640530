//! What a local socket needs from the connector that made it, and nothing more: whether it is
//! closed, a check of the instance before serving, and one dial per accepted client.
//!
//! The connector implements this; the socket holds it as a trait object (strongly while being
//! built, weakly in its accept loop), so this module does not depend on the connector's insides.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::{CloudSqlStream, DialOptions, Error};

/// A boxed, sendable future of a connector call.
pub(crate) type DialFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, Error>> + Send + 'a>>;

/// Dials an instance with given options on behalf of a local socket.
pub(crate) trait InstanceDialer: fmt::Debug + Send + Sync + 'static {
    /// Whether the connector was closed: nothing new is served, and every dial fails with
    /// [`Error::Closed`].
    fn is_closed(&self) -> bool;

    /// Checks `instance` before a socket serves it: its name resolves, and when `options` name
    /// an engine, the instance runs it ([`Error::IncompatibleDriver`] otherwise).
    fn check<'a>(self: Arc<Self>, instance: &'a str, options: &'a DialOptions) -> DialFuture<'a, ()>;

    /// Opens one connection to `instance`, as [`Connector::connect_with`](crate::Connector::connect_with)
    /// does.
    fn dial<'a>(
        self: Arc<Self>,
        instance: &'a str,
        options: &'a DialOptions,
    ) -> DialFuture<'a, CloudSqlStream>;
}
