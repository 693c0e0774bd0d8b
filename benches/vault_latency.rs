//! What a vault costs a request (issue 13's report): warm revoke p50 and vault lookups
//! per request for each documented settings layout, with a vault that takes 5 ms per
//! lookup (the test host's model of a vault round trip), for this build and, side by
//! side, for the build before the lazy reads.
//!
//! `cargo bench --bench vault_latency` (after building the component; `./scripts/bench`
//! does both). Prints a Markdown table. Not a test: it asserts only that every answer has
//! its expected status.
//!
//! The layouts are those of `tests/provider_lookups.rs` and the README: the environment
//! only; `runtime-config/vault.toml` (environment first) with the API keys as `sha256:`
//! digests in the environment and the client secret in HashiCorp Vault; the same with
//! the plain keys in Vault; `runtime-config/azure-key-vault.toml` with both secrets in Key
//! Vault; and Vault alone (every variable asked of it first). The test host models Spin's
//! provider chain (each `wasi:config` read resolved through the providers in order,
//! uncached, the environment appended; every application variable resolved again on an
//! instance's first outbound request), and each lookup on a vault provider waits
//! `VAULT_LATENCY_MS` (default 5).
//!
//! The other build: `VAULT_BENCH_BEFORE_WASM=<path to a .wasm>` adds its columns, with the
//! manifest `VAULT_BENCH_BEFORE_MANIFEST` (default: this `spin.toml`). To build the one
//! before the lazy reads (the first parent of the merge that brought them, 9b88172):
//! ```sh
//! git worktree add --detach ../graph-revoke-before 9b88172
//! (cd ../graph-revoke-before && cargo build --target wasm32-wasip2 --release)
//! VAULT_BENCH_BEFORE_WASM=../graph-revoke-before/target/wasm32-wasip2/release/graph_revoke.wasm \
//! VAULT_BENCH_BEFORE_MANIFEST=../graph-revoke-before/spin.toml cargo bench --bench vault_latency
//! ```
//! That build knows no `sha256:` digests: in the digest layout it is given the plain key
//! in the environment instead (the same providers in the same order, so the same lookups
//! for a component that reads every variable). `GRAPH_REVOKE_WASM` replaces this build, as
//! in the tests. `VAULT_BENCH_SAMPLES` (default 100) requests are timed per layout and
//! build, interleaved across all of them.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use graph_revoke_test_host::bench_support::{env_number, load_average};
use graph_revoke_test_host::{AppBuilder, Component, Manifest, MockServer, RuntimeConfig, TestApp, TestRequest};
use serde_json::json;

const API_KEY: &str = "bench-key-0123456789abcdef0123456789abcdef";
/// `sha256:` and the SHA-256 of [`API_KEY`] (`printf %s "$key" | sha256sum`).
const API_KEY_DIGEST: &str = "sha256:66f3f8da3e580459bdb225813f90ac5503b66546331698c87fc1ad431d4005a2";
const WRONG_KEY: &str = "not-the-key-0123456789abcdef0123456789ab";
const CLIENT_SECRET: &str = "bench-secret";
const TENANT: &str = "contoso.onmicrosoft.com";
const CLIENT_ID: &str = "6a1c5c0e-7d1b-4a57-9e0c-2f3d4b5a6c7d";
/// Where `runtime-config/vault.toml` keeps the secrets: `<mount>/<prefix>/<variable>`.
const VAULT_PATH: &str = "secret/graph-revoke";
const WARM_UP: usize = 3;

#[derive(Clone, Copy, PartialEq, Debug)]
enum Layout {
    EnvOnly,
    EnvThenVaultDigests,
    EnvThenVaultPlainKeys,
    KeyVault,
    VaultAlone,
}

impl Layout {
    const ALL: [Layout; 5] =
        [Layout::EnvOnly, Layout::EnvThenVaultDigests, Layout::EnvThenVaultPlainKeys, Layout::KeyVault, Layout::VaultAlone];

