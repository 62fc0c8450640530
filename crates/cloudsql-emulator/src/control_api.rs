//! The emulator's control API under `/emulator/v1/`, on the Admin API's port: what a test suite
//! in any language uses to drive the emulator as Rust tests drive it through the library —
//! list instances, read and reset counters, set and clear faults, rotate CAs, reset connections,
//! stop and start instances, edit DNS records and take DNS down. `docs/emulator.md` documents
//! every route.
//!
//! Every answer is JSON or `204 No Content`; errors are Google-shaped JSON: 404 for an unknown
//! instance, 400 for a body that does not parse (with serde's message naming the field).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Router;
use axum::extract::{Path, State as AxState};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::State;
use crate::admin_api::api_error;
use crate::config::DnsRecord;
use crate::faults::{FaultState, TokenFaultState};
use crate::instance::Instance;

pub(crate) fn router() -> Router<Arc<State>> {
    Router::new()
        .route("/emulator/v1/instances", get(list_instances))
        .route("/emulator/v1/instances/{name}", get(show_instance))
        .route("/emulator/v1/counters", get(counters))
        .route("/emulator/v1/counters/reset", post(reset_all_counters))
        .route("/emulator/v1/instances/{name}/counters", get(instance_counters))
        .route(
            "/emulator/v1/instances/{name}/counters/reset",
            post(reset_instance_counters),
        )
        .route("/emulator/v1/tokenCounters", get(token_counters))
        .route(
            "/emulator/v1/tokenFaults",
            get(token_faults)
                .post(set_token_faults)
                .delete(clear_token_faults),
        )
        .route(
            "/emulator/v1/instances/{name}/faults",
            get(faults).post(set_faults).delete(clear_faults),
        )
        .route(
            "/emulator/v1/instances/{name}/rotateServerCa",
            post(rotate_server_ca),
        )
        .route(
            "/emulator/v1/instances/{name}/rotateClientCa",
            post(rotate_client_ca),
        )
        .route(
            "/emulator/v1/instances/{name}/resetConnections",
            post(reset_connections),
        )
        .route("/emulator/v1/instances/{name}/stop", post(stop))
        .route("/emulator/v1/instances/{name}/start", post(start))
        .route(
            "/emulator/v1/dns/records",
            get(dns_records).post(set_dns_record).delete(remove_dns_record),
        )
        .route("/emulator/v1/dns/stop", post(dns_stop))
        .route("/emulator/v1/dns/start", post(dns_start))
        .route("/emulator/v1/dns/queries/{name}", get(dns_queries))
        .route("/emulator/v1/{*rest}", axum::routing::any(unknown_route))
}

async fn unknown_route(Path(rest): Path<String>) -> Response {
    api_error(
        404,
        &format!("No control route /emulator/v1/{rest} (or not with this method); see docs/emulator.md."),
    )
}

/// The named instance, or a 404 that says which names exist.
fn instance(state: &State, name: &str) -> Result<Arc<Instance>, Response> {
    state.find(name).ok_or_else(|| {
        let mut known: Vec<String> = state
            .all_instances()
            .iter()
            .map(|i| i.connection_name().to_owned())
            .collect();
        known.sort();
        let known = if known.is_empty() {
            "none".to_owned()
        } else {
            known.join(", ")
        };
        api_error(
            404,
            &format!(
                "No emulated instance `{name}`; name it as project:region:instance. Known instances: {known}."
            ),
        )
    })
}

/// Parses a JSON body whatever its content type (so `curl -d` works), or answers 400.
fn body<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Response> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(api_error(
            400,
            "The request body must be a JSON object; it is empty.",
        ));
    }
    serde_json::from_slice(bytes).map_err(|e| api_error(400, &format!("Invalid JSON body: {e}.")))
}

fn no_content() -> Response {
    StatusCode::NO_CONTENT.into_response()
}

