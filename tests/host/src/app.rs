//! A running app: `spin up` for one component, without a listening socket.
//!
//! [`TestApp::start`] does what Spin does before it serves: check that a provider might
//! answer every required variable (refusing to start otherwise), set up the key-value
//! store. Variables are resolved later, through the provider chain, when the guest reads
//! them and on each instance's first outbound request (see `variables`); every provider
//! lookup is counted ([`TestApp::provider_lookups`]). [`TestApp::builder`] starts an app
//! from a runtime config, an environment and a vault's contents. [`TestApp::send`] then handles one request the way Spin's `wasi:http` executor
//! does: a fresh `Store` and instance per request, the response taken from the
//! response-outparam, the body read to the end, then the guest task awaited.

use std::collections::{BTreeMap, VecDeque};
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::Poll;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, SizeHint};
use wasmtime::{Store, UpdateDeadline};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::WasiCtx;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpView};

use crate::component::Component;
use crate::host_calls::{CountedOutput, HostCalls, RequestCalls, Stdio, Tally};
use crate::key_value::{KeyValueAccess, KeyValueBackend, DEFAULT_STORE};
use crate::manifest::Manifest;
use crate::outbound::{AllowedHostsCheck, OutboundPolicy};
use crate::outbound_client::OutboundClient;
use crate::providers::{ProviderKind, ProviderLookups};
use crate::route::Route;
use crate::state::{HostState, MemoryWatch};
use crate::template::Template;
use crate::variables::Variables;
use crate::wire::{Chunked, TestRequest, TestResponse};

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
    /// As written; resolved per instance on its first outbound request.
    allowed_outbound_hosts: Arc<Vec<Template>>,
    route: Route,
    environment: Vec<(String, String)>,
    key_value: KeyValueAccess,
    /// The `default` store, reachable by tests even when the guest cannot.
    store: KeyValueBackend,
    denied: Arc<Mutex<Vec<String>>>,
    kept_off_network: Arc<Mutex<Vec<String>>>,
    /// Outbound HTTP, its idle connections shared by every instance of the app.
    outbound_client: OutboundClient,
    request_timeout: Duration,
    config_reads: Arc<Mutex<BTreeMap<String, usize>>>,
    /// What all requests so far made the host do.
    tally: Arc<Tally>,
}

