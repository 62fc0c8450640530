//! The connector's RSA key: one per process unless the application gives its own, generated off
//! the critical path and shared by all instances. The private key never leaves memory and never
//! appears in `Debug`.
//!
//! Generation starts when the first connector is built, on threads of its own, so it overlaps
//! everything else a cold start does; it is raced on 2 cores, or on all cores but one with more
//! (the first two primes found make the key; see [`race`]). Its primes come from the operating
//! system's random source ([`primes`]); aws-lc checks the key ([`pkcs1`]) and signs with it.
//! `docs/performance.md` has the measurements behind this.

mod pkcs1;
mod primes;
mod process;
mod race;

use std::fmt;
use std::sync::Arc;

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::error::KeyRejected;
use aws_lc_rs::rsa::KeyPair;
use aws_lc_rs::signature::KeyPair as _;
use crypto_bigint::BoxedUint;
use futures_util::FutureExt;
use futures_util::future::{BoxFuture, Shared};
use rustls_pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

pub(crate) use process::process_key;

use crate::Error;

/// The smallest RSA modulus accepted for a client key, in bits (what Cloud SQL asks for).
pub const MIN_RSA_KEY_BITS: usize = 2048;

/// The connector's key pair.
pub(crate) struct ClientKey {
    pkcs8: Vec<u8>,
    public_key_pem: String,
}

impl ClientKey {
    /// The RSA key (e = 65537) of two primes from [`primes::random_prime`], derived and
    /// encoded as PKCS#1 by [`pkcs1`]; aws-lc then parses it as it would any key it is given,
    /// checking that its parts agree (`RSA_check_key`), and is what signs with it.
    fn from_primes(p: &BoxedUint, q: &BoxedUint) -> Result<Self, Error> {
        let failed =
            |what: String| Error::config(format!("could not generate the connector's RSA key: {what}"));
        let der =
            pkcs1::private_key_der(p, q).map_err(|e| failed(format!("its primes were refused ({e})")))?;
        let pair = KeyPair::from_der(&der).map_err(|e| failed(format!("aws-lc refused it ({e})")))?;
        if pair.public_modulus_len() * 8 != MIN_RSA_KEY_BITS {
            return Err(failed("its modulus is not 2048 bits".to_owned()));
        }
        Self::from_pair(&pair)
    }

    fn from_pair(pair: &KeyPair) -> Result<Self, Error> {
        let failed = || Error::config("could not encode the connector's RSA key");
        let pkcs8 = pair.as_der().map_err(|_| failed())?;
        let spki = pair.public_key().as_der().map_err(|_| failed())?;
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
            .field("algorithm", &"RSA")
            .finish_non_exhaustive()
    }
}

/// An RSA private key for the connector's client certificates, for
/// [`ConnectorBuilder::rsa_key`](crate::ConnectorBuilder::rsa_key): generate one ahead of time,
/// or load one you keep. Cheap to clone (clones share the key). Its `Debug` shows no key material.
///
/// Without one, connectors share a key generated once per process when the first of them is
/// built, so most applications never need this.
///
/// ```
/// use cloudsql_core::{Connector, RsaKey};
///
/// # fn run() -> Result<(), cloudsql_core::Error> {
/// // At start-up, before the configuration is even read, say:
/// let key = RsaKey::generate()?;
/// let connector = Connector::builder().rsa_key(key).build()?;
/// # let _ = connector; Ok(()) }
/// ```
#[derive(Clone)]
pub struct RsaKey {
    inner: Arc<ClientKey>,
}

impl RsaKey {
    /// Generates a fresh RSA-2048 key (e = 65537) from two primes drawn from the operating
    /// system's random source and tested by Baillie-PSW and FIPS 186-5's Miller-Rabin rounds. It
    /// races a prime search on each of 2 cores, or on each core but one with more (at most four;
    /// `CLOUDSQL_RSA_KEYGEN_THREADS` sets the number, up to the cores); the first two primes make
    /// the key and the other searches stop. Blocks for tens of milliseconds: in async code, call
    /// it from [`tokio::task::spawn_blocking`].
    ///
    /// The first race in a process also seeds aws-lc's random generator (which TLS needs) on one
    /// of its threads before that thread joins; the key itself never waits for that seed
    /// (`docs/performance.md`, "Seeding aws-lc's random generator").
    ///
    /// ```
    /// let key = cloudsql_core::RsaKey::generate()?;
    /// assert!(key.public_key_pem().starts_with("-----BEGIN PUBLIC KEY-----"));
    /// # Ok::<(), cloudsql_core::Error>(())
    /// ```
    pub fn generate() -> Result<Self, Error> {
        race::generate_blocking(race::width()).map(Self::from)
    }

