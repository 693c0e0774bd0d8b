//! The component's settings, parsed from Spin variables (SPEC.md, "Settings").
//!
//! Read lazily, in parts, each when a step first needs it (every read may be a vault
//! round trip): [`CallerSettings`] for the caller check, [`GraphSettings`] once the
//! caller is authenticated, [`CredentialChoice`] (which credential: it names the token's
//! cache entry) when the request needs a token, and [`Credential`] (the secret, key or
//! endpoint) only when a token must be fetched (a warm revoke never reads it).
//! `/healthz` reads them all ([`check_all`]).
//!
//! Defaults live in `spin.toml` only, never here: a variable the manifest does not
//! declare reads as missing, so a manifest that forgets one fails loudly in tests
//! exactly as it would under Spin. Problems are reported by variable name, never
//! with the value.

pub(crate) mod cloud;
pub(crate) mod secret;

use crate::caller::caller_auth::ApiKey;
use crate::caller::caller_token::{self, CallerPolicy};
use crate::identity::client_assertion::{AssertionAlg, CertificateCredential};
use crate::inbound::guid::Guid;
use crate::identity::managed_identity::{self, Endpoint, EndpointSetting, ManagedIdentity};
use crate::settings::secret::Secret;

/// Shortest API key accepted: 32 characters make guessing hopeless (SPEC.md).
pub const MIN_API_KEY_LEN: usize = 32;

/// Who may call: read first, and alone, by the caller check, in two parts, each only
/// when the request needs it: [`CallerSettings::api_keys`] for a caller with
/// `x-api-key`, [`CallerSettings::tokens`] for one with `Authorization: Bearer` (see
/// `crate::caller`). Either part may be off (empty); with both off the component fails
/// closed.
pub struct CallerSettings;

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
    /// The abuse brake: most users one caller may have revoked per window
    /// (`brake::WINDOW`); `0` turns it off.
    pub max_revocations: u64,
}

/// Which credential the app uses, as `credential` names it. Read (with the managed
/// identity's client id, when that is the choice) whenever the request needs a token,
/// because the token's cache entry is named by it: a switch of credential, or of managed
/// identity, takes effect at once instead of when the cached token expires. Both are
/// non-secret; the environment answers them in the documented layouts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialChoice {
    /// `credential` left empty: the certificate when `client_private_key` is set, else the
    /// client secret (decided when a token is fetched: the key is a secret).
    Default,
    /// `secret`: `client_secret`.
    Secret,
    /// `certificate` (a PS256 client assertion) or `certificate_rs256`: `client_certificate`
    /// and `client_private_key`.
    Certificate(AssertionAlg),
    /// `managed_identity`: the platform's identity, system-assigned or, with
    /// `managed_identity_client_id`, the user-assigned one with that client id.
    ManagedIdentity { client_id: Option<Guid> },
}

/// How the app proves itself to the identity platform: read only when a token must be
/// fetched, so a warm revoke never reads it.
#[derive(Debug)]
pub enum Credential {
    /// `client_secret`.
    ClientSecret(Secret),
    /// A client assertion signed with the certificate's key, and with which algorithm.
    Certificate { certificate: CertificateCredential, alg: AssertionAlg },
    /// A token from the platform's managed identity endpoint (no secret of ours at all).
    ManagedIdentity(ManagedIdentity),
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

    /// Adds `other`'s problems, each variable named once (the caller check and the Graph
    /// settings both read `tenant_id` and `login_base_url`).
    fn add(&mut self, other: Problems) {
        for name in other.missing {
            if !self.names(name) {
                self.missing.push(name);
            }
        }
        for (name, rule) in other.invalid {
            if !self.names(name) {
                self.invalid.push((name, rule));
            }
        }
    }

