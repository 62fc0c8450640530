//! `connect` / `connect_with`: tokio-postgres over the connector's TLS stream.

use cloudsql_core::driver::DriverDial;
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
    let dial = DriverDial::new(connector, instance, Engine::Postgres, options);
    let stream = dial.connect().await?;
    let config = tunnel_config(config, &dial);
    debug!(
        instance,
        iam_authn = dial.iam_authn(),
        "starting PostgreSQL session over the connector stream"
    );
    Ok(dial.login(config.connect_raw(stream, NoTls)).await?)
}

/// The config to use inside the tunnel: no TLS, and the IAM user name rule applied.
fn tunnel_config(config: &Config, dial: &DriverDial<'_>) -> Config {
    let mut config = config.clone();
    config.ssl_mode(SslMode::Disable);
    if let Some(user) = config.get_user().and_then(|user| dial.iam_user(user)) {
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
        let connector = Connector::builder()
            .credentials(cloudsql_core::Credentials::from_token("token"))
            .build()
            .unwrap();
        let dial = |iam_authn| {
            let options = DialOptions::new().iam_authn(iam_authn);
            DriverDial::new(&connector, "p:r:i", Engine::Postgres, &options)
        };
        let tunneled = tunnel_config(&config, &dial(true));
        assert_eq!(tunneled.get_user(), Some("app@proj.iam"));
        assert_eq!(tunneled.get_ssl_mode(), SslMode::Disable);
        assert_eq!(
            tunnel_config(&config, &dial(false)).get_user(),
            Some("app@proj.iam.gserviceaccount.com")
        );
    }
}
