//! The emulator library's one error type.

use std::io;
use std::path::PathBuf;

/// The source of an [`Error`] where it comes from a dependency (rcgen, rustls, toml…), boxed so
/// that those crates do not show in the API.
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// What went wrong starting the emulator, adding an instance, rotating its CAs, writing a
/// credentials file or loading the binary's config. None of these is worth retrying as is: each
/// message says what to change.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A listener could not be bound: the Admin API's port, the DNS server's, or an instance's
    /// proxy address (`addr`).
    #[error("cannot listen on {addr} for the {purpose}")]
    Bind {
        /// What the listener is for, e.g. `Admin API` or `proxy of instance p:r:i`.
        purpose: String,
        /// The address (or, when several were tried, the addresses) asked for.
        addr: String,
        /// Why binding failed.
        #[source]
        source: io::Error,
    },
    /// The emulator was used outside a Tokio runtime; it spawns its servers on the current one.
    #[error("the emulator must be started and used inside a Tokio runtime")]
    NoRuntime,
    /// A connection name is not `PROJECT:REGION:INSTANCE`.
    #[error(
        "connection name `{0}` must have the form PROJECT:REGION:INSTANCE (or DOMAIN:PROJECT:REGION:INSTANCE)"
    )]
    InvalidConnectionName(String),
    /// Generating or using an instance's CA, server certificate or TLS configuration failed.
    #[error("cannot make the certificates of instance `{instance}`")]
    Certificate {
        /// The instance's connection name.
        instance: String,
        /// What failed.
        #[source]
        source: BoxError,
    },
    /// Generating a service account's key failed.
    #[error("cannot make a key for service account `{email}`")]
    ServiceAccountKey {
        /// The service account's email.
        email: String,
        /// What failed.
        #[source]
        source: BoxError,
    },
    /// A credentials file (or its directory) could not be written.
    #[error("cannot write {}", path.display())]
    WriteFile {
        /// The file or directory.
        path: PathBuf,
        /// Why writing failed.
        #[source]
        source: io::Error,
    },
    /// A DNS record is malformed (no name, neither or both of TXT values and a CNAME); the
    /// [`DnsRecordError`] says which.
    #[error(transparent)]
    InvalidDnsRecord(DnsRecordError),
    /// The config file could not be read.
    #[error("cannot read config file {}", path.display())]
    ReadConfig {
        /// The config file.
        path: PathBuf,
        /// Why reading failed.
        #[source]
        source: io::Error,
    },
    /// The config file is not valid: bad TOML, an unknown key, or a malformed DNS record.
    #[error("invalid config file {}", path.display())]
    InvalidConfig {
        /// The config file.
        path: PathBuf,
        /// What is wrong with it.
        #[source]
        source: BoxError,
    },
}

/// What is wrong with a [`DnsRecord`](crate::DnsRecord).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DnsRecordError {
    /// The record's `name` is empty.
    #[error("a DNS record needs a non-empty `name`")]
    NoName,
    /// The record has neither TXT values, addresses nor a CNAME.
    #[error(
        "DNS record `{name}` needs `txt` (a list of strings), `addresses` (a list of IP addresses) \
         or `cname` (a name)"
    )]
    NoValue {
        /// The record's name.
        name: String,
    },
    /// The record's CNAME is empty.
    #[error("DNS record `{name}` has an empty `cname`")]
    EmptyCname {
        /// The record's name.
        name: String,
    },
    /// The record has both addresses and a CNAME.
    #[error("DNS record `{name}` has both `addresses` and `cname`; a CNAME stands alone")]
    AddressesAndCname {
        /// The record's name.
        name: String,
    },
    /// The record has both TXT values and a CNAME.
    #[error("DNS record `{name}` has both `txt` and `cname`; a CNAME stands alone")]
    TxtAndCname {
        /// The record's name.
        name: String,
    },
}

impl Error {
    pub(crate) fn certificate(instance: impl Into<String>, source: impl Into<BoxError>) -> Self {
        Self::Certificate {
            instance: instance.into(),
            source: source.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::error::Error as _;

    use super::*;

    #[test]
    fn messages_name_what_failed_and_keep_the_source_apart() {
        let err = Error::Bind {
            purpose: "Admin API".into(),
            addr: "127.0.0.1:1".into(),
            source: io::Error::from(io::ErrorKind::AddrInUse),
        };
        assert_eq!(err.to_string(), "cannot listen on 127.0.0.1:1 for the Admin API");
        assert!(err.source().is_some());
        let err = Error::certificate("p:r:i", anyhow::anyhow!("key generation failed"));
        assert_eq!(
            err.to_string(),
            "cannot make the certificates of instance `p:r:i`"
        );
        assert_eq!(err.source().unwrap().to_string(), "key generation failed");
    }

    #[test]
    fn errors_are_send_sync_and_static() {
        fn check<T: std::error::Error + Send + Sync + 'static>() {}
        check::<Error>();
    }
}
