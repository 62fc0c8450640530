//! An RSA private key from its two primes, encoded as PKCS#1 `RSAPrivateKey` DER for aws-lc.
//!
//! The textbook derivation (RFC 8017, 3.2): `n = p·q`, `d = e⁻¹ mod (p−1)(q−1)` (Euler's
//! totient, as RustCrypto's `rsa` derives it), the CRT exponents `d mod (p−1)` and `d mod (q−1)`,
//! and the coefficient `q⁻¹ mod p`, all with `crypto-bigint`'s constant-time arithmetic. aws-lc
//! then parses the key as it parses any key it is given and refuses one whose parts disagree
//! (`RSA_check_key`: `n = p·q`, `d·e ≡ 1` modulo `p−1` and `q−1`, the CRT values), so a mistake
//! here cannot produce a key that is used.

use crypto_bigint::{BoxedUint, ConcatenatingMul, NonZero, Resize};
use pkcs1::der::Encode;
use pkcs1::{RsaPrivateKey, UintRef};
use zeroize::Zeroizing;

/// The public exponent of every key the connector makes.
pub(super) const PUBLIC_EXPONENT: u32 = 65_537;

/// Why two primes made no key.
#[derive(Debug, thiserror::Error)]
pub(super) enum Refused {
    #[error("e = {PUBLIC_EXPONENT} has no inverse modulo (p-1)(q-1)")]
    NoPrivateExponent,
    #[error("q has no inverse modulo p (p = q?)")]
    NoCoefficient,
    #[error("a prime is too small")]
    TooSmall,
    #[error("DER encoding failed: {0}")]
    Encoding(pkcs1::der::Error),
}

/// The PKCS#1 DER of the key made of primes `p` and `q` (distinct, of equal size) with
/// `e = 65537`. The DER is wiped when dropped.
pub(super) fn private_key_der(p: &BoxedUint, q: &BoxedUint) -> Result<Zeroizing<Vec<u8>>, Refused> {
    let precision = p.bits_precision().max(q.bits_precision());
    let (p, q) = (
        Zeroizing::new(p.clone().resize(precision)),
        Zeroizing::new(q.clone().resize(precision)),
    );
    let one = BoxedUint::one().resize(precision);
    let p1 = Zeroizing::new(p.wrapping_sub(&one));
    let q1 = Zeroizing::new(q.wrapping_sub(&one));
    let n = p.concatenating_mul(&*q);
    let totient = Zeroizing::new(p1.concatenating_mul(&*q1));
    let totient_nz = NonZero::new((*totient).clone())
        .into_option()
        .ok_or(Refused::TooSmall)?;
    let e = BoxedUint::from(PUBLIC_EXPONENT).resize(totient.bits_precision());
    let d = Zeroizing::new(
        e.invert_mod(&totient_nz)
            .into_option()
            .ok_or(Refused::NoPrivateExponent)?,
    );
    let p1_nz = NonZero::new((*p1).clone())
        .into_option()
        .ok_or(Refused::TooSmall)?;
    let q1_nz = NonZero::new((*q1).clone())
        .into_option()
        .ok_or(Refused::TooSmall)?;
    let dp = Zeroizing::new(d.rem(&p1_nz));
    let dq = Zeroizing::new(d.rem(&q1_nz));
    let p_nz = NonZero::new((*p).clone())
        .into_option()
        .ok_or(Refused::TooSmall)?;
    let coefficient = Zeroizing::new(q.invert_mod(&p_nz).into_option().ok_or(Refused::NoCoefficient)?);

    let bytes = |x: &BoxedUint| Zeroizing::new(x.to_be_bytes().into_vec());
    let (n_b, e_b) = (bytes(&n), bytes(&BoxedUint::from(PUBLIC_EXPONENT)));
    let (d_b, p_b, q_b) = (bytes(&d), bytes(&p), bytes(&q));
    let (dp_b, dq_b, c_b) = (bytes(&dp), bytes(&dq), bytes(&coefficient));
    let key = RsaPrivateKey {
        modulus: uint(&n_b)?,
        public_exponent: uint(&e_b)?,
        private_exponent: uint(&d_b)?,
        prime1: uint(&p_b)?,
        prime2: uint(&q_b)?,
        exponent1: uint(&dp_b)?,
        exponent2: uint(&dq_b)?,
        coefficient: uint(&c_b)?,
        other_prime_infos: None,
    };
    key.to_der().map(Zeroizing::new).map_err(Refused::Encoding)
}

