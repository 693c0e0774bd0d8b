//! The tenant's token-signing keys (JWKS): the request, reading the answer, and the cache.
//!
//! Entra ID signs access tokens with keys published at
//! `{login_base_url}/{tenant}/discovery/v2.0/keys` (the same keys sign v1 and v2 tokens).
//! Pure: [`crate::platform::host`] does the fetch and the key-value reads and writes; this module says
//! what to fetch, what to keep, and when a fetch is allowed.
//!
//! # The cache (SPEC.md, "Caller authentication"; issue 8)
//! One entry per login host and tenant, kept [`KEEP_FOR`] after a successful fetch. A token
//! whose `kid` is not in the entry may trigger one refetch, at most once per
//! [`REFETCH_INTERVAL`] per tenant, so a flood of forged `kid`s never becomes a flood of JWKS
//! requests. Every attempt, successful or not, is recorded in the entry (`attemptedAt`), so an
//! outage of the identity platform is not hammered either: with no usable keys a failed
//! fetch is retried after [`RETRY_FAILED_FETCH_AFTER`] at the earliest.
//!
//! How a request uses it (the coordinator's flow):
//! ```text
//! entry = Entry::decode(kv[key(login, tenant)])            // None: absent or unreadable
//! match plan(entry, now):
//!     Plan::Use         => verify with entry.keys()
//!     Plan::Fetch       => fetch; store Entry::fetched(keys, now) or Entry::failed(entry, now)
//!     Plan::Unavailable => 503: the signing keys cannot be had right now (no outbound call)
//! verify(...) == UnknownKey && may_refetch(entry, now)
//!     => fetch and store as above, verify once more; UnknownKey again is a 401
//! ```
//! Entries are advisory and racy across instances (the key-value store is eventually
//! consistent); the limits hold per instance view, which is what bounds the load.

use std::time::Duration;

use base64ct::{Base64UrlUnpadded, Encoding};
use serde_json::{json, Value};

use crate::inbound::guid::Guid;
use crate::transport::outbound::{OutboundRequest, OutboundResponse};

/// How long fetched keys are used (issue 8: "kept 24 h"). Entra announces new keys in the
/// JWKS well before it signs with them, and an unknown `kid` refetches anyway.
pub const KEEP_FOR: Duration = Duration::from_secs(24 * 60 * 60);
/// At most one refetch per tenant in this time for an unknown `kid` (issue 8).
pub const REFETCH_INTERVAL: Duration = Duration::from_secs(5 * 60);
/// With no usable keys, a failed fetch is not tried again sooner than this: short enough
/// that a transient failure locks Entra callers out briefly, long enough that an outage
/// costs at most two JWKS requests a minute per instance view.
pub const RETRY_FAILED_FETCH_AFTER: Duration = Duration::from_secs(30);
/// Largest JWKS document read. Entra's is about 10 KiB (each key carries its certificate);
/// a bigger answer is not a JWKS from the identity platform.
pub const MAX_JWKS_BYTES: usize = 64 * 1024;
/// Most keys kept from one JWKS; Entra publishes a handful.
pub const MAX_KEYS: usize = 32;
/// Longest `kid` kept; Entra's are 27 to 43 characters.
pub const MAX_KID_LEN: usize = 128;
/// Largest modulus accepted, in bytes (4096 bits). Bigger keys cost verification time
/// and are not what Entra uses (2048 bits).
const MAX_MODULUS_BYTES: usize = 512;
/// Smallest modulus accepted: NIST's floor, and what Entra uses.
const MIN_MODULUS_BITS: usize = 2048;
/// Bumped when the stored shape changes, so an old entry is ignored rather than misread.
const FORMAT: u32 = 1;

/// One RSA signing key from a JWKS, kept as its public numbers (big-endian, no leading zeros).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RsaKey {
    pub kid: String,
    n: Vec<u8>,
    e: Vec<u8>,
}

impl RsaKey {
    /// The key's modulus and exponent (unsigned big-endian), if the modulus is 2048 to
    /// 4096 bits and odd; the exponent is checked where it is used
    /// ([`crate::crypto::signer::verify_pkcs1v15`]).
    pub fn public_numbers(&self) -> Option<(&[u8], &[u8])> {
        let odd = self.n.last().is_some_and(|b| b & 1 == 1);
        let bits = self.n.first().map_or(0, |top| self.n.len() * 8 - top.leading_zeros() as usize);
        (odd && (MIN_MODULUS_BITS..=MAX_MODULUS_BYTES * 8).contains(&bits)).then_some((&self.n, &self.e))
    }
}

