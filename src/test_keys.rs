//! Test-only RSA keys and certificates, generated when a test binary first asks for them.
//!
//! Made with rsa 0.10 (a dev-dependency), not the rsa 0.9 that ships, so what the component
//! signs is checked by another implementation.
//!
//! Nothing here is committed key material: every run makes fresh 2048-bit keys (the OS
//! random source) and self-signed certificates for them. Key generation is the slow part,
//! so each key is made once per test binary.

use std::str::FromStr;
use std::sync::OnceLock;

use base64ct::{Base64UrlUnpadded, Encoding};
use rsa_test::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
use rsa_test::traits::PublicKeyParts;
use rsa_test::{PrivateKey, PublicKey};
use sha2_test::Sha256;
use x509_cert::builder::{profile, Builder, CertificateBuilder};
use x509_cert::der::{Encode, EncodePem};
use x509_cert::name::Name;
use x509_cert::serial_number::SerialNumber;
use x509_cert::spki::SubjectPublicKeyInfoOwned;
use x509_cert::time::Validity;

fn generate() -> PrivateKey {
    PrivateKey::new(&mut getrandom::SysRng, 2048).expect("generating a test key")
}

/// The key that signs the tests' tokens (as Entra's would) and assertions.
pub fn signer() -> &'static PrivateKey {
    static KEY: OnceLock<PrivateKey> = OnceLock::new();
    KEY.get_or_init(generate)
}

/// A second key: a signature made with it must not verify against [`signer`]'s.
pub fn other() -> &'static PrivateKey {
    static KEY: OnceLock<PrivateKey> = OnceLock::new();
    KEY.get_or_init(generate)
}

/// The key as `client_private_key` holds it: PKCS#8 PEM.
pub fn private_key_pem(key: &PrivateKey) -> String {
    key.to_pkcs8_pem(LineEnding::LF).expect("encoding a test key").to_string()
}

/// A JWKS publishing `key` under `kid`, plus the decoys Entra's JWKS could hold.
pub fn jwks_document(kid: &str, key: &PublicKey) -> String {
    let n = Base64UrlUnpadded::encode_string(&key.n().to_be_bytes());
    let e = Base64UrlUnpadded::encode_string(&key.e().to_be_bytes());
    format!(
        r#"{{"keys":[{{"kty":"EC","use":"sig","kid":"ec","crv":"P-256","x":"AA","y":"AA"}},
            {{"kty":"RSA","use":"sig","kid":"{kid}","x5t":"{kid}","n":"{n}","e":"{e}","x5c":["MIIC"]}}]}}"#
    )
}

/// A self-signed certificate for `key`, as `client_certificate` holds it (PEM), and its DER.
pub fn certificate(key: &PrivateKey) -> (String, Vec<u8>) {
    certificate_valid(key, Validity::from_now(std::time::Duration::from_secs(3600)).unwrap())
}

/// A certificate for `key` that expired an hour ago (valid for the hour before).
pub fn expired_certificate(key: &PrivateKey) -> (String, Vec<u8>) {
    let now = std::time::SystemTime::now();
    let at = |ago: u64| x509_cert::time::Time::try_from(now - std::time::Duration::from_secs(ago)).unwrap();
    certificate_valid(key, Validity::new(at(7200), at(3600)))
}

fn certificate_valid(key: &PrivateKey, validity: Validity) -> (String, Vec<u8>) {
    let subject = Name::from_str("CN=graph-revoke unit test,O=graph-revoke tests,C=US").unwrap();
    let spki = SubjectPublicKeyInfoOwned::from_key(&key.to_public_key()).unwrap();
    let builder = CertificateBuilder::new(
        profile::cabf::Root::new(false, subject).unwrap(),
        SerialNumber::from(42u32),
        validity,
        spki,
    )
    .unwrap();
    let signer = rsa_test::pkcs1v15::SigningKey::<Sha256>::new(key.clone());
    let cert = builder.build::<_, rsa_test::pkcs1v15::Signature>(&signer).unwrap();
    (cert.to_pem(LineEnding::LF).unwrap(), cert.to_der().unwrap())
}

/// The public key of a certificate in DER, read with x509-cert.
pub fn certificate_public_key(der: &[u8]) -> PublicKey {
    use x509_cert::der::Decode;
    let cert = x509_cert::Certificate::from_der(der).unwrap();
    let spki_der = cert.tbs_certificate().subject_public_key_info().to_der().unwrap();
    rsa_test::pkcs8::DecodePublicKey::from_public_key_der(&spki_der).unwrap()
}

/// The public key as SPKI DER (for comparing keys).
pub fn spki_der(key: &PublicKey) -> Vec<u8> {
    key.to_public_key_der().unwrap().to_vec()
}

/// The public key as SPKI PEM (what an attacker would use as an HMAC secret).
pub fn spki_pem(key: &PublicKey) -> String {
    key.to_public_key_pem(LineEnding::LF).unwrap()
}

/// A compact JWS over `header` and `claims` (JSON text), signed RS256 with `key`.
pub fn mint(header: &str, claims: &str, key: &PrivateKey) -> String {
    let input = format!("{}.{}", b64(header.as_bytes()), b64(claims.as_bytes()));
    let signature = key.pkcs1v15_sign_with_rng::<Sha256, _>(&mut getrandom::SysRng, input.as_bytes()).unwrap();
    format!("{input}.{}", b64(&signature))
}

pub fn b64(bytes: &[u8]) -> String {
    Base64UrlUnpadded::encode_string(bytes)
}
