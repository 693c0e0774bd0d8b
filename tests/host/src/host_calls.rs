//! Counts what a request makes the host do: every call the guest makes into each host
//! interface, what it writes to stdout and stderr, and the linear memory its instance
//! starts with and reaches.
//!
//! Spin pays for each of these: every import call crosses the component boundary (and
//! is traced), every stdout write goes to a log, every page of linear memory is handed
//! out and zeroed again per instance. The benchmark divides these totals by the requests
//! it sent, so that its "host calls per request" can be compared with a hello component.
//!
//! How: the interfaces are linked a second time over the ones `wasmtime-wasi`,
//! `wasmtime-wasi-http` and the project's bindings define (the linker allows shadowing
//! for this), with the same host implementations behind a getter that counts first.
//! The generated bindings call the getter exactly once per guest call (resource drops
//! included), so the counts are the guest's calls, per interface. Counts live in the
//! request's store, without atomics, and join the app's totals when the store is dropped.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use wasmtime::component::{HasData, HasSelf, Linker, ResourceTable};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream, WasiCli, WasiCliView};
use wasmtime_wasi::clocks::{WasiClocks, WasiClocksView};
use wasmtime_wasi::p2::bindings as wasi;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};
use wasmtime_wasi::random::{WasiRandom, WasiRandomView};
use wasmtime_wasi::WasiView;
use wasmtime_wasi_http::p2::bindings as http;
use wasmtime_wasi_http::{WasiHttp, WasiHttpView};

use crate::state::HostState;

/// The interfaces counted, in the order of [`RequestCalls::counts`].
const INTERFACES: [&str; 19] = [
    "wasi:config/store",
    "wasi:keyvalue/store",
    "wasi:http/outgoing-handler",
    "wasi:http/types",
    "wasi:io/streams",
    "wasi:io/poll",
    "wasi:io/error",
    "wasi:clocks/wall-clock",
    "wasi:clocks/monotonic-clock",
    "wasi:random/random",
    "wasi:random/insecure",
    "wasi:random/insecure-seed",
    "wasi:cli/stdout",
    "wasi:cli/stderr",
    "wasi:cli/stdin",
    "wasi:cli/environment",
    "wasi:cli/exit",
    "wasi:cli/terminal-*",
    "wasi:keyvalue/atomics",
];
const CONFIG: usize = 0;
const KEY_VALUE: usize = 1;
const OUTGOING: usize = 2;
const HTTP_TYPES: usize = 3;
const STREAMS: usize = 4;
const POLL: usize = 5;
const IO_ERROR: usize = 6;
const WALL_CLOCK: usize = 7;
const MONOTONIC_CLOCK: usize = 8;
const RANDOM: usize = 9;
const INSECURE: usize = 10;
const INSECURE_SEED: usize = 11;
const STDOUT: usize = 12;
const STDERR: usize = 13;
const STDIN: usize = 14;
const ENVIRONMENT: usize = 15;
const EXIT: usize = 16;
const TERMINAL: usize = 17;
const KEY_VALUE_ATOMICS: usize = 18;

/// What the requests of one app made the host do, summed since the app started (see
/// [`TestApp::host_calls`](crate::TestApp::host_calls)). Subtract two snapshots with
/// [`HostCalls::since`] to get the figures of the requests in between.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct HostCalls {
    /// Instances that finished (one per request that reached the component).
    pub instances: u64,
    /// Guest calls per interface (unversioned name), resource drops included; interfaces
    /// never called are absent.
    pub calls: BTreeMap<&'static str, u64>,
    /// Writes to stdout (`write` or `blocking-write-and-flush`) and the bytes written.
    pub stdout_writes: u64,
    pub stdout_bytes: u64,
    pub stderr_writes: u64,
    pub stderr_bytes: u64,
    /// The largest linear memory an instance started with, in bytes (all its memories).
    pub initial_memory_bytes: u64,
    /// The largest linear memory an instance reached, in bytes.
    pub peak_memory_bytes: u64,
}

impl HostCalls {
    /// Calls to one interface, e.g. `"wasi:io/streams"`.
    pub fn of(&self, interface: &str) -> u64 {
        self.calls.get(interface).copied().unwrap_or(0)
    }

    /// Every call into the host, all interfaces.
    pub fn total(&self) -> u64 {
        self.calls.values().sum()
    }

    /// `wasi:config/store` `get` and `get-all`: in Spin each may be a vault round trip.
    pub fn config_reads(&self) -> u64 {
        self.of("wasi:config/store")
    }

    /// `wasi:keyvalue/store`: opening the store, reads, writes, the bucket's drop.
    pub fn key_value_calls(&self) -> u64 {
        self.of("wasi:keyvalue/store")
    }

    /// `wasi:keyvalue/atomics`: the abuse brake's `increment`s.
    pub fn key_value_increments(&self) -> u64 {
        self.of("wasi:keyvalue/atomics")
    }

