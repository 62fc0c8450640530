//! `Connector`: the per-instance cache map, `connect` / `connect_with`, and `close`.

pub(crate) mod builder;
mod stage;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tracing::{Instrument, debug, debug_span};

pub use builder::ConnectorBuilder;
pub(crate) use stage::StageCell;

use crate::admin_api::AdminClient;
use crate::credentials::TokenSource;
use crate::dial::{self, DialFn};
use crate::dns_name::{self, NameResolver};
use crate::error::ConnectStage;
use crate::keys::SharedKey;
use crate::local_socket::{DialFuture, InstanceDialer, LocalSocketBuilder, SocketRegistry};
use crate::mdx;
use crate::refresh::{Cache, ForceReason, Refresher};
use crate::telemetry::{self, Metrics};
use crate::{CloudSqlStream, DialOptions, Engine, Error, InstanceConnectionName, IpType, RefreshStrategy};

type CacheKey = (InstanceConnectionName, bool);

/// Opens secure, IAM-authorized connections to Cloud SQL instances.
///
/// One connector serves any number of instances and connections: it keeps each instance's
/// certificate fresh and shares one RSA key among them. Create one per process and clone it
/// (clones share everything); the last clone dropped stops all background work, as does
/// [`close`](Connector::close). Dropping it also stops its local sockets' listeners; connections
/// they relay stay open. The pools the driver crates build hold a clone, so they keep working
/// when the application drops its own.
///
/// ```no_run
/// use cloudsql_core::Connector;
/// use tokio::io::AsyncWriteExt;
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let connector = Connector::builder().build()?;
/// let mut stream = connector.connect("my-project:us-central1:my-db").await?;
/// // Speak the database protocol over `stream`, or hand it to a driver.
/// stream.shutdown().await?;
/// connector.close().await;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Connector {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    client: Arc<AdminClient>,
    key: SharedKey,
    login: Arc<dyn TokenSource>,
    ip_type: IpType,
    iam_authn: bool,
    refresh_strategy: RefreshStrategy,
    timeout: Duration,
    dial_fn: Option<DialFn>,
    caches: Mutex<HashMap<CacheKey, Arc<Cache>>>,
    sockets: Arc<SocketRegistry>,
    names: NameResolver,
    user_agent: String,
    metrics: Metrics,
    closed: AtomicBool,
    #[cfg(feature = "sql-data")]
    sql_data: crate::sql_data::Tunnel,
}

impl Connector {
    /// A builder with every option at its default.
    pub fn builder() -> ConnectorBuilder {
        ConnectorBuilder::default()
    }

