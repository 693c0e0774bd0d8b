//! User identifiers: the only way to get one is [`UserId::parse`], and the only way to
//! put one in a URL is [`UserId::path_segment`].
//!
//! Rules from SPEC.md, "User identifiers". Every rejection names the rule that failed,
//! so a caller can fix the input without guessing. Because the parser admits only a
//! small character set and the encoder escapes what a URL would misread, no input can
//! change the host, the path outside its segment, the query or a header.

use std::fmt;

use crate::inbound::guid::Guid;

/// Longest local part of a UPN (the part before `@`), from Entra ID's limits.
const MAX_LOCAL_LEN: usize = 64;
/// Longest domain part of a UPN.
const MAX_DOMAIN_LEN: usize = 48;
/// Longest whole UPN.
const MAX_UPN_LEN: usize = 113;
/// Marks a guest (B2B) account's UPN: `alice_contoso.com#EXT#@fabrikam.onmicrosoft.com`.
/// Matched in any case: Entra ID compares UPNs case-insensitively, so `#ext#` names
/// the same guest.
const GUEST_MARKER: &str = "#EXT#";

/// A validated user: an object id or a userPrincipalName.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub enum UserId {
    /// An object id, normalised to lower case.
    ObjectId(Guid),
    /// A userPrincipalName that passed every rule, as given (trimmed).
    Upn(String),
}

impl UserId {
    /// Parses an object id or a userPrincipalName, trimming surrounding spaces and tabs.
    pub fn parse(raw: &str) -> Result<UserId, String> {
        let text = raw.trim_matches(|c| c == ' ' || c == '\t');
        if text.is_empty() {
            return Err("the user id is empty: give an object id (GUID) or a userPrincipalName".into());
        }
        if let Some(bad) = text.chars().find(|c| !c.is_ascii()) {
            return Err(format!(
                "the user id contains the non-ASCII character {bad:?} (U+{:04X}); user ids are ASCII",
                bad as u32
            ));
        }
        if let Some(bad) = text.bytes().find(|b| b.is_ascii_whitespace() || b.is_ascii_control()) {
            return Err(format!(
                "the user id contains whitespace or a control character (0x{bad:02X}); only surrounding spaces and tabs are trimmed"
            ));
        }
        if let Some(bad) = text.chars().find(|c| "/\\?%&,;:".contains(*c)) {
            let hint = if text.starts_with("urn:uuid:") {
                "; give the object id as a bare GUID, without urn:uuid:"
            } else {
                ""
            };
            return Err(format!("the user id contains '{bad}', which no user id may contain{hint}"));
        }
        if text.starts_with('{') || text.ends_with('}') {
            return Err("give the object id as a bare GUID (8-4-4-4-12 hex digits), without braces".into());
        }
        match text.split_once('@') {
            None => Guid::parse(text).map(UserId::ObjectId).ok_or_else(|| {
                "the user id is neither an object id (a GUID of 8-4-4-4-12 hex digits) nor a userPrincipalName (local@domain)"
                    .to_string()
            }),
            Some((local, domain)) => parse_upn(text, local, domain).map(UserId::Upn),
        }
    }

    /// The one URL path segment for this user, after `/users`:
    /// `/{id}` normally, `('{upn}')` for a UPN that starts with `$` (Graph reads
    /// `/users/$x` as a system query option), with `'` doubled inside the quotes.
    /// `#` → `%23` (else the rest is a fragment), `+` → `%2B` (else a space),
    /// `^` → `%5E` (not a URL path character); `'` and `@` stay literal.
    pub fn path_segment(&self) -> String {
        match self {
            UserId::ObjectId(guid) => format!("/{guid}"),
            UserId::Upn(upn) => {
                let mut escaped = String::with_capacity(upn.len() + 8);
                for c in upn.chars() {
                    match c {
                        '#' => escaped.push_str("%23"),
                        '+' => escaped.push_str("%2B"),
                        '^' => escaped.push_str("%5E"),
                        '\'' if upn.starts_with('$') => escaped.push_str("''"),
                        c => escaped.push(c),
                    }
                }
                if upn.starts_with('$') {
                    format!("('{escaped}')")
                } else {
                    format!("/{escaped}")
                }
            }
        }
    }

