//! Hostile or broken input — mangled instance names, odd Admin API answers — is refused early
//! with a short, typed error, and never reaches the Admin API as a different request.
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

mod support;

use cloudsql::core::{Connector, Credentials, Error, ErrorChain, ErrorKind};
use support::*;

/// An error message is short and printable, whatever the input.
fn assert_bounded(err: &Error) {
    let shown = err.to_string();
    assert!(shown.len() < 1200, "{} bytes: {shown}", shown.len());
    assert!(!shown.chars().any(char::is_control), "{shown:?}");
}

#[tokio::test]
async fn mangled_names_of_a_real_instance_never_reach_the_admin_api() {
    let env = Env::new().await;
    let inst = env.add(env.pg_config()).await;
    let name = inst.connection_name().to_owned();
    let (project_region, id) = name.rsplit_once(':').unwrap();
    let mangled = [
        format!("..:us-central1:{id}"),
        format!("test-project:..:{id}"),
        format!("{project_region}:.."),
        format!("{project_region}:."),
        format!("{project_region}:{id}."),
        format!("{project_region}:.{id}"),
        format!("{project_region}:{id}\\"),
        format!("{project_region}:..\\{id}"),
        format!("{project_region}:{id}\0"),
        format!("{project_region}:{id}\u{7}"),
        format!("{project_region}:{id}\u{200b}"),
        format!("{project_region}:{id}\u{202e}"),
        format!("{project_region}:{}", id.to_uppercase()),
        format!("TEST-PROJECT:us-central1:{id}"),
        format!("{project_region}:{id}{}", "a".repeat(300)),
        format!("{}:us-central1:{id}", "p".repeat(300)),
        format!("{project_region}:{id}/../{id}"),
        format!("{project_region}:{id}%2F"),
        format!("test-project:us:central1:{id}"),
        format!("test:project:us-central1:{id}"),
        format!("{project_region}:{id}:"),
    ];
    let connector = env.connector();
    for input in &mangled {
        let err = connector.connect(input).await.unwrap_err();
        assert!(
            matches!(err, Error::InvalidInstanceName { .. }),
            "{input:?} gave {err:?}"
        );
        assert_eq!(err.kind(), ErrorKind::Config);
        assert_bounded(&err);
    }
    assert_eq!(
        inst.counters().total(),
        0,
        "no mangled name reached the Admin API: {:?}",
        inst.counters().snapshot()
    );
    // The real name still works with the same connector.
    assert_eq!(select_one(&connector, &name, &trust_login()).await.unwrap(), 1);
}

#[tokio::test]
async fn a_name_with_colons_is_never_looked_up_in_dns() {
    let env = Env::new().await;
    for input in ["proj:us:central1:db", "db.example.com:x", "proj:r:db.example.com"] {
        let err = env.connector().connect(input).await.unwrap_err();
        assert!(
            matches!(err, Error::InvalidInstanceName { .. }),
            "{input:?} gave {err:?}"
        );
    }
}

#[tokio::test]
async fn a_missing_region_is_an_incomplete_answer() {
    let env = Env::new().await;
    let inst = env.add(env.pg_config()).await;
    inst.faults().reported_region(Some(""));
    let err = env.connector().connect(inst.connection_name()).await.unwrap_err();
    assert!(matches!(err, Error::AdminApiResponse { .. }), "{err:?}");
    assert!(err.to_string().contains("connectSettings has no region"), "{err}");
}

#[tokio::test]
async fn a_huge_region_from_the_api_is_quoted_briefly() {
    let env = Env::new().await;
    let inst = env.add(env.pg_config()).await;
    inst.faults()
        .reported_region(Some(&format!("europe\u{1b}[2J{}", "x".repeat(100_000))));
    let err = env.connector().connect(inst.connection_name()).await.unwrap_err();
    match &err {
        Error::RegionMismatch { actual, .. } => {
            assert!(actual.starts_with("europe\\u{1b}[2Jxxx"), "{actual}");
            assert!(actual.contains("truncated"), "{actual}");
        }
        other => panic!("expected RegionMismatch, got {other:?}"),
    }
    assert_bounded(&err);
}

const MIB: u64 = 1 << 20;

#[tokio::test]
async fn an_8_mib_html_error_page_gives_a_short_error_that_keeps_its_status() {
    let env = Env::new().await;
    let inst = env.add(env.pg_config()).await;
    inst.faults().admin_status(500, None);
    inst.faults().error_body_bytes(Some(8 * MIB));
    let err = env.connector().connect(inst.connection_name()).await.unwrap_err();
    match &err {
        Error::AdminApi { status, message, .. } => {
            assert_eq!(*status, 500);
            assert!(message.starts_with("<!DOCTYPE html>"), "{message}");
            assert!(message.len() < 1024, "{} bytes", message.len());
        }
        other => panic!("expected AdminApi, got {other:?}"),
    }
    assert!(err.is_retryable(), "a 500 stays a transient failure");
    assert_bounded(&err);
    assert!(inst.counters().total() > 1, "a 500 is still retried");
}