    /// The process-wide connector with default options (Application Default Credentials,
    /// public IP, background refresh), built on first use and shared by every caller.
    ///
    /// One connector per process is what you want: each connector refreshes certificates on
    /// its own, so one connector per connection or per pool multiplies Admin API calls and
    /// quota use. Clone the result freely. If it was closed, the next call builds a new one.
    /// For custom options, build your connector once at startup and pass clones around (or keep
    /// it in a `OnceLock` of your own).
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), cloudsql_core::Error> {
    /// let a = cloudsql_core::Connector::shared()?;
    /// let b = cloudsql_core::Connector::shared()?;
    /// assert!(a.same_as(&b));
    /// # Ok(()) }
    /// ```
    pub fn shared() -> Result<Connector, Error> {
        static SHARED: Mutex<Option<Connector>> = Mutex::new(None);
        let mut shared = SHARED.lock().unwrap_or_else(PoisonError::into_inner);
        match shared.as_ref() {
            Some(connector) if !connector.is_closed() => Ok(connector.clone()),
            _ => {
                let connector = Connector::builder().build()?;
                *shared = Some(connector.clone());
                Ok(connector)
            }
        }
    }

    /// Whether two handles are clones of the same connector (sharing caches, key and sockets).
    pub fn same_as(&self, other: &Connector) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }

    /// Connects to `instance` with the connector's defaults.
    ///
    /// `instance` is a connection name (`project:region:instance`) or a DNS name standing for
    /// one: a name with a TXT record holding the connection name, or one of Cloud SQL's own
    /// `<label>.<label>.<region>.sql.goog` names (also `sql-psa.goog`, `sql-psc.goog`; resolved
    /// with the Admin API's `resolveConnectSettings`), or a Global Write Endpoint
    /// (`….global.sql-psc.goog`, followed through its CNAME to the current primary). Resolved
    /// names are reused for 30 s ([`ConnectorBuilder::dns_cache_ttl`]), then refreshed in the
    /// background; while a refresh fails, the last good answer is used. A custom DNS name is dialled by its own A/AAAA
    /// record when it has one. Names that can move (all but Cloud SQL's own instance names) are
    /// watched: when one points at another instance, or stops resolving, streams connected
    /// through it fail with an I/O error saying so ([`ConnectorBuilder::failover_period`]).
    pub async fn connect(&self, instance: &str) -> Result<CloudSqlStream, Error> {
        self.connect_with(instance, &DialOptions::default()).await
    }

    /// Connects to `instance` with per-connection options.
    ///
    /// Returns a stream past the TLS handshake, within the timeout. While the instance's
    /// certificate is valid it is used at once, even when the Admin API is failing; a connect
    /// waits for the Admin API only when nothing valid is cached. A failed dial or handshake
    /// starts a refresh in the background without making later connects wait.
    ///
    /// A timeout is reported as [`Error::Timeout`] naming the stage that ran out of time, with
    /// the last refresh failure as its source when it was waiting for one.
    pub async fn connect_with(&self, instance: &str, options: &DialOptions) -> Result<CloudSqlStream, Error> {
        options.validate()?;
        let timeout = options.timeout.unwrap_or(self.inner.timeout);
        let ip_type = options.ip_type.unwrap_or(self.inner.ip_type);
        let iam_authn = options.iam_authn.unwrap_or(self.inner.iam_authn);
        let span = telemetry::connect_span(instance, ip_type, iam_authn, self.inner.refresh_strategy);
        let meter = self.inner.metrics.connect(ip_type, self.inner.refresh_strategy);
        let stage = StageCell::new(ConnectStage::ResolvingName);
        let cache = std::sync::OnceLock::new();
        let connect = async {
            let name = self.instance_name(instance).await?;
            let via = dns_name::looks_like_dns_name(instance).then_some(instance);
            self.connect_inner(&name, via, options, &stage, &cache)
                .await
                .map_err(|e| dns_name::named(e, instance))
        };
        let result = match tokio::time::timeout(timeout, connect)
            .instrument(span.clone())
            .await
        {
            Ok(result) => result.inspect_err(|e| debug!(instance, error = %e, "connect failed")),
            Err(_) => Err(timed_out(instance, timeout, &stage, cache.get())),
        };
        telemetry::connect_finished(&span, meter, result, instance, cache.get().map(|c| c.name()))
    }

    /// Starts a refresh of `instance`'s certificate and connect settings in the background,
    /// for when a connection made with them failed in a way the connector could not see
    /// (a driver's login failing after the TLS handshake, say). Drivers built on this crate call
    /// it for you.
    ///
    /// It never makes connects wait while the current certificate is valid, and it is
    /// rate-limited with every other refresh of the instance (two at once, then one per 30 s,
    /// and 30 s after a failed one), so calling it after every failure is safe. Does nothing for
    /// an instance the connector has not connected to.
    ///
    /// ```no_run
    /// # async fn run(connector: cloudsql_core::Connector) -> Result<(), cloudsql_core::Error> {
    /// connector.force_refresh("my-project:us-central1:my-db").await?;
    /// # Ok(()) }
    /// ```
    pub async fn force_refresh(&self, instance: &str) -> Result<(), Error> {
        let name = self.instance_name(instance).await?;
        let caches: Vec<Arc<Cache>> = {
            let caches = self.inner.caches.lock().unwrap_or_else(PoisonError::into_inner);
            [false, true]
                .iter()
                .filter_map(|iam| caches.get(&(name.clone(), *iam)).cloned())
                .collect()
        };
        for cache in caches {
            cache.force_refresh(ForceReason::ConnectFailed);
        }
        Ok(())
    }

    /// Parses a connection name, or resolves a DNS name standing for one.
    pub(crate) async fn instance_name(&self, input: &str) -> Result<InstanceConnectionName, Error> {
        match input.parse::<InstanceConnectionName>() {
            Ok(name) => Ok(name),
            Err(_) if dns_name::looks_like_dns_name(input) => {
                if self.is_closed() {
                    return Err(Error::Closed);
                }
                self.inner.names.resolve(input, &self.inner.client).await
            }
            Err(e) => Err(e),
        }
    }

    /// Connects to `name`, resolved from the DNS name `via` when there is one.
    async fn connect_inner(
        &self,
        name: &InstanceConnectionName,
        via: Option<&str>,
        options: &DialOptions,
        stage: &StageCell,
        cache_slot: &std::sync::OnceLock<Arc<Cache>>,
    ) -> Result<CloudSqlStream, Error> {
        stage.set(ConnectStage::Refreshing);
        let iam_authn = options.iam_authn.unwrap_or(self.inner.iam_authn);
        let cache = self.cache(name, iam_authn)?;
        let _ = cache_slot.set(cache.clone());
        let info = self.conn_info(name, iam_authn, &cache).await?;
        info.check_driver(options.engine)?;
        info.check_iam_authn(iam_authn)?;
        let ip_type = options.ip_type.unwrap_or(self.inner.ip_type);
        if ip_type == IpType::SqlData {
            return self.connect_sql_data(name, info, options, stage, cache).await;
        }
        let metadata_host = info.address(ip_type)?;
        let target = match via {
            Some(dns) => self.inner.names.dial_target(dns, name, metadata_host).await,
            None => dns_name::DialTarget::default(),
        };
        let host = target.host.as_deref().unwrap_or(metadata_host);
        let hook = cache.rejection_hook(&info, format!("{host}:{}", crate::SERVER_PROXY_PORT));
        let dial_fn = self.inner.dial_fn.as_ref();
        let mut stream = dial::dial(
            &info,
            host,
            target.server_name,
            dial_fn,
            Some(hook),
            stage,
            options.read_ahead,
        )
        .await
        .inspect_err(|e| {
            debug!(instance = %name, ip_type = ?ip_type, error = e as &dyn std::error::Error, "dial failed; refreshing in the background");
            cache.force_refresh(ForceReason::ConnectFailed);
        })?;
        if let Some(protocol) = options.metadata_exchange.filter(|_| info.mdx_supported) {
            stage.set(ConnectStage::MetadataExchange);
            mdx::exchange(&mut stream, &self.inner.user_agent, protocol)
                .await
                .map_err(|detail| Error::MetadataExchange {
                    instance: name.to_string(),
                    detail,
                })?;
            debug!(instance = %name, ?protocol, "metadata exchange done");
        }
        if let Some(dns) = via
            && let Some(watch) = self.inner.names.failover_watch(dns, name, &self.inner.client)
        {
            stream.set_failover(watch);
        }
        Ok(stream)
    }

    /// [`IpType::SqlData`]: the tunnel, or a direct connection where the instance does not
    /// offer it. Engine and IAM checks have run on the instance's connect settings.
    #[cfg(feature = "sql-data")]
    async fn connect_sql_data(
        &self,
        name: &InstanceConnectionName,
        info: Arc<crate::conn_info::ConnInfo>,
        options: &DialOptions,
        stage: &StageCell,
        cache: Arc<Cache>,
    ) -> Result<CloudSqlStream, Error> {
        let direct = {
            let connector = self.clone();
            let name = name.clone();
            let options = options.clone();
            move || -> futures_util::future::BoxFuture<'static, Result<CloudSqlStream, Error>> {
                Box::pin(async move { connector.connect_fallback(&name, &info, &options, &cache).await })
            }
        };
        if self.inner.sql_data.is_unsupported(name) {
            debug!(instance = %name, "instance does not offer the SQL Data Service; connecting directly");
            stage.set(ConnectStage::Dialing);
            return direct().await;
        }
        let tunnel = self.inner.sql_data.connect(name, Box::new(direct), stage).await?;
        Ok(CloudSqlStream::tunnel(tunnel, name.to_string()))
    }

    /// The direct TLS connection a refused tunnel falls back to: private, then PSC, then public.
    #[cfg(feature = "sql-data")]
    async fn connect_fallback(
        &self,
        name: &InstanceConnectionName,
        info: &Arc<crate::conn_info::ConnInfo>,
        options: &DialOptions,
        cache: &Arc<Cache>,
    ) -> Result<CloudSqlStream, Error> {
        let ip_type = [IpType::Private, IpType::Psc, IpType::Public]
            .into_iter()
            .find(|t| info.address(*t).is_ok())
            .unwrap_or(IpType::Public);
        let host = info.address(ip_type)?;
        let hook = cache.rejection_hook(info, format!("{host}:{}", crate::SERVER_PROXY_PORT));
        let stage = StageCell::new(ConnectStage::Dialing);
        let mut stream = dial::dial(
            info,
            host,
            None,
            self.inner.dial_fn.as_ref(),
            Some(hook),
            &stage,
            options.read_ahead,
        )
        .await?;
        if let Some(protocol) = options.metadata_exchange.filter(|_| info.mdx_supported) {
            mdx::exchange(&mut stream, &self.inner.user_agent, protocol)
                .await
                .map_err(|detail| Error::MetadataExchange {
                    instance: name.to_string(),
                    detail,
                })?;
        }
        debug!(instance = %name, ?ip_type, "connected directly after the SQL Data Service refused");
        Ok(stream)
    }

    /// [`IpType::SqlData`] without the `sql-data` feature.
    #[cfg(not(feature = "sql-data"))]
    async fn connect_sql_data(
        &self,
        _name: &InstanceConnectionName,
        _info: Arc<crate::conn_info::ConnInfo>,
        _options: &DialOptions,
        _stage: &StageCell,
        _cache: Arc<Cache>,
    ) -> Result<CloudSqlStream, Error> {
        Err(Error::config(
            "IpType::SqlData needs the `sql-data` feature of cloudsql-core (or of the driver crate); \
             enable it or choose another IpType",
        ))
    }

    /// The cache's connection data; evicts the cache when its error leaves nothing to serve.
    async fn conn_info(
        &self,
        name: &InstanceConnectionName,
        iam_authn: bool,
        cache: &Arc<Cache>,
    ) -> Result<Arc<crate::conn_info::ConnInfo>, Error> {
        match cache.conn_info().await {
            Ok(info) => Ok(info),
            Err(error) => {
                if error.evicts_cache() || matches!(error, Error::Closed) {
                    self.evict(name, iam_authn, cache);
                }
                Err(if self.is_closed() { Error::Closed } else { error })
            }
        }
    }

    /// Fails with [`Error::IncompatibleDriver`] unless the instance runs `options`' engine;
    /// warms the instance's cache either way.
    pub(crate) async fn check_engine(&self, instance: &str, options: &DialOptions) -> Result<(), Error> {
        let info = self.warm(instance, options).await?;
        info.check_driver(options.engine)
            .map_err(|e| dns_name::named(e, instance))
    }

    /// The engine of an instance, from its (cached or fresh) connect settings.
    ///
    /// Driver crates use [`DriverDial`](crate::driver::DriverDial) instead, which refuses a mismatch
    /// before dialing.
    pub async fn engine(&self, instance: &str) -> Result<Option<Engine>, Error> {
        let name = self.instance_name(instance).await?;
        let cache = self.cache(&name, self.inner.iam_authn)?;
        Ok(self.conn_info(&name, self.inner.iam_authn, &cache).await?.engine)
    }

    /// The instance's raw `databaseVersion` as the Admin API reports it (`POSTGRES_16`,
    /// `MYSQL_8_0_31`, `SQLSERVER_2022_STANDARD`, …), from its (cached or fresh) connect settings:
    /// the engine's version where [`engine`](Self::engine) only gives the engine.
    ///
    /// ```no_run
    /// # async fn run(connector: cloudsql_core::Connector) -> Result<(), cloudsql_core::Error> {
    /// let version = connector.engine_version("my-project:us-central1:my-db").await?;
    /// assert!(version.starts_with("POSTGRES_"));
    /// # Ok(()) }
    /// ```
    pub async fn engine_version(&self, instance: &str) -> Result<String, Error> {
        let name = self.instance_name(instance).await?;
        let cache = self.cache(&name, self.inner.iam_authn)?;
        Ok(self
            .conn_info(&name, self.inner.iam_authn, &cache)
            .await?
            .database_version
            .clone())
    }

    /// Fetches and caches everything a first connect to `instance` with `options` needs —
    /// the connection name a DNS name stands for, the connect settings, and a client certificate
    /// for the IAM authentication mode of `options` — without dialing, so that the first connect
    /// makes no Admin API call (Go's `Dialer.Warmup`). Call it at application start-up.
    ///
    /// For a custom DNS name, its own address records (which connects dial) are looked up too.
    ///
    /// Fails as [`connect_with`](Self::connect_with) would before dialing: a timeout names the
    /// stage that ran out of time, an Admin API or credentials error names the instance, and an
    /// engine other than the driver's ([`DriverDial::warmup`](crate::driver::DriverDial::warmup)),
    /// IAM authn on SQL Server or an IP type the
    /// instance does not have is refused. With the
    /// background strategy the certificate is then kept fresh; with the lazy one it is refreshed
    /// by the next connect that finds it near expiry.
    ///
    /// ```no_run
    /// use cloudsql_core::{Connector, DialOptions};
    ///
    /// # async fn run() -> Result<(), cloudsql_core::Error> {
    /// let connector = Connector::builder().build()?;
    /// connector
    ///     .warmup("my-project:us-central1:my-db", &DialOptions::new().iam_authn(true))
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub async fn warmup(&self, instance: &str, options: &DialOptions) -> Result<(), Error> {
        let info = self.warm(instance, options).await?;
        info.check_driver(options.engine)
            .map_err(|e| dns_name::named(e, instance))?;
        let iam_authn = options.iam_authn.unwrap_or(self.inner.iam_authn);
        info.check_iam_authn(iam_authn)?;
        let ip_type = options.ip_type.unwrap_or(self.inner.ip_type);
        if ip_type == IpType::SqlData {
            // The tunnel goes through the Admin API's host: no address of the instance's own.
            return Ok(());
        }
        let metadata_host = info.address(ip_type).map_err(|e| dns_name::named(e, instance))?;
        if dns_name::looks_like_dns_name(instance) {
            // A custom name is dialled by its own A/AAAA record: look it up now too.
            self.inner
                .names
                .dial_target(instance, &info.name, metadata_host)
                .await;
        }
        Ok(())
    }

    /// Resolves `instance` and waits for its cache (for `options`' IAM mode) to hold valid
    /// connection data, within the timeout.
    async fn warm(
        &self,
        instance: &str,
        options: &DialOptions,
    ) -> Result<Arc<crate::conn_info::ConnInfo>, Error> {
        options.validate()?;
        let timeout = options.timeout.unwrap_or(self.inner.timeout);
        let stage = StageCell::new(ConnectStage::ResolvingName);
        let cache_slot = std::sync::OnceLock::new();
        let warm = async {
            let name = self.instance_name(instance).await?;
            stage.set(ConnectStage::Refreshing);
            let iam_authn = options.iam_authn.unwrap_or(self.inner.iam_authn);
            let cache = self.cache(&name, iam_authn)?;
            let _ = cache_slot.set(cache.clone());
            self.conn_info(&name, iam_authn, &cache)
                .await
                .map_err(|e| dns_name::named(e, instance))
        };
        tokio::time::timeout(timeout, warm)
            .instrument(debug_span!("warmup", instance = %instance))
            .await
            .map_err(|_| timed_out(instance, timeout, &stage, cache_slot.get()))?
    }

    /// Whether automatic IAM database authentication is on by default.
    pub fn iam_authn(&self) -> bool {
        self.inner.iam_authn
    }

    /// Stops all refreshes, including those in flight (no Admin API call is made afterwards).
    /// Connects waiting for a refresh, and every connect afterwards, fail with [`Error::Closed`].
    ///
    /// Streams already open stay open, and so do connections relayed by local sockets: a pool of
    /// sqlx or mysql_async connections keeps working on the connections it has. The local
    /// sockets stay in place but refuse every new connection with [`Error::Closed`] (the driver
    /// is told so in its own protocol, a `warn!` line says so, and
    /// [`LocalSocket::last_error`](crate::LocalSocket::last_error) returns it); they are removed
    /// when the last clone of the connector is dropped.
    pub async fn close(&self) {
        self.inner.close();
        tokio::task::yield_now().await;
    }

    /// Serves `instance` on a local socket, for drivers that cannot take a stream: see
    /// [`LocalSocketBuilder`](crate::LocalSocketBuilder).
    pub fn local_socket(&self, instance: &str) -> LocalSocketBuilder {
        LocalSocketBuilder::new(self.inner.clone(), self.inner.sockets.clone(), instance)
    }

    /// Whether [`close`](Connector::close) was called.
    pub fn is_closed(&self) -> bool {
        self.inner.closed.load(Ordering::Acquire)
    }

    fn cache(&self, name: &InstanceConnectionName, iam_authn: bool) -> Result<Arc<Cache>, Error> {
        if self.is_closed() {
            return Err(Error::Closed);
        }
        let mut caches = self.inner.caches.lock().unwrap_or_else(PoisonError::into_inner);
        let key = (name.clone(), iam_authn);
        if let Some(cache) = caches.get(&key) {
            return Ok(cache.clone());
        }
        let refresher = Refresher {
            name: name.clone(),
            iam_authn,
            client: self.inner.client.clone(),
            key: self.inner.key.clone(),
            login: self.inner.login.clone(),
            telemetry: self.inner.metrics.refresh(name, self.inner.refresh_strategy),
        };
        let cache = Arc::new(Cache::new(refresher, self.inner.refresh_strategy));
        debug!(instance = %name, iam_authn, strategy = ?self.inner.refresh_strategy, "new instance cache");
        caches.insert(key, cache.clone());
        Ok(cache)
    }

    fn evict(&self, name: &InstanceConnectionName, iam_authn: bool, cache: &Arc<Cache>) {
        let mut caches = self.inner.caches.lock().unwrap_or_else(PoisonError::into_inner);
        let key = (name.clone(), iam_authn);
        if caches.get(&key).is_some_and(|c| Arc::ptr_eq(c, cache)) {
            debug!(instance = %name, "evicting instance cache");
            caches.remove(&key);
            cache.close();
        }
    }
}

