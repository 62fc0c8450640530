//! tokio-postgres through the connector to an emulated instance in front of a real PostgreSQL:
//! every IP type and CA mode, and password logins checked by a real backend.
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

mod support;

use cloudsql::core::{DialOptions, Error, IpType};
use cloudsql_emulator::CaMode;
use support::*;

#[tokio::test]
async fn public_ip_legacy_ca_runs_queries() {
    let env = Env::new().await;
    let inst = env.add(env.pg_config()).await;
    let connector = env.connector();
    let (client, connection) =
        cloudsql::postgres::connect(&connector, inst.connection_name(), &trust_login())
            .await
            .unwrap();
    tokio::spawn(connection);
    client
        .batch_execute("CREATE TEMP TABLE t (id int, name text); INSERT INTO t VALUES (1, 'a'), (2, 'b')")
        .await
        .unwrap();
    let rows = client.query("SELECT name FROM t ORDER BY id", &[]).await.unwrap();
    let names: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    assert_eq!(names, ["a", "b"]);
    // The session really is on the backend behind the proxy.
    let port: i32 = client
        .query_one("SELECT inet_server_port()", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(port, 5432);
}

#[tokio::test]
async fn every_ca_mode_is_verified_and_connects() {
    for mode in [
        CaMode::Legacy,
        CaMode::GoogleManagedCas,
        CaMode::CustomerManagedCas,
    ] {
        let env = Env::new().await;
        let inst = env.add(env.pg_config().ca_mode(mode)).await;
        let connector = env.connector();
        assert_eq!(
            select_one(&connector, inst.connection_name(), &trust_login())
                .await
                .unwrap(),
            1,
            "{mode:?}"
        );
    }
}

#[tokio::test]
async fn private_ip_is_dialed_when_asked_and_public_is_absent() {
    let env = Env::new().await;
    let inst = env.add(env.pg_config().public(false).private_ip(true)).await;
    let connector = env.builder().ip_type(IpType::Private).build().unwrap();
    assert_eq!(
        select_one(&connector, inst.connection_name(), &trust_login())
            .await
            .unwrap(),
        1
    );

    // The default connector asks for the public IP, which this instance lacks.
    let public = env.connector();
    let err = public.connect(inst.connection_name()).await.unwrap_err();
    match &err {
        Error::NoIpAddress {
            wanted, available, ..
        } => {
            assert_eq!(*wanted, IpType::Public);
            assert!(available.contains("PRIVATE"), "{available}");
        }
        other => panic!("expected NoIpAddress, got {other:?}"),
    }
    assert!(err.to_string().contains("choose one of those"), "{err}");

    // A per-connection override reaches the private IP through the default connector.
    let stream = public
        .connect_with(
            inst.connection_name(),
            &DialOptions::new().ip_type(IpType::Private),
        )
        .await;
    assert!(stream.is_ok(), "{stream:?}");
}

#[tokio::test]
async fn psc_dns_name_is_dialed_through_a_custom_dialer_with_cas_identity() {
    let env = Env::new().await;
    let inst = env
        .add(env.pg_config().ca_mode(CaMode::GoogleManagedCas).psc(true))
        .await;
    let connector = psc_dialer(env.builder(), &inst)
        .ip_type(IpType::Psc)
        .build()
        .unwrap();
    assert_eq!(
        select_one(&connector, inst.connection_name(), &trust_login())
            .await
            .unwrap(),
        1
    );
}

#[tokio::test]
async fn real_password_check_accepts_the_right_password_and_refuses_a_wrong_one() {
    let env = Env::new().await;
    let inst = env.add(env.pg_config_for(scram_pg())).await;
    let role = unique("app");
    create_scram_role(&role, "right-password").await;
    let connector = env.connector();

    let mut good = tokio_postgres::Config::new();
    good.user(&role).password("right-password").dbname("postgres");
    let (client, connection) = cloudsql::postgres::connect(&connector, inst.connection_name(), &good)
        .await
        .unwrap();
    tokio::spawn(connection);
    let user: String = client
        .query_one("SELECT current_user::text", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(user, role);

    let mut bad = good.clone();
    bad.password("wrong-password");
    let err = cloudsql::postgres::connect(&connector, inst.connection_name(), &bad)
        .await
        .map(|_| ())
        .unwrap_err();
    let db = match &err {
        cloudsql::postgres::Error::Postgres(e) => e.as_db_error().expect("a server error"),
        other => panic!("expected a PostgreSQL error, got {other:?}"),
    };
    assert_eq!(db.code().code(), "28P01", "{db:?}");

    let mut none = good.clone();
    none.password("");
    assert!(
        cloudsql::postgres::connect(&connector, inst.connection_name(), &none)
            .await
            .is_err()
    );
}

#[tokio::test]
async fn proxy_resets_fail_the_connect_and_recover_when_cleared() {
    let env = Env::new().await;
    let inst = env.add(env.pg_config()).await;
    let connector = env.connector();
    assert_eq!(
        select_one(&connector, inst.connection_name(), &trust_login())
            .await
            .unwrap(),
        1
    );

    inst.faults().proxy_reset(true);
    let err = connector.connect(inst.connection_name()).await.unwrap_err();
    assert!(matches!(err, Error::Tls { .. } | Error::Dial { .. }), "{err:?}");
    assert!(err.is_retryable());

    inst.faults().proxy_reset(false);
    assert_eq!(
        select_one(&connector, inst.connection_name(), &trust_login())
            .await
            .unwrap(),
        1
    );
    // The failed handshake forced one refresh.
    assert_eq!(inst.counters().calls("generateEphemeralCert"), 2);
}

#[tokio::test]
async fn open_sessions_end_when_the_proxy_cuts_them() {
    let env = Env::new().await;
    let inst = env.add(env.pg_config()).await;
    let connector = env.connector();
    let (client, connection) =
        cloudsql::postgres::connect(&connector, inst.connection_name(), &trust_login())
            .await
            .unwrap();
    let driver = tokio::spawn(connection);
    client.query_one("SELECT 1", &[]).await.unwrap();
    inst.reset_connections();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), driver)
        .await
        .expect("connection ended");
    assert!(client.query_one("SELECT 1", &[]).await.is_err());
    assert!(client.is_closed());
}
