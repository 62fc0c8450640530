//! SeaORM through the connector (`cloudsql::sqlx::sea_orm`): entity queries on a pool of several
//! connections, an IAM login, and a connector failure that stays typed inside SeaORM's `DbErr`.
//! Against the password-checking PostgreSQL (`scripts/scram-postgres.sh`).
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

mod support;

use std::time::{Duration, Instant};

use sea_orm::{
    ActiveModelTrait, ActiveValue, ConnectionTrait, DatabaseConnection, DbBackend, DbErr, EntityTrait,
    PaginatorTrait, QueryOrder, Schema, Statement, TransactionTrait,
};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use support::*;

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

/// Creates `notes` in the login's own schema (first on its search path).
async fn create_notes(db: &DatabaseConnection) {
    let backend = db.get_database_backend();
    let create = Schema::new(backend).create_table_from_entity(note::Entity);
    db.execute(backend.build(&create)).await.unwrap();
}

async fn scalar_text(db: &impl ConnectionTrait, sql: &str) -> String {
    db.query_one(Statement::from_string(DbBackend::Postgres, sql))
        .await
        .unwrap()
        .expect("one row")
        .try_get_by_index(0)
        .unwrap()
}

#[tokio::test]
async fn entities_round_trip_on_a_pool_of_several_connections() {
    let env = Env::new().await;
    let inst = env.add(env.pg_config_for(scram_pg())).await;
    let role = unique("orm");
    create_scram_role(&role, "orm-password").await;
    let options = PgConnectOptions::new()
        .username(&role)
        .password("orm-password")
        .database("postgres");
    let connector = env.connector();
    let db = cloudsql::sqlx::sea_orm::connect(
        &connector,
        inst.connection_name(),
        options,
        PgPoolOptions::new().max_connections(4),
    )
    .await
    .unwrap();
    assert!(!format!("{db:?}").contains("orm-password"), "{db:?}");
    create_notes(&db).await;

    // Three transactions open at once hold three pooled connections, each its own session.
    let txs = futures_util::future::try_join_all((0..3).map(|_| db.begin()))
        .await
        .unwrap();
    let mut pids = Vec::new();
    for (i, tx) in txs.iter().enumerate() {
        pids.push(scalar_text(tx, "SELECT pg_backend_pid()::text").await);
        note::ActiveModel {
            body: ActiveValue::Set(format!("note-{i}")),
            ..Default::default()
        }
        .insert(tx)
        .await
        .unwrap();
    }
    pids.sort();
    pids.dedup();
    assert_eq!(pids.len(), 3, "three sessions: {pids:?}");
    for tx in txs {
        tx.commit().await.unwrap();
    }
    assert!(db.get_postgres_connection_pool().size() >= 3);

    // Then more writers than connections, through the ORM.
    let tasks: Vec<_> = (3..19)
        .map(|i| {
            let db = db.clone();
            tokio::spawn(async move {
                let inserted = note::ActiveModel {
                    body: ActiveValue::Set(format!("note-{i}")),
                    ..Default::default()
                }
                .insert(&db)
                .await
                .unwrap();
                let found = note::Entity::find_by_id(inserted.id)
                    .one(&db)
                    .await
                    .unwrap()
                    .expect("row");
                assert_eq!(found.body, format!("note-{i}"));
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(note::Entity::find().count(&db).await.unwrap(), 19);
    let first = note::Entity::find()
        .order_by_asc(note::Column::Id)
        .one(&db)
        .await
        .unwrap()
        .expect("row");
    assert_eq!(first.body, "note-0");
    assert_eq!(scalar_text(&db, "SELECT current_user::text").await, role);
    assert!(db.get_postgres_connection_pool().size() <= 4);
    db.close().await.unwrap();
}

#[tokio::test]
async fn iam_login_is_the_iam_user() {
    let env = Env::new().await;
    let db_user = env
        .sa_email
        .strip_suffix(".gserviceaccount.com")
        .unwrap()
        .to_owned();
    let backend_password = unique("only-the-emulator-knows");
    create_scram_role(&db_user, &backend_password).await;
    let inst = env
        .add(
            env.pg_config_for(scram_pg())
                .iam_user(&env.sa_email, &backend_password),
        )
        .await;
    let connector = env.builder().iam_authn(true).build().unwrap();
    // The principal as the user (the connector drops `.gserviceaccount.com`) and no password.
    let options = PgConnectOptions::new()
        .username(&env.sa_email)
        .database("postgres");
    let db = cloudsql::sqlx::sea_orm::connect(
        &connector,
        inst.connection_name(),
        options,
        PgPoolOptions::new().max_connections(2),
    )
    .await
    .unwrap();
    assert_eq!(scalar_text(&db, "SELECT current_user::text").await, db_user);
    create_notes(&db).await;
    let inserted = note::ActiveModel {
        body: ActiveValue::Set("by IAM".to_owned()),
        ..Default::default()
    }
    .insert(&db)
    .await
    .unwrap();
    let found = note::Entity::find_by_id(inserted.id).one(&db).await.unwrap();
    assert_eq!(found.map(|n| n.body).as_deref(), Some("by IAM"));
    db.close().await.unwrap();
}

#[tokio::test]
async fn per_pool_iam_authn_leaves_the_connector_default_alone() {
    let env = Env::new().await;
    let db_user = env
        .sa_email
        .strip_suffix(".gserviceaccount.com")
        .unwrap()
        .to_owned();
    let backend_password = unique("only-the-emulator-knows");
    create_scram_role(&db_user, &backend_password).await;
    let inst = env
        .add(
            env.pg_config_for(scram_pg())
                .iam_user(&env.sa_email, &backend_password),
        )
        .await;
    let connector = env.connector();
    let options = PgConnectOptions::new().username(&db_user).database("postgres");
    // Without IAM authn the server wants an access token as the password: the login fails
    // inside sqlx, and SeaORM reports it as Database::connect would.
    let err = cloudsql::sqlx::sea_orm::connect(
        &connector,
        inst.connection_name(),
        options.clone().password("not-a-token"),
        PgPoolOptions::new(),
    )
    .await
    .unwrap_err();
    assert!(cloudsql::sqlx::sea_orm::connector_error(&err).is_none(), "{err}");
    let DbErr::Conn(sea_orm::RuntimeErr::SqlxError(sqlx::Error::Database(db_err))) = &err else {
        panic!("expected the server's refusal, got {err:?}")
    };
    assert_eq!(db_err.code().as_deref(), Some("28P01"));

    let db = cloudsql::sqlx::sea_orm::connect_with(
        &connector,
        inst.connection_name(),
        options,
        PgPoolOptions::new(),
        &cloudsql::DialOptions::new().iam_authn(true),
    )
    .await
    .unwrap();
    assert_eq!(scalar_text(&db, "SELECT current_user::text").await, db_user);
    db.close().await.unwrap();
}

#[tokio::test]
async fn unknown_instance_is_the_connectors_typed_error_inside_db_err() {
    let env = Env::new().await;
    env.add(env.pg_config_for(scram_pg())).await;
    let connector = env.connector();
    let started = Instant::now();
    let err = cloudsql::sqlx::sea_orm::connect(
        &connector,
        "test-project:us-central1:no-such-instance",
        PgConnectOptions::new().username("app").database("postgres"),
        PgPoolOptions::new().acquire_timeout(Duration::from_secs(30)),
    )
    .await
    .unwrap_err();
    // Not a pool timeout: the Admin API's answer, at once.
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert!(matches!(err, DbErr::Conn(_)), "{err:?}");
    match cloudsql::sqlx::sea_orm::connector_error(&err) {
        Some(cloudsql::Error::AdminApi { status: 404, .. }) => {}
        other => panic!("expected the Admin API's 404, got {other:?} in {err:?}"),
    }
    assert!(err.to_string().contains("no-such-instance"), "{err}");
}