    /// `wasi:clocks/*`: `now`, `resolution`, `subscribe-*`.
    pub fn clock_calls(&self) -> u64 {
        self.of("wasi:clocks/wall-clock") + self.of("wasi:clocks/monotonic-clock")
    }

    /// `wasi:random/*`, the hash-map seed (`insecure-seed`) included.
    pub fn random_calls(&self) -> u64 {
        self.of("wasi:random/random") + self.of("wasi:random/insecure") + self.of("wasi:random/insecure-seed")
    }

    /// `wasi:http/outgoing-handler.handle`: requests sent (or refused) on the guest's behalf.
    pub fn outbound_requests(&self) -> u64 {
        self.of("wasi:http/outgoing-handler")
    }

    /// The counts of the requests since `earlier` (a snapshot of the same app). The
    /// memory figures are maxima and stay as they are.
    pub fn since(&self, earlier: &HostCalls) -> HostCalls {
        HostCalls {
            instances: self.instances - earlier.instances,
            calls: self
                .calls
                .iter()
                .map(|(name, n)| (*name, n - earlier.of(name)))
                .filter(|(_, n)| *n > 0)
                .collect(),
            stdout_writes: self.stdout_writes - earlier.stdout_writes,
            stdout_bytes: self.stdout_bytes - earlier.stdout_bytes,
            stderr_writes: self.stderr_writes - earlier.stderr_writes,
            stderr_bytes: self.stderr_bytes - earlier.stderr_bytes,
            initial_memory_bytes: self.initial_memory_bytes,
            peak_memory_bytes: self.peak_memory_bytes,
        }
    }
}

/// The running totals of one app, shared by its requests.
#[derive(Default)]
pub(crate) struct Tally {
    instances: AtomicU64,
    calls: [AtomicU64; INTERFACES.len()],
    stdout_writes: AtomicU64,
    stdout_bytes: AtomicU64,
    stderr_writes: AtomicU64,
    stderr_bytes: AtomicU64,
    initial_memory: AtomicU64,
    peak_memory: AtomicU64,
}

impl Tally {
    pub(crate) fn snapshot(&self) -> HostCalls {
        let get = |n: &AtomicU64| n.load(Ordering::Relaxed);
        HostCalls {
            instances: get(&self.instances),
            calls: INTERFACES
                .iter()
                .zip(&self.calls)
                .map(|(name, n)| (*name, get(n)))
                .filter(|(_, n)| *n > 0)
                .collect(),
            stdout_writes: get(&self.stdout_writes),
            stdout_bytes: get(&self.stdout_bytes),
            stderr_writes: get(&self.stderr_writes),
            stderr_bytes: get(&self.stderr_bytes),
            initial_memory_bytes: get(&self.initial_memory),
            peak_memory_bytes: get(&self.peak_memory),
        }
    }

    /// An instance started with `bytes` of linear memory (called once per memory).
    pub(crate) fn memory_created(&self, bytes: usize) {
        self.initial_memory.fetch_max(bytes as u64, Ordering::Relaxed);
    }

    /// An instance's linear memory reached `bytes`.
    pub(crate) fn memory_reached(&self, bytes: usize) {
        self.peak_memory.fetch_max(bytes as u64, Ordering::Relaxed);
    }
}

/// The counts of one request's store; added to the app's [`Tally`] when it is dropped.
pub(crate) struct RequestCalls {
    counts: [u64; INTERFACES.len()],
    app: Arc<Tally>,
}

impl RequestCalls {
    pub(crate) fn new(app: Arc<Tally>) -> RequestCalls {
        RequestCalls { counts: [0; INTERFACES.len()], app }
    }
}

impl Drop for RequestCalls {
    fn drop(&mut self) {
        self.app.instances.fetch_add(1, Ordering::Relaxed);
        for (total, n) in self.app.calls.iter().zip(self.counts) {
            if n > 0 {
                total.fetch_add(n, Ordering::Relaxed);
            }
        }
    }
}

/// `HasData` for `wasi:io`, whose host traits are implemented on the resource table.
struct Io;

impl HasData for Io {
    type Data<'a> = &'a mut ResourceTable;
}

