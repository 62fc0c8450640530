//! The connector's RSA-2048 key: made once per connector, off the critical path, shared by all
//! instances. The private key never leaves memory and never appears in `Debug`.

use std::fmt;
use std::sync::Arc;

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::{KeyPair, KeySize};
use aws_lc_rs::signature::KeyPair as _;
use futures_util::FutureExt;
use futures_util::future::{BoxFuture, Shared};
use rustls_pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::Error;

/// The connector's key pair.
pub(crate) struct ClientKey {
    pkcs8: Vec<u8>,
    public_key_pem: String,
}

impl ClientKey {
    /// Generates a fresh RSA-2048 key (e = 65537). Takes tens of milliseconds: run it blocking-safe.
    pub(crate) fn generate() -> Result<Self, Error> {
        let failed = |what: &str| Error::config(format!("could not {what} the connector's RSA key"));
        let pair = KeyPair::generate(KeySize::Rsa2048).map_err(|_| failed("generate"))?;
        let pkcs8 = pair.as_der().map_err(|_| failed("encode"))?;
        let spki = pair.public_key().as_der().map_err(|_| failed("encode"))?;
        let public_key_pem = pem::encode(&pem::Pem::new("PUBLIC KEY", spki.as_ref().to_vec()));
        Ok(Self {
            pkcs8: pkcs8.as_ref().to_vec(),
            public_key_pem,
        })
    }

    /// The public key as a PEM SubjectPublicKeyInfo, as `generateEphemeralCert` wants it.
    pub(crate) fn public_key_pem(&self) -> &str {
        &self.public_key_pem
    }

    /// The private key, for the TLS client config.
    pub(crate) fn private_key_der(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.pkcs8.clone()))
    }
}

impl fmt::Debug for ClientKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientKey")
            .field("algorithm", &"RSA-2048")
            .finish_non_exhaustive()
    }
}

/// The key, once generated; every clone awaits the same generation.
pub(crate) type SharedKey = Shared<BoxFuture<'static, Result<Arc<ClientKey>, Error>>>;

/// Starts generating the key on the blocking pool when first polled.
pub(crate) fn shared_key() -> SharedKey {
    async {
        tokio::task::spawn_blocking(ClientKey::generate)
            .await
            .map_err(|e| Error::config(format!("RSA key generation task failed: {e}")))?
            .map(Arc::new)
    }
    .boxed()
    .shared()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_is_rsa_2048_and_debug_hides_it() {
        let key = ClientKey::generate().unwrap();
        assert!(key.public_key_pem().starts_with("-----BEGIN PUBLIC KEY-----"));
        let spki = pem::parse(key.public_key_pem()).unwrap();
        // An RSA-2048 SubjectPublicKeyInfo is 294 bytes.
        assert_eq!(spki.contents().len(), 294);
        assert_eq!(format!("{key:?}"), "ClientKey { algorithm: \"RSA-2048\", .. }");
    }
}