/// The RSA signing keys of a JWKS; other key types and encryption keys are left out.
/// The document itself is kept too: it is what the cache stores.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Jwks {
    keys: Vec<RsaKey>,
    document: String,
}

impl Jwks {
    /// Reads a JWKS document (`{"keys":[{"kty":"RSA","kid","n","e",...}]}`). Keys that are
    /// not RSA, not for signatures, lack a `kid`, or have malformed numbers or members
    /// of the wrong type are skipped; `None` when the document itself is not a JWKS (no
    /// `keys` array, or an entry that is not even an object; Entra sends none).
    ///
    /// Read as a `serde_json::Value`, whose parser the component carries anyway: a
    /// derived reader for the two shapes would cost kilobytes of the size budget.
    pub fn parse(bytes: &[u8]) -> Option<Jwks> {
        if bytes.len() > MAX_JWKS_BYTES {
            return None;
        }
        let set: Value = serde_json::from_slice(bytes).ok()?;
        let published = set.get("keys")?.as_array()?;
        if !published.iter().all(Value::is_object) {
            return None;
        }
        let keys = published
            .iter()
            .filter_map(|key| {
                let member = |name| key.get(name).and_then(Value::as_str);
                if member("kty") != Some("RSA") || key.get("use").is_some_and(|u| u.as_str() != Some("sig")) {
                    return None;
                }
                let kid = member("kid").filter(|k| !k.is_empty() && k.len() <= MAX_KID_LEN)?.to_string();
                let n = decode_number(member("n")?, MAX_MODULUS_BYTES)?;
                let e = decode_number(member("e")?, 8)?;
                Some(RsaKey { kid, n, e })
            })
            .take(MAX_KEYS)
            .collect();
        Some(Jwks { keys, document: String::from_utf8(bytes.to_vec()).ok()? })
    }

    /// The key with this `kid`.
    pub fn find(&self, kid: &str) -> Option<&RsaKey> {
        self.keys.iter().find(|k| k.kid == kid)
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    #[cfg(test)]
    pub(crate) fn from_keys(keys: impl IntoIterator<Item = (String, Vec<u8>, Vec<u8>)>) -> Jwks {
        let keys = keys.into_iter().map(|(kid, n, e)| RsaKey { kid, n: trim(&n).to_vec(), e: trim(&e).to_vec() });
        Jwks { keys: keys.collect(), document: String::new() }
    }
}

/// A JWK number: base64url without padding, big-endian; leading zero bytes dropped.
fn decode_number(text: &str, max_bytes: usize) -> Option<Vec<u8>> {
    if text.len() > (max_bytes + 1) * 4 / 3 + 2 {
        return None;
    }
    let bytes = Base64UrlUnpadded::decode_vec(text).ok()?;
    let bytes = trim(&bytes);
    (!bytes.is_empty() && bytes.len() <= max_bytes).then(|| bytes.to_vec())
}

fn trim(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().position(|&b| b != 0).unwrap_or(bytes.len());
    &bytes[start..]
}

/// The JWKS request for a tenant (its GUID) on this identity platform.
pub fn jwks_request(login_base_url: &str, tenant: Guid, client_request_id: &str) -> OutboundRequest {
    OutboundRequest {
        method: "GET",
        url: format!("{login_base_url}/{tenant}/discovery/v2.0/keys"),
        headers: vec![("accept", "application/json".into()), ("client-request-id", client_request_id.into())],
        body: Vec::new(),
    }
}

/// Reads the JWKS answer; the error says what went wrong without echoing the body.
pub fn read_jwks_response(response: &OutboundResponse) -> Result<Jwks, String> {
    if !(200..300).contains(&response.status) {
        return Err(format!(
            "The identity platform answered {} for the tenant's signing keys; check login_base_url and \
             caller_tenant_id (or tenant_id).",
            response.status
        ));
    }
    Jwks::parse(&response.body).ok_or_else(|| {
        "The identity platform's answer for the tenant's signing keys is not a JWKS; check login_base_url \
         (it must be the identity platform, e.g. https://login.microsoftonline.com)."
            .to_string()
    })
}

/// The cache key: one entry per login host and tenant.
pub fn key(login_base_url: &str, tenant: Guid) -> String {
    format!("graph-revoke/jwks/v{FORMAT}/{login_base_url}/{tenant}")
}

/// A cache entry: the keys, when they were fetched, and when a fetch was last tried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    keys: Jwks,
    /// Unix seconds of the last successful fetch; 0 when there has been none.
    fetched_at: u64,
    /// Unix seconds of the last fetch attempt, successful or not.
    attempted_at: u64,
}

