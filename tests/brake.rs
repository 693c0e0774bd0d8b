//! The abuse brake (`max_revocations`, SPEC.md "Caller authentication"): at most that many
//! users per caller per 10-minute window, counted in the `default` key-value store with
//! `wasi:keyvalue/atomics` `increment`; past it 429 `throttled` with `Retry-After` and
//! nothing sent. Counted in the mock Graph's record of revocations, under bursts of
//! concurrent requests, across API keys, and across two apps sharing one store.

mod common;

use std::collections::BTreeSet;
use std::time::{SystemTime, UNIX_EPOCH};

use common::*;
use graph_revoke_test_host::{AppOptions, Component, KeyValueBackend, Manifest, MockServer, TestApp, TestRequest, TestResponse};
use serde_json::{json, Value};

/// The brake's window (SPEC.md: fixed at 10 minutes).
const WINDOW_SECS: u64 = 600;
/// Where the brake keeps its keys in the `default` store.
const BRAKE_PREFIX: &str = "graph-revoke/brake/v1/";

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

fn window_now() -> u64 {
    unix_now() / WINDOW_SECS
}

/// Waits for the next window if this one ends within 30 s, so that a test's requests
/// all fall in one window (a test here takes a few seconds at most).
async fn in_one_window() {
    let ends_in = WINDOW_SECS - unix_now() % WINDOW_SECS;
    if ends_in <= 30 {
        eprintln!("waiting {ends_in} s for the next brake window");
        tokio::time::sleep(std::time::Duration::from_secs(ends_in + 1)).await;
    }
}

/// The counter of `caller` of the test deployment (tenant and client of `common`) in
/// window `window`.
fn counter_key(caller: &str, window: u64) -> String {
    format!("{BRAKE_PREFIX}{TENANT}/{CLIENT_ID}/{caller}/{window}")
}

fn marker_key(caller: &str) -> String {
    format!("{BRAKE_PREFIX}{TENANT}/{CLIENT_ID}/{caller}/windows")
}

fn users(tag: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{tag}-{i}@contoso.com")).collect()
}

/// `POST /revoke` naming `ids`, with `key`.
fn batch(key: &str, ids: &[String]) -> TestRequest {
    TestRequest::post("/revoke").header("x-api-key", key).json(&json!({ "userIds": ids }))
}

/// Users whose revocation Graph carried out, counting repeats.
fn revoked(graph: &MockServer) -> u32 {
    graph.revocations().values().sum()
}

fn brake_keys(keys: Vec<String>) -> Vec<String> {
    keys.into_iter().filter(|k| k.starts_with(BRAKE_PREFIX)).collect()
}

