//! A running app: `spin up` for one component, without a listening socket.
//!
//! [`TestApp::start`] does what Spin does before it serves: resolve variables (refusing to
//! start without a required one), resolve `allowed_outbound_hosts`, set up the key-value
//! store. [`TestApp::send`] then handles one request the way Spin's `wasi:http` executor
//! does: a fresh `Store` and instance per request, the response taken from the
//! response-outparam, the body read to the end, then the guest task awaited.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use wasmtime::{Store, UpdateDeadline};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::WasiCtx;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpView};

use crate::allowed_hosts::AllowedHosts;
use crate::component::Component;
use crate::host_calls::{CountedOutput, HostCalls, RequestCalls, Stdio, Tally};
use crate::key_value::{KeyValueAccess, SharedMap, DEFAULT_STORE};
use crate::manifest::Manifest;
use crate::outbound::OutboundPolicy;
use crate::route::Route;
use crate::state::{HostState, MemoryWatch};
use crate::variables::Variables;
use crate::wire::{TestRequest, TestResponse};

/// The address requests appear to come to, as with `spin up` on its default port.
const LISTEN_ADDR: &str = "127.0.0.1:3000";
/// The address requests appear to come from (`spin-client-addr`).
const CLIENT_ADDR: &str = "127.0.0.1:49152";
/// Most a request may take, guest and outbound calls included, before the host gives up.
/// Above the component's default 25 s time budget, so a budget test still sees the
/// component's own answer.
const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Most output kept per stream per request.
const OUTPUT_CAPACITY: usize = 4 << 20;

/// Host capabilities that differ between Spin deployments.
#[derive(Clone, Debug)]
pub struct AppOptions {
    /// `true`: the `default` key-value store exists (in memory, shared by all requests of
    /// the app, like Spin's SQLite file). `false`: the host has no store and opening it
    /// fails with `no-such-store`.
    pub key_value_store: bool,
}

impl Default for AppOptions {
    fn default() -> Self {
        AppOptions {
            key_value_store: true,
        }
    }
}

/// The component running under one manifest and one set of variable values.
pub struct TestApp {
    component: Arc<Component>,
    variables: Arc<Variables>,
    allowed_hosts: Arc<AllowedHosts>,
    route: Route,
    environment: Vec<(String, String)>,
    key_value: KeyValueAccess,
    /// The `default` store's contents, reachable by tests even when the guest cannot.
    store: SharedMap,
    denied: Arc<Mutex<Vec<String>>>,
    kept_off_network: Arc<Mutex<Vec<String>>>,
    request_timeout: Duration,
    /// What all requests so far made the host do.
    tally: Arc<Tally>,
}

impl TestApp {
    /// Starts the app as `spin up` would with `SPIN_VARIABLE_<NAME>=<value>` for each of
    /// `variables` (names in any case). Fails, naming the variable, if a `required`
    /// variable has no value, as Spin refuses to start. Undeclared names are ignored.
    pub fn start(
        component: Arc<Component>,
        manifest: &Manifest,
        variables: &[(&str, &str)],
    ) -> Result<TestApp> {
        Self::start_with(component, manifest, variables, AppOptions::default())
    }

    /// [`TestApp::start`] with non-default host capabilities.
    pub fn start_with(
        component: Arc<Component>,
        manifest: &Manifest,
        variables: &[(&str, &str)],
        options: AppOptions,
    ) -> Result<TestApp> {
        let variables = Variables::resolve(manifest, variables)?;

        let hosts = manifest
            .component
            .allowed_outbound_hosts
            .iter()
            .map(|t| variables.render(t))
            .collect::<Result<Vec<_>>>()?;
        let allowed_hosts = AllowedHosts::parse(&hosts)
            .with_context(|| format!("allowed_outbound_hosts resolved to {hosts:?}"))?;

        // Spin refuses to start when a component names a store its runtime config does
        // not define; without a runtime config only `default` exists.
        let labels = &manifest.component.key_value_stores;
        if let Some(label) = labels.iter().find(|l| *l != DEFAULT_STORE) {
            bail!(
                "unknown key_value_stores label {label:?}: the test host provides only \"default\""
            );
        }
        let store = SharedMap::default();
        let key_value = KeyValueAccess {
            allowed: labels.clone(),
            default_store: options.key_value_store.then(|| store.clone()),
        };

        Ok(TestApp {
            component,
            variables: Arc::new(variables),
            allowed_hosts: Arc::new(allowed_hosts),
            route: manifest.component.route.clone(),
            environment: manifest
                .component
                .environment
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            key_value,
            store,
            denied: Arc::default(),
            kept_off_network: Arc::default(),
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            tally: Arc::default(),
        })
    }

