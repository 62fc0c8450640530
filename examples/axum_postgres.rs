//! A small JSON API (notes) in axum, with a deadpool-postgres pool in the app state, on an
//! emulated Cloud SQL for PostgreSQL instance in front of the local PostgreSQL. No cloud account
//! needed.
//!
//! ```sh
//! cargo run --example axum_postgres
//! curl -s -X POST localhost:3000/notes -H 'content-type: application/json' -d '{"text":"hi"}'
//! curl -s localhost:3000/notes
//! ```
//!
//! This is the serverless-style example: it uses the **lazy** refresh strategy. On Cloud Run or
//! Cloud Functions the CPU is throttled between requests, so a background refresh task may not
//! run in time and certificates could expire; lazy refresh renews the certificate inline, on the
//! request that needs it.

use std::net::SocketAddr;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use cloudsql::core::{Connector, Credentials, RefreshStrategy};
use cloudsql_emulator::{Emulator, InstanceConfig};
use deadpool_postgres::Pool;
use serde::{Deserialize, Serialize};

/// A note as the API shows it.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct Note {
    /// Its id.
    pub id: i64,
    /// Its text.
    pub text: String,
}

/// The body of `POST /notes`.
#[derive(Debug, Serialize, Deserialize)]
pub struct NewNote {
    /// The text to store.
    pub text: String,
}

type ApiError = (StatusCode, String);

fn internal(e: impl std::fmt::Display) -> ApiError {
    (StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
}

/// Creates the table the API serves.
pub async fn create_table(pool: &Pool) -> anyhow::Result<()> {
    pool.get()
        .await?
        .batch_execute("CREATE TABLE IF NOT EXISTS notes (id bigserial PRIMARY KEY, text text NOT NULL)")
        .await?;
    Ok(())
}

/// `GET /notes`, `POST /notes`, `GET /notes/{id}`.
pub fn router(pool: Pool) -> Router {
    Router::new()
        .route("/notes", get(list).post(create))
        .route("/notes/{id}", get(fetch))
        .with_state(pool)
}

async fn list(State(pool): State<Pool>) -> Result<Json<Vec<Note>>, ApiError> {
    let client = pool.get().await.map_err(internal)?;
    let rows = client
        .query("SELECT id, text FROM notes ORDER BY id", &[])
        .await
        .map_err(internal)?;
    Ok(Json(
        rows.iter()
            .map(|r| Note {
                id: r.get(0),
                text: r.get(1),
            })
            .collect(),
    ))
}

async fn create(
    State(pool): State<Pool>,
    Json(new): Json<NewNote>,
) -> Result<(StatusCode, Json<Note>), ApiError> {
    if new.text.trim().is_empty() {
        return Err((StatusCode::BAD_REQUEST, "text must not be empty".into()));
    }
    let client = pool.get().await.map_err(internal)?;
    let row = client
        .query_one(
            "INSERT INTO notes (text) VALUES ($1) RETURNING id, text",
            &[&new.text],
        )
        .await
        .map_err(internal)?;
    Ok((
        StatusCode::CREATED,
        Json(Note {
            id: row.get(0),
            text: row.get(1),
        }),
    ))
}

async fn fetch(State(pool): State<Pool>, Path(id): Path<i64>) -> Result<Json<Note>, ApiError> {
    let client = pool.get().await.map_err(internal)?;
    let row = client
        .query_opt("SELECT id, text FROM notes WHERE id = $1", &[&id])
        .await
        .map_err(internal)?
        .ok_or((StatusCode::NOT_FOUND, format!("no note {id}")))?;
    Ok(Json(Note {
        id: row.get(0),
        text: row.get(1),
    }))
}

#[allow(dead_code)] // The integration test includes this file for `router` and `create_table`.
#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let emulator = Emulator::start().await?;
    let instance = emulator
        .add_instance(InstanceConfig::new(
            "example-project:us-central1:notes-pg",
            "POSTGRES_15",
            "127.0.0.1:5432".parse()?,
        ))
        .await?;
    let dir = std::env::temp_dir().join(format!("cloudsql-example-{}", std::process::id()));
    let key = emulator.write_service_account_file("notes@example-project.iam.gserviceaccount.com", &dir)?;
    // One connector for the whole process; lazy refresh for serverless CPUs (see above).
    let connector = Connector::builder()
        .credentials(Credentials::from_file(&key)?)
        .admin_api_endpoint(emulator.admin_api_url())
        .refresh_strategy(RefreshStrategy::Lazy)
        .build()?;
    let mut config = tokio_postgres::Config::new();
    config.user("postgres").dbname("postgres");
    let pool =
        cloudsql::postgres::deadpool::pool_builder(connector.clone(), instance.connection_name(), config)
            .max_size(8)
            .build()?;
    create_table(&pool).await?;

    let addr: SocketAddr = std::env::var("ADDR")
        .unwrap_or_else(|_| "127.0.0.1:3000".into())
        .parse()?;
    let listener = tokio::net::TcpListener::bind(addr).await?;
    println!(
        "notes API on http://{} (instance {}); Ctrl-C to stop",
        listener.local_addr()?,
        instance.connection_name()
    );
    axum::serve(listener, router(pool))
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    connector.close().await;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
