//! `spin.toml` (manifest version 2): the parts of it that shape what the component sees.
//!
//! The host reads the real manifest rather than repeating its settings in test code, so a
//! test fails when `spin.toml` and the component disagree (a variable the component reads
//! but the manifest does not map, an outbound host the manifest does not allow, …).
//! Parsing checks what Spin checks when it loads an application: variable names, `required`
//! versus `default`, templates that name only declared variables, literal
//! `allowed_outbound_hosts` entries. Values are resolved later, when a [`TestApp`]
//! starts.
//!
//! [`TestApp`]: crate::TestApp

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, ensure, Context, Result};
use serde::Deserialize;

use crate::allowed_hosts::AllowedHost;
use crate::route::Route;
use crate::template::{validate_name, Template};

/// A parsed and validated `spin.toml`.
#[derive(Clone, Debug)]
pub struct Manifest {
    text: String,
    pub(crate) variables: BTreeMap<String, VariableDecl>,
    pub(crate) component: ComponentDecl,
}

/// An application variable as declared, for tests of deployments.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeclaredVariable {
    pub name: String,
    pub required: bool,
    pub secret: bool,
    pub default: Option<String>,
}

/// One entry of the application's `[variables]` table.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct VariableDecl {
    #[serde(default)]
    pub(crate) required: bool,
    #[serde(default)]
    pub(crate) default: Option<String>,
    /// Spin only hides secret values from logs; deployment tests check that secrets come
    /// from a secret store.
    #[serde(default)]
    pub(crate) secret: bool,
    #[serde(default)]
    #[allow(dead_code)]
    pub(crate) description: Option<String>,
}

/// The application's one component, as far as the host needs it.
#[derive(Clone, Debug)]
pub(crate) struct ComponentDecl {
    pub(crate) id: String,
    /// Entries as written; templates are resolved when an app starts.
    pub(crate) allowed_outbound_hosts: Vec<Template>,
    pub(crate) key_value_stores: Vec<String>,
    /// `[component.<id>.variables]`: component variable name → template over application
    /// variables. This is all `wasi:config/store` can see.
    pub(crate) variables: BTreeMap<String, Template>,
    /// `[component.<id>] environment`: the guest's environment variables.
    pub(crate) environment: BTreeMap<String, String>,
    /// The `route` of the `[[trigger.http]]` that serves the component.
    pub(crate) route: Route,
}

#[derive(Deserialize)]
struct RawManifest {
    spin_manifest_version: toml::Value,
    #[serde(default)]
    variables: BTreeMap<String, VariableDecl>,
    #[serde(default)]
    component: BTreeMap<String, RawComponent>,
    #[serde(default)]
    trigger: BTreeMap<String, Vec<toml::Table>>,
}

#[derive(Deserialize)]
struct RawComponent {
    #[serde(default)]
    allowed_outbound_hosts: Vec<String>,
    #[serde(default)]
    key_value_stores: Vec<String>,
    #[serde(default)]
    variables: BTreeMap<String, String>,
    #[serde(default)]
    environment: BTreeMap<String, String>,
}

impl Manifest {
    /// Reads and validates the manifest at `path`.
    pub fn load(path: &Path) -> Result<Manifest> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read manifest {}", path.display()))?;
        Manifest::from_str(&text).with_context(|| format!("invalid manifest {}", path.display()))
    }

    /// The project's own `spin.toml`, at the workspace root.
    pub fn load_default() -> Result<Manifest> {
        Manifest::load(&workspace_root().join("spin.toml"))
    }

    /// This manifest with the two secrets declared under names Azure Key Vault can hold
    /// (its names allow no `_`) and mapped onto the component variables the code reads, as
    /// `runtime-config/azure-key-vault.toml` explains.
    pub fn with_key_vault_names(&self) -> Result<Manifest> {
        let mut text = self.text().to_string();
        for (from, to) in [
            ("client_secret = { default = \"\", secret = true }", "clientsecret = { required = true, secret = true }"),
            ("api_keys = { default = \"\", secret = true }", "apikeys = { required = true, secret = true }"),
            ("client_secret = \"{{ client_secret }}\"", "client_secret = \"{{ clientsecret }}\""),
            ("api_keys = \"{{ api_keys }}\"", "api_keys = \"{{ apikeys }}\""),
        ] {
            anyhow::ensure!(text.contains(from), "the manifest no longer has {from:?}; update with_key_vault_names()");
            text = text.replacen(from, to, 1);
        }
        Manifest::from_str(&text)
    }

    /// Parses manifest text; for tests that run the component under a changed manifest.
    #[allow(clippy::should_implement_trait)] // The test API names it so; `FromStr` adds nothing.
    pub fn from_str(toml: &str) -> Result<Manifest> {
        let raw: RawManifest = toml::from_str(toml).context("cannot parse manifest TOML")?;
        ensure!(
            raw.spin_manifest_version.as_integer() == Some(2),
            "spin_manifest_version must be 2, found {}",
            raw.spin_manifest_version
        );

        for (name, decl) in &raw.variables {
            validate_name(name)?;
            ensure!(
                decl.required != decl.default.is_some(),
                "variable {name:?} must be either `required = true` or have a `default`, not {}",
                if decl.required { "both" } else { "neither" }
            );
        }

        let (id, component) = select_component(&raw)?;
        let mut variables = BTreeMap::new();
        for (name, value) in &component.variables {
            validate_name(name).with_context(|| format!("component {id:?} variables"))?;
            let template = Template::parse(value)?;
            check_declared(&template, &raw.variables)
                .with_context(|| format!("component variable {name:?} = {value:?}"))?;
            variables.insert(name.clone(), template);
        }

        let mut allowed_outbound_hosts = Vec::new();
        ensure!(
            component.allowed_outbound_hosts != ["insecure:allow-all"],
            "'insecure:allow-all' is not allowed; Spin wants '*://*:*'"
        );
        for entry in &component.allowed_outbound_hosts {
            let template = Template::parse(entry)?;
            if template.is_literal() {
                AllowedHost::parse(entry)?;
            }
            check_declared(&template, &raw.variables)
                .with_context(|| format!("allowed_outbound_hosts entry {entry:?}"))?;
            allowed_outbound_hosts.push(template);
        }

        let route = raw
            .trigger
            .get("http")
            .into_iter()
            .flatten()
            .find(|t| t.get("component").and_then(|c| c.as_str()) == Some(id.as_str()))
            .and_then(|t| t.get("route"))
            .and_then(|r| r.as_str())
            .with_context(|| format!("no [[trigger.http]] with a route serves component {id:?}"))?;
        let route = Route::parse(route)?;

        Ok(Manifest {
            text: toml.to_string(),
            variables: raw.variables.clone(),
            component: ComponentDecl {
                id: id.clone(),
                allowed_outbound_hosts,
                key_value_stores: component.key_value_stores.clone(),
                variables,
                environment: component.environment.clone(),
                route,
            },
        })
    }

    /// The manifest text as given.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The application variables (`[variables]`), sorted by name.
    pub fn declared_variables(&self) -> Vec<DeclaredVariable> {
        self.variables
            .iter()
            .map(|(name, decl)| DeclaredVariable {
                name: name.clone(),
                required: decl.required,
                secret: decl.secret,
                default: decl.default.clone(),
            })
            .collect()
    }

    /// The id of the component the app serves (`graph-revoke` in the project manifest).
    pub fn component_id(&self) -> &str {
        &self.component.id
    }
}