    fn names(&self, name: &str) -> bool {
        self.missing.contains(&name) || self.invalid.iter().any(|(n, _)| *n == name)
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

    /// The parsed value of `name`, or `None` when it is empty (not a problem: the setting
    /// is off) or malformed (the problem noted).
    fn optional<T>(&mut self, name: &'static str, parse: impl FnOnce(&str) -> Result<T, String>) -> Option<T> {
        let value = self.optional_value(name)?;
        parse(value.trim()).map_err(|rule| self.problems.invalid.push((name, rule))).ok()
    }

    /// The raw value of `name`, `None` when it is empty (or unreadable: the problem noted).
    fn optional_value(&mut self, name: &'static str) -> Option<String> {
        match (self.lookup)(name) {
            Ok(Some(v)) if !v.trim().is_empty() => Some(v),
            Ok(_) => None,
            Err(()) => {
                self.problems.invalid.push((name, "could not be read from the runtime config".to_string()));
                None
            }
        }
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

    /// The certificate credential: `client_certificate` read and checked against `key`
    /// (`client_private_key`, read before: `None` when it is missing or unreadable).
    fn certificate(&mut self, key: Option<Secret>, alg: AssertionAlg) -> Option<Credential> {
        let pem = self.value("client_certificate");
        match CertificateCredential::parse(&pem?, &key?) {
            Ok(certificate) => Some(Credential::Certificate { certificate, alg }),
            Err(problem) => {
                self.problems.invalid.push(problem);
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
    /// Reads `api_keys`, and nothing else: `None` when it is empty.
    pub fn api_keys(lookup: Lookup) -> Result<Option<Vec<ApiKey>>, Problems> {
        let mut reader = Reader::new(lookup);
        let api_keys = reader.optional("api_keys", parse_api_keys);
        reader.finish(Some(api_keys))
    }

    /// Reads `caller_audience`; `None` when it is empty (and nothing more is read). Else
    /// the rest of the token policy, in this order: `tenant_id` and `caller_tenant_id`
    /// (whose tokens), `login_base_url` (the v2 issuer and the JWKS URL), `client_id` (an
    /// audience alias), `allowed_callers`, `caller_role`. `client_id` is read leniently:
    /// a malformed one only stops being an alias, and the Graph settings report it.
    pub fn tokens(lookup: Lookup) -> Result<Option<CallerPolicy>, Problems> {
        let mut reader = Reader::new(lookup);
        let Some(audience) = reader.optional("caller_audience", caller_token::parse_audience) else {
            return reader.finish(Some(None));
        };
        let tenant_id = reader.value("tenant_id");
        let caller_tenant_id = reader.optional_value("caller_tenant_id");
        let tenant = tenant_id.and_then(|tenant_id| {
            caller_token::caller_tenant(&tenant_id, caller_tenant_id.as_deref())
                .map_err(|problem| reader.problems.invalid.push(problem))
                .ok()
        });
        let login_base_url = reader.read("login_base_url", parse_origin);
        let client_id = lookup("client_id").ok().flatten().and_then(|v| Guid::parse(v.trim()));
        let allowed_callers = reader.optional("allowed_callers", caller_token::parse_allowed_callers);
        let caller_role = reader.optional("caller_role", caller_token::parse_caller_role);
        let policy = (|| {
            Some(CallerPolicy {
                tenant: tenant?,
                login_base_url: login_base_url?,
                audience,
                client_id,
                allowed_callers: allowed_callers.unwrap_or_default(),
                caller_role,
            })
        })();
        reader.finish(policy.map(Some))
    }

    /// Both parts (for `/healthz`). With neither enabled, `api_keys` is named missing
    /// (the 500 of a revoke route says either will do).
    fn problems(lookup: Lookup) -> Problems {
        let mut problems = Problems::default();
        let api_keys = Self::api_keys(lookup).map_err(|p| problems.add(p)).ok().flatten();
        let tokens = Self::tokens(lookup).map_err(|p| problems.add(p)).ok().flatten();
        if problems.is_empty() && api_keys.is_none() && tokens.is_none() {
            problems.missing.push("api_keys");
        }
        problems
    }
}

/// The 500 for a deployment with no caller credential at all (SPEC.md: fail closed).
pub fn no_caller_credential() -> String {
    "The component is misconfigured: no caller credential is set. Set api_keys (callers send x-api-key) or \
     caller_audience (callers send an Entra ID access token as Authorization: Bearer), or both."
        .to_string()
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
        let max_revocations = reader.read("max_revocations", parse_limit);
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
                max_revocations: max_revocations?,
            })
        })();
        reader.finish(settings)
    }
}

impl CredentialChoice {
    /// Reads `credential`, and with `managed_identity` also `managed_identity_client_id`.
    pub fn load(lookup: Lookup) -> Result<CredentialChoice, Problems> {
        match Self::read(lookup) {
            (Some(choice), problems) if problems.is_empty() => Ok(choice),
            (_, problems) => Err(problems),
        }
    }

