//! What an emulated instance looks like: engine, region, addresses, CA mode, DNS names,
//! certificate lifetime, backend database and IAM users. Also the binary's config file.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{BoxError, DnsRecordError, Error};

/// How the instance's server certificate is issued (`serverCaMode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum CaMode {
    /// `GOOGLE_MANAGED_INTERNAL_CA`: a self-signed CA per instance; server CN `project:instance`.
    #[default]
    Legacy,
    /// `GOOGLE_MANAGED_CAS_CA`: the emulator's shared root → intermediate; SAN = DNS name.
    GoogleManagedCas,
    /// `CUSTOMER_MANAGED_CAS_CA`: a root → intermediate of the instance's own; SAN = DNS name.
    CustomerManagedCas,
}

impl CaMode {
    /// The Admin API's name for this mode.
    pub fn api_name(self) -> &'static str {
        match self {
            CaMode::Legacy => "GOOGLE_MANAGED_INTERNAL_CA",
            CaMode::GoogleManagedCas => "GOOGLE_MANAGED_CAS_CA",
            CaMode::CustomerManagedCas => "CUSTOMER_MANAGED_CAS_CA",
        }
    }
}

/// An IAM principal allowed to log in to the instance with automatic IAM database authentication.
#[derive(Clone, Deserialize)]
pub struct IamUser {
    /// The principal's email, such as `app@project.iam.gserviceaccount.com`.
    pub principal: String,
    /// The password of the matching database user in the backend; only the emulator knows it.
    pub backend_password: String,
}

impl std::fmt::Debug for IamUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IamUser")
            .field("principal", &self.principal)
            .finish_non_exhaustive()
    }
}

/// One emulated instance.
///
/// ```
/// use std::time::Duration;
/// use cloudsql_emulator::{CaMode, InstanceConfig};
///
/// let config = InstanceConfig::new("my-project:us-central1:pg", "POSTGRES_15", "127.0.0.1:5432".parse()?)
///     .ca_mode(CaMode::GoogleManagedCas)
///     .private_ip(true)
///     .psc(true)
///     .cert_lifetime(Duration::from_secs(180));
/// # let _ = config;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Deserialize)]
#[non_exhaustive]
pub struct InstanceConfig {
    /// `project:region:instance`.
    pub connection_name: String,
    /// `databaseVersion`, such as `POSTGRES_15`, `MYSQL_8_0` or `SQLSERVER_2019_STANDARD`.
    pub database_version: String,
    /// The real database the proxy relays to.
    pub backend: SocketAddr,
    /// How the server certificate is issued.
    #[serde(default)]
    pub ca_mode: CaMode,
    /// The public address; a free loopback address is chosen when unset.
    #[serde(default)]
    pub public_ip: Option<Ipv4Addr>,
    /// Whether the instance has a public IP.
    #[serde(default = "yes")]
    pub public: bool,
    /// Whether the instance has a private IP (its own loopback address).
    #[serde(default)]
    pub private_ip: bool,
    /// Whether Private Service Connect is enabled (a DNS name served on its own loopback address).
    #[serde(default)]
    pub psc: bool,
    /// Life of each ephemeral client certificate (one hour on Cloud SQL).
    #[serde(default = "one_hour", with = "secs")]
    pub cert_lifetime: Duration,
    /// IAM principals that may log in with automatic IAM database authentication.
    #[serde(default)]
    pub iam_users: Vec<IamUser>,
    /// Advertise and accept the metadata exchange (`mdxProtocolSupport: ["CLIENT_PROTOCOL_TYPE"]`).
    #[serde(default)]
    pub mdx: bool,
    /// SQL Server only: answer with the built-in TDS test responder instead of relaying to
    /// `backend` (no SQL Server runs on the test machines).
    #[serde(default)]
    pub tds_responder: bool,
    /// SQL logins the TDS test responder accepts.
    #[serde(default)]
    pub sql_logins: Vec<SqlLogin>,
    /// How long the proxy waits for a client to finish its database login handshake (startup
    /// message, MySQL handshake response) before closing the connection, in seconds in the
    /// config file. Cloud SQL's server side does not wait forever for a silent client either.
    #[serde(default = "thirty_seconds", deserialize_with = "secs::deserialize")]
    pub login_timeout: Duration,
    /// Extra SAN DNS names of the server certificate (CAS modes only; legacy certificates have
    /// no SAN): a customer-managed CAS instance's custom names, such as `db.example.com`.
    #[serde(default)]
    pub custom_sans: Vec<String>,
}

fn thirty_seconds() -> Duration {
    Duration::from_secs(30)
}

/// A SQL Server login (user and password) the TDS test responder accepts.
#[derive(Clone, Deserialize)]
pub struct SqlLogin {
    /// The login name.
    pub user: String,
    /// Its password.
    pub password: String,
}

impl std::fmt::Debug for SqlLogin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlLogin")
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

fn yes() -> bool {
    true
}

fn one_hour() -> Duration {
    Duration::from_secs(3600)
}

