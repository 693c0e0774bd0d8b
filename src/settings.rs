//! The component's settings, parsed from Spin variables (SPEC.md, "Settings").
//!
//! Defaults live in `spin.toml` only, never here: a variable the manifest does not
//! declare reads as missing, so a manifest that forgets one fails loudly in tests
//! exactly as it would under Spin. Problems are reported by variable name, never
//! with the value.

use crate::guid::Guid;
use crate::secret::Secret;

/// Shortest API key accepted: 32 characters make guessing hopeless (SPEC.md).
pub const MIN_API_KEY_LEN: usize = 32;

/// Validated settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Tenant GUID (lower case) or verified domain; safe to put in a URL path.
    pub tenant: String,
    pub client_id: Guid,
    pub client_secret: Secret,
    /// One or more caller keys, for rotation.
    pub api_keys: Vec<Secret>,
    /// Graph origin, e.g. `https://graph.microsoft.com` (no trailing slash).
    pub graph_base_url: String,
    /// Identity platform origin, e.g. `https://login.microsoftonline.com`.
    pub login_base_url: String,
    // Checked now, so a malformed value shows in /healthz; spent by the retry policy
    // and the many-users route, which come next.
    #[allow(dead_code)]
    pub time_budget_ms: u64,
    #[allow(dead_code)]
    pub max_users: usize,
}

/// What is wrong with the settings: names only.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Problems {
    /// Variables with no value.
    pub missing: Vec<&'static str>,
    /// Variables whose value is malformed, with the rule it breaks.
    pub invalid: Vec<(&'static str, String)>,
}

impl Problems {
    /// One sentence naming every problem and how to fix it.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if !self.missing.is_empty() {
            parts.push(format!(
                "missing: {} (set them as Spin variables, e.g. SPIN_VARIABLE_{} or a runtime-config secret store)",
                self.missing.join(", "),
                self.missing[0].to_ascii_uppercase()
            ));
        }
        for (name, rule) in &self.invalid {
            parts.push(format!("{name} {rule}"));
        }
        format!("The component is misconfigured: {}.", parts.join("; "))
    }
}

/// The value of one variable as the host gave it.
pub type Lookup<'a> = &'a dyn Fn(&str) -> Result<Option<String>, ()>;

impl Settings {
    /// Reads and checks every variable, collecting all problems rather than the first.
    pub fn load(lookup: Lookup) -> Result<Settings, Problems> {
        let mut problems = Problems::default();
        let mut read = |name: &'static str, parse: &dyn Fn(&str) -> Result<_, String>| {
            let parsed = match lookup(name) {
                Ok(Some(v)) if !v.trim().is_empty() => parse(v.trim()),
                Ok(_) => {
                    problems.missing.push(name);
                    return None;
                }
                Err(()) => Err("could not be read from the runtime config".to_string()),
            };
            parsed.map_err(|rule| problems.invalid.push((name, rule))).ok()
        };
        let tenant = read("tenant_id", &|v| parse_tenant(v).map(Field::Text));
        let client_id = read("client_id", &|v| {
            Guid::parse(v).map(Field::Guid).ok_or_else(|| "must be the application (client) id, a GUID".into())
        });
        let client_secret = read("client_secret", &|v| Ok(Field::Text(v.to_string())));
        let api_keys = read("api_keys", &|v| parse_api_keys(v).map(Field::Keys));
        let graph = read("graph_base_url", &|v| parse_origin(v).map(Field::Text));
        let login = read("login_base_url", &|v| parse_origin(v).map(Field::Text));
        let budget = read("time_budget_ms", &|v| parse_positive(v, " of milliseconds").map(Field::Number));
        let max_users = read("max_users", &|v| parse_positive(v, "").map(Field::Number));

        match (tenant, client_id, client_secret, api_keys, graph, login, budget, max_users) {
            (
                Some(Field::Text(tenant)),
                Some(Field::Guid(client_id)),
                Some(Field::Text(client_secret)),
                Some(Field::Keys(api_keys)),
                Some(Field::Text(graph_base_url)),
                Some(Field::Text(login_base_url)),
                Some(Field::Number(time_budget_ms)),
                Some(Field::Number(max_users)),
            ) => Ok(Settings {
                tenant,
                client_id,
                client_secret: Secret::new(client_secret),
                api_keys,
                graph_base_url,
                login_base_url,
                time_budget_ms,
                max_users: usize::try_from(max_users).unwrap_or(usize::MAX),
            }),
            _ => Err(problems),
        }
    }
}

/// One parsed variable; lets [`Settings::load`] read all of them through one closure.
enum Field {
    Text(String),
    Guid(Guid),
    Keys(Vec<Secret>),
    Number(u64),
}