#[tokio::test]
async fn a_server_error_with_a_huge_page_is_retried_to_success() {
    let env = Env::new().await;
    let inst = env.add(env.pg_config()).await;
    inst.faults().admin_status(503, Some(1));
    inst.faults().error_body_bytes(Some(8 * MIB));
    let connector = env.connector();
    assert_eq!(
        select_one(&connector, inst.connection_name(), &trust_login())
            .await
            .unwrap(),
        1
    );
}

#[tokio::test]
async fn an_oversized_success_body_is_a_typed_error_and_not_retried() {
    let env = Env::new().await;
    let inst = env.add(env.pg_config()).await;
    inst.faults().success_body_bytes(Some(2 * MIB));
    let err = env.connector().connect(inst.connection_name()).await.unwrap_err();
    match &err {
        Error::AdminApiResponseTooLarge { limit, .. } => assert_eq!(*limit, MIB),
        other => panic!("expected AdminApiResponseTooLarge, got {other:?}"),
    }
    assert!(err.to_string().contains("body over 1048576 bytes"), "{err}");
    assert_bounded(&err);
    // One call per method at most: retrying would read another huge body each time.
    assert!(inst.counters().total() <= 2, "{:?}", inst.counters().snapshot());
}

/// The two ways a token comes from the token endpoint: an IAM login token for a service account
/// (our own OAuth2 exchange; the Admin API token is a JWT the service account signs itself), and
/// an `authorized_user`'s Admin API token (`google-cloud-auth`'s refresh-token grant).
enum TokenPath {
    ServiceAccountLogin,
    AuthorizedUserAdmin,
}

const TOKEN_PATHS: [TokenPath; 2] = [TokenPath::ServiceAccountLogin, TokenPath::AuthorizedUserAdmin];

/// A connector whose first connect must ask the token endpoint along `path`.
fn token_connector(env: &Env, path: &TokenPath) -> Connector {
    match path {
        TokenPath::ServiceAccountLogin => env.builder().iam_authn(true).build().unwrap(),
        TokenPath::AuthorizedUserAdmin => {
            let user = format!("{}@example.com", unique("dev"));
            let file = env.emulator.write_authorized_user_file(&user, &env.dir).unwrap();
            Connector::builder()
                .credentials(Credentials::from_file(file).unwrap())
                .admin_api_endpoint(env.emulator.admin_api_url())
                .build()
                .unwrap()
        }
    }
}

#[tokio::test]
async fn a_token_endpoint_failing_once_does_not_fail_the_connect() {
    for path in &TOKEN_PATHS {
        let env = Env::new().await;
        let inst = env.add(env.pg_config()).await;
        env.emulator.token_faults().status(500, Some(1));
        let connector = token_connector(&env, path);
        // The stream is enough: the token went into the certificate request or the Admin API
        // calls, and the database login is not what this is about.
        connector.connect(inst.connection_name()).await.unwrap();
        assert!(
            env.emulator.token_requests() >= 2,
            "the token request was retried"
        );
    }
}

#[tokio::test]
async fn a_token_endpoint_that_keeps_failing_is_a_transient_credentials_error() {
    for path in &TOKEN_PATHS {
        let env = Env::new().await;
        let inst = env.add(env.pg_config()).await;
        env.emulator.token_faults().status(503, None);
        let err = token_connector(&env, path)
            .connect(inst.connection_name())
            .await
            .unwrap_err();
        match &err {
            Error::Credentials { source, .. } => {
                assert!(source.is_transient(), "{source}");
                let shown = ErrorChain(source).to_string();
                assert!(shown.contains("503"), "{shown}");
            }
            other => panic!("expected Credentials, got {other:?}"),
        }
        assert!(err.is_retryable());
        assert!(env.emulator.token_requests() >= 3, "three tries in all");
        // The certificate is never asked for without its token.
        assert_eq!(inst.counters().calls("generateEphemeralCert"), 0);
    }
}

#[tokio::test]
async fn a_token_refusal_is_not_retried() {
    for path in &TOKEN_PATHS {
        let env = Env::new().await;
        let inst = env.add(env.pg_config()).await;
        env.emulator.token_faults().status(400, None);
        let err = token_connector(&env, path)
            .connect(inst.connection_name())
            .await
            .unwrap_err();
        match &err {
            Error::Credentials { source, .. } => assert!(!source.is_transient(), "{source}"),
            other => panic!("expected Credentials, got {other:?}"),
        }
        // Each of the refresh's two Admin API calls may ask once; a retried 400 would ask 3 times.
        assert!(
            env.emulator.token_requests() <= 2,
            "{}",
            env.emulator.token_requests()
        );
    }
}

#[tokio::test]
async fn a_malformed_token_answer_is_not_quoted() {
    for path in &TOKEN_PATHS {
        let env = Env::new().await;
        let inst = env.add(env.pg_config()).await;
        env.emulator.token_faults().malformed(true);
        let err = token_connector(&env, path)
            .connect(inst.connection_name())
            .await
            .unwrap_err();
        match &err {
            Error::Credentials { source, .. } => {
                let shown = ErrorChain(source).to_string();
                // The broken answer began a token: nothing of it is repeated.
                assert!(!shown.contains("ya29"), "{shown}");
                if let TokenPath::ServiceAccountLogin = path {
                    assert!(shown.contains("malformed token response"), "{shown}");
                }
            }
            other => panic!("expected Credentials, got {other:?}"),
        }
    }
}
