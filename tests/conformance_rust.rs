//! Conformance: our own connector through the same cases the Python and Node suites put to
//! Google's connectors (`conformance_python.rs`, `conformance_node.rs`), case names kept alike, so
//! the three can be read side by side: password, automatic and manual IAM logins on PostgreSQL
//! and MySQL; legacy, Google-managed and customer-managed CAS instances; public, private and PSC
//! addresses; a local Unix socket; lazy and background refresh with short certificates; and the
//! faults a client can observe. Prints one line per case and fails naming every case that failed.
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

mod support;

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use cloudsql::core::{Connector, DialOptions, Error, ErrorChain, IpType, RefreshStrategy};
use cloudsql_emulator::{CaMode, Instance, InstanceConfig, ServerCertFault};
use mysql_async::prelude::Queryable;
use support::*;

const LOGIN_SCOPE: &str = "https://www.googleapis.com/auth/sqlservice.login";

type Outcome = Result<(), String>;

/// Logs in on PostgreSQL through the connector and checks who the database says we are.
async fn pg_as(
    connector: &Connector,
    instance: &str,
    options: &DialOptions,
    user: &str,
    password: Option<&str>,
) -> Outcome {
    let mut login = tokio_postgres::Config::new();
    login.user(user).dbname("postgres");
    if let Some(password) = password {
        login.password(password);
    }
    let (client, connection) = cloudsql::postgres::connect_with(connector, instance, &login, options)
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(connection);
    let who: String = client
        .query_one("SELECT current_user::text", &[])
        .await
        .map_err(|e| e.to_string())?
        .get(0);
    if who == user {
        Ok(())
    } else {
        Err(format!("logged in as {who}, not {user}"))
    }
}

/// Logs in on MySQL through the connector and checks who the database says we are.
async fn mysql_as(
    connector: &Connector,
    instance: &str,
    options: &DialOptions,
    user: &str,
    password: Option<&str>,
    cleartext: bool,
) -> Outcome {
    let login = mysql_login(user, password).enable_cleartext_plugin(cleartext);
    let opts = cloudsql::mysql::opts_with(connector, instance, login, options)
        .await
        .map_err(|e| e.to_string())?;
    let mut conn = mysql_async::Conn::new(opts).await.map_err(|e| e.to_string())?;
    let who: Option<String> = conn
        .query_first("SELECT SUBSTRING_INDEX(CURRENT_USER(), '@', 1)")
        .await
        .map_err(|e| e.to_string())?;
    conn.disconnect().await.map_err(|e| e.to_string())?;
    match who {
        Some(who) if who == user => Ok(()),
        other => Err(format!("logged in as {other:?}, not {user}")),
    }
}

/// A case that must fail: passes when `attempt` fails and its error satisfies `expected`.
async fn refused(attempt: impl Future<Output = Outcome>, expected: impl Fn(&str) -> bool) -> Outcome {
    match attempt.await {
        Ok(()) => Err("succeeded, but must be refused".into()),
        Err(e) if expected(&e) => Ok(()),
        Err(e) => Err(format!("refused, but not as expected: {e}")),
    }
}

