//! `Emulator`: the Admin API server, OAuth2 state and the instances it serves.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::config::{DnsRecord, InstanceConfig};
use crate::error::Error;
use crate::faults::TokenFaults;
use crate::instance::Instance;
use crate::naming::split_connection_name;
use crate::oauth::OAuth;

/// Shared state behind the HTTP handlers.
pub(crate) struct State {
    pub(crate) oauth: Arc<OAuth>,
    pub(crate) metadata: crate::metadata::Metadata,
    pub(crate) zone: Arc<crate::dns::Zone>,
    pub(crate) token_faults: TokenFaults,
    /// Requests to the token endpoint and the metadata server's token endpoint.
    pub(crate) token_requests: AtomicU64,
    /// Workload Identity Federation: the identity provider and STS.
    pub(crate) federation: crate::sts::Federation,
    /// Service-account impersonation (`generateAccessToken`).
    pub(crate) impersonation: crate::iam_credentials::Impersonation,
    instances: RwLock<HashMap<(String, String), Arc<Instance>>>,
    /// Server CA hierarchies shared by the CAS instances of a project and region.
    cas_pools: crate::instance::CasPools,
}

impl State {
    pub(crate) fn lookup(&self, project: &str, instance: &str) -> Option<Arc<Instance>> {
        self.instances
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&(project.to_owned(), instance.to_owned()))
            .cloned()
    }

    /// Whether any instance lives in `project`: Cloud SQL answers 404 for an unknown instance of
    /// a project the caller can see, and 403 `notAuthorized` for a project it cannot (a typo in
    /// the project id looks like a missing permission).
    pub(crate) fn knows_project(&self, project: &str) -> bool {
        self.instances
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .keys()
            .any(|(p, _)| p == project)
    }

    pub(crate) fn find(&self, connection_name: &str) -> Option<Arc<Instance>> {
        let (project, _, instance) = split_connection_name(connection_name).ok()?;
        self.lookup(&project, &instance)
    }

    /// The instance whose DNS name (CAS or PSC) is `dns_name`.
    pub(crate) fn by_dns_name(&self, dns_name: &str) -> Option<Arc<Instance>> {
        let wanted = dns_name.trim_end_matches('.').to_ascii_lowercase();
        self.all_instances()
            .into_iter()
            .find(|i| i.dns_names().iter().any(|d| d.eq_ignore_ascii_case(&wanted)))
    }

    pub(crate) fn all_instances(&self) -> Vec<Arc<Instance>> {
        self.instances
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .values()
            .cloned()
            .collect()
    }
}

/// A running emulator. Dropping it stops every server it started.
pub struct Emulator {
    state: Arc<State>,
    addr: SocketAddr,
    dns_addr: SocketAddr,
    shutdown: CancellationToken,
}

