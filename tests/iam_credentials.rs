//! Automatic IAM database login with every credential type `google-cloud-auth` reads:
//! Workload Identity Federation (`external_account`) files, `impersonated_service_account`
//! files and `Credentials::impersonated` (over credentials files and over a token of the
//! application's own), on PostgreSQL and MySQL backends that check passwords
//! for real. The emulator's STS and IAM Credentials API issue the tokens; its counters show they
//! were asked.
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

mod support;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use cloudsql::core::{Connector, Credentials, Error, ErrorChain};
use cloudsql_emulator::{Emulator, Instance};
use mysql_async::prelude::Queryable;
use support::*;

/// A workload identity provider (GitHub Actions' shape).
const AUDIENCE: &str = "//iam.googleapis.com/projects/123456789012/locations/global/workloadIdentityPools/github/providers/actions";
const SUBJECT: &str = "repo:octo-org/app:ref:refs/heads/main";

fn service_account(name: &str) -> String {
    format!("{}@test-project.iam.gserviceaccount.com", unique(name))
}

/// PostgreSQL (password-checking cluster) and MySQL instances where `principal` logs in by IAM;
/// returns them with the PostgreSQL and MySQL user names.
async fn iam_instances(env: &Env, principal: &str) -> (Arc<Instance>, String, Arc<Instance>, String) {
    let password = unique("only-the-emulator-knows");
    let pg_user = principal
        .strip_suffix(".gserviceaccount.com")
        .unwrap_or(principal)
        .to_owned();
    create_scram_role(&pg_user, &password).await;
    let pg = env
        .add(env.pg_config_for(scram_pg()).iam_user(principal, &password))
        .await;
    let my_user = principal.split('@').next().unwrap().to_owned();
    create_mysql_user(&my_user, &password).await;
    let my = env.add(env.mysql_config().iam_user(principal, &password)).await;
    (pg, pg_user, my, my_user)
}

fn iam_connector(env: &Env, credentials: Credentials) -> Connector {
    Connector::builder()
        .credentials(credentials)
        .admin_api_endpoint(env.emulator.admin_api_url())
        .iam_authn(true)
        .build()
        .unwrap()
}

/// Logs in as `principal` with no password on both instances and checks who the backend says
/// logged in.
async fn logs_in_on_both(
    connector: &Connector,
    principal: &str,
    instances: &(Arc<Instance>, String, Arc<Instance>, String),
) {
    let (pg, pg_user, my, my_user) = instances;
    let mut config = tokio_postgres::Config::new();
    config.user(principal).dbname("postgres");
    let (client, connection) = cloudsql::postgres::connect(connector, pg.connection_name(), &config)
        .await
        .unwrap();
    tokio::spawn(connection);
    let user: String = client
        .query_one("SELECT current_user::text", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(&user, pg_user);

    let mut conn = cloudsql::mysql::connect(connector, my.connection_name(), mysql_login(principal, None))
        .await
        .unwrap();
    let current: Option<String> = conn.query_first("SELECT CURRENT_USER()").await.unwrap();
    assert_eq!(current.unwrap(), format!("{my_user}@%"));
    conn.disconnect().await.unwrap();

    // The Admin API was called with the principal's own token too.
    assert_eq!(pg.counters().last_request().unwrap().principal, principal);
}

/// Writes `json` to `dir/name`.
fn write(dir: &std::path::Path, name: &str, json: &serde_json::Value) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, serde_json::to_vec(json).unwrap()).unwrap();
    path
}

/// A subject token of the emulator's identity provider in a file, as GitHub Actions or a
/// Kubernetes projected volume would leave it.
fn subject_token_file(env: &Env, lifetime: Duration) -> PathBuf {
    let token = env
        .emulator
        .issue_subject_token(AUDIENCE, SUBJECT, lifetime)
        .unwrap();
    let path = env.dir.join(unique("oidc-token"));
    std::fs::create_dir_all(&env.dir).unwrap();
    std::fs::write(&path, token).unwrap();
    path
}

