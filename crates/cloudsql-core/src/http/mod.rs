//! The process's one HTTP client for Google's APIs (the Admin API, the token endpoints, IAM
//! Credentials and the metadata server): HTTP/1.1 on hyper, TLS through rustls with the
//! platform's trust store, proxies from the environment.
//!
//! Loading and parsing every root certificate of the system takes several milliseconds, and a
//! connector used to build three clients (two token sources and the Admin API client), one after
//! another, before its first token request could start: on a cold start that was as long as the
//! key generation. One client per process loads the roots once, on a thread of its own started
//! by `ConnectorBuilder::build` (`prepare`). It keeps no idle connections (see `client.rs`);
//! timeouts are set per request by each caller.
//!
//! - `client.rs` sends requests and holds the shared instance;
//! - `connector.rs` opens connections: direct, through an HTTP CONNECT tunnel (`HTTPS_PROXY`), or
//!   to a forwarding proxy (`HTTP_PROXY`), with TLS on top for `https://`; `stream.rs` is the
//!   connection it yields;
//! - `body.rs` reads answers with a size cap;
//! - `url.rs` checks base URLs and builds request URLs from percent-encoded segments;
//! - `error.rs` says why a request got no answer.

mod body;
mod client;
mod connector;
mod error;
mod stream;
#[cfg(test)]
pub(crate) mod test_servers;
mod url;

pub(crate) use body::{BODY_LIMIT, BodyError, ERROR_BODY_LIMIT, Prefix, read_limited, read_prefix};
pub(crate) use client::{Client, Request, Response, client, prepare};
pub(crate) use error::TransportError;
pub(crate) use url::{BaseUrl, parse_url, without_userinfo};
