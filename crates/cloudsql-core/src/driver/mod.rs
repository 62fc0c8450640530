//! For crates that put a database driver on the connector (this workspace's `cloudsql-postgres`,
//! `cloudsql-mysql`, `cloudsql-sqlx` and `cloudsql-mssql`, or your own): what every one of them
//! does around its driver, written once.
//!
//! A driver crate makes a [`DriverDial`] for each connection (or local socket) with the engine
//! its driver speaks and the user's [`DialOptions`], then:
//!
//! 1. gets a stream with [`DriverDial::connect`], or a local socket with
//!    [`DriverDial::local_socket`], for drivers that cannot take a stream — both refuse an
//!    instance running another engine ([`Error::IncompatibleDriver`]) before any database byte
//!    is sent;
//! 2. logs in as [`DriverDial::iam_user`] when IAM database authentication is on (the engine's
//!    IAM user-name rule, [`Engine::iam_user_name`]);
//! 3. runs the driver's login through [`DriverDial::login`] (over a stream) or
//!    [`DriverDial::login_via`] (over a local socket): when the driver fails after the connector
//!    handed over its connection, the connector could not see why, so it starts a paced
//!    background refresh of the instance ([`Connector::force_refresh`]); over a local socket, a
//!    failure caused by the socket's own dial comes back as the connector's typed error instead
//!    of the driver's text.
//!
//! Pools that open connections in the background and swallow their errors (bb8) keep them in a
//! [`ConnectErrors`] collector.
//!
//! ```no_run
//! use cloudsql_core::driver::DriverDial;
//! use cloudsql_core::{Connector, DialOptions, Engine};
//! use tokio::io::AsyncWriteExt;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let connector = Connector::builder().build()?;
//! let dial = DriverDial::new(&connector, "proj:region:inst", Engine::Postgres, &DialOptions::new());
//! let user = dial.iam_user("app@proj.iam.gserviceaccount.com");
//! let mut stream = dial.connect().await?;
//! // Hand `stream` to the driver and log in as `user` (or the configured user when `None`);
//! // wrap the driver's login future in `dial.login(..)`.
//! let written: Result<(), std::io::Error> = dial.login(stream.write_all(b"startup")).await;
//! # let _ = (user, written); Ok(()) }
//! ```

mod connect_errors;

use std::error::Error as StdError;
use std::fmt;
use std::future::Future;

use tracing::debug;

pub use connect_errors::{ConnectErrors, PooledFailure, mark_check_failure};

use crate::{
    ClientProtocol, CloudSqlStream, Connector, DialOptions, Engine, Error, LocalSocket, LocalSocketBuilder,
};