#[tokio::test]
async fn wif_file_with_impersonation_logs_in_on_postgres_and_mysql() {
    let env = Env::new().await;
    let target = service_account("wif-db");
    let federated = Emulator::federated_principal(AUDIENCE, SUBJECT).unwrap();
    env.emulator.allow_impersonation(&federated, &target);
    let instances = iam_instances(&env, &target).await;
    let token_file = subject_token_file(&env, Duration::from_secs(3600));
    let file = write(
        &env.dir,
        "wif.json",
        &env.emulator
            .external_account_json(AUDIENCE, serde_json::json!({"file": token_file}), Some(&target)),
    );
    let connector = iam_connector(&env, Credentials::from_file(&file).unwrap());
    logs_in_on_both(&connector, &target, &instances).await;
    // Admin and login tokens each came from an exchange and an impersonation.
    assert!(
        env.emulator.sts_requests() >= 2,
        "{}",
        env.emulator.sts_requests()
    );
    assert!(env.emulator.generate_access_token_requests() >= 2);
    assert_eq!(
        env.emulator.token_requests(),
        0,
        "no OAuth2 token endpoint involved"
    );
}

#[tokio::test]
async fn url_sourced_wif_file_logs_in_on_postgres_and_mysql() {
    // Azure's shape: the subject token comes from the VM's instance metadata identity endpoint.
    let env = Env::new().await;
    let subject = unique("azure-managed-identity");
    env.emulator.set_federated_identity(&subject);
    let target = service_account("azure-db");
    let federated = Emulator::federated_principal(AUDIENCE, &subject).unwrap();
    env.emulator.allow_impersonation(&federated, &target);
    let instances = iam_instances(&env, &target).await;
    let source = serde_json::json!({
        "url": format!(
            "http://{}/metadata/identity/oauth2/token?api-version=2018-02-01&resource=https:{AUDIENCE}",
            env.emulator.metadata_host()
        ),
        "headers": {"Metadata": "True"},
        "format": {"type": "json", "subject_token_field_name": "access_token"},
    });
    let file = write(
        &env.dir,
        "azure.json",
        &env.emulator
            .external_account_json(AUDIENCE, source, Some(&target)),
    );
    let connector = iam_connector(&env, Credentials::from_file(&file).unwrap());
    logs_in_on_both(&connector, &target, &instances).await;
    assert!(env.emulator.sts_requests() >= 2);
}

#[tokio::test]
async fn wif_file_without_impersonation_speaks_for_the_federated_principal() {
    let env = Env::new().await;
    let inst = env.add(env.pg_config()).await;
    let token_file = subject_token_file(&env, Duration::from_secs(3600));
    let file = write(
        &env.dir,
        "wif-direct.json",
        &env.emulator
            .external_account_json(AUDIENCE, serde_json::json!({"file": token_file}), None),
    );
    let connector = iam_connector(&env, Credentials::from_file(&file).unwrap());
    // The certificate is issued for the federated login token (the trusting backend lets the
    // non-IAM `postgres` user in with it).
    assert_eq!(
        select_one(&connector, inst.connection_name(), &trust_login())
            .await
            .unwrap(),
        1
    );
    let federated = Emulator::federated_principal(AUDIENCE, SUBJECT).unwrap();
    assert_eq!(inst.counters().last_request().unwrap().principal, federated);
    assert!(env.emulator.sts_requests() >= 2);
    assert_eq!(env.emulator.generate_access_token_requests(), 0);
}

#[tokio::test]
async fn impersonated_service_account_file_logs_in_on_postgres_and_mysql() {
    let env = Env::new().await;
    let target = service_account("imp-db");
    let delegate = service_account("imp-hop");
    // The key file's service account may impersonate the delegate, which may impersonate the
    // target.
    env.emulator.allow_impersonation(&env.sa_email, &delegate);
    env.emulator.allow_impersonation(&delegate, &target);
    let instances = iam_instances(&env, &target).await;
    let source: serde_json::Value = serde_json::from_slice(&std::fs::read(&env.key_file).unwrap()).unwrap();
    let file = write(
        &env.dir,
        "impersonated.json",
        &env.emulator
            .impersonated_service_account_json(source, &target, &[delegate.as_str()]),
    );
    let connector = iam_connector(&env, Credentials::from_file(&file).unwrap());
    logs_in_on_both(&connector, &target, &instances).await;
    assert!(env.emulator.generate_access_token_requests() >= 2);
}

