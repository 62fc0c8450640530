//! One emulated instance at run time: its addresses and listeners, CAs and TLS configs,
//! the client certificates it issued, faults and call counters; stop, start and CA rotations.

use std::collections::HashMap;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use rustls::ServerConfig;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::CertificateDer;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::ca::{Ca, ServerCert};
use crate::config::{CaMode, InstanceConfig};
use crate::counters::Counters;
use crate::error::Error;
use crate::faults::{Faults, ServerCertFault};
use crate::hex::hex;
use crate::listeners::Listeners;
use crate::naming::split_connection_name;
use crate::oauth::{LOGIN_SCOPE, OAuth};
use crate::unpoisoned::lock;

/// The port every server-side proxy listens on.
pub const PROXY_PORT: u16 = 3307;

/// What the emulator remembers about a client certificate it issued.
#[derive(Debug, Clone)]
pub(crate) struct Issued {
    /// The IAM principal, when the certificate was issued for automatic IAM authn.
    pub(crate) principal: Option<String>,
}

/// The client CA and the trust list the proxy verifies client certificates with.
struct ClientSide {
    ca: Arc<Ca>,
    roots: Arc<rustls::RootCertStore>,
}

impl ClientSide {
    fn new(instance: &str) -> anyhow::Result<Self> {
        let ca = Ca::root(&format!("Google Cloud SQL Client CA {instance}"))?;
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca.der().clone())?;
        Ok(Self {
            ca: Arc::new(ca),
            roots: Arc::new(roots),
        })
    }
}

/// The server-side CA state: trust list (newest first) and the TLS configs built from it.
struct ServerSide {
    trusted: Vec<String>,
    normal: Arc<ServerConfig>,
    wrong_identity: Arc<ServerConfig>,
    wrong_ca: Arc<ServerConfig>,
}

/// A server CA hierarchy: a root and, for CAS modes, an intermediate that signs leaves.
#[derive(Clone)]
pub(crate) struct Hierarchy {
    root: Arc<Ca>,
    intermediate: Option<Arc<Ca>>,
}

impl Hierarchy {
    fn new(mode: CaMode) -> anyhow::Result<Self> {
        Ok(match mode {
            CaMode::Legacy => Self {
                root: Arc::new(Ca::root("Google Cloud SQL Server CA")?),
                intermediate: None,
            },
            CaMode::GoogleManagedCas => {
                let root = Ca::root("Google Cloud SQL Root CA")?;
                let intermediate = root.intermediate("Google Cloud SQL Server Intermediate CA")?;
                Self {
                    root: Arc::new(root),
                    intermediate: Some(Arc::new(intermediate)),
                }
            }
            CaMode::CustomerManagedCas => {
                let root = Ca::root("Customer CA Pool Root")?;
                let intermediate = root.intermediate("Customer CA Pool Subordinate CA")?;
                Self {
                    root: Arc::new(root),
                    intermediate: Some(Arc::new(intermediate)),
                }
            }
        })
    }

    fn leaf(&self, common_name: &str, dns_names: &[String]) -> anyhow::Result<ServerCert> {
        let now = time::OffsetDateTime::now_utc();
        let validity = (
            now - Duration::from_secs(3600),
            now + Duration::from_secs(365 * 24 * 3600),
        );
        self.leaf_valid(common_name, dns_names, validity)
    }

    /// A leaf with the given validity; legacy hierarchies put no SAN in it.
    fn leaf_valid(
        &self,
        common_name: &str,
        dns_names: &[String],
        validity: (time::OffsetDateTime, time::OffsetDateTime),
    ) -> anyhow::Result<ServerCert> {
        match &self.intermediate {
            Some(intermediate) => intermediate.server_cert_valid(
                common_name,
                dns_names,
                &[intermediate.der().clone()],
                validity,
            ),
            None => self.root.server_cert_valid(common_name, &[], &[], validity),
        }
    }

    /// A leaf with `fault`: expired, not yet valid, or one of its names another instance's.
    fn faulty_leaf(
        &self,
        fault: ServerCertFault,
        common_name: &str,
        dns_names: &[String],
    ) -> anyhow::Result<ServerCert> {
        let now = time::OffsetDateTime::now_utc();
        let hour = Duration::from_secs(3600);
        let usual = (now - hour, now + Duration::from_secs(365 * 24 * 3600));
        let others = ["other-instance.example.com".to_owned()];
        match fault {
            ServerCertFault::Expired => self.leaf_valid(common_name, dns_names, (now - 2 * hour, now - hour)),
            ServerCertFault::NotYetValid => {
                self.leaf_valid(common_name, dns_names, (now + hour, now + 2 * hour))
            }
            ServerCertFault::WrongSan => self.leaf_valid(common_name, &others, usual),
            ServerCertFault::WrongCn => self.leaf_valid("other-project:other-instance", dns_names, usual),
        }
    }
}