impl Entry {
    /// The entry after a successful fetch at `now_unix`.
    pub fn fetched(keys: Jwks, now_unix: u64) -> Entry {
        Entry { keys, fetched_at: now_unix, attempted_at: now_unix }
    }

    /// The entry after a failed fetch at `now_unix`: the previous keys (if any) stay, with
    /// their age; only the attempt is recorded.
    pub fn failed(previous: Option<Entry>, now_unix: u64) -> Entry {
        let (keys, fetched_at) = previous.map(|p| (p.keys, p.fetched_at)).unwrap_or_default();
        Entry { keys, fetched_at, attempted_at: now_unix }
    }

    /// The keys, whatever their age (use [`plan`] first).
    pub fn keys(&self) -> &Jwks {
        &self.keys
    }

    /// The stored shape: a JSON object of exactly four members, the format, the two
    /// timestamps, and the JWKS document as fetched (read again with [`Jwks::parse`], so a
    /// stored entry is held to the same rules as a fresh answer).
    pub fn encode(&self) -> Vec<u8> {
        let stored = json!({
            "format": FORMAT,
            "fetchedAt": self.fetched_at,
            "attemptedAt": self.attempted_at,
            "jwks": self.keys.document,
        });
        stored.to_string().into_bytes()
    }

    /// The stored entry, or `None` when it does not parse (corrupt, foreign, an older
    /// format): such an entry is replaced, never trusted.
    pub fn decode(bytes: &[u8]) -> Option<Entry> {
        let stored: serde_json::Map<String, Value> = serde_json::from_slice(bytes).ok()?;
        let number = |name| stored.get(name).and_then(Value::as_u64);
        let (format, fetched_at, attempted_at) = (number("format")?, number("fetchedAt")?, number("attemptedAt")?);
        let jwks = stored.get("jwks")?.as_str()?;
        if stored.len() != 4 || format != u64::from(FORMAT) || attempted_at < fetched_at {
            return None;
        }
        // Only a failed first fetch leaves no document.
        let keys = match jwks.is_empty() && fetched_at == 0 {
            true => Jwks::default(),
            false => Jwks::parse(jwks.as_bytes())?,
        };
        Some(Entry { keys, fetched_at, attempted_at })
    }

    fn usable(&self, now_unix: u64) -> bool {
        self.fetched_at > 0 && now_unix < self.fetched_at.saturating_add(KEEP_FOR.as_secs())
    }
}

/// What to do before verifying a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    /// The entry's keys are fresh: verify with them.
    Use,
    /// No entry, or its keys are older than [`KEEP_FOR`]: fetch first.
    Fetch,
    /// No usable keys, and a fetch failed less than [`RETRY_FAILED_FETCH_AFTER`] ago:
    /// refuse without calling out.
    Unavailable,
}

/// Whether the cached keys can be used at `now_unix`, or must be fetched.
pub fn plan(entry: Option<&Entry>, now_unix: u64) -> Plan {
    match entry {
        Some(e) if e.usable(now_unix) => Plan::Use,
        Some(e) if now_unix < e.attempted_at.saturating_add(RETRY_FAILED_FETCH_AFTER.as_secs()) => Plan::Unavailable,
        _ => Plan::Fetch,
    }
}

/// Whether a token with a `kid` the entry lacks may refetch the keys at `now_unix`: at
/// most once per [`REFETCH_INTERVAL`], counting every attempt.
pub fn may_refetch(entry: &Entry, now_unix: u64) -> bool {
    now_unix >= entry.attempted_at.saturating_add(REFETCH_INTERVAL.as_secs())
}