/// Decides that a driver error needs no refresh (a configuration error found before any byte
/// was sent, say); see [`DriverDial::skip_refresh_for`].
pub type SkipRefresh = fn(&(dyn StdError + 'static)) -> bool;

/// One driver connection (or local socket) to an instance, for a driver that speaks `engine`:
/// the user's options with the engine check added, the IAM authn setting in force, and the
/// refresh after a driver failure. See the [module docs](self).
#[derive(Clone)]
pub struct DriverDial<'a> {
    connector: &'a Connector,
    instance: &'a str,
    engine: Engine,
    options: DialOptions,
    iam_authn: bool,
    skip_refresh: Option<SkipRefresh>,
}

impl<'a> DriverDial<'a> {
    /// Dials `instance` for a driver that speaks `engine`, with the user's `options`.
    ///
    /// IAM authn is `options`' setting, else the connector's. Nothing is dialled yet.
    ///
    /// ```
    /// use cloudsql_core::driver::DriverDial;
    /// use cloudsql_core::{Connector, DialOptions, Engine};
    ///
    /// # fn run() -> Result<(), cloudsql_core::Error> {
    /// let connector = Connector::builder().build()?;
    /// let options = DialOptions::new().iam_authn(true);
    /// let dial = DriverDial::new(&connector, "proj:region:inst", Engine::MySql, &options);
    /// assert!(dial.iam_authn());
    /// assert_eq!(dial.iam_user("app@proj.iam.gserviceaccount.com").as_deref(), Some("app"));
    /// # Ok(()) }
    /// ```
    pub fn new(connector: &'a Connector, instance: &'a str, engine: Engine, options: &DialOptions) -> Self {
        let mut options = options.clone();
        options.engine = Some(engine);
        let iam_authn = options.iam_authn.unwrap_or(connector.iam_authn());
        Self {
            connector,
            instance,
            engine,
            options,
            iam_authn,
            skip_refresh: None,
        }
    }

    /// Reports how the application reached the driver with a metadata exchange, when the
    /// instance advertises it (`mdxProtocolSupport`). Local sockets set this themselves; a
    /// stream connect sends none unless asked.
    ///
    /// ```no_run
    /// use cloudsql_core::driver::DriverDial;
    /// use cloudsql_core::{ClientProtocol, Connector, DialOptions, Engine};
    ///
    /// # async fn run(connector: Connector) -> Result<(), cloudsql_core::Error> {
    /// let stream = DriverDial::new(&connector, "proj:region:inst", Engine::Postgres, &DialOptions::new())
    ///     .metadata_exchange(ClientProtocol::Tls)
    ///     .connect()
    ///     .await?;
    /// # let _ = stream; Ok(()) }
    /// ```
    #[must_use]
    pub fn metadata_exchange(mut self, protocol: ClientProtocol) -> Self {
        self.options.metadata_exchange = Some(protocol);
        self
    }

    /// Starts no refresh after driver errors for which `skip` answers `true` (errors the
    /// driver finds in its own configuration before it sends anything, say).
    ///
    /// ```
    /// use cloudsql_core::driver::DriverDial;
    /// use cloudsql_core::{Connector, DialOptions, Engine};
    ///
    /// # fn run(connector: Connector) {
    /// let dial = DriverDial::new(&connector, "proj:region:inst", Engine::Postgres, &DialOptions::new())
    ///     .skip_refresh_for(|e| e.is::<std::fmt::Error>());
    /// # let _ = dial; }
    /// ```
    #[must_use]
    pub fn skip_refresh_for(mut self, skip: SkipRefresh) -> Self {
        self.skip_refresh = Some(skip);
        self
    }

    /// The connector this dial goes through.
    pub fn connector(&self) -> &'a Connector {
        self.connector
    }

    /// The instance as the user named it.
    pub fn instance(&self) -> &'a str {
        self.instance
    }

    /// The engine the driver speaks.
    pub fn engine(&self) -> Engine {
        self.engine
    }

    /// Whether automatic IAM database authentication is on for this connection.
    pub fn iam_authn(&self) -> bool {
        self.iam_authn
    }

    /// The database user to log in as when IAM authn is on: `principal` under the engine's rule
    /// ([`Engine::iam_user_name`]). `None` when IAM authn is off: log in as configured.
    pub fn iam_user(&self, principal: &str) -> Option<String> {
        self.iam_authn.then(|| self.engine.iam_user_name(principal))
    }

    /// A stream to the instance past the TLS handshake ([`Connector::connect_with`]), refused
    /// with [`Error::IncompatibleDriver`] when the instance runs another engine.
    pub async fn connect(&self) -> Result<CloudSqlStream, Error> {
        self.connector.connect_with(self.instance, &self.options).await
    }

    /// A local socket for the instance ([`Connector::local_socket`]) with these options; it
    /// refuses an instance running another engine when it starts serving. Choose where it
    /// listens, then `serve()`.
    pub fn local_socket(&self) -> LocalSocketBuilder {
        self.connector
            .local_socket(self.instance)
            .options(self.options.clone())
    }

    /// Waits until the connector holds valid connection data for the instance
    /// ([`Connector::warmup`]), checking the engine too.
    pub async fn warmup(&self) -> Result<(), Error> {
        self.connector.warmup(self.instance, &self.options).await
    }

    /// Runs a driver's login over a stream from [`connect`](Self::connect); when it fails,
    /// starts a paced background refresh ([`refresh_after_failure`](Self::refresh_after_failure))
    /// and returns the driver's error as is.
    pub async fn login<T, E>(&self, login: impl Future<Output = Result<T, E>>) -> Result<T, E>
    where
        E: StdError + 'static,
    {
        let result = login.await;
        let refresh = result.as_ref().err().map(|e| self.refresh_after_failure(e));
        if let Some(refresh) = refresh {
            refresh.await;
        }
        result
    }

    /// Runs a driver's login over `socket`, a local socket from
    /// [`local_socket`](Self::local_socket). When the socket failed to dial the instance
    /// meanwhile, the error is the connector's, as the socket recorded it (the driver only saw
    /// its text); any other failure starts a paced background refresh and is the driver's.
    pub async fn login_via<T, E>(
        &self,
        socket: &LocalSocket,
        login: impl Future<Output = Result<T, E>>,
    ) -> Result<T, LoginError<E>>
    where
        E: StdError + 'static,
    {
        let failed_dials = socket.failed_dials();
        let error = match login.await {
            Ok(value) => return Ok(value),
            Err(e) => e,
        };
        if socket.failed_dials() != failed_dials
            && let Some(cause) = socket.last_error()
        {
            debug!(
                instance = self.instance,
                error = &error as &dyn StdError,
                "the driver failed because the local socket could not dial the instance"
            );
            return Err(LoginError::Connector(cause));
        }
        let refresh = self.refresh_after_failure(&error);
        refresh.await;
        Err(LoginError::Driver(error))
    }

    /// The driver failed on a connection the connector handed over: the connector could not see
    /// why, so it refreshes the instance in the background ([`Connector::force_refresh`]:
    /// paced, and connects keep using a valid certificate meanwhile). Errors chosen with
    /// [`skip_refresh_for`](Self::skip_refresh_for) start nothing.
    ///
    /// The returned future does not hold `error` (driver errors need not be `Sync`): what to do
    /// is decided, and logged, when this is called.
    pub fn refresh_after_failure(
        &self,
        error: &(dyn StdError + 'static),
    ) -> impl Future<Output = ()> + Send + use<'a> {
        let refresh = !self.skip_refresh.is_some_and(|skip| skip(error));
        if refresh {
            debug!(
                instance = self.instance,
                engine = %self.engine,
                error,
                "the driver's login failed; refreshing in the background"
            );
        }
        let (connector, instance) = (self.connector, self.instance);
        async move {
            if !refresh {
                return;
            }
            if let Err(e) = connector.force_refresh(instance).await {
                debug!(instance, error = &e as &dyn StdError, "could not start a refresh");
            }
        }
    }
}

