//! Conformance: Google's Python connector 1.23 with `ip_type="sql_data"` (pg8000 and pymysql)
//! through the emulator's SQL Data Service — the proof that both sides speak the same protocol.
//! Shares the virtualenv of `conformance_python.rs` (installed here too when missing).
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

#[path = "conformance/python_venv.rs"]
mod python_venv;
#[path = "conformance/runner.rs"]
mod runner;
mod support;

use std::path::Path;

use cloudsql_emulator::SqlDataFaultState;
use serde_json::json;
use support::*;

const EXPECTED: &[&str] = &[
    "pg8000 password through the tunnel",
    "pg8000 automatic IAM through the tunnel",
    "pymysql password through the tunnel",
    "FAILED_PRECONDITION falls back to direct TLS",
];

#[tokio::test(flavor = "multi_thread")]
async fn google_python_connector_tunnels_through_the_emulators_sql_data_service() {
    let venv = tokio::task::spawn_blocking(python_venv::ensure);
    let env = Env::new().await;
    let server = env.emulator.start_sql_data().await.unwrap();
    let pg_iam_user = env
        .sa_email
        .strip_suffix(".gserviceaccount.com")
        .unwrap()
        .to_owned();
    let backend_password = unique("iam-backend");
    create_scram_role(&pg_iam_user, &backend_password).await;
    let pg_user = unique("app");
    create_scram_role(&pg_user, "app-password").await;
    let my_user = unique("myapp");
    create_mysql_user(&my_user, "my-password").await;

    let tunnel = env
        .add(
            env.pg_config_for(scram_pg())
                .iam_user(&env.sa_email, &backend_password),
        )
        .await;
    let unsupported = env.add(env.pg_config_for(scram_pg())).await;
    let my_tunnel = env.add(env.mysql_config()).await;
    let mut faults = SqlDataFaultState::default();
    faults.unsupported_instances = vec![unsupported.connection_name().to_owned()];
    server.faults().set(faults);

    let roots = env.dir.join("sql-data-ca.pem");
    std::fs::create_dir_all(&env.dir).unwrap();
    std::fs::write(&roots, server.root_ca_pem()).unwrap();
    let config = json!({
        "admin_api": env.emulator.admin_api_url(),
        "sql_data": server.url().trim_start_matches("https://"),
        "sa_email": env.sa_email,
        "pg": {
            "user": pg_user, "password": "app-password", "iam_user": pg_iam_user,
            "tunnel": tunnel.connection_name(), "unsupported": unsupported.connection_name(),
        },
        "mysql": {
            "user": my_user, "password": "my-password", "db": MYSQL_DB,
            "tunnel": my_tunnel.connection_name(),
        },
    });

    venv.await.unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/conformance/python_sql_data.py");
    let mut command = tokio::process::Command::new(python_venv::python());
    command
        .arg(script)
        .env("CONFORMANCE", config.to_string())
        .env("GOOGLE_APPLICATION_CREDENTIALS", &env.key_file)
        .env("GRPC_DEFAULT_SSL_ROOTS_FILE_PATH", &roots)
        .env("NO_PROXY", "*")
        .env("no_grpc_proxy", "*")
        .env_remove("GOOGLE_CLOUD_PROJECT");
    let results = runner::run(command, &env.emulator, "the Python connector (sql_data)").await;
    runner::assert_cases(&results, EXPECTED, "the Python connector (sql_data)");

    // The sessions went through the tunnel: no direct connection to the tunnelled instances.
    assert!(server.calls(tunnel.connection_name()) >= 2);
    assert_eq!(tunnel.counters().connection_attempts(), 0);
    assert!(server.calls(my_tunnel.connection_name()) >= 1);
    assert_eq!(my_tunnel.counters().connection_attempts(), 0);
    // The refused instance was reached directly.
    assert_eq!(server.calls(unsupported.connection_name()), 1);
    assert!(unsupported.counters().connections() >= 1);
}
