//! Why a request got no (complete) answer: the transport errors callers report as "could not be
//! reached" or "broke off", as opposed to an HTTP error status or a malformed body.

use std::error::Error as StdError;
use std::time::Duration;

/// A request that got no answer, or an answer that broke off.
#[derive(Debug, thiserror::Error)]
pub(crate) enum TransportError {
    /// No connection could be opened, or the request could not be sent or answered.
    #[error("could not send the request to {url}")]
    Send {
        /// The request's URL without its query.
        url: String,
        #[source]
        source: hyper_util::client::legacy::Error,
    },
    /// The whole exchange (connecting, sending, reading the answer) took longer than the caller
    /// allows.
    #[error("no complete answer from {url} within {} s", after.as_secs_f32())]
    TimedOut {
        /// The request's URL without its query.
        url: String,
        /// The caller's timeout.
        after: Duration,
    },
    /// The connection failed while the answer's body was read.
    #[error("the answer from {url} broke off")]
    Body {
        /// The request's URL without its query.
        url: String,
        #[source]
        source: hyper::Error,
    },
}

/// Why a connection could not be opened (the source of a [`TransportError::Send`]).
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConnectError {
    /// The TCP connection to the server (or the proxy) failed.
    #[error("could not open a TCP connection to {address}")]
    Tcp {
        /// `host:port` of the server or the proxy.
        address: String,
        #[source]
        source: Box<dyn StdError + Send + Sync>,
    },
    /// The proxy did not open a CONNECT tunnel.
    #[error("proxy {proxy} did not open a tunnel to {target}; check HTTPS_PROXY / ALL_PROXY and NO_PROXY")]
    Tunnel {
        /// The proxy's URL (without credentials).
        proxy: String,
        /// `host:port` the tunnel was for.
        target: String,
        /// hyper-util's `TunnelError` (not nameable outside it).
        #[source]
        source: Box<dyn StdError + Send + Sync>,
    },
    /// The proxy's URL names a protocol this client does not speak.
    #[error(
        "proxy {proxy} is not an http:// proxy, the only kind supported; fix HTTPS_PROXY / HTTP_PROXY \
         / ALL_PROXY or add the host to NO_PROXY"
    )]
    UnsupportedProxy {
        /// The proxy's URL (without credentials).
        proxy: String,
    },
    /// The host is not a name TLS can check a certificate against.
    #[error("`{host}` is not a valid DNS name or IP address for TLS")]
    ServerName {
        /// The URL's host.
        host: String,
    },
    /// The TLS handshake with the server failed (its certificate is not trusted, for one).
    #[error("TLS handshake with {host} failed")]
    Tls {
        /// The URL's host.
        host: String,
        #[source]
        source: std::io::Error,
    },
}
