//! The component's settings, parsed from Spin variables (SPEC.md, "Settings").
//!
//! Read lazily, in three parts, each when a step first needs it (every read may be a
//! vault round trip): [`CallerSettings`] for the caller check, [`GraphSettings`] once the
//! caller is authenticated, [`Credential`] only when a token must be fetched (a warm
//! revoke never reads the secret). `/healthz` reads all three ([`check_all`]).
//!
//! Defaults live in `spin.toml` only, never here: a variable the manifest does not
//! declare reads as missing, so a manifest that forgets one fails loudly in tests
//! exactly as it would under Spin. Problems are reported by variable name, never
//! with the value.

use crate::caller_auth::ApiKey;
use crate::cloud;
use crate::guid::Guid;
use crate::secret::Secret;

/// Shortest API key accepted: 32 characters make guessing hopeless (SPEC.md).
pub const MIN_API_KEY_LEN: usize = 32;

/// Who may call: read first, and alone, by the caller check. Later issues add API-key
/// digests and Entra ID caller tokens (`caller_audience`, `allowed_callers`, ...) here.
#[derive(Debug, Clone)]
pub struct CallerSettings {
    /// One or more caller keys or their `sha256:` digests, for rotation.
    pub api_keys: Vec<ApiKey>,
}

/// The non-secret settings of the Graph side, read once the caller is authenticated.
#[derive(Debug, Clone)]
pub struct GraphSettings {
    /// Tenant GUID (lower case) or verified domain; safe to put in a URL path.
    pub tenant: String,
    pub client_id: Guid,
    /// Graph origin, e.g. `https://graph.microsoft.com` (no trailing slash).
    pub graph_base_url: String,
    /// Identity platform origin, e.g. `https://login.microsoftonline.com`.
    pub login_base_url: String,
    /// Most time one request may spend, reading its body and retries included.
    pub time_budget_ms: u64,
    pub max_users: usize,
}

/// How the app proves itself to the identity platform: read only when a token must be
/// fetched, so a warm revoke never reads it. Later issues add a certificate and managed
/// identity as further kinds (chosen by `credential`).
#[derive(Debug, Clone)]
pub enum Credential {
    /// `client_secret`.
    ClientSecret(Secret),
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

    fn is_empty(&self) -> bool {
        self.missing.is_empty() && self.invalid.is_empty()
    }

    fn add(&mut self, other: Problems) {
        self.missing.extend(other.missing);
        self.invalid.extend(other.invalid);
    }
}

/// The value of one variable as the host gave it.
pub type Lookup<'a> = &'a dyn Fn(&str) -> Result<Option<String>, ()>;

/// Reads variables one by one, collecting every problem rather than stopping at the first.
struct Reader<'a> {
    lookup: Lookup<'a>,
    problems: Problems,
}

impl<'a> Reader<'a> {
    fn new(lookup: Lookup<'a>) -> Self {
        Reader { lookup, problems: Problems::default() }
    }

    /// The parsed value of `name`, or `None` with the problem noted.
    fn read<T>(&mut self, name: &'static str, parse: impl FnOnce(&str) -> Result<T, String>) -> Option<T> {
        let value = self.value(name)?;
        parse(value.trim()).map_err(|rule| self.problems.invalid.push((name, rule))).ok()
    }

    /// The raw value of `name`, or `None` with the problem noted.
    fn value(&mut self, name: &'static str) -> Option<String> {
        match (self.lookup)(name) {
            Ok(Some(v)) if !v.trim().is_empty() => Some(v),
            Ok(_) => {
                self.problems.missing.push(name);
                None
            }
            Err(()) => {
                self.problems.invalid.push((name, "could not be read from the runtime config".to_string()));
                None
            }
        }
    }

    /// `value` when every read succeeded, else the problems.
    fn finish<T>(self, value: Option<T>) -> Result<T, Problems> {
        match value {
            Some(value) if self.problems.is_empty() => Ok(value),
            _ => Err(self.problems),
        }
    }
}