/// The SAN DNS names of a server certificate: the instance's names, then its custom SANs.
fn san_names(mut dns_names: Vec<String>, config: &InstanceConfig) -> Vec<String> {
    dns_names.extend(config.custom_sans.iter().cloned());
    dns_names
}

/// The CAS hierarchies instances share: like Cloud SQL, every `GOOGLE_MANAGED_CAS_CA` instance
/// of a project and region chains to one regional root, and every `CUSTOMER_MANAGED_CAS_CA`
/// instance of a project and region to the customer's pool (one per project and region here).
/// Legacy instances each get a CA of their own.
#[derive(Default)]
pub(crate) struct CasPools(Mutex<HashMap<(String, String, CaMode), Hierarchy>>);

impl CasPools {
    /// The hierarchy a new instance in `project` / `region` with `mode` starts with.
    fn hierarchy(&self, project: &str, region: &str, mode: CaMode) -> anyhow::Result<Hierarchy> {
        if mode == CaMode::Legacy {
            return Hierarchy::new(mode);
        }
        let mut pools = lock(&self.0);
        let key = (project.to_owned(), region.to_owned(), mode);
        if let Some(shared) = pools.get(&key) {
            return Ok(shared.clone());
        }
        let created = Hierarchy::new(mode)?;
        pools.insert(key, created.clone());
        Ok(created)
    }
}

/// An emulated Cloud SQL instance.
pub struct Instance {
    pub(crate) config: InstanceConfig,
    pub(crate) project: String,
    pub(crate) region: String,
    pub(crate) name: String,
    public_ip: Option<Ipv4Addr>,
    private_ip: Option<Ipv4Addr>,
    psc_ip: Option<Ipv4Addr>,
    dns_name: Option<String>,
    psc_dns_name: Option<String>,
    client: Mutex<ClientSide>,
    server: Mutex<ServerSide>,
    listeners: Listeners,
    hierarchy: Mutex<Hierarchy>,
    faults: Faults,
    counters: Counters,
    issued: Mutex<HashMap<String, Issued>>,
    cert_lifetime: Mutex<Duration>,
    resets: Mutex<CancellationToken>,
    /// Verifies tokens for manual IAM database logins.
    oauth: Arc<OAuth>,
    pub(crate) shutdown: CancellationToken,
}

impl std::fmt::Debug for Instance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Instance")
            .field("connection_name", &self.config.connection_name)
            .field("public_ip", &self.public_ip)
            .field("private_ip", &self.private_ip)
            .field("psc_ip", &self.psc_ip)
            .finish_non_exhaustive()
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// Binds port 3307 on a free loopback address (or the one given) for the proxy of `instance`.
async fn bind_loopback(preferred: Option<Ipv4Addr>, instance: &str) -> Result<TcpListener, Error> {
    let failed = |addr: String, source| Error::Bind {
        purpose: format!("proxy of instance {instance}"),
        addr,
        source,
    };
    if let Some(ip) = preferred {
        return TcpListener::bind((ip, PROXY_PORT))
            .await
            .map_err(|e| failed(format!("{ip}:{PROXY_PORT}"), e));
    }
    for _ in 0..200 {
        let ip = Ipv4Addr::new(
            127,
            rand::random_range(16..=254),
            rand::random(),
            rand::random_range(1..=254),
        );
        match TcpListener::bind((ip, PROXY_PORT)).await {
            Ok(listener) => return Ok(listener),
            Err(e) if e.kind() == io::ErrorKind::AddrInUse => continue,
            Err(e) => return Err(failed(format!("{ip}:{PROXY_PORT}"), e)),
        }
    }
    Err(failed(
        format!("any of 200 random 127.x.y.z:{PROXY_PORT}"),
        io::ErrorKind::AddrInUse.into(),
    ))
}

async fn bind_if(
    on: bool,
    preferred: Option<Ipv4Addr>,
    instance: &str,
) -> Result<Option<TcpListener>, Error> {
    if on {
        bind_loopback(preferred, instance).await.map(Some)
    } else {
        Ok(None)
    }
}

