//! The SpinKube deployment (`deploy/spinkube/`) and the runtime config files
//! (`runtime-config/`): valid for what they are applied to, and consistent with spin.toml.
//!
//! - The `SpinApp` validates against the `openAPIV3Schema` of the vendored SpinApp CRD
//!   (`deploy/spinkube/crd/`, spin-operator v0.6.1), made strict the way
//!   `kubectl apply --validate=strict` is: an unknown field is an error (the API server
//!   would silently prune it). Plus the rules of spin-operator's admission webhook
//!   (`internal/webhook/spinapp_validating.go` at v0.6.1): `replicas` and
//!   `enableAutoscaling` exclude each other, and `replicas` is at least 1 otherwise.
//! - Every runtime config (the files in `runtime-config/` and the one inside the
//!   Kubernetes Secret) uses only keys Spin v3.6.3/v4.0.2 accept (`RuntimeConfig`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use graph_revoke_test_host::runtime_config::SPIN_VERSIONS_CHECKED;
use graph_revoke_test_host::{Manifest, ProviderKind, RuntimeConfig};
use serde_json::{json, Value};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every YAML document of a file, as JSON values.
fn yaml_documents(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_norway::Deserializer::from_str(&text)
        .map(|doc| <Value as serde::Deserialize>::deserialize(doc).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
        .filter(|v| !v.is_null())
        .collect()
}

/// Every document of every file in `deploy/spinkube/` (not the CRD), by kind and name.
fn deployment() -> BTreeMap<(String, String), Value> {
    let mut out = BTreeMap::new();
    let dir = root().join("deploy/spinkube");
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml") {
            for doc in yaml_documents(&path) {
                let kind = doc["kind"].as_str().unwrap_or_else(|| panic!("{}: a document without kind", path.display())).to_string();
                let name = doc["metadata"]["name"].as_str().unwrap_or_else(|| panic!("{}: a document without a name", path.display())).to_string();
                assert!(out.insert((kind.clone(), name.clone()), doc).is_none(), "{kind} {name} twice");
            }
        }
    }
    out
}

fn one_of_kind(docs: &BTreeMap<(String, String), Value>, kind: &str) -> Value {
    let found: Vec<&Value> = docs.iter().filter(|((k, _), _)| k == kind).map(|(_, v)| v).collect();
    assert_eq!(found.len(), 1, "expected one {kind}");
    found[0].clone()
}

/// Makes a CRD schema strict: every object schema that lists `properties` refuses other
/// fields, unless the CRD says it keeps unknown fields.
fn strict(schema: &mut Value) {
    let Value::Object(map) = schema else { return };
    if map.contains_key("properties")
        && !map.contains_key("additionalProperties")
        && map.get("x-kubernetes-preserve-unknown-fields") != Some(&Value::Bool(true))
    {
        map.insert("additionalProperties".into(), Value::Bool(false));
    }
    if let Some(Value::Object(properties)) = map.get_mut("properties") {
        properties.values_mut().for_each(strict);
    }
    for key in ["items", "additionalProperties", "not"] {
        if let Some(sub) = map.get_mut(key) {
            strict(sub);
        }
    }
    for key in ["anyOf", "allOf", "oneOf"] {
        if let Some(Value::Array(subs)) = map.get_mut(key) {
            subs.iter_mut().for_each(strict);
        }
    }
}

/// The vendored SpinApp CRD's `v1alpha1` schema, strict.
fn spinapp_validator() -> jsonschema::Validator {
    let crd = yaml_documents(&root().join("deploy/spinkube/crd/core.spinkube.dev_spinapps.yaml"));
    assert_eq!(crd.len(), 1);
    let crd = &crd[0];
    assert_eq!(crd["kind"], "CustomResourceDefinition");
    assert_eq!(crd["spec"]["group"], "core.spinkube.dev");
    let version = crd["spec"]["versions"].as_array().unwrap().iter().find(|v| v["name"] == "v1alpha1").expect("v1alpha1");
    let mut schema = version["schema"]["openAPIV3Schema"].clone();
    strict(&mut schema);
    jsonschema::options().with_draft(jsonschema::Draft::Draft4).build(&schema).unwrap_or_else(|e| panic!("the CRD schema compiles: {e}"))
}

fn violations(validator: &jsonschema::Validator, instance: &Value) -> Vec<String> {
    validator.iter_errors(instance).map(|e| format!("{}: {e}", e.instance_path())).collect()
}

/// spin-operator's admission webhook (v0.6.1) rules for `replicas`.
fn webhook_violations(spinapp: &Value) -> Vec<String> {
    let spec = &spinapp["spec"];
    let autoscaling = spec["enableAutoscaling"].as_bool().unwrap_or(false);
    let replicas = spec["replicas"].as_i64().unwrap_or(0);
    let mut out = Vec::new();
    if spec["executor"].as_str().unwrap_or("").is_empty() {
        out.push("executor must be set".to_string());
    }
    if autoscaling && replicas != 0 {
        out.push("replicas cannot be set when autoscaling is enabled".to_string());
    }
    if !autoscaling && replicas < 1 {
        out.push("replicas must be > 0".to_string());
    }
    out
}

