//! Where tokens come from: Application Default Credentials (file and metadata server), and the
//! environment variables the connector honours. Each scenario that needs environment variables
//! runs in a child process of this test binary, so no test changes its own environment.
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

mod support;

use std::time::Duration;

use cloudsql::core::{AccessToken, Connector, Credentials, Error, TokenFuture, TokenSource};
use support::*;

const CHILD: &str = "CLOUDSQL_TEST_CHILD";

/// In the parent: reruns `test` in a child process with `envs` (plus the emulator's URL and the
/// instance name) and waits for it. In the child: returns the URL and instance to use.
async fn in_child(
    test: &str,
    env: &Env,
    instance: &str,
    envs: &[(&str, String)],
) -> Option<(String, String)> {
    if std::env::var(CHILD).as_deref() == Ok(test) {
        return Some((
            std::env::var("CLOUDSQL_TEST_ADMIN_API").unwrap(),
            std::env::var("CLOUDSQL_TEST_INSTANCE").unwrap(),
        ));
    }
    let mut command = tokio::process::Command::new(std::env::current_exe().unwrap());
    command
        .args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env(CHILD, test)
        .env("CLOUDSQL_TEST_ADMIN_API", env.emulator.admin_api_url())
        .env("CLOUDSQL_TEST_INSTANCE", instance)
        .env_remove("GOOGLE_APPLICATION_CREDENTIALS")
        .env_remove("GCE_METADATA_HOST")
        .env_remove("GOOGLE_CLOUD_QUOTA_PROJECT")
        .env_remove("GOOGLE_CLOUD_UNIVERSE_DOMAIN")
        // No gcloud well-known file either.
        .env("HOME", env.dir.join("no-home"))
        .env_remove("CLOUDSDK_CONFIG");
    for (k, v) in envs {
        command.env(k, v);
    }
    let output = command.output().await.unwrap();
    assert!(
        output.status.success(),
        "child {test} failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    None
}

/// The child half of the ADC tests: connect with ADC, and log in by IAM when `iam`.
async fn adc_connect(admin_api: &str, instance: &str, iam_user: Option<&str>) {
    let connector = Connector::builder()
        .admin_api_endpoint(admin_api)
        .iam_authn(iam_user.is_some())
        .build()
        .unwrap();
    let mut config = trust_login();
    if let Some(user) = iam_user {
        config.user(user);
    }
    assert_eq!(select_one(&connector, instance, &config).await.unwrap(), 1);
}

#[tokio::test]
async fn adc_from_google_application_credentials() {
    const TEST: &str = "adc_from_google_application_credentials";
    let env = Env::new().await;
    let backend_password = unique("pw");
    let iam_db_user = env
        .sa_email
        .strip_suffix(".gserviceaccount.com")
        .unwrap()
        .to_owned();
    let inst = env
        .add(
            env.pg_config_for(scram_pg())
                .iam_user(&env.sa_email, &backend_password),
        )
        .await;
    if std::env::var(CHILD).as_deref() != Ok(TEST) {
        create_scram_role(&iam_db_user, &backend_password).await;
    }
    let envs = [
        (
            "GOOGLE_APPLICATION_CREDENTIALS",
            env.key_file.display().to_string(),
        ),
        ("CLOUDSQL_TEST_IAM_USER", iam_db_user.clone()),
    ];
    if let Some((api, instance)) = in_child(TEST, &env, inst.connection_name(), &envs).await {
        // Admin API token: google-cloud-auth self-signs a JWT with the key; login token: our
        // JWT-bearer exchange with the same file. Both are checked by the emulator.
        let iam_user = std::env::var("CLOUDSQL_TEST_IAM_USER").unwrap();
        adc_connect(&api, &instance, Some(&iam_user)).await;
        return;
    }
    let last = inst.counters().last_request().unwrap();
    assert_eq!(last.principal, env.sa_email);
}

#[tokio::test]
async fn adc_from_a_workload_identity_federation_file() {
    const TEST: &str = "adc_from_a_workload_identity_federation_file";
    const AUDIENCE: &str =
        "//iam.googleapis.com/projects/123456789012/locations/global/workloadIdentityPools/ci/providers/gh";
    let env = Env::new().await;
    let target = format!("{}@test-project.iam.gserviceaccount.com", unique("wif"));
    let backend_password = unique("pw");
    let iam_db_user = target.strip_suffix(".gserviceaccount.com").unwrap().to_owned();
    let inst = env
        .add(env.pg_config_for(scram_pg()).iam_user(&target, &backend_password))
        .await;
    let wif_file = env.dir.join("wif-adc.json");
    if std::env::var(CHILD).as_deref() != Ok(TEST) {
        create_scram_role(&iam_db_user, &backend_password).await;
        let federated = cloudsql_emulator::Emulator::federated_principal(AUDIENCE, "ci-job").unwrap();
        env.emulator.allow_impersonation(&federated, &target);
        let token = env
            .emulator
            .issue_subject_token(AUDIENCE, "ci-job", Duration::from_secs(600))
            .unwrap();
        let token_file = env.dir.join("oidc-token");
        std::fs::write(&token_file, token).unwrap();
        let json = env.emulator.external_account_json(
            AUDIENCE,
            serde_json::json!({"file": token_file}),
            Some(&target),
        );
        std::fs::write(&wif_file, serde_json::to_vec(&json).unwrap()).unwrap();
    }
    let envs = [
        ("GOOGLE_APPLICATION_CREDENTIALS", wif_file.display().to_string()),
        ("CLOUDSQL_TEST_IAM_USER", iam_db_user.clone()),
    ];
    if let Some((api, instance)) = in_child(TEST, &env, inst.connection_name(), &envs).await {
        // Admin API token: google-cloud-auth's ADC reads the external_account file; login token:
        // the same file through google-cloud-auth, its expiry bounded.
        let iam_user = std::env::var("CLOUDSQL_TEST_IAM_USER").unwrap();
        adc_connect(&api, &instance, Some(&iam_user)).await;
        return;
    }
    assert_eq!(inst.counters().last_request().unwrap().principal, target);
    assert!(
        env.emulator.sts_requests() >= 2,
        "{}",
        env.emulator.sts_requests()
    );
}

#[tokio::test]
async fn an_executable_sourced_wif_file_logs_in_when_executables_are_allowed() {
    const TEST: &str = "an_executable_sourced_wif_file_logs_in_when_executables_are_allowed";
    const AUDIENCE: &str =
        "//iam.googleapis.com/projects/123456789012/locations/global/workloadIdentityPools/ci/providers/exe";
    let env = Env::new().await;
    let target = format!("{}@test-project.iam.gserviceaccount.com", unique("exe"));
    let backend_password = unique("pw");
    let iam_db_user = target.strip_suffix(".gserviceaccount.com").unwrap().to_owned();
    let inst = env
        .add(env.pg_config_for(scram_pg()).iam_user(&target, &backend_password))
        .await;
    let wif_file = env.dir.join("wif-executable.json");
    if std::env::var(CHILD).as_deref() != Ok(TEST) {
        create_scram_role(&iam_db_user, &backend_password).await;
        let federated = cloudsql_emulator::Emulator::federated_principal(AUDIENCE, "exe-job").unwrap();
        env.emulator.allow_impersonation(&federated, &target);
        let token = env
            .emulator
            .issue_subject_token(AUDIENCE, "exe-job", Duration::from_secs(600))
            .unwrap();
        // What a pluggable-auth executable prints (Google's executable-sourced credentials).
        let expires = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            + 600;
        let response = serde_json::json!({
            "version": 1,
            "success": true,
            "token_type": "urn:ietf:params:oauth:token-type:jwt",
            "id_token": token,
            "expiration_time": expires,
        });
        let response_file = env.dir.join("executable-response.json");
        std::fs::write(&response_file, serde_json::to_vec(&response).unwrap()).unwrap();
        let script = env.dir.join("subject-token.sh");
        std::fs::write(&script, format!("#!/bin/sh\ncat '{}'\n", response_file.display())).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o700)).unwrap();
        let json = env.emulator.external_account_json(
            AUDIENCE,
            serde_json::json!({"executable": {"command": script, "timeout_millis": 10000}}),
            Some(&target),
        );
        std::fs::write(&wif_file, serde_json::to_vec(&json).unwrap()).unwrap();

        // Here, where executables are not allowed, the refusal says how to allow them.
        let connector = Connector::builder()
            .credentials(Credentials::from_file(&wif_file).unwrap())
            .admin_api_endpoint(env.emulator.admin_api_url())
            .build()
            .unwrap();
        let err = connector.connect(inst.connection_name()).await.unwrap_err();
        assert!(matches!(err, Error::Credentials { .. }), "{err:?}");
        let text = cloudsql::core::ErrorChain(&err).to_string();
        assert!(text.contains("subject token from an executable"), "{text}");
        assert!(
            text.contains("GOOGLE_EXTERNAL_ACCOUNT_ALLOW_EXECUTABLES"),
            "{text}"
        );
    }
    let envs = [
        ("GOOGLE_EXTERNAL_ACCOUNT_ALLOW_EXECUTABLES", "1".to_owned()),
        ("CLOUDSQL_TEST_WIF_FILE", wif_file.display().to_string()),
        ("CLOUDSQL_TEST_IAM_USER", iam_db_user.clone()),
    ];
    if let Some((api, instance)) = in_child(TEST, &env, inst.connection_name(), &envs).await {
        let file = std::env::var("CLOUDSQL_TEST_WIF_FILE").unwrap();
        let connector = Connector::builder()
            .credentials(Credentials::from_file(file).unwrap())
            .admin_api_endpoint(&api)
            .iam_authn(true)
            .build()
            .unwrap();
        let mut config = trust_login();
        config.user(std::env::var("CLOUDSQL_TEST_IAM_USER").unwrap());
        assert_eq!(select_one(&connector, &instance, &config).await.unwrap(), 1);
        return;
    }
    assert_eq!(inst.counters().last_request().unwrap().principal, target);
    assert!(
        env.emulator.sts_requests() >= 2,
        "{}",
        env.emulator.sts_requests()
    );
}

