//! `credential = certificate`: the client assertion JWT that proves the app's identity with
//! its certificate's key instead of a client secret.
//!
//! Issue 8, section 2, and Microsoft's "certificate credentials" format: header `alg` PS256
//! (RS256 selectable), `typ` JWT, `x5t#S256` the base64url SHA-256 of the certificate's DER;
//! claims `aud` the token endpoint URL, `iss` = `sub` the client id, a random `jti`,
//! `nbf` = `iat` now, `exp` [`LIFETIME_SECONDS`] later. The token request then carries
//! [`credential_fields`] instead of `client_secret`.
//!
//! Pure: the PEM texts, the clock and a source of random bytes (the host's `wasi:random`)
//! are inputs. The private key lives in a [`CertificateCredential`] whose `Debug` shows the
//! thumbprint only, and the decoded key bytes are zeroed when dropped.
//!
//! The signature: [`crate::crypto::signer`] (RSASSA-PSS or RSASSA-PKCS1-v1_5 with SHA-256; why it
//! is not the rsa crate's own signer, and why the timing advisory RUSTSEC-2023-0071 barely
//! reaches it, are said there).

use std::fmt;

use base64ct::{Base64UrlUnpadded, Encoding};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::identity::der;
use crate::crypto::signer::{Scheme, SigningKey};
use crate::inbound::guid::Guid;
use crate::settings::secret::Secret;

/// How long an assertion is valid. Microsoft allows up to 10 minutes and MSAL uses 10;
/// the assertion is used at once, so the full window only absorbs clock skew.
pub const LIFETIME_SECONDS: u64 = 10 * 60;
/// The `client_assertion_type` of a JWT client assertion (RFC 7523).
pub const CLIENT_ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// Smallest key Entra ID accepts for certificate credentials.
const MIN_KEY_BITS: usize = 2048;
/// Largest PEM value read (a key and a chain of certificates fit in a few KiB).
const MAX_PEM_BYTES: usize = 64 * 1024;

/// The assertion's signature algorithm (both are in use; PS256 is the default;
/// `credential = certificate_rs256` chooses RS256).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AssertionAlg {
    #[default]
    Ps256,
    Rs256,
}

impl AssertionAlg {
    pub fn name(self) -> &'static str {
        match self {
            AssertionAlg::Ps256 => "PS256",
            AssertionAlg::Rs256 => "RS256",
        }
    }
}

/// The app's certificate and private key, checked to belong together.
pub struct CertificateCredential {
    /// `x5t#S256`: base64url SHA-256 of the certificate's DER.
    thumbprint: String,
    /// Unix seconds of the certificate's `notAfter`.
    not_after: u64,
    key: SigningKey,
}

impl fmt::Debug for CertificateCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertificateCredential")
            .field("x5t#S256", &self.thumbprint)
            .field("not_after", &self.not_after)
            .field("key", &"[redacted]")
            .finish()
    }
}

