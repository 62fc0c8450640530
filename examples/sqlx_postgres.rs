//! sqlx `PgPool` on an emulated Cloud SQL for PostgreSQL instance, in front of the local
//! PostgreSQL (127.0.0.1:5432), through the connector's local Unix socket. No cloud account needed.
//!
//! ```sh
//! cargo run --example sqlx_postgres
//! ```
//!
//! `PGUSER` / `PGPASSWORD` / `PGDATABASE` (default: postgres, empty, postgres) choose the login.

use cloudsql::core::{Connector, Credentials};
use cloudsql_emulator::{Emulator, InstanceConfig};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let emulator = Emulator::start().await?;
    let instance = emulator
        .add_instance(InstanceConfig::new(
            "example-project:us-central1:example-pg",
            "POSTGRES_15",
            "127.0.0.1:5432".parse()?,
        ))
        .await?;
    let dir = std::env::temp_dir().join(format!("cloudsql-example-{}", std::process::id()));
    let key = emulator.write_service_account_file("example@example-project.iam.gserviceaccount.com", &dir)?;
    // Keep the connector alive as long as the pool: it owns the local socket.
    let connector = Connector::builder()
        .credentials(Credentials::from_file(&key)?)
        .admin_api_endpoint(emulator.admin_api_url())
        .build()?;

    let base = PgConnectOptions::new()
        .username(&env_or("PGUSER", "postgres"))
        .password(&env_or("PGPASSWORD", ""))
        .database(&env_or("PGDATABASE", "postgres"))
        .statement_cache_capacity(64);
    let pool = cloudsql::sqlx::postgres::pool(
        &connector,
        instance.connection_name(),
        base,
        PgPoolOptions::new().max_connections(4),
    )
    .await?;

    let mut tx = pool.begin().await?;
    sqlx::query("CREATE TEMP TABLE greetings (id serial, text text)")
        .execute(&mut *tx)
        .await?;
    for text in ["hello", "from", "sqlx"] {
        sqlx::query("INSERT INTO greetings (text) VALUES ($1)")
            .bind(text)
            .execute(&mut *tx)
            .await?;
    }
    let words: Vec<String> = sqlx::query_scalar("SELECT text FROM greetings ORDER BY id")
        .fetch_all(&mut *tx)
        .await?;
    tx.rollback().await?;
    let version: String = sqlx::query_scalar("SHOW server_version").fetch_one(&pool).await?;
    println!("server version:   PostgreSQL {version}");
    println!("rows read back:   {}", words.join(" "));
    println!("Admin API calls:  {}", instance.counters().total());
    pool.close().await;
    connector.close().await;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
