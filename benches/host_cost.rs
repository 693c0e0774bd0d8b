//! What a request costs the host: CPU time, throughput, linear memory and host calls per
//! request under 8 concurrent clients, for Spin's hello-world template, `/healthz` and a
//! warm revoke (with an API key, and with an Entra ID caller token), side by side in one
//! process and one host.
//!
//! `cargo bench --bench host_cost` after building both components (`./scripts/bench`
//! does all of it). Prints a Markdown table. Not a test: it asserts only that every
//! request got its expected status, and measures.
//!
//! # What is measured, and what is subtracted
//! One process holds the host (wasmtime as Spin runs it: pooling allocator, a fresh
//! instance per request), the load generator (8 tasks calling the host directly, no
//! sockets in between) and the mocks of the identity platform and Graph. The mocks run on
//! a thread of their own, so their CPU time is read from that thread
//! (`/proc/self/task/<tid>/schedstat`) and subtracted from the process's
//! (`/proc/self/stat`). What remains for a revoke includes the host's outbound HTTP client
//! (an HTTP/1.1 exchange per call on a connection the app's pool keeps open, as in Spin
//! 3.5 and later); the "floor" column measures that part on its own: the same 8 clients
//! sending the same Graph call straight to the mock through a pooled client.
//! `HOST_COST_POOLING=0` runs the apps with `[outbound_http] connection_pooling = false`
//! and the floor with a new connection per call (Spin before 3.5, or pooling turned off). The load generator's own work (building a request, reading a response)
//! is the same small amount in every column. Ratios to hello are the figures that carry
//! over to real Spin, whose HTTP server, tracing and logging add the same per-request
//! overhead to every component.
//!
//! The scenarios run in rounds (hello, `/healthz`, revoke, floor, then again), so that
//! whatever else the machine does falls on all of them alike; figures are over all
//! rounds. `HOST_COST_SECONDS` (per scenario and round, default 2) and `HOST_COST_ROUNDS`
//! (default 3) change the length. The 1-minute load average is printed: on a shared
//! machine, compare only figures from the same run. `HOST_COST_ALSO=<path to a .wasm>`
//! adds a column: a warm revoke through that build (e.g. the one before a change), and
//! `HOST_COST_ALSO_TOKEN=1` another, its warm revoke with an Entra ID caller token.
//! `HOST_COST_ONLY=<text>` keeps only the column of that name, or those whose name contains it (to profile one:
//! `perf record -e cpu-clock` on the bench binary; `TEST_HOST_PERF_MAP=1` makes the test
//! host write a perf map, so the component's own functions are named).

use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use graph_revoke_test_host::bench_support::{env_number, floor, load_average, SpinDefaultStore};
use graph_revoke_test_host::{Component, HostCalls, KeyValueBackend, Manifest, MockServer, RuntimeConfig, TestApp, TestRequest};
use serde_json::json;

// Entra ID caller tokens minted as the tests mint them (keys generated at start-up).
#[path = "../tests/common/tokens.rs"]
#[allow(dead_code)]
mod tokens;

/// Concurrent clients, as in the issue's measurements through real Spin.
const CLIENTS: usize = 8;
/// Requests sent to each app before measuring (compiles nothing; fills the token cache
/// and the instance pool's memory).
const WARM_UP: usize = 200;
const API_KEY: &str = "bench-key-0123456789abcdef0123456789abcdef";
/// The kernel's unit for `utime`/`stime` in `/proc/<pid>/stat` (`USER_HZ`, 100 on Linux).
const CLOCK_TICKS_PER_SECOND: f64 = 100.0;

fn main() {
    let seconds = env_number("HOST_COST_SECONDS", 2.0);
    let rounds = env_number("HOST_COST_ROUNDS", 3.0) as usize;
    let mocks = Mocks::start();
    // The host's runtime, as Spin's: multi-threaded, one worker per core.
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    runtime.block_on(run(mocks, Duration::from_secs_f64(seconds), rounds));
}

/// One column of the table.
struct Scenario {
    name: &'static str,
    /// The app whose host calls are counted (none for the floor).
    app: Option<Arc<TestApp>>,
    send: Arc<dyn Fn() -> std::pin::Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>,
    totals: Totals,
}

