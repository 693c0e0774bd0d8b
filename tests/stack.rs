//! The component's stack: linked small (an instance starts with, and the host zeroes,
//! fewer pages of linear memory), yet at least twice what the deepest request needs; and
//! its initial memory, which a warm revoke must not outgrow.
//!
//! A stack overflow is a trap: Spin answers a bare 500, and a revoke is lost. So the
//! size chosen in `.cargo/config.toml` is checked here against the requests that take the
//! most stack, run through the compiled component:
//! - the deepest JSON a body may hold: serde_json stops at 128 levels, and `entities`
//!   keeps whatever JSON an entity carries (arrays and objects, to the last level
//!   accepted and one past it), in a revoke and in a dry run;
//! - Graph answering with JSON nested as deep, in a single call and in a `$batch` item;
//! - the most users one request may name (`max_users`), and the longest id list a 64 KiB
//!   body holds (with `max_users` raised to let all of it through, and at the default);
//! - a cold start (token request), a throttled call (retry), a Graph error, a 64 KiB id,
//!   the Graph-shaped route, `/healthz` and `/openapi.json`;
//! - `verify`: a read-back answered with the deepest JSON, and `max_users` users read back.
//!
//! [`with_stack_bytes`] gives the same binary a smaller stack (the stack pointer starts
//! lower; code, data and memory stay as linked), so the margin is tested, not assumed:
//! every case must pass with half the linked stack. The measurement itself (the least
//! stack each case passes with) is `cargo test --test stack -- --ignored --nocapture`.

mod common;

use std::sync::Arc;

use common::*;
use graph_revoke_test_host::wasm_layout::{memory_layout, with_stack_bytes, PAGE_BYTES};
use graph_revoke_test_host::{Component, Manifest, MockResponse, MockServer, TestApp, TestRequest, TestResponse};
use serde_json::{json, Value};

/// The body limit (SPEC.md).
const MAX_BODY: usize = 64 * 1024;
/// serde_json's recursion limit: a document may nest 127 levels; the 128th is refused.
const DEEPEST: usize = 127;
/// An object id that passes validation.
const OBJECT_ID: &str = "6f4a9b2c-1d3e-4f50-8a6b-7c8d9e0f1a2b";