#[tokio::test]
async fn credentials_impersonated_logs_in_on_postgres_and_mysql() {
    let env = Env::new().await;
    let target = service_account("imp-api");
    env.emulator.allow_impersonation(&env.sa_email, &target);
    let instances = iam_instances(&env, &target).await;
    let credentials = Credentials::from_file(&env.key_file)
        .unwrap()
        .impersonated(&target)
        .iam_endpoint(env.emulator.admin_api_url())
        .build()
        .unwrap();
    let connector = iam_connector(&env, credentials);
    logs_in_on_both(&connector, &target, &instances).await;
    assert!(env.emulator.generate_access_token_requests() >= 2);

    // An authorized_user base, and impersonating an impersonation (a delegation chain).
    let user = format!("{}@example.com", unique("dev"));
    let user_file = env.emulator.write_authorized_user_file(&user, &env.dir).unwrap();
    let hop = service_account("imp-hop");
    env.emulator.allow_impersonation(&user, &hop);
    env.emulator.allow_impersonation(&hop, &target);
    let credentials = Credentials::from_file(&user_file)
        .unwrap()
        .impersonated(&hop)
        .iam_endpoint(env.emulator.admin_api_url())
        .build()
        .unwrap()
        .impersonated(&target)
        .iam_endpoint(env.emulator.admin_api_url())
        .build()
        .unwrap();
    logs_in_on_both(&iam_connector(&env, credentials), &target, &instances).await;
}

#[tokio::test]
async fn a_token_of_your_own_impersonates_on_postgres_and_mysql() {
    let env = Env::new().await;
    // A token the application got elsewhere (a vault, another library), for a workload identity.
    let caller = format!("{}@example.com", unique("workload"));
    let token = env.emulator.issue_token(
        &caller,
        &["https://www.googleapis.com/auth/cloud-platform"],
        Duration::from_secs(3600),
    );
    let target = service_account("own-token-db");
    let hop = service_account("own-token-hop");
    env.emulator.allow_impersonation(&caller, &hop);
    env.emulator.allow_impersonation(&hop, &target);
    let instances = iam_instances(&env, &target).await;
    let credentials = Credentials::from_token(&token)
        .impersonated(&target)
        .delegates([hop.as_str()])
        .iam_endpoint(env.emulator.admin_api_url())
        .build()
        .unwrap();
    assert!(!format!("{credentials:?}").contains(&token));
    let connector = iam_connector(&env, credentials);
    logs_in_on_both(&connector, &target, &instances).await;
    // One Admin API token and one login token, each cached for its hour.
    assert_eq!(env.emulator.generate_access_token_requests(), 2);
    assert_eq!(env.emulator.token_requests(), 0);

    // Without the Token Creator role on the first hop: a refusal that says which role, where.
    let stranger = env.emulator.issue_token(
        &format!("{}@example.com", unique("stranger")),
        &["https://www.googleapis.com/auth/cloud-platform"],
        Duration::from_secs(3600),
    );
    let credentials = Credentials::from_token(&stranger)
        .impersonated(&target)
        .delegates([hop.as_str()])
        .iam_endpoint(env.emulator.admin_api_url())
        .build()
        .unwrap();
    let err = iam_connector(&env, credentials)
        .connect(instances.0.connection_name())
        .await
        .unwrap_err();
    let text = chain(&err);
    assert!(matches!(err, Error::Credentials { .. }), "{err:?}");
    assert!(text.contains("HTTP 403"), "{text}");
    assert!(
        text.contains(&format!(
            "Service Account Token Creator role (roles/iam.serviceAccountTokenCreator) on {hop}"
        )),
        "{text}"
    );
    assert!(!text.contains(&stranger), "{text}");
}

#[tokio::test]
async fn a_service_accounts_admin_api_token_is_a_jwt_it_signs_itself() {
    let env = Env::new().await;
    let inst = env.add(env.pg_config()).await;
    let connector = env.connector();
    drop(connector.connect(inst.connection_name()).await.unwrap());
    // google-cloud-auth's self-signed JWT: the Admin API knew the caller without a token request.
    assert_eq!(env.emulator.token_requests(), 0);
    assert_eq!(inst.counters().last_request().unwrap().principal, env.sa_email);

    // An IAM login token still comes from the token endpoint, with the expiry that bounds the
    // certificate.
    let iam = env.builder().iam_authn(true).build().unwrap();
    drop(iam.connect(inst.connection_name()).await.unwrap());
    assert_eq!(env.emulator.token_requests(), 1);

    // A user's Admin API token comes from google-cloud-auth's refresh-token grant.
    let user = format!("{}@example.com", unique("dev"));
    let file = env.emulator.write_authorized_user_file(&user, &env.dir).unwrap();
    let connector = plain_connector(&env, Credentials::from_file(&file).unwrap());
    drop(connector.connect(inst.connection_name()).await.unwrap());
    assert_eq!(env.emulator.token_requests(), 2);
    assert_eq!(inst.counters().last_request().unwrap().principal, user);
}

/// A connector without IAM authn.
fn plain_connector(env: &Env, credentials: Credentials) -> Connector {
    Connector::builder()
        .credentials(credentials)
        .admin_api_endpoint(env.emulator.admin_api_url())
        .build()
        .unwrap()
}

