//! Spin runtime config files (`spin up --runtime-config-file`): checked against the keys
//! Spin accepts, and turned into the variable providers and key-value stores they
//! configure.
//!
//! The allow-list below is derived from Spin's source at v3.6.3 and v4.0.2 (identical
//! for everything listed here):
//!
//! - top level (`crates/runtime-config/src/lib.rs`; Spin refuses a file with any other
//!   top-level key, `validate_all_keys_used`): `variables_provider` (legacy name
//!   `config_provider`, read only when `variables_provider` is absent), `key_value_store`,
//!   `sqlite_database`, `llm_compute`, `client_tls`, `outbound_networking`,
//!   `outbound_http`, `state_dir`, `log_dir`, `max_instance_memory`. The contents of
//!   `sqlite_database` and the six after it except `outbound_http` are not checked here:
//!   this project uses none of them.
//! - `[outbound_http]` (`crates/factor-outbound-http/src/runtime_config/spin.rs`,
//!   `deny_unknown_fields`): `connection_pooling` (a bool; note Spin's quirk: without the
//!   table pooling is on, with the table and without the key it is *off*, the key's serde
//!   default) and `max_concurrent_requests` (accepted, not modelled).
//! - `[[variables_provider]]` (`crates/runtime-config/src/variables.rs`, an enum tagged by
//!   `type`, every variant `deny_unknown_fields` except `static`):
//!   - `env` (`crates/variables-env`): `prefix`, `dotenv_path`, both optional;
//!   - `static` (`crates/variables-static`): `values`, a table of strings;
//!   - `vault` (`crates/variables-vault`): `url`, `token`, `mount` required, `prefix`;
//!   - `azure_key_vault` (`crates/variables-azure`): `vault_url` required, `client_id`,
//!     `client_secret`, `tenant_id` (all three or none: none means the host's ambient
//!     identity), `authority_host` (`AzurePublicCloud`, `AzureChina`, `AzureGermany`,
//!     `AzureGovernment`).
//! - `[key_value_store.<label>]` (`crates/factor-key-value/src/runtime_config/spin.rs`,
//!   tagged by `type`): `spin` (`path`), `redis` (`url`, required), `azure_cosmos`
//!   (`account`, `database`, `container` required, `key`), `aws_dynamo` (`region`,
//!   `table` required, `access_key`, `secret_key`, `token`, `consistent_read`). Spin
//!   ignores unknown keys in these tables; the check here refuses them, so a typo
//!   (`uri` for `url`) fails a test instead of silently falling back.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{bail, ensure, Context, Result};

use crate::providers::ProviderKind;

/// The Spin versions whose source the allow-list was checked against.
pub const SPIN_VERSIONS_CHECKED: &str = "v3.6.3, v4.0.2";

const TOP_LEVEL_UNCHECKED: &[&str] = &[
    "sqlite_database",
    "llm_compute",
    "client_tls",
    "outbound_networking",
    "state_dir",
    "log_dir",
    "max_instance_memory",
];

/// One `[[variables_provider]]` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProviderConfig {
    Env { prefix: Option<String>, dotenv_path: Option<String> },
    Static { values: BTreeMap<String, String> },
    Vault { url: String, token: String, mount: String, prefix: Option<String> },
    AzureKeyVault { vault_url: String, service_principal: bool, authority_host: Option<String> },
}

impl ProviderConfig {
    pub fn kind(&self) -> ProviderKind {
        match self {
            ProviderConfig::Env { .. } => ProviderKind::Env,
            ProviderConfig::Static { .. } => ProviderKind::Static,
            ProviderConfig::Vault { .. } => ProviderKind::Vault,
            ProviderConfig::AzureKeyVault { .. } => ProviderKind::AzureKeyVault,
        }
    }
}

/// A parsed and checked runtime config.
#[derive(Clone, Debug, Default)]
pub struct RuntimeConfig {
    text: String,
    providers: Vec<ProviderConfig>,
    /// Label → store `type`.
    key_value_stores: BTreeMap<String, String>,
    /// Label → the store's options (strings only; e.g. redis `url`).
    key_value_options: BTreeMap<String, BTreeMap<String, String>>,
    /// `[outbound_http] connection_pooling` as Spin reads it; `None`: no such table.
    connection_pooling: Option<bool>,
}

impl RuntimeConfig {
    /// No runtime config: the environment provider alone, the default key-value store.
    pub fn none() -> RuntimeConfig {
        RuntimeConfig::default()
    }