/// The named call counter of `instance` is at least `n`.
fn calls_at_least(instance: &Instance, method: &str, n: u64) -> Outcome {
    let calls = instance.counters().calls(method);
    if calls >= n {
        Ok(())
    } else {
        Err(format!("{calls} {method} calls, expected at least {n}"))
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn our_connector_passes_every_case_googles_connectors_are_put_to() {
    let env = Env::new().await;
    let pg_iam_user = env
        .sa_email
        .strip_suffix(".gserviceaccount.com")
        .unwrap()
        .to_owned();
    let backend_password = unique("iam-backend");
    create_scram_role(&pg_iam_user, &backend_password).await;
    let pg_user = unique("app");
    create_scram_role(&pg_user, "app-password").await;
    let my_iam_user = env.sa_email.split('@').next().unwrap().to_owned();
    create_mysql_user(&my_iam_user, &backend_password).await;
    let my_user = unique("myapp");
    create_mysql_user(&my_user, "my-password").await;

    let pg = |mode: CaMode| {
        env.pg_config_for(scram_pg())
            .ca_mode(mode)
            .iam_user(&env.sa_email, &backend_password)
    };
    let add = |config: InstanceConfig| env.add(config);
    let cas = add(pg(CaMode::GoogleManagedCas)).await;
    let legacy = add(pg(CaMode::Legacy).private_ip(true)).await;
    let customer_cas = add(pg(CaMode::CustomerManagedCas)).await;
    let psc = add(pg(CaMode::GoogleManagedCas).psc(true).public(false)).await;
    let short = Duration::from_secs(90);
    let short_lazy = add(pg(CaMode::Legacy).cert_lifetime(short)).await;
    let short_background = add(pg(CaMode::GoogleManagedCas).cert_lifetime(short)).await;
    let expired = add(pg(CaMode::Legacy)).await;
    expired.faults().server_cert(Some(ServerCertFault::Expired));
    let disabled = add(pg(CaMode::Legacy)).await;
    disabled.faults().api_disabled(true);
    let flaky = add(pg(CaMode::GoogleManagedCas)).await;
    flaky
        .faults()
        .admin_status_for("generateEphemeralCert", 500, Some(1));
    let flaky_get = add(pg(CaMode::Legacy)).await;
    flaky_get
        .faults()
        .admin_status_for("connectSettings", 500, Some(1));
    let rotate = add(pg(CaMode::GoogleManagedCas)).await;
    let socket_instance = add(pg(CaMode::GoogleManagedCas).mdx(true)).await;
    let my = |mode: CaMode| {
        env.mysql_config()
            .ca_mode(mode)
            .iam_user(&env.sa_email, &backend_password)
    };
    let my_cas = add(my(CaMode::GoogleManagedCas)).await;
    let my_legacy = add(my(CaMode::Legacy)).await;

    let connector = env.connector();
    let psc_connector = psc_dialer(env.builder(), &psc).build().unwrap();
    let lazy = env
        .builder()
        .refresh_strategy(RefreshStrategy::Lazy)
        .build()
        .unwrap();
    let token = env
        .emulator
        .issue_token(&env.sa_email, &[LOGIN_SCOPE], Duration::from_secs(3600));
    let plain = DialOptions::new();
    let iam = DialOptions::new().iam_authn(true);
    let instances = [
        ("cas", &cas),
        ("legacy", &legacy),
        ("customer_cas", &customer_cas),
    ];

    let mut results: BTreeMap<String, Outcome> = BTreeMap::new();
    let mut record = |case: String, outcome: Outcome| {
        eprintln!(
            "{} {case}{}",
            if outcome.is_ok() { "PASS" } else { "FAIL" },
            match &outcome {
                Ok(()) => String::new(),
                Err(e) => format!(": {e}"),
            }
        );
        results.insert(case, outcome);
    };

    for (mode, inst) in instances {
        let name = inst.connection_name();
        record(
            format!("pg password {mode}"),
            pg_as(&connector, name, &plain, &pg_user, Some("app-password")).await,
        );
        record(
            format!("pg manual IAM (token as password) {mode}"),
            pg_as(&connector, name, &plain, &pg_iam_user, Some(&token)).await,
        );
        record(
            format!("pg automatic IAM {mode}"),
            pg_as(&connector, name, &iam, &pg_iam_user, None).await,
        );
    }
    let cas_name = cas.connection_name();
    record(
        "pg wrong password refused (28P01)".into(),
        refused(
            pg_as(&connector, cas_name, &plain, &pg_user, Some("wrong")),
            |e| e.contains("28P01") || e.contains("password authentication failed"),
        )
        .await,
    );
    record(
        "pg IAM user without IAM authn refused (28000 or no password)".into(),
        refused(pg_as(&connector, cas_name, &plain, &pg_iam_user, None), |e| {
            e.contains("28000") || e.contains("password")
        })
        .await,
    );
    record(
        "pg private IP".into(),
        pg_as(
            &connector,
            legacy.connection_name(),
            &DialOptions::new().ip_type(IpType::Private),
            &pg_user,
            Some("app-password"),
        )
        .await,
    );
    record(
        "pg PSC (DNS name mapped locally)".into(),
        pg_as(
            &psc_connector,
            psc.connection_name(),
            &DialOptions::new().ip_type(IpType::Psc),
            &pg_user,
            Some("app-password"),
        )
        .await,
    );
    record(
        "public IP refused when the instance has none".into(),
        match connector.connect(psc.connection_name()).await {
            Err(Error::NoIpAddress { .. }) => Ok(()),
            Err(e) => Err(format!("refused, but not as a missing IP type: {e}")),
            Ok(_) => Err("connected to an instance without a public IP".into()),
        },
    );
    record(
        "pg through a local Unix socket".into(),
        async {
            let socket = connector
                .local_socket(socket_instance.connection_name())
                .postgres_unix()
                .serve()
                .await
                .map_err(|e| e.to_string())?;
            let mut login = tokio_postgres::Config::new();
            login
                .host_path(socket.dir())
                .user(&pg_user)
                .password("app-password")
                .dbname("postgres");
            let (client, connection) = login
                .connect(tokio_postgres::NoTls)
                .await
                .map_err(|e| e.to_string())?;
            tokio::spawn(connection);
            client
                .query_one("SELECT 1", &[])
                .await
                .map_err(|e| e.to_string())?;
            match socket_instance.counters().metadata_exchanges().last() {
                Some(mdx) if mdx.client_protocol_type == 3 => Ok(()),
                other => Err(format!("the proxy was not told of a Unix socket: {other:?}")),
            }
        }
        .await,
    );

    for (mode, inst) in [("cas", &my_cas), ("legacy", &my_legacy)] {
        let name = inst.connection_name();
        record(
            format!("mysql password {mode}"),
            mysql_as(&connector, name, &plain, &my_user, Some("my-password"), false).await,
        );
        record(
            format!("mysql manual IAM (token, mysql_clear_password) {mode}"),
            mysql_as(&connector, name, &plain, &my_iam_user, Some(&token), true).await,
        );
        record(
            format!("mysql automatic IAM {mode}"),
            mysql_as(&connector, name, &iam, &my_iam_user, None, false).await,
        );
    }
    record(
        "mysql IAM user without IAM authn refused (1045)".into(),
        refused(
            // The cleartext plugin on, as for a manual IAM login, but no token.
            mysql_as(
                &connector,
                my_cas.connection_name(),
                &plain,
                &my_iam_user,
                None,
                true,
            ),
            |e| e.contains("1045"),
        )
        .await,
    );

    for (label, connector, inst) in [
        ("lazy", &lazy, &short_lazy),
        ("background", &connector, &short_background),
    ] {
        let name = inst.connection_name();
        let outcome = async {
            pg_as(connector, name, &plain, &pg_user, Some("app-password")).await?;
            pg_as(connector, name, &plain, &pg_user, Some("app-password")).await?;
            if label == "lazy" {
                // A 90 s certificate is inside the lazy strategy's 4-minute buffer: each connect
                // fetches a fresh one.
                calls_at_least(inst, "generateEphemeralCert", 2)?;
            }
            Ok(())
        }
        .await;
        record(
            format!("{label} refresh, short certificate, two connects"),
            outcome,
        );
    }
    record(
        "expired server certificate refused".into(),
        match connector.connect(expired.connection_name()).await {
            Err(e @ Error::Tls { .. }) if ErrorChain(&e).to_string().to_lowercase().contains("expired") => {
                Ok(())
            }
            Err(e) => Err(format!(
                "refused, but not as an expired certificate: {}",
                ErrorChain(&e)
            )),
            Ok(_) => Err("accepted an expired server certificate".into()),
        },
    );
    record(
        "403 SERVICE_DISABLED message surfaced".into(),
        match connector.connect(disabled.connection_name()).await {
            Err(e) if e.to_string().contains("SERVICE_DISABLED") || e.to_string().contains("Enable it") => {
                Ok(())
            }
            Err(e) => Err(format!("refused without Google's message: {e}")),
            Ok(_) => Err("connected with the API disabled".into()),
        },
    );
    record(
        "500 from generateEphemeralCert retried".into(),
        async {
            pg_as(
                &connector,
                flaky.connection_name(),
                &plain,
                &pg_user,
                Some("app-password"),
            )
            .await?;
            calls_at_least(&flaky, "generateEphemeralCert", 2)
        }
        .await,
    );
    record(
        "500 from connectSettings (GET) retried".into(),
        async {
            pg_as(
                &connector,
                flaky_get.connection_name(),
                &plain,
                &pg_user,
                Some("app-password"),
            )
            .await?;
            calls_at_least(&flaky_get, "connectSettings", 2)
        }
        .await,
    );
    record(
        "client CA rotation recovered by the second attempt".into(),
        async {
            let name = rotate.connection_name();
            pg_as(&connector, name, &plain, &pg_user, Some("app-password")).await?;
            rotate.rotate_client_ca().map_err(|e| e.to_string())?;
            // The first attempt after the rotation may fail (the instance refuses the old
            // client certificate); the connector then fetches a new one for the next.
            if pg_as(&connector, name, &plain, &pg_user, Some("app-password"))
                .await
                .is_ok()
            {
                return Ok(());
            }
            pg_as(&connector, name, &plain, &pg_user, Some("app-password")).await
        }
        .await,
    );

    let failed: Vec<String> = results
        .iter()
        .filter_map(|(case, outcome)| outcome.as_ref().err().map(|e| format!("  {case}: {e}")))
        .collect();
    assert!(
        failed.is_empty(),
        "our connector failed {} of {} cases:\n{}",
        failed.len(),
        results.len(),
        failed.join("\n")
    );
    assert_eq!(results.len(), 29, "every case ran");
}