    /// A warning the caller should read alongside a success, if any.
    pub fn warning(&self) -> Option<String> {
        match self {
            UserId::Upn(upn) if upn.to_ascii_uppercase().contains(GUEST_MARKER) => Some(format!(
                "{upn} is a guest (#EXT#) account: Graph revokes its sessions in this tenant only; \
                 its home tenant's sessions stay valid, so revoke there too"
            )),
            _ => None,
        }
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UserId::ObjectId(guid) => guid.fmt(f),
            UserId::Upn(upn) => f.write_str(upn),
        }
    }
}

/// The UPN rules, given text already free of whitespace, controls, non-ASCII and the
/// characters no id may contain.
fn parse_upn(text: &str, local: &str, domain: &str) -> Result<String, String> {
    if domain.contains('@') {
        return Err("the userPrincipalName contains a second '@'".into());
    }
    if local.is_empty() {
        return Err("the userPrincipalName has nothing before '@'".into());
    }
    if local.len() > MAX_LOCAL_LEN {
        return Err(format!(
            "the part before '@' is {} characters; at most {MAX_LOCAL_LEN} are allowed",
            local.len()
        ));
    }
    if let Some(bad) = local.chars().find(|c| !(c.is_ascii_alphanumeric() || "'.-_!#^~+$".contains(*c))) {
        return Err(format!(
            "the part before '@' contains '{bad}'; allowed are letters, digits and ' . - _ ! # ^ ~ + $"
        ));
    }
    if local.ends_with('.') {
        return Err("the part before '@' ends with '.'".into());
    }
    if domain.is_empty() {
        return Err("the userPrincipalName has no domain after '@'".into());
    }
    if domain.len() > MAX_DOMAIN_LEN {
        return Err(format!(
            "the domain is {} characters; at most {MAX_DOMAIN_LEN} are allowed",
            domain.len()
        ));
    }
    if let Some(bad) = domain.chars().find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '.')) {
        return Err(format!("the domain contains '{bad}'; allowed are letters, digits, '-' and '.'"));
    }
    if domain.split('.').any(str::is_empty) {
        return Err("the domain has an empty label (a leading, trailing or doubled '.')".into());
    }
    if text.len() > MAX_UPN_LEN {
        return Err(format!(
            "the userPrincipalName is {} characters; at most {MAX_UPN_LEN} are allowed",
            text.len()
        ));
    }
    Ok(text.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segment(raw: &str) -> String {
        UserId::parse(raw).unwrap().path_segment()
    }

    fn rule(raw: &str) -> String {
        UserId::parse(raw).unwrap_err()
    }

    #[test]
    fn object_ids_are_sent_lower_case() {
        assert_eq!(
            segment("6F4A9B2C-1D3E-4F50-8A6B-7C8D9E0F1A2B"),
            "/6f4a9b2c-1d3e-4f50-8a6b-7c8d9e0f1a2b"
        );
    }

    #[test]
    fn upns_are_escaped_only_where_a_url_would_misread_them() {
        assert_eq!(segment("adele.vance@contoso.com"), "/adele.vance@contoso.com");
        assert_eq!(
            segment("alice_fabrikam.com#EXT#@contoso.onmicrosoft.com"),
            "/alice_fabrikam.com%23EXT%23@contoso.onmicrosoft.com"
        );
        assert_eq!(segment("o'brien@contoso.com"), "/o'brien@contoso.com");
        assert_eq!(segment("bob+ops@contoso.com"), "/bob%2Bops@contoso.com");
        assert_eq!(segment("a^b~c!d@contoso.com"), "/a%5Eb~c!d@contoso.com");
    }

    #[test]
    fn dollar_upns_use_the_parenthesised_form_with_quotes_doubled() {
        assert_eq!(segment("$adele@contoso.com"), "('$adele@contoso.com')");
        assert_eq!(segment("$o'hara#1@contoso.com"), "('$o''hara%231@contoso.com')");
    }

    #[test]
    fn surrounding_spaces_and_tabs_are_trimmed() {
        assert_eq!(segment(" \tadele@contoso.com\t "), "/adele@contoso.com");
    }

    #[test]
    fn guests_carry_a_warning() {
        let guest = UserId::parse("alice_fabrikam.com#EXT#@contoso.onmicrosoft.com").unwrap();
        assert!(guest.warning().unwrap().contains("home tenant"));
        assert_eq!(UserId::parse("adele@contoso.com").unwrap().warning(), None);
        for spelling in ["#ext#", "#Ext#", "#eXT#"] {
            let guest = UserId::parse(&format!("alice_fabrikam.com{spelling}@contoso.onmicrosoft.com")).unwrap();
            assert!(guest.warning().is_some_and(|w| w.contains("home tenant")), "{spelling}");
        }
        assert_eq!(UserId::parse("ext_alice#ex#t@contoso.com").unwrap().warning(), None);
    }

    #[test]
    fn every_forbidden_character_is_named() {
        for c in ['/', '\\', '?', '%', '&', ',', ';', ':'] {
            let text = rule(&format!("ad{c}ele@contoso.com"));
            assert!(text.contains(&format!("'{c}'")), "{c}: {text}");
        }
    }

    #[test]
    fn whitespace_controls_and_non_ascii_are_refused() {
        assert!(rule("adele @contoso.com").contains("whitespace"));
        assert!(rule("adele@contoso.com\r\nx-evil: 1").contains("whitespace or a control"));
        assert!(rule("ad\u{0}ele@contoso.com").contains("control"));
        assert!(rule("adèle@contoso.com").contains("non-ASCII"));
    }

    #[test]
    fn the_shape_rules_are_named() {
        assert!(rule("").contains("empty"));
        assert!(rule("   ").contains("empty"));
        assert!(rule("a@b@contoso.com").contains("second '@'"));
        assert!(rule("adele@contoso.com#x@evil").contains("second '@'"));
        assert!(rule("@contoso.com").contains("nothing before"));
        assert!(rule("adele.@contoso.com").contains("ends with '.'"));
        assert!(rule("adele@").contains("no domain"));
        assert!(rule("adele@contoso..com").contains("empty label"));
        assert!(rule("ad\"ele@contoso.com").contains("'\"'"));
        assert!(rule("adele@con_toso.com").contains("domain contains '_'"));
        assert!(rule("{6f4a9b2c-1d3e-4f50-8a6b-7c8d9e0f1a2b}").contains("braces"));
        assert!(rule("urn:uuid:6f4a9b2c-1d3e-4f50-8a6b-7c8d9e0f1a2b").contains("urn:uuid"));
        assert!(rule("6f4a9b2c1d3e4f508a6b7c8d9e0f1a2b").contains("neither"));
        assert!(rule("adele").contains("neither"));
    }

    #[test]
    fn lengths_are_bounded() {
        let local64 = "a".repeat(64);
        let domain48 = format!("{}.com", "d".repeat(44));
        assert!(UserId::parse(&format!("{local64}@{domain48}")).is_ok());
        assert!(rule(&format!("{}@contoso.com", "a".repeat(65))).contains("at most 64"));
        assert!(rule(&format!("adele@{}.com", "d".repeat(45))).contains("at most 48"));
        // 64 + 1 + 48 = 113 is the whole limit, so it is reached only with both parts full.
        assert_eq!(local64.len() + 1 + domain48.len(), MAX_UPN_LEN);
    }

    #[test]
    fn injection_attempts_never_parse() {
        for raw in [
            "../admin@contoso.com",
            "adele@contoso.com/../../me",
            "adele@contoso.com?$select=x",
            "adele@contoso.com#x@evil.com",
            "adele%2F..@contoso.com",
            "user1%40a.com#x@evil.com",
            "adele@contoso.com\r\nAuthorization: x",
        ] {
            assert!(UserId::parse(raw).is_err(), "{raw}");
        }
    }
}
