//! Resolving variables as `spin up` does when it starts an application.
//!
//! Spin resolves every application variable before it serves a request: the value a
//! provider gives (locally `SPIN_VARIABLE_<NAME>`; here the `variables` passed to
//! [`TestApp::start`]), else the manifest's `default`. A `required` variable with no value
//! stops the start. Component variables are templates over those values; they are all the
//! guest can read through `wasi:config/store`.
//!
//! [`TestApp::start`]: crate::TestApp::start

use std::collections::BTreeMap;

use anyhow::{bail, Context, Result};

use crate::manifest::Manifest;
use crate::template::Template;

/// Resolved values of one running app.
#[derive(Clone, Debug)]
pub(crate) struct Variables {
    /// Application variable → value.
    application: BTreeMap<String, String>,
    /// Component variable → value: what `wasi:config/store` serves.
    component: BTreeMap<String, String>,
}

impl Variables {
    /// Resolves the manifest's variables given the provided values. Provided names are
    /// matched case-insensitively (they stand for `SPIN_VARIABLE_*`); names the manifest
    /// does not declare are ignored, as Spin ignores stray environment variables.
    pub(crate) fn resolve(manifest: &Manifest, provided: &[(&str, &str)]) -> Result<Variables> {
        let provided: BTreeMap<String, &str> = provided
            .iter()
            .map(|(name, value)| (name.to_ascii_lowercase(), *value))
            .collect();

        let mut application = BTreeMap::new();
        let mut missing = Vec::new();
        for (name, decl) in &manifest.variables {
            match provided.get(name).copied().or(decl.default.as_deref()) {
                Some(value) => {
                    application.insert(name.clone(), value.to_string());
                }
                None => missing.push(name.as_str()),
            }
        }
        if !missing.is_empty() {
            let env: Vec<String> = missing
                .iter()
                .map(|n| format!("SPIN_VARIABLE_{}", n.to_ascii_uppercase()))
                .collect();
            bail!(
                "no value for required variable(s) {missing:?}; Spin refuses to start \
                 without them (set {})",
                env.join(", ")
            );
        }

        let mut variables = Variables {
            application,
            component: BTreeMap::new(),
        };
        for (name, template) in &manifest.component.variables {
            let value = variables
                .render(template)
                .with_context(|| format!("component variable {name:?}"))?;
            variables.component.insert(name.clone(), value);
        }
        Ok(variables)
    }

    /// Renders a template over the application variables.
    pub(crate) fn render(&self, template: &Template) -> Result<String> {
        template.render(|name| {
            self.application
                .get(name)
                .cloned()
                .with_context(|| format!("undeclared variable {name:?}"))
        })
    }

    /// A component variable's value, or `None` if the component does not declare it.
    pub(crate) fn component_value(&self, key: &str) -> Option<&str> {
        self.component.get(key).map(String::as_str)
    }

    /// Every component variable with its value, sorted by name.
    pub(crate) fn component_values(&self) -> Vec<(String, String)> {
        self.component
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MANIFEST: &str = r#"
        spin_manifest_version = 2
        [variables]
        tenant_id = { required = true }
        base = { default = "https://example.com" }
        [[trigger.http]]
        route = "/..."
        component = "c"
        [component.c]
        source = "c.wasm"
        [component.c.variables]
        tenant_id = "{{ tenant_id }}"
        url = "{{ base }}/{{ tenant_id }}"
        fixed = "literal"
    "#;

    #[test]
    fn provided_values_win_over_defaults_and_fill_templates() {
        let m = Manifest::from_str(MANIFEST).unwrap();
        let v = Variables::resolve(&m, &[("TENANT_ID", "t1"), ("unknown", "x")]).unwrap();
        assert_eq!(v.component_value("url"), Some("https://example.com/t1"));
        assert_eq!(v.component_value("fixed"), Some("literal"));
        assert_eq!(v.component_value("base"), None, "not a component variable");
        let v = Variables::resolve(&m, &[("tenant_id", "t"), ("base", "http://b")]).unwrap();
        assert_eq!(v.component_value("url"), Some("http://b/t"));
        assert_eq!(v.component_values().len(), 3);
    }

    #[test]
    fn a_missing_required_variable_stops_the_start() {
        let m = Manifest::from_str(MANIFEST).unwrap();
        let err = Variables::resolve(&m, &[]).unwrap_err().to_string();
        assert!(err.contains("tenant_id"), "{err}");
        // An empty value is a value: Spin starts.
        Variables::resolve(&m, &[("tenant_id", "")]).unwrap();
    }
}