    fn name(self) -> &'static str {
        match self {
            Layout::EnvOnly => "environment only (no vault)",
            Layout::EnvThenVaultDigests => "`vault.toml`: environment first, key digests in it, client secret in Vault",
            Layout::EnvThenVaultPlainKeys => "`vault.toml` with the plain API keys in Vault",
            Layout::KeyVault => "`azure-key-vault.toml`, both secrets in Key Vault",
            Layout::VaultAlone => "Vault alone (every variable asked of it first)",
        }
    }
}

/// One build of the component with the manifest it ships with.
struct Build {
    name: &'static str,
    component: Arc<Component>,
    manifest: Manifest,
    /// Knows `sha256:` API-key digests.
    digests: bool,
}

/// One layout of one build, started, with what its requests measured.
struct Deployment {
    layout: Layout,
    app: TestApp,
    /// Kept alive for the app.
    _mocks: (MockServer, MockServer),
    warm: Vec<Duration>,
    warm_lookups: Vec<usize>,
    rejected: Vec<Duration>,
    rejected_lookups: Vec<usize>,
}

fn main() {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(run());
}

async fn run() {
    let samples = env_number("VAULT_BENCH_SAMPLES", 100.0) as usize;
    let latency = Duration::from_secs_f64(env_number("VAULT_LATENCY_MS", 5.0) / 1000.0);
    let load_before = load_average();
    let mut builds = vec![Build {
        name: "this build",
        component: Component::shared().expect("build the component first: cargo build --target wasm32-wasip2 --release"),
        manifest: Manifest::load_default().unwrap(),
        digests: true,
    }];
    if let Some(path) = std::env::var_os("VAULT_BENCH_BEFORE_WASM") {
        let manifest = match std::env::var_os("VAULT_BENCH_BEFORE_MANIFEST") {
            Some(manifest) => Manifest::load(Path::new(&manifest)).unwrap(),
            None => Manifest::load_default().unwrap(),
        };
        builds.push(Build {
            name: "before the lazy reads",
            component: Arc::new(Component::load(Path::new(&path)).unwrap()),
            manifest,
            digests: false,
        });
    }

    let mut deployments = Vec::new();
    for layout in Layout::ALL {
        for build in &builds {
            deployments.push(deploy(layout, build, latency).await);
        }
    }
    for d in &mut deployments {
        // The first revoke fetches the token; the rest are warm.
        for _ in 0..WARM_UP {
            let response = d.app.send(revoke()).await.unwrap();
            assert_eq!(response.status, 200, "{:?}: {}", d.layout, response.text());
        }
    }
    for round in 0..samples {
        // Every other round in reverse order: a request right after another's long
        // vault waits runs on a cold CPU, and this spreads that over all columns.
        let mut order: Vec<&mut Deployment> = deployments.iter_mut().collect();
        if round % 2 == 1 {
            order.reverse();
        }
        for d in order {
            // An untimed request that reads no variable, so the timed ones do not start
            // on a CPU that just idled through another layout's vault waits.
            assert_eq!(d.app.send(TestRequest::get("/openapi.json")).await.unwrap().status, 200);
            let (took, lookups) = measure(&d.app, revoke(), 200).await;
            d.warm.push(took);
            d.warm_lookups.push(lookups);
            let (took, lookups) = measure(&d.app, rejected(), 401).await;
            d.rejected.push(took);
            d.rejected_lookups.push(lookups);
        }
    }
    let load_after = load_average();

    let ms = |d: Duration| format!("{:.1} ms", d.as_secs_f64() * 1000.0);
    let mean = |v: &[usize]| v.iter().sum::<usize>() as f64 / v.len() as f64;
    let names: Vec<&str> = builds.iter().map(|b| b.name).collect();
    println!("| layout ({} ms per vault lookup) | warm revoke p50: {} | vault lookups per warm revoke | rejected caller p50 | vault lookups per rejected caller |", latency.as_millis(), names.join(" / "));
    println!("|---|---|---|---|---|");
    for d in &mut deployments {
        d.warm.sort();
        d.rejected.sort();
    }
    for layout in Layout::ALL {
        let row: Vec<&Deployment> = deployments.iter().filter(|d| d.layout == layout).collect();
        let cells = |f: &dyn Fn(&Deployment) -> String| row.iter().map(|d| f(d)).collect::<Vec<_>>().join(" / ");
        println!(
            "| {} | {} | {} | {} | {} |",
            layout.name(),
            cells(&|d| ms(d.warm[d.warm.len() / 2])),
            cells(&|d| format!("{:.0}", mean(&d.warm_lookups))),
            cells(&|d| ms(d.rejected[d.rejected.len() / 2])),
            cells(&|d| format!("{:.0}", mean(&d.rejected_lookups))),
        );
    }
    println!();
    println!(
        "{samples} warm revokes and {samples} rejected requests per layout and build, one at a time, interleaved (every other round reversed); \
         1-minute load average {load_before:.2} before, {load_after:.2} after."
    );
    for build in &builds {
        println!("{}: {}", build.name, display(build.component.path()));
    }
}