/// The IPv4 address a proxy listener is bound to (always one: we only bind 127.x.y.z).
fn listener_ip(listener: &TcpListener, instance: &str) -> Result<Ipv4Addr, Error> {
    let failed = |source| Error::Bind {
        purpose: format!("proxy of instance {instance}"),
        addr: "a loopback address".into(),
        source,
    };
    match listener.local_addr().map_err(failed)? {
        SocketAddr::V4(a) => Ok(*a.ip()),
        SocketAddr::V6(_) => Err(failed(io::Error::other("bound to IPv6"))),
    }
}

impl Instance {
    /// Creates the instance and binds its listeners (public, private, PSC), each on its own
    /// loopback address and port 3307.
    pub(crate) async fn create(
        config: InstanceConfig,
        shutdown: CancellationToken,
        oauth: Arc<OAuth>,
        cas_pools: &CasPools,
    ) -> Result<Arc<Self>, Error> {
        let connection_name = config.connection_name.clone();
        let (project, region, name) = split_connection_name(&connection_name)?;
        let mut listeners = Vec::new();
        let public = bind_if(config.public, config.public_ip, &connection_name).await?;
        let private = bind_if(config.private_ip, None, &connection_name).await?;
        let psc = bind_if(config.psc, None, &connection_name).await?;
        let ip = |l: &TcpListener| listener_ip(l, &connection_name);
        let public_ip = public.as_ref().map(ip).transpose()?;
        let private_ip = private.as_ref().map(ip).transpose()?;
        let psc_ip = psc.as_ref().map(ip).transpose()?;
        listeners.extend(public);
        listeners.extend(private);
        listeners.extend(psc);

        // Cloud SQL's names: <label>.<label>.<region>.sql.goog (sql-psc.goog for PSC).
        let (id, zone) = (hex(&rand::random::<[u8; 6]>()), hex(&rand::random::<[u8; 4]>()));
        let dns_name = (config.ca_mode != CaMode::Legacy).then(|| format!("{id}.{zone}.{region}.sql.goog"));
        let psc_dns_name = config.psc.then(|| format!("{id}.{zone}.{region}.sql-psc.goog"));

        let certificate = |e: anyhow::Error| Error::certificate(&connection_name, e);
        let client = ClientSide::new(&name).map_err(certificate)?;
        let hierarchy = cas_pools
            .hierarchy(&project, &region, config.ca_mode)
            .map_err(certificate)?;
        let dns_names: Vec<String> = dns_name.iter().chain(psc_dns_name.iter()).cloned().collect();
        let server = build_server_side(
            &hierarchy,
            &client.roots,
            &format!("{project}:{name}"),
            &san_names(dns_names, &config),
            config.ca_mode,
            None,
        )
        .map_err(certificate)?;
        let cert_lifetime = config.cert_lifetime;
        let instance = Arc::new(Self {
            project,
            region,
            name,
            public_ip,
            private_ip,
            psc_ip,
            dns_name,
            psc_dns_name,
            client: Mutex::new(client),
            server: Mutex::new(server),
            listeners: Listeners::new(listeners)?,
            hierarchy: Mutex::new(hierarchy),
            faults: Faults::default(),
            counters: Counters::default(),
            issued: Mutex::new(HashMap::new()),
            cert_lifetime: Mutex::new(cert_lifetime),
            resets: Mutex::new(CancellationToken::new()),
            oauth,
            shutdown,
            config,
        });
        Ok(instance)
    }

    /// Cloud SQL's DNS names of the instance (what connectSettings lists).
    pub(crate) fn dns_names(&self) -> Vec<String> {
        self.dns_name
            .iter()
            .chain(self.psc_dns_name.iter())
            .cloned()
            .collect()
    }

    /// Every DNS name the server certificate carries: the instance's, then its custom SANs.
    fn san_names(&self) -> Vec<String> {
        san_names(self.dns_names(), &self.config)
    }

    /// Rebuilds the server certificates from the current hierarchy and client CA; `previous`
    /// stays trusted.
    fn rebuild_server_side(&self, previous: Option<String>) -> anyhow::Result<()> {
        let roots = lock(&self.client).roots.clone();
        let side = build_server_side(
            &lock(&self.hierarchy),
            &roots,
            &format!("{}:{}", self.project, self.name),
            &self.san_names(),
            self.config.ca_mode,
            previous,
        )?;
        *lock(&self.server) = side;
        Ok(())
    }

    /// Rotates the server CA: a new CA signs the server certificate from now on, and
    /// `serverCaCert` lists the new CA first and the old one after it.
    pub fn rotate_server_ca(&self) -> Result<(), Error> {
        let certificate = |e| Error::certificate(&self.config.connection_name, e);
        let old = {
            let mut hierarchy = lock(&self.hierarchy);
            let old = hierarchy.root.pem().to_owned();
            *hierarchy = Hierarchy::new(self.config.ca_mode).map_err(certificate)?;
            old
        };
        self.rebuild_server_side(Some(old)).map_err(certificate)
    }