impl CallerSettings {
    /// Reads `api_keys`, and nothing else.
    pub fn load(lookup: Lookup) -> Result<CallerSettings, Problems> {
        let mut reader = Reader::new(lookup);
        let api_keys = reader.read("api_keys", parse_api_keys);
        reader.finish(api_keys.map(|api_keys| CallerSettings { api_keys }))
    }
}

impl GraphSettings {
    /// Reads the six non-secret Graph settings.
    pub fn load(lookup: Lookup) -> Result<GraphSettings, Problems> {
        let mut reader = Reader::new(lookup);
        let tenant = reader.read("tenant_id", parse_tenant);
        let client_id = reader.read("client_id", |v| {
            Guid::parse(v).ok_or_else(|| "must be the application (client) id, a GUID".to_string())
        });
        let graph_base_url = reader.read("graph_base_url", parse_origin);
        let login_base_url = reader.read("login_base_url", parse_origin);
        let time_budget_ms = reader.read("time_budget_ms", |v| parse_positive(v, " of milliseconds"));
        let max_users = reader.read("max_users", |v| parse_positive(v, ""));
        // A pair from two clouds can never work: say so before any token is asked for.
        if let (Some(login), Some(graph)) = (&login_base_url, &graph_base_url) {
            if let Err(rule) = cloud::check_pair(login, graph) {
                reader.problems.invalid.push(("graph_base_url", rule));
            }
        }
        let settings = (|| {
            Some(GraphSettings {
                tenant: tenant?,
                client_id: client_id?,
                graph_base_url: graph_base_url?,
                login_base_url: login_base_url?,
                time_budget_ms: time_budget_ms?,
                max_users: usize::try_from(max_users?).unwrap_or(usize::MAX),
            })
        })();
        reader.finish(settings)
    }
}

impl Credential {
    /// Reads the app credential: `client_secret`.
    pub fn load(lookup: Lookup) -> Result<Credential, Problems> {
        let mut reader = Reader::new(lookup);
        let secret = reader.read("client_secret", |v| Ok(Secret::new(v)));
        reader.finish(secret.map(Credential::ClientSecret))
    }
}

/// Every setting, for `/healthz`: `None` when all are good, else every problem, Graph
/// settings first, then the credential, then the caller's.
pub fn check_all(lookup: Lookup) -> Option<Problems> {
    let mut problems = Problems::default();
    problems.add(GraphSettings::load(lookup).err().unwrap_or_default());
    problems.add(Credential::load(lookup).err().unwrap_or_default());
    problems.add(CallerSettings::load(lookup).err().unwrap_or_default());
    (!problems.is_empty()).then_some(problems)
}

/// Graph settings for unit tests elsewhere in the crate: public cloud.
#[cfg(test)]
pub(crate) fn example() -> GraphSettings {
    GraphSettings {
        tenant: "contoso.onmicrosoft.com".into(),
        client_id: Guid::parse("11111111-2222-3333-4444-555555555555").unwrap(),
        graph_base_url: "https://graph.microsoft.com".into(),
        login_base_url: "https://login.microsoftonline.com".into(),
        time_budget_ms: 25000,
        max_users: 100,
    }
}