#[tokio::test]
async fn adc_from_the_metadata_server() {
    const TEST: &str = "adc_from_the_metadata_server";
    let env = Env::new().await;
    let vm_account = "vm-default@test-project.iam.gserviceaccount.com";
    env.emulator.set_metadata_service_account(vm_account);
    let inst = env.add(env.pg_config()).await;
    let envs = [("GCE_METADATA_HOST", env.emulator.metadata_host())];
    if let Some((api, instance)) = in_child(TEST, &env, inst.connection_name(), &envs).await {
        adc_connect(&api, &instance, None).await;
        return;
    }
    assert_eq!(inst.counters().last_request().unwrap().principal, vm_account);
}

#[tokio::test]
async fn quota_project_comes_from_the_environment_unless_set() {
    const TEST: &str = "quota_project_comes_from_the_environment_unless_set";
    let env = Env::new().await;
    let inst = env.add(env.pg_config()).await;
    let token = env
        .emulator
        .issue_token(&env.sa_email, &[ADMIN], Duration::from_secs(600));
    let envs = [
        ("GOOGLE_CLOUD_QUOTA_PROJECT", "billing-from-env".to_owned()),
        ("CLOUDSQL_TEST_TOKEN", token),
    ];
    if let Some((api, instance)) = in_child(TEST, &env, inst.connection_name(), &envs).await {
        let token = std::env::var("CLOUDSQL_TEST_TOKEN").unwrap();
        let connector = Connector::builder()
            .credentials(Credentials::from_token(token))
            .admin_api_endpoint(&api)
            .build()
            .unwrap();
        connector.connect(&instance).await.unwrap();
        return;
    }
    let last = inst.counters().last_request().unwrap();
    assert_eq!(last.quota_project.as_deref(), Some("billing-from-env"));

    // The builder option wins over the environment (here: no environment at all).
    let connector = env
        .builder()
        .quota_project("billing-from-option")
        .build()
        .unwrap();
    connector.connect(inst.connection_name()).await.unwrap();
    let last = inst.counters().last_request().unwrap();
    assert_eq!(last.quota_project.as_deref(), Some("billing-from-option"));
}

