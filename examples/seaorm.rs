//! SeaORM on an emulated Cloud SQL for PostgreSQL instance, in front of the local PostgreSQL
//! (127.0.0.1:5432), through the connector: a pool of connections, an entity inserted and read
//! back, then the same through automatic IAM database authentication. No cloud account needed.
//!
//! ```sh
//! cargo run --example seaorm --features sea-orm
//! ```
//!
//! `PGUSER` / `PGPASSWORD` / `PGDATABASE` (default: postgres, empty, postgres) choose the admin
//! login; it must be allowed to create roles (it creates, then drops, the IAM user's role).

use std::hash::BuildHasher;

use cloudsql::core::{Connector, Credentials, DialOptions};
use cloudsql_emulator::{Emulator, InstanceConfig};
use sea_orm::{
    ActiveModelTrait, ActiveValue, ConnectionTrait, DatabaseConnection, DbBackend, EntityTrait, QueryOrder,
    Schema, Statement,
};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

/// A note: the entity this example stores.
#[allow(unreachable_pub)] // SeaORM's derives make the entity's items public.
mod note {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "notes")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i32,
        pub body: String,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

const PRINCIPAL: &str = "seaorm@example-project.iam.gserviceaccount.com";
/// The database user of `PRINCIPAL`: PostgreSQL IAM users drop `.gserviceaccount.com`.
const IAM_USER: &str = "seaorm@example-project.iam";

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

async fn text(db: &DatabaseConnection, sql: &str) -> anyhow::Result<String> {
    let row = db
        .query_one(Statement::from_string(DbBackend::Postgres, sql))
        .await?
        .ok_or_else(|| anyhow::anyhow!("no row for {sql}"))?;
    Ok(row.try_get_by_index(0)?)
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
    let dir = std::env::temp_dir().join(format!("cloudsql-seaorm-{}", std::process::id()));
    let key = emulator.write_service_account_file(PRINCIPAL, &dir)?;
    let connector = Connector::builder()
        .credentials(Credentials::from_file(&key)?)
        .admin_api_endpoint(emulator.admin_api_url())
        .build()?;

    // 1. A pool with a password login: one line.
    let admin = PgConnectOptions::new()
        .username(&env_or("PGUSER", "postgres"))
        .password(&env_or("PGPASSWORD", ""))
        .database(&env_or("PGDATABASE", "postgres"));
    let db = cloudsql::sqlx::sea_orm::connect(
        &connector,
        instance.connection_name(),
        admin,
        PgPoolOptions::new().max_connections(4),
    )
    .await?;
    println!(
        "admin login:      {}",
        text(&db, "SELECT current_user::text").await?
    );
    // The IAM user's role, with a schema of its own for the example's table.
    db.execute_unprepared(&format!(
        "DROP SCHEMA IF EXISTS \"{IAM_USER}\" CASCADE; DROP ROLE IF EXISTS \"{IAM_USER}\"; \
         CREATE ROLE \"{IAM_USER}\" LOGIN PASSWORD '{backend_password}'; \
         CREATE SCHEMA \"{IAM_USER}\" AUTHORIZATION \"{IAM_USER}\""
    ))
    .await?;

    // 2. A pool with automatic IAM authn: the principal as the user, no password.
    let iam = PgConnectOptions::new()
        .username(PRINCIPAL)
        .database(&env_or("PGDATABASE", "postgres"));
    let iam_db = cloudsql::sqlx::sea_orm::connect_with(
        &connector,
        instance.connection_name(),
        iam,
        PgPoolOptions::new().max_connections(4),
        &DialOptions::new().iam_authn(true),
    )
    .await?;
    println!(
        "IAM login:        {}",
        text(&iam_db, "SELECT current_user::text").await?
    );

    // The entity's table lands in the IAM user's own schema (first on its search path).
    let create = Schema::new(DbBackend::Postgres).create_table_from_entity(note::Entity);
    iam_db.execute(DbBackend::Postgres.build(&create)).await?;
    let writers: Vec<_> = ["hello", "from", "SeaORM"]
        .into_iter()
        .map(|body| {
            let db = iam_db.clone();
            tokio::spawn(async move {
                note::ActiveModel {
                    body: ActiveValue::Set(body.to_owned()),
                    ..Default::default()
                }
                .insert(&db)
                .await
            })
        })
        .collect();
    for writer in writers {
        writer.await??;
    }
    let notes = note::Entity::find()
        .order_by_asc(note::Column::Id)
        .all(&iam_db)
        .await?;
    let bodies: Vec<_> = notes.iter().map(|n| n.body.as_str()).collect();
    println!("rows read back:   {} (3 writers at once)", bodies.join(" "));
    println!(
        "pooled sessions:  {} (admin), {} (IAM)",
        db.get_postgres_connection_pool().size(),
        iam_db.get_postgres_connection_pool().size()
    );
    println!("Admin API calls:  {}", instance.counters().total());

    iam_db.close().await?;
    db.execute_unprepared(&format!(
        "DROP SCHEMA \"{IAM_USER}\" CASCADE; DROP ROLE \"{IAM_USER}\""
    ))
    .await?;
    db.close().await?;
    connector.close().await;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