impl fmt::Debug for DriverDial<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DriverDial")
            .field("instance", &self.instance)
            .field("engine", &self.engine)
            .field("options", &self.options)
            .field("iam_authn", &self.iam_authn)
            .finish_non_exhaustive()
    }
}

/// A driver's login over a local socket failed ([`DriverDial::login_via`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoginError<E> {
    /// The local socket could not reach the instance for this connection.
    #[error("the local socket could not reach the instance")]
    Connector(#[source] Error),
    /// The driver failed on the connection the socket relayed (a wrong password, say).
    #[error("the database driver failed")]
    Driver(#[source] E),
}

impl<E> LoginError<E> {
    /// This error as a driver crate's own error type, which has a variant for each.
    ///
    /// ```
    /// use cloudsql_core::driver::LoginError;
    ///
    /// #[derive(Debug)]
    /// enum MyError { Connector(cloudsql_core::Error), Driver(std::io::Error) }
    /// impl From<cloudsql_core::Error> for MyError { fn from(e: cloudsql_core::Error) -> Self { MyError::Connector(e) } }
    /// impl From<std::io::Error> for MyError { fn from(e: std::io::Error) -> Self { MyError::Driver(e) } }
    ///
    /// let error: LoginError<std::io::Error> = LoginError::Connector(cloudsql_core::Error::Closed);
    /// assert!(matches!(error.into_error::<MyError>(), MyError::Connector(cloudsql_core::Error::Closed)));
    /// ```
    pub fn into_error<X>(self) -> X
    where
        X: From<Error> + From<E>,
    {
        match self {
            LoginError::Connector(e) => X::from(e),
            LoginError::Driver(e) => X::from(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Credentials;

    fn connector(iam_authn: bool) -> Connector {
        Connector::builder()
            .credentials(Credentials::from_token("token"))
            .iam_authn(iam_authn)
            .build()
            .unwrap()
    }

    #[test]
    fn iam_authn_comes_from_the_options_else_the_connector() {
        let on = connector(true);
        let off = connector(false);
        let dial = |c, o: &DialOptions| DriverDial::new(c, "p:r:i", Engine::Postgres, o).iam_authn();
        assert!(dial(&on, &DialOptions::new()));
        assert!(!dial(&off, &DialOptions::new()));
        assert!(!dial(&on, &DialOptions::new().iam_authn(false)));
        assert!(dial(&off, &DialOptions::new().iam_authn(true)));
    }

    #[test]
    fn the_iam_user_follows_the_engine_rule_only_with_iam_authn() {
        let sa = "app@proj.iam.gserviceaccount.com";
        let c = connector(true);
        let options = DialOptions::new();
        assert_eq!(
            DriverDial::new(&c, "p:r:i", Engine::Postgres, &options)
                .iam_user(sa)
                .as_deref(),
            Some("app@proj.iam")
        );
        assert_eq!(
            DriverDial::new(&c, "p:r:i", Engine::MySql, &options)
                .iam_user(sa)
                .as_deref(),
            Some("app")
        );
        let off = DialOptions::new().iam_authn(false);
        assert_eq!(
            DriverDial::new(&c, "p:r:i", Engine::MySql, &off).iam_user(sa),
            None
        );
    }

    #[test]
    fn the_engine_and_metadata_exchange_reach_the_options_but_not_the_users() {
        let c = connector(false);
        let user = DialOptions::new();
        let dial =
            DriverDial::new(&c, "p:r:i", Engine::SqlServer, &user).metadata_exchange(ClientProtocol::Tls);
        assert_eq!(dial.options.engine, Some(Engine::SqlServer));
        assert_eq!(dial.options.metadata_exchange, Some(ClientProtocol::Tls));
        assert_eq!(user.engine, None, "the user's options are left alone");
    }

    #[tokio::test]
    async fn a_failed_login_comes_back_as_the_driver_reported_it() {
        let c = connector(false);
        let dial = DriverDial::new(&c, "p:r:i", Engine::Postgres, &DialOptions::new())
            .skip_refresh_for(|e| e.is::<std::fmt::Error>());
        let result: Result<(), std::io::Error> =
            dial.login(async { Err(std::io::Error::other("refused")) }).await;
        assert_eq!(result.unwrap_err().to_string(), "refused");
        let result: Result<(), std::fmt::Error> = dial.login(async { Err(std::fmt::Error) }).await;
        assert!(result.is_err());
    }
}
