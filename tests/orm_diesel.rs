//! diesel-async through the connector (`cloudsql::postgres::diesel`): DSL queries on a deadpool
//! of several connections, an IAM login, and a connector failure that stays typed inside the
//! pool's error. Against the password-checking PostgreSQL (`scripts/scram-postgres.sh`).
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

mod support;

use std::time::{Duration, Instant};

use diesel::prelude::*;
use diesel::sql_types::{Integer, Text};
use diesel_async::RunQueryDsl;
use diesel_async::pooled_connection::deadpool::Pool;
use diesel_async::{AsyncConnection, AsyncPgConnection};
use support::*;

diesel::table! {
    /// Notes, in the login's own schema.
    notes (id) {
        /// Serial key.
        id -> Int4,
        /// The note's text.
        body -> Text,
    }
}

#[derive(Queryable, Selectable, Debug)]
#[diesel(table_name = notes)]
struct Note {
    id: i32,
    body: String,
}

#[derive(Insertable)]
#[diesel(table_name = notes)]
struct NewNote {
    body: String,
}

const CREATE_NOTES: &str = "CREATE TABLE notes (id serial PRIMARY KEY, body text NOT NULL)";

fn login(user: &str, password: Option<&str>) -> tokio_postgres::Config {
    let mut config = tokio_postgres::Config::new();
    config.user(user).dbname("postgres");
    if let Some(password) = password {
        config.password(password);
    }
    config
}

async fn current_user(conn: &mut AsyncPgConnection) -> String {
    diesel::select(diesel::dsl::sql::<Text>("current_user::text"))
        .get_result(conn)
        .await
        .unwrap()
}

/// An instance in front of the password-checking cluster that lets the env's service account
/// log in by IAM; returns the instance and the database user.
async fn iam_instance(env: &Env) -> (std::sync::Arc<cloudsql_emulator::Instance>, String) {
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
    (inst, db_user)
}

