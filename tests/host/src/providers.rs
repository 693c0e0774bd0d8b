//! Spin's variable providers, as Spin chains them, with every lookup counted.
//!
//! What Spin does (checked in Spin's source at v3.6.3 and v4.0.2, the same since 3.0):
//!
//! - `crates/runtime-config/src/variables.rs`: the providers are built in the order the
//!   runtime config lists `[[variables_provider]]` (or the legacy `[[config_provider]]`),
//!   and an environment provider (`SPIN_VARIABLE_*`, plus a `.env` file) is **always**
//!   appended after them (`providers.extend(var_provider)`), also when the runtime config
//!   lists `type = "env"` or `type = "static"` itself. Listing `type = "env"` first puts
//!   a second environment provider in front; it does not remove the appended one.
//! - `crates/expressions/src/lib.rs`, `ProviderResolver::resolve_variable`: every read
//!   asks the providers in order, uncached; the first `Some` wins; an `Err` ends the
//!   resolution with that error (no fall-through); the manifest default is used only
//!   after every provider answered `None`, and a variable with neither is an error.
//! - `crates/variables-env`: `{prefix}_{NAME upper-cased}`, prefix `SPIN_VARIABLE`.
//! - `crates/variables-static`: the `values` table.
//! - `crates/variables-vault`: HashiCorp Vault KV v2 at `mount`, path `prefix/name` (or
//!   `name`), field `value`; a 404 is `None` (falls through), any other failure is an
//!   error. A new HTTP client per lookup.
//! - `crates/variables-azure`: Azure Key Vault's secret named exactly like the variable;
//!   a missing secret is an error (no fall-through), and Key Vault names allow only
//!   letters, digits and `-`, so a name with `_` can never be found: an error too.
//!
//! The test host keeps the same order and the same outcomes. Vault-like providers read
//! a [`VaultContents`] given by the test and may wait a configurable latency per lookup
//! (a vault round trip). Each `get` on any provider is one lookup, counted per variable,
//! provider kind and cause ([`ProviderLookups`]).

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The kinds of variable provider Spin's runtime config knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ProviderKind {
    /// `type = "env"`, and the environment provider Spin always appends.
    Env,
    /// `type = "static"`.
    Static,
    /// `type = "vault"`: HashiCorp Vault.
    Vault,
    /// `type = "azure_key_vault"`.
    AzureKeyVault,
}

impl ProviderKind {
    /// The `type` in the runtime config.
    pub fn type_name(self) -> &'static str {
        match self {
            ProviderKind::Env => "env",
            ProviderKind::Static => "static",
            ProviderKind::Vault => "vault",
            ProviderKind::AzureKeyVault => "azure_key_vault",
        }
    }

    /// True for providers whose lookup is a network round trip to a secret store.
    pub fn is_vault(self) -> bool {
        matches!(self, ProviderKind::Vault | ProviderKind::AzureKeyVault)
    }
}

/// Why a provider was asked.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LookupCause {
    /// The component read a variable through `wasi:config/store`.
    ComponentRead,
    /// Spin resolved every application variable to check `allowed_outbound_hosts`, on
    /// the instance's first outbound request (`resolver.prepare()`).
    OutboundCheck,
}

/// What a test puts in the vault(s) of a runtime config.
///
/// For HashiCorp Vault the key is the secret's path as `vault kv put` names it,
/// `<mount>/<prefix>/<variable>` (e.g. `secret/graph-revoke/client_secret`), with field
/// `value`; for Azure Key Vault it is the secret's name (e.g. `clientsecret`).
pub type VaultContents = BTreeMap<String, String>;

/// One provider of a chain.
#[derive(Debug)]
pub(crate) enum Provider {
    Env {
        prefix: String,
        environment: Arc<BTreeMap<String, String>>,
    },
    Static {
        values: BTreeMap<String, String>,
    },
    Vault {
        mount: String,
        prefix: Option<String>,
        contents: Arc<VaultContents>,
        latency: Duration,
    },
    AzureKeyVault {
        contents: Arc<VaultContents>,
        latency: Duration,
    },
}