/// Seconds until [`plan`] allows the next fetch after a failed one (at least 1): the
/// `Retry-After` of a request refused for want of keys.
pub fn retry_after(entry: &Entry, now_unix: u64) -> u64 {
    entry.attempted_at.saturating_add(RETRY_FAILED_FETCH_AFTER.as_secs()).saturating_sub(now_unix).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_795_000_000;
    const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";

    fn tenant() -> Guid {
        Guid::parse(TENANT).unwrap()
    }

    fn b64(bytes: &[u8]) -> String {
        Base64UrlUnpadded::encode_string(bytes)
    }

    fn modulus() -> Vec<u8> {
        // Any 2048-bit odd number passes the public-key checks; real keys come from the tests
        // in caller_token.
        let mut n = vec![0xc5; 256];
        n[255] = 0x01;
        n
    }

    fn document() -> String {
        format!(
            r#"{{"keys":[
                {{"kty":"RSA","use":"sig","kid":"k1","x5t":"k1","n":"{n}","e":"AQAB","x5c":["MIIC"],"issuer":"https://login.microsoftonline.com/{TENANT}/v2.0"}},
                {{"kty":"EC","use":"sig","kid":"ec","crv":"P-256","x":"AA","y":"AA"}},
                {{"kty":"RSA","use":"enc","kid":"enc","n":"{n}","e":"AQAB"}},
                {{"kty":"RSA","kid":"no-n","e":"AQAB"}},
                {{"kty":"RSA","kid":"bad-n","n":"!!!","e":"AQAB"}},
                {{"kty":"RSA","n":"{n}","e":"AQAB"}},
                {{"kty":"RSA","kid":"k2","n":"{n}","e":"AQAB"}}
            ]}}"#,
            n = b64(&modulus())
        )
    }

    #[test]
    fn only_rsa_signing_keys_with_a_kid_are_kept() {
        let jwks = Jwks::parse(document().as_bytes()).unwrap();
        let kids: Vec<&str> = jwks.keys.iter().map(|k| k.kid.as_str()).collect();
        assert_eq!(kids, ["k1", "k2"]);
        assert!(jwks.find("ec").is_none() && jwks.find("enc").is_none());
        assert!(jwks.find("k1").unwrap().public_numbers().is_some());
    }

    #[test]
    fn leading_zero_bytes_of_a_number_are_ignored() {
        let mut padded = vec![0u8];
        padded.extend(modulus());
        let doc = format!(r#"{{"keys":[{{"kty":"RSA","kid":"z","n":"{}","e":"AAEAAQ"}}]}}"#, b64(&padded));
        let key = Jwks::parse(doc.as_bytes()).unwrap().find("z").unwrap().clone();
        assert_eq!(key.n, modulus());
        assert_eq!(key.e, vec![1, 0, 1]);
    }

    #[test]
    fn weak_or_absurd_keys_yield_no_public_key() {
        let small = Jwks::from_keys([("s".into(), vec![0xc5; 128], vec![1, 0, 1])]);
        assert!(small.find("s").unwrap().public_numbers().is_none(), "1024-bit keys are refused");
        let even = Jwks::from_keys([("e".into(), vec![0xc4; 256], vec![1, 0, 1])]);
        assert!(even.find("e").unwrap().public_numbers().is_none(), "an even modulus is no RSA key");
        let too_big = format!(r#"{{"keys":[{{"kty":"RSA","kid":"b","n":"{}","e":"AQAB"}}]}}"#, b64(&[0xc5; 513]));
        assert!(Jwks::parse(too_big.as_bytes()).unwrap().is_empty());
    }

    #[test]
    fn documents_that_are_not_a_jwks_are_refused() {
        for doc in ["", "[]", "{}", r#"{"keys":{}}"#, "<html>", r#"{"keys":"x"}"#, r#"{"keys":["x"]}"#] {
            assert!(Jwks::parse(doc.as_bytes()).is_none(), "{doc}");
        }
        assert!(Jwks::parse(&vec![b' '; MAX_JWKS_BYTES + 1]).is_none());
        assert!(Jwks::parse(br#"{"keys":[]}"#).unwrap().is_empty());
    }

    #[test]
    fn the_request_names_the_tenant_keys_endpoint() {
        let request = jwks_request("https://login.microsoftonline.us", tenant(), "cid");
        assert_eq!(request.method, "GET");
        assert_eq!(request.url, format!("https://login.microsoftonline.us/{TENANT}/discovery/v2.0/keys"));
        assert_eq!(request.header("client-request-id"), Some("cid"));
    }

    #[test]
    fn answers_other_than_a_jwks_are_errors_that_echo_nothing() {
        let answer = |status, body: &str| OutboundResponse { status, headers: vec![], body: body.as_bytes().to_vec() };
        assert!(read_jwks_response(&answer(200, &document())).is_ok());
        let e = read_jwks_response(&answer(404, "secret-ish body")).unwrap_err();
        assert!(e.contains("404") && !e.contains("secret-ish"), "{e}");
        let e = read_jwks_response(&answer(200, "<html>portal</html>")).unwrap_err();
        assert!(e.contains("login_base_url") && !e.contains("portal"), "{e}");
    }

    #[test]
    fn the_key_separates_login_hosts_and_tenants() {
        let other = Guid::parse("00000000-0000-0000-0000-000000000001").unwrap();
        let a = key("https://login.microsoftonline.com", tenant());
        assert_ne!(a, key("https://login.microsoftonline.us", tenant()));
        assert_ne!(a, key("https://login.microsoftonline.com", other));
        assert!(a.contains(TENANT) && a.contains("login.microsoftonline.com"));
    }

    #[test]
    fn an_entry_round_trips() {
        let entry = Entry::fetched(Jwks::parse(document().as_bytes()).unwrap(), NOW);
        assert_eq!(Entry::decode(&entry.encode()), Some(entry));
        let failed = Entry::failed(None, NOW);
        assert_eq!(Entry::decode(&failed.encode()), Some(failed));
    }

    #[test]
    fn corrupt_and_foreign_entries_are_ignored() {
        let good = String::from_utf8(Entry::fetched(Jwks::parse(document().as_bytes()).unwrap(), NOW).encode()).unwrap();
        for bytes in [
            String::new(),
            "not json".into(),
            "{}".into(),
            good.replace(r#""format":1"#, r#""format":2"#),
            good.replace(r#""format":1"#, r#""format":1,"extra":1"#),
            good.replace(r#"\"keys\""#, r#"\"kees\""#),
            good.replace(&format!(r#""attemptedAt":{NOW}"#), r#""attemptedAt":1"#),
            format!(r#"{{"format":1,"fetchedAt":{NOW},"attemptedAt":{NOW},"jwks":""}}"#),
        ] {
            assert!(Entry::decode(bytes.as_bytes()).is_none(), "{bytes}");
        }
    }

    #[test]
    fn keys_are_used_for_24_hours_then_fetched_again() {
        let entry = Entry::fetched(Jwks::default(), NOW);
        assert_eq!(plan(None, NOW), Plan::Fetch);
        assert_eq!(plan(Some(&entry), NOW), Plan::Use);
        assert_eq!(plan(Some(&entry), NOW + 24 * 3600 - 1), Plan::Use);
        assert_eq!(plan(Some(&entry), NOW + 24 * 3600), Plan::Fetch);
    }

    #[test]
    fn a_failed_fetch_keeps_the_old_keys_and_holds_off_when_none_are_usable() {
        let fetched = Entry::fetched(Jwks::parse(document().as_bytes()).unwrap(), NOW);
        // Fresh keys stay in use after a failed refetch.
        let failed = Entry::failed(Some(fetched.clone()), NOW + 600);
        assert_eq!(failed.keys(), fetched.keys());
        assert_eq!(plan(Some(&failed), NOW + 601), Plan::Use);
        // With nothing usable, the next fetch waits RETRY_FAILED_FETCH_AFTER.
        let nothing = Entry::failed(None, NOW);
        assert_eq!(plan(Some(&nothing), NOW), Plan::Unavailable);
        assert_eq!(plan(Some(&nothing), NOW + 29), Plan::Unavailable);
        assert_eq!(plan(Some(&nothing), NOW + 30), Plan::Fetch);
        // Expired keys and a failed refetch: unavailable, then fetch again.
        let stale = Entry::failed(Some(fetched), NOW + 24 * 3600 + 5);
        assert_eq!(plan(Some(&stale), NOW + 24 * 3600 + 6), Plan::Unavailable);
        assert_eq!(retry_after(&stale, NOW + 24 * 3600 + 6), 29);
        assert_eq!(retry_after(&stale, NOW + 24 * 3600 + 35), 1, "never 0");
        assert_eq!(plan(Some(&stale), NOW + 24 * 3600 + 35), Plan::Fetch);
    }

    #[test]
    fn an_unknown_kid_refetches_at_most_once_per_five_minutes() {
        let entry = Entry::fetched(Jwks::default(), NOW);
        assert!(!may_refetch(&entry, NOW));
        assert!(!may_refetch(&entry, NOW + 299));
        assert!(may_refetch(&entry, NOW + 300));
        // A failed attempt counts as well: forged kids during an outage do not hammer it.
        let failed = Entry::failed(Some(entry), NOW + 400);
        assert!(!may_refetch(&failed, NOW + 699));
        assert!(may_refetch(&failed, NOW + 700));
    }
}