/// Links every interface the component imports (see `wit/world.wit`) a second time, each
/// behind a counting getter. Call after all interfaces are linked. (Interfaces it does not
/// import, such as `wasi:filesystem` and `wasi:sockets`, stay linked but uncounted.)
pub(crate) fn count_calls(linker: &mut Linker<HostState>) -> anyhow::Result<()> {
    // A non-capturing closure (the bindings take a `fn`) that counts, then returns what
    // the original getter returns.
    macro_rules! counting {
        ($index:expr, |$s:ident| $view:expr) => {
            |$s: &mut HostState| {
                $s.calls.counts[$index] += 1;
                $view
            }
        };
    }
    let l = linker;
    l.allow_shadowing(true);
    wasi::io::error::add_to_linker::<HostState, Io>(l, counting!(IO_ERROR, |s| s.ctx().table))?;
    wasi::io::poll::add_to_linker::<HostState, Io>(l, counting!(POLL, |s| s.ctx().table))?;
    wasi::io::streams::add_to_linker::<HostState, Io>(l, counting!(STREAMS, |s| s.ctx().table))?;
    wasi::clocks::wall_clock::add_to_linker::<HostState, WasiClocks>(l, counting!(WALL_CLOCK, |s| s.clocks()))?;
    wasi::clocks::monotonic_clock::add_to_linker::<HostState, WasiClocks>(l, counting!(MONOTONIC_CLOCK, |s| s.clocks()))?;
    wasi::random::random::add_to_linker::<HostState, WasiRandom>(l, counting!(RANDOM, |s| s.random()))?;
    wasi::random::insecure::add_to_linker::<HostState, WasiRandom>(l, counting!(INSECURE, |s| s.random()))?;
    wasi::random::insecure_seed::add_to_linker::<HostState, WasiRandom>(l, counting!(INSECURE_SEED, |s| s.random()))?;
    wasi::cli::stdout::add_to_linker::<HostState, WasiCli>(l, counting!(STDOUT, |s| s.cli()))?;
    wasi::cli::stderr::add_to_linker::<HostState, WasiCli>(l, counting!(STDERR, |s| s.cli()))?;
    wasi::cli::stdin::add_to_linker::<HostState, WasiCli>(l, counting!(STDIN, |s| s.cli()))?;
    wasi::cli::environment::add_to_linker::<HostState, WasiCli>(l, counting!(ENVIRONMENT, |s| s.cli()))?;
    wasi::cli::exit::add_to_linker::<HostState, WasiCli>(l, counting!(EXIT, |s| s.cli()))?;
    wasi::cli::terminal_input::add_to_linker::<HostState, WasiCli>(l, counting!(TERMINAL, |s| s.cli()))?;
    wasi::cli::terminal_output::add_to_linker::<HostState, WasiCli>(l, counting!(TERMINAL, |s| s.cli()))?;
    wasi::cli::terminal_stdin::add_to_linker::<HostState, WasiCli>(l, counting!(TERMINAL, |s| s.cli()))?;
    wasi::cli::terminal_stdout::add_to_linker::<HostState, WasiCli>(l, counting!(TERMINAL, |s| s.cli()))?;
    wasi::cli::terminal_stderr::add_to_linker::<HostState, WasiCli>(l, counting!(TERMINAL, |s| s.cli()))?;
    http::http::outgoing_handler::add_to_linker::<HostState, WasiHttp>(l, counting!(OUTGOING, |s| s.http()))?;
    let options = http::LinkOptions::default();
    http::http::types::add_to_linker::<HostState, WasiHttp>(l, &(&options).into(), counting!(HTTP_TYPES, |s| s.http()))?;
    crate::bindings::config_store::add_to_linker::<HostState, HasSelf<HostState>>(l, counting!(CONFIG, |s| s))?;
    crate::bindings::keyvalue_store::add_to_linker::<HostState, HasSelf<HostState>>(l, counting!(KEY_VALUE, |s| s))?;
    crate::bindings::keyvalue_atomics::add_to_linker::<HostState, HasSelf<HostState>>(l, counting!(KEY_VALUE_ATOMICS, |s| s))?;
    l.allow_shadowing(false);
    Ok(())
}

/// Which standard stream a [`CountedOutput`] stands for.
#[derive(Clone, Copy)]
pub(crate) enum Stdio {
    Stdout,
    Stderr,
}

/// A guest's stdout or stderr: kept in memory, every write counted in the app's totals.
#[derive(Clone)]
pub(crate) struct CountedOutput {
    pipe: MemoryOutputPipe,
    stream: Stdio,
    app: Arc<Tally>,
}

impl CountedOutput {
    pub(crate) fn new(pipe: MemoryOutputPipe, stream: Stdio, app: Arc<Tally>) -> CountedOutput {
        CountedOutput { pipe, stream, app }
    }

    fn wrote(&self, bytes: usize) {
        let (writes, total) = match self.stream {
            Stdio::Stdout => (&self.app.stdout_writes, &self.app.stdout_bytes),
            Stdio::Stderr => (&self.app.stderr_writes, &self.app.stderr_bytes),
        };
        writes.fetch_add(1, Ordering::Relaxed);
        total.fetch_add(bytes as u64, Ordering::Relaxed);
    }
}

impl IsTerminal for CountedOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for CountedOutput {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    /// For WASIp3 guests (not counted: the component is WASIp2).
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.pipe.clone())
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for CountedOutput {
    async fn ready(&mut self) {}
}

#[wasmtime_wasi::async_trait]
impl OutputStream for CountedOutput {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.wrote(bytes.len());
        self.pipe.write(bytes)
    }

    /// One guest call, however the pipe splits it.
    async fn blocking_write_and_flush(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.wrote(bytes.len());
        self.pipe.blocking_write_and_flush(bytes).await
    }

    fn flush(&mut self) -> StreamResult<()> {
        self.pipe.flush()
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        self.pipe.check_write()
    }
}
