//! The compiled component: one `Engine`, one compilation, one pre-linked `ProxyPre`.
//!
//! Compiling the component with Cranelift is by far the most expensive step of a test
//! (about a second unoptimised), while instantiating a pre-linked component costs
//! microseconds. So a test binary compiles once ([`Component::shared`]) and every request
//! instantiates afresh from the shared [`ProxyPre`], as Spin does.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use wasmtime::component::{HasSelf, Linker};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};
use wasmtime_wasi_http::p2::bindings::ProxyPre;

use crate::bindings::HostServices;
use crate::manifest::workspace_root;
use crate::state::HostState;

/// How often the engine's epoch advances. A running guest yields to the async executor
/// at every tick and checks its request deadline, so a spinning guest can be stopped.
pub(crate) const EPOCH_TICK: Duration = Duration::from_millis(10);

/// A compiled and linked `graph-revoke` component (or any `wasi:http` component with the
/// same imports).
pub struct Component {
    path: PathBuf,
    size: u64,
    engine: Engine,
    component: wasmtime::component::Component,
    pub(crate) pre: ProxyPre<HostState>,
}

impl Component {
    /// The release build of the component, compiled once per process and shared.
    /// Fails if that build is older than the component's sources (rebuild it with
    /// `cargo build --target wasm32-wasip2 --release`).
    ///
    /// The file is `$GRAPH_REVOKE_WASM` if set, else
    /// `$CARGO_TARGET_DIR/wasm32-wasip2/release/graph_revoke.wasm` if that variable is
    /// set, else `<workspace>/target/wasm32-wasip2/release/graph_revoke.wasm`.
    pub fn shared() -> Result<Arc<Component>> {
        static SHARED: OnceLock<Result<Arc<Component>, String>> = OnceLock::new();
        SHARED
            .get_or_init(|| {
                let path = default_path();
                check_fresh(&path)
                    .and_then(|()| Component::load(&path))
                    .map(Arc::new)
                    .map_err(|e| format!("{e:#}"))
            })
            .clone()
            .map_err(anyhow::Error::msg)
    }

    /// Spin's hello-world template (`benches/hello`), the benchmarks' yardstick: the file
    /// is `$HELLO_WASM` if set, else where `./scripts/bench` builds it,
    /// `<target>/hello/wasm32-wasip2/release/bench_hello.wasm`.
    pub fn hello() -> Result<Component> {
        let path = match std::env::var_os("HELLO_WASM") {
            Some(path) => PathBuf::from(path),
            None => target_dir().join("hello/wasm32-wasip2/release/bench_hello.wasm"),
        };
        Component::load(&path)
            .context("build the hello component first: ./scripts/bench does, or see benches/hello/Cargo.toml")
    }

    /// Compiles and links the component at `path` (uncached).
    pub fn load(path: &Path) -> Result<Component> {
        if !path.is_file() {
            bail!(
                "component {} not found: build it first with `./scripts/build` \
                 (`cargo build --target wasm32-wasip2 --release`, then wasm-opt) at the workspace \
                 root (or run the repository's test script), or point GRAPH_REVOKE_WASM at a .wasm file",
                path.display()
            );
        }
        let size = std::fs::metadata(path)?.len();
        let engine = new_engine()?;
        let component = wasmtime::component::Component::from_file(&engine, path)
            .map_err(anyhow::Error::from)
            .with_context(|| format!("cannot compile {}", path.display()))?;

        let mut linker = Linker::<HostState>::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
        HostServices::add_to_linker::<HostState, HasSelf<HostState>>(&mut linker, |s| s)?;
        crate::host_calls::count_calls(&mut linker)?;

        let pre = linker
            .instantiate_pre(&component)
            .and_then(ProxyPre::new)
            .map_err(anyhow::Error::from)
            .with_context(|| {
                let imports: Vec<String> = component
                    .component_type()
                    .imports(&engine)
                    .map(|(name, _)| name.to_string())
                    .collect();
                format!(
                    "the test host cannot run {}; it provides WASI 0.2, wasi:http, \
                     wasi:config/store and wasi:keyvalue/store and atomics; the component imports {imports:?}",
                    path.display()
                )
            })?;

        start_epoch_ticker(&engine);
        Ok(Component {
            path: path.to_path_buf(),
            size,
            engine,
            component,
            pre,
        })
    }

