//! RSA signatures with SHA-256: RSASSA-PSS (MGF1 with SHA-256, a 32-byte salt) and
//! RSASSA-PKCS1-v1_5, as RFC 8017 sections 8.1, 8.2, 9.1 and 9.2 define them, for the
//! client assertion; and RS256 verification, for Entra ID caller tokens.
//!
//! Why not the rsa crate's own signers and verifier: they work only on its `RsaPrivateKey`
//! and `RsaPublicKey`, whose construction always checks and precomputes the CRT values
//! with modular inverses over signed big integers, and whose blinding needs another
//! inverse: about 14 KiB of the component (measured in the wasm32-wasip2 release build)
//! that nothing else needs; and they compute with num-bigint-dig's `modpow`, which made a
//! verification cost 2.8 ms in the component (see [`crate::crypto::montgomery`]). What is
//! left is small and standard: the two encodings (a few lines of RFC 8017 each) and
//! `x^y mod n` ([`montgomery::modpow`]). The rsa crate's big integers still check a key
//! (`n = p·q`) and blind the exponent. Every signature is checked before it leaves (`s^e
//! mod n` must give back the encoded message, as rsa does), and the unit tests verify both
//! kinds with another implementation (rsa 0.10), and its RS256 signatures with this one.
//!
//! Timing (RUSTSEC-2023-0071: the rsa crate's big-integer arithmetic is not constant-time,
//! and neither is [`montgomery::modpow`]). A timing attack on a signing key needs many
//! signatures whose inputs the attacker knows and whose duration it can measure. Here the
//! input is an assertion no one sees before it reaches Entra over TLS (it holds a random
//! `jti` and the PSS salt is random), the exponent is blinded afresh for every signature
//! (`d + k·φ(n)` with a random 64-bit `k`: the same result, other bits), and a signature is
//! made only on a Graph token-cache miss, about once an hour per deployment, inside the
//! component's own short-lived instance.

use rsa::BigUint;
use sha2::{Digest, Sha256};

use crate::crypto::montgomery;
use zeroize::Zeroize;

/// Which RSA signature scheme (JWS `PS256` or `RS256`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Pss,
    Pkcs1v15,
}

/// `DigestInfo` of SHA-256 before the hash (RFC 8017 section 9.2, note 1).
const SHA256_DIGEST_INFO: &[u8] = &[
    0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05, 0x00, 0x04, 0x20,
];
/// SHA-256's output length, and the PSS salt length Entra expects (equal to it).
const HASH_LEN: usize = 32;

/// A private key, ready to sign. The private values are zeroed when it is dropped.
pub struct SigningKey {
    /// The modulus and public exponent, unsigned big-endian without leading zeros.
    n: Vec<u8>,
    e: Vec<u8>,
    d: BigUint,
    /// `(p-1)(q-1)`, for exponent blinding.
    phi: BigUint,
}

impl Drop for SigningKey {
    fn drop(&mut self) {
        self.d.zeroize();
        self.phi.zeroize();
    }
}

impl SigningKey {
    /// The key of these integers (unsigned big-endian), if they make one: `n = p·q`, and
    /// `d` undoes `e` (checked on a sample value).
    pub fn new(n: &[u8], e: &[u8], d: &[u8], p: &[u8], q: &[u8]) -> Option<SigningKey> {
        let one = BigUint::from(1u8);
        let (n, e) = (unpadded(n).to_vec(), unpadded(e).to_vec());
        let (mut p, mut q) = (BigUint::from_bytes_be(p), BigUint::from_bytes_be(q));
        let consistent = p > one && q > one && BigUint::from_bytes_be(&e) > one && &p * &q == BigUint::from_bytes_be(&n) && {
            let sample = padded(&[0x5a, 0x5a], n.len());
            let mut signed = montgomery::modpow(&sample, d, &n);
            let undone = signed.as_deref().and_then(|signed| montgomery::modpow(signed, &e, &n));
            signed.zeroize();
            undone == Some(sample)
        };
        let phi = (&p - &one) * (&q - &one);
        p.zeroize();
        q.zeroize();
        consistent.then(|| SigningKey { n, e, d: BigUint::from_bytes_be(d), phi })
    }

