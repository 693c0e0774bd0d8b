//! Variable provider lookups per route and per documented layout (issue 13): every lookup
//! on a vault provider is a round trip (20–40 ms in real Spin even when the vault answers
//! at once), so the layouts and the component keep them few.
//!
//! The test host models Spin's provider chain (see `tests/host/src/providers.rs` for what
//! was checked in Spin's source): providers in runtime-config order with an environment
//! provider always appended; each `wasi:config` read resolved through them uncached; and
//! every application variable resolved once more on each instance's first outbound
//! request (`resolver.prepare()` for `allowed_outbound_hosts`).
//!
//! Three groups of tests:
//! - the model (`spin_*`, `key_vault_*`, …): holds for any component;
//! - `lazily_*`: the exact counts of the component as it is (reading lazily); before it
//!   did, the model reproduced the table measured in real Spin 4.0.2 (see there);
//! - `target_*`: issue 13's targets (at most 1 per warm revoke and none per rejected
//!   request with key digests in the environment; at most 3 and 1 with plain keys in the
//!   vault).

mod common;
#[path = "../src/test_keys.rs"]
#[allow(dead_code)]
mod test_keys;

use std::time::{Duration, Instant};

use common::*;
use graph_revoke_test_host::{
    AppBuilder, Component, LookupCause, Manifest, MockServer, ProviderKind, ProviderLookups, RuntimeConfig, TestApp, TestRequest,
    TestResponse,
};

/// `sha256:` and the SHA-256 of [`API_KEY`]'s UTF-8 bytes in lower-case hex
/// (`printf %s "$key" | sha256sum`).
const API_KEY_DIGEST: &str = "sha256:aba85db9398ee47a65a9c7888dada36bf52e5f8d4a46900be60ead1486c387f2";
/// Long enough to be a key, but not a configured one.
const WRONG_KEY: &str = "not-the-key-0123456789abcdef0123456789ab";
/// Where `runtime-config/vault.toml` keeps the secrets: `<mount>/<prefix>/<variable>`.
const VAULT_PATH: &str = "secret/graph-revoke";
/// Every application variable of spin.toml.
const ALL_VARIABLES: [&str; 19] = [
    "allowed_callers",
    "api_keys",
    "caller_audience",
    "caller_role",
    "caller_tenant_id",
    "client_certificate",
    "client_id",
    "client_private_key",
    "client_secret",
    "credential",
    "graph_base_url",
    "login_base_url",
    "managed_identity_client_id",
    "managed_identity_endpoint",
    "managed_identity_header",
    "max_revocations",
    "max_users",
    "tenant_id",
    "time_budget_ms",
];

/// The documented ways to give the component its settings.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Layout {
    /// No runtime config: everything `SPIN_VARIABLE_*`.
    EnvOnly,
    /// A HashiCorp Vault provider alone (the shape documented before issue 13) holding the
    /// two secrets; everything else `SPIN_VARIABLE_*`, which Spin asks after the vault.
    VaultAlone,
    /// `runtime-config/vault.toml`: the environment first, holding everything but the
    /// client secret, the API keys as `sha256:` digests; the client secret in Vault.
    EnvThenVaultDigests,
    /// `runtime-config/vault.toml` with the plain API keys and the client secret in Vault.
    EnvThenVaultPlainKeys,
    /// `runtime-config/azure-key-vault.toml`, the manifest declaring the two secrets under
    /// names Key Vault can hold (`apikeys`, `clientsecret`), those two in Key Vault.
    KeyVault,
}

/// A started layout with its mocks.
struct Deployment {
    app: TestApp,
    login: MockServer,
    graph: MockServer,
}

/// The variables that are not secrets, all set, as the documented environment-first
/// layouts set them ([`RuntimeConfig::environment_first_settings`]).
fn non_secrets(login: &MockServer, graph: &MockServer) -> Vec<(&'static str, String)> {
    RuntimeConfig::environment_first_settings(TENANT, CLIENT_ID, &login.base_url(), &graph.base_url())
}