/// One request that takes a lot of stack, and the answer it must get.
struct Case {
    name: &'static str,
    /// Variables changed from the correct ones.
    variables: Vec<(&'static str, String)>,
    /// Revoke one user first, so the token is cached.
    warm: bool,
    /// Scripts the mocks before the request.
    script: fn(&MockServer, &MockServer),
    request: TestRequest,
    status: u16,
    /// Text the response body must contain (to tell one 400 from another).
    says: &'static str,
}

/// `levels` nested arrays (`[[...]]`) or objects (`{"a":{"a":...1}}`), as JSON text.
fn nested(levels: usize, objects: bool) -> String {
    if objects {
        format!("{}1{}", r#"{"a":"#.repeat(levels), "}".repeat(levels))
    } else {
        format!("{}{}", "[".repeat(levels), "]".repeat(levels))
    }
}

/// `{"entities": [{"kind": "Account", "properties": {"aadUserId": ..., "deep": ...}}]}`
/// nested `depth` levels in all (the body, `entities`, the entity and its properties are
/// the first four).
fn deep_entity(depth: usize, objects: bool) -> String {
    format!(
        r#"{{"entities":[{{"kind":"Account","properties":{{"aadUserId":"{OBJECT_ID}","deep":{}}}}}]}}"#,
        nested(depth - 4, objects)
    )
}

fn revoke_body(body: String) -> TestRequest {
    revoke_at("/revoke", body)
}

fn revoke_at(path: &str, body: String) -> TestRequest {
    TestRequest::post(path).header("x-api-key", API_KEY).header("content-type", "application/json").body(body)
}

/// As many distinct valid UPNs as a 64 KiB `userIds` body holds.
fn longest_id_list() -> String {
    let mut body = String::from(r#"{"userIds":["#);
    for i in 0.. {
        let id = format!(r#""u{i}@contoso.com""#);
        if body.len() + id.len() + 3 > MAX_BODY {
            break;
        }
        if i > 0 {
            body.push(',');
        }
        body.push_str(&id);
    }
    body.push_str("]}");
    body
}

fn no_script(_: &MockServer, _: &MockServer) {}

fn two_users() -> TestRequest {
    TestRequest::post("/revoke").header("x-api-key", API_KEY).json(&json!({ "userIds": ["a@contoso.com", "b@contoso.com"] }))
}

fn worst_cases() -> Vec<Case> {
    let case = |name, request, status| Case { name, variables: vec![], warm: true, script: no_script, request, status, says: "" };
    let many: Vec<String> = (0..100).map(|i| format!("user{i}@contoso.com")).collect();
    vec![
        case("deepest JSON in an entity (arrays)", revoke_body(deep_entity(DEEPEST, false)), 200),
        case("deepest JSON in an entity (objects)", revoke_body(deep_entity(DEEPEST, true)), 200),
        Case {
            says: "recursion limit exceeded",
            ..case("one level too deep (refused)", revoke_body(deep_entity(DEEPEST + 1, false)), 400)
        },
        case("deepest JSON in an entity, dry run", revoke_at("/revoke?whatIf=true", deep_entity(DEEPEST, true)), 200),
        Case {
            script: |_, graph| {
                let deep: Value = serde_json::from_str(&format!(r#"{{"value":true,"deep":{}}}"#, nested(DEEPEST - 1, false))).unwrap();
                graph.enqueue("POST", "/v1.0/users/", MockResponse::json(200, deep));
            },
            ..case("Graph answers with the deepest JSON", revoke(OBJECT_ID), 200)
        },
        Case {
            script: |_, graph| {
                // The batch answer nests the item's body 3 levels down.
                let deep: Value = serde_json::from_str(&format!(r#"{{"value":true,"deep":{}}}"#, nested(DEEPEST - 4, false))).unwrap();
                graph.enqueue_batch_item("POST", "/users/", MockResponse::json(200, deep));
            },
            ..case("a $batch item with the deepest JSON (arrays)", two_users(), 200)
        },
        Case {
            script: |_, graph| {
                let deep: Value = serde_json::from_str(&format!(r#"{{"value":true,"deep":{}}}"#, nested(DEEPEST - 4, true))).unwrap();
                graph.enqueue_batch_item("POST", "/users/", MockResponse::json(200, deep));
            },
            ..case("a $batch item with the deepest JSON (objects)", two_users(), 200)
        },
        case(
            "max_users (100) users",
            TestRequest::post("/revoke").header("x-api-key", API_KEY).json(&json!({ "userIds": many })),
            200,
        ),
        Case {
            // The brake on, with a limit the longest list stays within.
            variables: vec![("max_users", "100000".into()), ("max_revocations", "100000".into())],
            ..case("the longest id list, all revoked", revoke_body(longest_id_list()), 200)
        },
        case("the longest id list, over max_users", revoke_body(longest_id_list()), 413),
        case("a 64 KiB user id", revoke_body(format!(r#"{{"userId":"{}@contoso.com"}}"#, "a".repeat(MAX_BODY - 40))), 400),
        Case { warm: false, ..case("cold: token, then revoke", revoke(OBJECT_ID), 200) },
        Case {
            script: |_, graph| graph.enqueue("POST", "/v1.0/users/", MockResponse::empty(429).header("retry-after", "0")),
            ..case("throttled, retried", revoke(OBJECT_ID), 200)
        },
        Case {
            script: |_, graph| {
                let error = json!({"error": {"code": "Authorization_RequestDenied", "message": "x".repeat(10_000)}});
                graph.enqueue("POST", "/v1.0/users/", MockResponse::json(403, error));
            },
            ..case("a Graph error with a long message", revoke(OBJECT_ID), 403)
        },
        case(
            "the Graph-shaped route",
            TestRequest::post(&format!("/users/{OBJECT_ID}/revokeSignInSessions")).header("x-api-key", API_KEY),
            200,
        ),
        Case {
            script: |_, graph| {
                let deep = format!(r#"{{"id":"x","signInSessionsValidFromDateTime":"2026-01-01T00:00:00Z","deep":{}}}"#, nested(DEEPEST - 1, true));
                graph.enqueue("GET", "/v1.0/users/", MockResponse::json(200, serde_json::from_str(&deep).unwrap()));
            },
            says: "staleRead",
            ..case("verify: the read-back answers with the deepest JSON", revoke_at("/revoke?verify=true", format!(r#"{{"userId":"{OBJECT_ID}"}}"#)), 200)
        },
        Case {
            says: "\"verified\":true",
            ..case(
                "verify: max_users (100) users revoked, then read back",
                TestRequest::post("/revoke?verify=true").header("x-api-key", API_KEY).json(&json!({ "userIds": many })),
                200,
            )
        },
        case("/healthz", TestRequest::get("/healthz"), 200),
        case("/openapi.json", TestRequest::get("/openapi.json"), 200),
    ]
}

/// Runs one case in a new app (new mocks, empty token cache). `Err` when the host
/// reports a failure, such as a trap; a wrong status is a test failure.
async fn run(component: &Arc<Component>, case: &Case) -> Result<TestResponse, String> {
    let login = MockServer::start().await;
    let graph = MockServer::start_trusting(&login).await;
    let mut variables = common::variables(&login, &graph);
    for (name, value) in &case.variables {
        variables.retain(|(n, _)| n != name);
        variables.push((name.to_string(), value.clone()));
    }
    let borrowed: Vec<(&str, &str)> = variables.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
    let app = TestApp::start(component.clone(), &Manifest::load_default().unwrap(), &borrowed).unwrap();
    if case.warm {
        let warm = app.send(revoke("warm.up@contoso.com")).await.map_err(|e| format!("{e:#}"))?;
        assert_eq!(warm.status, 200, "{}: warming up: {}", case.name, warm.text());
    }
    (case.script)(&login, &graph);
    let response = app.send(case.request.clone()).await.map_err(|e| format!("{e:#}"))?;
    assert_eq!(response.status, case.status, "{}: {}", case.name, response.text());
    assert!(response.text().contains(case.says), "{}: {}", case.name, response.text());
    assert_nothing_leaked(&response);
    Ok(response)
}

/// The release component with its stack pointer starting at `bytes`, compiled. (Not
/// cached: each compiled component holds an engine and its instance pool.)
fn with_stack(bytes: u32) -> Arc<Component> {
    let linked = std::fs::read(Component::shared().unwrap().path()).unwrap();
    let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("graph_revoke-stack-{bytes}.wasm"));
    std::fs::write(&path, with_stack_bytes(&linked, bytes).unwrap()).unwrap();
    Arc::new(Component::load(&path).unwrap())
}

/// The stack the release component was linked with.
fn linked_stack() -> u32 {
    let linked = std::fs::read(Component::shared().unwrap().path()).unwrap();
    memory_layout(&linked).unwrap().stack_bytes
}

/// The `-zstack-size` that `.cargo/config.toml` links the component with.
fn configured_stack() -> u32 {
    let config = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/.cargo/config.toml")).unwrap();
    let (_, rest) = config.split_once("-zstack-size=").expect(".cargo/config.toml sets -zstack-size");
    rest.split(|c: char| !c.is_ascii_digit()).next().unwrap().parse().unwrap()
}

#[test]
fn the_component_is_linked_with_the_configured_stack_and_stack_first() {
    let linked = std::fs::read(Component::shared().unwrap().path()).unwrap();
    let layout = memory_layout(&linked).unwrap();
    assert_eq!(
        layout.stack_bytes,
        configured_stack(),
        "the component was not linked with .cargo/config.toml's stack size (RUSTFLAGS set? an old build?)"
    );
    // The stack is first, so an overflow leaves the memory (a trap) rather than
    // overwriting static data; memory_layout checks that data starts above it.
    assert!(layout.data_start >= layout.stack_bytes);
    // Stack, data and the heap's first allocations fit the initial memory.
    assert!(layout.initial_pages * PAGE_BYTES >= layout.data_end as u64);
    println!("{layout:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_worst_case_is_answered_at_the_linked_stack() {
    let component = Component::shared().unwrap();
    for case in worst_cases() {
        if let Err(e) = run(&component, &case).await {
            panic!("{} failed at the linked stack ({} bytes): {e}", case.name, linked_stack());
        }
    }
}

/// The margin: every case passes with half the stack, so the linked size is at least
/// twice what the deepest request needs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_the_linked_stack_is_still_enough() {
    let half = linked_stack() / 2 / 16 * 16;
    let component = with_stack(half);
    for case in worst_cases() {
        if let Err(e) = run(&component, &case).await {
            panic!(
                "{} traps with half the linked stack ({half} bytes): the margin is under 2x; \
                 raise -zstack-size in .cargo/config.toml (measure with \
                 `cargo test --test stack -- --ignored --nocapture`): {e}",
                case.name
            );
        }
    }
}

/// The initial memory (`--initial-memory` in .cargo/config.toml) holds a warm revoke:
/// growing memory costs the host more per request than starting with the page.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_warm_revoke_fits_the_initial_memory() {
    let linked = std::fs::read(Component::shared().unwrap().path()).unwrap();
    let initial = memory_layout(&linked).unwrap().initial_pages * PAGE_BYTES;
    let env = common::start().await;
    assert_eq!(env.send(revoke("adele.vance@contoso.com")).await.status, 200, "cold");
    let warm = env.send(revoke("adele.vance@contoso.com")).await;
    assert_eq!(warm.status, 200, "{}", warm.text());
    assert!(
        warm.peak_memory_bytes as u64 <= initial,
        "a warm revoke grew linear memory to {} KiB, past the initial {} KiB: cut the heap it \
         uses or raise --initial-memory in .cargo/config.toml",
        warm.peak_memory_bytes / 1024,
        initial / 1024
    );
}

/// The other side: too small a stack does trap, and `run` reports it, so the two tests
/// above can fail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stack_overflow_is_a_trap_that_these_tests_see() {
    let component = with_stack(4096);
    let deepest = worst_cases().into_iter().next().unwrap();
    let message = run(&component, &deepest).await.expect_err("the deepest JSON fits a 4 KiB stack?");
    assert!(message.contains("wasm trap") || message.contains("out of bounds"), "{message}");
}

/// The least stack each case passes with, to 256 bytes, by bisection over patched copies
/// of the release build. Prints a table; asserts the 2x margin.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement: compiles the component at many stack sizes"]
async fn measure_the_stack_each_worst_case_needs() {
    let linked = linked_stack();
    let mut needs = Vec::new();
    for case in worst_cases() {
        let (mut fails, mut passes) = (0u32, linked);
        while passes - fails > 256 {
            let middle = (fails + passes) / 2 / 16 * 16;
            match run(&with_stack(middle), &case).await {
                Ok(_) => passes = middle,
                Err(_) => fails = middle,
            }
        }
        println!("| {} | {passes} bytes |", case.name);
        needs.push((passes, case.name));
    }
    let (most, name) = needs.iter().max().unwrap();
    println!("deepest: {name}, {most} bytes; linked: {linked} bytes ({:.1}x)", linked as f64 / *most as f64);
    assert!(linked >= 2 * most, "the linked stack is under twice what {name} needs");
}