#[tokio::test]
async fn dsl_queries_run_on_a_pool_of_several_connections() {
    let env = Env::new().await;
    let inst = env.add(env.pg_config_for(scram_pg())).await;
    let role = unique("orm");
    create_scram_role(&role, "orm-password").await;
    let pool: Pool<AsyncPgConnection> = cloudsql::postgres::diesel::pool_builder(
        env.connector(),
        inst.connection_name(),
        login(&role, Some("orm-password")),
    )
    .max_size(4)
    .build()
    .unwrap();
    let manager = format!("{:?}", pool.manager());
    assert!(!manager.contains("orm-password"), "{manager}");

    // Three connections checked out at once: three sessions, each through the connector.
    let mut conns = Vec::new();
    for _ in 0..3 {
        conns.push(pool.get().await.unwrap());
    }
    let mut pids = Vec::new();
    for conn in &mut conns {
        let pid: i32 = diesel::select(diesel::dsl::sql::<Integer>("pg_backend_pid()"))
            .get_result(&mut **conn)
            .await
            .unwrap();
        pids.push(pid);
    }
    pids.sort_unstable();
    pids.dedup();
    assert_eq!(pids.len(), 3, "three sessions: {pids:?}");
    assert_eq!(pool.status().size, 3);
    diesel::sql_query(CREATE_NOTES)
        .execute(&mut *conns[0])
        .await
        .unwrap();
    drop(conns);

    // More writers than connections, through the DSL.
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let pool = pool.clone();
            tokio::spawn(async move {
                let mut conn = pool.get().await.unwrap();
                let id: i32 = diesel::insert_into(notes::table)
                    .values(NewNote {
                        body: format!("note-{i}"),
                    })
                    .returning(notes::id)
                    .get_result(&mut conn)
                    .await
                    .unwrap();
                let note: Note = notes::table
                    .find(id)
                    .select(Note::as_select())
                    .first(&mut conn)
                    .await
                    .unwrap();
                assert_eq!((note.id, note.body), (id, format!("note-{i}")));
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let mut conn = pool.get().await.unwrap();
    let count: i64 = notes::table.count().get_result(&mut conn).await.unwrap();
    assert_eq!(count, 16);
    // A transaction through the pooled connection, rolled back.
    let rolled_back = conn
        .transaction::<(), diesel::result::Error, _>(async |conn| {
            diesel::insert_into(notes::table)
                .values(NewNote {
                    body: "rolled back".to_owned(),
                })
                .execute(conn)
                .await?;
            Err(diesel::result::Error::RollbackTransaction)
        })
        .await;
    assert!(matches!(
        rolled_back,
        Err(diesel::result::Error::RollbackTransaction)
    ));
    let count: i64 = notes::table.count().get_result(&mut conn).await.unwrap();
    assert_eq!(count, 16);
    assert_eq!(current_user(&mut conn).await, role);
    assert!(pool.status().size <= 4);
}

#[tokio::test]
async fn iam_login_is_the_iam_user() {
    let env = Env::new().await;
    let (inst, db_user) = iam_instance(&env).await;
    let connector = env.builder().iam_authn(true).build().unwrap();
    // The principal as the user (the connector drops `.gserviceaccount.com`) and no password.
    let pool = cloudsql::postgres::diesel::pool_builder(
        connector.clone(),
        inst.connection_name(),
        login(&env.sa_email, None),
    )
    .max_size(2)
    .build()
    .unwrap();
    let mut first = pool.get().await.unwrap();
    let mut second = pool.get().await.unwrap();
    assert_eq!(current_user(&mut first).await, db_user);
    assert_eq!(current_user(&mut second).await, db_user);
    diesel::sql_query(CREATE_NOTES)
        .execute(&mut *first)
        .await
        .unwrap();
    let id: i32 = diesel::insert_into(notes::table)
        .values(NewNote {
            body: "by IAM".to_owned(),
        })
        .returning(notes::id)
        .get_result(&mut *second)
        .await
        .unwrap();
    assert!(id > 0);

    // One connection without a pool, IAM authn turned on for it alone.
    let plain = env.connector();
    let mut conn = cloudsql::postgres::diesel::connect_with(
        &plain,
        inst.connection_name(),
        &login(&db_user, None),
        &cloudsql::DialOptions::new().iam_authn(true),
    )
    .await
    .unwrap();
    assert_eq!(current_user(&mut conn).await, db_user);
}

#[tokio::test]
async fn refused_login_keeps_the_servers_sqlstate() {
    let env = Env::new().await;
    let (inst, db_user) = iam_instance(&env).await;
    // Without IAM authn the server wants an access token as the password.
    let err = cloudsql::postgres::diesel::connect(
        &env.connector(),
        inst.connection_name(),
        &login(&db_user, Some("not-a-token")),
    )
    .await
    .map(|_| ())
    .unwrap_err();
    assert!(
        cloudsql::postgres::diesel::connector_error(&err).is_none(),
        "{err}"
    );
    let Some(cloudsql::postgres::Error::Postgres(pg)) = cloudsql::postgres::diesel::cloudsql_error(&err)
    else {
        panic!("expected the PostgreSQL error, got {err:?}")
    };
    assert_eq!(pg.as_db_error().expect("server error").code().code(), "28P01");
}

#[tokio::test]
async fn unknown_instance_is_the_connectors_typed_error_inside_the_pool_error() {
    let env = Env::new().await;
    env.add(env.pg_config_for(scram_pg())).await;
    let pool = cloudsql::postgres::diesel::pool_builder(
        env.connector(),
        "test-project:us-central1:no-such-instance",
        login("app", Some("secret")),
    )
    .max_size(2)
    .build()
    .unwrap();
    let started = Instant::now();
    let err = pool.get().await.map(|_| ()).unwrap_err();
    // Not a pool timeout: the Admin API's answer, at once.
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert!(
        matches!(
            err,
            diesel_async::pooled_connection::deadpool::PoolError::Backend(
                diesel_async::pooled_connection::PoolError::ConnectionError(_)
            )
        ),
        "{err:?}"
    );
    match cloudsql::postgres::diesel::connector_error(&err) {
        Some(cloudsql::Error::AdminApi { status: 404, .. }) => {}
        other => panic!("expected the Admin API's 404, got {other:?} in {err:?}"),
    }
    assert!(err.to_string().contains("no-such-instance"), "{err}");
}