/// A refusal by the brake: 429 `throttled`, a `Retry-After` within the window, a message
/// naming the setting and the window (never a key), nothing sent, and a log line that
/// says the brake engaged. Returns the log line.
fn assert_braked(response: &TestResponse, limit: u64) -> Value {
    let message = assert_error(response, 429, "throttled");
    assert!(message.contains("max_revocations") && message.contains("10-minute window"), "{message}");
    assert!(!message.contains(BRAKE_PREFIX) && !response.stdout.contains(BRAKE_PREFIX), "{message}");
    let retry_after: u64 = response.header("retry-after").expect("Retry-After").parse().unwrap();
    assert!((1..=WINDOW_SECS).contains(&retry_after), "{retry_after}");
    let log = log_line(response);
    assert_eq!((&log["brake"], &log["brakeLimit"], &log["outcome"], &log["status"]), (&json!("engaged"), &json!(limit), &json!("throttled"), &json!(429)), "{log}");
    assert!(log["brakeCount"].as_u64().unwrap() > limit, "{log}");
    assert_eq!(log["outboundCalls"], 0, "nothing sent: {log}");
    log
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_never_revokes_more_than_the_limit_and_the_excess_gets_429_with_nothing_sent() {
    in_one_window().await;
    const LIMIT: u64 = 50;
    let env = start_with(&[("max_revocations", Some("50"))]).await;
    let windows_before = window_now();
    // 40 requests at once, from one caller: single users, the Graph-shaped route, and
    // batches of 5 and of 20 (one of them naming a user twice: counted once). 255 users.
    let requests: Vec<(TestRequest, u64)> = (0..40)
        .map(|i| match i % 4 {
            0 => (revoke(&format!("single-{i}@contoso.com")), 1),
            1 => (batch(API_KEY, &users(&format!("five-{i}"), 5)), 5),
            2 => {
                let mut ids = users(&format!("twenty-{i}"), 19);
                ids.push(ids[0].clone());
                (batch(API_KEY, &ids), 19)
            }
            _ => (TestRequest::post(&format!("/users/shaped-{i}%40contoso.com/revokeSignInSessions")).header("x-api-key", API_KEY), 1),
        })
        .collect();
    let sent = futures::future::join_all(requests.iter().map(|(request, n)| async { (env.send(request.clone()).await, *n) })).await;
    let windows_spanned = window_now() - windows_before + 1;

    let (mut allowed_users, mut refused, mut outbound) = (0, 0, 0);
    for (response, n) in &sent {
        match response.status {
            200 => {
                allowed_users += n;
                assert!(log_line(response)["brakeCount"].as_u64().unwrap() <= LIMIT * windows_spanned);
            }
            429 => {
                assert_braked(response, LIMIT);
                refused += 1;
            }
            status => panic!("{status}: {}", response.text()),
        }
        outbound += log_line(response)["outboundCalls"].as_u64().unwrap();
    }
    let revoked = u64::from(revoked(&env.graph));
    eprintln!("{allowed_users} users revoked by {} requests, {refused} refused", sent.len() - refused);
    assert!(revoked <= LIMIT * windows_spanned, "{revoked} revoked past the limit of {LIMIT}");
    assert_eq!(revoked, allowed_users, "Graph revoked exactly the users of the allowed requests");
    assert!(refused > 0 && allowed_users > 0);
    assert_eq!(outbound as usize, env.outbound_calls(), "every outbound call belongs to an allowed request");
    if windows_spanned == 1 {
        // Every refused request gave its users back: the counter is what was revoked.
        let counter = env.app.key_value_backend().counter(&counter_key("apiKey:1", windows_before));
        assert_eq!(counter, Some(allowed_users as i64));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_manifest_default_is_300_users_and_a_refused_batch_is_given_back() {
    in_one_window().await;
    let env = start().await;
    for round in 0..3 {
        let response = env.send(batch(API_KEY, &users(&format!("r{round}"), 100))).await;
        assert_eq!(response.status, 200, "{}", response.text());
        assert_eq!(log_line(&response)["brakeLimit"], 300);
    }
    let refused = env.send(batch(API_KEY, &users("r3", 100))).await;
    let log = assert_braked(&refused, 300);
    assert_eq!(log["brakeCount"], 400, "{log}");
    assert_braked(&env.send(revoke("one.more@contoso.com")).await, 300);
    assert_eq!(revoked(&env.graph), 300);
    let counted = env.app.key_value_backend().counter(&counter_key("apiKey:1", window_now()));
    assert_eq!(counted, Some(300), "the refused users were given back");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_runs_are_not_counted_and_never_braked() {
    in_one_window().await;
    let env = start_with(&[("max_revocations", Some("2"))]).await;
    let dry_batch = TestRequest::post("/revoke").header("x-api-key", API_KEY).json(&json!({ "userIds": users("dry", 5), "whatIf": true }));
    let dry_query = TestRequest::post("/revoke?whatIf=true").header("x-api-key", API_KEY).json(&json!({ "userId": "adele@contoso.com" }));
    for request in [dry_batch.clone(), dry_query.clone()] {
        let response = env.send(request).await;
        assert_eq!(response.status, 200, "{}", response.text());
        assert!(log_line(&response).get("brakeCount").is_none());
    }
    assert!(brake_keys(env.app.kv_keys()).is_empty(), "{:?}", env.app.kv_keys());
    assert_eq!(env.send(batch(API_KEY, &users("real", 2))).await.status, 200);
    assert_braked(&env.send(revoke("adele@contoso.com")).await, 2);
    // Past the limit, dry runs still run: they revoke no one.
    for request in [dry_batch, dry_query] {
        assert_eq!(env.send(request).await.status, 200);
    }
    assert_eq!(revoked(&env.graph), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_api_key_is_counted_apart() {
    in_one_window().await;
    let env = start_with(&[("max_revocations", Some("1"))]).await;
    let first = env.send(revoke("adele@contoso.com")).await;
    assert_eq!((first.status, log_line(&first)["caller"].clone()), (200, json!("apiKey:1")));
    assert_braked(&env.send(revoke("alex@contoso.com")).await, 1);
    let second_key = TestRequest::post("/revoke").header("x-api-key", SECOND_API_KEY).json(&json!({ "userId": "alex@contoso.com" }));
    let second = env.send(second_key.clone()).await;
    assert_eq!((second.status, log_line(&second)["caller"].clone()), (200, json!("apiKey:2")));
    assert_braked(&env.send(second_key).await, 1);
    assert_eq!(revoked(&env.graph), 2);
}

/// An app on the project's manifest and the correct variables, its `default` store on `backend`.
fn replica(login: &MockServer, graph: &MockServer, backend: &KeyValueBackend, max_revocations: &str) -> TestApp {
    TestApp::builder(Component::shared().unwrap(), &Manifest::load_default().unwrap())
        .variables(variables(login, graph))
        .variable("max_revocations", max_revocations)
        .shared_key_value(backend)
        .start()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_sharing_one_store_count_together() {
    in_one_window().await;
    let login = MockServer::start().await;
    let graph = MockServer::start_trusting(&login).await;
    let shared = KeyValueBackend::new();
    let replicas = [replica(&login, &graph, &shared, "3"), replica(&login, &graph, &shared, "3")];
    let window = window_now();
    // Twelve users at once, alternating between the replicas.
    let burst = (0..12).map(|i| {
        let app = &replicas[i % 2];
        async move { app.send(revoke(&format!("user{i}@contoso.com"))).await.unwrap() }
    });
    let responses = futures::future::join_all(burst).await;
    let spanned = window_now() - window + 1;
    let allowed = responses.iter().filter(|r| r.status == 200).count() as u64;
    for response in &responses {
        assert_nothing_leaked(response);
        if response.status != 200 {
            assert_braked(response, 3);
        }
    }
    assert!(allowed <= 3 * spanned && u64::from(revoked(&graph)) == allowed, "{allowed} allowed");
    if spanned == 1 {
        assert_eq!(allowed, 3);
    }
    let refused_on: BTreeSet<usize> = responses.iter().enumerate().filter(|(_, r)| r.status == 429).map(|(i, _)| i % 2).collect();
    assert!(!refused_on.is_empty(), "refusals on replicas {refused_on:?}");
    for app in &replicas {
        assert!(app.host_calls().key_value_increments() >= 6, "each request counted with increment: {:?}", app.host_calls());
    }

    // Each with its own store, each counts its own.
    let login = MockServer::start().await;
    let graph = MockServer::start_trusting(&login).await;
    let apart = [replica(&login, &graph, &KeyValueBackend::new(), "1"), replica(&login, &graph, &KeyValueBackend::new(), "1")];
    for app in &apart {
        assert_eq!(app.send(revoke("adele@contoso.com")).await.unwrap().status, 200);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zero_turns_the_brake_off() {
    let env = start_with(&[("max_revocations", Some("0"))]).await;
    for round in 0..4 {
        let response = env.send(batch(API_KEY, &users(&format!("r{round}"), 100))).await;
        assert_eq!(response.status, 200, "{}", response.text());
        assert!(log_line(&response).get("brakeCount").is_none() && log_line(&response).get("brake").is_none());
    }
    assert_eq!(revoked(&env.graph), 400);
    assert!(brake_keys(env.app.kv_keys()).is_empty(), "{:?}", env.app.kv_keys());
    assert_eq!(env.app.host_calls().key_value_increments(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_max_revocations_is_a_500_naming_it_and_nothing_is_sent() {
    for bad in ["lots", "-1", "300 per 10 minutes", ""] {
        let env = start_with(&[("max_revocations", Some(bad))]).await;
        let response = env.send(revoke("adele@contoso.com")).await;
        let message = assert_error(&response, 500, "configurationError");
        assert!(message.contains("max_revocations"), "{bad:?}: {message}");
        assert_eq!(env.outbound_calls(), 0);
        let health = env.send(TestRequest::get("/healthz")).await;
        assert_eq!(health.status, 503, "{}", health.text());
        assert!(health.text().contains("max_revocations"), "{}", health.text());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_line_says_the_brake_engaged_and_retry_after_ends_the_window() {
    in_one_window().await;
    let env = start_with(&[("max_revocations", Some("20"))]).await;
    assert_eq!(env.send(batch(API_KEY, &users("first", 15))).await.status, 200);
    let before = unix_now();
    let refused = env.send(batch(API_KEY, &users("second", 10))).await;
    let after = unix_now();
    let log = assert_braked(&refused, 20);
    assert_eq!(log["userIds"].as_array().unwrap().len(), 10, "the refused users are logged: {log}");
    let retry_after: u64 = refused.header("retry-after").unwrap().parse().unwrap();
    let ends_in = |now: u64| WINDOW_SECS - now % WINDOW_SECS;
    assert!([ends_in(before), ends_in(after)].contains(&retry_after), "{retry_after} s, window ends in {} s", ends_in(after));
    // Every refusal took one increment and one give-back; the refused ten still fit nowhere,
    // five still do.
    assert_eq!(env.send(batch(API_KEY, &users("third", 5))).await.status, 200);
    assert_eq!(revoked(&env.graph), 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_that_cannot_count_lets_revokes_through_and_the_log_line_says_so() {
    // No key-value store at all: uncached token, uncounted revokes.
    let login = MockServer::start().await;
    let graph = MockServer::start_trusting(&login).await;
    let vars: Vec<(String, String)> = variables(&login, &graph).into_iter().chain([("max_revocations".to_string(), "1".to_string())]).collect();
    let vars: Vec<(&str, &str)> = vars.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
    let app = TestApp::start_with(Component::shared().unwrap(), &Manifest::load_default().unwrap(), &vars, AppOptions { key_value_store: false }).unwrap();
    for user in ["adele@contoso.com", "alex@contoso.com", "megan@contoso.com"] {
        let response = app.send(revoke(user)).await.unwrap();
        assert_nothing_leaked(&response);
        assert_eq!(response.status, 200, "{}", response.text());
        let log = log_line(&response);
        assert_eq!(log["brake"], "unavailable", "{log}");
        assert!(log.get("brakeCount").is_none());
    }
    assert_eq!(revoked(&graph), 3);

    // A counter the store cannot add to (a value that is not one): the same.
    let env = start_with(&[("max_revocations", Some("1"))]).await;
    loop {
        let window = window_now();
        env.app.kv_set(&counter_key("apiKey:1", window), b"not a counter");
        let response = env.send(revoke("adele@contoso.com")).await;
        if window_now() != window {
            continue; // a window boundary passed: plant again
        }
        assert_eq!(response.status, 200, "{}", response.text());
        assert_eq!(log_line(&response)["brake"], "unavailable");
        break;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callers_windows_that_are_over_are_swept_from_the_store() {
    let env = start().await;
    let caller = "apiKey:1";
    // Windows of an hour ago, listed in the caller's marker, as an earlier request left them.
    let old = window_now() - 6;
    for window in [old, old + 1] {
        env.app.kv_set(&counter_key(caller, window), &7i64.to_le_bytes());
    }
    env.app.kv_set(&marker_key(caller), format!("{old},{}", old + 1).as_bytes());
    // Another caller's windows are left alone.
    env.app.kv_set(&counter_key("apiKey:2", old), &7i64.to_le_bytes());

    assert_eq!(env.send(revoke("adele@contoso.com")).await.status, 200);
    let keys = brake_keys(env.app.kv_keys());
    let current: Vec<&String> = keys.iter().filter(|k| k.starts_with(&format!("{BRAKE_PREFIX}{TENANT}/{CLIENT_ID}/{caller}/")) && !k.ends_with("/windows")).collect();
    assert_eq!(current.len(), 1, "only the current window is left: {keys:?}");
    let window = current[0].rsplit('/').next().unwrap();
    assert_eq!(env.app.kv_get(&marker_key(caller)), Some(window.as_bytes().to_vec()));
    assert!(keys.contains(&counter_key("apiKey:2", old)), "{keys:?}");
    assert_eq!(keys.len(), 3, "{keys:?}");
}