const ADMIN: &str = "https://www.googleapis.com/auth/sqlservice.admin";

#[tokio::test]
async fn user_agent_names_the_connector_and_the_suffix() {
    let env = Env::new().await;
    let inst = env.add(env.pg_config()).await;
    let connector = env.builder().user_agent("my-app/1.2").build().unwrap();
    connector.connect(inst.connection_name()).await.unwrap();
    let last = inst.counters().last_request().unwrap();
    let expected = format!(
        "cloud-sql-rust-connector/{} my-app/1.2",
        env!("CARGO_PKG_VERSION")
    );
    assert_eq!(last.user_agent.as_deref(), Some(expected.as_str()));
    assert_eq!(last.api_client.as_deref(), Some(expected.as_str()));
    assert_eq!(last.quota_project, None);
}

#[tokio::test]
async fn credentials_from_another_universe_are_refused_at_build() {
    let env = Env::new().await;
    let err = env
        .builder()
        .universe_domain("example-universe.test")
        .build()
        .unwrap_err();
    assert!(matches!(err, Error::Config { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("googleapis.com") && msg.contains("example-universe.test"),
        "{msg}"
    );
}

/// A token source of the caller's own.
#[derive(Debug)]
struct Vault {
    token: String,
    calls: std::sync::atomic::AtomicUsize,
}

impl TokenSource for Vault {
    fn token(&self) -> TokenFuture<'_> {
        self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let token = AccessToken::new(self.token.clone(), None);
        Box::pin(async move { Ok(token) })
    }
}

#[tokio::test]
async fn custom_token_sources_are_used() {
    let env = Env::new().await;
    let inst = env.add(env.pg_config()).await;
    let token = env.emulator.issue_token(
        "vault@test-project.iam.gserviceaccount.com",
        &[ADMIN],
        Duration::from_secs(600),
    );
    let connector = Connector::builder()
        .credentials(Credentials::from_token_source(Vault {
            token,
            calls: Default::default(),
        }))
        .admin_api_endpoint(env.emulator.admin_api_url())
        .build()
        .unwrap();
    assert_eq!(
        select_one(&connector, inst.connection_name(), &trust_login())
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        inst.counters().last_request().unwrap().principal,
        "vault@test-project.iam.gserviceaccount.com"
    );
}

#[tokio::test]
async fn a_token_source_error_is_a_credentials_error() {
    #[derive(Debug)]
    struct Broken;
    impl TokenSource for Broken {
        fn token(&self) -> TokenFuture<'_> {
            Box::pin(async { Err(cloudsql::core::CredentialsError::new("vault is sealed")) })
        }
    }
    let env = Env::new().await;
    let inst = env.add(env.pg_config()).await;
    let connector = Connector::builder()
        .credentials(Credentials::from_token_source(Broken))
        .admin_api_endpoint(env.emulator.admin_api_url())
        .build()
        .unwrap();
    let err = connector.connect(inst.connection_name()).await.unwrap_err();
    assert!(matches!(err, Error::Credentials { .. }), "{err:?}");
    assert_eq!(
        std::error::Error::source(&err).unwrap().to_string(),
        "vault is sealed"
    );
}
