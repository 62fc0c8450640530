//! mysql_async pool on an emulated Cloud SQL for MySQL instance, in front of the local
//! MariaDB/MySQL (127.0.0.1:3306). mysql_async reaches it through the connector's local Unix
//! socket. No cloud account needed.
//!
//! ```sh
//! cargo run --example mysql_async_pool
//! ```
//!
//! `MYSQL_USER` / `MYSQL_PASSWORD` / `MYSQL_DB` (default: root, empty, mysql) choose the login.

use cloudsql::core::{Connector, Credentials};
use cloudsql_emulator::{Emulator, InstanceConfig};
use mysql_async::prelude::*;

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let emulator = Emulator::start().await?;
    let instance = emulator
        .add_instance(
            InstanceConfig::new(
                "example-project:us-central1:example-mysql",
                "MYSQL_8_0",
                "127.0.0.1:3306".parse()?,
            )
            .mdx(true),
        )
        .await?;
    let dir = std::env::temp_dir().join(format!("cloudsql-example-{}", std::process::id()));
    let key = emulator.write_service_account_file("example@example-project.iam.gserviceaccount.com", &dir)?;
    // Keep the connector alive as long as the pool: it owns the local socket.
    let connector = Connector::builder()
        .credentials(Credentials::from_file(&key)?)
        .admin_api_endpoint(emulator.admin_api_url())
        .build()?;

    let password = env_or("MYSQL_PASSWORD", "");
    let opts = mysql_async::OptsBuilder::default()
        .user(Some(env_or("MYSQL_USER", "root")))
        .pass((!password.is_empty()).then_some(password))
        .db_name(Some(env_or("MYSQL_DB", "mysql")));
    let pool = cloudsql::mysql::pool(&connector, instance.connection_name(), opts).await?;

    let tasks: Vec<_> = (1..=8)
        .map(|i: i64| {
            let pool = pool.clone();
            tokio::spawn(async move {
                let mut conn = pool.get_conn().await?;
                let square: Option<i64> = conn.exec_first("SELECT ? * ?", (i, i)).await?;
                Ok::<_, mysql_async::Error>(square.unwrap_or_default())
            })
        })
        .collect();
    let mut squares = Vec::new();
    for task in tasks {
        squares.push(task.await??);
    }
    let mut conn = pool.get_conn().await?;
    let version: Option<String> = conn.query_first("SELECT VERSION()").await?;
    drop(conn);
    println!("server version:        {}", version.unwrap_or_default());
    println!("8 concurrent queries:  squares {squares:?}");
    let mdx = instance.counters().metadata_exchanges();
    println!(
        "connections dialed:    {} (each announced itself as a Unix socket client: {})",
        mdx.len(),
        mdx.iter().all(|m| m.client_protocol_type == 3)
    );
    println!(
        "Admin API calls:       {} (one refresh serves every pooled connection)",
        instance.counters().total()
    );
    pool.disconnect().await?;
    connector.close().await;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
