//! The binary's config file as a test suite in another language uses it: paths relative to the
//! file, a metadata service account and project, DNS records; and the control API on the
//! binary's port.
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use cloudsql_emulator::{DnsRecord, FileConfig};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};

const VM: &str = "vm@cfg-project.iam.gserviceaccount.com";
const NAME: &str = "cfg-project:us-central1:cfg-pg";
const ADMIN: &str = "https://www.googleapis.com/auth/sqlservice.admin";

const CONFIG: &str = r#"
credentials_dir = "creds"
service_accounts = ["app@cfg-project.iam.gserviceaccount.com"]

[metadata]
service_account = "vm@cfg-project.iam.gserviceaccount.com"
project_id = "cfg-project-id"

[[dns_records]]
name = "pg.cfg.example.com"
txt = ["cfg-project:us-central1:cfg-pg"]

[[dns_records]]
name = "alias.cfg.example.com"
cname = "pg.cfg.example.com"

[[instances]]
connection_name = "cfg-project:us-central1:cfg-pg"
database_version = "POSTGRES_15"
backend = "127.0.0.1:5432"
ca_mode = "google_managed_cas"
"#;

fn scratch(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("cloudsql-emulator-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn relative_paths_are_relative_to_the_config_file() {
    let dir = scratch("cfg-load");
    let file = dir.join("emulator.toml");
    std::fs::write(&file, CONFIG).unwrap();
    let config = FileConfig::load(&file).unwrap();
    assert_eq!(
        config.credentials_dir.as_deref(),
        Some(dir.join("creds").as_path())
    );
    assert_eq!(config.metadata.service_account.as_deref(), Some(VM));
    assert_eq!(config.metadata.project_id.as_deref(), Some("cfg-project-id"));
    assert_eq!(
        config.dns_records,
        [
            DnsRecord::txt("pg.cfg.example.com", &[NAME]),
            DnsRecord::cname("alias.cfg.example.com", "pg.cfg.example.com"),
        ]
    );

    std::fs::write(&file, "credentials_dir = \"/abs/creds\"\n").unwrap();
    let config = FileConfig::load(&file).unwrap();
    assert_eq!(config.credentials_dir.as_deref(), Some(Path::new("/abs/creds")));

    std::fs::write(&file, "[[dns_records]]\nname = \"x.example.com\"\n").unwrap();
    let err = format!("{:#}", anyhow::Error::from(FileConfig::load(&file).unwrap_err()));
    assert!(err.contains("x.example.com") && err.contains("txt"), "{err}");
    std::fs::write(&file, "credentails_dir = \"x\"\n").unwrap();
    let err = format!("{:#}", anyhow::Error::from(FileConfig::load(&file).unwrap_err()));
    assert!(err.contains("credentails_dir"), "a misspelt key is named: {err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn binary_serves_metadata_tokens_dns_records_and_the_control_api_from_its_config() {
    let dir = scratch("cfg-bin");
    std::fs::write(dir.join("emulator.toml"), CONFIG).unwrap();
    // Run from elsewhere, naming the config relatively: paths in it follow the file.
    let elsewhere = scratch("cfg-cwd");
    let relative = Path::new("..")
        .join(dir.file_name().unwrap())
        .join("emulator.toml");
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_cloudsql-emulator"))
        .arg("--config")
        .arg(&relative)
        .current_dir(&elsewhere)
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut printed = HashMap::new();
    let read = async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if line.starts_with("ready") {
                break;
            }
            if let Some((key, value)) = line.split_once(" = ") {
                printed.insert(key.to_owned(), value.to_owned());
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(30), read)
        .await
        .expect("emulator became ready");

    let creds = PathBuf::from(&printed["credentials_file"]);
    assert!(creds.exists(), "{}", creds.display());
    assert_eq!(
        creds.parent().unwrap().canonicalize().unwrap(),
        dir.join("creds").canonicalize().unwrap(),
        "credentials_dir is relative to the config file"
    );

    let http = reqwest::Client::new();
    let metadata = format!("http://{}/computeMetadata/v1", printed["metadata_host"]);
    let token: Value = http
        .get(format!(
            "{metadata}/instance/service-accounts/default/token?scopes={ADMIN}"
        ))
        .header("Metadata-Flavor", "Google")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let access = token["access_token"].as_str().unwrap();
    let project = http
        .get(format!("{metadata}/project/project-id"))
        .header("Metadata-Flavor", "Google")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(project, "cfg-project-id");

    let admin = &printed["admin_api_url"];
    let settings = http
        .get(format!(
            "{admin}/sql/v1beta4/projects/cfg-project/instances/cfg-pg/connectSettings"
        ))
        .bearer_auth(access)
        .send()
        .await
        .unwrap();
    assert_eq!(settings.status(), 200, "the metadata token opens the Admin API");

    let records: Value = http
        .get(format!("{admin}/emulator/v1/dns/records"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        records,
        json!({"records": [
            {"name": "alias.cfg.example.com", "cname": "pg.cfg.example.com"},
            {"name": "pg.cfg.example.com", "txt": [NAME]},
        ]})
    );
    let instances: Value = http
        .get(format!("{admin}/emulator/v1/instances"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(instances["instances"][0]["connectionName"], NAME);
    assert_eq!(instances["instances"][0]["dnsNames"].as_array().unwrap().len(), 1);
    assert!(printed.contains_key("dns_addr"));

    child.kill().await.unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&elsewhere);
}