/// A problem with the settings: the variable and the rule, never the value.
pub type Problem = (&'static str, String);

impl CertificateCredential {
    /// Reads `client_certificate` (PEM; the first `CERTIFICATE` block is the app's) and
    /// `client_private_key` (PEM, PKCS#8 `PRIVATE KEY`, or PKCS#1 `RSA PRIVATE KEY`;
    /// unencrypted; RSA of at least 2048 bits), and checks that the key is the
    /// certificate's. Either value may hold both blocks (as a Key Vault PEM export does).
    /// PEM is read leniently: any line width, CRLF, and `\n` written as two characters
    /// (as environment variables often carry it).
    pub fn parse(certificate_pem: &str, private_key_pem: &Secret) -> Result<CertificateCredential, Problem> {
        let cert_problem = |rule: &str| ("client_certificate", rule.to_string());
        let key_problem = |rule: &str| ("client_private_key", rule.to_string());

        let der = pem_block(certificate_pem, "CERTIFICATE")
            .ok_or_else(|| cert_problem("must hold a PEM certificate (-----BEGIN CERTIFICATE-----)"))?;
        let (certificate_key, not_after) =
            der::certificate(&der).ok_or_else(|| cert_problem("holds a certificate that is not a readable X.509 RSA certificate"))?;

        let text = private_key_pem.expose();
        if pem_block(text, "ENCRYPTED PRIVATE KEY").is_some() {
            return Err(key_problem("is encrypted: export it unencrypted (openssl pkcs8 -topk8 -nocrypt) and keep it in a secret store"));
        }
        let (key_der, read): (_, fn(&[u8]) -> Option<der::PrivateKey<'_>>) = match pem_block(text, "PRIVATE KEY") {
            Some(key_der) => (key_der, der::pkcs8_private_key),
            None => (
                pem_block(text, "RSA PRIVATE KEY").ok_or_else(|| key_problem("must hold a PEM private key (-----BEGIN PRIVATE KEY-----)"))?,
                der::pkcs1_private_key,
            ),
        };
        let parts = read(&key_der).ok_or_else(|| key_problem("must be an RSA private key in PKCS#8 PEM (-----BEGIN PRIVATE KEY-----)"))?;
        let key = SigningKey::new(parts.n, parts.e, parts.d, parts.p, parts.q)
            .ok_or_else(|| key_problem("holds an RSA private key whose numbers do not belong together"))?;
        if key.bits() < MIN_KEY_BITS {
            return Err(key_problem("must be an RSA key of at least 2048 bits"));
        }
        if !key.has_public_key(certificate_key.n, certificate_key.e) {
            return Err(cert_problem("does not belong to client_private_key (its public key is another key's)"));
        }
        Ok(CertificateCredential { thumbprint: Base64UrlUnpadded::encode_string(&Sha256::digest(&der)), not_after, key })
    }

    /// The certificate's `x5t#S256` (safe to log: it names the certificate, as the portal does).
    #[cfg(test)]
    pub fn thumbprint(&self) -> &str {
        &self.thumbprint
    }

    /// Unix seconds at which the certificate expires.
    pub fn not_after(&self) -> u64 {
        self.not_after
    }

    /// A signed client assertion for the token endpoint `token_endpoint` (the exact URL the
    /// token request goes to), valid from `now_unix` for [`LIFETIME_SECONDS`]. `random`
    /// fills buffers with cryptographically secure random bytes: the `jti`, the PSS salt
    /// and the RSA blinding come from it. Fails when the certificate has expired (Entra
    /// would refuse it with AADSTS700027) or the key cannot sign.
    pub fn assertion(
        &self,
        alg: AssertionAlg,
        client_id: Guid,
        token_endpoint: &str,
        now_unix: u64,
        random: &mut dyn FnMut(&mut [u8]),
    ) -> Result<Secret, String> {
        if now_unix >= self.not_after {
            return Err(format!(
                "client_certificate expired {}; create a new certificate, upload it to the app registration and update \
                 client_certificate and client_private_key",
                humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + std::time::Duration::from_secs(self.not_after))
            ));
        }
        let mut jti = [0u8; 16];
        random(&mut jti);
        // Every value is ours and plain ASCII (a validated origin and tenant, a GUID, base64url,
        // numbers) except the endpoint, which is JSON-escaped all the same.
        let header = format!(r#"{{"alg":"{}","typ":"JWT","x5t#S256":"{}"}}"#, alg.name(), self.thumbprint);
        let claims = format!(
            r#"{{"aud":{},"iss":"{client_id}","sub":"{client_id}","jti":"{}","nbf":{now_unix},"iat":{now_unix},"exp":{}}}"#,
            serde_json::to_string(token_endpoint).expect("serialising a string"),
            Guid::from_random_bytes(jti),
            now_unix + LIFETIME_SECONDS,
        );
        let input = format!(
            "{}.{}",
            Base64UrlUnpadded::encode_string(header.as_bytes()),
            Base64UrlUnpadded::encode_string(claims.as_bytes())
        );
        let scheme = match alg {
            AssertionAlg::Ps256 => Scheme::Pss,
            AssertionAlg::Rs256 => Scheme::Pkcs1v15,
        };
        let signature = self
            .key
            .sign(scheme, input.as_bytes(), random)
            .ok_or_else(|| "client_private_key could not sign the client assertion".to_string())?;
        Ok(Secret::new(format!("{input}.{}", Base64UrlUnpadded::encode_string(&signature))))
    }
}

/// The token endpoint of a tenant: the assertion's `aud` must be exactly the URL the token
/// request is sent to.
pub fn token_endpoint(login_base_url: &str, tenant: &str) -> String {
    format!("{login_base_url}/{tenant}/oauth2/v2.0/token")
}

/// The form fields that replace `client_secret` in the token request.
pub fn credential_fields(assertion: &Secret) -> [(&'static str, &str); 2] {
    [("client_assertion_type", CLIENT_ASSERTION_TYPE), ("client_assertion", assertion.expose())]
}

/// The DER inside the first PEM block with this label. Only armor: the base64 between the
/// boundary lines, whitespace and literal `\n` pairs removed (a backslash is never base64).
fn pem_block(text: &str, label: &str) -> Option<Zeroizing<Vec<u8>>> {
    if text.len() > MAX_PEM_BYTES {
        return None;
    }
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = text.find(&begin)? + begin.len();
    let body = text[start..start + text[start..].find(&end)?].as_bytes();
    let mut base64 = Zeroizing::new(Vec::with_capacity(body.len()));
    let mut i = 0;
    while i < body.len() {
        // Written in the base64url alphabet without padding, so that the one base64
        // decoder the component has (for JWTs) reads it: `+/` become `-_`, `=` ends it.
        match body[i] {
            b'\\' if matches!(body.get(i + 1), Some(b'n' | b'r')) => i += 1,
            b if b.is_ascii_whitespace() => {}
            b'=' => break,
            b'+' => base64.push(b'-'),
            b'/' => base64.push(b'_'),
            b'-' | b'_' => return None,
            b => base64.push(b),
        }
        i += 1;
    }
    let base64 = std::str::from_utf8(&base64).ok()?;
    Base64UrlUnpadded::decode_vec(base64).ok().filter(|der| !der.is_empty()).map(Zeroizing::new)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_keys;

    const CLIENT_ID: &str = "11111111-2222-3333-4444-555555555555";
    const ENDPOINT: &str = "https://login.microsoftonline.com/72f988bf-86f1-41af-91ab-2d7cd011db47/oauth2/v2.0/token";

    fn now() -> u64 {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
    }

    fn os_random(buf: &mut [u8]) {
        getrandom::fill(buf).unwrap();
    }

    fn credential() -> (CertificateCredential, Vec<u8>) {
        let (pem, der) = test_keys::certificate(test_keys::signer());
        let key = Secret::new(test_keys::private_key_pem(test_keys::signer()));
        (CertificateCredential::parse(&pem, &key).unwrap(), der)
    }

    fn decode_segment(segment: &str) -> serde_json::Value {
        serde_json::from_slice(&Base64UrlUnpadded::decode_vec(segment).unwrap()).unwrap()
    }

    fn sign(credential: &CertificateCredential, alg: AssertionAlg, now: u64) -> String {
        let client_id = Guid::parse(CLIENT_ID).unwrap();
        credential.assertion(alg, client_id, ENDPOINT, now, &mut os_random).unwrap().expose().to_string()
    }

    #[test]
    fn the_assertion_has_the_header_and_claims_entra_expects() {
        let (credential, der) = credential();
        let now = now();
        let assertion = sign(&credential, AssertionAlg::default(), now);
        let parts: Vec<&str> = assertion.split('.').collect();
        assert_eq!(parts.len(), 3);
        let thumbprint = Base64UrlUnpadded::encode_string(&Sha256::digest(&der));
        assert_eq!(decode_segment(parts[0]), serde_json::json!({"alg": "PS256", "typ": "JWT", "x5t#S256": thumbprint}));
        let claims = decode_segment(parts[1]);
        assert_eq!(claims["aud"], ENDPOINT);
        assert_eq!(claims["iss"], CLIENT_ID);
        assert_eq!(claims["sub"], CLIENT_ID);
        assert_eq!(claims["nbf"], now);
        assert_eq!(claims["iat"], now);
        assert_eq!(claims["exp"], now + 600);
        assert!(Guid::parse(claims["jti"].as_str().unwrap()).is_some());
        assert_eq!(claims.as_object().unwrap().len(), 7);
    }

    #[test]
    fn ps256_and_rs256_assertions_verify_with_the_certificates_public_key() {
        let (credential, der) = credential();
        let public_key = test_keys::certificate_public_key(&der);
        for alg in [AssertionAlg::Ps256, AssertionAlg::Rs256] {
            let assertion = sign(&credential, alg, now());
            let (input, signature) = assertion.rsplit_once('.').unwrap();
            let signature = Base64UrlUnpadded::decode_vec(signature).unwrap();
            // Judged by the other rsa implementation (0.10), with the key read from the certificate.
            use sha2_test::Sha256;
            let verified = match alg {
                AssertionAlg::Ps256 => public_key.pss_verify::<Sha256>(input.as_bytes(), &signature),
                AssertionAlg::Rs256 => public_key.pkcs1v15_verify::<Sha256>(input.as_bytes(), &signature),
            };
            assert!(verified.is_ok(), "{alg:?}");
            assert_eq!(decode_segment(input.split('.').next().unwrap())["alg"], alg.name());
            // And not with another key.
            let other = test_keys::other().to_public_key();
            assert!(other.pss_verify::<Sha256>(input.as_bytes(), &signature).is_err());
            assert!(other.pkcs1v15_verify::<Sha256>(input.as_bytes(), &signature).is_err());
        }
    }

    #[test]
    fn every_assertion_has_its_own_jti() {
        let (credential, _) = credential();
        let now = now();
        let jti = |a: String| decode_segment(a.split('.').nth(1).unwrap())["jti"].clone();
        let first = jti(sign(&credential, AssertionAlg::Ps256, now));
        let second = jti(sign(&credential, AssertionAlg::Ps256, now));
        assert_ne!(first, second);
    }

    #[test]
    fn the_form_fields_replace_the_client_secret() {
        let assertion = Secret::new("a.b.c");
        let fields = credential_fields(&assertion);
        assert_eq!(fields, [("client_assertion_type", CLIENT_ASSERTION_TYPE), ("client_assertion", "a.b.c")]);
        assert_eq!(CLIENT_ASSERTION_TYPE, "urn:ietf:params:oauth:client-assertion-type:jwt-bearer");
        assert_eq!(token_endpoint("https://login.microsoftonline.com", "contoso.onmicrosoft.com"),
            "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/token");
    }

    #[test]
    fn the_key_never_shows_in_debug_output() {
        let (credential, _) = credential();
        let pem = test_keys::private_key_pem(test_keys::signer());
        let debug = format!("{credential:?}");
        assert!(debug.contains("[redacted]") && debug.contains(credential.thumbprint()), "{debug}");
        let body_line = pem.lines().nth(1).unwrap();
        assert!(!debug.contains(body_line));
        assert!(!debug.contains("primes") && !debug.contains("PrivateKey"), "{debug}");
    }

    #[test]
    fn pem_is_read_leniently_and_either_value_may_hold_both_blocks() {
        let (pem, der) = test_keys::certificate(test_keys::signer());
        let key_pem = test_keys::private_key_pem(test_keys::signer());
        let expected = Base64UrlUnpadded::encode_string(&Sha256::digest(&der));
        // CRLF, one long line, escaped newlines, and key + certificate in one value.
        let crlf = pem.replace('\n', "\r\n");
        let one_line = {
            let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
            format!("-----BEGIN CERTIFICATE-----\n{body}\n-----END CERTIFICATE-----\n")
        };
        let escaped = pem.replace('\n', "\\n");
        let bundle = format!("{key_pem}{pem}");
        for certificate in [pem.clone(), crlf, one_line, escaped, bundle.clone()] {
            let c = CertificateCredential::parse(&certificate, &Secret::new(&key_pem)).unwrap();
            assert_eq!(c.thumbprint(), expected);
        }
        assert!(CertificateCredential::parse(&pem, &Secret::new(&bundle)).is_ok());
        // PKCS#1 keys are read too.
        use rsa_test::pkcs1::EncodeRsaPrivateKey;
        let pkcs1 = test_keys::signer().to_pkcs1_pem(rsa_test::pkcs8::LineEnding::LF).unwrap();
        assert!(CertificateCredential::parse(&pem, &Secret::new(pkcs1.as_str())).is_ok());
    }

    #[test]
    fn mismatched_missing_and_malformed_inputs_name_the_variable_only() {
        let (pem, _) = test_keys::certificate(test_keys::signer());
        let key_pem = test_keys::private_key_pem(test_keys::signer());
        let other_key = test_keys::private_key_pem(test_keys::other());
        let garbled = pem.replacen("MII", "!!!", 1);
        let cases: [(&str, &str, &str); 8] = [
            (&pem, &other_key, "client_certificate"),
            ("", &key_pem, "client_certificate"),
            ("not a pem", &key_pem, "client_certificate"),
            (&garbled, &key_pem, "client_certificate"),
            ("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----", &key_pem, "client_certificate"),
            (&pem, "", "client_private_key"),
            (&pem, "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----", "client_private_key"),
            (&pem, "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----", "client_private_key"),
        ];
        for (certificate, key, variable) in cases {
            let (name, rule) = CertificateCredential::parse(certificate, &Secret::new(key)).unwrap_err();
            assert_eq!(name, variable, "{rule}");
            assert!(!rule.contains("MII") && !rule.contains("AAAA"), "{rule}");
        }
    }

    #[test]
    fn an_expired_certificate_is_refused_before_signing() {
        let (credential, _) = credential();
        let client_id = Guid::parse(CLIENT_ID).unwrap();
        let after = credential.not_after();
        assert!(after > now() && after <= now() + 3600 + 60, "notAfter read from the certificate");
        let err = credential.assertion(AssertionAlg::Ps256, client_id, ENDPOINT, after, &mut os_random).unwrap_err();
        assert!(err.contains("client_certificate expired"), "{err}");
        assert!(credential.assertion(AssertionAlg::Ps256, client_id, ENDPOINT, after - 1, &mut os_random).is_ok());
    }
}
