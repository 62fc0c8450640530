//! sqlx `MySqlPool` on an emulated Cloud SQL for MySQL instance, in front of the local
//! MariaDB/MySQL (127.0.0.1:3306), through the connector's local Unix socket. No cloud account
//! needed.
//!
//! ```sh
//! cargo run --example sqlx_mysql
//! ```
//!
//! `MYSQL_USER` / `MYSQL_PASSWORD` / `MYSQL_DB` (default: root, empty, mysql) choose the login.

use cloudsql::core::{Connector, Credentials};
use cloudsql_emulator::{Emulator, InstanceConfig};
use sqlx::mysql::{MySqlConnectOptions, MySqlPoolOptions};

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let emulator = Emulator::start().await?;
    let instance = emulator
        .add_instance(InstanceConfig::new(
            "example-project:us-central1:example-mysql",
            "MYSQL_8_0",
            "127.0.0.1:3306".parse()?,
        ))
        .await?;
    let dir = std::env::temp_dir().join(format!("cloudsql-example-{}", std::process::id()));
    let key = emulator.write_service_account_file("example@example-project.iam.gserviceaccount.com", &dir)?;
    // Keep the connector alive as long as the pool: it owns the local socket.
    let connector = Connector::builder()
        .credentials(Credentials::from_file(&key)?)
        .admin_api_endpoint(emulator.admin_api_url())
        .build()?;

    let mut base = MySqlConnectOptions::new()
        .username(&env_or("MYSQL_USER", "root"))
        .database(&env_or("MYSQL_DB", "mysql"));
    let password = env_or("MYSQL_PASSWORD", "");
    if !password.is_empty() {
        base = base.password(&password);
    }
    let pool = cloudsql::sqlx::mysql::pool(
        &connector,
        instance.connection_name(),
        base,
        MySqlPoolOptions::new().max_connections(4),
    )
    .await?;

    let version: String = sqlx::query_scalar("SELECT VERSION()").fetch_one(&pool).await?;
    let sum: i64 = sqlx::query_scalar("SELECT ? + ?")
        .bind(40_i64)
        .bind(2_i64)
        .fetch_one(&pool)
        .await?;
    println!("server version:   {version}");
    println!("40 + 2 =          {sum}");
    println!("Admin API calls:  {}", instance.counters().total());
    pool.close().await;
    connector.close().await;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