/// Settings for unit tests elsewhere in the crate: public cloud, a secret with characters
/// that need form encoding.
#[cfg(test)]
pub(crate) fn example() -> Settings {
    Settings {
        tenant: "contoso.onmicrosoft.com".into(),
        client_id: Guid::parse("11111111-2222-3333-4444-555555555555").unwrap(),
        client_secret: Secret::new("a+b&c=d~e/f"),
        api_keys: vec![],
        graph_base_url: "https://graph.microsoft.com".into(),
        login_base_url: "https://login.microsoftonline.com".into(),
        time_budget_ms: 25000,
        max_users: 100,
    }
}

/// A tenant GUID (sent lower case) or a verified domain such as `contoso.onmicrosoft.com`.
fn parse_tenant(text: &str) -> Result<String, String> {
    if let Some(guid) = Guid::parse(text) {
        return Ok(guid.to_string());
    }
    let is_domain = text.contains('.')
        && text.split('.').all(|label| {
            !label.is_empty() && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        });
    if is_domain {
        Ok(text.to_ascii_lowercase())
    } else {
        Err("must be the tenant id (a GUID) or a verified domain such as contoso.onmicrosoft.com".into())
    }
}

/// Comma-separated keys, each at least [`MIN_API_KEY_LEN`] characters.
fn parse_api_keys(text: &str) -> Result<Vec<Secret>, String> {
    let keys: Vec<&str> = text.split(',').map(str::trim).filter(|k| !k.is_empty()).collect();
    if keys.is_empty() {
        return Err("holds no key".into());
    }
    if let Some(i) = keys.iter().position(|k| k.chars().count() < MIN_API_KEY_LEN) {
        return Err(format!(
            "key {} of {} is shorter than {MIN_API_KEY_LEN} characters; generate keys with e.g. `openssl rand -hex 32`",
            i + 1,
            keys.len()
        ));
    }
    Ok(keys.into_iter().map(Secret::new).collect())
}