#[derive(Default)]
struct Totals {
    requests: u64,
    wall: Duration,
    process_cpu: Duration,
    mock_cpu: Duration,
    calls: HostCalls,
}

async fn run(mocks: Mocks, length: Duration, rounds: usize) {
    let load_before = load_average();
    let manifest = Manifest::load_default().unwrap();
    let revoke_component =
        Component::shared().expect("build the component first: cargo build --target wasm32-wasip2 --release");
    let hello_component = Arc::new(Component::hello().unwrap_or_else(|e| panic!("{e:#}")));
    let variables = [
        ("tenant_id", "contoso.onmicrosoft.com"),
        ("client_id", "6a1c5c0e-7d1b-4a57-9e0c-2f3d4b5a6c7d"),
        ("client_secret", "bench-secret"),
        ("api_keys", API_KEY),
        ("login_base_url", mocks.login_url.as_str()),
        ("graph_base_url", mocks.graph_url.as_str()),
        // The abuse brake stays on (its increment is part of what a revoke costs), with a
        // limit no benchmark reaches in one 10-minute window.
        ("max_revocations", "1000000000"),
    ];
    // Spin's default: outbound connections pooled across instances.
    let pooling = std::env::var("HOST_COST_POOLING").map_or(true, |v| v != "0");
    let runtime_config = if pooling {
        RuntimeConfig::none()
    } else {
        RuntimeConfig::from_str("[outbound_http]\nconnection_pooling = false\n").unwrap()
    };
    let start_on = |component: &Arc<Component>, variables: &[(&str, &str)], store: KeyValueBackend| {
        Arc::new(
            TestApp::builder(component.clone(), &manifest)
                .variables(variables.iter().copied())
                .runtime_config(runtime_config.clone())
                .shared_key_value(&store)
                .start()
                .unwrap(),
        )
    };
    let start_with = |component: &Arc<Component>, variables: &[(&str, &str)]| start_on(component, variables, KeyValueBackend::new());
    let start = |component: &Arc<Component>| start_with(component, &variables);
    let (hello, health, revoke) = (start(&hello_component), start(&revoke_component), start(&revoke_component));
    let revoke_request = || {
        TestRequest::post("/revoke").header("x-api-key", API_KEY).json(&json!({ "userId": "adele.vance@contoso.com" }))
    };
    // The same revoke by a caller with an Entra ID access token (v1, what a Logic App's
    // managed identity gets), the JWKS cached after the warm-up.
    let mut token_variables = variables.to_vec();
    token_variables.extend([("caller_audience", tokens::AUDIENCE), ("caller_tenant_id", tokens::TENANT_ID)]);
    let token_revoke = start_with(&revoke_component, &token_variables);
    let authorization: &'static str = Box::leak(tokens::bearer(&tokens::token(&tokens::v1_claims())).into_boxed_str());
    let token_request = move || {
        TestRequest::post("/revoke").header("authorization", authorization).json(&json!({ "userId": "adele.vance@contoso.com" }))
    };

    // The same warm revoke with the `default` store run as Spin runs its `spin` store:
    // Spin's default (a SQLite file) and the same store in memory
    // (`[key_value_store.default] type = "spin"`, no `path`).
    let sqlite_file = SpinDefaultStore::create("host-cost");
    let on_sqlite_file = start_on(&revoke_component, &variables, sqlite_file.backend.clone());
    let on_sqlite_memory = start_on(&revoke_component, &variables, KeyValueBackend::spin_sqlite(None).unwrap());

    let mut components = vec![hello_component.clone(), revoke_component.clone()];
    let mut scenarios = vec![
        Scenario {
            name: "hello (Spin template)",
            app: Some(hello.clone()),
            send: sender(hello, || TestRequest::get("/"), 200),
            totals: Totals::default(),
        },
        Scenario {
            name: "/healthz",
            app: Some(health.clone()),
            send: sender(health, || TestRequest::get("/healthz"), 200),
            totals: Totals::default(),
        },
        Scenario {
            name: "warm revoke",
            app: Some(revoke.clone()),
            send: sender(revoke, revoke_request, 200),
            totals: Totals::default(),
        },
        Scenario {
            name: "warm revoke, Entra ID token",
            app: Some(token_revoke.clone()),
            send: sender(token_revoke, token_request, 200),
            totals: Totals::default(),
        },
        Scenario {
            name: "warm revoke, Spin's default store (a SQLite file)",
            app: Some(on_sqlite_file.clone()),
            send: sender(on_sqlite_file, revoke_request, 200),
            totals: Totals::default(),
        },
        Scenario {
            name: "warm revoke, a `spin` store in memory",
            app: Some(on_sqlite_memory.clone()),
            send: sender(on_sqlite_memory, revoke_request, 200),
            totals: Totals::default(),
        },
        Scenario {
            name: "floor: the Graph call, direct",
            app: None,
            send: {
                let (graph_url, bearer) = (Arc::new(mocks.graph_url.clone()), Arc::new(mocks.bearer.clone()));
                let pool = floor::pooled_client();
                Arc::new(move || {
                    let (graph_url, bearer, pool) = (graph_url.clone(), bearer.clone(), pool.clone());
                    Box::pin(async move {
                        if pooling {
                            floor::on_kept_open_connection(&pool, &graph_url, &bearer).await
                        } else {
                            floor::on_new_connection(&graph_url, &bearer).await
                        }
                    })
                })
            },
            totals: Totals::default(),
        },
    ];

    // Another build of the component side by side (e.g. before a change), if asked for.
    if let Some(path) = std::env::var_os("HOST_COST_ALSO") {
        let other = Arc::new(Component::load(std::path::Path::new(&path)).unwrap());
        let app = start(&other);
        scenarios.insert(
            4,
            Scenario {
                name: "warm revoke, $HOST_COST_ALSO build",
                app: Some(app.clone()),
                send: sender(app, revoke_request, 200),
                totals: Totals::default(),
            },
        );
        // With HOST_COST_ALSO_TOKEN=1, that build's warm revoke with an Entra ID token too
        // (a build that knows caller tokens: issue 8 and later).
        if std::env::var_os("HOST_COST_ALSO_TOKEN").is_some() {
            let app = start_with(&other, &token_variables);
            scenarios.insert(
                5,
                Scenario {
                    name: "warm revoke, Entra ID token, $HOST_COST_ALSO build",
                    app: Some(app.clone()),
                    send: sender(app, token_request, 200),
                    totals: Totals::default(),
                },
            );
        }
        components.push(other);
    }
    // Only some columns (names containing this text), e.g. to profile one under `perf`.
    // A name matched exactly keeps that column alone.
    if let Ok(only) = std::env::var("HOST_COST_ONLY") {
        let exact = scenarios.iter().any(|s| s.name == only);
        scenarios.retain(|s| if exact { s.name == only } else { s.name.contains(only.as_str()) });
    }
    for scenario in &scenarios {
        for _ in 0..WARM_UP {
            (scenario.send)().await;
        }
    }
    for _ in 0..rounds {
        for scenario in &mut scenarios {
            let calls_before = scenario.app.as_ref().map(|a| a.host_calls()).unwrap_or_default();
            let (process_before, mock_before) = (process_cpu(), mocks.cpu());
            let started = Instant::now();
            let requests = drive(scenario.send.clone(), length).await;
            let wall = started.elapsed();
            let (process_after, mock_after) = (process_cpu(), mocks.cpu());
            let calls = scenario.app.as_ref().map(|a| a.host_calls().since(&calls_before)).unwrap_or_default();

            let t = &mut scenario.totals;
            t.requests += requests;
            t.wall += wall;
            t.process_cpu += process_after - process_before;
            t.mock_cpu += mock_after - mock_before;
            t.calls = add(&t.calls, &calls);
        }
    }
    let load_after = load_average();
    drop(sqlite_file);
    print_table(&scenarios, &components);
    println!();
    println!(
        "{CLIENTS} clients, {rounds} rounds of {:.1} s per column; outbound connections {}; {} cores; 1-minute load average {load_before:.2} before, {load_after:.2} after.",
        length.as_secs_f64(),
        if pooling { "pooled (Spin 3.5+ default)" } else { "one per call (HOST_COST_POOLING=0)" },
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
    );
}