/// Sends `request`, checks its status; returns how long it took and its vault lookups.
async fn measure(app: &TestApp, request: TestRequest, status: u16) -> (Duration, usize) {
    app.reset_provider_lookups();
    let started = Instant::now();
    let response = app.send(request).await.unwrap();
    let took = started.elapsed();
    assert_eq!(response.status, status, "{}", response.text());
    (took, app.take_provider_lookups().vault())
}

fn revoke() -> TestRequest {
    TestRequest::post("/revoke").header("x-api-key", API_KEY).json(&json!({ "userId": "adele.vance@contoso.com" }))
}

fn rejected() -> TestRequest {
    TestRequest::post("/revoke").header("x-api-key", WRONG_KEY).json(&json!({ "userId": "adele.vance@contoso.com" }))
}

/// Starts `layout` for `build`, as `tests/provider_lookups.rs` does.
async fn deploy(layout: Layout, build: &Build, latency: Duration) -> Deployment {
    let login = MockServer::start().await;
    let graph = MockServer::start_trusting(&login).await;
    // As the documented layouts set them, each build the ones its manifest declares.
    let declared: Vec<String> = build.manifest.declared_variables().into_iter().map(|v| v.name).collect();
    let mut non_secrets =
        RuntimeConfig::environment_first_settings(TENANT, CLIENT_ID, &login.base_url(), &graph.base_url());
    non_secrets.retain(|(name, _)| declared.iter().any(|d| d == name));
    let vault = |name: &str| format!("{VAULT_PATH}/{name}");
    let builder = |manifest: &Manifest| {
        TestApp::builder(build.component.clone(), manifest).variables(non_secrets.clone()).vault_latency(latency)
    };
    let vault_toml = || RuntimeConfig::load_project("runtime-config/vault.toml").unwrap();
    let b: AppBuilder = match layout {
        Layout::EnvOnly => builder(&build.manifest).variable("client_secret", CLIENT_SECRET).variable("api_keys", API_KEY),
        Layout::EnvThenVaultDigests => builder(&build.manifest)
            .runtime_config(vault_toml())
            .variable("api_keys", if build.digests { API_KEY_DIGEST } else { API_KEY })
            .vault_secret(&vault("client_secret"), CLIENT_SECRET),
        Layout::EnvThenVaultPlainKeys => builder(&build.manifest)
            .runtime_config(vault_toml())
            .vault_secret(&vault("client_secret"), CLIENT_SECRET)
            .vault_secret(&vault("api_keys"), API_KEY),
        Layout::KeyVault => builder(&build.manifest.with_key_vault_names().unwrap())
            .runtime_config(RuntimeConfig::load_project("runtime-config/azure-key-vault.toml").unwrap())
            .vault_secret("clientsecret", CLIENT_SECRET)
            .vault_secret("apikeys", API_KEY),
        Layout::VaultAlone => builder(&build.manifest)
            .runtime_config(RuntimeConfig::vault_alone().unwrap())
            .vault_secret(&vault("client_secret"), CLIENT_SECRET)
            .vault_secret(&vault("api_keys"), API_KEY),
    };
    let app = b.start().unwrap_or_else(|e| panic!("{layout:?} does not start: {e:#}"));
    Deployment {
        layout,
        app,
        _mocks: (login, graph),
        warm: Vec::new(),
        warm_lookups: Vec::new(),
        rejected: Vec::new(),
        rejected_lookups: Vec::new(),
    }
}

fn display(path: &Path) -> String {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    path.strip_prefix(&root).unwrap_or(path).display().to_string()
}
