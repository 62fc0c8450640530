//! The floor the benches measure the connector against: what a hand-written client with a
//! certificate issued beforehand must do at least — a TLS 1.3 mTLS connection to the instance's
//! proxy, verified against the instance's CA, and nothing else. For drivers that cannot take a
//! stream (sqlx, mysql_async), [`FloorRelay`] is the least a hand-written client could do for
//! them: a Unix socket that relays each accepted connection over such a TLS connection.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::{KeyPair, KeySize};
use aws_lc_rs::signature::KeyPair as _;
use cloudsql_emulator::{Emulator, Instance};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use tokio::net::{TcpStream, UnixListener};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// A TLS config holding a certificate fetched once from the emulator's Admin API.
pub(crate) struct Floor {
    tls: TlsConnector,
    addr: (String, u16),
    server_name: ServerName<'static>,
}

/// What a floor needs to know of an instance, in plain values, so that a child process can
/// build a floor for an emulator running in its parent.
#[allow(dead_code)] // Not every bench that includes this module hands a floor to a child.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(crate) struct FloorTarget {
    pub(crate) admin_api_url: String,
    pub(crate) token: String,
    pub(crate) connection_name: String,
    pub(crate) public_ip: String,
    pub(crate) dns_name: String,
}

impl FloorTarget {
    /// `instance` of `emulator`, with an Admin API token valid for an hour.
    pub(crate) fn of(emulator: &Emulator, instance: &Instance) -> Self {
        Self {
            admin_api_url: emulator.admin_api_url(),
            token: emulator.issue_token(
                "bench@bench-project.iam.gserviceaccount.com",
                &["https://www.googleapis.com/auth/sqlservice.admin"],
                Duration::from_secs(3600),
            ),
            connection_name: instance.connection_name().to_owned(),
            public_ip: instance.public_ip().map(|ip| ip.to_string()).unwrap_or_default(),
            dns_name: instance.dns_name().unwrap_or_default().to_owned(),
        }
    }
}

impl Floor {
    /// Fetches the instance's settings and a client certificate over a fresh key, by hand.
    #[allow(dead_code)] // The drivers bench builds its floors with `at`.
    pub(crate) async fn new(emulator: &Emulator, instance: &Instance) -> anyhow::Result<Self> {
        Self::at(&FloorTarget::of(emulator, instance)).await
    }

    /// [`Floor::new`] from plain values.
    pub(crate) async fn at(target: &FloorTarget) -> anyhow::Result<Self> {
        let token = &target.token;
        let key = KeyPair::generate(KeySize::Rsa2048).map_err(|_| anyhow::anyhow!("keygen"))?;
        let spki = key.public_key().as_der().map_err(|_| anyhow::anyhow!("spki"))?;
        let public_pem = pem::encode(&pem::Pem::new("PUBLIC KEY", spki.as_ref().to_vec()));
        let (project, instance_id) = {
            let parts: Vec<&str> = target.connection_name.split(':').collect();
            anyhow::ensure!(
                parts.len() == 3,
                "not a connection name: {}",
                target.connection_name
            );
            (parts[0].to_owned(), parts[2].to_owned())
        };
        let http = reqwest::Client::new();
        let base = format!(
            "{}/sql/v1beta4/projects/{project}/instances/{instance_id}",
            target.admin_api_url
        );
        let settings: serde_json::Value = http
            .get(format!("{base}/connectSettings"))
            .bearer_auth(token)
            .send()
            .await?
            .json()
            .await?;
        let cert: serde_json::Value = http
            .post(format!("{base}:generateEphemeralCert"))
            .bearer_auth(token)
            .json(&serde_json::json!({"public_key": public_pem}))
            .send()
            .await?
            .json()
            .await?;
        let mut roots = rustls::RootCertStore::empty();
        for ca in CertificateDer::pem_slice_iter(
            settings["serverCaCert"]["cert"]
                .as_str()
                .unwrap_or_default()
                .as_bytes(),
        ) {
            roots.add(ca?)?;
        }
        let client_cert = CertificateDer::from_pem_slice(
            cert["ephemeralCert"]["cert"]
                .as_str()
                .unwrap_or_default()
                .as_bytes(),
        )?;
        let pkcs8 = key.as_der().map_err(|_| anyhow::anyhow!("pkcs8"))?;
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_root_certificates(roots)
            .with_client_auth_cert(
                vec![client_cert],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(pkcs8.as_ref().to_vec())),
            )?;
        Ok(Self {
            tls: TlsConnector::from(Arc::new(config)),
            addr: (target.public_ip.clone(), 3307),
            server_name: ServerName::try_from(target.dns_name.clone())?,
        })
    }

    /// A TLS 1.3 connection to the instance's proxy.
    pub(crate) async fn connect(&self) -> anyhow::Result<TlsStream<TcpStream>> {
        let tcp = TcpStream::connect((self.addr.0.as_str(), self.addr.1)).await?;
        tcp.set_nodelay(true)?;
        Ok(self.tls.connect(self.server_name.clone(), tcp).await?)
    }
}

/// A Unix socket at `dir/name` relaying every connection over a [`Floor`] TLS connection.
#[allow(dead_code)] // Not every bench that includes this module relays.
pub(crate) struct FloorRelay {
    dir: PathBuf,
    path: PathBuf,
    task: tokio::task::JoinHandle<()>,
}

#[allow(dead_code)]
impl FloorRelay {
    /// Listens at `dir/name` (creating `dir`).
    pub(crate) fn start(floor: Arc<Floor>, dir: &Path, name: &str) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join(name);
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path)?;
        let task = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let floor = floor.clone();
                tokio::spawn(async move {
                    if let Ok(mut server) = floor.connect().await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
            }
        });
        Ok(Self {
            dir: dir.to_owned(),
            path,
            task,
        })
    }

    /// The socket's directory.
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// The socket's path.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for FloorRelay {
    fn drop(&mut self) {
        self.task.abort();
        let _ = std::fs::remove_file(&self.path);
    }
}
