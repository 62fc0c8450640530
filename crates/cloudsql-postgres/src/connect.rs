//! `connect` / `connect_with`: tokio-postgres over the connector's TLS stream.

use cloudsql_core::{CloudSqlStream, Connector, DialOptions, Engine};
use tokio_postgres::config::SslMode;
use tokio_postgres::tls::NoTlsStream;
use tokio_postgres::{Client, Config, Connection, NoTls};
use tracing::debug;

use crate::Error;

/// The connection future tokio-postgres hands back; spawn it.
pub type CloudSqlConnection = Connection<CloudSqlStream, NoTlsStream>;

/// Connects to a Cloud SQL for PostgreSQL instance with the connector's defaults.
///
/// `config` supplies the user, password, database and session options; its hosts and ports are
/// ignored (the connector dials the instance) and TLS is off inside the tunnel, which already is
/// TLS 1.3. With automatic IAM authn, the user is the IAM principal (a service account's
/// `.gserviceaccount.com` suffix is dropped for you) and no password is needed.
///
/// If the PostgreSQL startup or login fails after the connector handed over its stream (a
/// refused client certificate, a server that drops the session, but also a wrong password),
/// the error is returned as tokio-postgres reported it and the connector starts a paced
/// background refresh of the instance's certificate and settings
/// ([`Connector::force_refresh`]); later connects do not wait for it while the current
/// certificate is valid.
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let connector = cloudsql_core::Connector::builder().build()?;
/// let mut config = tokio_postgres::Config::new();
/// config.user("app").password("secret").dbname("appdb");
/// let (client, connection) = cloudsql_postgres::connect(&connector, "proj:region:inst", &config).await?;
/// tokio::spawn(connection);
/// let row = client.query_one("SELECT 1::int4", &[]).await?;
/// assert_eq!(row.get::<_, i32>(0), 1);
/// # Ok(()) }
/// ```
pub async fn connect(
    connector: &Connector,
    instance: &str,
    config: &Config,
) -> Result<(Client, CloudSqlConnection), Error> {
    connect_with(connector, instance, config, &DialOptions::new()).await
}

/// [`connect`] with per-connection options (IP type, IAM authn, timeout). A failed startup or
/// login starts a paced background refresh, as with [`connect`].
pub async fn connect_with(
    connector: &Connector,
    instance: &str,
    config: &Config,
    options: &DialOptions,
) -> Result<(Client, CloudSqlConnection), Error> {
    let options = options.clone().engine(Engine::Postgres);
    let iam_authn = options.iam_authn_override().unwrap_or(connector.iam_authn());
    let stream = connector.connect_with(instance, &options).await?;
    let config = tunnel_config(config, iam_authn);
    debug!(
        instance,
        iam_authn, "starting PostgreSQL session over the connector stream"
    );
    match config.connect_raw(stream, NoTls).await {
        Ok(pair) => Ok(pair),
        Err(e) => {
            refresh_after_failure(connector, instance, &e).await;
            Err(e.into())
        }
    }
}

/// The driver failed on a stream the connector handed over: the connector could not see why,
/// so it refreshes in the background (paced; connects keep using a valid certificate).
async fn refresh_after_failure(connector: &Connector, instance: &str, error: &tokio_postgres::Error) {
    debug!(
        instance,
        error = error as &dyn std::error::Error,
        "PostgreSQL startup failed; refreshing in the background"
    );
    if let Err(e) = connector.force_refresh(instance).await {
        debug!(
            instance,
            error = &e as &dyn std::error::Error,
            "could not start a refresh"
        );
    }
}

/// The config to use inside the tunnel: no TLS, and the IAM user name rule applied.
pub(crate) fn tunnel_config(config: &Config, iam_authn: bool) -> Config {
    let mut config = config.clone();
    config.ssl_mode(SslMode::Disable);
    if iam_authn && let Some(user) = config.get_user() {
        let user = Engine::Postgres.iam_user_name(user);
        config.user(user);
    }
    config
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iam_user_names_drop_the_service_account_suffix() {
        let mut config = Config::new();
        config
            .user("app@proj.iam.gserviceaccount.com")
            .ssl_mode(SslMode::Require);
        let tunneled = tunnel_config(&config, true);
        assert_eq!(tunneled.get_user(), Some("app@proj.iam"));
        assert_eq!(tunneled.get_ssl_mode(), SslMode::Disable);
        assert_eq!(
            tunnel_config(&config, false).get_user(),
            Some("app@proj.iam.gserviceaccount.com")
        );
    }
}
