//! What one refresh yields, as data: the instance's validated settings, the TLS client config
//! holding the client certificate, the server name to hand rustls, and when it all expires.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rustls::ClientConfig;
use rustls_pki_types::ServerName;

use crate::client_cert::ClientCert;
use crate::instance_settings::InstanceSettings;
use crate::keys::ClientKey;
use crate::tls;
use crate::{Engine, Error, InstanceConnectionName, IpType};

/// Connection data for one instance, valid until `expires_at`.
pub(crate) struct ConnInfo {
    pub(crate) name: InstanceConnectionName,
    pub(crate) database_version: String,
    pub(crate) engine: Option<Engine>,
    addresses: Vec<(IpType, String)>,
    pub(crate) expires_at: SystemTime,
    pub(crate) tls: Arc<ClientConfig>,
    pub(crate) server_name: ServerName<'static>,
    /// The instance accepts a metadata exchange (`CLIENT_PROTOCOL_TYPE`).
    pub(crate) mdx_supported: bool,
}

impl fmt::Debug for ConnInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnInfo")
            .field("name", &self.name)
            .field("database_version", &self.database_version)
            .field("addresses", &self.addresses)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

impl ConnInfo {
    /// Fails with [`Error::IamAuthnNotSupported`] when IAM authn is on for an engine without it.
    pub(crate) fn check_iam_authn(&self, iam_authn: bool) -> Result<(), Error> {
        match self.engine.filter(|e| iam_authn && !e.supports_iam_authn()) {
            Some(engine) => Err(Error::IamAuthnNotSupported {
                instance: self.name.to_string(),
                engine,
            }),
            None => Ok(()),
        }
    }

    /// Connection data from the validated settings and client certificate: valid until the
    /// certificate or the IAM login token expires, whichever is first; refused when that is
    /// already past.
    pub(crate) fn new(
        name: &InstanceConnectionName,
        settings: InstanceSettings,
        cert: ClientCert,
        key: &ClientKey,
        login_token_expiry: Option<SystemTime>,
        now: SystemTime,
    ) -> Result<Self, Error> {
        let instance = name.to_string();
        let expires_at = match login_token_expiry {
            Some(token_expiry) => cert.not_after.min(token_expiry),
            None => cert.not_after,
        };
        if expires_at <= now {
            return Err(Error::InvalidCertificate {
                instance,
                detail: format!("it expired at {} before it could be used", humantime(expires_at)),
            });
        }
        let server_name = settings.verifier.server_name();
        let tls = tls::client_config(&instance, settings.verifier, cert.der, key)?;
        Ok(Self {
            name: name.clone(),
            database_version: settings.database_version,
            engine: settings.engine,
            addresses: settings.addresses,
            expires_at,
            tls,
            server_name,
            mdx_supported: settings.mdx_supported,
        })
    }

    /// The address to dial for `ip_type`.
    pub(crate) fn address(&self, ip_type: IpType) -> Result<&str, Error> {
        self.addresses
            .iter()
            .find(|(t, _)| *t == ip_type)
            .map(|(_, addr)| addr.as_str())
            .ok_or_else(|| {
                let available: Vec<String> = self.addresses.iter().map(|(t, _)| t.to_string()).collect();
                Error::NoIpAddress {
                    instance: self.name.to_string(),
                    wanted: ip_type,
                    available: if available.is_empty() {
                        "no addresses".to_owned()
                    } else {
                        available.join(", ")
                    },
                }
            })
    }

    /// Fails with [`Error::IncompatibleDriver`] unless the instance runs the driver's engine.
    pub(crate) fn check_driver(&self, driver: Option<Engine>) -> Result<(), Error> {
        match driver {
            Some(driver) if self.engine != Some(driver) => Err(Error::IncompatibleDriver {
                instance: self.name.to_string(),
                driver,
                database_version: self.database_version.clone(),
            }),
            _ => Ok(()),
        }
    }

    /// Time left before the client certificate expires.
    pub(crate) fn remaining(&self, now: SystemTime) -> Duration {
        self.expires_at.duration_since(now).unwrap_or_default()
    }
}

/// RFC 3339 for messages.
fn humantime(t: SystemTime) -> String {
    time::OffsetDateTime::from(t)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| format!("{t:?}"))
}