/// The timeout error for a connect that was at `stage`: a connect waiting for a refresh carries
/// the last refresh failure, so the cause is never lost behind "timed out".
fn timed_out(instance: &str, timeout: Duration, stage: &StageCell, cache: Option<&Arc<Cache>>) -> Error {
    let stage = stage.get();
    let last_error = match stage {
        ConnectStage::Refreshing => cache
            .and_then(|c| c.last_error())
            .map(|e| Arc::new(e) as crate::error::Source),
        _ => None,
    };
    Error::Timeout {
        instance: crate::excerpt::excerpt(instance),
        timeout,
        stage,
        last_error,
    }
}

/// What local sockets ask of their connector: they hold its shared state as this trait object,
/// weakly in their accept loops, so they neither keep it alive nor see its insides.
impl InstanceDialer for Inner {
    fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    fn check<'a>(self: Arc<Self>, instance: &'a str, options: &'a DialOptions) -> DialFuture<'a, ()> {
        Box::pin(async move {
            let connector = Connector { inner: self };
            if options.engine.is_some() {
                connector.check_engine(instance, options).await
            } else {
                connector.instance_name(instance).await.map(drop)
            }
        })
    }

    fn dial<'a>(
        self: Arc<Self>,
        instance: &'a str,
        options: &'a DialOptions,
    ) -> DialFuture<'a, CloudSqlStream> {
        Box::pin(async move { Connector { inner: self }.connect_with(instance, options).await })
    }
}

