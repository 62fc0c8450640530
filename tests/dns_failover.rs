//! DNS names that move, against the emulator's DNS server and Admin API: a TXT record switched
//! to another instance closes the connections made through the name within the failover period
//! (+1 s) and sends new connects to the new instance (streams, tokio-postgres, local sockets);
//! NXDOMAIN closes, a DNS outage does not; a Global Write Endpoint follows its CNAME; PSC
//! instance names resolve through the Admin API and are not watched; custom names are dialled
//! by their own A record (falling back to the metadata address) and accepted by a custom SAN.
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

mod support;

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cloudsql::core::{DialOptions, Error, ErrorChain, IpType};
use cloudsql_emulator::{CaMode, DnsRecord, Instance, ServerCertFault};
use support::*;
use tokio::task::JoinHandle;

/// The failover period of these tests.
const PERIOD: Duration = Duration::from_secs(1);
/// The bound the issue sets: a moved name's connections are closed within period + 1 s.
const CLOSE_BOUND: Duration = Duration::from_secs(2);

fn failover_connector(env: &Env) -> cloudsql::Connector {
    env.builder()
        .dns_nameserver(env.emulator.dns_addr())
        .failover_period(PERIOD)
        .build()
        .unwrap()
}

type Connection = JoinHandle<Result<(), tokio_postgres::Error>>;

/// A tokio-postgres connection to `name` through the connector; its task ends with the error
/// the connection ended with.
async fn open(connector: &cloudsql::Connector, name: &str) -> (tokio_postgres::Client, Connection) {
    let (client, connection) = cloudsql::postgres::connect(connector, name, &trust_login())
        .await
        .unwrap();
    let task = tokio::spawn(connection);
    let one: i32 = client.query_one("SELECT 1", &[]).await.unwrap().get(0);
    assert_eq!(one, 1);
    (client, task)
}

/// Waits (at most `bound`) for the connection to end; returns how long it took and its error.
async fn closed_within(task: Connection, bound: Duration, since: Instant) -> (Duration, String) {
    let result = tokio::time::timeout(bound.saturating_sub(since.elapsed()), task)
        .await
        .unwrap_or_else(|_| panic!("the connection was still open {bound:?} after the name moved"))
        .unwrap();
    let took = since.elapsed();
    let error = result.expect_err("the connection ended without an error");
    (took, ErrorChain(&error).to_string())
}

fn set_txt(env: &Env, name: &str, instance: &Instance) {
    env.emulator
        .set_dns_record(&DnsRecord::txt(name, &[instance.connection_name()]))
        .unwrap();
}

#[tokio::test]
async fn a_switched_txt_record_closes_open_connections_and_new_connects_follow_it() {
    let env = Env::new().await;
    let instances = [env.add(env.pg_config()).await, env.add(env.pg_config()).await];
    let name = format!("{}.db.example.test", unique("failover"));
    set_txt(&env, &name, &instances[0]);
    let connector = failover_connector(&env);
    let (client, mut connection) = open(&connector, &name).await;
    // Every client is kept: a dropped one would end its connection cleanly.
    let mut clients = vec![client];
    assert_eq!(instances[0].counters().connections(), 1);

    // Three switches, each closing the connection made before it.
    let mut latencies = Vec::new();
    for round in 1..=3 {
        let (from, to) = (&instances[(round + 1) % 2], &instances[round % 2]);
        let connections_before = to.counters().connections();
        set_txt(&env, &name, to);
        let switched = Instant::now();
        let (took, error) = closed_within(connection, CLOSE_BOUND, switched).await;
        eprintln!("switch {round}: connection closed {took:?} after the TXT record changed: {error}");
        assert!(
            error.contains(&format!(
                "DNS name `{name}` now points to instance `{}` (it pointed to `{}`)",
                to.connection_name(),
                from.connection_name()
            )),
            "{error}"
        );
        latencies.push(took);
        let (client, next) = open(&connector, &name).await;
        assert_eq!(
            to.counters().connections(),
            connections_before + 1,
            "the new connect reached the new instance"
        );
        clients.push(client);
        connection = next;
    }
    eprintln!("failover period {PERIOD:?}: closed after {latencies:?}");
    connector.close().await;
}