impl TestApp {
    /// Starts the app as `spin up` would without a runtime config, with
    /// `SPIN_VARIABLE_<NAME>=<value>` for each of `variables` (names in any case). Fails,
    /// naming the variable, if a `required` variable has no value, as Spin refuses to
    /// start. Undeclared names are ignored.
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
        Self::assemble(component, manifest, variables, options.key_value_store, None, true)
    }

    /// An app whose variables `variables` answers; its `default` store is `backend`, or a
    /// new one (`key_value_store: false`: no store at all); its outbound connections
    /// pooled across instances or not (`[outbound_http] connection_pooling`).
    pub(crate) fn assemble(
        component: Arc<Component>,
        manifest: &Manifest,
        variables: Variables,
        key_value_store: bool,
        backend: Option<KeyValueBackend>,
        connection_pooling: bool,
    ) -> Result<TestApp> {
        // Spin refuses to start when a component names a store its runtime config does
        // not define; without a runtime config only `default` exists.
        let labels = &manifest.component.key_value_stores;
        if let Some(label) = labels.iter().find(|l| *l != DEFAULT_STORE) {
            bail!(
                "unknown key_value_stores label {label:?}: the test host provides only \"default\""
            );
        }
        let store = backend.unwrap_or_default();
        let key_value = KeyValueAccess {
            allowed: labels.clone(),
            default_store: key_value_store.then(|| store.clone()),
        };

        Ok(TestApp {
            component,
            variables: Arc::new(variables),
            allowed_outbound_hosts: Arc::new(manifest.component.allowed_outbound_hosts.clone()),
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
            outbound_client: OutboundClient::new(connection_pooling),
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            config_reads: Arc::default(),
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
        self.send_body(request, None).await
    }

    /// [`TestApp::send`] from a client that stalls: it sends the head and the first
    /// `sent` bytes of the body, then nothing more, and never ends the body.
    pub async fn send_stalled(&self, request: TestRequest, sent: usize) -> Result<TestResponse> {
        self.send_body(request, Some(sent)).await
    }

    async fn send_body(&self, request: TestRequest, stall_after: Option<usize>) -> Result<TestResponse> {
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
                request_body_bytes_read: 0,
            });
        };
        let body_read = Arc::new(AtomicUsize::new(0));
        let incoming = to_http_request(&request, &host, &spin_headers, body_read.clone())?
            .map(|body| match stall_after {
                Some(sent) => body.stalled_after(sent),
                None => body,
            });

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
            request_body_bytes_read: body_read.load(Ordering::Relaxed),
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

    /// How often each variable was read through `wasi:config/store` since the app
    /// started (or since [`TestApp::clear_config_reads`]), by name.
    pub fn config_reads(&self) -> BTreeMap<String, usize> {
        self.config_reads.lock().unwrap().clone()
    }

    /// Forgets the reads counted so far.
    pub fn clear_config_reads(&self) {
        self.config_reads.lock().unwrap().clear();
    }

    /// A value of the `default` key-value store.
    pub fn kv_get(&self, key: &str) -> Option<Vec<u8>> {
        self.store.get(key)
    }

    /// Sets a value of the `default` key-value store (e.g. to plant or corrupt a cache
    /// entry). With `key_value_store: false` the guest cannot see it.
    pub fn kv_set(&self, key: &str, value: &[u8]) {
        self.store.set(key, value);
    }

    /// Provider lookups since the app started or the counts were last reset.
    pub fn provider_lookups(&self) -> ProviderLookups {
        self.variables.lookups().snapshot()
    }

    /// Sets the lookup counts back to zero.
    pub fn reset_provider_lookups(&self) {
        self.variables.lookups().reset()
    }

    /// The lookups so far, setting the counts back to zero: what one request cost.
    pub fn take_provider_lookups(&self) -> ProviderLookups {
        self.variables.lookups().take()
    }

    /// The variable providers Spin asks, in order (the appended environment last).
    pub fn provider_kinds(&self) -> Vec<ProviderKind> {
        self.variables.provider_kinds()
    }

    /// Resolutions that failed (a provider error, or no value), as Spin logs them,
    /// oldest first: from the guest's reads and from the outbound check.
    pub fn variable_errors(&self) -> Vec<String> {
        self.variables.errors()
    }

    /// The `default` store's backend, to share it with another app.
    pub fn key_value_backend(&self) -> KeyValueBackend {
        self.store.clone()
    }

    /// What the requests so far made the host do (calls per interface, stdout writes,
    /// linear memory), summed over all of them. Counts join when a request's instance is
    /// dropped, which [`TestApp::send`] awaits.
    pub fn host_calls(&self) -> HostCalls {
        self.tally.snapshot()
    }

    /// The keys of the `default` key-value store, sorted.
    pub fn kv_keys(&self) -> Vec<String> {
        self.store.keys()
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
                allowed: AllowedHostsCheck::new(self.variables.clone(), self.allowed_outbound_hosts.clone()),
                denied: self.denied.clone(),
                kept_off_network: self.kept_off_network.clone(),
                client: self.outbound_client.clone(),
            },
            variables: self.variables.clone(),
            config_reads: self.config_reads.clone(),
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
    incoming: http::Request<RequestBody>,
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
/// `content-length` for a body (or `transfer-encoding: chunked` for a chunked one), and
/// the `spin-*` headers. `read` counts the body bytes handed to the guest.
fn to_http_request(
    request: &TestRequest,
    host: &str,
    spin_headers: &[(&'static str, String)],
    read: Arc<AtomicUsize>,
) -> Result<http::Request<RequestBody>> {
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
    let body = match request.chunked {
        None => {
            if !request.body.is_empty() && !request.has_header("content-length") {
                builder = builder.header("content-length", request.body.len());
            }
            RequestBody::whole(&request.body, read)
        }
        Some(chunked) => {
            if !request.has_header("transfer-encoding") {
                builder = builder.header("transfer-encoding", "chunked");
            }
            RequestBody::chunked(&request.body, chunked, read)
        }
    };
    for (name, value) in spin_headers {
        builder = builder.header(*name, value.as_str());
    }
    builder
        .body(body)
        .with_context(|| {
            format!(
                "invalid request {} {}",
                request.method, request.path_and_query
            )
        })
}

/// A request body handed to the guest frame by frame, counting what it takes.
pub(crate) struct RequestBody {
    chunks: VecDeque<Bytes>,
    /// A body of known length (sent whole, with `content-length`).
    known_length: bool,
    pause: Option<Duration>,
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
    read: Arc<AtomicUsize>,
    /// A stalled client: once `chunks` is sent, nothing more ever comes, and no end either.
    stalled: bool,
}

impl RequestBody {
    fn whole(body: &[u8], read: Arc<AtomicUsize>) -> RequestBody {
        RequestBody {
            chunks: [Bytes::copy_from_slice(body)].into_iter().filter(|c| !c.is_empty()).collect(),
            known_length: true,
            pause: None,
            sleep: None,
            read,
            stalled: false,
        }
    }

    fn chunked(body: &[u8], chunked: Chunked, read: Arc<AtomicUsize>) -> RequestBody {
        RequestBody {
            chunks: body.chunks(chunked.chunk_size.max(1)).map(Bytes::copy_from_slice).collect(),
            known_length: false,
            pause: chunked.pause,
            sleep: None,
            read,
            stalled: false,
        }
    }

    /// The same body from a client that sends its first `sent` bytes and then stalls.
    fn stalled_after(mut self, sent: usize) -> RequestBody {
        let mut left = sent;
        let mut kept = VecDeque::new();
        for mut chunk in self.chunks.drain(..) {
            if left == 0 {
                break;
            }
            chunk.truncate(left);
            left -= chunk.len();
            kept.push_back(chunk);
        }
        RequestBody { chunks: kept, known_length: false, stalled: true, ..self }
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        if let Some(sleep) = this.sleep.as_mut() {
            if sleep.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            this.sleep = None;
        }
        let Some(chunk) = this.chunks.pop_front() else {
            // A stalled client is never woken: the rest never comes.
            return if this.stalled { Poll::Pending } else { Poll::Ready(None) };
        };
        this.read.fetch_add(chunk.len(), Ordering::Relaxed);
        if let (Some(pause), false) = (this.pause, this.chunks.is_empty()) {
            this.sleep = Some(Box::pin(tokio::time::sleep(pause)));
        }
        Poll::Ready(Some(Ok(Frame::data(chunk))))
    }

    fn is_end_stream(&self) -> bool {
        !self.stalled && self.chunks.is_empty() && self.sleep.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        match self.known_length {
            true => SizeHint::with_exact(self.chunks.iter().map(|c| c.len() as u64).sum()),
            false => SizeHint::default(),
        }
    }
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
