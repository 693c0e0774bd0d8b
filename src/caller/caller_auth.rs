//! Caller authentication: is this request allowed to revoke sessions?
//!
//! API keys (SPEC.md, "Caller authentication"): the caller sends `x-api-key`, and it
//! must match one of the configured entries: a key itself, or `sha256:<64 hex>`, the
//! SHA-256 of the key's UTF-8 bytes. A digest is not a secret (keys are at least 32
//! random characters, so a plain digest cannot be reversed), so it can live in the
//! environment or a ConfigMap instead of a vault. Every entry is compared, in constant
//! time, so neither timing nor early exit tells a caller how close a guess was; a
//! presented digest is hashed like any key, so knowing a digest authenticates no one.

use sha2::{Digest, Sha256};
use subtle::{ConditionallySelectable, ConstantTimeEq};

use crate::error::Error;
use crate::settings::secret::Secret;

/// The header that carries the caller's key.
pub const API_KEY_HEADER: &str = "x-api-key";
/// Marks a digest entry in `api_keys`.
const DIGEST_PREFIX: &str = "sha256:";

/// One entry of `api_keys`.
#[derive(Debug, Clone)]
pub enum ApiKey {
    /// The key itself (a secret: keep it in a vault or a secret store).
    Plain(Secret),
    /// The SHA-256 of the key (not a secret).
    Sha256([u8; 32]),
}

impl ApiKey {
    /// `sha256:<64 lower-case hex>` or a plain key of at least `min_len` characters.
    /// The rule that failed never quotes the entry.
    pub fn parse(entry: &str, min_len: usize) -> Result<ApiKey, String> {
        if let Some(hex) = entry.strip_prefix(DIGEST_PREFIX) {
            return parse_digest(hex).map(ApiKey::Sha256).ok_or_else(|| {
                "is a malformed sha256: digest (it must be sha256: and 64 lower-case hex digits, the SHA-256 \
                 of the key's UTF-8 bytes; see scripts/mint-api-key)"
                    .to_string()
            });
        }
        if entry.chars().count() < min_len {
            return Err(format!(
                "is shorter than {min_len} characters; mint keys with scripts/mint-api-key (or e.g. `openssl rand -hex 32`)"
            ));
        }
        Ok(ApiKey::Plain(Secret::new(entry)))
    }
}

fn parse_digest(hex: &str) -> Option<[u8; 32]> {
    let nibble = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    let bytes = hex.as_bytes();
    if bytes.len() != 64 {
        return None;
    }
    let mut digest = [0u8; 32];
    for (i, pair) in bytes.chunks(2).enumerate() {
        digest[i] = nibble(pair[0])? << 4 | nibble(pair[1])?;
    }
    Some(digest)
}

/// Which configured entry a caller's key matched: its position, from 1 (for the log line,
/// so an audit can tell which key revoked whom without seeing it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeySlot(pub u32);

/// Checks the caller's `x-api-key` against the configured entries. `presented` holds every
/// `x-api-key` header the request carried: exactly one is accepted (two could mean a proxy
/// added one, and which of them counts must not be a guess).
pub fn authenticate(presented: &[&str], configured: &[ApiKey]) -> Result<KeySlot, Error> {
    let presented = match presented {
        [] => {
            return Err(Error::Unauthenticated(format!("Send the API key in the {API_KEY_HEADER} header.")));
        }
        [one] => *one,
        _ => {
            return Err(Error::Unauthenticated(format!(
                "Send exactly one {API_KEY_HEADER} header; this request carried {}.",
                presented.len()
            )))
        }
    };
    let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
    let mut slot = 0u32;
    for (i, key) in configured.iter().enumerate() {
        let matched = match key {
            ApiKey::Plain(key) => presented.as_bytes().ct_eq(key.expose().as_bytes()),
            ApiKey::Sha256(expected) => digest.ct_eq(expected),
        };
        slot.conditional_assign(&(i as u32 + 1), matched);
    }
    if slot > 0 {
        Ok(KeySlot(slot))
    } else {
        Err(Error::Unauthenticated(format!("The {API_KEY_HEADER} header does not hold a valid API key.")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> Vec<ApiKey> {
        vec![ApiKey::parse(&"a".repeat(32), 32).unwrap(), ApiKey::parse(&"b".repeat(40), 32).unwrap()]
    }

    /// `sha256:` and the hex SHA-256 of `key`, as scripts/mint-api-key prints it.
    fn digest_entry(key: &str) -> String {
        let hex: String = Sha256::digest(key.as_bytes()).iter().map(|b| format!("{b:02x}")).collect();
        format!("sha256:{hex}")
    }

    #[test]
    fn any_configured_key_is_accepted_and_its_slot_named() {
        assert_eq!(authenticate(&[&"a".repeat(32)], &keys()).unwrap(), KeySlot(1));
        assert_eq!(authenticate(&[&"b".repeat(40)], &keys()).unwrap(), KeySlot(2));
    }

    #[test]
    fn missing_wrong_partial_and_repeated_keys_are_refused() {
        assert!(matches!(authenticate(&[], &keys()), Err(Error::Unauthenticated(m)) if m.contains("x-api-key")));
        for wrong in ["", "a", &"a".repeat(31), &"a".repeat(33), &"c".repeat(32)] {
            assert!(authenticate(&[wrong], &keys()).is_err(), "{wrong}");
        }
        let good = "a".repeat(32);
        let two = authenticate(&[&good, &good], &keys()).unwrap_err().to_string();
        assert!(two.contains("exactly one"), "{two}");
        assert!(authenticate(&[&good, "wrong"], &keys()).is_err());
    }

    #[test]
    fn a_digest_entry_accepts_its_key_and_not_the_digest_itself() {
        let key = "k3y-for-digest-tests-0123456789abcdef01234";
        let entry = digest_entry(key);
        let configured = vec![ApiKey::parse(&"a".repeat(32), 32).unwrap(), ApiKey::parse(&entry, 32).unwrap()];
        assert_eq!(authenticate(&[key], &configured).unwrap(), KeySlot(2));
        assert!(authenticate(&[&entry], &configured).is_err(), "presenting the digest authenticates no one");
        assert!(authenticate(&[&entry["sha256:".len()..]], &configured).is_err());
        // Plain and digest entries mix during a rotation.
        assert_eq!(authenticate(&[&"a".repeat(32)], &configured).unwrap(), KeySlot(1));
    }

    #[test]
    fn malformed_digests_are_configuration_problems_that_quote_nothing() {
        let good = digest_entry("x");
        for bad in [
            good.to_uppercase().replace("SHA256:", "sha256:"),
            good[..good.len() - 1].to_string(),
            format!("{good}0"),
            "sha256:".to_string(),
            format!("{}g", &good[..good.len() - 1]),
        ] {
            if bad == good {
                continue;
            }
            let rule = ApiKey::parse(&bad, 32).unwrap_err();
            assert!(rule.contains("malformed sha256"), "{bad}: {rule}");
            assert!(bad.len() == 7 || !rule.contains(&bad[7..]), "the rule quotes the entry: {rule}");
        }
        assert!(matches!(ApiKey::parse(&good, 32), Ok(ApiKey::Sha256(_))));
    }

    #[test]
    fn the_message_never_echoes_the_presented_key() {
        let err = authenticate(&["guess-guess-guess"], &keys()).unwrap_err();
        assert!(!err.to_string().contains("guess"));
    }
}