    /// Changes how long one request may take before [`TestApp::send`] gives up (30 s).
    pub fn with_request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// Handles one request in a fresh instance, as Spin does.
    ///
    /// `Err` when Spin would answer 500 on the component's behalf (the guest trapped or
    /// never set a response) and when the request ran past its timeout; the message
    /// carries the guest's stderr, where a panic message lands.
    pub async fn send(&self, request: TestRequest) -> Result<TestResponse> {
        let host = request
            .header_value("host")
            .unwrap_or(LISTEN_ADDR)
            .to_string();
        let path = request.path_and_query.split('?').next().unwrap_or("");
        let full_url = format!("http://{host}{}", request.path_and_query);
        let Some(spin_headers) = self.route.spin_headers(path, &full_url, CLIENT_ADDR) else {
            // Spin's router answers without instantiating the component.
            return Ok(TestResponse {
                status: 404,
                headers: Vec::new(),
                body: Vec::new(),
                stdout: String::new(),
                stderr: String::new(),
                peak_memory_bytes: 0,
            });
        };
        let incoming = to_http_request(&request, &host, &spin_headers)?;

        let stdout = MemoryOutputPipe::new(OUTPUT_CAPACITY);
        let stderr = MemoryOutputPipe::new(OUTPUT_CAPACITY);
        let peak_memory = Arc::new(AtomicUsize::new(0));
        let store = self.new_store(stdout.clone(), stderr.clone(), peak_memory.clone());
        let outcome = tokio::time::timeout(
            self.request_timeout,
            run_guest(store, self.component.pre.clone(), incoming),
        )
        .await
        .unwrap_or_else(|_| {
            Err(anyhow!(
                "request not finished after {:?}; the guest was stopped",
                self.request_timeout
            ))
        });

        let stdout = String::from_utf8_lossy(&stdout.contents()).into_owned();
        let stderr = String::from_utf8_lossy(&stderr.contents()).into_owned();
        let (parts, body) = outcome.map_err(|e| {
            let printed = match stderr.is_empty() {
                true => String::new(),
                false => format!("\n--- guest stderr ---\n{stderr}"),
            };
            anyhow!(
                "{} {}: {e:#}{printed}",
                request.method,
                request.path_and_query
            )
        })?;
        Ok(TestResponse {
            status: parts.status.as_u16(),
            headers: parts
                .headers
                .iter()
                .map(|(n, v)| {
                    let value = String::from_utf8_lossy(v.as_bytes()).into_owned();
                    (n.as_str().to_string(), value)
                })
                .collect(),
            body: body.to_vec(),
            stdout,
            stderr,
            peak_memory_bytes: peak_memory.load(Ordering::Relaxed),
        })
    }

    /// Outbound requests refused by `allowed_outbound_hosts`, as
    /// `scheme://host:port/path?query`, oldest first.
    pub fn denied_outbound(&self) -> Vec<String> {
        self.denied.lock().unwrap().clone()
    }

    /// Outbound requests the manifest allowed but the host did not send because they
    /// were not for loopback (tests and benchmarks never leave 127.0.0.1), oldest first.
    /// The guest saw `destination-not-found`.
    pub fn kept_off_network(&self) -> Vec<String> {
        self.kept_off_network.lock().unwrap().clone()
    }

    /// A value of the `default` key-value store.
    pub fn kv_get(&self, key: &str) -> Option<Vec<u8>> {
        self.store.lock().unwrap().get(key).cloned()
    }

    /// Sets a value of the `default` key-value store (e.g. to plant or corrupt a cache
    /// entry). With `key_value_store: false` the guest cannot see it.
    pub fn kv_set(&self, key: &str, value: &[u8]) {
        self.store
            .lock()
            .unwrap()
            .insert(key.to_string(), value.to_vec());
    }

    /// What the requests so far made the host do (calls per interface, stdout writes,
    /// linear memory), summed over all of them. Counts join when a request's instance is
    /// dropped, which [`TestApp::send`] awaits.
    pub fn host_calls(&self) -> HostCalls {
        self.tally.snapshot()
    }