    /// Names of the component's imports, e.g. `wasi:http/outgoing-handler@0.2.6`.
    pub fn imports(&self) -> Vec<String> {
        self.component
            .component_type()
            .imports(&self.engine)
            .map(|(name, _)| name.to_string())
            .collect()
    }

    /// Names of the component's exports, e.g. `wasi:http/incoming-handler@0.2.0`.
    pub fn exports(&self) -> Vec<String> {
        self.component
            .component_type()
            .exports(&self.engine)
            .map(|(name, _)| name.to_string())
            .collect()
    }

    /// Size of the `.wasm` file in bytes.
    pub fn size_bytes(&self) -> u64 {
        self.size
    }

    /// The `.wasm` file this was compiled from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn engine(&self) -> &Engine {
        &self.engine
    }
}

/// Instances the pool holds at once: far above what tests and the benchmark run
/// concurrently.
const POOLED_INSTANCES: u32 = 100;
/// Largest linear memory an instance may grow to; the component peaks near 1 MiB.
const MAX_MEMORY_BYTES: usize = 128 << 20;
/// Memory kept mapped between instances: what the component uses per request.
const KEEP_RESIDENT_BYTES: usize = 2 << 20;

fn new_engine() -> Result<Engine> {
    let mut config = Config::new();
    config.wasm_component_model(true);
    // Spin instantiates from a pool too: memories and tables are reused across requests
    // instead of mapped and unmapped for each one.
    let mut pool = PoolingAllocationConfig::default();
    pool.total_component_instances(POOLED_INSTANCES)
        .total_core_instances(POOLED_INSTANCES * 4)
        .total_memories(POOLED_INSTANCES * 2)
        .total_tables(POOLED_INSTANCES * 4)
        .max_memory_size(MAX_MEMORY_BYTES)
        // Reset a reused memory by zeroing what the component touches (about 1 MiB)
        // rather than unmapping it: no page faults and no TLB shootdowns per request.
        .linear_memory_keep_resident(KEEP_RESIDENT_BYTES)
        .table_keep_resident(KEEP_RESIDENT_BYTES);
    config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    // Lets a request deadline interrupt a guest that computes forever.
    config.epoch_interruption(true);
    // `perf` can name the component's compiled functions (/tmp/perf-<pid>.map).
    if std::env::var_os("TEST_HOST_PERF_MAP").is_some() {
        config.profiler(wasmtime::ProfilingStrategy::PerfMap);
    }
    Ok(Engine::new(&config)?)
}

/// Advances the engine's epoch until the engine is dropped.
fn start_epoch_ticker(engine: &Engine) {
    let weak = engine.weak();
    std::thread::Builder::new()
        .name("test-host-epoch".into())
        .spawn(move || loop {
            std::thread::sleep(EPOCH_TICK);
            match weak.upgrade() {
                Some(engine) => engine.increment_epoch(),
                None => return,
            }
        })
        .expect("cannot start the epoch ticker thread");
}

fn default_path() -> PathBuf {
    if let Some(path) = std::env::var_os("GRAPH_REVOKE_WASM") {
        return PathBuf::from(path);
    }
    target_dir().join("wasm32-wasip2/release/graph_revoke.wasm")
}

/// `$CARGO_TARGET_DIR` (relative to the workspace root) or `<workspace>/target`.
fn target_dir() -> PathBuf {
    let root = workspace_root();
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => root.join(dir),
        None => root.join("target"),
    }
}

/// Fails when the `.wasm` is older than its sources (see [`crate::freshness`]): `cargo
/// test` does not rebuild the component, and a stale one makes tests fail (or pass) for
/// the wrong reason. A file chosen with `GRAPH_REVOKE_WASM` is taken as it is.
fn check_fresh(wasm: &Path) -> Result<()> {
    if std::env::var_os("GRAPH_REVOKE_WASM").is_some() || !wasm.is_file() {
        return Ok(());
    }
    crate::freshness::check(wasm, &workspace_root())
}
