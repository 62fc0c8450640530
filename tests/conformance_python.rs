//! Conformance: Google's own `cloud-sql-python-connector[pg8000,pymysql]`, installed from PyPI,
//! connects through the emulator (public IP, password login and automatic IAM authn, CAS
//! instance; PostgreSQL and MySQL) — the emulator speaks real Cloud SQL, not just our own
//! client's idea of it.
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use cloudsql_emulator::CaMode;
use support::*;

/// A virtualenv kept outside the clone so reruns do not reinstall.
const VENV: &str = "/var/tmp/cloudsql-conformance-venv";
const PACKAGE: &str = "cloud-sql-python-connector[pg8000,pymysql]";

fn python() -> PathBuf {
    Path::new(VENV).join("bin/python")
}

fn ensure_venv() {
    let ready = Command::new(python())
        .args(["-c", "import google.cloud.sql.connector, pg8000, pymysql"])
        .status()
        .is_ok_and(|s| s.success());
    if ready {
        return;
    }
    let status = Command::new("python3")
        .args(["-m", "venv", VENV])
        .status()
        .expect("python3 runs");
    assert!(
        status.success(),
        "python3 -m venv {VENV} failed; install python3-venv"
    );
    let status = Command::new(python())
        .args(["-m", "pip", "install", "--quiet", PACKAGE])
        .status()
        .expect("pip runs");
    assert!(
        status.success(),
        "pip install {PACKAGE} failed; PyPI must be reachable"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn google_python_connector_connects_through_the_emulator() {
    let env = Env::new().await;
    let iam_user = env
        .sa_email
        .strip_suffix(".gserviceaccount.com")
        .unwrap()
        .to_owned();
    let backend_password = unique("iam-backend");
    create_scram_role(&iam_user, &backend_password).await;
    let app_user = unique("app");
    create_scram_role(&app_user, "app-password").await;
    let inst = env
        .add(
            env.pg_config_for(scram_pg())
                .ca_mode(CaMode::GoogleManagedCas)
                .iam_user(&env.sa_email, &backend_password),
        )
        .await;

    let my_iam_user = env.sa_email.split('@').next().unwrap().to_owned();
    create_mysql_user(&my_iam_user, &backend_password).await;
    let my_user = unique("myapp");
    create_mysql_user(&my_user, "my-password").await;
    let my_inst = env
        .add(
            env.mysql_config()
                .ca_mode(CaMode::GoogleManagedCas)
                .iam_user(&env.sa_email, &backend_password),
        )
        .await;

    tokio::task::spawn_blocking(ensure_venv).await.unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/conformance/python_connector.py");
    let mut command = tokio::process::Command::new(python());
    command
        .arg(script)
        .env("GOOGLE_APPLICATION_CREDENTIALS", &env.key_file)
        .env("CLOUDSQL_ADMIN_API", env.emulator.admin_api_url())
        .env("CLOUDSQL_INSTANCE", inst.connection_name())
        .env("PG_USER", &app_user)
        .env("PG_PASSWORD", "app-password")
        .env("IAM_USER", &iam_user)
        .env("CLOUDSQL_MYSQL_INSTANCE", my_inst.connection_name())
        .env("MY_USER", &my_user)
        .env("MY_PASSWORD", "my-password")
        .env("MY_DB", MYSQL_DB)
        .env("MY_IAM_USER", &my_iam_user)
        .env("NO_PROXY", "*")
        .env_remove("GOOGLE_CLOUD_PROJECT");
    let output = command.output().await.expect("python runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "python connector failed:\n{stdout}\n{stderr}"
    );
    let results: serde_json::Value = serde_json::from_str(stdout.trim().lines().last().unwrap_or_default())
        .unwrap_or_else(|e| panic!("no JSON from the script ({e}):\n{stdout}\n{stderr}"));

    assert_eq!(
        results["password_login"],
        serde_json::json!([app_user, 1]),
        "{results}"
    );
    assert_eq!(
        results["iam_login"],
        serde_json::json!([iam_user, 1]),
        "{results}"
    );
    let wrong = results["wrong_password"].as_str().unwrap();
    assert!(
        wrong.contains("28P01"),
        "wrong password must be refused by the backend: {wrong}"
    );
    let refused = results["iam_user_without_iam"].as_str().unwrap();
    // Without automatic IAM authn the server asks for a password (an access token, for manual
    // IAM authn); with none given, the client gives up.
    assert!(
        refused.contains("28P01") || refused.contains("password"),
        "IAM user without IAM authn must be refused: {refused}"
    );
    assert_eq!(
        results["mysql_password_login"],
        serde_json::json!([format!("{my_user}@%"), 1]),
        "{results}"
    );
    assert_eq!(
        results["mysql_iam_login"],
        serde_json::json!([format!("{my_iam_user}@%"), 1]),
        "{results}"
    );
    let refused = results["mysql_iam_user_without_iam"].as_str().unwrap();
    assert!(
        refused.contains("1045"),
        "MySQL IAM user without IAM authn must be refused: {refused}"
    );
    assert!(my_inst.counters().calls("generateEphemeralCert") >= 2);
    // The Python connector used the same two Admin API methods.
    assert!(inst.counters().calls("connectSettings") >= 2);
    assert!(inst.counters().calls("generateEphemeralCert") >= 2);
}