fn describe(inst: &Instance) -> Value {
    let mut addresses = serde_json::Map::new();
    if let Some(ip) = inst.public_ip() {
        addresses.insert("PRIMARY".into(), ip.to_string().into());
    }
    if let Some(ip) = inst.private_ip() {
        addresses.insert("PRIVATE".into(), ip.to_string().into());
    }
    if let Some(ip) = inst.psc_ip() {
        addresses.insert("PSC".into(), ip.to_string().into());
    }
    json!({
        "connectionName": inst.connection_name(),
        "project": inst.project,
        "region": inst.region,
        "name": inst.name,
        "databaseVersion": inst.database_version(),
        "serverCaMode": inst.config.ca_mode.api_name(),
        "ipAddresses": addresses,
        "port": crate::instance::PROXY_PORT,
        "dnsName": inst.dns_name(),
        "pscDnsName": inst.psc_dns_name(),
        "dnsNames": inst.dns_names(),
        "customSans": inst.config.custom_sans,
        "stopped": inst.is_stopped(),
    })
}

/// `{"instances": [...]}`, sorted by connection name.
async fn list_instances(AxState(state): AxState<Arc<State>>) -> Response {
    let mut all = state.all_instances();
    all.sort_by(|a, b| a.connection_name().cmp(b.connection_name()));
    let instances: Vec<Value> = all.iter().map(|i| describe(i)).collect();
    axum::Json(json!({ "instances": instances })).into_response()
}

async fn show_instance(AxState(state): AxState<Arc<State>>, Path(name): Path<String>) -> Response {
    match instance(&state, &name) {
        Ok(inst) => axum::Json(describe(&inst)).into_response(),
        Err(r) => r,
    }
}

fn counters_of(inst: &Instance) -> Value {
    json!(inst.counters().snapshot())
}

/// `{"project:region:instance": {"connectSettings": n, ...}, ...}`.
async fn counters(AxState(state): AxState<Arc<State>>) -> Response {
    let all: serde_json::Map<String, Value> = state
        .all_instances()
        .into_iter()
        .map(|inst| (inst.connection_name().to_owned(), counters_of(&inst)))
        .collect();
    axum::Json(Value::Object(all)).into_response()
}

/// One instance's Admin API calls by method, and its proxy's connections.
async fn instance_counters(AxState(state): AxState<Arc<State>>, Path(name): Path<String>) -> Response {
    match instance(&state, &name) {
        Ok(inst) => axum::Json(json!({
            "calls": counters_of(&inst),
            "connections": inst.counters().connections(),
            "connectionAttempts": inst.counters().connection_attempts(),
        }))
        .into_response(),
        Err(r) => r,
    }
}

/// Zeroes every instance's counters and the token request count.
async fn reset_all_counters(AxState(state): AxState<Arc<State>>) -> Response {
    for inst in state.all_instances() {
        inst.counters().reset();
    }
    state.token_requests.store(0, Ordering::Relaxed);
    no_content()
}

async fn reset_instance_counters(AxState(state): AxState<Arc<State>>, Path(name): Path<String>) -> Response {
    match instance(&state, &name) {
        Ok(inst) => {
            inst.counters().reset();
            no_content()
        }
        Err(r) => r,
    }
}

/// `{"tokenRequests": n}`: requests to the token endpoint and the metadata server's token
/// endpoint, faulted or not. (Separate from `counters`, whose keys are all instance names.)
async fn token_counters(AxState(state): AxState<Arc<State>>) -> Response {
    axum::Json(json!({"tokenRequests": state.token_requests.load(Ordering::Relaxed)})).into_response()
}

async fn token_faults(AxState(state): AxState<Arc<State>>) -> Response {
    axum::Json(state.token_faults.snapshot()).into_response()
}

async fn set_token_faults(AxState(state): AxState<Arc<State>>, bytes: axum::body::Bytes) -> Response {
    match body::<TokenFaultState>(&bytes) {
        Ok(faults) => {
            state.token_faults.set(faults);
            no_content()
        }
        Err(r) => r,
    }
}

async fn clear_token_faults(AxState(state): AxState<Arc<State>>) -> Response {
    state.token_faults.clear();
    no_content()
}

async fn faults(AxState(state): AxState<Arc<State>>, Path(name): Path<String>) -> Response {
    match instance(&state, &name) {
        Ok(inst) => axum::Json(inst.faults().snapshot()).into_response(),
        Err(r) => r,
    }
}