/// `runtime-config/vault.toml` without its environment provider: the vault alone.
fn vault_alone_config() -> RuntimeConfig {
    let config = RuntimeConfig::vault_alone().unwrap();
    assert_eq!(config.chain_kinds(), [ProviderKind::Vault, ProviderKind::Env]);
    config
}

/// spin.toml with the two secrets as application variables Key Vault can hold.
fn key_vault_manifest() -> Manifest {
    Manifest::load_default().unwrap().with_key_vault_names().unwrap()
}

fn builder(manifest: &Manifest) -> AppBuilder {
    TestApp::builder(Component::shared().unwrap(), manifest)
}

async fn deploy(layout: Layout) -> Deployment {
    deploy_with(layout, |b| b).await
}

/// Starts `layout`; `adjust` may change the builder last.
async fn deploy_with(layout: Layout, adjust: impl FnOnce(AppBuilder) -> AppBuilder) -> Deployment {
    let login = MockServer::start().await;
    let graph = MockServer::start_trusting(&login).await;
    let manifest = Manifest::load_default().unwrap();
    let vault = |name: &str| format!("{VAULT_PATH}/{name}");
    let b = match layout {
        Layout::EnvOnly => builder(&manifest)
            .variables(non_secrets(&login, &graph))
            .variable("client_secret", CLIENT_SECRET)
            .variable("api_keys", API_KEY),
        Layout::VaultAlone => builder(&manifest)
            .runtime_config(vault_alone_config())
            .variables(non_secrets(&login, &graph))
            .vault_secret(&vault("client_secret"), CLIENT_SECRET)
            .vault_secret(&vault("api_keys"), API_KEY),
        Layout::EnvThenVaultDigests => builder(&manifest)
            .runtime_config(RuntimeConfig::load_project("runtime-config/vault.toml").unwrap())
            .variables(non_secrets(&login, &graph))
            .variable("api_keys", API_KEY_DIGEST)
            .vault_secret(&vault("client_secret"), CLIENT_SECRET),
        Layout::EnvThenVaultPlainKeys => builder(&manifest)
            .runtime_config(RuntimeConfig::load_project("runtime-config/vault.toml").unwrap())
            .variables(non_secrets(&login, &graph))
            .vault_secret(&vault("client_secret"), CLIENT_SECRET)
            .vault_secret(&vault("api_keys"), API_KEY),
        Layout::KeyVault => builder(&key_vault_manifest())
            .runtime_config(RuntimeConfig::load_project("runtime-config/azure-key-vault.toml").unwrap())
            .variables(non_secrets(&login, &graph))
            .vault_secret("clientsecret", CLIENT_SECRET)
            .vault_secret("apikeys", API_KEY),
    };
    let app = adjust(b).start().unwrap_or_else(|e| panic!("{layout:?} does not start: {e:#}"));
    Deployment { app, login, graph }
}

fn authenticated(key: &str, user: &str) -> TestRequest {
    TestRequest::post("/revoke").header("x-api-key", key).json(&serde_json::json!({ "userId": user }))
}

impl Deployment {
    /// Sends `request`, checks its status, and returns the lookups it cost.
    async fn cost(&self, request: TestRequest, status: u16) -> ProviderLookups {
        self.app.reset_provider_lookups();
        let response = self.send(request).await;
        assert_eq!(response.status, status, "{}", response.text());
        self.app.take_provider_lookups()
    }

    async fn send(&self, request: TestRequest) -> TestResponse {
        let response = self.app.send(request).await.expect("the host runs the request");
        assert_nothing_leaked(&response);
        response
    }

    /// The four routes of issue 13, in this order on a fresh app: `/healthz`, a request
    /// with a wrong key, the first revoke (no token cached), a second revoke.
    async fn costs(&self) -> Costs {
        let costs = Costs {
            healthz: self.cost(TestRequest::get("/healthz"), 200).await,
            rejected: self.cost(authenticated(WRONG_KEY, "adele@contoso.com"), 401).await,
            cold: self.cost(revoke("adele@contoso.com"), 200).await,
            warm: self.cost(revoke("alex@contoso.com"), 200).await,
        };
        assert!(self.app.denied_outbound().is_empty(), "{:?}", self.app.denied_outbound());
        assert_eq!(self.login.calls().len(), 1, "one token for both revokes");
        assert_eq!(self.graph.calls().len(), 2);
        costs
    }
}