impl Inner {
    fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.names.close();
        let caches = std::mem::take(&mut *self.caches.lock().unwrap_or_else(PoisonError::into_inner));
        for cache in caches.values() {
            cache.close();
        }
        // Local sockets keep listening, to refuse new connections with `Error::Closed` rather
        // than leave clients a missing file; they stop when the last clone drops.
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.close();
        self.sockets.stop_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send<T: Send>(_: &T) {}
    fn assert_send_sync<T: Send + Sync + 'static>() {}

    #[tokio::test]
    async fn public_types_and_futures_are_send() {
        assert_send_sync::<Connector>();
        assert_send_sync::<CloudSqlStream>();
        assert_send_sync::<Error>();
        let connector = Connector::builder()
            .credentials(crate::Credentials::from_token("t"))
            .admin_api_endpoint("http://127.0.0.1:9")
            .build()
            .unwrap();
        let connect = connector.connect("p:r:i");
        assert_send(&connect);
        let options = DialOptions::new();
        let connect_with = connector.connect_with("p:r:i", &options);
        assert_send(&connect_with);
        let close = connector.close();
        assert_send(&close);
    }

    #[test]
    fn build_rejects_bad_options_with_typed_errors() {
        let err = Connector::builder()
            .credentials(crate::Credentials::from_token("t"))
            .admin_api_endpoint("127.0.0.1:8080")
            .build()
            .unwrap_err();
        assert!(
            err.to_string().contains("must start with http:// or https://"),
            "{err}"
        );
        for (endpoint, why) in [
            ("https://sql test", "is not a valid URL"),
            (
                "https://user:secret@sql.test",
                "must not hold a user name or password",
            ),
            ("https://sql.test/?alt=json", "must not have a query"),
        ] {
            let err = Connector::builder()
                .credentials(crate::Credentials::from_token("t"))
                .admin_api_endpoint(endpoint)
                .build()
                .unwrap_err();
            assert!(matches!(err, Error::Config { .. }), "{endpoint}: {err:?}");
            assert!(err.to_string().contains(why), "{endpoint}: {err}");
            assert!(!err.to_string().contains("secret"), "{err}");
        }
        let err = Connector::builder()
            .credentials(crate::Credentials::from_token("t"))
            .timeout(Duration::ZERO)
            .build()
            .unwrap_err();
        assert!(matches!(err, Error::Config { .. }));
    }

    #[test]
    fn shared_returns_one_connector_until_it_is_closed() {
        let a = Connector::shared().unwrap();
        let b = Connector::shared().unwrap();
        assert!(a.same_as(&b));
        a.inner.close();
        let c = Connector::shared().unwrap();
        assert!(!c.same_as(&a));
        assert!(!c.is_closed());
    }

    #[test]
    fn build_works_outside_a_runtime() {
        let connector = Connector::builder()
            .credentials(crate::Credentials::from_token("t"))
            .build();
        assert!(connector.is_ok());
    }
}
