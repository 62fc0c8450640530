//! Every [`Error`] variant, printed as users print it: `{}` alone and with its whole chain. The
//! chain must say each cause once (nothing repeated), keep every source's text (nothing lost),
//! and the variant's own message must not copy its source's text, which is where a token or a
//! key from a credentials or transport error would leak into logs that print `{}` alone.

use std::collections::BTreeSet;
use std::error::Error as StdError;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::{ConnectStage, Error, Source};
use crate::credentials::CredentialsError;
use crate::{Engine, ErrorChain, IpType};

/// Looks like an OAuth2 access token; put into every source below.
const SECRET: &str = "ya29.a0AfB_secret-token-DO-NOT-LOG";

/// The number of variants `index` knows; a new variant fails to compile there until counted.
const VARIANTS: usize = 21;

/// A distinct number per variant. Exhaustive on purpose: a new variant fails to compile here,
/// and then fails [`every_variant_keeps_its_chain_whole_and_its_own_text_clean`] until a sample
/// of it is added to [`samples`].
fn index(error: &Error) -> usize {
    match error {
        Error::InvalidInstanceName { .. } => 0,
        Error::Config { .. } => 1,
        Error::Credentials { .. } => 2,
        Error::AdminApi { .. } => 3,
        Error::AdminApiUnreachable { .. } => 4,
        Error::AdminApiResponse { .. } => 5,
        Error::AdminApiResponseTooLarge { .. } => 6,
        Error::RegionMismatch { .. } => 7,
        Error::NoIpAddress { .. } => 8,
        Error::IncompatibleDriver { .. } => 9,
        Error::IamAuthnNotSupported { .. } => 10,
        Error::InvalidCertificate { .. } => 11,
        Error::Dial { .. } => 12,
        Error::Tls { .. } => 13,
        Error::MetadataExchange { .. } => 14,
        Error::DnsResolution { .. } => 15,
        Error::Timeout { .. } => 16,
        Error::SqlData { .. } => 17,
        Error::SqlDataExhausted { .. } => 18,
        Error::Closed => 19,
        Error::LocalSocketIo { .. } => 20,
    }
}

/// A source error whose text holds [`SECRET`].
fn source(what: &str) -> Source {
    Arc::new(std::io::Error::other(format!("{what} (sent {SECRET})")))
}

fn samples() -> Vec<Error> {
    let instance = || "p:r:i".to_owned();
    vec![
        Error::InvalidInstanceName {
            input: "p:i".into(),
            reason: "it has 2 parts".into(),
        },
        Error::config("DialOptions::timeout must be greater than zero"),
        Error::Credentials {
            instance: instance(),
            source: CredentialsError::with_source(
                "the token endpoint refused the refresh token",
                std::io::Error::other(format!("invalid_grant for {SECRET}")),
            ),
        },
        Error::AdminApi {
            instance: instance(),
            method: "connectSettings",
            status: 403,
            api_status: Some("PERMISSION_DENIED".into()),
            message: "The caller does not have permission".into(),
        },
        Error::AdminApiUnreachable {
            instance: instance(),
            method: "generateEphemeralCert",
            source: source("connection reset"),
        },
        Error::AdminApiResponse {
            instance: instance(),
            method: "connectSettings",
            detail: "no serverCaCert".into(),
        },
        Error::AdminApiResponseTooLarge {
            instance: instance(),
            method: "connectSettings",
            limit: 1 << 20,
        },
        Error::RegionMismatch {
            instance: instance(),
            expected: "r".into(),
            actual: "elsewhere".into(),
        },
        Error::NoIpAddress {
            instance: instance(),
            wanted: IpType::Private,
            available: "public (PRIMARY)".into(),
        },
        Error::IncompatibleDriver {
            instance: instance(),
            driver: Engine::Postgres,
            database_version: "MYSQL_8_0".into(),
        },
        Error::IamAuthnNotSupported {
            instance: instance(),
            engine: Engine::SqlServer,
        },
        Error::InvalidCertificate {
            instance: instance(),
            detail: "it expired".into(),
        },
        Error::Dial {
            instance: instance(),
            address: "10.0.0.1:3307".into(),
            source: source("connection refused"),
        },
        Error::Tls {
            instance: instance(),
            address: "10.0.0.1:3307".into(),
            source: source("expected common name p:i"),
        },
        Error::MetadataExchange {
            instance: instance(),
            detail: "the server closed the connection".into(),
        },
        Error::DnsResolution {
            name: "db.example.com".into(),
            detail: "no TXT record".into(),
        },
        Error::Timeout {
            instance: instance(),
            timeout: Duration::from_secs(5),
            stage: ConnectStage::Refreshing,
            last_error: Some(source("HTTP 503")),
        },
        Error::SqlData {
            instance: instance(),
            code: "UNAVAILABLE",
            message: "backend unavailable".into(),
            hint: "retry later",
        },
        Error::SqlDataExhausted {
            instance: instance(),
            message: "quota".into(),
            retry_after: Duration::from_secs(5),
        },
        Error::Closed,
        Error::LocalSocketIo {
            action: "listen on",
            path: PathBuf::from("/tmp/cloudsql-x/.s.PGSQL.5432"),
            source: source("address in use"),
        },
    ]
}

/// `error`'s own text, then each source's.
fn chain(error: &Error) -> Vec<String> {
    let mut texts = vec![error.to_string()];
    let mut next = error.source();
    while let Some(cause) = next {
        texts.push(cause.to_string());
        next = cause.source();
    }
    texts
}

#[test]
fn every_variant_keeps_its_chain_whole_and_its_own_text_clean() {
    let samples = samples();
    let covered: BTreeSet<usize> = samples.iter().map(index).collect();
    assert_eq!(
        covered,
        (0..VARIANTS).collect(),
        "samples() must hold one error of every variant"
    );
    for error in &samples {
        let texts = chain(error);
        let whole = ErrorChain(error).to_string();
        println!("{whole}");
        assert!(!texts[0].is_empty(), "{error:?} has no message");
        // Nothing repeated: no text in the chain already holds a later one.
        for (i, outer) in texts.iter().enumerate() {
            for inner in &texts[i + 1..] {
                assert!(
                    !outer.contains(inner.as_str()),
                    "`{outer}` repeats its cause `{inner}`"
                );
            }
        }
        // Nothing lost: the printed chain holds every source's text, once.
        for text in &texts {
            assert_eq!(whole.matches(text.as_str()).count(), 1, "`{text}` in `{whole}`");
        }
        // The secret is only where it was put: in a source, shown once by a chain printer,
        // never in the variant's own message.
        assert!(!texts[0].contains(SECRET), "`{}` leaks its source", texts[0]);
        let expected = usize::from(texts.len() > 1);
        assert_eq!(whole.matches(SECRET).count(), expected, "{whole}");
    }
}