    /// Reads and checks a runtime config file.
    pub fn load(path: &Path) -> Result<RuntimeConfig> {
        let text = std::fs::read_to_string(path).with_context(|| format!("cannot read runtime config {}", path.display()))?;
        RuntimeConfig::from_str(&text).with_context(|| format!("runtime config {} is not one Spin {SPIN_VERSIONS_CHECKED} accepts", path.display()))
    }

    /// A runtime config file of this project, by its path from the workspace root
    /// (e.g. `runtime-config/vault.toml`).
    pub fn load_project(relative: &str) -> Result<RuntimeConfig> {
        RuntimeConfig::load(&crate::manifest::workspace_root().join(relative))
    }

    /// `runtime-config/vault.toml` without its environment provider: the Vault alone
    /// (the shape documented before issue 13), which Spin follows with the environment.
    pub fn vault_alone() -> Result<RuntimeConfig> {
        let text = RuntimeConfig::load_project("runtime-config/vault.toml")?.text().to_string();
        let alone = text.replacen("[[variables_provider]]\ntype = \"env\"\n\n", "", 1);
        ensure!(alone != text, "runtime-config/vault.toml no longer lists the environment first the expected way");
        RuntimeConfig::from_str(&alone)
    }

    /// The settings that are not secrets as the documented environment-first layouts
    /// set them (`SPIN_VARIABLE_*`): every one, including those at their default, the
    /// caller-token settings empty (tokens off), the client-secret credential, and the
    /// other credentials' settings empty: an empty variable is an answer, so no provider
    /// after the environment is asked for it.
    pub fn environment_first_settings(
        tenant: &str,
        client_id: &str,
        login_base_url: &str,
        graph_base_url: &str,
    ) -> Vec<(&'static str, String)> {
        let set = [
            ("tenant_id", tenant),
            ("client_id", client_id),
            ("login_base_url", login_base_url),
            ("graph_base_url", graph_base_url),
            ("time_budget_ms", "25000"),
            ("max_users", "100"),
            ("max_revocations", "300"),
            ("credential", "secret"),
        ];
        let empty = [
            "caller_audience",
            "allowed_callers",
            "caller_role",
            "caller_tenant_id",
            "client_certificate",
            "client_private_key",
            "managed_identity_client_id",
            "managed_identity_endpoint",
            "managed_identity_header",
        ];
        set.into_iter().map(|(name, value)| (name, value.to_string())).chain(empty.map(|name| (name, String::new()))).collect()
    }

    /// Parses and checks runtime config text.
    #[allow(clippy::should_implement_trait)]
    pub fn from_str(text: &str) -> Result<RuntimeConfig> {
        let table: toml::Table = toml::from_str(text).context("not valid TOML")?;
        let mut config = RuntimeConfig { text: text.to_string(), ..RuntimeConfig::default() };
        for key in table.keys() {
            let known = ["variables_provider", "config_provider", "key_value_store", "outbound_http"].contains(&key.as_str())
                || TOP_LEVEL_UNCHECKED.contains(&key.as_str());
            ensure!(known, "unknown top-level key {key:?}: Spin refuses the file");
        }
        ensure!(
            !(table.contains_key("variables_provider") && table.contains_key("config_provider")),
            "both [[variables_provider]] and [[config_provider]]: Spin reads the first and refuses the second as unused"
        );
        if let Some(value) = table.get("variables_provider").or_else(|| table.get("config_provider")) {
            let array = value.as_array().context("variables_provider must be an array of tables ([[variables_provider]])")?;
            for (i, entry) in array.iter().enumerate() {
                let entry = entry.as_table().with_context(|| format!("variables_provider entry {} is not a table", i + 1))?;
                let provider = parse_provider(entry).with_context(|| format!("[[variables_provider]] number {}", i + 1))?;
                config.providers.push(provider);
            }
        }
        if let Some(value) = table.get("key_value_store") {
            let stores = value.as_table().context("key_value_store must be a table of labels ([key_value_store.<label>])")?;
            for (label, store) in stores {
                let store = store.as_table().with_context(|| format!("[key_value_store.{label}] is not a table"))?;
                let (kind, options) = parse_key_value_store(store).with_context(|| format!("[key_value_store.{label}]"))?;
                config.key_value_stores.insert(label.clone(), kind);
                config.key_value_options.insert(label.clone(), options);
            }
        }
        if let Some(value) = table.get("outbound_http") {
            let outbound = value.as_table().context("outbound_http must be a table ([outbound_http])")?;
            config.connection_pooling = Some(parse_outbound_http(outbound).context("[outbound_http]")?);
        }
        Ok(config)
    }