    /// Loads an unencrypted PKCS#8 (`PrivateKeyInfo`) DER private key. It must be RSA with a
    /// modulus of at least [`MIN_RSA_KEY_BITS`] bits (at most 8192); anything else is refused
    /// with an [`Error::Config`] that says why.
    ///
    /// ```no_run
    /// let der = std::fs::read("client-key.pk8")?;
    /// let key = cloudsql_core::RsaKey::from_pkcs8_der(&der)?;
    /// # let _ = key; Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn from_pkcs8_der(der: &[u8]) -> Result<Self, Error> {
        let pair = KeyPair::from_pkcs8(der).map_err(|e| rejected(e, "PKCS#8"))?;
        Ok(Self::from(ClientKey::from_pair(&pair)?))
    }

    /// Loads a PEM private key: PKCS#8 (`-----BEGIN PRIVATE KEY-----`) or PKCS#1
    /// (`-----BEGIN RSA PRIVATE KEY-----`), unencrypted. The same checks as
    /// [`from_pkcs8_der`](Self::from_pkcs8_der) apply.
    ///
    /// ```no_run
    /// let pem = std::fs::read_to_string("client-key.pem")?;
    /// let key = cloudsql_core::RsaKey::from_pem(&pem)?;
    /// # let _ = key; Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn from_pem(pem: &str) -> Result<Self, Error> {
        let block = pem::parse(pem).map_err(|_| {
            Error::config("the RSA key is not PEM: expected a `-----BEGIN PRIVATE KEY-----` block")
        })?;
        match block.tag() {
            "PRIVATE KEY" => Self::from_pkcs8_der(block.contents()),
            "RSA PRIVATE KEY" => {
                let pair = KeyPair::from_der(block.contents()).map_err(|e| rejected(e, "PKCS#1"))?;
                Ok(Self::from(ClientKey::from_pair(&pair)?))
            }
            "ENCRYPTED PRIVATE KEY" => Err(Error::config(
                "the RSA key is encrypted; decrypt it first (for example `openssl pkcs8 -topk8 -nocrypt`)",
            )),
            other => Err(Error::config(format!(
                "the PEM block is `{}`, not a private key; expected `PRIVATE KEY` (PKCS#8) or \
                 `RSA PRIVATE KEY` (PKCS#1)",
                crate::excerpt::excerpt(other)
            ))),
        }
    }

    /// The public key as a PEM `SubjectPublicKeyInfo` (`-----BEGIN PUBLIC KEY-----`): what the
    /// connector sends to `generateEphemeralCert` and what its client certificates certify.
    pub fn public_key_pem(&self) -> &str {
        self.inner.public_key_pem()
    }
}

impl From<ClientKey> for RsaKey {
    fn from(key: ClientKey) -> Self {
        Self { inner: Arc::new(key) }
    }
}

impl fmt::Debug for RsaKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RsaKey").finish_non_exhaustive()
    }
}

/// A clear error for a key aws-lc refused.
fn rejected(error: KeyRejected, format: &str) -> Error {
    let why = match error.description_() {
        "TooSmall" => format!(
            "its modulus is smaller than {MIN_RSA_KEY_BITS} bits; Cloud SQL client keys must be RSA \
             of at least {MIN_RSA_KEY_BITS} bits"
        ),
        "TooLarge" => "its modulus is larger than 8192 bits".to_owned(),
        "WrongAlgorithm" => "it is not an RSA key (Cloud SQL client keys must be RSA)".to_owned(),
        _ => format!("it is not a valid unencrypted {format} RSA private key"),
    };
    Error::config(format!("the RSA key is refused: {why}"))
}

/// The key, once generated; every clone awaits the same generation.
pub(crate) type SharedKey = Shared<BoxFuture<'static, Result<Arc<ClientKey>, Error>>>;

