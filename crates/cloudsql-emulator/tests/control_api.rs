//! The control API under `/emulator/v1/` driven over HTTP, as a test suite in another language
//! drives it: every route is called against a started emulator and its effect checked through
//! the Admin API, the proxy, the DNS server or the token endpoint.
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

use std::net::SocketAddr;
use std::time::Duration;

use cloudsql_emulator::{CaMode, Emulator, InstanceConfig, PROXY_PORT};
use serde_json::{Value, json};

const ADMIN: &str = "https://www.googleapis.com/auth/sqlservice.admin";
const NAME: &str = "ctl-project:us-central1:ctl";
const CAS: &str = "ctl-project:europe-west1:cas";

struct Env {
    emulator: Emulator,
    http: reqwest::Client,
    token: String,
}

impl Env {
    async fn new() -> Self {
        let emulator = Emulator::start().await.unwrap();
        let backend: SocketAddr = "127.0.0.1:5432".parse().unwrap();
        emulator
            .add_instance(InstanceConfig::new(NAME, "POSTGRES_15", backend).private_ip(true))
            .await
            .unwrap();
        emulator
            .add_instance(
                InstanceConfig::new(CAS, "MYSQL_8_0", backend)
                    .ca_mode(CaMode::GoogleManagedCas)
                    .psc(true),
            )
            .await
            .unwrap();
        let token = emulator.issue_token(
            "ctl@ctl-project.iam.gserviceaccount.com",
            &[ADMIN],
            Duration::from_secs(300),
        );
        Self {
            emulator,
            http: reqwest::Client::new(),
            token,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}/emulator/v1/{path}", self.emulator.admin_api_url())
    }

    async fn get(&self, path: &str) -> Value {
        let response = self.http.get(self.url(path)).send().await.unwrap();
        assert_eq!(response.status(), 200, "GET {path}");
        response.json().await.unwrap()
    }

    /// Sends `method path` with an optional raw body and returns status and JSON body (Null
    /// when empty).
    async fn call(&self, method: reqwest::Method, path: &str, body: Option<&str>) -> (u16, Value) {
        let mut request = self.http.request(method, self.url(path));
        if let Some(body) = body {
            request = request.body(body.to_owned());
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        let value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}"))
        };
        (status, value)
    }

    async fn post(&self, path: &str, body: Option<Value>) {
        let body = body.map(|b| b.to_string());
        let (status, answer) = self.call(reqwest::Method::POST, path, body.as_deref()).await;
        assert_eq!(status, 204, "POST {path}: {answer}");
    }

    async fn connect_settings(&self, name: &str) -> reqwest::Response {
        let parts: Vec<&str> = name.split(':').collect();
        let (project, instance) = (parts[0], parts[2]);
        self.http
            .get(format!(
                "{}/sql/v1beta4/projects/{project}/instances/{instance}/connectSettings",
                self.emulator.admin_api_url()
            ))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap()
    }
}

fn message(error: &Value) -> &str {
    error["error"]["message"].as_str().unwrap()
}

#[tokio::test]
async fn instances_lists_addresses_version_ca_mode_dns_names_and_stopped() {
    let env = Env::new().await;
    let list = env.get("instances").await;
    let instances = list["instances"].as_array().unwrap();
    assert_eq!(instances.len(), 2);
    // Sorted by connection name.
    let (cas, pg) = (&instances[0], &instances[1]);
    assert_eq!(pg["connectionName"], NAME);
    assert_eq!(pg["project"], "ctl-project");
    assert_eq!(pg["region"], "us-central1");
    assert_eq!(pg["name"], "ctl");
    assert_eq!(pg["databaseVersion"], "POSTGRES_15");
    assert_eq!(pg["serverCaMode"], "GOOGLE_MANAGED_INTERNAL_CA");
    assert_eq!(pg["port"], PROXY_PORT);
    assert_eq!(pg["stopped"], false);
    let inst = env.emulator.instance(NAME).unwrap();
    assert_eq!(
        pg["ipAddresses"]["PRIMARY"],
        inst.public_ip().unwrap().to_string()
    );
    assert_eq!(
        pg["ipAddresses"]["PRIVATE"],
        inst.private_ip().unwrap().to_string()
    );
    assert_eq!(pg["dnsNames"], json!([]));

    assert_eq!(cas["connectionName"], CAS);
    assert_eq!(cas["serverCaMode"], "GOOGLE_MANAGED_CAS_CA");
    assert_eq!(cas["databaseVersion"], "MYSQL_8_0");
    let cas_inst = env.emulator.instance(CAS).unwrap();
    assert_eq!(cas["dnsName"], cas_inst.dns_name().unwrap());
    assert_eq!(cas["pscDnsName"], cas_inst.psc_dns_name().unwrap());
    assert_eq!(cas["ipAddresses"]["PSC"], cas_inst.psc_ip().unwrap().to_string());
    assert_eq!(cas["dnsNames"].as_array().unwrap().len(), 2);

    let one = env.get(&format!("instances/{NAME}")).await;
    assert_eq!(&one, pg);
}

