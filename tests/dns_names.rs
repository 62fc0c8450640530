//! Instances named by DNS names: TXT records (sorted, first valid), CNAME chains, loops, and
//! Cloud SQL's own `*.sql.goog` names through `resolveConnectSettings`, against the emulator's
//! DNS server and a real resolver.
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

mod support;

use cloudsql::core::Error;
use cloudsql_emulator::CaMode;
use support::*;

fn dns_connector(env: &Env) -> cloudsql::Connector {
    env.builder()
        .dns_nameserver(env.emulator.dns_addr())
        .build()
        .unwrap()
}

#[tokio::test]
async fn a_txt_record_names_the_instance() {
    let env = Env::new().await;
    let inst = env.add(env.pg_config()).await;
    let name = format!("{}.db.example.test", unique("orders"));
    // Several TXT records: sorted, the first that parses wins.
    env.emulator.add_txt_record(&name, "v=spf1 -all");
    env.emulator
        .add_txt_record(&name, "zz-project:us-central1:does-not-exist");
    env.emulator.add_txt_record(&name, inst.connection_name());
    let connector = dns_connector(&env);
    assert_eq!(select_one(&connector, &name, &trust_login()).await.unwrap(), 1);
    // A trailing dot and another case resolve to the same instance and cache.
    assert_eq!(
        select_one(&connector, &format!("{}.", name.to_uppercase()), &trust_login())
            .await
            .unwrap(),
        1
    );
    assert_eq!(inst.counters().total(), 2, "one refresh for both spellings");
}

#[tokio::test]
async fn cname_chains_are_followed_and_loops_refused() {
    let env = Env::new().await;
    let inst = env.add(env.pg_config()).await;
    let target = format!("{}.db.example.test", unique("target"));
    let alias = format!("{}.alias.example.test", unique("a"));
    let alias2 = format!("{}.alias.example.test", unique("b"));
    env.emulator.add_txt_record(&target, inst.connection_name());
    env.emulator.set_cname_record(&alias, &alias2);
    env.emulator.set_cname_record(&alias2, &target);
    let connector = dns_connector(&env);
    assert_eq!(select_one(&connector, &alias, &trust_login()).await.unwrap(), 1);

    let loop_a = format!("{}.loop.example.test", unique("x"));
    let loop_b = format!("{}.loop.example.test", unique("y"));
    env.emulator.set_cname_record(&loop_a, &loop_b);
    env.emulator.set_cname_record(&loop_b, &loop_a);
    let err = connector.connect(&loop_a).await.unwrap_err();
    assert!(matches!(err, Error::DnsResolution { .. }), "{err:?}");
}

#[tokio::test]
async fn cloud_sql_dns_names_resolve_through_the_admin_api() {
    let env = Env::new().await;
    let inst = env.add(env.pg_config().ca_mode(CaMode::GoogleManagedCas)).await;
    let dns_name = inst.dns_name().unwrap().to_owned();
    assert!(dns_name.ends_with(".us-central1.sql.goog"), "{dns_name}");
    let connector = dns_connector(&env);
    assert_eq!(
        select_one(&connector, &dns_name, &trust_login()).await.unwrap(),
        1
    );
    assert_eq!(inst.counters().calls("resolveConnectSettings"), 1);
}

#[tokio::test]
async fn unknown_names_fail_with_a_typed_error_that_says_what_to_do() {
    let env = Env::new().await;
    let connector = dns_connector(&env);
    let err = connector.connect("nothing-here.example.test").await.unwrap_err();
    match &err {
        Error::DnsResolution { name, detail } => {
            assert_eq!(name, "nothing-here.example.test");
            assert!(detail.contains("TXT"), "{detail}");
        }
        other => panic!("expected DnsResolution, got {other:?}"),
    }
    // A TXT record that holds no connection name.
    env.emulator.add_txt_record("junk.example.test", "hello world");
    let err = connector.connect("junk.example.test").await.unwrap_err();
    assert!(err.to_string().contains("PROJECT:REGION:INSTANCE"), "{err}");
    // An unknown *.sql.goog name is a 404 from resolveConnectSettings.
    let err = connector
        .connect("aaaa.bbbb.us-central1.sql.goog")
        .await
        .unwrap_err();
    assert!(matches!(err, Error::AdminApi { status: 404, .. }), "{err:?}");
}

#[tokio::test]
async fn drivers_accept_dns_names_too() {
    let env = Env::new().await;
    let inst = env.add(env.mysql_config()).await;
    let user = unique("app");
    create_mysql_user(&user, "pw").await;
    let name = format!("{}.mysql.example.test", unique("m"));
    env.emulator.add_txt_record(&name, inst.connection_name());
    let connector = dns_connector(&env);
    let pool = cloudsql::mysql::pool(&connector, &name, mysql_login(&user, Some("pw")))
        .await
        .unwrap();
    use mysql_async::prelude::Queryable;
    let one: Option<i64> = pool
        .get_conn()
        .await
        .unwrap()
        .query_first("SELECT 1")
        .await
        .unwrap();
    assert_eq!(one, Some(1));
    pool.disconnect().await.unwrap();
}