#[test]
fn the_spinapp_validates_against_the_vendored_crd_and_the_operators_webhook() {
    let validator = spinapp_validator();
    let spinapp = one_of_kind(&deployment(), "SpinApp");
    assert_eq!(spinapp["apiVersion"], "core.spinkube.dev/v1alpha1");
    assert_eq!(violations(&validator, &spinapp), Vec::<String>::new());
    assert_eq!(webhook_violations(&spinapp), Vec::<String>::new());
    let name = spinapp["metadata"]["name"].as_str().unwrap();
    assert!(name.len() <= 63 && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'), "{name}");

    // Probes on /healthz, resources set.
    for probe in ["readiness", "liveness"] {
        assert_eq!(spinapp["spec"]["checks"][probe]["httpGet"]["path"], "/healthz", "{probe}");
    }
    for side in ["requests", "limits"] {
        for resource in ["cpu", "memory"] {
            assert!(spinapp["spec"]["resources"][side][resource].is_string(), "resources.{side}.{resource}");
        }
    }
}

#[test]
fn the_validation_refuses_what_the_cluster_would_refuse_or_drop() {
    let validator = spinapp_validator();
    let good = one_of_kind(&deployment(), "SpinApp");
    type Mutation = (&'static str, fn(&mut Value));
    let mutations: [Mutation; 6] = [
        ("a misspelt field", |v| v["spec"]["replica"] = json!(2)),
        ("a secretKeyRef without key", |v| {
            v["spec"]["variables"][2]["valueFrom"]["secretKeyRef"].as_object_mut().unwrap().remove("key");
        }),
        ("a variable without name", |v| {
            v["spec"]["variables"][0].as_object_mut().unwrap().remove("name");
        }),
        ("a probe without path", |v| {
            v["spec"]["checks"]["readiness"]["httpGet"].as_object_mut().unwrap().remove("path");
        }),
        ("no image", |v| {
            v["spec"].as_object_mut().unwrap().remove("image");
        }),
        ("a malformed quantity", |v| v["spec"]["resources"]["limits"]["memory"] = json!("lots")),
    ];
    for (what, mutate) in mutations {
        let mut bad = good.clone();
        mutate(&mut bad);
        assert!(!violations(&validator, &bad).is_empty(), "{what} passed the CRD schema");
    }
    let mut both = good.clone();
    both["spec"]["replicas"] = json!(2);
    assert!(violations(&validator, &both).is_empty());
    assert!(!webhook_violations(&both).is_empty(), "replicas with enableAutoscaling");
}

#[test]
fn the_hpa_scales_the_spinapps_deployment_from_two_replicas() {
    let docs = deployment();
    let spinapp = one_of_kind(&docs, "SpinApp");
    let hpa = one_of_kind(&docs, "HorizontalPodAutoscaler");
    assert_eq!(hpa["apiVersion"], "autoscaling/v2");
    assert_eq!(spinapp["spec"]["enableAutoscaling"], true, "the operator leaves the replica count to the HPA");
    let target = &hpa["spec"]["scaleTargetRef"];
    assert_eq!((target["apiVersion"].as_str(), target["kind"].as_str()), (Some("apps/v1"), Some("Deployment")));
    assert_eq!(target["name"], spinapp["metadata"]["name"], "spin-operator names the Deployment after the SpinApp");
    let (min, max) = (hpa["spec"]["minReplicas"].as_i64().unwrap(), hpa["spec"]["maxReplicas"].as_i64().unwrap());
    assert!(2 <= min && min <= max, "{min}..{max}");
    assert!(!hpa["spec"]["metrics"].as_array().unwrap().is_empty());
}

#[test]
fn every_variable_is_set_and_every_secret_comes_from_a_secret() {
    let docs = deployment();
    let spinapp = one_of_kind(&docs, "SpinApp");
    let manifest = Manifest::load_default().unwrap();
    let set: BTreeMap<String, Value> = spinapp["spec"]["variables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| (v["name"].as_str().unwrap().to_string(), v.clone()))
        .collect();
    let declared: BTreeSet<String> = manifest.declared_variables().into_iter().map(|v| v.name).collect();
    assert_eq!(set.keys().cloned().collect::<BTreeSet<_>>(), declared, "the SpinApp sets exactly spin.toml's variables");
    for variable in manifest.declared_variables() {
        let entry = &set[&variable.name];
        if variable.secret {
            assert!(entry.get("value").is_none(), "{}: a secret is not written into the SpinApp", variable.name);
            let reference = &entry["valueFrom"]["secretKeyRef"];
            let (secret, key) = (reference["name"].as_str().unwrap(), reference["key"].as_str().unwrap());
            let found = docs.get(&("Secret".to_string(), secret.to_string())).unwrap_or_else(|| panic!("no Secret {secret}"));
            assert!(found["stringData"].get(key).is_some() || found["data"].get(key).is_some(), "Secret {secret} has no key {key}");
        }
    }
}

#[test]
fn the_runtime_config_secret_shares_a_redis_store_in_a_config_spin_accepts() {
    let docs = deployment();
    let spinapp = one_of_kind(&docs, "SpinApp");
    let name = spinapp["spec"]["runtimeConfig"]["loadFromSecret"].as_str().expect("runtimeConfig.loadFromSecret");
    let secret = &docs[&("Secret".to_string(), name.to_string())];
    let text = secret["stringData"]["runtime-config.toml"].as_str().expect("the key spin-operator mounts: runtime-config.toml");
    let config = RuntimeConfig::from_str(text).unwrap_or_else(|e| panic!("Spin {SPIN_VERSIONS_CHECKED} would refuse it: {e:#}"));
    assert_eq!(config.key_value_stores().get("default").map(String::as_str), Some("redis"));
    assert!(config.key_value_option("default", "url").unwrap().starts_with("redis"));
    assert_eq!(config.chain_kinds(), [ProviderKind::Env], "variables only from the environment: no lookup costs a round trip");

    // The optional Vault block, uncommented, is valid too and keeps the environment first.
    let uncommented: String = text.lines().map(|l| l.strip_prefix('#').filter(|r| !r.starts_with(' ')).unwrap_or(l)).collect::<Vec<_>>().join("\n");
    assert_ne!(uncommented, text);
    let with_vault = RuntimeConfig::from_str(&uncommented).unwrap_or_else(|e| panic!("{e:#}\n{uncommented}"));
    assert_eq!(with_vault.chain_kinds(), [ProviderKind::Env, ProviderKind::Vault, ProviderKind::Env]);
}

#[test]
fn every_runtime_config_file_is_one_spin_accepts() {
    let dir = root().join("runtime-config");
    let mut checked = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        assert_eq!(path.extension().and_then(|e| e.to_str()), Some("toml"), "{}", path.display());
        let config = RuntimeConfig::load(&path).unwrap_or_else(|e| panic!("{e:#}"));
        let text = config.text();
        assert!(!text.lines().any(|l| l.trim_start().starts_with("[[config_provider]]")), "{}: use [[variables_provider]]", path.display());
        // A vault provider is never first: the environment answers what is not a secret.
        if config.providers().iter().any(|p| p.kind().is_vault()) {
            assert_eq!(config.providers()[0].kind(), ProviderKind::Env, "{}", path.display());
        }
        // Never Spin's default store (a SQLite file: a durable write per revoke): one in
        // memory for one process, Redis for replicas.
        let store = config.key_value_stores().get("default").map(String::as_str);
        assert!(matches!(store, Some("spin") | Some("redis")), "{}: [key_value_store.default] is {store:?}", path.display());
        if store == Some("spin") {
            assert_eq!(config.key_value_option("default", "path"), None, "{}: a `spin` store with a path is a file", path.display());
        }
        checked.push(path.file_name().unwrap().to_string_lossy().into_owned());
    }
    checked.sort();
    assert_eq!(checked, ["azure-key-vault.toml", "local.toml", "redis-replicas.toml", "vault.toml"]);
}

/// The README's run command starts Spin with `runtime-config/local.toml` (the store in
/// memory), and so does every `spin up` it shows with a file of `runtime-config/`.
#[test]
fn the_readme_runs_spin_with_a_runtime_config_of_this_repo() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let run = readme.lines().find(|l| l.contains("spin build --up")).expect("the README's run command");
    assert!(run.trim_end().ends_with("spin build --up --runtime-config-file runtime-config/local.toml"), "{run}");
    for line in readme.lines().filter(|l| l.contains("--runtime-config-file")) {
        let file = line.split("--runtime-config-file").nth(1).unwrap().split_whitespace().next().unwrap();
        assert!(root().join(file).is_file(), "{line}: no {file}");
    }
}

#[test]
fn the_vendored_crd_is_the_one_the_readme_names() {
    let readme = std::fs::read_to_string(root().join("deploy/spinkube/crd/README.md")).unwrap();
    assert!(readme.contains("v0.6.1") && readme.contains("96c9d1d1d69c2c04e005375c44f323fb10e31002"), "{readme}");
    let crd = std::fs::read_to_string(root().join("deploy/spinkube/crd/core.spinkube.dev_spinapps.yaml")).unwrap();
    assert!(crd.contains("controller-gen.kubebuilder.io/version: v0.16.5"));
}