#[tokio::test]
async fn stop_and_start_show_in_the_listing_and_the_proxy() {
    let env = Env::new().await;
    let ip = env.emulator.instance(NAME).unwrap().public_ip().unwrap();
    env.post(&format!("instances/{NAME}/stop"), None).await;
    assert_eq!(env.get(&format!("instances/{NAME}")).await["stopped"], true);
    assert!(tokio::net::TcpStream::connect((ip, PROXY_PORT)).await.is_err());
    env.post(&format!("instances/{NAME}/start"), None).await;
    assert_eq!(env.get(&format!("instances/{NAME}")).await["stopped"], false);
    tokio::net::TcpStream::connect((ip, PROXY_PORT)).await.unwrap();
}

#[tokio::test]
async fn counters_read_and_reset_all_or_per_instance() {
    let env = Env::new().await;
    assert_eq!(env.connect_settings(NAME).await.status(), 200);
    assert_eq!(env.connect_settings(CAS).await.status(), 200);
    let all = env.get("counters").await;
    assert_eq!(all[NAME]["connectSettings"], 1);
    assert_eq!(all[CAS]["connectSettings"], 1);

    // A TCP connection to the proxy counts as an attempt.
    let ip = env.emulator.instance(NAME).unwrap().public_ip().unwrap();
    let stream = tokio::net::TcpStream::connect((ip, PROXY_PORT)).await.unwrap();
    drop(stream);
    let mut attempts = 0;
    for _ in 0..50 {
        attempts = env.get(&format!("instances/{NAME}/counters")).await["connectionAttempts"]
            .as_u64()
            .unwrap();
        if attempts > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(attempts, 1);
    let one = env.get(&format!("instances/{NAME}/counters")).await;
    assert_eq!(one["calls"]["connectSettings"], 1);

    env.post(&format!("instances/{NAME}/counters/reset"), None).await;
    let one = env.get(&format!("instances/{NAME}/counters")).await;
    assert_eq!(
        one,
        json!({"calls": {}, "connections": 0, "connectionAttempts": 0})
    );
    assert_eq!(
        env.get("counters").await[CAS]["connectSettings"],
        1,
        "other instance untouched"
    );

    // The token endpoint's count is reset with everything else.
    env.emulator
        .set_metadata_service_account("vm@ctl-project.iam.gserviceaccount.com");
    let token = env
        .http
        .get(format!(
            "http://{}/computeMetadata/v1/instance/service-accounts/default/token",
            env.emulator.metadata_host()
        ))
        .header("Metadata-Flavor", "Google")
        .send()
        .await
        .unwrap();
    assert_eq!(token.status(), 200);
    assert_eq!(env.get("tokenCounters").await["tokenRequests"], 1);
    env.post("counters/reset", None).await;
    assert_eq!(env.get("counters").await[CAS], json!({}));
    assert_eq!(env.get("tokenCounters").await["tokenRequests"], 0);
}

#[tokio::test]
async fn faults_set_read_and_cleared() {
    let env = Env::new().await;
    let path = format!("instances/{NAME}/faults");
    let defaults = env.get(&path).await;
    assert_eq!(defaults["admin_status"], Value::Null);
    assert_eq!(defaults["proxy_reset"], false);
    assert_eq!(defaults["admin_delay_ms"], 0);

    env.post(
        &path,
        Some(
            json!({"admin_status": 503, "admin_status_times": 5, "server_cert": "wrong_san",
                    "reported_region": "asia-east1"}),
        ),
    )
    .await;
    let now = env.get(&path).await;
    assert_eq!(now["admin_status"], 503);
    assert_eq!(now["admin_status_times"], 5);
    assert_eq!(now["server_cert"], "wrong_san");
    assert_eq!(now["reported_region"], "asia-east1");
    assert_eq!(env.connect_settings(NAME).await.status(), 503);
    assert_eq!(env.get(&path).await["admin_status_times"], 4, "one use consumed");

    let (status, _) = env.call(reqwest::Method::DELETE, &path, None).await;
    assert_eq!(status, 204);
    assert_eq!(env.get(&path).await, defaults);
    assert_eq!(env.connect_settings(NAME).await.status(), 200);

    // A POST replaces every fault: what is left out is off.
    env.post(&path, Some(json!({"api_disabled": true}))).await;
    assert_eq!(env.connect_settings(NAME).await.status(), 403);
    env.post(&path, Some(json!({}))).await;
    assert_eq!(env.connect_settings(NAME).await.status(), 200);
}

#[tokio::test]
async fn bad_bodies_answer_400_and_unknown_instances_404_in_json() {
    let env = Env::new().await;
    let post = reqwest::Method::POST;
    let path = format!("instances/{NAME}/faults");

    let (status, error) = env
        .call(post.clone(), &path, Some("{\"proxy_rest\": true}"))
        .await;
    assert_eq!(status, 400);
    assert!(message(&error).contains("proxy_rest"), "{error}");
    let (status, error) = env
        .call(post.clone(), &path, Some("{\"admin_status\": \"x\"}"))
        .await;
    assert_eq!(status, 400);
    assert_eq!(error["error"]["status"], "INVALID_ARGUMENT");
    let (status, error) = env.call(post.clone(), &path, Some("not json")).await;
    assert_eq!(status, 400, "{error}");
    let (status, error) = env.call(post.clone(), &path, None).await;
    assert_eq!(status, 400);
    assert!(message(&error).contains("empty"), "{error}");
    let (status, _) = env
        .call(post.clone(), "tokenFaults", Some("{\"stauts\": 500}"))
        .await;
    assert_eq!(status, 400);
    let (status, error) = env
        .call(post.clone(), "dns/records", Some(r#"{"name": "a.example.com"}"#))
        .await;
    assert_eq!(status, 400);
    assert!(message(&error).contains("txt"), "{error}");
    let (status, _) = env
        .call(
            post.clone(),
            "dns/records",
            Some(r#"{"name": "a.example.com", "txt": ["x"], "cname": "b.example.com"}"#),
        )
        .await;
    assert_eq!(status, 400);
    let (status, _) = env.call(reqwest::Method::DELETE, "dns/records", Some("{}")).await;
    assert_eq!(status, 400);

    let missing = "ctl-project:us-central1:nope";
    for (method, route) in [
        (reqwest::Method::GET, ""),
        (reqwest::Method::GET, "/faults"),
        (reqwest::Method::POST, "/faults"),
        (reqwest::Method::DELETE, "/faults"),
        (reqwest::Method::GET, "/counters"),
        (reqwest::Method::POST, "/counters/reset"),
        (reqwest::Method::POST, "/rotateServerCa"),
        (reqwest::Method::POST, "/rotateClientCa"),
        (reqwest::Method::POST, "/resetConnections"),
        (reqwest::Method::POST, "/stop"),
        (reqwest::Method::POST, "/start"),
    ] {
        let (status, error) = env
            .call(method.clone(), &format!("instances/{missing}{route}"), Some("{}"))
            .await;
        assert_eq!(status, 404, "{method} {route}");
        assert!(message(&error).contains(missing), "{error}");
        assert!(
            message(&error).contains(NAME),
            "names the known instances: {error}"
        );
    }
    let (status, error) = env.call(reqwest::Method::GET, "nothing/here", None).await;
    assert_eq!(status, 404);
    assert!(message(&error).contains("nothing/here"), "{error}");
}

#[tokio::test]
async fn rotations_and_connection_resets() {
    let env = Env::new().await;
    let before: Value = env.connect_settings(NAME).await.json().await.unwrap();
    env.post(&format!("instances/{NAME}/rotateServerCa"), None).await;
    let after: Value = env.connect_settings(NAME).await.json().await.unwrap();
    let certs = |v: &Value| {
        v["serverCaCert"]["cert"]
            .as_str()
            .unwrap()
            .matches("BEGIN CERTIFICATE")
            .count()
    };
    assert_ne!(before["serverCaCert"]["cert"], after["serverCaCert"]["cert"]);
    assert_eq!(certs(&after), certs(&before) + 1, "old and new CA both trusted");

    let inst = env.emulator.instance(NAME).unwrap();
    let client_ca = inst.client_ca_pem();
    env.post(&format!("instances/{NAME}/rotateClientCa"), None).await;
    assert_ne!(inst.client_ca_pem(), client_ca);

    env.post(&format!("instances/{NAME}/resetConnections"), None)
        .await;
}

/// A TXT query for `name`; the raw answer, or `None` after a timeout.
async fn query_txt(dns: SocketAddr, name: &str) -> Option<Vec<u8>> {
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut query = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    for label in name.split('.') {
        query.push(u8::try_from(label.len()).unwrap());
        query.extend_from_slice(label.as_bytes());
    }
    query.extend_from_slice(&[0, 0, 16, 0, 1]);
    socket.send_to(&query, dns).await.unwrap();
    let mut buf = vec![0; 1500];
    let n = tokio::time::timeout(Duration::from_millis(500), socket.recv(&mut buf))
        .await
        .ok()?
        .unwrap();
    buf.truncate(n);
    Some(buf)
}

fn holds(haystack: &[u8], needle: &str) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle.as_bytes())
}

#[tokio::test]
async fn dns_records_set_listed_removed_and_outages() {
    let env = Env::new().await;
    let dns = env.emulator.dns_addr();
    env.post(
        "dns/records",
        Some(json!({"name": "pg.ctl.example.com.", "txt": [NAME]})),
    )
    .await;
    env.post(
        "dns/records",
        Some(json!({"name": "alias.ctl.example.com", "cname": "pg.ctl.example.com"})),
    )
    .await;
    assert_eq!(
        env.get("dns/records").await,
        json!({"records": [
            {"name": "alias.ctl.example.com", "cname": "pg.ctl.example.com"},
            {"name": "pg.ctl.example.com", "txt": [NAME]},
        ]})
    );
    let answer = query_txt(dns, "pg.ctl.example.com").await.unwrap();
    assert!(holds(&answer, NAME));
    let alias = query_txt(dns, "alias.ctl.example.com").await.unwrap();
    assert!(holds(&alias, "ctl"), "CNAME answered");

    // A POST replaces the name's records.
    env.post(
        "dns/records",
        Some(json!({"name": "pg.ctl.example.com", "txt": [CAS]})),
    )
    .await;
    let answer = query_txt(dns, "pg.ctl.example.com").await.unwrap();
    assert!(holds(&answer, CAS) && !holds(&answer, NAME));

    env.post("dns/stop", None).await;
    assert!(
        query_txt(dns, "pg.ctl.example.com").await.is_none(),
        "outage drops queries"
    );
    env.post("dns/start", None).await;
    assert!(query_txt(dns, "pg.ctl.example.com").await.is_some());
    assert_eq!(env.get("dns/queries/pg.ctl.example.com").await["queries"], 4);

    let (status, _) = env
        .call(
            reqwest::Method::DELETE,
            "dns/records",
            Some(r#"{"name": "pg.ctl.example.com"}"#),
        )
        .await;
    assert_eq!(status, 204);
    let answer = query_txt(dns, "pg.ctl.example.com").await.unwrap();
    assert!(!holds(&answer, CAS), "record gone");
    assert_eq!(
        env.get("dns/records").await["records"].as_array().unwrap().len(),
        1
    );
}

#[tokio::test]
async fn token_faults_set_read_and_cleared() {
    let env = Env::new().await;
    env.post("tokenFaults", Some(json!({"status": 503, "times": 2})))
        .await;
    assert_eq!(
        env.get("tokenFaults").await,
        json!({"status": 503, "times": 2, "delay_ms": 0, "malformed": false})
    );
    let token = |http: reqwest::Client, uri: String| async move {
        http.post(uri)
            .form(&[("grant_type", "refresh_token"), ("refresh_token", "x")])
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    };
    let uri = env.emulator.token_uri().to_owned();
    assert_eq!(token(env.http.clone(), uri.clone()).await, 503);
    let (status, _) = env.call(reqwest::Method::DELETE, "tokenFaults", None).await;
    assert_eq!(status, 204);
    assert_eq!(env.get("tokenFaults").await["status"], Value::Null);
    assert_eq!(
        token(env.http.clone(), uri).await,
        400,
        "a real (refused) grant again"
    );
}
