//! diesel-async on an emulated Cloud SQL for PostgreSQL instance, in front of the local
//! PostgreSQL (127.0.0.1:5432), through the connector: a deadpool of `AsyncPgConnection`s, rows
//! inserted and read back with diesel's DSL, then the same through automatic IAM database
//! authentication. No cloud account needed.
//!
//! ```sh
//! cargo run --example diesel_async --features diesel-async
//! ```
//!
//! `PGUSER` / `PGPASSWORD` / `PGDATABASE` (default: postgres, empty, postgres) choose the admin
//! login; it must be allowed to create roles (it creates, then drops, the IAM user's role).

use std::hash::BuildHasher;

use cloudsql::core::{Connector, Credentials, DialOptions};
use cloudsql_emulator::{Emulator, InstanceConfig};
use diesel::prelude::*;
use diesel::sql_types::Text;
use diesel_async::RunQueryDsl;
use diesel_async::pooled_connection::deadpool::Pool;
use diesel_async::{AsyncPgConnection, SimpleAsyncConnection};

diesel::table! {
    /// Notes, in the login's own schema.
    notes (id) {
        /// Serial key.
        id -> Int4,
        /// The note's text.
        body -> Text,
    }
}

/// A stored note.
#[derive(Queryable, Selectable)]
#[diesel(table_name = notes)]
struct Note {
    body: String,
}

/// A note to insert.
#[derive(Insertable)]
#[diesel(table_name = notes)]
struct NewNote<'a> {
    body: &'a str,
}

const PRINCIPAL: &str = "diesel@example-project.iam.gserviceaccount.com";
/// The database user of `PRINCIPAL`: PostgreSQL IAM users drop `.gserviceaccount.com`.
const IAM_USER: &str = "diesel@example-project.iam";

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

async fn current_user(pool: &Pool<AsyncPgConnection>) -> anyhow::Result<String> {
    let mut conn = pool.get().await?;
    Ok(diesel::select(diesel::dsl::sql::<Text>("current_user::text"))
        .get_result(&mut conn)
        .await?)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let emulator = Emulator::start().await?;
    // The emulator logs the IAM user in to the backend with this password (random per run).
    let backend_password = format!(
        "emulator-only-{:016x}",
        std::collections::hash_map::RandomState::new().hash_one(std::process::id())
    );
    let instance = emulator
        .add_instance(
            InstanceConfig::new(
                "example-project:us-central1:example-pg",
                "POSTGRES_15",
                "127.0.0.1:5432".parse()?,
            )
            .iam_user(PRINCIPAL, &backend_password),
        )
        .await?;
    let dir = std::env::temp_dir().join(format!("cloudsql-diesel-{}", std::process::id()));
    let key = emulator.write_service_account_file(PRINCIPAL, &dir)?;
    let connector = Connector::builder()
        .credentials(Credentials::from_file(&key)?)
        .admin_api_endpoint(emulator.admin_api_url())
        .build()?;

    // 1. A pool with a password login: one line.
    let mut admin = tokio_postgres::Config::new();
    admin
        .user(env_or("PGUSER", "postgres"))
        .password(env_or("PGPASSWORD", ""))
        .dbname(env_or("PGDATABASE", "postgres"));
    let pool = cloudsql::postgres::diesel::pool_builder(connector.clone(), instance.connection_name(), admin)
        .max_size(4)
        .build()?;
    println!("admin login:      {}", current_user(&pool).await?);
    // The IAM user's role, with a schema of its own for the example's table.
    pool.get()
        .await?
        .batch_execute(&format!(
            "DROP SCHEMA IF EXISTS \"{IAM_USER}\" CASCADE; DROP ROLE IF EXISTS \"{IAM_USER}\"; \
             CREATE ROLE \"{IAM_USER}\" LOGIN PASSWORD '{backend_password}'; \
             CREATE SCHEMA \"{IAM_USER}\" AUTHORIZATION \"{IAM_USER}\""
        ))
        .await?;

    // 2. A pool with automatic IAM authn: the principal as the user, no password.
    let mut iam = tokio_postgres::Config::new();
    iam.user(PRINCIPAL).dbname(env_or("PGDATABASE", "postgres"));
    let iam_pool = cloudsql::postgres::diesel::pool_builder_with(
        connector.clone(),
        instance.connection_name(),
        iam,
        DialOptions::new().iam_authn(true),
    )
    .max_size(4)
    .build()?;
    println!("IAM login:        {}", current_user(&iam_pool).await?);

    // The table lands in the IAM user's own schema (first on its search path).
    let mut conn = iam_pool.get().await?;
    conn.batch_execute("CREATE TABLE notes (id serial PRIMARY KEY, body text NOT NULL)")
        .await?;
    diesel::insert_into(notes::table)
        .values(&[
            NewNote { body: "hello" },
            NewNote { body: "from" },
            NewNote { body: "diesel-async" },
        ])
        .execute(&mut conn)
        .await?;
    let notes: Vec<Note> = notes::table
        .order(notes::id)
        .select(Note::as_select())
        .load(&mut conn)
        .await?;
    drop(conn);
    let bodies: Vec<_> = notes.iter().map(|n| n.body.as_str()).collect();
    println!("rows read back:   {}", bodies.join(" "));
    println!(
        "pooled sessions:  {} (admin), {} (IAM)",
        pool.status().size,
        iam_pool.status().size
    );
    println!("Admin API calls:  {}", instance.counters().total());

    iam_pool.close();
    pool.get()
        .await?
        .batch_execute(&format!(
            "DROP SCHEMA \"{IAM_USER}\" CASCADE; DROP ROLE \"{IAM_USER}\""
        ))
        .await?;
    pool.close();
    connector.close().await;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
