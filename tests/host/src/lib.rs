//! A test host for the `graph-revoke` component: runs the compiled `.wasm` the way Spin
//! does, and mocks the identity platform and Microsoft Graph.
//!
//! Integration tests and benchmarks drive the real release artifact (the file `spin up`
//! would load) through the same interfaces Spin provides, under the project's own
//! `spin.toml`: variables through `wasi:config/store`, the token cache through
//! `wasi:keyvalue/store` (and `atomics` for the abuse brake's counters), outbound HTTP checked against `allowed_outbound_hosts`, a fresh
//! instance per request. What would make Spin refuse to start (a missing required
//! variable) makes [`TestApp::start`] fail; what Spin would refuse at run time (a call to a
//! host the manifest does not allow) is refused and recorded.
//!
//! ```no_run
//! # async fn example() -> anyhow::Result<()> {
//! use graph_revoke_test_host::{Component, Manifest, MockServer, TestApp, TestRequest};
//!
//! let mock = MockServer::start().await;
//! let app = TestApp::start(
//!     Component::shared()?,
//!     &Manifest::load_default()?,
//!     &[
//!         ("tenant_id", "contoso.onmicrosoft.com"),
//!         ("client_id", "00000000-0000-0000-0000-000000000001"),
//!         ("login_base_url", &mock.base_url()),
//!         ("graph_base_url", &mock.base_url()),
//!     ],
//! )?;
//! let response = app.send(TestRequest::get("/healthz")).await?;
//! assert_eq!(response.status, 200);
//! assert!(app.denied_outbound().is_empty());
//! # Ok(())
//! # }
//! ```
//!
//! # Layout
//!
//! - [`component`]: compiles the component once and links it against the host interfaces.
//! - `freshness`: refuses a `.wasm` older than its sources.
//! - [`manifest`]: reads and validates `spin.toml`.
//! - `template`: Spin's `{{ variable }}` templates and variable-name rules.
//! - `variables`: resolves variables lazily through the provider chain, as Spin does.
//! - [`providers`]: Spin's variable providers (environment, static, HashiCorp Vault,
//!   Azure Key Vault) in runtime-config order, each lookup counted.
//! - [`runtime_config`]: runtime config files, checked against the keys Spin accepts.
//! - `builder`: [`AppBuilder`], an app from a runtime config, an environment and a vault.
//! - `route`: the HTTP trigger's route and the `spin-*` request headers.
//! - `allowed_hosts`: parses `allowed_outbound_hosts` and matches URLs against it.
//! - [`app`]: [`TestApp`], a started app; one fresh instance per request.
//! - `state`: the per-request store data the guest's imports reach.
//! - `bindings`: `bindgen!` over the project's `wit/` (`host-services` world).
//! - `config`: `wasi:config/store`, serving the component's variables.
//! - `key_value`: `wasi:keyvalue/store` and `atomics`, the in-memory `default` store.
//! - `outbound`: the `wasi:http` hook that enforces `allowed_outbound_hosts`.
//! - `host_calls`: counts the guest's calls per host interface, its stdout writes and
//!   its linear memory ([`TestApp::host_calls`]), for the benchmark.
//! - [`wire`]: [`TestRequest`] and [`TestResponse`].
//! - [`mock`]: [`MockServer`], the identity platform and Graph on loopback.
//! - [`wasm_layout`]: the component's stack and initial memory, read from the binary.
//! - [`wit`]: the worlds of the project's `wit/`, to compare with the component's imports.
//! - [`bench_support`]: what the benchmarks read from the machine (settings, load).

pub mod app;
pub mod bench_support;
pub mod component;
pub mod providers;
pub mod runtime_config;
pub mod manifest;
pub mod mock;
pub mod wasm_layout;
pub mod wire;
pub mod wit;

mod allowed_hosts;
mod bindings;
mod builder;
mod config;
mod freshness;
mod host_calls;
mod key_value;
mod outbound;
mod outbound_client;
mod route;
mod state;
mod template;
mod variables;

pub use app::{AppOptions, TestApp};
pub use builder::AppBuilder;
pub use key_value::KeyValueBackend;
pub use providers::{LookupCause, ProviderKind, ProviderLookups, VaultContents};
pub use runtime_config::{ProviderConfig, RuntimeConfig};
pub use component::Component;
pub use manifest::{DeclaredVariable, Manifest};
pub use mock::{FaultCounts, FaultPlan, MockResponse, MockServer, RecordedCall, MOCK_IDENTITY_HEADER, NEVER_REVOKED};
pub use wire::{Chunked, TestRequest, TestResponse};
pub use host_calls::HostCalls;
pub use wit::{world_exports, world_imports};