#[tokio::test]
async fn a_stream_fails_with_an_io_error_naming_the_move_and_the_connection_name_is_not_watched() {
    use tokio::io::AsyncReadExt;

    let env = Env::new().await;
    let first = env.add(env.pg_config()).await;
    let second = env.add(env.pg_config()).await;
    let name = format!("{}.db.example.test", unique("stream"));
    set_txt(&env, &name, &first);
    let connector = failover_connector(&env);
    let mut by_name = connector.connect(&name).await.unwrap();
    let mut by_connection_name = connector.connect(first.connection_name()).await.unwrap();
    set_txt(&env, &name, &second);
    let switched = Instant::now();
    let mut buf = [0u8; 16];
    let error = tokio::time::timeout(CLOSE_BOUND, by_name.read(&mut buf))
        .await
        .expect("the read returned within the bound")
        .unwrap_err();
    eprintln!("read failed {:?} after the switch: {error}", switched.elapsed());
    assert_eq!(error.kind(), std::io::ErrorKind::ConnectionAborted);
    assert!(error.to_string().contains("now points to instance"), "{error}");
    // Writes fail too.
    use tokio::io::AsyncWriteExt;
    assert!(by_name.write_all(b"x").await.is_err());
    // A stream made with the connection name is untouched.
    tokio::time::sleep(PERIOD * 2).await;
    let pending = tokio::time::timeout(Duration::from_millis(200), by_connection_name.read(&mut buf)).await;
    assert!(pending.is_err(), "still open, waiting for bytes: {pending:?}");
}

#[tokio::test]
async fn local_socket_clients_are_dropped_when_the_name_moves() {
    let env = Env::new().await;
    let first = env.add(env.pg_config()).await;
    let second = env.add(env.pg_config()).await;
    let name = format!("{}.db.example.test", unique("socket"));
    set_txt(&env, &name, &first);
    let connector = failover_connector(&env);
    let socket = connector
        .local_socket(&name)
        .tcp("127.0.0.1:0".parse().unwrap())
        .serve()
        .await
        .unwrap();
    let port = socket.addr().port();
    let via_socket = || async move {
        let mut config = trust_login();
        config.host("127.0.0.1").port(port);
        let (client, connection) = config.connect(tokio_postgres::NoTls).await.unwrap();
        let task = tokio::spawn(connection);
        let one: i32 = client.query_one("SELECT 1", &[]).await.unwrap().get(0);
        assert_eq!(one, 1);
        (client, task)
    };
    let (client, connection) = via_socket().await;
    assert_eq!(first.counters().connections(), 1);
    set_txt(&env, &name, &second);
    let switched = Instant::now();
    let (took, error) = closed_within(connection, CLOSE_BOUND, switched).await;
    eprintln!("local socket client dropped {took:?} after the switch: {error}");
    assert!(client.query_one("SELECT 1", &[]).await.is_err());
    let (_client, _connection) = via_socket().await;
    assert_eq!(
        second.counters().connections(),
        1,
        "the socket's next connection reached the new instance"
    );
}

#[tokio::test]
async fn nxdomain_closes_but_a_dns_outage_does_not() {
    let env = Env::new().await;
    let inst = env.add(env.pg_config()).await;
    let name = format!("{}.db.example.test", unique("gone"));
    set_txt(&env, &name, &inst);
    let connector = failover_connector(&env);
    let (client, connection) = open(&connector, &name).await;

    // An outage of three periods: lookups time out (transient), nothing is closed.
    env.emulator.set_dns_down(true);
    let queries = env.emulator.dns_queries(&name);
    tokio::time::sleep(PERIOD * 3).await;
    env.emulator.set_dns_down(false);
    assert!(
        env.emulator.dns_queries(&name) > queries,
        "failover checks ran during the outage"
    );
    let one: i32 = client.query_one("SELECT 1", &[]).await.unwrap().get(0);
    assert_eq!(one, 1);
    assert!(!connection.is_finished());
    // New connects keep working on the last good answer.
    let (_other, _other_connection) = open(&connector, &name).await;
    // Let the lookups started during the outage time out.
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert!(!connection.is_finished(), "a DNS outage closed the connection");

    // The name is deleted: NXDOMAIN is final.
    env.emulator.remove_dns_records(&name);
    let removed = Instant::now();
    let (took, error) = closed_within(connection, CLOSE_BOUND, removed).await;
    eprintln!("connection closed {took:?} after the name was deleted: {error}");
    assert!(
        error.contains(&format!("DNS name `{name}` no longer resolves to it")),
        "{error}"
    );
    assert!(error.contains("NXDOMAIN"), "{error}");
    let err = connector.connect(&name).await.unwrap_err();
    assert!(matches!(err, Error::DnsResolution { .. }), "{err:?}");
}

