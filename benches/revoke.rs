//! The benchmark: what a revoke costs through the compiled component, hosted as Spin
//! hosts it (a fresh instance per request), against loopback mocks that answer at once.
//!
//! `cargo bench --bench revoke` (after `cargo build --target wasm32-wasip2 --release`;
//! `./scripts/bench` does both). Prints a Markdown table; the README shows one run.
//! Not a test: it asserts nothing, it measures.

use std::sync::Arc;
use std::time::{Duration, Instant};

use graph_revoke_test_host::bench_support::{floor, SpinDefaultStore};
use graph_revoke_test_host::{Component, Manifest, MockServer, TestApp, TestRequest};
use serde_json::json;

// Entra ID caller tokens minted as the tests mint them (keys generated at start-up).
#[path = "../tests/common/tokens.rs"]
#[allow(dead_code)]
mod tokens;

/// Requests timed in the warm and floor series (after as many untimed warm-up ones).
const SAMPLES: usize = 2000;
const WARM_UP: usize = 200;
/// Warm revokes timed with Spin's default store, a SQLite file.
const SQLITE_SAMPLES: usize = 500;
/// Cold first requests timed, each in a newly started app.
const COLD_SAMPLES: usize = 50;
/// Requests of 100 users timed (each is 5 batches of 20).
const MANY_SAMPLES: usize = 200;
const API_KEY: &str = "bench-key-0123456789abcdef0123456789abcdef";

fn main() {
    // One thread runs the host, the mocks and the floor's client alike, so neither side
    // of the comparison pays for waking another core.
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(run());
}

