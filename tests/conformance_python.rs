//! Conformance: Google's own `cloud-sql-python-connector[pg8000,asyncpg,pymysql]`, installed from
//! PyPI, against the emulator — password, automatic and manual IAM logins; legacy, Google-managed
//! and customer-managed CAS instances; public, private and PSC addresses; lazy and background
//! refresh with short certificates; and the faults a client can observe. The emulator speaks real
//! Cloud SQL, not just our own client's idea of it.
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

#[path = "conformance/python_venv.rs"]
mod python_venv;
#[path = "conformance/runner.rs"]
mod runner;
mod support;

use std::path::Path;
use std::time::Duration;

use cloudsql_emulator::{CaMode, InstanceConfig, ServerCertFault};
use serde_json::json;
use support::*;

const LOGIN_SCOPE: &str = "https://www.googleapis.com/auth/sqlservice.login";

/// Every case the Python connector passes against real Cloud SQL.
const EXPECTED: &[&str] = &[
    "pg8000 password cas",
    "pg8000 password legacy",
    "pg8000 password customer_cas",
    "pg8000 manual IAM (token as password) cas",
    "pg8000 manual IAM (token as password) legacy",
    "pg8000 manual IAM (token as password) customer_cas",
    "pg8000 wrong password refused (28P01)",
    "pg8000 IAM user without IAM authn refused (28000 or no password)",
    "pg8000 automatic IAM cas",
    "pg8000 automatic IAM legacy",
    "pg8000 automatic IAM customer_cas",
    "pg8000 private IP",
    "pg8000 PSC (DNS name mapped locally)",
    "public IP refused when the instance has none",
    "asyncpg password cas",
    "asyncpg password legacy",
    "asyncpg manual IAM (token as password)",
    "asyncpg automatic IAM cas",
    "asyncpg automatic IAM legacy",
    "pymysql password cas",
    "pymysql password legacy",
    "pymysql manual IAM (token, mysql_clear_password) cas",
    "pymysql manual IAM (token, mysql_clear_password) legacy",
    "pymysql IAM user without IAM authn refused (1045)",
    "pymysql automatic IAM cas",
    "pymysql automatic IAM legacy",
    "lazy refresh, short certificate, two connects",
    "background refresh, short certificate, two connects",
    "expired server certificate refused",
    "403 SERVICE_DISABLED message surfaced",
    "500 from generateEphemeralCert retried",
    "client CA rotation recovered by the second attempt",
];

#[tokio::test(flavor = "multi_thread")]
async fn google_python_connector_finds_the_emulator_indistinguishable_from_cloud_sql() {
    let venv = tokio::task::spawn_blocking(python_venv::ensure);
    let env = Env::new().await;
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
    let short = Duration::from_secs(90);
    let short_lazy = add(pg(CaMode::Legacy).cert_lifetime(short)).await;
    let short_background = add(pg(CaMode::GoogleManagedCas).cert_lifetime(short)).await;
    let expired = add(pg(CaMode::Legacy)).await;
    expired.faults().server_cert(Some(ServerCertFault::Expired));
    let disabled = add(pg(CaMode::Legacy)).await;
    disabled.faults().api_disabled(true);
    let flaky = add(pg(CaMode::GoogleManagedCas)).await;
    flaky
        .faults()
        .admin_status_for("generateEphemeralCert", 500, Some(1));
    let rotate = add(pg(CaMode::GoogleManagedCas)).await;
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
            "short_lazy": short_lazy.connection_name(),
            "short_background": short_background.connection_name(),
            "expired": expired.connection_name(), "disabled": disabled.connection_name(),
            "flaky": flaky.connection_name(), "rotate": rotate.connection_name(),
        },
        "mysql": {
            "user": my_user, "password": "my-password", "iam_user": my_iam_user, "db": MYSQL_DB,
            "cas": my_cas.connection_name(), "legacy": my_legacy.connection_name(),
        },
    });

    venv.await.unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/conformance/python_connector.py");
    let mut command = tokio::process::Command::new(python_venv::python());
    command
        .arg(script)
        .env("CONFORMANCE", config.to_string())
        .env("GOOGLE_APPLICATION_CREDENTIALS", &env.key_file)
        .env("NO_PROXY", "*")
        .env_remove("GOOGLE_CLOUD_PROJECT");
    let results = runner::run(command, &env.emulator, "the Python connector").await;
    runner::assert_cases(&results, EXPECTED, "the Python connector");

    // The Python connector used the same two Admin API methods, and retried the 500.
    assert!(cas.counters().calls("connectSettings") >= 2);
    assert!(my_cas.counters().calls("generateEphemeralCert") >= 2);
    assert!(flaky.counters().calls("generateEphemeralCert") >= 2);
    // Lazy refresh with a certificate shorter than its 4-minute buffer refreshes on each connect.
    assert!(short_lazy.counters().calls("generateEphemeralCert") >= 2);
    assert!(rotate.counters().calls("generateEphemeralCert") >= 2);
}