    /// The choice as far as it can be read (a malformed managed identity client id still
    /// leaves the kind known, so `/healthz` can check the rest), and the problems.
    fn read(lookup: Lookup) -> (Option<CredentialChoice>, Problems) {
        let mut reader = Reader::new(lookup);
        let choice = match reader.optional("credential", parse_credential) {
            None if !reader.problems.is_empty() => None,
            None => Some(CredentialChoice::Default),
            Some(CredentialChoice::ManagedIdentity { .. }) => {
                let client_id = reader.optional("managed_identity_client_id", |v| {
                    Guid::parse(v).ok_or_else(|| "must be the user-assigned managed identity's client id, a GUID".to_string())
                });
                Some(CredentialChoice::ManagedIdentity { client_id })
            }
            Some(choice) => Some(choice),
        };
        (choice, reader.problems)
    }

    /// The choice as the token cache key names it: tokens of different credentials (and
    /// of different managed identities) never share an entry.
    pub fn cache_tag(&self) -> String {
        match self {
            CredentialChoice::Default => "default".into(),
            CredentialChoice::Secret => "secret".into(),
            CredentialChoice::Certificate(_) => "certificate".into(),
            CredentialChoice::ManagedIdentity { client_id: None } => "managed_identity".into(),
            CredentialChoice::ManagedIdentity { client_id: Some(id) } => format!("managed_identity:{id}"),
        }
    }
}

/// `credential`: one of the three kinds (any case). The certificate's assertion is
/// signed PS256, or RS256 with `certificate_rs256`: both are in use, and choosing here
/// costs no variable of its own (every manifest variable is a provider lookup per
/// Graph-calling request in a vault-first layout).
fn parse_credential(text: &str) -> Result<CredentialChoice, String> {
    match text.to_ascii_lowercase().as_str() {
        "secret" => Ok(CredentialChoice::Secret),
        "certificate" => Ok(CredentialChoice::Certificate(AssertionAlg::Ps256)),
        "certificate_rs256" => Ok(CredentialChoice::Certificate(AssertionAlg::Rs256)),
        "managed_identity" => Ok(CredentialChoice::ManagedIdentity { client_id: None }),
        _ => Err("must be secret, certificate (certificate_rs256 to sign RS256) or managed_identity".into()),
    }
}

impl Credential {
    /// Reads the credential `choice` names: `client_secret`; `client_certificate` and
    /// `client_private_key`; or `managed_identity_endpoint` and, for an App Service
    /// endpoint, `managed_identity_header`. The default reads `client_private_key` first:
    /// set, it is the certificate (PS256), else the client secret.
    pub fn load(lookup: Lookup, choice: &CredentialChoice) -> Result<Credential, Problems> {
        let mut reader = Reader::new(lookup);
        let credential = match *choice {
            CredentialChoice::Default => match reader.optional("client_private_key", |v| Ok(Secret::new(v))) {
                Some(key) => reader.certificate(Some(key), AssertionAlg::Ps256),
                None if reader.problems.is_empty() => {
                    reader.read("client_secret", |v| Ok(Secret::new(v))).map(Credential::ClientSecret)
                }
                None => None,
            },
            CredentialChoice::Secret => {
                reader.read("client_secret", |v| Ok(Secret::new(v))).map(Credential::ClientSecret)
            }
            CredentialChoice::Certificate(alg) => {
                let key = reader.read("client_private_key", |v| Ok(Secret::new(v)));
                reader.certificate(key, alg)
            }
            CredentialChoice::ManagedIdentity { client_id } => {
                let endpoint = match reader.optional("managed_identity_endpoint", managed_identity::parse_endpoint) {
                    None => Some(Endpoint::Imds { origin: managed_identity::IMDS_ENDPOINT.into() }),
                    Some(EndpointSetting::Imds { origin }) => Some(Endpoint::Imds { origin }),
                    Some(EndpointSetting::AppService { url }) => reader
                        .read("managed_identity_header", |v| Ok(Secret::new(v)))
                        .map(|header| Endpoint::AppService { url, header }),
                };
                endpoint.map(|endpoint| Credential::ManagedIdentity(ManagedIdentity { endpoint, client_id }))
            }
        };
        reader.finish(credential)
    }
}