/// An origin: `https://host[:port]`, no path, query or user info; plain `http://` only
/// for a loopback host (`127.0.0.0/8`, `localhost`, `[::1]`: local tests and a sidecar
/// proxy), because the identity platform's answer carries the access token and the
/// token request the client secret. Returned lower case without a trailing slash, ready
/// for `{origin}/v1.0/...`.
pub fn parse_origin(text: &str) -> Result<String, String> {
    let rule = "must be an origin such as https://graph.microsoft.com (scheme and host, no path)";
    let (rest, https) = match (text.strip_prefix("https://"), text.strip_prefix("http://")) {
        (Some(rest), _) => (rest, true),
        (None, Some(rest)) => (rest, false),
        (None, None) => return Err(rule.into()),
    };
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    // An IPv6 literal is accepted only as the loopback `[::1]`.
    let (host, port) = match authority.strip_prefix("[::1]") {
        Some("") => ("[::1]", None),
        Some(after) => ("[::1]", Some(after.strip_prefix(':').ok_or_else(|| rule.to_string())?)),
        None => match authority.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        },
    };
    let host_ok = host == "[::1]"
        || (!host.is_empty()
            && host.split('.').all(|l| !l.is_empty() && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')));
    let port_ok = port.is_none_or(|p| !p.is_empty() && p.len() <= 5 && p.chars().all(|c| c.is_ascii_digit()));
    if !(host_ok && port_ok) {
        return Err(rule.into());
    }
    if !https && !is_loopback(host) {
        return Err(
            "must use https:// (plain http:// is allowed only for a loopback host: 127.0.0.0/8, localhost or [::1])"
                .into(),
        );
    }
    Ok(text[..text.len() - (rest.len() - authority.len())].to_ascii_lowercase())
}

/// `localhost`, `[::1]`, or an IPv4 address in `127.0.0.0/8` written as four decimal numbers.
fn is_loopback(host: &str) -> bool {
    if host.eq_ignore_ascii_case("localhost") || host == "[::1]" {
        return true;
    }
    let octets: Vec<&str> = host.split('.').collect();
    octets.len() == 4
        && octets[0] == "127"
        && octets.iter().all(|o| !o.is_empty() && o.len() <= 3 && o.bytes().all(|b| b.is_ascii_digit()) && o.parse::<u16>().is_ok_and(|n| n <= 255))
}

/// A whole number above zero; `unit` completes the rule's wording.
fn parse_positive(text: &str, unit: &str) -> Result<u64, String> {
    match text.parse::<u64>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!("must be a whole number above zero{unit}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn good() -> HashMap<&'static str, String> {
        HashMap::from([
            ("tenant_id", "Contoso.onmicrosoft.com".to_string()),
            ("client_id", "11111111-2222-3333-4444-555555555555".to_string()),
            ("client_secret", "s3cr3t~value".to_string()),
            ("api_keys", format!("{}, {}", "k".repeat(32), "j".repeat(40))),
            ("graph_base_url", "https://graph.microsoft.com/".to_string()),
            ("login_base_url", "http://127.0.0.1:8080".to_string()),
            ("time_budget_ms", "25000".to_string()),
            ("max_users", "100".to_string()),
        ])
    }

    fn load(vars: &HashMap<&'static str, String>) -> Result<Settings, Problems> {
        Settings::load(&|name| Ok(vars.get(name).cloned()))
    }

    #[test]
    fn a_complete_configuration_loads() {
        let s = load(&good()).unwrap();
        assert_eq!(s.tenant, "contoso.onmicrosoft.com");
        assert_eq!(s.api_keys.len(), 2);
        assert_eq!(s.graph_base_url, "https://graph.microsoft.com");
        assert_eq!(s.login_base_url, "http://127.0.0.1:8080");
        assert_eq!(s.time_budget_ms, 25000);
    }

    #[test]
    fn missing_and_empty_variables_are_named_together() {
        let mut vars = good();
        vars.remove("client_secret");
        vars.insert("api_keys", "  ".into());
        let problems = load(&vars).unwrap_err();
        assert_eq!(problems.missing, vec!["client_secret", "api_keys"]);
        assert!(problems.describe().contains("client_secret, api_keys"));
    }

    #[test]
    fn malformed_values_are_named_without_their_value() {
        let mut vars = good();
        vars.insert("tenant_id", "contoso/../evil".into());
        vars.insert("client_id", "my-app".into());
        vars.insert("api_keys", "short-key".into());
        vars.insert("graph_base_url", "https://graph.microsoft.com/v1.0".into());
        vars.insert("time_budget_ms", "-5".into());
        vars.insert("max_users", "lots".into());
        let problems = load(&vars).unwrap_err();
        let names: Vec<_> = problems.invalid.iter().map(|(n, _)| *n).collect();
        assert_eq!(
            names,
            vec!["tenant_id", "client_id", "api_keys", "graph_base_url", "time_budget_ms", "max_users"]
        );
        let text = problems.describe();
        assert!(!text.contains("short-key") && !text.contains("evil") && !text.contains("lots"));
        assert!(text.contains("shorter than 32"));
    }

    #[test]
    fn a_host_read_error_is_a_named_problem() {
        let problems = Settings::load(&|name| if name == "client_secret" { Err(()) } else { Ok(good().get(name).cloned()) })
            .unwrap_err();
        assert_eq!(problems.invalid[0].0, "client_secret");
    }

    #[test]
    fn origins_are_scheme_and_host_only() {
        assert_eq!(parse_origin("https://graph.microsoft.us").unwrap(), "https://graph.microsoft.us");
        assert_eq!(parse_origin("http://127.0.0.1:41234/").unwrap(), "http://127.0.0.1:41234");
        for bad in [
            "graph.microsoft.com",
            "ftp://graph.microsoft.com",
            "https://graph.microsoft.com/v1.0",
            "https://user@graph.microsoft.com",
            "https://graph.microsoft.com?x=1",
            "https://",
            "https://host:99999999",
        ] {
            assert!(parse_origin(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn plain_http_is_only_for_loopback_hosts() {
        for ok in [
            "http://127.0.0.1",
            "http://127.0.0.1:8080/",
            "http://127.255.3.4:9",
            "http://localhost:3000",
            "http://LocalHost",
            "http://[::1]",
            "http://[::1]:8443",
            "https://[::1]:8443",
            "https://graph.microsoft.com",
            "https://10.0.0.5:8443",
        ] {
            assert!(parse_origin(ok).is_ok(), "{ok}: {:?}", parse_origin(ok));
        }
        assert_eq!(parse_origin("http://[::1]:8443/").unwrap(), "http://[::1]:8443");
        for plain in [
            "http://graph.microsoft.com",
            "http://login.microsoftonline.com:80",
            "http://128.0.0.1",
            "http://10.0.0.5:8080",
            "http://127.0.0.1.nip.io",
            "http://localhost.evil.com",
            "http://127.0.0.256",
            "http://127.1",
        ] {
            let rule = parse_origin(plain).unwrap_err();
            assert!(rule.contains("must use https://") && rule.contains("loopback"), "{plain}: {rule}");
        }
        for malformed in ["http://[::2]", "http://[::1]x", "http://[::1]:", "https://[fe80::1]", "http://[::1]/x"] {
            assert!(parse_origin(malformed).unwrap_err().contains("must be an origin"), "{malformed}");
        }
    }

    #[test]
    fn a_plain_http_base_url_is_a_named_configuration_problem() {
        let mut vars = good();
        vars.insert("graph_base_url", "http://graph.microsoft.com".into());
        let problems = load(&vars).unwrap_err();
        assert_eq!(problems.invalid.iter().map(|(n, _)| *n).collect::<Vec<_>>(), vec!["graph_base_url"]);
        assert!(problems.describe().contains("graph_base_url must use https://"), "{}", problems.describe());
    }
}