/// A key the application gave: ready at once.
pub(crate) fn given_key(key: &RsaKey) -> SharedKey {
    futures_util::future::ready(Ok(key.inner.clone()))
        .boxed()
        .shared()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_is_rsa_2048_and_debug_hides_it() {
        let key = race::generate_blocking(1).unwrap();
        assert!(key.public_key_pem().starts_with("-----BEGIN PUBLIC KEY-----"));
        let spki = pem::parse(key.public_key_pem()).unwrap();
        // An RSA-2048 SubjectPublicKeyInfo is 294 bytes.
        assert_eq!(spki.contents().len(), 294);
        assert_eq!(format!("{key:?}"), "ClientKey { algorithm: \"RSA\", .. }");
        assert_eq!(format!("{:?}", RsaKey::from(key)), "RsaKey { .. }");
    }

    #[test]
    fn a_loaded_key_keeps_its_public_half() {
        let pair = KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa3072).unwrap();
        let der = pair.as_der().unwrap();
        let key = RsaKey::from_pkcs8_der(der.as_ref()).unwrap();
        let expected = pair.public_key().as_der().unwrap();
        assert_eq!(
            pem::parse(key.public_key_pem()).unwrap().contents(),
            expected.as_ref()
        );
        let pem = pem::encode(&pem::Pem::new("PRIVATE KEY", der.as_ref().to_vec()));
        let from_pem = RsaKey::from_pem(&pem).unwrap();
        assert_eq!(from_pem.public_key_pem(), key.public_key_pem());
    }

    /// A throwaway RSA-1024 key, made for this test only: too small to be accepted.
    const WEAK_RSA_1024: &str = "\
-----BEGIN PRIVATE KEY-----
MIICdgIBADANBgkqhkiG9w0BAQEFAASCAmAwggJcAgEAAoGBALV22DuTdm1s8tKr
gLrUV0kxzZnFbBlz0ZpumSgjsRJW2xbKoq1OzB42VcxVJ5s1Qonla48aQbQ/SZFw
5Lso05H0S9wbBMAux3IWAuiy9Fi6dxyACtgqtXA8Ctr2HwWVFFvEElEPNXeXGbBw
bop1ssXKpJf89uNA+EsrBDPKviJDAgMBAAECgYA7DgIw4TyZP+uGQ+oQ4ynE2EBg
2q7jWZ3M9FFDjtoBbeK++BMY85vZ+TTS2qOZDywoVFE8sP7Q+genHWZSwmaXfM9b
u7a6LEEe8OZQU4JeMZ3lBGyfEI27fNIdgbGm2u0AQB4/x6NmXW60w+1fKba3bDbJ
vg+hdELh1AzIDQpmgQJBAODwY129yg1KFNKu83ZrxatWXkP6GiJxr18khsTLiKEC
c8zaCaJLFx5VOfteovq3cctnmd3LxewnSw4mudVaQ90CQQDOhZ6hyOhEf7n/eNED
doBh8pJre0l+OHhViN6dEz3PiNd78Wodj8EP2S1yijOjbu1ogIWmQflfIow5fzpF
1CyfAkEAoksvFnKZ9s6tiXkrNhT6MO4G43rvIkzuIHJlPlYvxSPU00e5zbvp+Tu6
svAMHWMAGqcsMAgXTJTpJVOxnwsajQJAPODotTpbNa4NL0D3JDUvfTAbd3GdZYbR
+izhqp38b4wgMVol9Nbmi3xyyDvzIu9VLqQMQcla8G9ntJ9Ll0AHcwJASbSaSpnf
wAPn2GXnrvkNN2j6e9guF75gQAySeMGLa1wr+va2ATMMxIdbjHYZx03UNY+O97DN
p+UJNT8pLUAANQ==
-----END PRIVATE KEY-----
";

    #[test]
    fn keys_that_are_not_rsa_2048_or_more_are_refused_clearly() {
        let message = |result: Result<RsaKey, Error>| {
            let err = result.unwrap_err();
            assert_eq!(err.kind(), crate::ErrorKind::Config);
            err.to_string()
        };
        let ec = aws_lc_rs::signature::EcdsaKeyPair::generate_pkcs8(
            &aws_lc_rs::signature::ECDSA_P256_SHA256_ASN1_SIGNING,
            &aws_lc_rs::rand::SystemRandom::new(),
        )
        .unwrap();
        let text = message(RsaKey::from_pkcs8_der(ec.as_ref()));
        assert!(text.contains("not an RSA key"), "{text}");
        let text = message(RsaKey::from_pkcs8_der(b"not a key"));
        assert!(text.contains("not a valid unencrypted PKCS#8"), "{text}");
        let text = message(RsaKey::from_pem("hello"));
        assert!(text.contains("not PEM"), "{text}");
        let cert = pem::encode(&pem::Pem::new("CERTIFICATE", vec![1, 2, 3]));
        let text = message(RsaKey::from_pem(&cert));
        assert!(text.contains("`CERTIFICATE`, not a private key"), "{text}");
        let text = message(RsaKey::from_pem(WEAK_RSA_1024));
        assert!(text.contains("smaller than 2048 bits"), "{text}");
        let weak = pem::parse(WEAK_RSA_1024).unwrap();
        let text = message(RsaKey::from_pkcs8_der(weak.contents()));
        assert!(text.contains("smaller than 2048 bits"), "{text}");
        let encrypted = pem::encode(&pem::Pem::new("ENCRYPTED PRIVATE KEY", vec![1, 2, 3]));
        assert!(message(RsaKey::from_pem(&encrypted)).contains("encrypted"));
    }
}