/// The prefix of Spin's environment provider.
pub(crate) const DEFAULT_ENV_PREFIX: &str = "SPIN_VARIABLE";

impl Provider {
    pub(crate) fn kind(&self) -> ProviderKind {
        match self {
            Provider::Env { .. } => ProviderKind::Env,
            Provider::Static { .. } => ProviderKind::Static,
            Provider::Vault { .. } => ProviderKind::Vault,
            Provider::AzureKeyVault { .. } => ProviderKind::AzureKeyVault,
        }
    }

    /// Spin's `Provider::get`: `Ok(None)` passes the question on, `Err` ends it.
    async fn get(&self, name: &str) -> Result<Option<String>, String> {
        match self {
            Provider::Env { prefix, environment } => Ok(environment.get(&env_name(prefix, name)).cloned()),
            Provider::Static { values } => Ok(values.get(name).cloned()),
            Provider::Vault { mount, prefix, contents, latency } => {
                wait(*latency).await;
                let path = match prefix {
                    Some(prefix) => format!("{mount}/{prefix}/{name}"),
                    None => format!("{mount}/{name}"),
                };
                // A 404 falls through to the next provider.
                Ok(contents.get(&path).cloned())
            }
            Provider::AzureKeyVault { contents, latency } => {
                wait(*latency).await;
                if !is_key_vault_name(name) {
                    return Err(format!(
                        "Failed to read variable from Azure Key Vault: {name:?} is not a valid \
                         secret name (letters, digits and '-' only)"
                    ));
                }
                contents.get(name).cloned().map(Some).ok_or_else(|| {
                    format!("Failed to read variable from Azure Key Vault: secret {name:?} not found")
                })
            }
        }
    }

    /// Spin's `Provider::may_resolve`, used when the app starts: only the environment
    /// and static providers can say no; a vault might hold anything.
    fn may_resolve(&self, name: &str) -> bool {
        match self {
            Provider::Env { prefix, environment } => environment.contains_key(&env_name(prefix, name)),
            Provider::Static { values } => values.contains_key(name),
            Provider::Vault { .. } | Provider::AzureKeyVault { .. } => true,
        }
    }
}

/// `SPIN_VARIABLE_TENANT_ID` for `tenant_id`.
pub(crate) fn env_name(prefix: &str, name: &str) -> String {
    format!("{prefix}_{}", name.to_ascii_uppercase())
}

/// Azure Key Vault secret names: 1 to 127 letters, digits and `-`.
pub fn is_key_vault_name(name: &str) -> bool {
    (1..=127).contains(&name.len()) && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
}

async fn wait(latency: Duration) {
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
}

/// The providers of one app, in the order Spin asks them, and the lookup counter.
#[derive(Debug)]
pub(crate) struct ProviderChain {
    providers: Vec<Provider>,
    counter: LookupCounter,
}

impl ProviderChain {
    pub(crate) fn new(providers: Vec<Provider>) -> ProviderChain {
        ProviderChain { providers, counter: LookupCounter::default() }
    }

    pub(crate) fn counter(&self) -> &LookupCounter {
        &self.counter
    }

    /// The kinds in the order they are asked.
    pub(crate) fn kinds(&self) -> Vec<ProviderKind> {
        self.providers.iter().map(Provider::kind).collect()
    }

    /// Asks the providers in order. `Ok(None)`: every provider passed (the caller then
    /// uses the manifest default); `Err`: a provider failed, which ends the resolution.
    pub(crate) async fn get(&self, name: &str, cause: LookupCause) -> Result<Option<String>, String> {
        for provider in &self.providers {
            self.counter.record(name, provider.kind(), cause);
            if let Some(value) = provider.get(name).await? {
                return Ok(Some(value));
            }
        }
        Ok(None)
    }

    /// Whether some provider might answer `name` (Spin's start-up check of required
    /// variables). Not a lookup: nothing is counted.
    pub(crate) fn may_resolve(&self, name: &str) -> bool {
        self.providers.iter().any(|p| p.may_resolve(name))
    }
}