    /// Whether outbound connections are pooled across instances: Spin's default (on)
    /// without an `[outbound_http]` table.
    pub fn connection_pooling(&self) -> bool {
        self.connection_pooling.unwrap_or(true)
    }

    /// The file's text.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The `[[variables_provider]]` entries, in order (without the one Spin appends).
    pub fn providers(&self) -> &[ProviderConfig] {
        &self.providers
    }

    /// The kinds Spin asks, in order: the listed providers, then the environment
    /// provider Spin always appends.
    pub fn chain_kinds(&self) -> Vec<ProviderKind> {
        let mut kinds: Vec<ProviderKind> = self.providers.iter().map(ProviderConfig::kind).collect();
        kinds.push(ProviderKind::Env);
        kinds
    }

    /// `[key_value_store.<label>]` → its `type`.
    pub fn key_value_stores(&self) -> &BTreeMap<String, String> {
        &self.key_value_stores
    }

    /// A string option of a key-value store (e.g. `url` of a `redis` store).
    pub fn key_value_option(&self, label: &str, option: &str) -> Option<&str> {
        self.key_value_options.get(label)?.get(option).map(String::as_str)
    }
}

fn string(table: &toml::Table, key: &str) -> Result<Option<String>> {
    match table.get(key) {
        None => Ok(None),
        Some(toml::Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => bail!("{key} must be a string, not {}", other.type_str()),
    }
}

fn required(table: &toml::Table, key: &str) -> Result<String> {
    string(table, key)?.with_context(|| format!("missing required field {key:?}"))
}

fn only_keys(table: &toml::Table, allowed: &[&str]) -> Result<()> {
    for key in table.keys() {
        ensure!(key == "type" || allowed.contains(&key.as_str()), "unknown field {key:?} (allowed: type, {})", allowed.join(", "));
    }
    Ok(())
}

fn parse_provider(entry: &toml::Table) -> Result<ProviderConfig> {
    let kind = required(entry, "type")?;
    match kind.as_str() {
        "env" => {
            only_keys(entry, &["prefix", "dotenv_path"])?;
            Ok(ProviderConfig::Env { prefix: string(entry, "prefix")?, dotenv_path: string(entry, "dotenv_path")? })
        }
        "static" => {
            only_keys(entry, &["values"])?;
            let values = entry.get("values").context("missing required field \"values\"")?;
            let values = values.as_table().context("values must be a table")?;
            let mut out = BTreeMap::new();
            for (name, value) in values {
                let value = value.as_str().with_context(|| format!("values.{name} must be a string"))?;
                out.insert(name.clone(), value.to_string());
            }
            Ok(ProviderConfig::Static { values: out })
        }
        "vault" => {
            only_keys(entry, &["url", "token", "mount", "prefix"])?;
            Ok(ProviderConfig::Vault {
                url: required(entry, "url")?,
                token: required(entry, "token")?,
                mount: required(entry, "mount")?,
                prefix: string(entry, "prefix")?,
            })
        }
        "azure_key_vault" => {
            only_keys(entry, &["vault_url", "client_id", "client_secret", "tenant_id", "authority_host"])?;
            let vault_url = required(entry, "vault_url")?;
            let set = ["client_id", "client_secret", "tenant_id"].map(|k| entry.contains_key(k));
            ensure!(
                set.iter().all(|s| *s) || set.iter().all(|s| !*s),
                "client_id, client_secret and tenant_id must be given all three or none (none: the host's ambient identity)"
            );
            let authority_host = string(entry, "authority_host")?;
            if let Some(host) = &authority_host {
                ensure!(
                    ["AzurePublicCloud", "AzureChina", "AzureGermany", "AzureGovernment"].contains(&host.as_str()),
                    "authority_host {host:?} is not one of AzurePublicCloud, AzureChina, AzureGermany, AzureGovernment"
                );
            }
            Ok(ProviderConfig::AzureKeyVault { vault_url, service_principal: set[0], authority_host })
        }
        other => bail!("unknown provider type {other:?} (Spin knows env, static, vault, azure_key_vault)"),
    }
}

fn parse_key_value_store(store: &toml::Table) -> Result<(String, BTreeMap<String, String>)> {
    let kind = required(store, "type")?;
    let (allowed, needed): (&[&str], &[&str]) = match kind.as_str() {
        "spin" => (&["path"], &[]),
        "redis" => (&["url"], &["url"]),
        "azure_cosmos" => (&["key", "account", "database", "container"], &["account", "database", "container"]),
        "aws_dynamo" => (&["access_key", "secret_key", "token", "region", "consistent_read", "table"], &["region", "table"]),
        other => bail!("unknown key-value store type {other:?} (Spin knows spin, redis, azure_cosmos, aws_dynamo)"),
    };
    only_keys(store, allowed)?;
    for key in needed {
        required(store, key)?;
    }
    let options = store
        .iter()
        .filter(|(k, _)| *k != "type")
        .filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_string())))
        .collect();
    Ok((kind, options))
}