    /// The modulus length in bits.
    pub fn bits(&self) -> usize {
        self.n.len() * 8 - self.n.first().map_or(8, |b| b.leading_zeros() as usize)
    }

    /// Whether `n` and `e` (unsigned big-endian) are this key's public half.
    pub fn has_public_key(&self, n: &[u8], e: &[u8]) -> bool {
        self.n == unpadded(n) && self.e == unpadded(e)
    }

    /// The signature of `message` (`k` bytes, `k` the modulus length). `random` gives the
    /// PSS salt and the exponent blinding.
    pub fn sign(&self, scheme: Scheme, message: &[u8], random: &mut dyn FnMut(&mut [u8])) -> Option<Vec<u8>> {
        let hash = Sha256::digest(message);
        let k = self.n.len();
        let encoded = match scheme {
            Scheme::Pss => {
                let mut salt = [0u8; HASH_LEN];
                random(&mut salt);
                padded(&pss_encode(&hash, self.bits() - 1, &salt)?, k)
            }
            Scheme::Pkcs1v15 => pkcs1v15_encode(&hash, k)?,
        };
        let mut blinding = [0u8; 8];
        random(&mut blinding);
        let mut exponent = &self.d + BigUint::from(u64::from_le_bytes(blinding)) * &self.phi;
        let mut exponent_bytes = exponent.to_bytes_be();
        exponent.zeroize();
        let signature = montgomery::modpow(&encoded, &exponent_bytes, &self.n);
        exponent_bytes.zeroize();
        // A wrong result (a fault, a key that is not what it claims) must not leave.
        let signature = signature?;
        (montgomery::modpow(&signature, &self.e, &self.n)? == encoded).then_some(signature)
    }
}

/// Whether `signature` is an RSASSA-PKCS1-v1_5 signature with SHA-256 (JWS `RS256`) of
/// `message` by the public key `n`, `e` (unsigned big-endian): `s^e mod n` must be exactly
/// the encoding of the message's hash (RFC 8017 section 8.2.2, the encoding compared, as it
/// recommends). The same arithmetic and encoding as signing. The exponent must be odd, at
/// least 3 and at most 32 bits (a JWKS's is 65537), so a hostile key cannot make the
/// exponentiation slow; `s` must be below `n`.
pub fn verify_pkcs1v15(n: &[u8], e: &[u8], message: &[u8], signature: &[u8]) -> bool {
    let (n, e) = (unpadded(n), unpadded(e));
    let exponent = e.iter().fold(0u64, |value, &byte| value << 8 | u64::from(byte));
    let sane_exponent = e.len() <= 4 && exponent > 2 && exponent % 2 == 1;
    if !sane_exponent || signature.len() != n.len() {
        return false;
    }
    let Some(expected) = pkcs1v15_encode(&Sha256::digest(message), n.len()) else {
        return false;
    };
    montgomery::modpow(signature, e, n).is_some_and(|m| m == expected)
}

/// `bytes` without leading zero bytes.
fn unpadded(bytes: &[u8]) -> &[u8] {
    &bytes[bytes.iter().take_while(|&&b| b == 0).count()..]
}

/// `bytes` with zero bytes in front to make `len` (as they are when shorter).
fn padded(bytes: &[u8], len: usize) -> Vec<u8> {
    let mut out = vec![0u8; len.saturating_sub(bytes.len())];
    out.extend_from_slice(bytes);
    out
}

/// EMSA-PSS-ENCODE (RFC 8017 section 9.1.1) of the hash `m_hash`, for `em_bits` bits.
fn pss_encode(m_hash: &[u8], em_bits: usize, salt: &[u8; HASH_LEN]) -> Option<Vec<u8>> {
    let em_len = em_bits.div_ceil(8);
    if em_len < 2 * HASH_LEN + 2 {
        return None;
    }
    // H = Hash(0x00 * 8 || mHash || salt)
    let h = Sha256::new().chain_update([0u8; 8]).chain_update(m_hash).chain_update(salt).finalize();
    // DB = PS (zeros) || 0x01 || salt, masked with MGF1(H)
    let db_len = em_len - HASH_LEN - 1;
    let mut em = vec![0u8; em_len];
    em[db_len - HASH_LEN - 1] = 0x01;
    em[db_len - HASH_LEN..db_len].copy_from_slice(salt);
    for (counter, chunk) in em[..db_len].chunks_mut(HASH_LEN).enumerate() {
        let mask = Sha256::new().chain_update(h).chain_update((counter as u32).to_be_bytes()).finalize();
        chunk.iter_mut().zip(mask).for_each(|(byte, mask)| *byte ^= mask);
    }
    // The leftmost 8·emLen − emBits bits are zero.
    em[0] &= 0xff >> (8 * em_len - em_bits);
    em[db_len..db_len + HASH_LEN].copy_from_slice(&h);
    em[em_len - 1] = 0xbc;
    Some(em)
}