/// Lookups per route.
#[derive(Debug)]
struct Costs {
    healthz: ProviderLookups,
    rejected: ProviderLookups,
    cold: ProviderLookups,
    warm: ProviderLookups,
}

impl Costs {
    /// Vault lookups: warm revoke, `/healthz`, rejected, cold revoke (the columns
    /// first).
    fn vault(&self) -> [usize; 4] {
        [self.warm.vault(), self.healthz.vault(), self.rejected.vault(), self.cold.vault()]
    }
}

// ---------------------------------------------------------------------------------------
// The model: true whatever the component reads.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_documented_runtime_configs_list_the_environment_first_and_spin_appends_it_again() {
    let vault = RuntimeConfig::load_project("runtime-config/vault.toml").unwrap();
    assert_eq!(vault.chain_kinds(), [ProviderKind::Env, ProviderKind::Vault, ProviderKind::Env]);
    let key_vault = RuntimeConfig::load_project("runtime-config/azure-key-vault.toml").unwrap();
    assert_eq!(key_vault.chain_kinds(), [ProviderKind::Env, ProviderKind::AzureKeyVault, ProviderKind::Env]);
    let d = deploy(Layout::EnvThenVaultPlainKeys).await;
    assert_eq!(d.app.provider_kinds(), [ProviderKind::Env, ProviderKind::Vault, ProviderKind::Env]);
    assert_eq!(deploy(Layout::EnvOnly).await.app.provider_kinds(), [ProviderKind::Env]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spin_resolves_every_application_variable_once_per_graph_calling_request() {
    // Per layout: the variables asked of the vault, and the environment lookups, for the
    // nineteen application variables resolved once each.
    for (layout, asked_of_vault, env_lookups) in [
        (Layout::EnvOnly, &[][..], 19),
        // The vault first: asked for all nineteen; the seventeen it lacks then from the environment.
        (Layout::VaultAlone, &ALL_VARIABLES[..], 17),
        // The environment first: it answers seventeen and misses the two the vault holds.
        (Layout::EnvThenVaultPlainKeys, &["api_keys", "client_secret"][..], 19),
        (Layout::KeyVault, &["apikeys", "clientsecret"][..], 19),
    ] {
        let costs = deploy(layout).await.costs().await;
        for (route, lookups) in [("cold", &costs.cold), ("warm", &costs.warm)] {
            let check = lookups.caused_by(LookupCause::OutboundCheck);
            assert_eq!(check.vault_by_variable(), each_once(asked_of_vault), "{layout:?} {route}: {check}");
            assert_eq!(check.of_kind(ProviderKind::Env), env_lookups, "{layout:?} {route}: {check}");
        }
        for (route, lookups) in [("healthz", &costs.healthz), ("rejected", &costs.rejected)] {
            assert_eq!(lookups.caused_by(LookupCause::OutboundCheck).total(), 0, "{layout:?} {route}: no outbound request");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_vault_costs_no_vault_lookup_on_any_route() {
    let costs = deploy(Layout::EnvOnly).await.costs().await;
    assert_eq!(costs.vault(), [0, 0, 0, 0]);
    assert!(costs.warm.of_kind(ProviderKind::Env) >= ALL_VARIABLES.len(), "the environment answers instead: {}", costs.warm);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_vault_alone_every_read_asks_the_vault_first() {
    let costs = deploy(Layout::VaultAlone).await.costs().await;
    for lookups in [&costs.healthz, &costs.rejected, &costs.cold, &costs.warm] {
        let reads = lookups.caused_by(LookupCause::ComponentRead);
        assert!(reads.total() > 0);
        for name in ALL_VARIABLES {
            let (vault, env) = (reads.get(name, ProviderKind::Vault), reads.get(name, ProviderKind::Env));
            if ["api_keys", "client_secret"].contains(&name) {
                assert_eq!(env, 0, "{name}: the vault answered: {reads}");
            } else {
                assert_eq!(env, vault, "{name}: every read missed in the vault, then the environment answered: {reads}");
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_environment_first_only_the_secrets_reach_the_vault() {
    for layout in [Layout::EnvThenVaultPlainKeys, Layout::KeyVault] {
        let costs = deploy(layout).await.costs().await;
        for lookups in [&costs.healthz, &costs.rejected, &costs.cold, &costs.warm] {
            let vaulted: Vec<String> = lookups.vault_by_variable().into_keys().collect();
            assert!(
                vaulted.iter().all(|n| ["api_keys", "client_secret", "apikeys", "clientsecret"].contains(&n.as_str())),
                "{layout:?}: {lookups}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_variable_left_at_its_default_costs_a_vault_miss_and_two_environment_misses() {
    // max_users is not set: env (listed) misses, the vault answers 404, the appended env
    // misses, then spin.toml's default applies.
    let login = MockServer::start().await;
    let graph = MockServer::start_trusting(&login).await;
    let vars: Vec<_> = non_secrets(&login, &graph).into_iter().filter(|(n, _)| *n != "max_users").collect();
    let app = builder(&Manifest::load_default().unwrap())
        .runtime_config(RuntimeConfig::load_project("runtime-config/vault.toml").unwrap())
        .variables(vars)
        .vault_secret(&format!("{VAULT_PATH}/client_secret"), CLIENT_SECRET)
        .vault_secret(&format!("{VAULT_PATH}/api_keys"), API_KEY)
        .start()
        .unwrap();
    let d = Deployment { app, login, graph };
    let costs = d.costs().await;
    let check = costs.warm.caused_by(LookupCause::OutboundCheck);
    assert_eq!(check.get("max_users", ProviderKind::Vault), 1, "{check}");
    assert_eq!(check.get("max_users", ProviderKind::Env), 2, "{check}");
    let reads = costs.warm.caused_by(LookupCause::ComponentRead);
    assert_eq!(
        reads.get("max_users", ProviderKind::Vault),
        reads.get("max_users", ProviderKind::Env) / 2,
        "each read of the default: one vault miss between two environment misses: {reads}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_static_provider_listed_first_does_not_put_the_environment_before_the_vault() {
    // Spin appends the environment provider after the listed ones even when a static one
    // is listed: a SPIN_VARIABLE_* value is then asked of the vault first.
    let vault = RuntimeConfig::load_project("runtime-config/vault.toml").unwrap();
    let text = vault.text().replacen("type = \"env\"", "type = \"static\"\nvalues = { time_budget_ms = \"25000\" }", 1);
    let config = RuntimeConfig::from_str(&text).unwrap();
    assert_eq!(config.chain_kinds(), [ProviderKind::Static, ProviderKind::Vault, ProviderKind::Env]);
    let d = deploy_with(Layout::EnvThenVaultPlainKeys, |b| b.runtime_config(config)).await;
    let costs = d.costs().await;
    let check = costs.warm.caused_by(LookupCause::OutboundCheck);
    assert_eq!(check.get("time_budget_ms", ProviderKind::Vault), 0, "static answered: {check}");
    assert_eq!(check.get("tenant_id", ProviderKind::Vault), 1, "the vault is asked before the environment: {check}");
    assert_eq!(check.vault(), ALL_VARIABLES.len() - 1, "{check}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_vault_lookup_takes_the_configured_latency() {
    let d = deploy_with(Layout::VaultAlone, |b| b.vault_latency(Duration::from_millis(5))).await;
    d.send(revoke("adele@contoso.com")).await;
    d.app.reset_provider_lookups();
    let started = Instant::now();
    let response = d.send(revoke("alex@contoso.com")).await;
    let took = started.elapsed();
    assert_eq!(response.status, 200);
    let lookups = d.app.take_provider_lookups().vault();
    assert!(lookups > 0);
    assert!(took >= Duration::from_millis(5) * lookups as u32, "{lookups} lookups of 5 ms took {took:?}");
}

// Azure Key Vault: misses are errors, names with '_' cannot exist.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_vault_with_every_variable_in_the_environment_is_never_asked() {
    let d = deploy_with(Layout::EnvOnly, |b| {
        b.runtime_config(RuntimeConfig::load_project("runtime-config/azure-key-vault.toml").unwrap())
    })
    .await;
    let costs = d.costs().await;
    assert_eq!(costs.vault(), [0, 0, 0, 0]);
    assert!(d.app.variable_errors().is_empty(), "{:?}", d.app.variable_errors());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_left_to_key_vault_under_an_underscored_name_cannot_be_read() {
    // spin.toml's `client_secret` has '_': Key Vault can never hold it, so the read fails
    // (the environment provider appended after Key Vault is never reached) and nothing is
    // sent.
    let login = MockServer::start().await;
    let graph = MockServer::start_trusting(&login).await;
    let app = builder(&Manifest::load_default().unwrap())
        .runtime_config(RuntimeConfig::load_project("runtime-config/azure-key-vault.toml").unwrap())
        .variables(non_secrets(&login, &graph))
        .variable("api_keys", API_KEY)
        .vault_secret("client_secret", CLIENT_SECRET)
        .vault_secret("client-secret", CLIENT_SECRET)
        .start()
        .unwrap();
    let d = Deployment { app, login, graph };
    let health = d.send(TestRequest::get("/healthz")).await;
    assert_eq!(health.status, 503, "{}", health.text());
    assert!(health.text().contains("client_secret"), "{}", health.text());
    let response = d.send(revoke("adele@contoso.com")).await;
    assert!(response.status >= 500, "{} {}", response.status, response.text());
    assert_eq!(d.login.calls().len() + d.graph.calls().len(), 0);
    let errors = d.app.variable_errors();
    assert!(errors.iter().any(|e| e.starts_with("client_secret") && e.contains("not a valid secret name")), "{errors:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_application_variable_only_key_vault_could_answer_refuses_every_outbound_request() {
    // The component never reads `audit_label`, but Spin resolves every application
    // variable on the first outbound request; Key Vault fails it (a name with '_'), so
    // Spin refuses the token request although every variable the component reads is set.
    let text = Manifest::load_default().unwrap().text().replacen("[variables]\n", "[variables]\naudit_label = { default = \"x\" }\n", 1);
    let manifest = Manifest::from_str(&text).unwrap();
    let login = MockServer::start().await;
    let graph = MockServer::start_trusting(&login).await;
    let app = builder(&manifest)
        .runtime_config(RuntimeConfig::load_project("runtime-config/azure-key-vault.toml").unwrap())
        .variables(non_secrets(&login, &graph))
        .variable("api_keys", API_KEY)
        .variable("client_secret", CLIENT_SECRET)
        .start()
        .unwrap();
    let d = Deployment { app, login, graph };
    assert_eq!(d.send(TestRequest::get("/healthz")).await.status, 200, "the component's own reads all succeed");
    let response = d.send(revoke("adele@contoso.com")).await;
    assert!(response.status >= 500, "{} {}", response.status, response.text());
    assert_eq!(d.login.calls().len() + d.graph.calls().len(), 0, "nothing was sent");
    assert_eq!(d.app.denied_outbound(), vec![format!("{}/{TENANT}/oauth2/v2.0/token", d.login.base_url())]);
    let errors = d.app.variable_errors();
    assert!(errors.iter().any(|e| e.starts_with("audit_label (OutboundCheck)")), "{errors:?}");
}

// ---------------------------------------------------------------------------------------
// The component as it is: it reads lazily (the caller check reads `api_keys` alone, which
// credential once the caller is known, the client secret only to fetch a token). Before it
// did (it read all eight variables of the time on every request but `/openapi.json`), the
// model gave exactly the table measured in real Spin 4.0.2 and 3.6.3: vault alone
// 16 per warm revoke, 8 per /healthz, 8 per rejected request; environment first 4, 2 and
// 2; key digests in the environment still 1 per rejected request. These pin what lazy
// reads changed. The vault alone pays for every variable spin.toml declares (Spin's own
// resolution, 19: the abuse brake's `max_revocations`, the four caller token settings and
// the six credential settings came after the measurement) and for every read (9 on a warm
// revoke: `api_keys`, the six Graph settings, `max_revocations`, `credential`; 10 on a cold
// one: `client_secret` too). The environment-first layouts set them all in the environment
// and pay nothing for them.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lazily_the_vault_alone_costs_28_per_warm_revoke_and_1_per_rejected_request() {
    let costs = deploy(Layout::VaultAlone).await.costs().await;
    assert_eq!(costs.vault(), [28, 11, 1, 29], "warm, healthz, rejected, cold");
    assert_eq!(costs.warm.caused_by(LookupCause::ComponentRead).of_variable("client_secret"), 0, "{}", costs.warm);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lazily_env_first_costs_3_per_warm_revoke_and_1_per_rejected_request() {
    for layout in [Layout::EnvThenVaultPlainKeys, Layout::KeyVault] {
        let costs = deploy(layout).await.costs().await;
        assert_eq!(costs.vault(), [3, 2, 1, 4], "{layout:?}: warm, healthz, rejected, cold");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lazily_key_digests_in_the_environment_cost_nothing_on_a_rejected_request() {
    let costs = deploy(Layout::EnvThenVaultDigests).await.costs().await;
    assert_eq!(costs.vault(), [1, 1, 0, 2], "warm, healthz, rejected, cold");
}

// ---------------------------------------------------------------------------------------
// Issue 13's targets: the component reads lazily (the caller check reads only `api_keys`,
// the client secret only to fetch a token) and accepts `sha256:` key digests.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn target_env_first_with_key_digests_costs_at_most_1_per_warm_revoke_and_none_per_rejected() {
    let costs = deploy(Layout::EnvThenVaultDigests).await.costs().await;
    assert_eq!(costs.rejected.vault(), 0, "{}", costs.rejected);
    assert!(costs.warm.vault() <= 1, "{}", costs.warm);
    // The one lookup is Spin's own resolution of client_secret; the component does not
    // read the client secret on a warm revoke.
    assert_eq!(costs.warm.caused_by(LookupCause::ComponentRead).of_variable("client_secret"), 0, "{}", costs.warm);
    assert!(costs.cold.vault() <= 2, "the token fetch reads the client secret once: {}", costs.cold);
    assert!(costs.healthz.vault() <= 1, "/healthz may read everything: {}", costs.healthz);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn target_env_first_with_plain_keys_in_vault_costs_at_most_3_per_warm_revoke_and_1_per_rejected() {
    for layout in [Layout::EnvThenVaultPlainKeys, Layout::KeyVault] {
        let costs = deploy(layout).await.costs().await;
        assert!(costs.rejected.vault() <= 1, "{layout:?}: {}", costs.rejected);
        assert!(costs.warm.vault() <= 3, "{layout:?}: {}", costs.warm);
        let secret = if layout == Layout::KeyVault { "clientsecret" } else { "client_secret" };
        assert_eq!(costs.warm.caused_by(LookupCause::ComponentRead).of_variable(secret), 0, "{layout:?}: {}", costs.warm);
        assert!(costs.cold.vault() <= 4, "{layout:?}: {}", costs.cold);
        assert!(costs.healthz.vault() <= 2, "{layout:?}: {}", costs.healthz);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn target_a_rejected_caller_reads_only_the_caller_credential() {
    for layout in [Layout::EnvOnly, Layout::VaultAlone, Layout::EnvThenVaultPlainKeys] {
        let d = deploy(layout).await;
        let rejected = d.cost(authenticated(WRONG_KEY, "adele@contoso.com"), 401).await;
        let read: Vec<&str> = rejected.entries().map(|(name, _, _, _)| name).collect();
        assert!(read.iter().all(|n| *n == "api_keys"), "{layout:?}: {rejected}");
    }
}

/// `runtime-config/vault.toml` with Entra ID caller tokens instead of API keys: the token
/// settings are not secrets and live in the environment with the rest (`api_keys` empty);
/// `configure` adds the app credential. Returns the deployment and its lookups for
/// `/healthz`, a refused token, a cold and a warm revoke.
async fn caller_token_costs(configure: impl FnOnce(AppBuilder) -> AppBuilder) -> (Deployment, [ProviderLookups; 4]) {
    use common::tokens::{bearer, jwks, signer, token, v2_claims, AUDIENCE, KID, TENANT_ID};
    let login = MockServer::start().await;
    let graph = MockServer::start_trusting(&login).await;
    login.set_jwks(&jwks(KID, signer()));
    let b = builder(&Manifest::load_default().unwrap())
        .runtime_config(RuntimeConfig::load_project("runtime-config/vault.toml").unwrap())
        .variables(non_secrets(&login, &graph))
        .variable("caller_audience", AUDIENCE)
        .variable("caller_tenant_id", TENANT_ID)
        .variable("api_keys", "");
    let d = Deployment { app: configure(b).start().unwrap(), login, graph };
    let as_caller = |authorization: &str| {
        TestRequest::post("/revoke").header("authorization", authorization).json(&serde_json::json!({ "userId": "adele@contoso.com" }))
    };
    let good = bearer(&token(&v2_claims(&d.login.base_url())));
    let healthz = d.cost(TestRequest::get("/healthz"), 200).await;
    let rejected = d.cost(as_caller("Bearer not.a.token"), 401).await;
    let cold = d.cost(as_caller(&good), 200).await;
    let warm = d.cost(as_caller(&good), 200).await;
    (d, [healthz, rejected, cold, warm])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn target_caller_tokens_cost_no_lookup_on_a_rejected_request_and_1_per_warm_revoke() {
    // Only the client secret is in Vault.
    let (d, [healthz, rejected, cold, warm]) =
        caller_token_costs(|b| b.vault_secret(&format!("{VAULT_PATH}/client_secret"), CLIENT_SECRET)).await;
    assert_eq!([warm.vault(), healthz.vault(), rejected.vault(), cold.vault()], [1, 1, 0, 2], "warm, healthz, rejected, cold: {warm}");
    assert_eq!(warm.caused_by(LookupCause::ComponentRead).vault(), 0, "the one lookup is Spin's resolution of client_secret: {warm}");
    assert_eq!((d.login.jwks_fetches(), d.login.token_requests(), d.graph.calls().len()), (1, 1, 2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn target_caller_tokens_and_a_certificate_key_in_vault_cost_1_per_warm_revoke() {
    // Issue 13's third target: the certificate's private key the only secret, in Vault; the
    // certificate (not a secret) in the environment, the client secret set empty there (an
    // empty value is an answer), the key not (the environment would answer it first).
    let key = test_keys::other();
    let (certificate, _) = test_keys::certificate(key);
    let (d, [_, rejected, cold, warm]) = caller_token_costs(|b| {
        b.variable("credential", "certificate")
            .variable("client_certificate", &certificate)
            .variable("client_secret", "")
            .without_variable("client_private_key")
            .vault_secret(&format!("{VAULT_PATH}/client_private_key"), &test_keys::private_key_pem(key))
    })
    .await;
    assert_eq!([warm.vault(), rejected.vault(), cold.vault()], [1, 0, 2], "warm, rejected, cold: {warm}");
    assert_eq!(warm.caused_by(LookupCause::ComponentRead).vault(), 0, "the one lookup is Spin's resolution of client_private_key: {warm}");
    assert_eq!(cold.caused_by(LookupCause::ComponentRead).vault(), 1, "client_private_key, read to sign: {cold}");
    assert_eq!((d.login.token_requests(), d.graph.calls().len()), (1, 2), "one token, signed with the key from Vault");
}
