//! Entra ID access tokens as the tests mint them: RSA keys generated when a test binary
//! first asks (nothing committed), the JWKS the mock identity platform publishes for
//! them, and compact JWS tokens over claims shaped like Entra's v1 and v2 app-only tokens.
//! With rsa 0.10 (a dev-dependency), not the rsa 0.9 the component verifies with.

use std::time::{SystemTime, UNIX_EPOCH};

use base64ct::{Base64UrlUnpadded, Encoding};
use rsa_test::traits::PublicKeyParts;
use rsa_test::PrivateKey;
use serde_json::{json, Value};
use sha2_test::Sha256;

/// The tenant whose tokens the app accepts (`caller_tenant_id`, since the tests'
/// `tenant_id` is a domain).
pub const TENANT_ID: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
/// `caller_audience`.
pub const AUDIENCE: &str = "api://graph-revoke";
/// The calling service principal's object id (`oid`) and application id (`azp`/`appid`).
pub const CALLER_OID: &str = "9c2d8a47-3b1e-4f6a-8d5c-1e2f3a4b5c6d";
pub const CALLER_APP: &str = "4f1e2d3c-5b6a-4978-8695-a4b3c2d1e0f9";
/// The `kid` the mock publishes the signing key under.
pub const KID: &str = "mock-kid-1";
/// The app role the tests' tokens carry.
pub const ROLE: &str = "Sessions.Revoke";

// The keys are the unit tests' own (src/test_keys.rs), generated once per test binary.
#[path = "../../src/test_keys.rs"]
#[allow(dead_code)]
mod test_keys;

/// The key the mock identity platform signs with.
pub use test_keys::signer;

/// A key the identity platform does not publish (a forger's).
pub fn forger() -> &'static PrivateKey {
    test_keys::other()
}

pub fn b64(bytes: &[u8]) -> String {
    Base64UrlUnpadded::encode_string(bytes)
}

/// A JWKS publishing `key` under `kid`, next to an EC key the component must skip.
pub fn jwks(kid: &str, key: &PrivateKey) -> String {
    let public = key.to_public_key();
    json!({"keys": [
        {"kty": "EC", "use": "sig", "kid": "ec-decoy", "crv": "P-256", "x": "AA", "y": "AA"},
        {"kty": "RSA", "use": "sig", "kid": kid, "x5t": kid, "n": b64(&public.n().to_be_bytes()), "e": b64(&public.e().to_be_bytes())},
    ]})
    .to_string()
}

pub fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

/// Claims of a v2 app-only token from [`TENANT_ID`] for [`AUDIENCE`], issued by the
/// identity platform at `login_base_url`.
pub fn v2_claims(login_base_url: &str) -> Value {
    let now = now();
    json!({
        "aud": AUDIENCE, "iss": format!("{login_base_url}/{TENANT_ID}/v2.0"), "iat": now - 60, "nbf": now - 60,
        "exp": now + 3540, "azp": CALLER_APP, "azpacr": "2", "oid": CALLER_OID, "roles": [ROLE],
        "sub": CALLER_OID, "tid": TENANT_ID, "uti": "AbCdEf", "ver": "2.0"
    })
}

/// Claims of a v1 app-only token (what a Logic App's managed identity gets by default).
pub fn v1_claims() -> Value {
    let now = now();
    json!({
        "aud": format!("{AUDIENCE}/"), "iss": format!("https://sts.windows.net/{TENANT_ID}/"), "iat": now - 60,
        "nbf": now - 60, "exp": now + 3540, "appid": CALLER_APP, "appidacr": "2",
        "idp": format!("https://sts.windows.net/{TENANT_ID}/"), "oid": CALLER_OID, "roles": [ROLE], "sub": CALLER_OID,
        "tid": TENANT_ID, "ver": "1.0"
    })
}

/// `claims` with `name` set to `value`, or removed when `value` is null.
pub fn with(mut claims: Value, name: &str, value: Value) -> Value {
    match value {
        Value::Null => {
            claims.as_object_mut().unwrap().remove(name);
        }
        value => claims[name] = value,
    }
    claims
}

/// A compact JWS: `header` and `claims` as given, signed RS256 with `key`.
pub fn sign(header: &Value, claims: &Value, key: &PrivateKey) -> String {
    let input = format!("{}.{}", b64(header.to_string().as_bytes()), b64(claims.to_string().as_bytes()));
    let signature = key.pkcs1v15_sign_with_rng::<Sha256, _>(&mut getrandom::SysRng, input.as_bytes()).unwrap();
    format!("{input}.{}", b64(&signature))
}

/// `claims` signed by the identity platform's key under [`KID`].
pub fn token(claims: &Value) -> String {
    sign(&json!({"typ": "JWT", "alg": "RS256", "x5t": KID, "kid": KID}), claims, signer())
}

/// `Authorization: Bearer <token>`.
pub fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}