fn uint(bytes: &[u8]) -> Result<UintRef<'_>, Refused> {
    UintRef::new(bytes).map_err(Refused::Encoding)
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lc_rs::rsa::KeyPair;
    use aws_lc_rs::signature::{self, KeyPair as _, UnparsedPublicKey};

    fn prime() -> BoxedUint {
        super::super::primes::random_prime(super::super::primes::PRIME_BITS, &|| false)
            .unwrap_or_else(|e| panic!("{e:?}"))
    }

    #[test]
    fn aws_lc_accepts_the_key_and_it_signs_what_its_public_half_verifies() {
        let der = private_key_der(&prime(), &prime()).unwrap();
        let pair = KeyPair::from_der(&der).unwrap();
        assert_eq!(pair.public_modulus_len(), 256);
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let mut signature = vec![0; pair.public_modulus_len()];
        pair.sign(&signature::RSA_PSS_SHA256, &rng, b"client hello", &mut signature)
            .unwrap();
        UnparsedPublicKey::new(&signature::RSA_PSS_2048_8192_SHA256, pair.public_key().as_ref())
            .verify(b"client hello", &signature)
            .unwrap();
    }

    #[test]
    fn a_wrong_part_is_refused_by_aws_lc() {
        let (p, q) = (prime(), prime());
        let good = private_key_der(&p, &q).unwrap();
        // The same key with its first prime swapped for another: n no longer equals p·q.
        let other = private_key_der(&prime(), &q).unwrap();
        let mut forged = good.to_vec();
        let (p_at, p_len) = (find(&good, &p), p.to_be_bytes().len());
        let other_p = pkcs1::RsaPrivateKey::try_from(other.as_slice()).unwrap().prime1;
        forged[p_at..p_at + p_len].copy_from_slice(&pad(other_p.as_bytes(), p_len));
        assert!(KeyPair::from_der(&good).is_ok());
        assert!(
            KeyPair::from_der(&forged).is_err(),
            "aws-lc took a key whose n is not p·q"
        );
    }

    #[test]
    fn primes_that_make_no_key_are_refused_not_panicked_on() {
        // p = q: q has no inverse modulo p.
        let p = prime();
        assert!(matches!(private_key_der(&p, &p), Err(Refused::NoCoefficient)));
        // p − 1 divisible by e: no private exponent.
        let mut useless = BoxedUint::from(PUBLIC_EXPONENT).resize(p.bits_precision());
        useless = useless.shl_vartime(1006).unwrap().wrapping_add(BoxedUint::one());
        assert!(matches!(
            private_key_der(&useless, &p),
            Err(Refused::NoPrivateExponent)
        ));
        assert!(matches!(
            private_key_der(&BoxedUint::one(), &p),
            Err(Refused::TooSmall)
        ));
    }

    /// Where `x`'s big-endian bytes start in `der`.
    fn find(der: &[u8], x: &BoxedUint) -> usize {
        let bytes = x.to_be_bytes();
        der.windows(bytes.len())
            .position(|w| w == &*bytes)
            .unwrap_or_else(|| panic!("prime not found in the DER"))
    }

    fn pad(bytes: &[u8], len: usize) -> Vec<u8> {
        let mut out = vec![0; len - bytes.len()];
        out.extend_from_slice(bytes);
        out
    }
}