mod secs {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer};

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_secs)
    }
}

impl InstanceConfig {
    /// An instance with a public IP, legacy CA and one-hour certificates.
    pub fn new(connection_name: &str, database_version: &str, backend: SocketAddr) -> Self {
        Self {
            connection_name: connection_name.to_owned(),
            database_version: database_version.to_owned(),
            backend,
            ca_mode: CaMode::Legacy,
            public_ip: None,
            public: true,
            private_ip: false,
            psc: false,
            cert_lifetime: one_hour(),
            iam_users: Vec::new(),
            mdx: false,
            tds_responder: false,
            sql_logins: Vec::new(),
            login_timeout: thirty_seconds(),
            custom_sans: Vec::new(),
        }
    }

    /// A SQL Server 2019 instance answered by the built-in TDS test responder (see the
    /// crate docs): log in with the logins added by [`sql_login`](Self::sql_login).
    pub fn sql_server(connection_name: &str) -> Self {
        let mut config = Self::new(
            connection_name,
            "SQLSERVER_2019_STANDARD",
            SocketAddr::from(([127, 0, 0, 1], 1433)),
        );
        config.tds_responder = true;
        config
    }

    /// Adds a SQL login to the TDS test responder.
    #[must_use]
    pub fn sql_login(mut self, user: &str, password: &str) -> Self {
        self.sql_logins.push(SqlLogin {
            user: user.to_owned(),
            password: password.to_owned(),
        });
        self
    }

    /// Sets the CA mode.
    #[must_use]
    pub fn ca_mode(mut self, mode: CaMode) -> Self {
        self.ca_mode = mode;
        self
    }

    /// Serves the public IP on this loopback address instead of a free one.
    #[must_use]
    pub fn public_ip(mut self, ip: Ipv4Addr) -> Self {
        self.public_ip = Some(ip);
        self
    }

    /// Turns the public IP on or off.
    #[must_use]
    pub fn public(mut self, on: bool) -> Self {
        self.public = on;
        self
    }

    /// Turns the private IP on or off.
    #[must_use]
    pub fn private_ip(mut self, on: bool) -> Self {
        self.private_ip = on;
        self
    }

    /// Turns Private Service Connect on or off.
    #[must_use]
    pub fn psc(mut self, on: bool) -> Self {
        self.psc = on;
        self
    }

    /// Sets the life of each ephemeral certificate.
    #[must_use]
    pub fn cert_lifetime(mut self, lifetime: Duration) -> Self {
        self.cert_lifetime = lifetime;
        self
    }

    /// Sets how long the proxy waits for a client's database login handshake.
    #[must_use]
    pub fn login_timeout(mut self, timeout: Duration) -> Self {
        self.login_timeout = timeout;
        self
    }

    /// Adds `name` to the server certificate's SAN DNS names, as a customer-managed CAS
    /// instance's custom SAN (CAS modes only: legacy certificates carry no SAN).
    #[must_use]
    pub fn custom_san(mut self, name: &str) -> Self {
        self.custom_sans.push(name.trim_end_matches('.').to_owned());
        self
    }

    /// Advertises and accepts the metadata exchange.
    #[must_use]
    pub fn mdx(mut self, on: bool) -> Self {
        self.mdx = on;
        self
    }

    /// Lets `principal` log in with automatic IAM authn; the backend user (named by the engine's
    /// IAM rule) must exist with `backend_password`.
    #[must_use]
    pub fn iam_user(mut self, principal: &str, backend_password: &str) -> Self {
        self.iam_users.push(IamUser {
            principal: principal.to_owned(),
            backend_password: backend_password.to_owned(),
        });
        self
    }
}

/// The binary's configuration file (TOML). `docs/emulator.md` has a full example.
///
/// ```toml
/// admin_api_addr = "127.0.0.1:8080"     # optional; a free port otherwise
/// credentials_dir = "credentials"       # relative to this file's directory
/// service_accounts = ["app@my-project.iam.gserviceaccount.com"]
///
/// [metadata]
/// service_account = "vm@my-project.iam.gserviceaccount.com"
/// project_id = "my-project"
///
/// [[dns_records]]
/// name = "pg.example.com"
/// txt = ["my-project:us-central1:pg"]
///
/// [[instances]]
/// connection_name = "my-project:us-central1:pg"
/// database_version = "POSTGRES_15"
/// backend = "127.0.0.1:5432"
/// ca_mode = "google_managed_cas"
/// ```
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct FileConfig {
    /// Where the Admin API, token endpoint, metadata server and control API listen.
    pub admin_api_addr: Option<SocketAddr>,
    /// Where credentials files are written (a temporary directory otherwise). A relative path
    /// is relative to the config file's directory once loaded with [`FileConfig::load`].
    pub credentials_dir: Option<PathBuf>,
    /// Service accounts to create; the first one's key file is printed.
    #[serde(default)]
    pub service_accounts: Vec<String>,
    /// What the GCE metadata server says about the VM it pretends to be.
    #[serde(default)]
    pub metadata: MetadataConfig,
    /// DNS records the emulator's DNS server answers from the start.
    #[serde(default)]
    pub dns_records: Vec<DnsRecord>,
    /// The instances.
    #[serde(default)]
    pub instances: Vec<InstanceConfig>,
}

