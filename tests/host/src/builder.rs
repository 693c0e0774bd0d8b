//! [`AppBuilder`]: an app started the way a deployment starts it, from a runtime config
//! file (`spin up --runtime-config-file`), the process environment (`SPIN_VARIABLE_*`)
//! and what the vault holds.
//!
//! ```no_run
//! # async fn example() -> anyhow::Result<()> {
//! use graph_revoke_test_host::{Component, Manifest, RuntimeConfig, TestApp};
//! use std::time::Duration;
//!
//! let app = TestApp::builder(Component::shared()?, &Manifest::load_default()?)
//!     .runtime_config(RuntimeConfig::load_project("runtime-config/vault.toml")?)
//!     .variable("tenant_id", "contoso.onmicrosoft.com")
//!     .vault_secret("secret/graph-revoke/client_secret", "s3cr3t")
//!     .vault_latency(Duration::from_millis(5))
//!     .start()?;
//! println!("{}", app.provider_lookups());
//! # Ok(())
//! # }
//! ```

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Result};

use crate::component::Component;
use crate::key_value::{KeyValueBackend, DEFAULT_STORE};
use crate::manifest::Manifest;
use crate::providers::{env_name, Provider, ProviderChain, VaultContents, DEFAULT_ENV_PREFIX};
use crate::runtime_config::{ProviderConfig, RuntimeConfig};
use crate::variables::Variables;
use crate::TestApp;

/// Options of an app started from a runtime config. See [`TestApp::builder`].
pub struct AppBuilder {
    component: Arc<Component>,
    manifest: Manifest,
    runtime_config: RuntimeConfig,
    environment: BTreeMap<String, String>,
    vault: VaultContents,
    vault_latency: Duration,
    key_value_store: bool,
    backend: Option<KeyValueBackend>,
}

impl TestApp {
    /// An app of `manifest`, to be configured like a deployment: no runtime config, an
    /// empty environment and an empty vault until set.
    pub fn builder(component: Arc<Component>, manifest: &Manifest) -> AppBuilder {
        AppBuilder {
            component,
            manifest: manifest.clone(),
            runtime_config: RuntimeConfig::none(),
            environment: BTreeMap::new(),
            vault: VaultContents::new(),
            vault_latency: Duration::ZERO,
            key_value_store: true,
            backend: None,
        }
    }
}

impl AppBuilder {
    /// The runtime config (`--runtime-config-file`); none by default.
    pub fn runtime_config(mut self, config: RuntimeConfig) -> Self {
        self.runtime_config = config;
        self
    }

    /// One environment variable of the Spin process, by its full name.
    pub fn env(mut self, name: &str, value: &str) -> Self {
        self.environment.insert(name.to_string(), value.to_string());
        self
    }

    /// `SPIN_VARIABLE_<NAME>=<value>`.
    pub fn variable(self, name: &str, value: &str) -> Self {
        let name = env_name(DEFAULT_ENV_PREFIX, name);
        self.env(&name, value)
    }

    /// No `SPIN_VARIABLE_<NAME>` (undoes [`AppBuilder::variable`]): the providers after the
    /// environment answer it.
    pub fn without_variable(mut self, name: &str) -> Self {
        self.environment.remove(&env_name(DEFAULT_ENV_PREFIX, name));
        self
    }

    /// `SPIN_VARIABLE_<NAME>=<value>` for each pair.
    pub fn variables<N: AsRef<str>, V: AsRef<str>>(mut self, pairs: impl IntoIterator<Item = (N, V)>) -> Self {
        for (name, value) in pairs {
            self = self.variable(name.as_ref(), value.as_ref());
        }
        self
    }

    /// A secret in the vault: for HashiCorp Vault its path `<mount>/<prefix>/<variable>`
    /// (what `vault kv put` names, the value in field `value`), for Azure Key Vault its
    /// name.
    pub fn vault_secret(mut self, path: &str, value: &str) -> Self {
        self.vault.insert(path.to_string(), value.to_string());
        self
    }

    /// How long each vault lookup takes (zero by default).
    pub fn vault_latency(mut self, latency: Duration) -> Self {
        self.vault_latency = latency;
        self
    }

    /// `false`: the host has no key-value store (opening `default` fails).
    pub fn key_value_store(mut self, available: bool) -> Self {
        self.key_value_store = available;
        self
    }

    /// The `default` store is `backend`, shared with every other app given it (replicas
    /// behind one Redis).
    pub fn shared_key_value(mut self, backend: &KeyValueBackend) -> Self {
        self.backend = Some(backend.clone());
        self
    }

    /// Starts the app; fails as Spin refuses to start (a required variable no provider
    /// might answer, a store label the runtime config does not define).
    pub fn start(self) -> Result<TestApp> {
        for (label, kind) in self.runtime_config.key_value_stores() {
            if label != DEFAULT_STORE {
                bail!("[key_value_store.{label}] ({kind}): the test host models only the \"default\" store");
            }
        }
        let environment = Arc::new(self.environment);
        let vault = Arc::new(self.vault);
        let mut providers = Vec::new();
        for config in self.runtime_config.providers() {
            providers.push(match config {
                ProviderConfig::Env { prefix, dotenv_path } => {
                    if dotenv_path.is_some() {
                        bail!("dotenv_path: the test host does not model .env files; put the values in the environment");
                    }
                    Provider::Env {
                        prefix: prefix.clone().unwrap_or_else(|| DEFAULT_ENV_PREFIX.to_string()),
                        environment: environment.clone(),
                    }
                }
                ProviderConfig::Static { values } => Provider::Static { values: values.clone() },
                ProviderConfig::Vault { mount, prefix, .. } => Provider::Vault {
                    mount: mount.clone(),
                    prefix: prefix.clone(),
                    contents: vault.clone(),
                    latency: self.vault_latency,
                },
                ProviderConfig::AzureKeyVault { .. } => {
                    Provider::AzureKeyVault { contents: vault.clone(), latency: self.vault_latency }
                }
            });
        }
        // Spin always appends the environment provider (`providers.extend(var_provider)`).
        providers.push(Provider::Env { prefix: DEFAULT_ENV_PREFIX.to_string(), environment });
        let variables = Variables::new(&self.manifest, ProviderChain::new(providers))?;
        // A `spin` store without `path` is Spin's SQLite in memory: run it for its cost. (Other
        // stores, and no `[key_value_store.default]` at all, are the map alone; Spin's
        // default, a SQLite file, is `KeyValueBackend::spin_sqlite(Some(path))`.)
        let backend = match (self.backend, self.runtime_config.key_value_stores().get(DEFAULT_STORE)) {
            (Some(backend), _) => Some(backend),
            (None, Some(kind)) if kind == "spin" => {
                if self.runtime_config.key_value_option(DEFAULT_STORE, "path").is_some() {
                    bail!("[key_value_store.default] type = \"spin\" with a path: give the app KeyValueBackend::spin_sqlite(Some(path)) instead");
                }
                Some(KeyValueBackend::spin_sqlite(None)?)
            }
            (None, _) => None,
        };
        TestApp::assemble(self.component, &self.manifest, variables, self.key_value_store, backend, self.runtime_config.connection_pooling())
    }
}