/// Lookups per (variable, provider kind, cause).
type Counts = BTreeMap<(String, ProviderKind, LookupCause), usize>;

/// Counts of provider lookups, shared by an app and every request of it.
#[derive(Clone, Debug, Default)]
pub(crate) struct LookupCounter(Arc<Mutex<Counts>>);

impl LookupCounter {
    fn record(&self, name: &str, kind: ProviderKind, cause: LookupCause) {
        *self.0.lock().unwrap().entry((name.to_string(), kind, cause)).or_default() += 1;
    }

    pub(crate) fn snapshot(&self) -> ProviderLookups {
        ProviderLookups { counts: self.0.lock().unwrap().clone() }
    }

    pub(crate) fn reset(&self) {
        self.0.lock().unwrap().clear();
    }

    pub(crate) fn take(&self) -> ProviderLookups {
        ProviderLookups { counts: std::mem::take(&mut *self.0.lock().unwrap()) }
    }
}

/// Provider lookups of an app since it started or since the counts were last reset:
/// per variable, provider kind and cause. A lookup on a vault kind
/// ([`ProviderKind::is_vault`]) is one round trip to the secret store.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProviderLookups {
    counts: Counts,
}

impl ProviderLookups {
    fn sum(&self, keep: impl Fn(&str, ProviderKind, LookupCause) -> bool) -> usize {
        self.counts.iter().filter(|((n, k, c), _)| keep(n, *k, *c)).map(|(_, count)| count).sum()
    }

    /// Every lookup on every provider.
    pub fn total(&self) -> usize {
        self.sum(|_, _, _| true)
    }

    /// Lookups on vault providers (HashiCorp Vault and Azure Key Vault): round trips.
    pub fn vault(&self) -> usize {
        self.sum(|_, k, _| k.is_vault())
    }

    /// Lookups on providers of one kind.
    pub fn of_kind(&self, kind: ProviderKind) -> usize {
        self.sum(|_, k, _| k == kind)
    }

    /// Lookups of one variable, on every provider.
    pub fn of_variable(&self, name: &str) -> usize {
        self.sum(|n, _, _| n == name)
    }

    /// Lookups of one variable on providers of one kind.
    pub fn get(&self, name: &str, kind: ProviderKind) -> usize {
        self.sum(|n, k, _| n == name && k == kind)
    }

    /// Only the lookups made for this cause.
    pub fn caused_by(&self, cause: LookupCause) -> ProviderLookups {
        ProviderLookups { counts: self.counts.iter().filter(|((_, _, c), _)| *c == cause).map(|(k, v)| (k.clone(), *v)).collect() }
    }

    /// Vault lookups per variable (variables with none left out).
    pub fn vault_by_variable(&self) -> BTreeMap<String, usize> {
        let mut out = BTreeMap::new();
        for ((name, kind, _), count) in &self.counts {
            if kind.is_vault() {
                *out.entry(name.clone()).or_default() += count;
            }
        }
        out
    }

    /// Every count: (variable, provider kind, cause) → lookups.
    pub fn entries(&self) -> impl Iterator<Item = (&str, ProviderKind, LookupCause, usize)> {
        self.counts.iter().map(|((n, k, c), v)| (n.as_str(), *k, *c, *v))
    }
}