async fn run() {
    let started = Instant::now();
    let component = Component::shared().expect("build the component first: cargo build --target wasm32-wasip2 --release");
    let compile = started.elapsed();
    let manifest = Manifest::load_default().unwrap();
    let login = MockServer::start().await;
    let graph = MockServer::start_trusting(&login).await;
    let (login_url, graph_url) = (login.base_url(), graph.base_url());
    let variables = [
        ("tenant_id", "contoso.onmicrosoft.com"),
        ("client_id", "6a1c5c0e-7d1b-4a57-9e0c-2f3d4b5a6c7d"),
        ("client_secret", "bench-secret"),
        ("api_keys", API_KEY),
        ("login_base_url", login_url.as_str()),
        ("graph_base_url", graph_url.as_str()),
        // The abuse brake stays on (its increment is part of what a revoke costs), with a
        // limit no benchmark reaches in one 10-minute window.
        ("max_revocations", "1000000000"),
    ];
    let request = || {
        TestRequest::post("/revoke").header("x-api-key", API_KEY).json(&json!({ "userId": "adele.vance@contoso.com" }))
    };
    // The same revoke by a caller with an Entra ID access token (a v1 token, what a Logic
    // App's managed identity gets), against an app with caller tokens enabled and mocks of
    // its own, so each kind's outbound calls are counted apart.
    let token_login = MockServer::start().await;
    let token_graph = MockServer::start_trusting(&token_login).await;
    token_login.set_jwks(&tokens::jwks(tokens::KID, tokens::signer()));
    let (token_login_url, token_graph_url) = (token_login.base_url(), token_graph.base_url());
    let mut token_variables = variables.to_vec();
    token_variables.retain(|(name, _)| !name.ends_with("_base_url"));
    token_variables.extend([
        ("login_base_url", token_login_url.as_str()),
        ("graph_base_url", token_graph_url.as_str()),
        ("caller_audience", tokens::AUDIENCE),
        ("caller_tenant_id", tokens::TENANT_ID),
    ]);
    let authorization = tokens::bearer(&tokens::token(&tokens::v1_claims()));
    let token_request = || {
        TestRequest::post("/revoke")
            .header("authorization", &authorization)
            .json(&json!({ "userId": "adele.vance@contoso.com" }))
    };

    // Cold: a new app (empty token cache), its first request: instantiate + token + revoke.
    let mut cold = Vec::with_capacity(COLD_SAMPLES);
    for _ in 0..COLD_SAMPLES {
        let app = TestApp::start(component.clone(), &manifest, &variables).unwrap();
        let t = Instant::now();
        let response = app.send(request()).await.unwrap();
        cold.push(t.elapsed());
        assert_eq!(response.status, 200, "{}", response.text());
    }

    // Warm: one app, token cached.
    let app = TestApp::start(component.clone(), &manifest, &variables).unwrap();
    for _ in 0..WARM_UP {
        assert_eq!(app.send(request()).await.unwrap().status, 200);
    }
    let token_app = TestApp::start(component.clone(), &manifest, &token_variables).unwrap();
    for _ in 0..WARM_UP {
        let response = token_app.send(token_request()).await.unwrap();
        assert_eq!(response.status, 200, "{}", response.text());
    }
    // Spin's hello template in the same host: issue 10's yardstick for the warm p50 is
    // hello + one Graph round trip (the floor).
    let hello_component = Arc::new(Component::hello().unwrap_or_else(|e| panic!("{e:#}")));
    let hello = TestApp::start(hello_component, &manifest, &variables).unwrap();
    for _ in 0..WARM_UP {
        assert_eq!(hello.send(TestRequest::get("/")).await.unwrap().status, 200);
    }
    // Warm revokes (API key and token), the floor, /healthz and hello are interleaved
    // sample by sample, so that whatever else the machine does falls on all of them alike.
    // The floor's client keeps its connection open between calls, as the host's pool
    // does for the component (Spin 3.5 and later).
    let floor_client = floor::pooled_client();
    let bearer = format!("Bearer {}", login.issue_token());
    for _ in 0..WARM_UP {
        floor::on_kept_open_connection(&floor_client, &graph_url, &bearer).await;
        floor::on_new_connection(&graph_url, &bearer).await;
    }
    let graph_before = graph.calls().len();
    let login_before = login.calls().len();
    let token_calls_before = token_graph.calls().len() + token_login.calls().len();
    let (mut warm, mut floor, mut health, mut warm_token, mut hello_samples) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut floor_new = Vec::new();
    let mut peak_memory = 0;
    let mut warm_revokes = 0;
    for _ in 0..SAMPLES {
        let t = Instant::now();
        let response = app.send(request()).await.unwrap();
        warm.push(t.elapsed());
        assert_eq!(response.status, 200);
        peak_memory = peak_memory.max(response.peak_memory_bytes);
        warm_revokes += 1;

        let t = Instant::now();
        floor::on_kept_open_connection(&floor_client, &graph_url, &bearer).await;
        floor.push(t.elapsed());

        // The same call on a connection of its own (what `curl` against the mock measures).
        let t = Instant::now();
        floor::on_new_connection(&graph_url, &bearer).await;
        floor_new.push(t.elapsed());

        // No outbound call at all: what instantiating and running the component costs.
        let t = Instant::now();
        assert_eq!(app.send(TestRequest::get("/healthz")).await.unwrap().status, 200);
        health.push(t.elapsed());

        let t = Instant::now();
        let response = token_app.send(token_request()).await.unwrap();
        warm_token.push(t.elapsed());
        assert_eq!(response.status, 200);

        let t = Instant::now();
        assert_eq!(hello.send(TestRequest::get("/")).await.unwrap().status, 200);
        hello_samples.push(t.elapsed());
    }
    // JWKS, token and Graph calls alike: the JWKS is cached, so one (the revoke) each.
    let outbound_per_token =
        (token_graph.calls().len() + token_login.calls().len() - token_calls_before) as f64 / SAMPLES as f64;
    // Each floor round trip (two per sample) is one more Graph call; the component's calls are the rest.
    let component_calls = graph.calls().len() - graph_before - 2 * SAMPLES + login.calls().len() - login_before;
    let outbound_per_warm = component_calls as f64 / warm_revokes as f64;
    let rate = |samples: &[Duration]| samples.len() as f64 / samples.iter().sum::<Duration>().as_secs_f64();
    let (warm_rate, floor_rate) = (rate(&warm), rate(&floor));

    // The warm revoke with the `default` store as Spin's default: a SQLite file, where the
    // brake's `increment` is a durable write transaction.
    let sqlite_file = SpinDefaultStore::create("revoke-bench");
    let on_file = TestApp::builder(component.clone(), &manifest)
        .variables(variables.iter().copied())
        .shared_key_value(&sqlite_file.backend)
        .start()
        .unwrap();
    let mut warm_on_file = Vec::new();
    for i in 0..WARM_UP + SQLITE_SAMPLES {
        let t = Instant::now();
        assert_eq!(on_file.send(request()).await.unwrap().status, 200);
        if i >= WARM_UP {
            warm_on_file.push(t.elapsed());
        }
    }
    drop((on_file, sqlite_file));
    let (file_p50, file_p99) = percentiles(&mut warm_on_file);

    // 100 users in one request: five $batch calls of 20, up to four in flight.
    let hundred: Vec<String> = (0..100).map(|i| format!("user{i}@contoso.com")).collect();
    let many_request = || TestRequest::post("/revoke").header("x-api-key", API_KEY).json(&json!({ "userIds": hundred }));
    let graph_before = graph.calls().len();
    let mut many = Vec::with_capacity(MANY_SAMPLES);
    let mut many_peak_memory = 0;
    for _ in 0..MANY_SAMPLES {
        let t = Instant::now();
        let response = app.send(many_request()).await.unwrap();
        many.push(t.elapsed());
        assert_eq!(response.status, 200, "{}", response.text());
        many_peak_memory = many_peak_memory.max(response.peak_memory_bytes);
    }
    let calls_per_hundred = (graph.calls().len() - graph_before) as f64 / MANY_SAMPLES as f64;

    let (warm_p50, warm_p99) = percentiles(&mut warm);
    let (token_p50, token_p99) = percentiles(&mut warm_token);
    let (many_p50, many_p99) = percentiles(&mut many);
    let (floor_p50, floor_p99) = percentiles(&mut floor);
    let (floor_new_p50, floor_new_p99) = percentiles(&mut floor_new);
    let (cold_p50, cold_p99) = percentiles(&mut cold);
    let (health_p50, health_p99) = percentiles(&mut health);
    let (hello_p50, hello_p99) = percentiles(&mut hello_samples);
    let ms = |d: Duration| format!("{:.3} ms", d.as_secs_f64() * 1000.0);
    println!("| measure | value |");
    println!("|---|---|");
    println!("| warm revoke: requests/s (one at a time) | {warm_rate:.0} |");
    println!("| warm revoke: p50 / p99 | {} / {} |", ms(warm_p50), ms(warm_p99));
    println!("| warm revoke, Entra ID caller token instead of the API key: p50 / p99 | {} / {} |", ms(token_p50), ms(token_p99));
    println!("| token p50 / API-key p50 | {:.2}x |", token_p50.as_secs_f64() / warm_p50.as_secs_f64());
    println!("| floor, one direct HTTP round trip to the mock (connection kept open): requests/s | {floor_rate:.0} |");
    println!("| floor: p50 / p99 | {} / {} |", ms(floor_p50), ms(floor_p99));
    println!("| warm p50 / floor p50 | {:.2}x |", warm_p50.as_secs_f64() / floor_p50.as_secs_f64());
    println!("| Spin's hello template in the same host: p50 / p99 | {} / {} |", ms(hello_p50), ms(hello_p99));
    println!(
        "| warm p50 / (hello p50 + floor p50) (issue 10: at most 1.3x, goal 1.2x) | {:.2}x |",
        warm_p50.as_secs_f64() / (hello_p50 + floor_p50).as_secs_f64()
    );
    println!("| floor on a new connection per call: p50 / p99 | {} / {} |", ms(floor_new_p50), ms(floor_new_p99));
    println!(
        "| warm p50 / (hello p50 + floor on a new connection p50) | {:.2}x |",
        warm_p50.as_secs_f64() / (hello_p50 + floor_new_p50).as_secs_f64()
    );
    println!("| warm revoke with Spin's default store (a SQLite file): p50 / p99 of {SQLITE_SAMPLES} | {} / {} |", ms(file_p50), ms(file_p99));
    println!("| /healthz, no outbound call (instantiate + settings + answer): p50 / p99 | {} / {} |", ms(health_p50), ms(health_p99));
    println!("| cold first request (instantiate + token + revoke): p50 / p99 of {COLD_SAMPLES} | {} / {} |", ms(cold_p50), ms(cold_p99));
    println!("| outbound calls per warm revoke: API key / Entra ID token (JWKS cached) | {outbound_per_warm:.2} / {outbound_per_token:.2} |");
    println!("| 100 users in one request: p50 / p99 | {} / {} |", ms(many_p50), ms(many_p99));
    println!("| 100 users: outbound calls per request | {calls_per_hundred:.2} |");
    println!("| 100 users p50 / one user warm p50 | {:.2}x |", many_p50.as_secs_f64() / warm_p50.as_secs_f64());
    println!("| component size | {} bytes ({:.1} KiB) |", component.size_bytes(), component.size_bytes() as f64 / 1024.0);
    println!("| peak linear memory per instance: one user / 100 users | {} KiB / {} KiB |", peak_memory / 1024, many_peak_memory / 1024);
    println!("| compiling the component (once per process, as Spin does ahead of time) | {} |", ms(compile));
}

/// p50 and p99 of `samples` (sorted in place).
fn percentiles(samples: &mut [Duration]) -> (Duration, Duration) {
    samples.sort();
    let at = |q: f64| samples[((samples.len() as f64 * q) as usize).min(samples.len() - 1)];
    (at(0.50), at(0.99))
}