#[tokio::test]
async fn a_write_endpoint_follows_its_cname_to_the_new_primary() {
    let env = Env::new().await;
    let primary = env.add(env.pg_config().ca_mode(CaMode::GoogleManagedCas)).await;
    let replica = env.add(env.pg_config().ca_mode(CaMode::GoogleManagedCas)).await;
    let endpoint = format!("{}.global.sql-psc.goog", unique("orders"));
    env.emulator
        .set_cname_record(&endpoint, primary.dns_name().unwrap());
    let connector = failover_connector(&env);
    let (_client, connection) = open(&connector, &endpoint).await;
    assert_eq!(primary.counters().connections(), 1);
    assert_eq!(primary.counters().calls("resolveConnectSettings"), 1);

    // The promotion: the endpoint's CNAME now names the replica.
    env.emulator
        .set_cname_record(&endpoint, replica.dns_name().unwrap());
    let switched = Instant::now();
    let (took, error) = closed_within(connection, CLOSE_BOUND, switched).await;
    eprintln!("write endpoint connection closed {took:?} after the CNAME switch: {error}");
    assert!(
        error.contains(&format!("now points to instance `{}`", replica.connection_name())),
        "{error}"
    );
    let (_client, connection) = open(&connector, &endpoint).await;
    assert_eq!(replica.counters().connections(), 1);
    // Instance names never move: each was resolved through the Admin API once, however many
    // failover checks ran.
    tokio::time::sleep(PERIOD * 2).await;
    assert_eq!(primary.counters().calls("resolveConnectSettings"), 1);
    assert_eq!(replica.counters().calls("resolveConnectSettings"), 1);

    // The CNAME now names no instance: resolveConnectSettings answers 404, which is final.
    env.emulator
        .set_cname_record(&endpoint, "aaaa.bbbb.us-central1.sql-psc.goog");
    let switched = Instant::now();
    let (took, error) = closed_within(connection, CLOSE_BOUND, switched).await;
    eprintln!("write endpoint connection closed {took:?} after its target became unknown: {error}");
    assert!(error.contains("no longer resolves to it"), "{error}");
    let err = connector.connect(&endpoint).await.unwrap_err();
    assert!(matches!(err, Error::AdminApi { status: 404, .. }), "{err:?}");
}

#[tokio::test]
async fn psc_instance_names_resolve_through_the_admin_api_and_are_not_watched() {
    let env = Env::new().await;
    let inst = env
        .add(
            env.pg_config()
                .ca_mode(CaMode::GoogleManagedCas)
                .psc(true)
                .public(false),
        )
        .await;
    let psc_name = inst.psc_dns_name().unwrap().to_owned();
    assert!(psc_name.ends_with(".us-central1.sql-psc.goog"), "{psc_name}");
    let connector = psc_dialer(
        env.builder()
            .dns_nameserver(env.emulator.dns_addr())
            .failover_period(PERIOD),
        &inst,
    )
    .build()
    .unwrap();
    let options = DialOptions::new().ip_type(IpType::Psc);
    let (client, connection) =
        cloudsql::postgres::connect_with(&connector, &psc_name, &trust_login(), &options)
            .await
            .unwrap();
    let connection = tokio::spawn(connection);
    tokio::time::sleep(PERIOD * 3).await;
    assert_eq!(inst.counters().calls("resolveConnectSettings"), 1);
    assert_eq!(
        env.emulator.dns_queries(&psc_name),
        0,
        "no DNS lookups, no failover checks"
    );
    let one: i32 = client.query_one("SELECT 1", &[]).await.unwrap().get(0);
    assert_eq!(one, 1);
    assert!(!connection.is_finished());
}