impl FileConfig {
    /// Reads and parses the config file at `path`, then makes its relative paths relative to
    /// the file's directory (not the working directory) and absolute, and checks its DNS
    /// records.
    pub fn load(path: &Path) -> Result<Self, Error> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::ReadConfig {
            path: path.to_owned(),
            source,
        })?;
        let invalid = |source: BoxError| Error::InvalidConfig {
            path: path.to_owned(),
            source,
        };
        let mut config: FileConfig = toml::from_str(&text).map_err(|e| invalid(e.into()))?;
        // Absolute, so the paths the binary prints mean the same to whoever reads them.
        let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_owned());
        let base = absolute.parent().unwrap_or_else(|| Path::new(""));
        if let Some(dir) = config.credentials_dir.take() {
            config.credentials_dir = Some(if dir.is_relative() { base.join(dir) } else { dir });
        }
        for record in &config.dns_records {
            record.validate().map_err(|e| invalid(Box::new(e)))?;
        }
        Ok(config)
    }
}

/// The `[metadata]` table: the VM the metadata server pretends to be.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct MetadataConfig {
    /// The VM's default service account (its email). Without one, the metadata server's
    /// service-account routes answer 404, as on a VM without a service account.
    pub service_account: Option<String>,
    /// `project/project-id`; by default the project of `service_account`'s email domain.
    pub project_id: Option<String>,
}

/// A DNS record set for one name: TXT values and/or addresses (A, AAAA), or a CNAME. In the
/// config file (`[[dns_records]]`) and the body of `POST /emulator/v1/dns/records`.
///
/// ```json
/// {"name": "pg.example.com", "txt": ["my-project:us-central1:pg"], "addresses": ["127.0.0.7"]}
/// {"name": "alias.example.com", "cname": "pg.example.com"}
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct DnsRecord {
    /// The name, with or without a trailing dot (case is ignored).
    pub name: String,
    /// TXT values, each one record (for an instance: its `project:region:instance`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub txt: Vec<String>,
    /// IP addresses: an A record for each IPv4 one, an AAAA record for each IPv6 one (with TXT
    /// values or alone: a custom instance name dialled by its own address).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<IpAddr>,
    /// The canonical name this name is an alias of.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cname: Option<String>,
}

impl DnsRecord {
    /// TXT records for `name`.
    pub fn txt(name: &str, values: &[&str]) -> Self {
        Self {
            name: name.to_owned(),
            txt: values.iter().map(|v| (*v).to_owned()).collect(),
            addresses: Vec::new(),
            cname: None,
        }
    }

    /// A CNAME from `name` to `target`.
    pub fn cname(name: &str, target: &str) -> Self {
        Self {
            name: name.to_owned(),
            txt: Vec::new(),
            addresses: Vec::new(),
            cname: Some(target.to_owned()),
        }
    }

    /// These records plus A (IPv4) and AAAA (IPv6) records for `addresses`.
    pub fn with_addresses(mut self, addresses: &[IpAddr]) -> Self {
        self.addresses.extend_from_slice(addresses);
        self
    }

    /// A and AAAA records for `name`.
    pub fn addresses(name: &str, addresses: &[IpAddr]) -> Self {
        Self {
            name: name.to_owned(),
            txt: Vec::new(),
            addresses: addresses.to_vec(),
            cname: None,
        }
    }

    /// Checks that the record names something and holds either TXT values and/or addresses, or
    /// a CNAME alone.
    pub(crate) fn validate(&self) -> Result<(), DnsRecordError> {
        let name = || self.name.clone();
        if self.name.trim_end_matches('.').trim().is_empty() {
            return Err(DnsRecordError::NoName);
        }
        if !self.addresses.is_empty() {
            return match &self.cname {
                Some(_) => Err(DnsRecordError::AddressesAndCname { name: name() }),
                None => Ok(()),
            };
        }
        match (self.txt.is_empty(), &self.cname) {
            (false, None) => Ok(()),
            (true, Some(c)) if !c.trim_end_matches('.').trim().is_empty() => Ok(()),
            (true, Some(_)) => Err(DnsRecordError::EmptyCname { name: name() }),
            (true, None) => Err(DnsRecordError::NoValue { name: name() }),
            (false, Some(_)) => Err(DnsRecordError::TxtAndCname { name: name() }),
        }
    }

    /// Replaces the records of the name with this one.
    pub(crate) fn apply(&self, zone: &crate::dns::Zone) {
        zone.remove(&self.name);
        match &self.cname {
            Some(target) => zone.set_cname(&self.name, target),
            None => {
                for value in &self.txt {
                    zone.add_txt(&self.name, value);
                }
                for address in &self.addresses {
                    zone.add_address(&self.name, *address);
                }
            }
        }
    }
}