/// A client's request: sends one and checks its status.
fn sender(
    app: Arc<TestApp>,
    request: impl Fn() -> TestRequest + Send + Sync + 'static,
    status: u16,
) -> Arc<dyn Fn() -> std::pin::Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync> {
    Arc::new(move || {
        let (app, request) = (app.clone(), request());
        Box::pin(async move {
            let response = app.send(request).await.unwrap();
            assert_eq!(response.status, status, "{}", response.text());
        })
    })
}

/// Runs `CLIENTS` clients, each sending requests one after another for `length`.
/// Returns how many requests finished.
async fn drive(
    send: Arc<dyn Fn() -> std::pin::Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>,
    length: Duration,
) -> u64 {
    let deadline = Instant::now() + length;
    let done = Arc::new(AtomicU64::new(0));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (send, done) = (send.clone(), done.clone());
            tokio::spawn(async move {
                while Instant::now() < deadline {
                    send().await;
                    done.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for client in clients {
        client.await.unwrap();
    }
    done.load(Ordering::Relaxed)
}

fn print_table(scenarios: &[Scenario], components: &[Arc<Component>]) {
    let per_request = |s: &Scenario, d: Duration| d.as_secs_f64() * 1e6 / s.totals.requests as f64;
    let host_cpu = |s: &Scenario| per_request(s, s.totals.process_cpu.saturating_sub(s.totals.mock_cpu));
    let hello = scenarios.iter().find(|s| s.name.starts_with("hello"));
    let floor_client = scenarios.iter().find(|s| s.name.starts_with("floor")).map(host_cpu);
    let rate = |s: &Scenario| s.totals.requests as f64 / s.totals.wall.as_secs_f64();

    let row = |label: &str, cell: &dyn Fn(&Scenario) -> String| {
        let cells: Vec<String> = scenarios.iter().map(cell).collect();
        println!("| {label} | {} |", cells.join(" | "));
    };
    let names: Vec<&str> = scenarios.iter().map(|s| s.name).collect();
    println!("| per request, {CLIENTS} concurrent clients | {} |", names.join(" | "));
    println!("|---|{}", "---|".repeat(scenarios.len()));
    row("requests/s", &|s| format!("{:.0}", rate(s)));
    if let Some(hello) = hello {
        row("requests/s, ratio to hello", &|s| format!("{:.2}x", rate(s) / rate(hello)));
    }
    row("**host CPU per request** (process − mock)", &|s| format!("**{:.0} µs**", host_cpu(s)));
    if let Some(hello) = hello {
        row("host CPU per request, ratio to hello", &|s| format!("{:.2}x", host_cpu(s) / host_cpu(hello)));
    }
    if let Some(floor_client) = floor_client {
        row("host CPU per request less the floor's client (one HTTP call)", &|s| match s.app {
            Some(_) if s.name.starts_with("warm revoke") => format!("{:.0} µs", host_cpu(s) - floor_client),
            _ => "".into(),
        });
    }
    row("mock CPU per request (subtracted)", &|s| format!("{:.0} µs", per_request(s, s.totals.mock_cpu)));
    row("process CPU per request (all)", &|s| format!("{:.0} µs", per_request(s, s.totals.process_cpu)));
    row("process CPU use (cores busy)", &|s| {
        format!("{:.2}", s.totals.process_cpu.as_secs_f64() / s.totals.wall.as_secs_f64())
    });
    let calls = |s: &Scenario, f: &dyn Fn(&HostCalls) -> u64| match s.app {
        Some(_) => format!("{:.2}", f(&s.totals.calls) as f64 / s.totals.calls.instances.max(1) as f64),
        None => "".into(),
    };
    let memory = |s: &Scenario, bytes: u64| match s.app {
        Some(_) => format!("{} KiB ({} pages)", bytes / 1024, bytes / 65536),
        None => "".into(),
    };
    row("linear memory: initial", &|s| memory(s, s.totals.calls.initial_memory_bytes));
    row("linear memory: peak", &|s| memory(s, s.totals.calls.peak_memory_bytes));
    row("**host calls** (all interfaces)", &|s| calls(s, &|c| c.total()));
    row("config reads (`wasi:config/store`)", &|s| calls(s, &|c| c.config_reads()));
    row("key-value calls (`wasi:keyvalue/store`)", &|s| calls(s, &|c| c.key_value_calls()));
    row("clock calls (`wasi:clocks/*`)", &|s| calls(s, &|c| c.clock_calls()));
    row("random calls (`wasi:random/*`)", &|s| calls(s, &|c| c.random_calls()));
    row("stdout writes", &|s| calls(s, &|c| c.stdout_writes));
    row("stdout bytes", &|s| calls(s, &|c| c.stdout_bytes));
    row("stderr writes", &|s| calls(s, &|c| c.stderr_writes));
    row("outbound requests (`wasi:http/outgoing-handler`)", &|s| calls(s, &|c| c.outbound_requests()));
    let mut interfaces: Vec<&str> = scenarios.iter().flat_map(|s| s.totals.calls.calls.keys().copied()).collect();
    interfaces.sort();
    interfaces.dedup();
    for interface in interfaces {
        row(&format!("calls to `{interface}`"), &|s| calls(s, &|c| c.of(interface)));
    }
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    for component in components {
        println!(
            "| size of {} | {} KiB |{}",
            component.path().strip_prefix(root).unwrap_or(component.path()).display(),
            component.size_bytes() / 1024,
            " |".repeat(scenarios.len() - 1)
        );
    }
}

/// `a + b`, for counts of the same app over several rounds.
fn add(a: &HostCalls, b: &HostCalls) -> HostCalls {
    let mut calls = a.calls.clone();
    for (name, n) in &b.calls {
        *calls.entry(name).or_default() += n;
    }
    HostCalls {
        instances: a.instances + b.instances,
        calls,
        stdout_writes: a.stdout_writes + b.stdout_writes,
        stdout_bytes: a.stdout_bytes + b.stdout_bytes,
        stderr_writes: a.stderr_writes + b.stderr_writes,
        stderr_bytes: a.stderr_bytes + b.stderr_bytes,
        initial_memory_bytes: a.initial_memory_bytes.max(b.initial_memory_bytes),
        peak_memory_bytes: a.peak_memory_bytes.max(b.peak_memory_bytes),
    }
}

/// The identity platform and Graph mocks, served by a thread of their own.
struct Mocks {
    login_url: String,
    graph_url: String,
    /// `Bearer <token>`: a token the mock identity platform issued, for the floor's calls.
    bearer: String,
    /// The serving thread's `schedstat` file.
    schedstat: PathBuf,
}

impl Mocks {
    fn start() -> Mocks {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("bench-mocks".into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
                runtime.block_on(async {
                    let login = MockServer::start().await;
                    login.set_jwks(&tokens::jwks(tokens::KID, tokens::signer()));
                    let graph = MockServer::start_trusting(&login).await;
                    // `/proc/thread-self` links to `<pid>/task/<tid>`.
                    let task = std::fs::read_link("/proc/thread-self").expect("/proc/thread-self (Linux only)");
                    let bearer = format!("Bearer {}", login.issue_token());
                    tx.send((login.base_url(), graph.base_url(), bearer, PathBuf::from("/proc").join(task).join("schedstat")))
                        .unwrap();
                    std::future::pending::<()>().await;
                });
            })
            .unwrap();
        let (login_url, graph_url, bearer, schedstat) = rx.recv().unwrap();
        Mocks { login_url, graph_url, bearer, schedstat }
    }

    /// CPU time the mocks' thread has used (nanosecond resolution).
    fn cpu(&self) -> Duration {
        let text = std::fs::read_to_string(&self.schedstat).unwrap();
        Duration::from_nanos(text.split_whitespace().next().unwrap().parse().unwrap())
    }
}

/// CPU time (user + system) of the whole process, every thread ever, so far.
fn process_cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    // Fields after the command name, which is in parentheses and may hold spaces:
    // state is field 3, utime 14 and stime 15.
    let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    Duration::from_secs_f64(ticks as f64 / CLOCK_TICKS_PER_SECOND)
}
