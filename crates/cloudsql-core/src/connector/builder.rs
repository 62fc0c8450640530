//! `ConnectorBuilder`: every option with its default, and the environment variables that set them.

use std::fmt;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::{Connector, Inner};
use crate::admin_api::AdminClient;
use crate::credentials::Credentials;
use crate::dial::DialFn;
use crate::dns_name::{DEFAULT_DNS_CACHE_TTL, DEFAULT_FAILOVER_PERIOD, NameResolver};
use crate::keys::{self, RsaKey};
use crate::stream::AsyncStream;
use crate::telemetry::{MeterChoice, Metrics};
use crate::{DEFAULT_TIMEOUT, Error, IpType, RefreshStrategy};

/// The universe domain of Google's public cloud.
pub const DEFAULT_UNIVERSE_DOMAIN: &str = "googleapis.com";
/// The first part of every User-Agent this connector sends.
pub const USER_AGENT_PREFIX: &str = concat!("cloud-sql-rust-connector/", env!("CARGO_PKG_VERSION"));

/// Builds a [`Connector`]. Every option has a default; see each method.
///
/// ```no_run
/// use std::time::Duration;
/// use cloudsql_core::{Connector, Credentials, IpType, RefreshStrategy};
///
/// # fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let connector = Connector::builder()
///     .credentials(Credentials::from_file("key.json")?)
///     .ip_type(IpType::Private)
///     .iam_authn(true)
///     .refresh_strategy(RefreshStrategy::Lazy)
///     .timeout(Duration::from_secs(10))
///     .quota_project("billing-project")
///     .user_agent("my-app/1.2")
///     .build()?;
/// # let _ = connector; Ok(()) }
/// ```
#[must_use]
#[derive(Default)]
pub struct ConnectorBuilder {
    credentials: Option<Credentials>,
    ip_type: IpType,
    iam_authn: bool,
    refresh_strategy: RefreshStrategy,
    timeout: Option<Duration>,
    quota_project: Option<String>,
    universe_domain: Option<String>,
    admin_api_endpoint: Option<String>,
    user_agent: Option<String>,
    dial_fn: Option<DialFn>,
    dns_nameserver: Option<SocketAddr>,
    dns_cache_ttl: Option<Duration>,
    failover_period: Option<Duration>,
    meter: MeterChoice,
    rsa_key: Option<RsaKey>,
    #[cfg(feature = "sql-data")]
    sql_data_endpoint: Option<String>,
    #[cfg(feature = "sql-data")]
    sql_data_root_ca: Option<String>,
}

impl fmt::Debug for ConnectorBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectorBuilder")
            .field("credentials", &self.credentials)
            .field("ip_type", &self.ip_type)
            .field("iam_authn", &self.iam_authn)
            .field("refresh_strategy", &self.refresh_strategy)
            .field("timeout", &self.timeout)
            .field("quota_project", &self.quota_project)
            .field("universe_domain", &self.universe_domain)
            .field("admin_api_endpoint", &self.admin_api_endpoint)
            .field("user_agent", &self.user_agent)
            .field("dial_fn", &self.dial_fn)
            .field("dns_nameserver", &self.dns_nameserver)
            .field("dns_cache_ttl", &self.dns_cache_ttl)
            .field("failover_period", &self.failover_period)
            .field("meter", &self.meter)
            .field("rsa_key", &self.rsa_key)
            .finish_non_exhaustive()
    }
}

impl ConnectorBuilder {
    /// Credentials to use. Default: [`Credentials::application_default`].
    pub fn credentials(mut self, credentials: Credentials) -> Self {
        self.credentials = Some(credentials);
        self
    }

    /// The IP type to dial by default. Default: [`IpType::Public`].
    pub fn ip_type(mut self, ip_type: IpType) -> Self {
        self.ip_type = ip_type;
        self
    }

    /// Automatic IAM database authentication by default. Default: off.
    pub fn iam_authn(mut self, on: bool) -> Self {
        self.iam_authn = on;
        self
    }

    /// When certificates are refreshed. Default: [`RefreshStrategy::Background`].
    pub fn refresh_strategy(mut self, strategy: RefreshStrategy) -> Self {
        self.refresh_strategy = strategy;
        self
    }

    /// How long a connect may take, refresh included. Default: [`DEFAULT_TIMEOUT`] (30 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// The project billed for Admin API quota. Default: `GOOGLE_CLOUD_QUOTA_PROJECT`, else none.
    pub fn quota_project(mut self, project: impl Into<String>) -> Self {
        self.quota_project = Some(project.into());
        self
    }

    /// The universe domain. Default: `GOOGLE_CLOUD_UNIVERSE_DOMAIN`, else `googleapis.com`.
    pub fn universe_domain(mut self, domain: impl Into<String>) -> Self {
        self.universe_domain = Some(domain.into());
        self
    }