/// The whole error chain of a connect, checked for what it must and must not say.
fn chain(err: &Error) -> String {
    ErrorChain(err).to_string()
}

#[tokio::test]
async fn refused_subject_tokens_are_clear_errors_without_the_token() {
    let env = Env::new().await;
    let inst = env.add(env.pg_config()).await;
    let token_file = subject_token_file(&env, Duration::ZERO);
    let token = std::fs::read_to_string(&token_file).unwrap();
    let file = write(
        &env.dir,
        "expired.json",
        &env.emulator
            .external_account_json(AUDIENCE, serde_json::json!({"file": token_file}), None),
    );
    let connector = iam_connector(&env, Credentials::from_file(&file).unwrap());
    let err = connector.connect(inst.connection_name()).await.unwrap_err();
    assert!(matches!(err, Error::Credentials { .. }), "{err:?}");
    let text = chain(&err);
    assert!(text.contains(inst.connection_name()), "{text}");
    assert!(text.contains("Workload Identity Federation"), "{text}");
    assert!(text.contains("The subject token has expired"), "{text}");
    assert!(!text.contains(token.trim()), "{text}");
    assert!(!format!("{err:?}").contains(token.trim()));
    assert_eq!(inst.counters().total(), 0, "no Admin API call without a token");

    // A token for another provider.
    let other = AUDIENCE.replace("/providers/actions", "/providers/other");
    let file = write(
        &env.dir,
        "other-audience.json",
        &env.emulator.external_account_json(
            &other,
            serde_json::json!({"file": subject_token_file(&env, Duration::from_secs(600))}),
            None,
        ),
    );
    let err = iam_connector(&env, Credentials::from_file(&file).unwrap())
        .connect(inst.connection_name())
        .await
        .unwrap_err();
    assert!(
        chain(&err).contains("does not match the workload identity provider"),
        "{}",
        chain(&err)
    );

    // A missing subject token file.
    let file = write(
        &env.dir,
        "missing.json",
        &env.emulator.external_account_json(
            AUDIENCE,
            serde_json::json!({"file": env.dir.join("no-such-token")}),
            None,
        ),
    );
    let err = iam_connector(&env, Credentials::from_file(&file).unwrap())
        .connect(inst.connection_name())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Credentials { .. }), "{err:?}");
    assert!(chain(&err).contains("no-such-token"), "{}", chain(&err));
}

#[tokio::test]
async fn impersonation_without_permission_is_refused_clearly() {
    let env = Env::new().await;
    let inst = env.add(env.pg_config()).await;
    let target = service_account("not-allowed");
    let credentials = Credentials::from_file(&env.key_file)
        .unwrap()
        .impersonated(&target)
        .iam_endpoint(env.emulator.admin_api_url())
        .build()
        .unwrap();
    let err = iam_connector(&env, credentials)
        .connect(inst.connection_name())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Credentials { .. }), "{err:?}");
    let text = chain(&err);
    assert!(text.contains("impersonated service account"), "{text}");
    assert!(text.contains("iam.serviceAccounts.getAccessToken"), "{text}");
    let Error::Credentials { source, .. } = &err else {
        unreachable!()
    };
    assert!(!source.is_transient(), "a refusal is not retried: {source}");
    assert_eq!(inst.counters().total(), 0);
}

#[tokio::test]
async fn debug_output_holds_no_secret() {
    let env = Env::new().await;
    let key: serde_json::Value = serde_json::from_slice(&std::fs::read(&env.key_file).unwrap()).unwrap();
    let private_key = key["private_key"].as_str().unwrap().to_owned();
    let key_body = private_key.lines().nth(1).unwrap().to_owned();
    let token_file = subject_token_file(&env, Duration::from_secs(600));
    let subject_token = std::fs::read_to_string(&token_file).unwrap();
    let files = [
        env.emulator
            .impersonated_service_account_json(key, "t@test-project.iam.gserviceaccount.com", &[]),
        env.emulator
            .external_account_json(AUDIENCE, serde_json::json!({"file": token_file}), None),
    ];
    for json in files {
        let credentials = Credentials::from_json(&serde_json::to_vec(&json).unwrap()).unwrap();
        let builder = credentials
            .clone()
            .impersonated("t@test-project.iam.gserviceaccount.com");
        for shown in [format!("{credentials:?}"), format!("{builder:?}")] {
            assert!(!shown.contains(&key_body), "{shown}");
            assert!(!shown.contains(subject_token.trim()), "{shown}");
        }
    }
}