    /// Rotates the client CA: a new CA signs client certificates from now on, and the proxy
    /// trusts only it, so every client certificate issued before is refused in the TLS
    /// handshake. Open connections stay open.
    pub fn rotate_client_ca(&self) -> Result<(), Error> {
        let certificate = |e| Error::certificate(&self.config.connection_name, e);
        let client = ClientSide::new(&self.name).map_err(certificate)?;
        // Keep the server CAs trusted as they are: the server side only gets the new roots.
        let previous = lock(&self.server).trusted.get(1).cloned();
        let old = std::mem::replace(&mut *lock(&self.client), client);
        if let Err(e) = self.rebuild_server_side(previous) {
            *lock(&self.client) = old;
            return Err(certificate(e));
        }
        Ok(())
    }

    /// The `serverCaCert.cert` PEM bundle.
    pub(crate) fn server_ca_pem(&self) -> String {
        lock(&self.server).trusted.concat()
    }

    /// The TLS config to serve the next connection with, faults applied.
    pub(crate) fn tls_config(&self) -> Arc<ServerConfig> {
        let faults = self.faults.snapshot();
        if let Some(fault) = faults.server_cert {
            let roots = lock(&self.client).roots.clone();
            let common_name = format!("{}:{}", self.project, self.name);
            let built = lock(&self.hierarchy)
                .faulty_leaf(fault, &common_name, &self.san_names())
                .and_then(|leaf| server_config(&roots, leaf));
            match built {
                Ok(config) => return config,
                Err(e) => {
                    warn!(instance = %self.config.connection_name, error = %e, "cannot build the faulty server certificate; serving the real one")
                }
            }
        }
        let server = lock(&self.server);
        if faults.wrong_ca {
            server.wrong_ca.clone()
        } else if faults.wrong_identity {
            server.wrong_identity.clone()
        } else {
            server.normal.clone()
        }
    }

    /// Signs a client certificate over `public_key_pem`, for `principal` when IAM authn is asked.
    pub(crate) fn issue_client_cert(
        &self,
        public_key_pem: &str,
        principal: Option<String>,
        token_expiry: Option<SystemTime>,
    ) -> anyhow::Result<(String, SystemTime)> {
        let lifetime = *lock(&self.cert_lifetime);
        let mut not_after = SystemTime::now() + lifetime;
        if let Some(expiry) = token_expiry {
            not_after = not_after.min(expiry);
        }
        // X.509 has whole seconds; round down so the client never sees a later time than we enforce.
        let secs = not_after.duration_since(SystemTime::UNIX_EPOCH)?.as_secs();
        let not_after = SystemTime::UNIX_EPOCH + Duration::from_secs(secs);
        let cn = principal
            .clone()
            .unwrap_or_else(|| format!("{}:{}", self.project, self.name));
        let ca = lock(&self.client).ca.clone();
        let (pem, der) = ca.client_cert(public_key_pem, &cn, not_after)?;
        lock(&self.issued).insert(fingerprint(&der), Issued { principal });
        Ok((pem, not_after))
    }

    /// What was issued with this client certificate.
    pub(crate) fn issued(&self, cert: &CertificateDer<'_>) -> Option<Issued> {
        lock(&self.issued).get(&fingerprint(cert)).cloned()
    }

    /// The token that ends every relayed connection when [`reset_connections`](Self::reset_connections) runs.
    pub(crate) fn reset_token(&self) -> CancellationToken {
        lock(&self.resets).child_token()
    }

    /// Cuts every open proxy connection, as a server-side proxy restart would.
    pub fn reset_connections(&self) {
        let mut resets = lock(&self.resets);
        resets.cancel();
        *resets = CancellationToken::new();
    }

    /// Stops the instance as a restart begins: the proxy closes its listeners (a TCP connect is
    /// refused) and cuts every open connection; the Admin API keeps answering. Stopping a
    /// stopped instance does nothing more.
    pub fn stop(&self) {
        self.listeners.stop();
        self.reset_connections();
    }

    /// Starts a stopped instance again: the proxy listens on the same addresses as before
    /// (retrying for about two seconds in the background when an address is busy). Starting a
    /// running instance does nothing.
    pub fn start(&self) {
        if !self.shutdown.is_cancelled() {
            self.listeners.start();
        }
    }