    /// Replaces the Admin API base URL (such as `http://127.0.0.1:8080` for an emulator).
    /// Default: `https://sqladmin.{universe_domain}`. It must be `http://` or `https://`, a host
    /// and port, and optionally a path (no query, no user name or password); [`build`](Self::build)
    /// fails with [`Error::Config`] otherwise.
    pub fn admin_api_endpoint(mut self, url: impl Into<String>) -> Self {
        self.admin_api_endpoint = Some(url.into());
        self
    }

    /// Text appended to the User-Agent, such as `my-app/1.2`.
    pub fn user_agent(mut self, suffix: impl Into<String>) -> Self {
        self.user_agent = Some(suffix.into());
        self
    }

    /// Opens the transport to `host:3307` with your own function instead of plain TCP: for SOCKS
    /// or corporate proxies, or to map a PSC DNS name to an address. TLS still runs on top.
    ///
    /// ```
    /// use cloudsql_core::Connector;
    /// let builder = Connector::builder().dial_func(|host: String, port: u16| async move {
    ///     tokio::net::TcpStream::connect((host.as_str(), port)).await
    /// });
    /// # let _ = builder;
    /// ```
    pub fn dial_func<F, Fut, S>(mut self, f: F) -> Self
    where
        F: Fn(String, u16) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = io::Result<S>> + Send + 'static,
        S: AsyncStream,
    {
        self.dial_fn = Some(DialFn::new(f));
        self
    }

    /// Resolves instance DNS names with this name server (UDP and TCP) instead of the system's
    /// resolver configuration: for split-horizon DNS, or a test DNS server.
    pub fn dns_nameserver(mut self, addr: SocketAddr) -> Self {
        self.dns_nameserver = Some(addr);
        self
    }

    /// How long an instance DNS name's answer is used before it is looked up again.
    /// Default: [`DEFAULT_DNS_CACHE_TTL`] (30 s).
    ///
    /// After this, connects still get the last answer at once while one lookup refreshes it in
    /// the background; if that lookup fails (DNS server down, timeout, or the name no longer
    /// resolving), the last good answer keeps being used for up to 24 h, and the lookup is
    /// retried after another TTL. A shorter TTL follows failovers that repoint the name sooner.
    pub fn dns_cache_ttl(mut self, ttl: Duration) -> Self {
        self.dns_cache_ttl = Some(ttl);
        self
    }

    /// How often an instance DNS name that can move is looked up again to catch a failover;
    /// zero turns failover off. Default: [`DEFAULT_FAILOVER_PERIOD`] (30 s).
    ///
    /// Custom names (a TXT record holding the connection name) and Global Write Endpoints
    /// (`….global.sql-psc.goog`) are watched once connected through; Cloud SQL's own instance
    /// names never move and are not. When a lookup finds the name pointing at another
    /// instance, or the name stops resolving for good (NXDOMAIN, no usable TXT record, CNAME
    /// loop, 403/404 from the Admin API), every stream connected through the name to the old
    /// instance fails its reads and writes with an I/O error saying so (local sockets drop
    /// their clients), and new connects go to the new instance. A lookup that fails for a
    /// while (timeout, SERVFAIL) closes nothing: it is logged and retried. With failover off,
    /// a moved name only redirects new connects, after the cache TTL.
    ///
    /// ```
    /// use std::time::Duration;
    /// let builder = cloudsql_core::Connector::builder().failover_period(Duration::from_secs(10));
    /// # let _ = builder;
    /// ```
    pub fn failover_period(mut self, period: Duration) -> Self {
        self.failover_period = Some(period);
        self
    }

    /// Records the connector's metrics (see [`telemetry`](crate::telemetry)) with a meter of
    /// this provider instead of OpenTelemetry's global provider (feature `telemetry`).
    ///
    /// ```
    /// use opentelemetry::metrics::noop::NoopMeterProvider;
    /// let builder = cloudsql_core::Connector::builder().meter_provider(&NoopMeterProvider::new());
    /// # let _ = builder;
    /// ```
    #[cfg(feature = "telemetry")]
    #[cfg_attr(docsrs, doc(cfg(feature = "telemetry")))]
    pub fn meter_provider<P>(mut self, provider: &P) -> Self
    where
        P: opentelemetry::metrics::MeterProvider + ?Sized,
    {
        self.meter = MeterChoice::from_provider(provider);
        self
    }

    /// The RSA key for this connector's client certificates, like the Go connector's
    /// `WithRSAKey`: for applications that generate one ahead of time or keep their own. Load it
    /// with [`RsaKey::from_pem`] or [`RsaKey::from_pkcs8_der`], which refuse anything but RSA of
    /// at least 2048 bits. Default: one key per process, generated when the first connector is
    /// built and shared by every connector without its own. Its generation is raced on 2 cores,
    /// or on all cores but one with more (at most four), first key wins; the env var
    /// `CLOUDSQL_RSA_KEYGEN_THREADS` sets the number of racers (`1`: no race), up to the cores.
    ///
    /// ```no_run
    /// use cloudsql_core::{Connector, RsaKey};
    ///
    /// # fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// let key = RsaKey::from_pem(&std::fs::read_to_string("client-key.pem")?)?;
    /// let connector = Connector::builder().rsa_key(key).build()?;
    /// # let _ = connector; Ok(()) }
    /// ```
    pub fn rsa_key(mut self, key: RsaKey) -> Self {
        self.rsa_key = Some(key);
        self
    }