/// Every setting, for `/healthz`: `None` when all are good, else every problem, Graph
/// settings first, then the credential, then the caller's. A certificate that has
/// expired by `now_unix` (asked only for a certificate) is `invalid`: every token request
/// would fail, and a probe should say so before a revoke does.
pub fn check_all(lookup: Lookup, now_unix: &dyn Fn() -> u64) -> Option<Problems> {
    let mut problems = Problems::default();
    problems.add(GraphSettings::load(lookup).err().unwrap_or_default());
    let (choice, choice_problems) = CredentialChoice::read(lookup);
    problems.add(choice_problems);
    if let Some(choice) = choice {
        match Credential::load(lookup, &choice) {
            Err(credential_problems) => problems.add(credential_problems),
            Ok(Credential::Certificate { certificate, .. }) if now_unix() >= certificate.not_after() => {
                problems.invalid.push(("client_certificate", "has expired".into()));
            }
            Ok(_) => {}
        }
    }
    problems.add(CallerSettings::problems(lookup));
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
        max_revocations: 300,
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
    parse_origin_where(
        text,
        is_loopback,
        "must use https:// (plain http:// is allowed only for a loopback host: 127.0.0.0/8, localhost or [::1])",
    )
}

/// [`parse_origin`], plain `http://` allowed for hosts `plain_ok` accepts, else `plain_rule`.
pub fn parse_origin_where(text: &str, plain_ok: fn(&str) -> bool, plain_rule: &str) -> Result<String, String> {
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
    if !https && !plain_ok(host) {
        return Err(plain_rule.into());
    }
    Ok(text[..text.len() - (rest.len() - authority.len())].to_ascii_lowercase())
}

/// `localhost`, `[::1]`, or an IPv4 address in `127.0.0.0/8` written as four decimal numbers.
pub fn is_loopback(host: &str) -> bool {
    if host.eq_ignore_ascii_case("localhost") || host == "[::1]" {
        return true;
    }
    let octets: Vec<&str> = host.split('.').collect();
    octets.len() == 4
        && octets[0] == "127"
        && octets.iter().all(|o| !o.is_empty() && o.len() <= 3 && o.bytes().all(|b| b.is_ascii_digit()) && o.parse::<u16>().is_ok_and(|n| n <= 255))
}