impl std::fmt::Debug for Emulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Emulator")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl Emulator {
    /// Starts the Admin API and token endpoint on a free port of 127.0.0.1.
    pub async fn start() -> Result<Self, Error> {
        Self::start_on(SocketAddr::from(([127, 0, 0, 1], 0))).await
    }

    /// Starts the Admin API and token endpoint on `addr`.
    pub async fn start_on(addr: SocketAddr) -> Result<Self, Error> {
        let asked = addr;
        let bind = move |source| Error::Bind {
            purpose: "Admin API".into(),
            addr: asked.to_string(),
            source,
        };
        let listener = tokio::net::TcpListener::bind(addr).await.map_err(bind)?;
        let addr = listener.local_addr().map_err(bind)?;
        let state = Arc::new(State {
            oauth: Arc::new(OAuth::new(format!("http://{addr}/token"))),
            metadata: crate::metadata::Metadata::default(),
            zone: Arc::default(),
            token_faults: TokenFaults::default(),
            token_requests: AtomicU64::new(0),
            federation: crate::sts::Federation::default(),
            impersonation: crate::iam_credentials::Impersonation::default(),
            instances: RwLock::new(HashMap::new()),
            cas_pools: crate::instance::CasPools::default(),
        });
        let shutdown = CancellationToken::new();
        let dns_addr = crate::dns::serve(state.zone.clone(), shutdown.clone())
            .await
            .map_err(|source| Error::Bind {
                purpose: "DNS server".into(),
                addr: "127.0.0.1:0 (UDP)".into(),
                source,
            })?;
        let router = crate::admin_api::router(state.clone());
        let stop = shutdown.clone();
        tokio::spawn(async move {
            let _ = axum::serve(listener, router)
                .with_graceful_shutdown(async move { stop.cancelled().await })
                .await;
        });
        Ok(Self {
            state,
            addr,
            dns_addr,
            shutdown,
        })
    }

    /// The Admin API base URL, for `ConnectorBuilder::admin_api_endpoint`.
    pub fn admin_api_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The OAuth2 token endpoint.
    pub fn token_uri(&self) -> &str {
        self.state.oauth.token_uri()
    }

    /// Adds an instance and starts its proxy listeners.
    pub async fn add_instance(&self, config: InstanceConfig) -> Result<Arc<Instance>, Error> {
        let instance = Instance::create(
            config,
            self.shutdown.child_token(),
            self.state.oauth.clone(),
            &self.state.cas_pools,
        )
        .await?;
        crate::proxy::spawn(&instance);
        self.state
            .instances
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(
                (instance.project.clone(), instance.name.clone()),
                instance.clone(),
            );
        Ok(instance)
    }

    /// The instance with this connection name.
    pub fn instance(&self, connection_name: &str) -> Option<Arc<Instance>> {
        self.state.find(connection_name)
    }

    /// Removes an instance: the Admin API answers 404 for it and its proxy stops.
    pub fn remove_instance(&self, connection_name: &str) -> bool {
        let Ok((project, _, name)) = split_connection_name(connection_name) else {
            return false;
        };
        let removed = self
            .state
            .instances
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&(project, name));
        removed.map(|i| i.shutdown.cancel()).is_some()
    }

    /// Creates a service account and returns its JSON key file (with `token_uri` pointing here).
    pub fn create_service_account(&self, email: &str) -> Result<serde_json::Value, Error> {
        self.state
            .oauth
            .create_service_account(email)
            .map_err(|e| Error::ServiceAccountKey {
                email: email.to_owned(),
                source: e.into(),
            })
    }

    /// Creates a service account and writes its key file into `dir`.
    pub fn write_service_account_file(&self, email: &str, dir: &Path) -> Result<PathBuf, Error> {
        let key = self.create_service_account(email)?;
        write_json(dir, &format!("{email}.json"), &key)
    }

    /// Creates an `authorized_user` credentials file for `email` in `dir`.
    pub fn write_authorized_user_file(&self, email: &str, dir: &Path) -> Result<PathBuf, Error> {
        let file = self.state.oauth.create_authorized_user(email);
        write_json(dir, &format!("{email}.authorized_user.json"), &file)
    }

    /// Issues an access token for `principal` with `scopes`, valid for `lifetime`.
    pub fn issue_token(&self, principal: &str, scopes: &[&str], lifetime: Duration) -> String {
        let scopes = scopes.iter().map(|s| (*s).to_owned()).collect();
        self.state.oauth.issue(principal, scopes, lifetime).0
    }

    /// Makes the metadata server hand out tokens for `principal` (the VM's default service
    /// account); point `GCE_METADATA_HOST` at [`metadata_host`](Self::metadata_host).
    pub fn set_metadata_service_account(&self, principal: &str) {
        self.state.metadata.set_service_account(Some(principal));
    }

    /// Sets the metadata server's `project/project-id` (by default the project of the service
    /// account's email, else `emulated-project`); `project/numeric-project-id` follows from it.
    pub fn set_metadata_project_id(&self, project: &str) {
        self.state.metadata.set_project_id(Some(project));
    }

    /// The value for `GCE_METADATA_HOST` (`127.0.0.1:PORT`).
    pub fn metadata_host(&self) -> String {
        self.addr.to_string()
    }

    /// The DNS server (UDP on 127.0.0.1), for `ConnectorBuilder::dns_nameserver`.
    pub fn dns_addr(&self) -> SocketAddr {
        self.dns_addr
    }

    /// Adds a TXT record (a name standing for `project:region:instance`, or anything else).
    pub fn add_txt_record(&self, name: &str, value: &str) {
        self.state.zone.add_txt(name, value);
    }

    /// Adds an A (IPv4) or AAAA (IPv6) record for `name`, beside its TXT records: a custom
    /// instance name that clients dial by its own address.
    pub fn add_address_record(&self, name: &str, address: std::net::IpAddr) {
        self.state.zone.add_address(name, address);
    }

    /// Makes `name` a CNAME for `target`, replacing its other records.
    pub fn set_cname_record(&self, name: &str, target: &str) {
        self.state.zone.set_cname(name, target);
    }

    /// Replaces the records of a name with `record`'s TXT values or CNAME. Also
    /// `POST /emulator/v1/dns/records`. With `addresses`, the name answers A and AAAA
    /// queries too (a custom name dialled by its own address).
    pub fn set_dns_record(&self, record: &DnsRecord) -> Result<(), Error> {
        record.validate().map_err(Error::InvalidDnsRecord)?;
        record.apply(&self.state.zone);
        Ok(())
    }

    /// Removes every record of `name`.
    pub fn remove_dns_records(&self, name: &str) {
        self.state.zone.remove(name);
    }

    /// Makes the DNS server stop answering (`true`: queries are dropped unanswered, so clients
    /// time out, as in an outage) or answer again (`false`). Also `POST /emulator/v1/dns/stop`
    /// and `/emulator/v1/dns/start`.
    pub fn set_dns_down(&self, down: bool) {
        self.state.zone.set_down(down);
    }

    /// DNS queries received for `name` (any type, case and trailing dot ignored), answered or
    /// dropped. Also `GET /emulator/v1/dns/queries/{name}`.
    pub fn dns_queries(&self, name: &str) -> u64 {
        self.state.zone.queries(name)
    }

    /// DNS queries of one record type (`TXT`, `A`, `AAAA`, `CNAME`, any case) received for
    /// `name`, answered or dropped.
    pub fn dns_queries_of_type(&self, name: &str, record_type: &str) -> u64 {
        self.state.zone.queries_of_type(name, record_type)
    }

    /// Sets the life of tokens the token endpoint issues from now on (one hour by default).
    pub fn set_token_lifetime(&self, lifetime: Duration) {
        self.state.oauth.set_token_lifetime(lifetime);
    }

    /// Runtime fault switches of the token endpoint and the metadata server's token endpoint.
    pub fn token_faults(&self) -> &TokenFaults {
        &self.state.token_faults
    }

    /// Requests to the token endpoint (`POST /token`) and the metadata server's token endpoint
    /// so far, faulted or not.
    pub fn token_requests(&self) -> u64 {
        self.state.token_requests.load(Ordering::Relaxed)
    }

    /// The Security Token Service's token-exchange endpoint (`{admin_api_url}/v1/token`), the
    /// `token_url` of Workload Identity Federation files.
    pub fn sts_url(&self) -> String {
        format!("http://{}/v1/token", self.addr)
    }

    /// The IAM Credentials `generateAccessToken` URL for `service_account`, the
    /// `service_account_impersonation_url` of impersonation and federation files.
    pub fn impersonation_url(&self, service_account: &str) -> String {
        format!(
            "http://{}/v1/projects/-/serviceAccounts/{service_account}:generateAccessToken",
            self.addr
        )
    }

    /// An OIDC token of the emulator's external identity provider (standing in for GitHub
    /// Actions, Azure, …) for `subject`, addressed to `audience` (a workload identity provider,
    /// `//iam.googleapis.com/projects/NUMBER/locations/global/workloadIdentityPools/POOL/providers/ID`),
    /// valid for `lifetime` (zero: already expired). Write it to the file an `external_account`
    /// credentials file's `credential_source.file` names. `None` only if the provider's RSA key
    /// could not be made.
    pub fn issue_subject_token(&self, audience: &str, subject: &str, lifetime: Duration) -> Option<String> {
        self.state
            .federation
            .issue_subject_token(audience, subject, lifetime)
    }

    /// The principal STS's federated tokens speak for after an exchange for `audience` with a
    /// subject token for `subject`:
    /// `principal://iam.googleapis.com/projects/NUMBER/locations/global/workloadIdentityPools/POOL/subject/SUBJECT`.
    /// `None` when `audience` names no workload identity provider.
    pub fn federated_principal(audience: &str, subject: &str) -> Option<String> {
        crate::sts::federated_principal(audience, subject)
    }

    /// An `external_account` (Workload Identity Federation) credentials file's JSON: subject
    /// tokens from `credential_source` (`{"file": PATH}` or `{"url": URL, …}`), exchanged at this
    /// emulator's STS for `audience`, then, with `impersonate`, for that service account's token.
    pub fn external_account_json(
        &self,
        audience: &str,
        credential_source: serde_json::Value,
        impersonate: Option<&str>,
    ) -> serde_json::Value {
        let mut file = serde_json::json!({
            "type": "external_account",
            "audience": audience,
            "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
            "token_url": self.sts_url(),
            "credential_source": credential_source,
            "universe_domain": "googleapis.com",
        });
        if let Some(sa) = impersonate {
            file["service_account_impersonation_url"] = self.impersonation_url(sa).into();
        }
        file
    }

    /// An `impersonated_service_account` credentials file's JSON (as `gcloud auth
    /// application-default login --impersonate-service-account` writes): `source` (a
    /// service-account key or `authorized_user` file's JSON) impersonates `target` through
    /// `delegates`, at this emulator's IAM Credentials API.
    pub fn impersonated_service_account_json(
        &self,
        source: serde_json::Value,
        target: &str,
        delegates: &[&str],
    ) -> serde_json::Value {
        serde_json::json!({
            "type": "impersonated_service_account",
            "service_account_impersonation_url": self.impersonation_url(target),
            "source_credentials": source,
            "delegates": delegates
                .iter()
                .map(|d| format!("projects/-/serviceAccounts/{d}"))
                .collect::<Vec<_>>(),
        })
    }

    /// Makes the metadata server's Azure-style identity endpoint
    /// (`GET {metadata_host}/metadata/identity/oauth2/token?resource=AUDIENCE`, header
    /// `Metadata: true`) hand out subject tokens of the emulator's identity provider for
    /// `subject`, addressed to the `resource` asked: the `credential_source.url` of a URL-sourced
    /// `external_account` file.
    pub fn set_federated_identity(&self, subject: &str) {
        self.state.metadata.set_federated_subject(Some(subject));
    }

    /// Lets `caller` (a user, service account or federated principal) mint tokens for the
    /// service account `target` (Google's Service Account Token Creator role).
    pub fn allow_impersonation(&self, caller: &str, target: &str) {
        self.state.impersonation.allow(caller, target);
    }

    /// Token exchanges STS handled so far (`POST /v1/token`, accepted or refused).
    pub fn sts_requests(&self) -> u64 {
        self.state.federation.requests()
    }

    /// `generateAccessToken` calls handled so far (granted or refused).
    pub fn generate_access_token_requests(&self) -> u64 {
        self.state.impersonation.requests()
    }

    /// The state the handlers share (for servers started later, such as the SQL Data Service).
    pub(crate) fn state(&self) -> &Arc<State> {
        &self.state
    }

    /// The token that stops every server of this emulator.
    pub(crate) fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Stops the Admin API and every proxy.
    pub fn shutdown(&self) {
        self.shutdown.cancel();
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

fn write_json(dir: &Path, name: &str, value: &serde_json::Value) -> Result<PathBuf, Error> {
    std::fs::create_dir_all(dir).map_err(|source| Error::WriteFile {
        path: dir.to_owned(),
        source,
    })?;
    let path = dir.join(name);
    let failed = |source| Error::WriteFile {
        path: path.clone(),
        source,
    };
    let bytes = serde_json::to_vec_pretty(value).map_err(|e| failed(e.into()))?;
    std::fs::write(&path, bytes).map_err(failed)?;
    restrict(&path).map_err(failed)?;
    Ok(path)
}

#[cfg(unix)]
fn restrict(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(())
}

#[cfg(not(unix))]
fn restrict(_: &Path) -> std::io::Result<()> {
    Ok(())
}