/// `[outbound_http]` → `connection_pooling` as Spin reads it (absent: `false`).
fn parse_outbound_http(table: &toml::Table) -> Result<bool> {
    for key in table.keys() {
        ensure!(
            ["connection_pooling", "max_concurrent_requests"].contains(&key.as_str()),
            "unknown key {key:?}: Spin refuses it (deny_unknown_fields)"
        );
    }
    if let Some(limit) = table.get("max_concurrent_requests") {
        ensure!(limit.as_integer().is_some_and(|n| n >= 0), "max_concurrent_requests must be a non-negative integer");
    }
    match table.get("connection_pooling") {
        None => Ok(false),
        Some(value) => value.as_bool().context("connection_pooling must be true or false"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_providers_in_order_and_appends_the_environment() {
        let config = RuntimeConfig::from_str(
            r#"
            [[variables_provider]]
            type = "env"
            [[variables_provider]]
            type = "vault"
            url = "https://vault.example:8200"
            token = "t"
            mount = "secret"
            prefix = "graph-revoke"
            [key_value_store.default]
            type = "redis"
            url = "redis://redis:6379"
            "#,
        )
        .unwrap();
        assert_eq!(config.chain_kinds(), [ProviderKind::Env, ProviderKind::Vault, ProviderKind::Env]);
        assert_eq!(config.key_value_stores()["default"], "redis");
        assert_eq!(config.key_value_option("default", "url"), Some("redis://redis:6379"));
        assert_eq!(RuntimeConfig::none().chain_kinds(), [ProviderKind::Env]);
    }

    #[test]
    fn the_legacy_name_is_read_but_not_together_with_the_new_one() {
        let legacy = "[[config_provider]]\ntype = \"azure_key_vault\"\nvault_url = \"https://v.vault.azure.net/\"\n";
        assert_eq!(RuntimeConfig::from_str(legacy).unwrap().chain_kinds(), [ProviderKind::AzureKeyVault, ProviderKind::Env]);
        let both = format!("{legacy}[[variables_provider]]\ntype = \"env\"\n");
        assert!(RuntimeConfig::from_str(&both).is_err());
    }

    #[test]
    fn refuses_what_spin_refuses_and_typos_spin_would_ignore() {
        let bad = [
            "[[variables_provider]]\ntype = \"hashicorp\"\n",
            "[[variables_provider]]\ntype = \"vault\"\nurl = \"u\"\ntoken = \"t\"\n",
            "[[variables_provider]]\ntype = \"vault\"\nurl = \"u\"\ntoken = \"t\"\nmount = \"m\"\npath = \"p\"\n",
            "[[variables_provider]]\ntype = \"env\"\nprefixes = \"X\"\n",
            "[[variables_provider]]\ntype = \"azure_key_vault\"\nvault_url = \"u\"\nclient_id = \"c\"\n",
            "[[variables_provider]]\ntype = \"azure_key_vault\"\nvault_url = \"u\"\nauthority_host = \"Public\"\n",
            "[[variables_provider]]\ntype = \"static\"\nvalues = { a = 1 }\n",
            "[variables_provider]\ntype = \"env\"\n",
            "[key_value_store.default]\ntype = \"redis\"\nuri = \"redis://x\"\n",
            "[key_value_store.default]\ntype = \"memcached\"\n",
            "[secrets]\nx = 1\n",
            "[outbound_http]\npooling = true\n",
            "[outbound_http]\nconnection_pooling = \"yes\"\n",
        ];
        for text in bad {
            assert!(RuntimeConfig::from_str(text).is_err(), "accepted:\n{text}");
        }
    }

    #[test]
    fn connection_pooling_is_on_unless_an_outbound_http_table_says_otherwise() {
        assert!(RuntimeConfig::none().connection_pooling());
        let on = RuntimeConfig::from_str("[outbound_http]\nconnection_pooling = true\n").unwrap();
        assert!(on.connection_pooling());
        let off = RuntimeConfig::from_str("[outbound_http]\nconnection_pooling = false\n").unwrap();
        assert!(!off.connection_pooling());
        // Spin's serde default: the table without the key turns pooling off.
        let table_only = RuntimeConfig::from_str("[outbound_http]\nmax_concurrent_requests = 10\n").unwrap();
        assert!(!table_only.connection_pooling());
    }
}
