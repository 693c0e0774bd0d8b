//! The data of one request's `Store`: everything the guest can reach through its imports.
//!
//! Spin builds this afresh for every request (new instance, new WASI context, empty
//! resource table); only the key-value store outlives a request. The host does the same,
//! so a test observes the component as Spin runs it: no state carried in guest memory.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use crate::host_calls::{RequestCalls, Tally};
use crate::key_value::KeyValueAccess;
use crate::outbound::OutboundPolicy;
use crate::variables::Variables;

pub(crate) struct HostState {
    pub(crate) wasi: WasiCtx,
    pub(crate) http: WasiHttpCtx,
    pub(crate) table: ResourceTable,
    /// `allowed_outbound_hosts` enforcement; the `wasi:http` hooks.
    pub(crate) outbound: OutboundPolicy,
    /// Served by `wasi:config/store`.
    pub(crate) variables: Arc<Variables>,
    /// `wasi:config/store` reads by key, shared by all requests of the app.
    pub(crate) config_reads: Arc<Mutex<BTreeMap<String, usize>>>,
    /// Served by `wasi:keyvalue/store`.
    pub(crate) key_value: KeyValueAccess,
    /// Watches linear memory as the instance creates and grows it.
    pub(crate) memory: MemoryWatch,
    /// The guest's calls per host interface, for the benchmark.
    pub(crate) calls: RequestCalls,
}

/// A [`wasmtime::ResourceLimiter`] that limits nothing and records the peak of the
/// instance's linear memory, for the benchmark's "peak linear memory per instance".
pub(crate) struct MemoryWatch {
    current: usize,
    /// Shared with the request that owns the store, which reads it when the guest is done.
    pub(crate) peak: Arc<AtomicUsize>,
    /// The app's totals: initial and peak memory over all its instances.
    app: Option<Arc<Tally>>,
}

impl MemoryWatch {
    /// A watch that reports its peak into `peak`.
    pub(crate) fn reporting_to(peak: Arc<AtomicUsize>) -> MemoryWatch {
        MemoryWatch { current: 0, peak, app: None }
    }

    /// Also reports each memory's initial size and the peak to the app's totals.
    pub(crate) fn tallying(mut self, app: Arc<Tally>) -> MemoryWatch {
        self.app = Some(app);
        self
    }
}

impl wasmtime::ResourceLimiter for MemoryWatch {
    fn memory_growing(&mut self, current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        self.current += desired - current;
        self.peak.fetch_max(self.current, Ordering::Relaxed);
        if let Some(app) = &self.app {
            // A memory is created by "growing" it from nothing to its initial size.
            if current == 0 {
                app.memory_created(self.current);
            }
            app.memory_reached(self.current);
        }
        Ok(true)
    }

    fn table_growing(&mut self, _current: usize, _desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        Ok(true)
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for HostState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.outbound,
        }
    }
}