#[tokio::test]
async fn custom_names_are_dialled_by_their_own_address_else_the_metadata_one() {
    let env = Env::new().await;
    let inst = env.add(env.pg_config().private_ip(true)).await;
    let connector = failover_connector(&env);
    let custom = |record: &str, addresses: &[IpAddr]| {
        let name = format!("{}.db.example.test", unique(record));
        env.emulator
            .set_dns_record(&DnsRecord::txt(&name, &[inst.connection_name()]).with_addresses(addresses))
            .unwrap();
        name
    };

    // The A record wins over the (public) metadata address: an address where nothing listens
    // makes the dial fail there.
    let nowhere = custom("nowhere", &[IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2))]);
    let err = connector.connect(&nowhere).await.unwrap_err();
    eprintln!("dial by the name's own A record: {err}");
    match &err {
        Error::Dial { address, .. } => assert_eq!(address, "127.0.0.2:3307"),
        other => panic!("expected a dial error at the A record's address, got {other:?}"),
    }
    assert_eq!(env.emulator.dns_queries_of_type(&nowhere, "A"), 1);

    // The A record names the instance's private address: connects work over it.
    let private = custom("private", &[IpAddr::V4(inst.private_ip().unwrap())]);
    let (_client, _connection) = open(&connector, &private).await;
    assert_eq!(inst.counters().connections(), 1);

    // No A record: the metadata (public) address is dialled.
    let txt_only = custom("txt-only", &[]);
    let (_client, _connection) = open(&connector, &txt_only).await;
    assert_eq!(inst.counters().connections(), 2);
    assert!(
        env.emulator.dns_queries_of_type(&txt_only, "A") >= 1,
        "the A record was asked for"
    );
}

#[tokio::test]
async fn a_custom_san_is_accepted_for_its_name_and_other_names_are_refused() {
    let env = Env::new().await;
    let custom = format!("{}.db.example.test", unique("san"));
    let inst: Arc<Instance> = env
        .add(
            env.pg_config()
                .ca_mode(CaMode::CustomerManagedCas)
                .custom_san(&custom),
        )
        .await;
    // The certificate's CN names another instance, so only a SAN can vouch for it.
    inst.faults().server_cert(Some(ServerCertFault::WrongCn));
    set_txt(&env, &custom, &inst);
    let other = format!("{}.db.example.test", unique("nosan"));
    set_txt(&env, &other, &inst);
    let connector = failover_connector(&env);

    let (_client, _connection) = open(&connector, &custom).await;
    // By connection name, the instance's own DNS names are checked (and present).
    let (_client, _connection) = open(&connector, inst.connection_name()).await;

    let err = connector.connect(&other).await.unwrap_err();
    let chain = ErrorChain(&err).to_string();
    eprintln!("a name the certificate does not carry: {chain}");
    assert!(matches!(err, Error::Tls { .. }), "{err:?}");
    assert!(
        chain.contains(&format!("no SAN DNS name matching `{other}`")),
        "{chain}"
    );
}

#[tokio::test]
async fn failover_checks_run_while_the_connector_lives_and_stop_on_close_or_drop() {
    let env = Env::new().await;
    let inst = env.add(env.pg_config()).await;
    for ending in ["close", "drop"] {
        let name = format!("{}.db.example.test", unique(ending));
        set_txt(&env, &name, &inst);
        let connector = failover_connector(&env);
        let stream = connector.connect(&name).await.unwrap();
        let txt = || env.emulator.dns_queries_of_type(&name, "TXT");
        let first = txt();
        tokio::time::sleep(PERIOD * 3).await;
        let checked = txt() - first;
        assert!(checked >= 1, "{ending}: no failover check ran in three periods");
        match ending {
            "close" => connector.close().await,
            _ => drop(connector),
        }
        // A check in flight may still land; none start afterwards.
        tokio::time::sleep(PERIOD / 2).await;
        let stopped_at = txt();
        tokio::time::sleep(PERIOD * 3).await;
        eprintln!(
            "{ending}: {checked} check(s) in three periods, then {}",
            txt() - stopped_at
        );
        assert_eq!(txt(), stopped_at, "{ending}: checks went on");
        drop(stream);
    }
}
