//! The Graph token cache: what is stored, under which key, and when it is still good.
//!
//! Pure: the token session (`session`) reads and writes the bytes in the Spin
//! key-value store `default`. One token serves every instance for up to an hour, so a warm request
//! makes exactly one outbound call (the revoke). An entry is renewed
//! [`RENEW_BEFORE`] ahead of its expiry, so a token never expires mid-request; an
//! entry that does not parse (corrupt, foreign, an older format) is ignored and
//! replaced, never trusted.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::settings::secret::Secret;
use crate::settings::GraphSettings;

/// Renew this long before the platform's `expires_in` runs out (SPEC.md).
pub const RENEW_BEFORE: Duration = Duration::from_secs(5 * 60);
/// Longest a token is kept, whatever `expires_in` says: a day. Entra ID access tokens
/// live 60 to 90 minutes (a day at most with a configured lifetime policy); a longer
/// claim is a broken or hostile answer, and must not pin a token in the cache, let
/// alone overflow the expiry time.
pub const MAX_LIFETIME: Duration = Duration::from_secs(24 * 60 * 60);
/// Bumped when the stored shape changes, so an old entry is ignored rather than misread.
const FORMAT: u32 = 1;

/// The stored entry.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Entry {
    format: u32,
    access_token: String,
    /// Unix seconds at which the platform said the token expires.
    expires_at: u64,
}

/// The key of the token for these settings and this credential (`credential_tag`, from
/// [`crate::settings::CredentialChoice::cache_tag`]): one per credential, login host,
/// tenant, client and scope, so national clouds, tenants, app registrations and managed
/// identities never share a token, and a switch of credential takes effect at once.
pub fn key(settings: &GraphSettings, credential_tag: &str) -> String {
    format!(
        "graph-revoke/token/v{FORMAT}/{credential_tag}/{}/{}/{}/{}/.default",
        settings.login_base_url, settings.tenant, settings.client_id, settings.graph_base_url
    )
}

/// The entry to store for a token that expires `expires_in` seconds after `now_unix`
/// (at most [`MAX_LIFETIME`]), or `None` when it would be stale at once (shorter-lived
/// than [`RENEW_BEFORE`]).
pub fn encode(token: &Secret, expires_in: u64, now_unix: u64) -> Option<Vec<u8>> {
    (expires_in > RENEW_BEFORE.as_secs()).then(|| {
        let expires_at = now_unix.saturating_add(expires_in.min(MAX_LIFETIME.as_secs()));
        let entry = Entry { format: FORMAT, access_token: token.expose().to_string(), expires_at };
        serde_json::to_vec(&entry).expect("serialising a plain struct")
    })
}

/// The cached token, if the entry parses and is not yet due for renewal at `now_unix`.
pub fn decode(bytes: &[u8], now_unix: u64) -> Option<Secret> {
    let entry: Entry = serde_json::from_slice(bytes).ok()?;
    let fresh = entry.format == FORMAT
        && !entry.access_token.is_empty()
        && now_unix.saturating_add(RENEW_BEFORE.as_secs()) < entry.expires_at;
    fresh.then(|| Secret::new(entry.access_token))
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_795_000_000;

    #[test]
    fn a_stored_token_is_read_back_until_five_minutes_before_expiry() {
        let bytes = encode(&Secret::new("tok"), 3599, NOW).unwrap();
        assert_eq!(decode(&bytes, NOW).unwrap().expose(), "tok");
        assert_eq!(decode(&bytes, NOW + 3599 - 301).unwrap().expose(), "tok");
        assert!(decode(&bytes, NOW + 3599 - 300).is_none());
        assert!(decode(&bytes, NOW + 4000).is_none());
    }

    #[test]
    fn short_lived_tokens_are_not_stored() {
        assert!(encode(&Secret::new("tok"), 300, NOW).is_none());
        assert!(encode(&Secret::new("tok"), 301, NOW).is_some());
    }

    #[test]
    fn a_huge_expires_in_is_capped_at_a_day_and_never_overflows() {
        for expires_in in [u64::MAX, u64::MAX - NOW + 1, 10 * 365 * 86_400] {
            let bytes = encode(&Secret::new("tok"), expires_in, NOW).unwrap();
            let entry: Entry = serde_json::from_slice(&bytes).unwrap();
            assert_eq!(entry.expires_at, NOW + MAX_LIFETIME.as_secs(), "{expires_in}");
            assert!(decode(&bytes, NOW + MAX_LIFETIME.as_secs() - 301).is_some());
            assert!(decode(&bytes, NOW + MAX_LIFETIME.as_secs() - 300).is_none());
        }
        // Clocks at the end of time do not panic either.
        assert!(encode(&Secret::new("tok"), 3599, u64::MAX).is_some());
        assert!(decode(&encode(&Secret::new("tok"), 3599, u64::MAX).unwrap(), u64::MAX).is_none());
    }

    #[test]
    fn corrupt_and_foreign_entries_are_ignored() {
        for bytes in [
            &b""[..],
            b"not json",
            b"{}",
            br#"{"format":2,"accessToken":"tok","expiresAt":99999999999}"#,
            br#"{"format":1,"accessToken":"","expiresAt":99999999999}"#,
            br#"{"format":1,"accessToken":"tok","expiresAt":"soon"}"#,
            br#"{"format":1,"accessToken":"tok","expiresAt":99999999999,"extra":1}"#,
        ] {
            assert!(decode(bytes, NOW).is_none(), "{:?}", String::from_utf8_lossy(bytes));
        }
    }

    #[test]
    fn the_key_separates_cloud_tenant_client_and_scope() {
        let settings = crate::settings::example();
        let mut other = settings.clone();
        other.graph_base_url = "https://graph.microsoft.us".into();
        assert_ne!(key(&settings, "secret"), key(&other, "secret"));
        assert!(key(&settings, "secret").contains(&settings.tenant));
    }

    #[test]
    fn the_key_separates_credentials_and_managed_identities() {
        use crate::inbound::guid::Guid;
        use crate::settings::CredentialChoice;
        let settings = crate::settings::example();
        let user_assigned = |id: &str| CredentialChoice::ManagedIdentity { client_id: Guid::parse(id) };
        let choices = [
            CredentialChoice::Default,
            CredentialChoice::Secret,
            CredentialChoice::ManagedIdentity { client_id: None },
            user_assigned("0a1b2c3d-4e5f-6071-8293-a4b5c6d7e8f9"),
            user_assigned("1a1b2c3d-4e5f-6071-8293-a4b5c6d7e8f9"),
        ];
        let keys: std::collections::BTreeSet<String> = choices.iter().map(|c| key(&settings, &c.cache_tag())).collect();
        assert_eq!(keys.len(), choices.len(), "{keys:?}");
        assert_eq!(
            key(&settings, &CredentialChoice::Secret.cache_tag()),
            "graph-revoke/token/v1/secret/https://login.microsoftonline.com/contoso.onmicrosoft.com/\
             11111111-2222-3333-4444-555555555555/https://graph.microsoft.com/.default"
        );
    }
}
