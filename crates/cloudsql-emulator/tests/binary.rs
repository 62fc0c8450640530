//! `cloudsql-emulator --config <file>` prints its Admin API URL and a credentials file, and a
//! connector using them reaches the real PostgreSQL behind it.
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

use std::process::Stdio;
use std::time::Duration;

use cloudsql_core::{Connector, Credentials};
use tokio::io::{AsyncBufReadExt, BufReader};

#[tokio::test]
async fn binary_serves_a_configured_instance() {
    let dir = std::env::temp_dir().join(format!("cloudsql-emulator-bin-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("emulator.toml");
    std::fs::write(
        &config,
        format!(
            r#"
credentials_dir = "{}"
service_accounts = ["bin-test@bin-project.iam.gserviceaccount.com"]

[[instances]]
connection_name = "bin-project:us-central1:bin-pg"
database_version = "POSTGRES_15"
backend = "127.0.0.1:5432"
ca_mode = "google_managed_cas"
"#,
            dir.display()
        ),
    )
    .unwrap();

    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_cloudsql-emulator"))
        .arg("--config")
        .arg(&config)
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let (mut url, mut creds) = (None, None);
    let read = async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(v) = line.strip_prefix("admin_api_url = ") {
                url = Some(v.to_owned());
            } else if let Some(v) = line.strip_prefix("credentials_file = ") {
                creds = Some(v.to_owned());
            } else if line.starts_with("ready") {
                break;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(30), read)
        .await
        .expect("emulator became ready");
    let (url, creds) = (url.expect("URL printed"), creds.expect("credentials printed"));

    let connector = Connector::builder()
        .credentials(Credentials::from_file(&creds).unwrap())
        .admin_api_endpoint(url)
        .build()
        .unwrap();
    let stream = connector.connect("bin-project:us-central1:bin-pg").await.unwrap();
    let mut config = tokio_postgres::Config::new();
    config.user("postgres").dbname("postgres");
    let (client, connection) = config.connect_raw(stream, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    let one: i32 = client.query_one("SELECT 1", &[]).await.unwrap().get(0);
    assert_eq!(one, 1);

    child.kill().await.unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}
