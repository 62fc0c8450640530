//! Automatic IAM database authentication against a backend that really checks passwords: the
//! IAM user logs in with no password only with a certificate issued for its principal.
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

mod support;

use cloudsql::core::{Credentials, DialOptions, Error};
use support::*;

/// An instance in front of the password-checking cluster that lets `principal` log in by IAM.
async fn iam_instance(env: &Env, principal: &str) -> (std::sync::Arc<cloudsql_emulator::Instance>, String) {
    let db_user = principal
        .strip_suffix(".gserviceaccount.com")
        .unwrap_or(principal)
        .to_owned();
    let backend_password = unique("only-the-emulator-knows");
    create_scram_role(&db_user, &backend_password).await;
    let inst = env
        .add(
            env.pg_config_for(scram_pg())
                .iam_user(principal, &backend_password),
        )
        .await;
    (inst, db_user)
}

fn login(user: &str) -> tokio_postgres::Config {
    let mut config = tokio_postgres::Config::new();
    config.user(user).dbname("postgres");
    config
}

#[tokio::test]
async fn service_account_logs_in_without_a_password() {
    let env = Env::new().await;
    let (inst, db_user) = iam_instance(&env, &env.sa_email).await;
    let connector = env.builder().iam_authn(true).build().unwrap();

    // The full service-account email is accepted; the connector drops the suffix.
    let (client, connection) =
        cloudsql::postgres::connect(&connector, inst.connection_name(), &login(&env.sa_email))
            .await
            .unwrap();
    tokio::spawn(connection);
    let user: String = client
        .query_one("SELECT current_user::text", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(user, db_user);
    assert!(db_user.ends_with("@test-project.iam"), "{db_user}");
}

#[tokio::test]
async fn iam_user_is_refused_without_iam_authn() {
    let env = Env::new().await;
    let (inst, db_user) = iam_instance(&env, &env.sa_email).await;
    let connector = env.connector();
    // Without automatic IAM authn the password must be an access token (manual IAM authn).
    let mut not_a_token = login(&db_user);
    not_a_token.password("not-a-token");
    let err = cloudsql::postgres::connect(&connector, inst.connection_name(), &not_a_token)
        .await
        .map(|_| ())
        .unwrap_err();
    let cloudsql::postgres::Error::Postgres(pg) = &err else {
        panic!("expected a PostgreSQL error, got {err:?}")
    };
    let db = pg.as_db_error().expect("server error");
    assert_eq!(db.code().code(), "28P01");
    assert!(db.message().contains("IAM"), "{}", db.message());

    // The same connector turns IAM authn on per connection and succeeds.
    let (client, connection) = cloudsql::postgres::connect_with(
        &connector,
        inst.connection_name(),
        &login(&db_user),
        &DialOptions::new().iam_authn(true),
    )
    .await
    .unwrap();
    tokio::spawn(connection);
    client.query_one("SELECT 1", &[]).await.unwrap();
}

#[tokio::test]
async fn another_principals_certificate_does_not_log_in() {
    let env = Env::new().await;
    let victim = format!("{}@test-project.iam.gserviceaccount.com", unique("victim"));
    let (inst, victim_user) = iam_instance(&env, &victim).await;
    // The connector's own service account is not `victim`.
    let connector = env.builder().iam_authn(true).build().unwrap();
    // The certificate is not the victim's, so the server asks for the victim's access token as a
    // password (manual IAM authn); our own login token does not pass for it.
    let own_token = env.emulator.issue_token(
        &env.sa_email,
        &["https://www.googleapis.com/auth/sqlservice.login"],
        std::time::Duration::from_secs(3600),
    );
    let mut as_victim = login(&victim_user);
    as_victim.password(own_token.as_str());
    let err = cloudsql::postgres::connect(&connector, inst.connection_name(), &as_victim)
        .await
        .map(|_| ())
        .unwrap_err();
    assert!(matches!(err, cloudsql::postgres::Error::Postgres(_)), "{err:?}");
    assert!(
        err.to_string().contains("IAM user authentication failed"),
        "{err}"
    );
}

#[tokio::test]
async fn authorized_user_logs_in_with_a_refresh_token_grant() {
    let env = Env::new().await;
    let email = format!("{}@example.com", unique("alice"));
    let file = env.emulator.write_authorized_user_file(&email, &env.dir).unwrap();
    let (inst, db_user) = iam_instance(&env, &email).await;
    assert_eq!(db_user, email);
    let connector = cloudsql::Connector::builder()
        .credentials(Credentials::from_file(&file).unwrap())
        .admin_api_endpoint(env.emulator.admin_api_url())
        .iam_authn(true)
        .build()
        .unwrap();
    assert_eq!(
        select_one(&connector, inst.connection_name(), &login(&email))
            .await
            .unwrap(),
        1
    );
}

#[tokio::test]
async fn sql_server_refuses_iam_authn_with_a_clear_error() {
    let env = Env::new().await;
    let inst = env
        .add(cloudsql_emulator::InstanceConfig::new(
            &format!("test-project:us-central1:{}", unique("mssql")),
            "SQLSERVER_2019_STANDARD",
            trust_pg(),
        ))
        .await;
    let connector = env.builder().iam_authn(true).build().unwrap();
    let err = connector.connect(inst.connection_name()).await.unwrap_err();
    assert!(matches!(err, Error::IamAuthnNotSupported { .. }), "{err:?}");
    assert!(err.to_string().contains("not supported for SQL Server"), "{err}");
}

#[tokio::test]
async fn certificate_life_is_clamped_to_the_login_token() {
    let env = Env::new().await;
    let (inst, db_user) = iam_instance(&env, &env.sa_email).await;
    // Login tokens live 150 s: the IAM certificate ends with them, under the 4-minute refresh
    // buffer, so the background task refreshes again at once (the rate limit allows 2 at once).
    env.emulator
        .set_token_lifetime(std::time::Duration::from_secs(150));
    let connector = env.builder().iam_authn(true).build().unwrap();
    assert_eq!(
        select_one(&connector, inst.connection_name(), &login(&db_user))
            .await
            .unwrap(),
        1
    );
    wait_for_calls(&inst, "generateEphemeralCert", 2).await;
    assert_eq!(inst.counters().calls("generateEphemeralCert"), 2);

    // Without IAM authn the hour-long certificate is not refreshed early.
    let plain = env.emulator.add_instance(env.pg_config()).await.unwrap();
    let connector = env.connector();
    connector.connect(plain.connection_name()).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    assert_eq!(plain.counters().calls("generateEphemeralCert"), 1);
}