/// A client secret with characters that need form encoding, for unit tests.
#[cfg(test)]
pub(crate) fn example_credential() -> Credential {
    Credential::ClientSecret(Secret::new("a+b&c=d~e/f"))
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

/// Comma-separated entries: keys of at least [`MIN_API_KEY_LEN`] characters, or their `sha256:` digests.
fn parse_api_keys(text: &str) -> Result<Vec<ApiKey>, String> {
    let entries: Vec<&str> = text.split(',').map(str::trim).filter(|k| !k.is_empty()).collect();
    if entries.is_empty() {
        return Err("holds no key".into());
    }
    entries
        .iter()
        .enumerate()
        .map(|(i, entry)| ApiKey::parse(entry, MIN_API_KEY_LEN).map_err(|rule| format!("entry {} of {} {rule}", i + 1, entries.len())))
        .collect()
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
    use std::cell::RefCell;
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

    fn lookup<'a>(vars: &'a HashMap<&'static str, String>) -> impl Fn(&str) -> Result<Option<String>, ()> + 'a {
        |name| Ok(vars.get(name).cloned())
    }

    #[test]
    fn a_complete_configuration_loads() {
        let vars = good();
        let s = GraphSettings::load(&lookup(&vars)).unwrap();
        assert_eq!(s.tenant, "contoso.onmicrosoft.com");
        assert_eq!(s.graph_base_url, "https://graph.microsoft.com");
        assert_eq!(s.login_base_url, "http://127.0.0.1:8080");
        assert_eq!(s.time_budget_ms, 25000);
        assert_eq!(CallerSettings::load(&lookup(&vars)).unwrap().api_keys.len(), 2);
        let Credential::ClientSecret(secret) = Credential::load(&lookup(&vars)).unwrap();
        assert_eq!(secret.expose(), "s3cr3t~value");
        assert_eq!(check_all(&lookup(&vars)), None);
    }

    #[test]
    fn each_part_reads_only_its_own_variables() {
        let vars = good();
        let read = RefCell::new(Vec::new());
        let counting = |name: &str| {
            read.borrow_mut().push(name.to_string());
            Ok(vars.get(name).cloned())
        };
        CallerSettings::load(&counting).unwrap();
        assert_eq!(read.take(), vec!["api_keys"]);
        GraphSettings::load(&counting).unwrap();
        assert_eq!(
            read.take(),
            vec!["tenant_id", "client_id", "graph_base_url", "login_base_url", "time_budget_ms", "max_users"]
        );
        Credential::load(&counting).unwrap();
        assert_eq!(read.take(), vec!["client_secret"]);
    }

    #[test]
    fn missing_and_empty_variables_are_named_together() {
        let mut vars = good();
        vars.remove("client_secret");
        vars.insert("api_keys", "  ".into());
        let problems = check_all(&lookup(&vars)).unwrap();
        assert_eq!(problems.missing, vec!["client_secret", "api_keys"]);
        assert!(problems.describe().contains("client_secret, api_keys"));
        assert_eq!(Credential::load(&lookup(&vars)).unwrap_err().missing, vec!["client_secret"]);
        assert!(GraphSettings::load(&lookup(&vars)).is_ok(), "the Graph settings do not need the secret");
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
        let problems = check_all(&lookup(&vars)).unwrap();
        let names: Vec<_> = problems.invalid.iter().map(|(n, _)| *n).collect();
        assert_eq!(
            names,
            vec!["tenant_id", "client_id", "graph_base_url", "time_budget_ms", "max_users", "api_keys"]
        );
        let text = problems.describe();
        assert!(!text.contains("short-key") && !text.contains("evil") && !text.contains("lots"));
        assert!(text.contains("shorter than 32"));
    }

    #[test]
    fn a_host_read_error_is_a_named_problem() {
        let vars = good();
        let failing = |name: &str| if name == "client_secret" { Err(()) } else { Ok(vars.get(name).cloned()) };
        assert_eq!(Credential::load(&failing).unwrap_err().invalid[0].0, "client_secret");
        assert_eq!(check_all(&failing).unwrap().invalid[0].0, "client_secret");
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
        let problems = GraphSettings::load(&lookup(&vars)).unwrap_err();
        assert_eq!(problems.invalid.iter().map(|(n, _)| *n).collect::<Vec<_>>(), vec!["graph_base_url"]);
        assert!(problems.describe().contains("graph_base_url must use https://"), "{}", problems.describe());
    }

    #[test]
    fn a_login_and_graph_pair_from_two_clouds_is_named() {
        let mut vars = good();
        vars.insert("login_base_url", "https://login.microsoftonline.com".into());
        vars.insert("graph_base_url", "https://graph.microsoft.us".into());
        let problems = GraphSettings::load(&lookup(&vars)).unwrap_err();
        assert_eq!(problems.invalid.iter().map(|(n, _)| *n).collect::<Vec<_>>(), vec!["graph_base_url"]);
        assert!(problems.describe().contains("US Government"), "{}", problems.describe());
        vars.insert("login_base_url", "https://login.microsoftonline.us".into());
        assert!(GraphSettings::load(&lookup(&vars)).is_ok());
    }
}
