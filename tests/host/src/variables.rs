//! Resolving variables as Spin does: lazily, through the provider chain, on every read.
//!
//! When an app starts, Spin resolves nothing: it only checks that some provider *might*
//! answer each `required` variable (`ensure_required_variables_resolvable`; the
//! environment provider answers only for a set `SPIN_VARIABLE_*`, a vault "might" hold
//! anything) and refuses to start otherwise. After that, values are resolved when asked
//! (`crates/expressions/src/lib.rs`, Spin v3.6.3 and v4.0.2):
//!
//! - a `wasi:config/store` `get` renders the component variable's template, resolving
//!   each `{{ variable }}` through the providers in order (uncached), then the manifest
//!   default; a provider error is the guest's `upstream` error;
//! - on an instance's first outbound request Spin resolves **every application
//!   variable**, one after another, to check `allowed_outbound_hosts`
//!   (`resolver.prepare()`, `crates/factor-outbound-networking/src/lib.rs`); the first
//!   error ends it, and then every outbound request of that instance is refused.
//!   Spin walks a `HashMap`, in no fixed order; the host walks the names sorted.
//!
//! Component variables are templates over application variables; they are all the guest
//! can read through `wasi:config/store`.

use std::collections::BTreeMap;

use anyhow::{bail, Context, Result};

use crate::manifest::Manifest;
use crate::providers::{env_name, LookupCause, LookupCounter, Provider, ProviderChain, DEFAULT_ENV_PREFIX};
use crate::template::Template;

/// The variables of one running app and the providers that answer them.
#[derive(Debug)]
pub(crate) struct Variables {
    /// Application variable → its manifest default (`None`: required).
    defaults: BTreeMap<String, Option<String>>,
    /// Component variable → template over application variables.
    component: BTreeMap<String, Template>,
    chain: ProviderChain,
    /// Every failed resolution, as Spin would log it.
    errors: std::sync::Mutex<Vec<String>>,
}

impl Variables {
    /// The manifest's variables answered by `chain`. Fails, as Spin refuses to start,
    /// when no provider might answer a `required` variable.
    pub(crate) fn new(manifest: &Manifest, chain: ProviderChain) -> Result<Variables> {
        let missing: Vec<&str> = manifest
            .variables
            .iter()
            .filter(|(name, decl)| decl.default.is_none() && !chain.may_resolve(name))
            .map(|(name, _)| name.as_str())
            .collect();
        if !missing.is_empty() {
            let env: Vec<String> = missing.iter().map(|n| env_name(DEFAULT_ENV_PREFIX, n)).collect();
            bail!(
                "no provider resolved required variable(s) {missing:?}; Spin refuses to start \
                 without them (set {})",
                env.join(", ")
            );
        }
        Ok(Variables {
            defaults: manifest.variables.iter().map(|(n, d)| (n.clone(), d.default.clone())).collect(),
            component: manifest.component.variables.clone(),
            chain,
            errors: Default::default(),
        })
    }

    /// `spin up` without a runtime config, with `SPIN_VARIABLE_<NAME>=<value>` for each of
    /// `provided` (names in any case; names the manifest does not declare are ignored, as
    /// Spin ignores stray environment variables).
    pub(crate) fn resolve(manifest: &Manifest, provided: &[(&str, &str)]) -> Result<Variables> {
        let environment = provided
            .iter()
            .map(|(name, value)| (env_name(DEFAULT_ENV_PREFIX, name), value.to_string()))
            .collect();
        let env = Provider::Env { prefix: DEFAULT_ENV_PREFIX.to_string(), environment: std::sync::Arc::new(environment) };
        Variables::new(manifest, ProviderChain::new(vec![env]))
    }

    /// The app's lookup counts.
    pub(crate) fn lookups(&self) -> &LookupCounter {
        self.chain.counter()
    }

    /// The kinds of provider asked, in order.
    pub(crate) fn provider_kinds(&self) -> Vec<crate::providers::ProviderKind> {
        self.chain.kinds()
    }

    /// Failed resolutions so far, oldest first: the variable, the cause and the error.
    pub(crate) fn errors(&self) -> Vec<String> {
        self.errors.lock().unwrap().clone()
    }

    /// One application variable: the providers in order, then the default.
    async fn application_value(&self, name: &str, cause: LookupCause) -> Result<String, String> {
        let Some(default) = self.defaults.get(name) else {
            return Err(format!("invalid variable name {name:?}"));
        };
        let value = match self.chain.get(name, cause).await {
            Ok(Some(value)) => Ok(value),
            Ok(None) => default.clone().ok_or_else(|| format!("no provider resolved required variable {name:?}")),
            Err(e) => Err(e),
        };
        if let Err(e) = &value {
            self.errors.lock().unwrap().push(format!("{name} ({cause:?}): {e}"));
        }
        value
    }

    /// A template, each `{{ variable }}` resolved in order, one resolution per occurrence.
    async fn render(&self, template: &Template, cause: LookupCause) -> Result<String, String> {
        let mut values = Vec::new();
        for name in template.variables() {
            values.push(self.application_value(name, cause).await?);
        }
        let mut values = values.into_iter();
        template
            .render(|_| Ok(values.next().expect("one value per expression")))
            .map_err(|e| e.to_string())
    }