/// A whole number of users, `0` meaning no limit (the abuse brake off).
fn parse_limit(text: &str) -> Result<u64, String> {
    text.parse::<u64>().map_err(|_| "must be a whole number of users per 10 minutes (0 turns the brake off)".to_string())
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

    /// The wall clock, for [`check_all`]'s certificate expiry.
    fn now() -> u64 {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
    }

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
            ("max_revocations", "300".to_string()),
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
        assert_eq!(CallerSettings::api_keys(&lookup(&vars)).unwrap().unwrap().len(), 2);
        assert!(CallerSettings::tokens(&lookup(&vars)).unwrap().is_none(), "caller_audience is not set");
        assert_eq!(CredentialChoice::load(&lookup(&vars)).unwrap(), CredentialChoice::Default);
        let Ok(Credential::ClientSecret(secret)) = Credential::load(&lookup(&vars), &CredentialChoice::Default) else {
            panic!("the default credential is the client secret");
        };
        assert_eq!(secret.expose(), "s3cr3t~value");
        assert_eq!(check_all(&lookup(&vars), &now), None);
    }

    #[test]
    fn each_part_reads_only_its_own_variables() {
        let vars = good();
        let read = RefCell::new(Vec::new());
        let counting = |name: &str| {
            read.borrow_mut().push(name.to_string());
            Ok(vars.get(name).cloned())
        };
        CallerSettings::api_keys(&counting).unwrap();
        assert_eq!(read.take(), vec!["api_keys"]);
        assert!(CallerSettings::tokens(&counting).unwrap().is_none());
        assert_eq!(read.take(), vec!["caller_audience"], "tokens off: nothing more is read");
        GraphSettings::load(&counting).unwrap();
        assert_eq!(
            read.take(),
            vec!["tenant_id", "client_id", "graph_base_url", "login_base_url", "time_budget_ms", "max_users", "max_revocations"]
        );
        assert_eq!(CredentialChoice::load(&counting).unwrap(), CredentialChoice::Default);
        assert_eq!(read.take(), vec!["credential"]);
        Credential::load(&counting, &CredentialChoice::Default).unwrap();
        assert_eq!(read.take(), vec!["client_private_key", "client_secret"], "no key: the client secret");
    }

    #[test]
    fn missing_and_empty_variables_are_named_together() {
        let mut vars = good();
        vars.remove("client_secret");
        vars.insert("api_keys", "  ".into());
        let problems = check_all(&lookup(&vars), &now).unwrap();
        assert_eq!(problems.missing, vec!["client_secret", "api_keys"]);
        assert!(problems.describe().contains("client_secret, api_keys"));
        assert_eq!(Credential::load(&lookup(&vars), &CredentialChoice::Default).unwrap_err().missing, vec!["client_secret"]);
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
        vars.insert("max_revocations", "-1".into());
        let problems = check_all(&lookup(&vars), &now).unwrap();
        let names: Vec<_> = problems.invalid.iter().map(|(n, _)| *n).collect();
        assert_eq!(
            names,
            vec!["tenant_id", "client_id", "graph_base_url", "time_budget_ms", "max_users", "max_revocations", "api_keys"]
        );
        let text = problems.describe();
        assert!(!text.contains("short-key") && !text.contains("evil") && !text.contains("lots") && !text.contains("-1"));
        assert!(text.contains("shorter than 32"));
    }

    #[test]
    fn max_revocations_is_a_count_and_zero_turns_the_brake_off() {
        let mut vars = good();
        for (text, value) in [("0", 0), ("1", 1), (" 300 ", 300), ("18446744073709551615", u64::MAX)] {
            vars.insert("max_revocations", text.into());
            assert_eq!(GraphSettings::load(&lookup(&vars)).unwrap().max_revocations, value, "{text}");
        }
        for bad in ["lots", "-1", "1.5", "1e3", "300 users", "18446744073709551616"] {
            vars.insert("max_revocations", bad.into());
            let problems = GraphSettings::load(&lookup(&vars)).unwrap_err();
            assert_eq!(problems.invalid.iter().map(|(n, _)| *n).collect::<Vec<_>>(), vec!["max_revocations"], "{bad}");
            assert!(problems.describe().contains("0 turns the brake off"), "{}", problems.describe());
        }
        vars.insert("max_revocations", "".into());
        assert_eq!(GraphSettings::load(&lookup(&vars)).unwrap_err().missing, vec!["max_revocations"]);
    }

    #[test]
    fn a_host_read_error_is_a_named_problem() {
        let vars = good();
        let failing = |name: &str| if name == "client_secret" { Err(()) } else { Ok(vars.get(name).cloned()) };
        assert_eq!(Credential::load(&failing, &CredentialChoice::Secret).unwrap_err().invalid[0].0, "client_secret");
        assert_eq!(check_all(&failing, &now).unwrap().invalid[0].0, "client_secret");
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

    const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";

    fn with_tokens() -> HashMap<&'static str, String> {
        let mut vars = good();
        vars.insert("caller_audience", "api://graph-revoke/".into());
        vars.insert("caller_tenant_id", TENANT.into());
        vars
    }

    #[test]
    fn the_token_policy_is_read_in_a_fixed_order_when_caller_audience_is_set() {
        let mut vars = with_tokens();
        vars.insert("allowed_callers", "aaaaaaaa-0000-4000-8000-000000000001, AAAAAAAA-0000-4000-8000-000000000002".into());
        vars.insert("caller_role", " Sessions.Revoke ".into());
        let read = RefCell::new(Vec::new());
        let counting = |name: &str| {
            read.borrow_mut().push(name.to_string());
            Ok(vars.get(name).cloned())
        };
        let policy = CallerSettings::tokens(&counting).unwrap().unwrap();
        assert_eq!(
            read.take(),
            ["caller_audience", "tenant_id", "caller_tenant_id", "login_base_url", "client_id", "allowed_callers", "caller_role"]
        );
        assert_eq!(policy.audience, "api://graph-revoke");
        assert_eq!(policy.tenant, Guid::parse(TENANT).unwrap(), "tenant_id is a domain: caller_tenant_id names the tenant");
        assert_eq!(policy.login_base_url, "http://127.0.0.1:8080");
        assert_eq!(policy.client_id, Guid::parse("11111111-2222-3333-4444-555555555555"));
        assert_eq!(policy.allowed_callers.len(), 2);
        assert_eq!(policy.caller_role.as_deref(), Some("Sessions.Revoke"));
        assert_eq!(check_all(&lookup(&vars), &now), None);
    }

    #[test]
    fn api_keys_and_tokens_are_each_optional_but_one_is_required() {
        let mut vars = with_tokens();
        vars.remove("api_keys");
        assert!(CallerSettings::api_keys(&lookup(&vars)).unwrap().is_none());
        assert_eq!(check_all(&lookup(&vars), &now), None, "tokens alone suffice");
        vars.remove("caller_audience");
        let problems = check_all(&lookup(&vars), &now).unwrap();
        assert_eq!((problems.missing, problems.invalid.len()), (vec!["api_keys"], 0));
        assert!(no_caller_credential().contains("api_keys") && no_caller_credential().contains("caller_audience"));
    }

    #[test]
    fn a_domain_tenant_needs_caller_tenant_id_and_every_token_setting_is_checked() {
        let mut vars = with_tokens();
        vars.remove("caller_tenant_id");
        let problems = CallerSettings::tokens(&lookup(&vars)).unwrap_err();
        assert_eq!(problems.invalid[0].0, "caller_tenant_id");
        assert!(problems.invalid[0].1.contains("tenant_id is a domain"), "{problems:?}");
        // A GUID tenant_id suffices.
        vars.insert("tenant_id", TENANT.to_uppercase());
        assert_eq!(CallerSettings::tokens(&lookup(&vars)).unwrap().unwrap().tenant, Guid::parse(TENANT).unwrap());

        let mut vars = with_tokens();
        vars.insert("caller_audience", "https://graph.microsoft.com".into());
        vars.insert("allowed_callers", "my-logic-app".into());
        vars.insert("caller_role", "two words".into());
        vars.insert("login_base_url", "http://login.example".into());
        let problems = check_all(&lookup(&vars), &now).unwrap();
        let names: Vec<_> = problems.invalid.iter().map(|(n, _)| *n).collect();
        assert_eq!(names, ["login_base_url", "caller_audience"], "a malformed caller_audience stops the token policy there");
        vars.insert("caller_audience", "api://graph-revoke".into());
        let problems = check_all(&lookup(&vars), &now).unwrap();
        let names: Vec<_> = problems.invalid.iter().map(|(n, _)| *n).collect();
        assert_eq!(names, ["login_base_url", "allowed_callers", "caller_role"], "each variable named once");
        assert!(!problems.describe().contains("my-logic-app") && !problems.describe().contains("two words"));
    }

    fn reads_of(vars: &HashMap<&'static str, String>, load: impl FnOnce(Lookup)) -> Vec<String> {
        let read = RefCell::new(Vec::new());
        let counting = |name: &str| {
            read.borrow_mut().push(name.to_string());
            Ok(vars.get(name).cloned())
        };
        load(&counting);
        read.take()
    }

    #[test]
    fn the_credential_is_chosen_by_credential_and_only_its_own_variables_are_read() {
        let mut vars = good();
        vars.insert("credential", " Managed_Identity ".into());
        vars.insert("managed_identity_client_id", "0A1B2C3D-4E5F-6071-8293-A4B5C6D7E8F9".into());
        let choice = CredentialChoice::load(&lookup(&vars)).unwrap();
        let user_assigned = Guid::parse("0a1b2c3d-4e5f-6071-8293-a4b5c6d7e8f9");
        assert_eq!(choice, CredentialChoice::ManagedIdentity { client_id: user_assigned });
        assert_eq!(choice.cache_tag(), "managed_identity:0a1b2c3d-4e5f-6071-8293-a4b5c6d7e8f9");
        assert_eq!(
            reads_of(&vars, |l| drop(CredentialChoice::load(l))),
            ["credential", "managed_identity_client_id"]
        );
        // IMDS by default: nothing more than the endpoint is read, and no client secret.
        assert_eq!(reads_of(&vars, |l| drop(Credential::load(l, &choice))), ["managed_identity_endpoint"]);
        let Ok(Credential::ManagedIdentity(identity)) = Credential::load(&lookup(&vars), &choice) else { panic!() };
        assert!(matches!(&identity.endpoint, Endpoint::Imds { origin } if origin == "http://169.254.169.254"));
        assert_eq!(identity.client_id, user_assigned);
        vars.remove("client_secret");
        assert_eq!(check_all(&lookup(&vars), &now), None, "managed identity needs no client secret");

        // App Service: the URL and the header.
        vars.insert("managed_identity_endpoint", "http://localhost:42356/msi/token".into());
        vars.insert("managed_identity_header", "hdr-value".into());
        assert_eq!(
            reads_of(&vars, |l| drop(Credential::load(l, &choice))),
            ["managed_identity_endpoint", "managed_identity_header"]
        );
        let Ok(Credential::ManagedIdentity(identity)) = Credential::load(&lookup(&vars), &choice) else { panic!() };
        assert!(matches!(&identity.endpoint, Endpoint::AppService { url, .. } if url == "http://localhost:42356/msi/token"));
        vars.remove("managed_identity_header");
        let problems = check_all(&lookup(&vars), &now).unwrap();
        assert_eq!(problems.missing, ["managed_identity_header"]);

        // A system-assigned identity; `secret` explicitly.
        vars.insert("credential", "managed_identity".into());
        vars.remove("managed_identity_client_id");
        assert_eq!(CredentialChoice::load(&lookup(&vars)).unwrap().cache_tag(), "managed_identity");
        vars.insert("credential", "SECRET".into());
        assert_eq!(CredentialChoice::load(&lookup(&vars)).unwrap(), CredentialChoice::Secret);
        assert_eq!(reads_of(&vars, |l| drop(CredentialChoice::load(l))), ["credential"]);
        assert_eq!(check_all(&lookup(&vars), &now).unwrap().missing, ["client_secret"]);
    }

    #[test]
    fn malformed_credential_settings_are_named_without_their_value() {
        let mut vars = good();
        vars.insert("credential", "password".into());
        let problems = CredentialChoice::load(&lookup(&vars)).unwrap_err();
        assert_eq!(problems.invalid[0].0, "credential");
        assert_eq!(check_all(&lookup(&vars), &now).unwrap().invalid.iter().map(|(n, _)| *n).collect::<Vec<_>>(), ["credential"]);

        vars.insert("credential", "managed_identity".into());
        for (name, value) in [
            ("managed_identity_client_id", "my-identity"),
            ("managed_identity_endpoint", "http://10.0.0.4/msi/token"),
            ("managed_identity_endpoint", "ftp://169.254.169.254"),
            ("managed_identity_endpoint", "http://localhost:42356/msi/token#frag"),
            ("managed_identity_endpoint", "http://localhost:42356/msi token"),
        ] {
            let mut vars = vars.clone();
            vars.insert(name, value.into());
            vars.insert("managed_identity_header", "h".into());
            let problems = check_all(&lookup(&vars), &now).unwrap();
            assert_eq!(problems.invalid.iter().map(|(n, _)| *n).collect::<Vec<_>>(), [name], "{value}");
            assert!(!problems.describe().contains(value), "{}", problems.describe());
        }
    }

    #[test]
    fn managed_identity_endpoints_are_node_local_or_https() {
        use managed_identity::parse_endpoint;
        for (text, expected) in [
            ("http://169.254.169.254", EndpointSetting::Imds { origin: "http://169.254.169.254".into() }),
            ("http://127.0.0.1:8080/", EndpointSetting::Imds { origin: "http://127.0.0.1:8080".into() }),
            ("http://localhost:42356/msi/token", EndpointSetting::AppService { url: "http://localhost:42356/msi/token".into() }),
            ("http://169.254.129.2:8081/msi/token", EndpointSetting::AppService { url: "http://169.254.129.2:8081/msi/token".into() }),
            ("http://127.0.0.1:41234/MSI/token/?x=1", EndpointSetting::AppService { url: "http://127.0.0.1:41234/MSI/token/?x=1".into() }),
            ("https://identity.example.net/token", EndpointSetting::AppService { url: "https://identity.example.net/token".into() }),
        ] {
            assert_eq!(parse_endpoint(text), Ok(expected), "{text}");
        }
        for text in ["http://169.255.169.254", "http://10.0.0.4:8081/msi/token", "http://metadata.example/x", "http://169.254.169.254.nip.io"] {
            assert!(parse_endpoint(text).unwrap_err().contains("must use https://"), "{text}");
        }
        for text in ["169.254.169.254", "http://", "http://[fe80::1]/msi/token", "https://host/a\\b"] {
            assert!(parse_endpoint(text).is_err(), "{text}");
        }
    }

    fn with_certificate(vars: &mut HashMap<&'static str, String>) {
        let (pem, _) = crate::test_keys::certificate(crate::test_keys::signer());
        vars.insert("client_certificate", pem);
        vars.insert("client_private_key", crate::test_keys::private_key_pem(crate::test_keys::signer()));
    }

    #[test]
    fn a_private_key_makes_the_certificate_the_default_and_certificate_rs256_chooses_rs256() {
        let mut vars = good();
        with_certificate(&mut vars);
        let choice = CredentialChoice::load(&lookup(&vars)).unwrap();
        assert_eq!(choice, CredentialChoice::Default);
        assert_eq!(reads_of(&vars, |l| drop(Credential::load(l, &choice))), ["client_private_key", "client_certificate"]);
        let Ok(Credential::Certificate { alg: AssertionAlg::Ps256, .. }) = Credential::load(&lookup(&vars), &choice) else {
            panic!("the default with a key is the certificate, PS256");
        };
        for (value, alg) in [("certificate", AssertionAlg::Ps256), ("Certificate_RS256", AssertionAlg::Rs256)] {
            vars.insert("credential", value.into());
            let choice = CredentialChoice::load(&lookup(&vars)).unwrap();
            assert_eq!((choice, choice.cache_tag()), (CredentialChoice::Certificate(alg), "certificate".to_string()));
            let Ok(Credential::Certificate { alg: read, .. }) = Credential::load(&lookup(&vars), &choice) else { panic!() };
            assert_eq!(read, alg);
            assert_eq!(reads_of(&vars, |l| drop(Credential::load(l, &choice))), ["client_private_key", "client_certificate"]);
        }
        vars.remove("client_secret");
        assert_eq!(check_all(&lookup(&vars), &now), None, "a certificate needs no client secret");
        // `secret` explicitly ignores a key that is set.
        vars.insert("client_secret", "s".into());
        vars.insert("credential", "secret".into());
        assert!(matches!(Credential::load(&lookup(&vars), &CredentialChoice::Secret), Ok(Credential::ClientSecret(_))));
    }

    #[test]
    fn certificate_problems_are_named_without_values() {
        let mut vars = good();
        vars.insert("credential", "certificate".into());
        assert_eq!(check_all(&lookup(&vars), &now).unwrap().missing, ["client_private_key", "client_certificate"]);
        with_certificate(&mut vars);
        let other = crate::test_keys::private_key_pem(crate::test_keys::other());
        vars.insert("client_private_key", other.clone());
        let problems = check_all(&lookup(&vars), &now).unwrap();
        assert_eq!(problems.invalid.iter().map(|(n, _)| *n).collect::<Vec<_>>(), ["client_certificate"]);
        assert!(problems.describe().contains("does not belong to client_private_key"), "{}", problems.describe());
        let body_line = other.lines().nth(1).unwrap();
        assert!(!problems.describe().contains(body_line));
        vars.insert("client_private_key", "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----".into());
        let problems = check_all(&lookup(&vars), &now).unwrap();
        assert_eq!(problems.invalid.iter().map(|(n, _)| *n).collect::<Vec<_>>(), ["client_private_key"]);
    }

    #[test]
    fn healthz_names_an_expired_certificate_and_reads_the_clock_only_for_a_certificate() {
        let mut vars = good();
        with_certificate(&mut vars);
        let not_after = match Credential::load(&lookup(&vars), &CredentialChoice::Default) {
            Ok(Credential::Certificate { certificate, .. }) => certificate.not_after(),
            _ => panic!("the key makes the certificate the credential"),
        };
        assert_eq!(check_all(&lookup(&vars), &|| not_after - 1), None, "valid until its notAfter");
        let problems = check_all(&lookup(&vars), &|| not_after).unwrap();
        assert_eq!((problems.missing.len(), problems.invalid.clone()), (0, vec![("client_certificate", "has expired".to_string())]));
        let (expired, _) = crate::test_keys::expired_certificate(crate::test_keys::signer());
        vars.insert("client_certificate", expired);
        assert_eq!(check_all(&lookup(&vars), &now).unwrap().invalid[0].0, "client_certificate", "expired an hour ago");
        let asked = std::cell::Cell::new(0);
        let clock = || {
            asked.set(asked.get() + 1);
            now()
        };
        assert_eq!(check_all(&lookup(&good()), &clock), None);
        assert_eq!(asked.get(), 0, "a client secret needs no clock");
    }
}