impl fmt::Display for ProviderLookups {
    /// One line per variable, provider and cause, e.g. `client_secret vault outbound-check 1`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.counts.is_empty() {
            return write!(f, "(no lookups)");
        }
        for (i, ((name, kind, cause), count)) in self.counts.iter().enumerate() {
            let cause = match cause {
                LookupCause::ComponentRead => "component-read",
                LookupCause::OutboundCheck => "outbound-check",
            };
            let sep = if i == 0 { "" } else { "; " };
            write!(f, "{sep}{name} {} {cause} {count}", kind.type_name())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Provider {
        Provider::Env {
            prefix: DEFAULT_ENV_PREFIX.into(),
            environment: Arc::new(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()),
        }
    }

    fn vault(pairs: &[(&str, &str)]) -> Provider {
        Provider::Vault {
            mount: "secret".into(),
            prefix: Some("app".into()),
            contents: Arc::new(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()),
            latency: Duration::ZERO,
        }
    }

    fn key_vault(pairs: &[(&str, &str)]) -> Provider {
        Provider::AzureKeyVault {
            contents: Arc::new(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()),
            latency: Duration::ZERO,
        }
    }

    #[tokio::test]
    async fn the_first_answer_wins_and_every_provider_asked_is_counted() {
        let chain = ProviderChain::new(vec![
            vault(&[("secret/app/client_secret", "from-vault")]),
            env(&[("SPIN_VARIABLE_TENANT_ID", "t"), ("SPIN_VARIABLE_CLIENT_SECRET", "from-env")]),
        ]);
        assert_eq!(chain.get("client_secret", LookupCause::ComponentRead).await, Ok(Some("from-vault".into())));
        assert_eq!(chain.get("tenant_id", LookupCause::ComponentRead).await, Ok(Some("t".into())));
        assert_eq!(chain.get("nothing", LookupCause::OutboundCheck).await, Ok(None));
        let n = chain.counter().snapshot();
        assert_eq!(n.get("client_secret", ProviderKind::Vault), 1);
        assert_eq!(n.get("client_secret", ProviderKind::Env), 0, "the vault answered first");
        assert_eq!(n.get("tenant_id", ProviderKind::Vault), 1, "a vault 404 falls through");
        assert_eq!(n.get("tenant_id", ProviderKind::Env), 1);
        assert_eq!(n.of_variable("nothing"), 2);
        assert_eq!(n.vault(), 3);
        assert_eq!(n.total(), 5);
        assert_eq!(n.caused_by(LookupCause::OutboundCheck).total(), 2);
        assert_eq!(chain.counter().take().total(), 5);
        assert_eq!(chain.counter().snapshot().total(), 0);
    }

    #[tokio::test]
    async fn key_vault_misses_and_underscored_names_are_errors() {
        let chain = ProviderChain::new(vec![key_vault(&[("clientsecret", "s")]), env(&[("SPIN_VARIABLE_APIKEYS", "k")])]);
        assert_eq!(chain.get("clientsecret", LookupCause::ComponentRead).await, Ok(Some("s".into())));
        let miss = chain.get("apikeys", LookupCause::ComponentRead).await.unwrap_err();
        assert!(miss.contains("not found"), "{miss}");
        let underscored = chain.get("client_secret", LookupCause::ComponentRead).await.unwrap_err();
        assert!(underscored.contains("not a valid secret name"), "{underscored}");
        assert_eq!(chain.counter().snapshot().of_kind(ProviderKind::Env), 0, "an error does not fall through");
        assert!(is_key_vault_name("client-secret-2"));
        assert!(!is_key_vault_name("client_secret") && !is_key_vault_name(""));
    }

    #[tokio::test]
    async fn a_prefixed_env_provider_reads_its_own_names() {
        let chain = ProviderChain::new(vec![Provider::Env {
            prefix: "GR".into(),
            environment: Arc::new([("GR_TENANT_ID".to_string(), "t".to_string())].into()),
        }]);
        assert_eq!(chain.get("tenant_id", LookupCause::ComponentRead).await, Ok(Some("t".into())));
        assert!(chain.may_resolve("tenant_id") && !chain.may_resolve("client_id"));
        assert_eq!(chain.counter().snapshot().total(), 1, "may_resolve is not a lookup");
    }

    #[tokio::test]
    async fn vault_lookups_take_the_configured_latency() {
        let chain = ProviderChain::new(vec![Provider::AzureKeyVault {
            contents: Arc::new([("a".to_string(), "1".to_string())].into()),
            latency: Duration::from_millis(40),
        }]);
        let started = std::time::Instant::now();
        chain.get("a", LookupCause::ComponentRead).await.unwrap();
        assert!(started.elapsed() >= Duration::from_millis(40));
    }
}