/// EMSA-PKCS1-v1_5-ENCODE (RFC 8017 section 9.2) of the SHA-256 hash `hash`, `k` bytes.
fn pkcs1v15_encode(hash: &[u8], k: usize) -> Option<Vec<u8>> {
    let t_len = SHA256_DIGEST_INFO.len() + hash.len();
    if k < t_len + 11 {
        return None;
    }
    // 0x00 || 0x01 || PS (0xff) || 0x00 || DigestInfo || hash
    let mut em = vec![0xffu8; k];
    em[0] = 0x00;
    em[1] = 0x01;
    em[k - t_len - 1] = 0x00;
    em[k - t_len..k - hash.len()].copy_from_slice(SHA256_DIGEST_INFO);
    em[k - hash.len()..].copy_from_slice(hash);
    Some(em)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_keys;
    use rsa_test::traits::{PrivateKeyParts, PublicKeyParts};

    fn be(x: &rsa_test::BoxedUint) -> Vec<u8> {
        x.to_be_bytes().to_vec()
    }

    fn key() -> SigningKey {
        let private = test_keys::signer();
        let (p, q) = (be(&private.primes()[0]), be(&private.primes()[1]));
        SigningKey::new(&be(private.n()), &be(private.e()), &be(private.d()), &p, &q).expect("a generated key is consistent")
    }

    fn os_random(buffer: &mut [u8]) {
        getrandom::fill(buffer).unwrap();
    }

    #[test]
    fn both_schemes_verify_with_another_implementation() {
        let key = key();
        let public = test_keys::signer().to_public_key();
        for (i, message) in [&b""[..], b"eyJhbGciOiJQUzI1NiJ9.eyJzdWIiOiJ4In0", &[0xffu8; 1000]].into_iter().enumerate() {
            let pss = key.sign(Scheme::Pss, message, &mut os_random).unwrap();
            assert_eq!(pss.len(), 256);
            assert!(public.pss_verify::<sha2_test::Sha256>(message, &pss).is_ok(), "PSS {i}");
            let pkcs1 = key.sign(Scheme::Pkcs1v15, message, &mut os_random).unwrap();
            assert!(public.pkcs1v15_verify::<sha2_test::Sha256>(message, &pkcs1).is_ok(), "PKCS#1 {i}");
            // PKCS#1 v1.5 is deterministic: the blinding changes the exponent, not the result.
            assert_eq!(pkcs1, key.sign(Scheme::Pkcs1v15, message, &mut os_random).unwrap());
            // PSS is salted.
            assert_ne!(pss, key.sign(Scheme::Pss, message, &mut os_random).unwrap());
            let other = test_keys::other().to_public_key();
            assert!(other.pss_verify::<sha2_test::Sha256>(message, &pss).is_err());
            assert!(public.pss_verify::<sha2_test::Sha256>(b"another message", &pss).is_err());
        }
    }

    #[test]
    fn the_pss_salt_is_the_hash_length() {
        // With the salt known, the encoding can be checked against rsa 0.10's verifier
        // asking for exactly a 32-byte salt (its default for SHA-256 is the same).
        let key = key();
        let public = test_keys::signer().to_public_key();
        let verifying = rsa_test::pss::VerifyingKey::<sha2_test::Sha256>::new_with_salt_len(public, 32);
        let signature = key.sign(Scheme::Pss, b"m", &mut os_random).unwrap();
        use rsa_test::signature::Verifier;
        let signature = rsa_test::pss::Signature::try_from(&signature[..]).unwrap();
        assert!(verifying.verify(b"m", &signature).is_ok());
    }

    #[test]
    fn inconsistent_keys_are_refused() {
        let private = test_keys::signer();
        let other = test_keys::other();
        let bytes = be;
        let (n, e, d) = (bytes(private.n()), bytes(private.e()), bytes(private.d()));
        let (p, q) = (bytes(&private.primes()[0]), bytes(&private.primes()[1]));
        assert!(SigningKey::new(&n, &e, &d, &p, &q).is_some());
        assert!(SigningKey::new(&n, &e, &bytes(other.d()), &p, &q).is_none(), "another key's d");
        assert!(SigningKey::new(&n, &e, &d, &p, &bytes(&other.primes()[1])).is_none(), "another prime");
        assert!(SigningKey::new(&n, &[3], &d, &p, &q).is_none(), "another e");
        assert!(SigningKey::new(&n, &e, &d, &[1], &n).is_none(), "1 · n");
        let key = SigningKey::new(&n, &e, &d, &p, &q).unwrap();
        assert!(key.has_public_key(&n, &e) && !key.has_public_key(&bytes(other.n()), &e));
        assert_eq!(key.bits(), 2048);
    }

    #[test]
    fn rs256_verification_agrees_with_another_implementation() {
        let private = test_keys::signer();
        let (n, e) = (be(private.n()), be(private.e()));
        let message = b"eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0";
        let signature = test_keys::mint(r#"{"alg":"RS256"}"#, r#"{"sub":"x"}"#, private);
        let (input, signature) = signature.rsplit_once('.').unwrap();
        let signature = <base64ct::Base64UrlUnpadded as base64ct::Encoding>::decode_vec(signature).unwrap();
        assert!(verify_pkcs1v15(&n, &e, input.as_bytes(), &signature), "rsa 0.10's RS256 signature");
        assert_eq!(input.as_bytes(), message, "mint signs exactly this input");
        assert!(!verify_pkcs1v15(&n, &e, b"another message", &signature), "another message");
        let other = test_keys::other();
        assert!(!verify_pkcs1v15(&be(other.n()), &be(other.e()), input.as_bytes(), &signature), "another key");
        let mut flipped = signature.clone();
        flipped[100] ^= 1;
        assert!(!verify_pkcs1v15(&n, &e, input.as_bytes(), &flipped));
        assert!(!verify_pkcs1v15(&n, &e, input.as_bytes(), &signature[1..]), "too short");
        assert!(!verify_pkcs1v15(&n, &e, input.as_bytes(), &[signature.clone(), vec![0]].concat()), "too long");
        assert!(!verify_pkcs1v15(&n, &n, input.as_bytes(), &signature), "a huge exponent");
        assert!(!verify_pkcs1v15(&n, &[1], input.as_bytes(), &signature), "e = 1");
        assert!(!verify_pkcs1v15(&n, &[0x01, 0x00, 0x00], input.as_bytes(), &signature), "an even exponent");
        assert!(!verify_pkcs1v15(&n, &e, input.as_bytes(), &n), "s = n");
        // A PSS signature is not a PKCS#1 v1.5 one, and the signer's own RS256 verifies.
        let key = key();
        let pss = key.sign(Scheme::Pss, message, &mut os_random).unwrap();
        assert!(!verify_pkcs1v15(&n, &e, message, &pss));
        assert!(verify_pkcs1v15(&n, &e, message, &key.sign(Scheme::Pkcs1v15, message, &mut os_random).unwrap()));
    }

    #[test]
    fn encodings_have_their_fixed_parts() {
        let hash = [7u8; 32];
        let em = pkcs1v15_encode(&hash, 256).unwrap();
        assert_eq!(&em[..2], [0, 1]);
        assert!(em[2..256 - 52].iter().all(|b| *b == 0xff));
        assert_eq!(em[256 - 52], 0);
        assert_eq!(&em[256 - 51..256 - 32], SHA256_DIGEST_INFO);
        assert_eq!(&em[256 - 32..], &hash);
        assert!(pkcs1v15_encode(&hash, 61).is_none());
        let em = pss_encode(&hash, 2047, &[9; 32]).unwrap();
        assert_eq!((em.len(), em[255], em[0] & 0x80), (256, 0xbc, 0));
        let em = pss_encode(&hash, 2048, &[9; 32]).unwrap();
        assert_eq!(em.len(), 256);
        assert!(pss_encode(&hash, 8 * 65, &[9; 32]).is_none());
    }
}