    /// Replaces the SQL Data Service endpoint ([`IpType::SqlData`]), such as
    /// `https://127.0.0.1:8443` for an emulator. Default: `https://sqladmin.{universe_domain}`
    /// (port 443). For tests and private deployments.
    ///
    /// ```
    /// let builder = cloudsql_core::Connector::builder().sql_data_endpoint("https://127.0.0.1:8443");
    /// # let _ = builder;
    /// ```
    #[cfg(feature = "sql-data")]
    #[cfg_attr(docsrs, doc(cfg(feature = "sql-data")))]
    pub fn sql_data_endpoint(mut self, url: impl Into<String>) -> Self {
        self.sql_data_endpoint = Some(url.into());
        self
    }

    /// Trusts only the CA certificates in this PEM bundle for the SQL Data Service endpoint,
    /// instead of the platform's trust store. For tests (the emulator's own CA) and private
    /// deployments.
    #[cfg(feature = "sql-data")]
    #[cfg_attr(docsrs, doc(cfg(feature = "sql-data")))]
    pub fn sql_data_root_ca(mut self, pem: impl Into<String>) -> Self {
        self.sql_data_root_ca = Some(pem.into());
        self
    }

    /// Builds the connector. Unless given [`rsa_key`](Self::rsa_key), it uses the process's key,
    /// whose generation starts (on threads of its own, no runtime needed) with the first
    /// connector built.
    pub fn build(self) -> Result<Connector, Error> {
        // First, so the key generates while everything else below and the first connect run.
        let key = match &self.rsa_key {
            Some(key) => keys::given_key(key),
            None => keys::process_key(),
        };
        // Then aws-lc's random generator (every TLS handshake needs it seeded) and the HTTP
        // client's root certificates, also off this thread.
        crate::random::prepare_seed();
        crate::http::prepare();
        let universe = self
            .universe_domain
            .or_else(|| non_empty_env("GOOGLE_CLOUD_UNIVERSE_DOMAIN"))
            .unwrap_or_else(|| DEFAULT_UNIVERSE_DOMAIN.to_owned());
        let credentials = self.credentials.unwrap_or_else(Credentials::application_default);
        if let Some(cred_universe) = &credentials.universe_domain
            && *cred_universe != universe
        {
            return Err(Error::config(format!(
                "the credentials belong to universe `{cred_universe}` but the connector is set to \
                     `{universe}`; set ConnectorBuilder::universe_domain to match"
            )));
        }
        // Checked by `AdminClient::new` (an `Error::Config` saying what is wrong).
        let base_url = self
            .admin_api_endpoint
            .unwrap_or_else(|| format!("https://sqladmin.{universe}"));
        let quota_project = self
            .quota_project
            .or_else(|| non_empty_env("GOOGLE_CLOUD_QUOTA_PROJECT"));
        let user_agent = match self.user_agent {
            Some(suffix) if !suffix.is_empty() => format!("{USER_AGENT_PREFIX} {suffix}"),
            _ => USER_AGENT_PREFIX.to_owned(),
        };
        let timeout = self.timeout.unwrap_or(DEFAULT_TIMEOUT);
        if timeout.is_zero() {
            return Err(Error::config("timeout must be greater than zero"));
        }
        let dns_cache_ttl = self.dns_cache_ttl.unwrap_or(DEFAULT_DNS_CACHE_TTL);
        if dns_cache_ttl.is_zero() {
            return Err(Error::config("dns_cache_ttl must be greater than zero"));
        }
        #[cfg(feature = "sql-data")]
        let sql_data = crate::sql_data::Tunnel::new(
            self.sql_data_endpoint
                .as_deref()
                .unwrap_or(&format!("https://sqladmin.{universe}")),
            self.sql_data_root_ca.as_deref(),
            user_agent.clone(),
            quota_project.clone(),
            credentials.admin.clone(),
        )?;
        let client = AdminClient::new(
            base_url,
            user_agent.clone(),
            quota_project,
            credentials.admin.clone(),
        )?;
        Ok(Connector {
            inner: Arc::new(Inner {
                client: Arc::new(client),
                key,
                login: credentials.login,
                ip_type: self.ip_type,
                iam_authn: self.iam_authn,
                refresh_strategy: self.refresh_strategy,
                timeout,
                dial_fn: self.dial_fn,
                caches: Mutex::new(Default::default()),
                sockets: Default::default(),
                names: NameResolver::new(
                    self.dns_nameserver,
                    dns_cache_ttl,
                    self.failover_period.unwrap_or(DEFAULT_FAILOVER_PERIOD),
                ),
                user_agent,
                metrics: Metrics::new(self.meter),
                closed: AtomicBool::new(false),
                #[cfg(feature = "sql-data")]
                sql_data,
            }),
        })
    }
}

fn non_empty_env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}
