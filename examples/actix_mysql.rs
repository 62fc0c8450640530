//! A small JSON API (items) in actix-web, with a sqlx `MySqlPool` in `web::Data`, on an emulated
//! Cloud SQL for MySQL instance in front of the local MariaDB/MySQL. No cloud account needed.
//!
//! ```sh
//! cargo run --example actix_mysql
//! curl -s -X POST localhost:8080/items -H 'content-type: application/json' -d '{"name":"apple"}'
//! curl -s localhost:8080/items
//! ```
//!
//! `MYSQL_USER` / `MYSQL_PASSWORD` / `MYSQL_DB` (default: root, empty, test) choose the login.

use actix_web::{App, HttpResponse, HttpServer, web};
use cloudsql::core::{Connector, Credentials};
use cloudsql_emulator::{Emulator, InstanceConfig};
use serde::{Deserialize, Serialize};
use sqlx::mysql::{MySqlConnectOptions, MySqlPoolOptions};
use sqlx::{MySqlPool, Row};

/// An item as the API shows it.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct Item {
    /// Its id.
    pub id: i64,
    /// Its name.
    pub name: String,
}

/// The body of `POST /items`.
#[derive(Debug, Serialize, Deserialize)]
pub struct NewItem {
    /// The name to store.
    pub name: String,
}

/// Creates the table the API serves.
pub async fn create_table(pool: &MySqlPool) -> anyhow::Result<()> {
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS items (id BIGINT AUTO_INCREMENT PRIMARY KEY, name VARCHAR(100) NOT NULL)",
    )
    .execute(pool)
    .await?;
    Ok(())
}

/// `GET /items`, `POST /items`.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/items", web::get().to(list))
        .route("/items", web::post().to(create));
}

async fn list(pool: web::Data<MySqlPool>) -> HttpResponse {
    match sqlx::query("SELECT id, name FROM items ORDER BY id")
        .fetch_all(pool.get_ref())
        .await
    {
        Ok(rows) => HttpResponse::Ok().json(
            rows.iter()
                .map(|r| Item {
                    id: r.get("id"),
                    name: r.get("name"),
                })
                .collect::<Vec<_>>(),
        ),
        Err(e) => HttpResponse::InternalServerError().body(e.to_string()),
    }
}

async fn create(pool: web::Data<MySqlPool>, new: web::Json<NewItem>) -> HttpResponse {
    if new.name.trim().is_empty() {
        return HttpResponse::BadRequest().body("name must not be empty");
    }
    let result = sqlx::query("INSERT INTO items (name) VALUES (?)")
        .bind(&new.name)
        .execute(pool.get_ref())
        .await;
    match result {
        Ok(done) => HttpResponse::Created().json(Item {
            id: done.last_insert_id() as i64,
            name: new.name.clone(),
        }),
        Err(e) => HttpResponse::InternalServerError().body(e.to_string()),
    }
}

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

#[allow(dead_code)] // The integration test includes this file for `configure` and `create_table`.
#[actix_web::main]
async fn main() -> anyhow::Result<()> {
    let emulator = Emulator::start().await?;
    let instance = emulator
        .add_instance(InstanceConfig::new(
            "example-project:us-central1:items-mysql",
            "MYSQL_8_0",
            "127.0.0.1:3306".parse()?,
        ))
        .await?;
    let dir = std::env::temp_dir().join(format!("cloudsql-example-{}", std::process::id()));
    let key = emulator.write_service_account_file("items@example-project.iam.gserviceaccount.com", &dir)?;
    // Keep the connector alive as long as the pool: it owns the local socket.
    let connector = Connector::builder()
        .credentials(Credentials::from_file(&key)?)
        .admin_api_endpoint(emulator.admin_api_url())
        .build()?;
    let mut options = MySqlConnectOptions::new()
        .username(&env_or("MYSQL_USER", "root"))
        .database(&env_or("MYSQL_DB", "test"));
    let password = env_or("MYSQL_PASSWORD", "");
    if !password.is_empty() {
        options = options.password(&password);
    }
    let pool = cloudsql::sqlx::mysql::pool(
        &connector,
        instance.connection_name(),
        options,
        MySqlPoolOptions::new().max_connections(8),
    )
    .await?;
    create_table(&pool).await?;

    let addr = env_or("ADDR", "127.0.0.1:8080");
    println!(
        "items API on http://{addr} (instance {}); Ctrl-C to stop",
        instance.connection_name()
    );
    let data = web::Data::new(pool);
    HttpServer::new(move || App::new().app_data(data.clone()).configure(configure))
        .bind(&addr)?
        .run()
        .await?;
    connector.close().await;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