    /// `wasi:config/store` `get`: `Ok(None)` for a key the component does not declare;
    /// `Err` (the guest's `upstream` error) when a provider failed.
    pub(crate) async fn component_value(&self, key: &str) -> Result<Option<String>, String> {
        match self.component.get(key) {
            Some(template) => self.render(template, LookupCause::ComponentRead).await.map(Some),
            None => Ok(None),
        }
    }

    /// `wasi:config/store` `get-all`: every component variable, resolved, sorted by name.
    pub(crate) async fn component_values(&self) -> Result<Vec<(String, String)>, String> {
        let mut out = Vec::new();
        for (name, template) in &self.component {
            out.push((name.clone(), self.render(template, LookupCause::ComponentRead).await?));
        }
        Ok(out)
    }

    /// Spin's `resolver.prepare()`: every application variable, for the outbound check.
    pub(crate) async fn prepare(&self) -> Result<BTreeMap<String, String>, String> {
        let mut out = BTreeMap::new();
        for name in self.defaults.keys() {
            out.insert(name.clone(), self.application_value(name, LookupCause::OutboundCheck).await?);
        }
        Ok(out)
    }
}

/// Renders `template` over prepared values (Spin's `PreparedResolver`).
pub(crate) fn render_prepared(template: &Template, values: &BTreeMap<String, String>) -> Result<String> {
    template.render(|name| values.get(name).cloned().with_context(|| format!("undeclared variable {name:?}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::{ProviderKind, VaultContents};
    use std::sync::Arc;
    use std::time::Duration;

    const MANIFEST: &str = r#"
        spin_manifest_version = 2
        [variables]
        tenant_id = { required = true }
        base = { default = "https://example.com" }
        secret = { default = "" }
        [[trigger.http]]
        route = "/..."
        component = "c"
        [component.c]
        source = "c.wasm"
        [component.c.variables]
        tenant_id = "{{ tenant_id }}"
        url = "{{ base }}/{{ tenant_id }}"
        fixed = "literal"
        secret = "{{ secret }}"
    "#;

    #[tokio::test]
    async fn provided_values_win_over_defaults_and_fill_templates() {
        let m = Manifest::from_str(MANIFEST).unwrap();
        let v = Variables::resolve(&m, &[("TENANT_ID", "t1"), ("unknown", "x")]).unwrap();
        assert_eq!(v.component_value("url").await, Ok(Some("https://example.com/t1".into())));
        assert_eq!(v.component_value("fixed").await, Ok(Some("literal".into())));
        assert_eq!(v.component_value("base").await, Ok(None), "not a component variable");
        let v = Variables::resolve(&m, &[("tenant_id", "t"), ("base", "http://b")]).unwrap();
        assert_eq!(v.component_value("url").await, Ok(Some("http://b/t".into())));
        assert_eq!(v.component_values().await.unwrap().len(), 4);
    }

    #[tokio::test]
    async fn a_missing_required_variable_stops_the_start_unless_a_vault_might_hold_it() {
        let m = Manifest::from_str(MANIFEST).unwrap();
        let err = Variables::resolve(&m, &[]).unwrap_err().to_string();
        assert!(err.contains("tenant_id") && err.contains("SPIN_VARIABLE_TENANT_ID"), "{err}");
        // An empty value is a value: Spin starts.
        Variables::resolve(&m, &[("tenant_id", "")]).unwrap();
        // A vault might hold it: Spin starts, and the read fails later.
        let vault = Provider::Vault { mount: "secret".into(), prefix: None, contents: Arc::new(VaultContents::new()), latency: Duration::ZERO };
        let v = Variables::new(&m, ProviderChain::new(vec![vault])).unwrap();
        let err = v.component_value("tenant_id").await.unwrap_err();
        assert!(err.contains("no provider resolved required variable"), "{err}");
    }

    #[tokio::test]
    async fn every_read_and_every_prepare_asks_the_providers_again() {
        let m = Manifest::from_str(MANIFEST).unwrap();
        let v = Variables::resolve(&m, &[("tenant_id", "t")]).unwrap();
        v.component_value("url").await.unwrap();
        v.component_value("url").await.unwrap();
        let n = v.lookups().take();
        assert_eq!((n.of_variable("base"), n.of_variable("tenant_id")), (2, 2), "{n}");
        let prepared = v.prepare().await.unwrap();
        assert_eq!(prepared["base"], "https://example.com");
        let n = v.lookups().take();
        assert_eq!(n.caused_by(LookupCause::OutboundCheck).total(), 3, "one per application variable: {n}");
        assert_eq!(n.of_kind(ProviderKind::Env), 3);
    }

    #[tokio::test]
    async fn a_key_vault_error_ends_a_read_and_a_prepare() {
        let m = Manifest::from_str(MANIFEST).unwrap();
        let env = Provider::Env {
            prefix: DEFAULT_ENV_PREFIX.into(),
            environment: Arc::new([("SPIN_VARIABLE_TENANT_ID".to_string(), "t".to_string())].into()),
        };
        let kv = Provider::AzureKeyVault { contents: Arc::new(VaultContents::new()), latency: Duration::ZERO };
        let v = Variables::new(&m, ProviderChain::new(vec![env, kv])).unwrap();
        assert_eq!(v.component_value("tenant_id").await, Ok(Some("t".into())));
        assert!(v.component_value("secret").await.is_err(), "a default behind Key Vault is never reached");
        assert!(v.prepare().await.is_err());
    }
}
