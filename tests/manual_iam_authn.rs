//! Manual IAM database authentication: with automatic IAM authn off, an IAM user logs in with an
//! OAuth2 access token (scope `sqlservice.login` or cloud-platform) as the password, as on real
//! Cloud SQL. The emulator checks the token with its OAuth server: expired, wrong-principal and
//! wrong-scope tokens are refused.
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

mod support;

use std::time::Duration;

use mysql_async::prelude::Queryable;
use support::*;

const LOGIN: &str = "https://www.googleapis.com/auth/sqlservice.login";
const CLOUD_PLATFORM: &str = "https://www.googleapis.com/auth/cloud-platform";
const ADMIN: &str = "https://www.googleapis.com/auth/sqlservice.admin";

fn pg_login(user: &str, password: &str) -> tokio_postgres::Config {
    let mut config = tokio_postgres::Config::new();
    config.user(user).password(password).dbname("postgres");
    config
}

#[tokio::test]
async fn postgres_accepts_a_login_token_as_the_password_and_refuses_bad_ones() {
    let env = Env::new().await;
    let principal = env.sa_email.clone();
    let db_user = principal.strip_suffix(".gserviceaccount.com").unwrap().to_owned();
    let backend_password = unique("only-the-emulator-knows");
    create_scram_role(&db_user, &backend_password).await;
    let inst = env
        .add(
            env.pg_config_for(scram_pg())
                .iam_user(&principal, &backend_password),
        )
        .await;
    let connector = env.connector();
    let name = inst.connection_name().to_owned();
    let hour = Duration::from_secs(3600);

    for scope in [LOGIN, CLOUD_PLATFORM] {
        let token = env.emulator.issue_token(&principal, &[scope], hour);
        let (client, connection) =
            cloudsql::postgres::connect(&connector, &name, &pg_login(&db_user, &token))
                .await
                .unwrap_or_else(|e| panic!("{scope}: {e}"));
        tokio::spawn(connection);
        let user: String = client
            .query_one("SELECT current_user::text", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(user, db_user);
    }

    let other = env.emulator.issue_token(
        "someone-else@test-project.iam.gserviceaccount.com",
        &[LOGIN],
        hour,
    );
    let admin_only = env.emulator.issue_token(&principal, &[ADMIN], hour);
    let expired = env.emulator.issue_token(&principal, &[LOGIN], Duration::ZERO);
    for (case, password, why) in [
        ("another principal's token", other.as_str(), "another principal"),
        ("a token without the login scope", admin_only.as_str(), "scope"),
        ("an expired token", expired.as_str(), "invalid or expired"),
        ("not a token", "hunter2", "invalid or expired"),
    ] {
        let err = cloudsql::postgres::connect(&connector, &name, &pg_login(&db_user, password))
            .await
            .map(|_| ())
            .unwrap_err();
        let cloudsql::postgres::Error::Postgres(pg) = &err else {
            panic!("{case}: expected a PostgreSQL error, got {err:?}")
        };
        let db = pg.as_db_error().unwrap_or_else(|| panic!("{case}: {pg}"));
        assert_eq!(db.code().code(), "28P01", "{case}");
        assert!(db.message().contains(why), "{case}: {}", db.message());
        assert!(
            !db.message().contains(password),
            "{case}: the token is not echoed"
        );
    }
}

#[tokio::test]
async fn mysql_accepts_a_login_token_with_the_cleartext_plugin() {
    let env = Env::new().await;
    let principal = env.sa_email.clone();
    let db_user = principal.split('@').next().unwrap().to_owned();
    let backend_password = unique("only-the-emulator-knows");
    create_mysql_user(&db_user, &backend_password).await;
    let inst = env
        .add(env.mysql_config().iam_user(&principal, &backend_password))
        .await;
    let connector = env.connector();
    let name = inst.connection_name().to_owned();
    let hour = Duration::from_secs(3600);

    let token = env.emulator.issue_token(&principal, &[LOGIN], hour);
    let mut conn = cloudsql::mysql::connect(
        &connector,
        &name,
        mysql_login(&db_user, Some(&token)).enable_cleartext_plugin(true),
    )
    .await
    .unwrap();
    let current: Option<String> = conn.query_first("SELECT CURRENT_USER()").await.unwrap();
    assert_eq!(current.unwrap(), format!("{db_user}@%"));
    conn.disconnect().await.unwrap();

    let other = env.emulator.issue_token(
        "someone-else@test-project.iam.gserviceaccount.com",
        &[LOGIN],
        hour,
    );
    let err = cloudsql::mysql::connect(
        &connector,
        &name,
        mysql_login(&db_user, Some(&other)).enable_cleartext_plugin(true),
    )
    .await
    .unwrap_err();
    let text = format!("{err:?}");
    assert!(
        text.contains("1045") && text.contains("another principal"),
        "{text}"
    );
    assert!(!text.contains(&other), "the token is not echoed");
}