/// Replaces every fault of the instance: fields left out are off.
async fn set_faults(
    AxState(state): AxState<Arc<State>>,
    Path(name): Path<String>,
    bytes: axum::body::Bytes,
) -> Response {
    let inst = match instance(&state, &name) {
        Ok(inst) => inst,
        Err(r) => return r,
    };
    match body::<FaultState>(&bytes) {
        Ok(faults) => {
            inst.faults().set(faults);
            no_content()
        }
        Err(r) => r,
    }
}

async fn clear_faults(AxState(state): AxState<Arc<State>>, Path(name): Path<String>) -> Response {
    control(&state, &name, |i| i.faults().clear())
}

async fn rotate_server_ca(AxState(state): AxState<Arc<State>>, Path(name): Path<String>) -> Response {
    match instance(&state, &name) {
        Ok(inst) => match inst.rotate_server_ca() {
            Ok(()) => no_content(),
            Err(e) => api_error(500, &format!("rotation failed: {:#}", anyhow::Error::from(e))),
        },
        Err(r) => r,
    }
}

async fn rotate_client_ca(AxState(state): AxState<Arc<State>>, Path(name): Path<String>) -> Response {
    match instance(&state, &name) {
        Ok(inst) => match inst.rotate_client_ca() {
            Ok(()) => no_content(),
            Err(e) => api_error(500, &format!("rotation failed: {:#}", anyhow::Error::from(e))),
        },
        Err(r) => r,
    }
}

/// Runs `action` on the named instance and answers 204, or 404 when there is no such instance.
fn control(state: &State, name: &str, action: impl FnOnce(&Instance)) -> Response {
    match instance(state, name) {
        Ok(inst) => {
            action(&inst);
            no_content()
        }
        Err(r) => r,
    }
}

async fn reset_connections(AxState(state): AxState<Arc<State>>, Path(name): Path<String>) -> Response {
    control(&state, &name, Instance::reset_connections)
}

async fn stop(AxState(state): AxState<Arc<State>>, Path(name): Path<String>) -> Response {
    control(&state, &name, Instance::stop)
}

async fn start(AxState(state): AxState<Arc<State>>, Path(name): Path<String>) -> Response {
    control(&state, &name, Instance::start)
}

/// `{"records": [{"name": ..., "txt": [...]} | {"name": ..., "cname": ...}]}`, sorted by name.
async fn dns_records(AxState(state): AxState<Arc<State>>) -> Response {
    axum::Json(json!({ "records": state.zone.records() })).into_response()
}

/// Replaces the records of `name` with the TXT values or the CNAME given.
async fn set_dns_record(AxState(state): AxState<Arc<State>>, bytes: axum::body::Bytes) -> Response {
    let checked = body::<DnsRecord>(&bytes).and_then(|r| {
        r.validate()
            .map(|()| r)
            .map_err(|e| api_error(400, &format!("{e}.")))
    });
    let record = match checked {
        Ok(record) => record,
        Err(r) => return r,
    };
    record.apply(&state.zone);
    no_content()
}

/// `{"name": ...}`: removes every record of `name`.
async fn remove_dns_record(AxState(state): AxState<Arc<State>>, bytes: axum::body::Bytes) -> Response {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Name {
        name: String,
    }
    match body::<Name>(&bytes) {
        Ok(Name { name }) if !name.trim().is_empty() => {
            state.zone.remove(&name);
            no_content()
        }
        Ok(_) => api_error(400, "`name` must not be empty."),
        Err(r) => r,
    }
}

/// Makes the DNS server drop every query (clients time out) until `dns/start`.
async fn dns_stop(AxState(state): AxState<Arc<State>>) -> Response {
    state.zone.set_down(true);
    no_content()
}

async fn dns_start(AxState(state): AxState<Arc<State>>) -> Response {
    state.zone.set_down(false);
    no_content()
}

/// `{"queries": n}`: DNS queries received for `name`, answered or dropped.
async fn dns_queries(AxState(state): AxState<Arc<State>>, Path(name): Path<String>) -> Response {
    axum::Json(json!({"queries": state.zone.queries(&name)})).into_response()
}
