//! The library's public calls fail with `cloudsql_emulator::Error` variants that say what failed
//! and keep their cause.
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

use std::error::Error as _;
use std::path::Path;

use cloudsql_emulator::{DnsRecord, DnsRecordError, Emulator, Error, FileConfig, InstanceConfig};

#[tokio::test]
async fn a_taken_port_is_a_bind_error_naming_the_address() {
    let emulator = Emulator::start().await.unwrap();
    let taken = emulator
        .admin_api_url()
        .trim_start_matches("http://")
        .parse()
        .unwrap();
    let err = Emulator::start_on(taken).await.unwrap_err();
    assert!(
        matches!(&err, Error::Bind { addr, .. } if *addr == taken.to_string()),
        "{err:?}"
    );
    assert!(err.to_string().contains("Admin API"), "{err}");
    assert!(err.source().is_some());
}

#[tokio::test]
async fn a_malformed_connection_name_is_refused() {
    let emulator = Emulator::start().await.unwrap();
    let err = emulator
        .add_instance(InstanceConfig::new(
            "no-region",
            "POSTGRES_15",
            "127.0.0.1:5432".parse().unwrap(),
        ))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::InvalidConnectionName(name) if name == "no-region"),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_dns_record_without_values_is_refused() {
    let emulator = Emulator::start().await.unwrap();
    let err = emulator
        .set_dns_record(&DnsRecord::txt("x.example.com", &[]))
        .unwrap_err();
    assert!(
        matches!(&err, Error::InvalidDnsRecord(DnsRecordError::NoValue { name }) if name == "x.example.com"),
        "{err:?}"
    );
    assert!(err.to_string().contains("needs `txt`"), "{err}");
}

#[test]
fn a_missing_config_file_is_a_read_error_with_its_path() {
    let path = Path::new("/nonexistent/cloudsql-emulator.toml");
    let err = FileConfig::load(path).unwrap_err();
    assert!(
        matches!(&err, Error::ReadConfig { path: p, .. } if p == path),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("/nonexistent/cloudsql-emulator.toml"),
        "{err}"
    );
}