    /// Whether [`stop`](Self::stop) was called without a [`start`](Self::start) after it.
    pub fn is_stopped(&self) -> bool {
        self.listeners.is_stopped()
    }

    /// The proxy's listeners.
    pub(crate) fn listeners(&self) -> &Listeners {
        &self.listeners
    }

    /// Connects to the database behind the proxy (refused while the `backend_unreachable` fault
    /// is on, as a database that is down would be).
    pub(crate) async fn connect_backend(&self) -> io::Result<tokio::net::TcpStream> {
        if self.faults.snapshot().backend_unreachable {
            return Err(io::Error::new(
                io::ErrorKind::ConnectionRefused,
                "fault: the database behind the proxy is unreachable",
            ));
        }
        let backend = tokio::net::TcpStream::connect(self.config.backend).await?;
        backend.set_nodelay(true)?;
        Ok(backend)
    }

    /// Checks an OAuth2 access token given as the password of a manual IAM database login for
    /// `principal`: it must be live, carry the `sqlservice.login` (or cloud-platform) scope and
    /// belong to that principal. The error says which check failed.
    pub(crate) fn verify_login_token(&self, token: &str, principal: &str) -> Result<(), &'static str> {
        let grant = self
            .oauth
            .verify_bearer(token.trim())
            .ok_or("the access token is invalid or expired")?;
        if !grant.allows(LOGIN_SCOPE) {
            return Err("the access token lacks the https://www.googleapis.com/auth/sqlservice.login scope");
        }
        if grant.principal != principal {
            return Err("the access token belongs to another principal");
        }
        Ok(())
    }

    /// `project:region:instance`.
    pub fn connection_name(&self) -> &str {
        &self.config.connection_name
    }

    /// The public (PRIMARY) address, if the instance has one.
    pub fn public_ip(&self) -> Option<Ipv4Addr> {
        self.public_ip
    }

    /// The private (PRIVATE) address, if the instance has one.
    pub fn private_ip(&self) -> Option<Ipv4Addr> {
        self.private_ip
    }

    /// The address the PSC DNS name stands for (no DNS server resolves it: map it in a dialer).
    pub fn psc_ip(&self) -> Option<Ipv4Addr> {
        self.psc_ip
    }

    /// The PSC DNS name, when PSC is enabled.
    pub fn psc_dns_name(&self) -> Option<&str> {
        self.psc_dns_name.as_deref()
    }

    /// The instance's DNS name (CAS modes).
    pub fn dns_name(&self) -> Option<&str> {
        self.dns_name.as_deref()
    }

    /// The `databaseVersion`.
    pub fn database_version(&self) -> &str {
        &self.config.database_version
    }

    /// Runtime fault switches.
    pub fn faults(&self) -> &Faults {
        &self.faults
    }

    /// Admin API call counters.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Changes the life of certificates issued from now on.
    pub fn set_cert_lifetime(&self, lifetime: Duration) {
        *lock(&self.cert_lifetime) = lifetime;
    }

    /// The CA certificate that signs client certificates now, in PEM (for tests that build a
    /// client by hand).
    pub fn client_ca_pem(&self) -> String {
        lock(&self.client).ca.pem().to_owned()
    }
}

fn fingerprint(der: &CertificateDer<'_>) -> String {
    hex(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, der.as_ref()).as_ref())
}

fn server_config(roots: &Arc<rustls::RootCertStore>, cert: ServerCert) -> anyhow::Result<Arc<ServerConfig>> {
    let verifier = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider()).build()?;
    let config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(verifier)
        .with_single_cert(cert.chain, cert.key)?;
    Ok(Arc::new(config))
}

/// Server certificates for the hierarchy: the real one, one naming another instance, and one
/// from an unrelated CA (for fault injection).
fn build_server_side(
    hierarchy: &Hierarchy,
    roots: &Arc<rustls::RootCertStore>,
    common_name: &str,
    dns_names: &[String],
    mode: CaMode,
    previous: Option<String>,
) -> anyhow::Result<ServerSide> {
    let normal = server_config(roots, hierarchy.leaf(common_name, dns_names)?)?;
    let wrong_identity = server_config(
        roots,
        hierarchy.leaf(
            "other-project:other-instance",
            &["other-instance.example.com".to_owned()],
        )?,
    )?;
    let stranger = Hierarchy::new(mode)?;
    let wrong_ca = server_config(roots, stranger.leaf(common_name, dns_names)?)?;
    let mut trusted = vec![hierarchy.root.pem().to_owned()];
    trusted.extend(previous);
    Ok(ServerSide {
        trusted,
        normal,
        wrong_identity,
        wrong_ca,
    })
}