    /// The keys of the `default` key-value store, sorted.
    pub fn kv_keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = self.store.lock().unwrap().keys().cloned().collect();
        keys.sort();
        keys
    }

    fn new_store(&self, stdout: MemoryOutputPipe, stderr: MemoryOutputPipe, peak_memory: Arc<AtomicUsize>) -> Store<HostState> {
        let wasi = WasiCtx::builder()
            .stdout(CountedOutput::new(stdout, Stdio::Stdout, self.tally.clone()))
            .stderr(CountedOutput::new(stderr, Stdio::Stderr, self.tally.clone()))
            .envs(&self.environment)
            .build();
        let state = HostState {
            wasi,
            http: WasiHttpCtx::new(),
            table: Default::default(),
            outbound: OutboundPolicy {
                allowed: self.allowed_hosts.clone(),
                denied: self.denied.clone(),
                kept_off_network: self.kept_off_network.clone(),
            },
            variables: self.variables.clone(),
            key_value: self.key_value.clone(),
            memory: MemoryWatch::reporting_to(peak_memory).tallying(self.tally.clone()),
            calls: RequestCalls::new(self.tally.clone()),
        };
        let mut store = Store::new(self.component.engine(), state);
        store.limiter(|state| &mut state.memory);
        // At every epoch tick the guest yields to the executor; past the deadline it traps.
        let deadline = Instant::now() + self.request_timeout;
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(move |_| {
            if Instant::now() >= deadline {
                Err(wasmtime::format_err!(
                    "guest interrupted: still running at the request deadline"
                ))
            } else {
                Ok(UpdateDeadline::Yield(1))
            }
        });
        store
    }
}

/// Instantiates the component in `store` and lets it handle `incoming`, as Spin's
/// `wasi:http` executor does: the response head comes from the response-outparam, the
/// body is read to its end, then the guest task is awaited (it may still log after
/// sending the body). Dropping the returned future stops the guest.
async fn run_guest(
    mut store: Store<HostState>,
    pre: ProxyPre<HostState>,
    incoming: http::Request<Full<Bytes>>,
) -> Result<(http::response::Parts, Bytes)> {
    let request = store
        .data_mut()
        .http()
        .new_incoming_request(Scheme::Http, incoming)?;
    let (response_tx, response_rx) = tokio::sync::oneshot::channel();
    let outparam = store.data_mut().http().new_response_outparam(response_tx)?;

    let guest = tokio::spawn(async move {
        let proxy = pre.instantiate_async(&mut store).await?;
        proxy
            .wasi_http_incoming_handler()
            .call_handle(&mut store, request, outparam)
            .await
    });
    let _stop_on_drop = AbortOnDrop(guest.abort_handle());

    match response_rx.await {
        Ok(Ok(response)) => {
            let (parts, body) = response.into_parts();
            let body = body.collect().await.map(|b| b.to_bytes());
            let finished = join(guest).await;
            let body = body.map_err(|e| anyhow!("reading the response body: {e:?}"))?;
            finished.context("the guest failed after sending its response head")?;
            Ok((parts, body))
        }
        Ok(Err(code)) => {
            let _ = join(guest).await;
            bail!("the guest set error code {code:?} as its response (Spin sends 500)")
        }
        Err(_) => Err(join(guest)
            .await
            .err()
            .unwrap_or_else(|| anyhow!("the guest returned without setting a response"))
            .context("the guest produced no response (Spin sends 500)")),
    }
}

/// The request as the guest receives it from Spin: absolute URI, `Host`, a
/// `content-length` for a body, and the `spin-*` headers.
fn to_http_request(
    request: &TestRequest,
    host: &str,
    spin_headers: &[(&'static str, String)],
) -> Result<http::Request<Full<Bytes>>> {
    if !request.path_and_query.starts_with('/') {
        bail!("path {:?} must start with '/'", request.path_and_query);
    }
    let mut builder = http::Request::builder()
        .method(request.method.as_str())
        .uri(format!("http://{host}{}", request.path_and_query));
    for (name, value) in &request.headers {
        builder = builder.header(name.as_str(), value.as_str());
    }
    if !request.has_header("host") {
        builder = builder.header("host", host);
    }
    if !request.body.is_empty() && !request.has_header("content-length") {
        builder = builder.header("content-length", request.body.len());
    }
    for (name, value) in spin_headers {
        builder = builder.header(*name, value.as_str());
    }
    builder
        .body(Full::new(Bytes::from(request.body.clone())))
        .with_context(|| {
            format!(
                "invalid request {} {}",
                request.method, request.path_and_query
            )
        })
}

/// Waits for the guest task; a panic or abort becomes an error.
async fn join(guest: tokio::task::JoinHandle<wasmtime::Result<()>>) -> Result<()> {
    match guest.await {
        Ok(result) => Ok(result?),
        Err(e) => Err(anyhow!("guest task did not complete: {e}")),
    }
}

/// Stops the guest when its request is abandoned (timeout, or the caller dropped `send`).
struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

// Tests share one app across tasks.
const _: fn() = || {
    fn shareable<T: Send + Sync>() {}
    shareable::<TestApp>();
};