/// The component the app serves: the only `[component.*]`, or with several, the one the
/// first HTTP trigger names.
fn select_component(raw: &RawManifest) -> Result<(&String, &RawComponent)> {
    match raw.component.len() {
        0 => bail!("the manifest has no [component.*] table"),
        1 => Ok(raw.component.iter().next().expect("one component")),
        _ => {
            let id = raw
                .trigger
                .get("http")
                .and_then(|triggers| triggers.first())
                .and_then(|t| t.get("component"))
                .and_then(|c| c.as_str())
                .context("several components and no [[trigger.http]] naming one of them")?;
            raw.component
                .get_key_value(id)
                .with_context(|| format!("[[trigger.http]] names unknown component {id:?}"))
        }
    }
}

/// Spin refuses templates that name a variable the application does not declare.
fn check_declared(template: &Template, declared: &BTreeMap<String, VariableDecl>) -> Result<()> {
    for name in template.variables() {
        ensure!(
            declared.contains_key(name),
            "refers to {{{{ {name} }}}}, which [variables] does not declare"
        );
    }
    Ok(())
}

/// The workspace root: this crate lives in `<root>/tests/host`.
pub(crate) fn workspace_root() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    root.canonicalize().unwrap_or(root)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
        spin_manifest_version = 2
        [application]
        name = "t"
        [variables]
        a = { required = true }
        b = { default = "x" }
        [[trigger.http]]
        route = "/..."
        component = "c"
        [component.c]
        source = "c.wasm"
        allowed_outbound_hosts = ["https://example.com", "{{ b }}"]
        key_value_stores = ["default"]
        [component.c.variables]
        a = "{{ a }}"
        mixed = "pre-{{ b }}-post"
    "#;

    #[test]
    fn parses_the_parts_the_host_uses() {
        let m = Manifest::from_str(MINIMAL).unwrap();
        assert_eq!(m.component.id, "c");
        assert_eq!(m.component.key_value_stores, ["default"]);
        assert_eq!(m.component.allowed_outbound_hosts.len(), 2);
        assert_eq!(m.component.variables.len(), 2);
        assert_eq!(m.component.route, Route::parse("/...").unwrap());
        assert!(m.variables["a"].required);
        assert_eq!(m.text(), MINIMAL);
    }

    #[test]
    fn the_project_manifest_is_valid() {
        Manifest::load_default().unwrap();
    }

    #[test]
    fn rejects_what_spin_rejects() {
        let cases = [
            (
                "a = { required = true }",
                "a = { required = true, default = \"1\" }",
            ),
            ("a = { required = true }", "a = { secret = true }"),
            (
                "a = { required = true }",
                "a = { required = true, requird = 1 }",
            ),
            ("mixed = \"pre-{{ b }}-post\"", "mixed = \"{{ nope }}\""),
            ("mixed = \"pre-{{ b }}-post\"", "Mixed = \"x\""),
            ("mixed = \"pre-{{ b }}-post\"", "mixed = \"{{ b \""),
            ("\"https://example.com\"", "\"example.com\""),
            ("\"https://example.com\"", "\"https://example.com/path\""),
            ("spin_manifest_version = 2", "spin_manifest_version = 1"),
            ("component = \"c\"", "component = \"d\""),
        ];
        for (from, to) in cases {
            let text = MINIMAL.replacen(from, to, 1);
            assert!(Manifest::from_str(&text).is_err(), "accepted: {to}");
        }
    }
}
