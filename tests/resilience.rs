//! Behaviour towards Graph and the identity platform under load and failure: the
//! token cache, retries with `Retry-After`, the time budget and timeouts.
//! Budgets and delays are small so the suite stays fast.

mod common;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::*;
use graph_revoke_test_host::{AppOptions, Component, Manifest, MockResponse, TestApp, TestRequest};
use serde_json::json;

const REVOKE: &str = "/v1.0/users/";

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

/// The token cache's keys (the store also holds the abuse brake's counters).
fn token_keys(env: &Env) -> Vec<String> {
    env.app.kv_keys().into_iter().filter(|k| k.starts_with("graph-revoke/token/")).collect()
}

/// The one cache entry, parsed.
fn cache_entry(env: &Env) -> (String, serde_json::Value) {
    let keys = token_keys(env);
    assert_eq!(keys.len(), 1, "{keys:?}");
    let value = serde_json::from_slice(&env.app.kv_get(&keys[0]).unwrap()).expect("a JSON entry");
    (keys[0].clone(), value)
}

/// Gaps between consecutive Graph calls.
fn gaps(env: &Env) -> Vec<Duration> {
    let calls = env.graph.calls();
    calls.windows(2).map(|w| w[1].at.duration_since(w[0].at)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_warm_request_makes_exactly_one_outbound_call() {
    let env = start().await;
    let cold = env.send(revoke("adele@contoso.com")).await;
    assert_eq!(cold.status, 200);
    assert_eq!(log_line(&cold)["tokenFromCache"], false);
    assert_eq!(log_line(&cold)["outboundCalls"], 2);

    for _ in 0..3 {
        let warm = env.send(revoke("adele@contoso.com")).await;
        assert_eq!(warm.status, 200);
        assert_eq!(log_line(&warm)["tokenFromCache"], true);
        assert_eq!(log_line(&warm)["outboundCalls"], 1);
    }
    assert_eq!(env.login.calls().len(), 1, "one token for all four requests");
    assert_eq!(env.graph.calls().len(), 4);
    assert!(env.graph.calls().iter().all(|c| c.header("authorization") == Some("Bearer mock-access-token-1")));

    let (key, entry) = cache_entry(&env);
    assert!(key.contains(TENANT) && key.contains(CLIENT_ID), "{key}");
    let expires_at = entry["expiresAt"].as_u64().unwrap();
    assert!(expires_at.abs_diff(unix_now() + 3599) <= 5, "{entry}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_is_renewed_five_minutes_before_it_expires() {
    let env = start().await;
    env.send(revoke("adele@contoso.com")).await;
    let (key, mut entry) = cache_entry(&env);

    // 301 s left: still good.
    entry["expiresAt"] = json!(unix_now() + 310);
    env.app.kv_set(&key, entry.to_string().as_bytes());
    assert_eq!(log_line(&env.send(revoke("adele@contoso.com")).await)["tokenFromCache"], true);
    assert_eq!(env.login.calls().len(), 1);

    // 299 s left: renewed, and the new token is stored.
    entry["expiresAt"] = json!(unix_now() + 299);
    env.app.kv_set(&key, entry.to_string().as_bytes());
    let renewed = env.send(revoke("adele@contoso.com")).await;
    assert_eq!(log_line(&renewed)["tokenFromCache"], false);
    assert_eq!(env.login.calls().len(), 2);
    assert_eq!(env.graph.calls().last().unwrap().header("authorization"), Some("Bearer mock-access-token-2"));
    assert!(cache_entry(&env).1["expiresAt"].as_u64().unwrap() > unix_now() + 3000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_lived_token_is_used_but_not_cached() {
    let env = start().await;
    env.login.enqueue("POST", "/", MockResponse::json(200, json!({"token_type": "Bearer", "expires_in": 120, "access_token": "mock-access-token-short"})));
    assert_eq!(env.send(revoke("adele@contoso.com")).await.status, 200);
    assert!(token_keys(&env).is_empty(), "{:?}", env.app.kv_keys());
    assert_eq!(env.only_graph_call().header("authorization"), Some("Bearer mock-access-token-short"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_or_foreign_cache_entries_are_replaced() {
    for garbage in [&b"\xff\x00 not json"[..], br#"{"format":99,"accessToken":"stolen","expiresAt":99999999999}"#, b"{}"] {
        let env = start().await;
        env.send(revoke("adele@contoso.com")).await;
        let (key, _) = cache_entry(&env);
        env.app.kv_set(&key, garbage);
        let response = env.send(revoke("adele@contoso.com")).await;
        assert_eq!(response.status, 200, "{}", response.text());
        assert_eq!(env.login.calls().len(), 2, "the bad entry was not trusted");
        assert!(env.graph.calls().iter().all(|c| c.header("authorization") != Some("Bearer stolen")));
        assert_eq!(cache_entry(&env).1["format"], 1, "the bad entry was replaced");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_store_it_works_uncached() {
    let login = graph_revoke_test_host::MockServer::start().await;
    let graph = graph_revoke_test_host::MockServer::start_trusting(&login).await;
    let vars = variables(&login, &graph);
    let vars: Vec<(&str, &str)> = vars.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
    let app = TestApp::start_with(Component::shared().unwrap(), &Manifest::load_default().unwrap(), &vars, AppOptions { key_value_store: false }).unwrap();
    for _ in 0..2 {
        let response = app.send(revoke("adele@contoso.com")).await.unwrap();
        assert_nothing_leaked(&response);
        assert_eq!(response.status, 200, "{}", response.text());
        assert_eq!(log_line(&response)["outboundCalls"], 2);
    }
    assert_eq!(login.calls().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graph_401_drops_the_cached_token_and_retries_once() {
    let env = start().await;
    env.send(revoke("adele@contoso.com")).await;
    // The cached token expires at Graph (revoked, or the clocks disagree): Graph's own 401.
    env.graph.expire_token("mock-access-token-1");
    let response = env.send(revoke("adele@contoso.com")).await;
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(env.login.calls().len(), 2, "a fresh token");
    let calls = env.graph.calls();
    assert_eq!(calls.len(), 3);
    assert_eq!(calls[1].header("authorization"), Some("Bearer mock-access-token-1"));
    assert_eq!(calls[2].header("authorization"), Some("Bearer mock-access-token-2"));
    assert_eq!(cache_entry(&env).1["accessToken"], "mock-access-token-2");
    assert_eq!(env.graph.revocations().get("adele@contoso.com"), Some(&2), "both revokes took effect");

    // Two 401s in a row (the fresh token refused too): an error, never a loop. Scripted,
    // since every token the login mock issues is valid.
    let invalid = || MockResponse::json(401, json!({"error": {"code": "InvalidAuthenticationToken", "message": "Access token has expired."}}));
    env.graph.enqueue("POST", REVOKE, invalid());
    env.graph.enqueue("POST", REVOKE, invalid());
    let response = env.send(revoke("adele@contoso.com")).await;
    let message = assert_error(&response, 502, "graphError");
    assert!(message.contains("401"), "{message}");
    assert_eq!(env.graph.calls().len(), 5);
    assert_eq!(env.login.calls().len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_planted_cache_entry_is_used_and_an_unknown_token_in_it_is_replaced() {
    let env = start().await;
    env.send(revoke("adele@contoso.com")).await;
    let (key, mut entry) = cache_entry(&env);

    // A token Graph knows (issued for this app), planted in the cache: used as it is.
    let planted = env.login.issue_token();
    entry["accessToken"] = json!(planted);
    env.app.kv_set(&key, entry.to_string().as_bytes());
    let response = env.send(revoke("adele@contoso.com")).await;
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(log_line(&response)["tokenFromCache"], true);
    assert_eq!(env.graph.calls().last().unwrap().header("authorization"), Some(format!("Bearer {planted}").as_str()));
    assert_eq!(env.login.calls().len(), 1);

    // A well-formed entry whose token Graph never issued: Graph's 401, then a fresh token.
    entry["accessToken"] = json!("mock-access-token-from-elsewhere");
    env.app.kv_set(&key, entry.to_string().as_bytes());
    let response = env.send(revoke("adele@contoso.com")).await;
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(env.login.calls().len(), 2);
    let calls = env.graph.calls();
    assert_eq!(calls[calls.len() - 2].header("authorization"), Some("Bearer mock-access-token-from-elsewhere"));
    assert_eq!(calls[calls.len() - 1].header("authorization"), Some("Bearer mock-access-token-2"));
    assert_eq!(cache_entry(&env).1["accessToken"], "mock-access-token-2");
}

/// Slack for upper bounds on waits: a loaded 2-core CI machine can stall a process for a
/// good part of a second, so no upper bound is tighter than this.
const SLACK: Duration = Duration::from_secs(2);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_is_honoured_in_each_form() {
    // (Retry-After, least gap, nominal wait). Each least gap is above the longest first backoff the
    // component would pick without a usable Retry-After (under 1 s), so a value that is
    // ignored or truncated fails the lower bound; upper bounds get `SLACK`. An HTTP-date
    // has whole seconds, so "in 3 s" written now is 2 to 3 s away. (That `0.25` means
    // 250 ms exactly is `retry.rs`'s unit test.)
    let in_three_seconds = || httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(3));
    let cases: [(&dyn Fn() -> String, Duration, Duration); 3] = [
        (&|| "1".to_string(), Duration::from_millis(1000), Duration::from_secs(1)),
        (&|| "1.5".to_string(), Duration::from_millis(1500), Duration::from_millis(1500)),
        (&in_three_seconds, Duration::from_millis(1900), Duration::from_secs(3)),
    ];
    let mut runs = Vec::new();
    for (retry_after, least, nominal) in cases {
        let retry_after = retry_after();
        runs.push(tokio::spawn(async move {
            let env = start().await;
            env.graph.enqueue("POST", REVOKE, MockResponse::empty(429).header("retry-after", &retry_after));
            let response = env.send(revoke("adele@contoso.com")).await;
            assert_eq!(response.status, 200, "{retry_after}: {}", response.text());
            let gap = gaps(&env)[0];
            let most = nominal + SLACK;
            assert!(gap >= least && gap <= most, "Retry-After {retry_after}: waited {gap:?}");
            let calls = env.graph.calls();
            assert_eq!(calls[0].header("retry-attempt"), None);
            assert_eq!(calls[1].header("retry-attempt"), Some("1"));
            assert_eq!(calls[0].header("client-request-id"), calls[1].header("client-request-id"), "one id across retries");
            assert_eq!(log_line(&response)["outboundCalls"], 3);
        }));
    }
    for run in runs {
        run.await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wait_beyond_the_budget_is_handed_to_the_caller_at_once() {
    // "At once" against a budget far longer than any stall: waiting out the budget (or
    // the 30 s) would take 20 s.
    let env = start_with(&[("time_budget_ms", Some("20000"))]).await;
    env.graph.enqueue("POST", REVOKE, MockResponse::empty(429).header("retry-after", "30"));
    let started = Instant::now();
    let response = env.send(revoke("adele@contoso.com")).await;
    assert!(started.elapsed() < Duration::from_secs(10), "{:?}", started.elapsed());
    let message = assert_error(&response, 429, "throttled");
    assert!(message.contains("30 seconds"), "{message}");
    assert_eq!(response.header("retry-after"), Some("30"));
    assert_eq!(env.graph.calls().len(), 1);

    for status in [503, 504] {
        let env = start_with(&[("time_budget_ms", Some("2000"))]).await;
        env.graph.enqueue("POST", REVOKE, MockResponse::empty(status).header("retry-after", "2.5"));
        let response = env.send(revoke("adele@contoso.com")).await;
        assert_error(&response, 503, "graphUnavailable");
        assert_eq!(response.header("retry-after"), Some("3"), "fractional seconds rounded up");
        assert_eq!(env.graph.calls().len(), 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outages_then_success() {
    for status in [503, 504] {
        let env = start().await;
        env.graph.enqueue("POST", REVOKE, MockResponse::empty(status).header("retry-after", "0.05"));
        env.graph.enqueue("POST", REVOKE, MockResponse::empty(status).header("retry-after", "0.05"));
        let response = env.send(revoke("adele@contoso.com")).await;
        assert_eq!(response.status, 200, "{}", response.text());
        let attempts: Vec<_> = env.graph.calls().iter().map(|c| c.header("retry-attempt").map(str::to_string)).collect();
        assert_eq!(attempts, vec![None, Some("1".into()), Some("2".into())]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn persistent_failure_stops_after_three_retries() {
    let env = start().await;
    for _ in 0..5 {
        env.graph.enqueue("POST", REVOKE, MockResponse::empty(503).header("retry-after", "0.02").header("request-id", "aaaa-1"));
    }
    let response = env.send(revoke("adele@contoso.com")).await;
    assert_error(&response, 503, "graphUnavailable");
    assert_eq!(response.header("retry-after"), Some("1"));
    assert_eq!(response.header("request-id"), Some("aaaa-1"));
    assert_eq!(env.graph.calls().len(), 4, "1 try + 3 retries");
    assert_eq!(env.graph.calls()[3].header("retry-attempt"), Some("3"));
    assert_eq!(log_line(&response)["outboundCalls"], 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_graph_is_an_upstream_timeout_within_the_budget() {
    // The budget (1.5 s) is what ends the request, not the mock's 20 s delay and not the
    // host's 30 s timeout: at least the budget (the component's clock starts after ours),
    // at most the budget plus `SLACK`.
    let env = start_with(&[("time_budget_ms", Some("1500"))]).await;
    env.graph.enqueue("POST", REVOKE, MockResponse::json(200, json!({"value": true})).delay(Duration::from_secs(20)));
    let started = Instant::now();
    let response = env.send(revoke("adele@contoso.com")).await;
    let elapsed = started.elapsed();
    let message = assert_error(&response, 504, "upstreamTimeout");
    assert!(message.contains("time_budget_ms = 1500") && message.contains("retry"), "{message}");
    assert!(elapsed >= Duration::from_millis(1400) && elapsed < Duration::from_millis(1500) + SLACK, "{elapsed:?}");
    assert_eq!(env.graph.calls().len(), 1, "no retry of a call that ran out the budget");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_identity_platform_is_an_upstream_timeout_too() {
    let env = start_with(&[("time_budget_ms", Some("1500"))]).await;
    env.login.enqueue("POST", "/", MockResponse::empty(200).delay(Duration::from_secs(20)));
    let started = Instant::now();
    assert_error(&env.send(revoke("adele@contoso.com")).await, 504, "upstreamTimeout");
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_millis(1400) && elapsed < Duration::from_millis(1500) + SLACK, "{elapsed:?}");
    assert_eq!(env.graph.calls().len(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_endpoint_gets_one_retry_on_a_temporary_failure() {
    let env = start().await;
    env.login.enqueue("POST", "/", MockResponse::empty(503).header("retry-after", "0.05"));
    let response = env.send(revoke("adele@contoso.com")).await;
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(env.login.calls().len(), 2);
    assert_eq!(env.login.calls()[1].header("retry-attempt"), Some("1"));

    let env = start().await;
    for _ in 0..3 {
        env.login.enqueue("POST", "/", MockResponse::json(400, json!({"error": "temporarily_unavailable", "error_codes": [50196]})).header("retry-after", "0.05"));
    }
    let response = env.send(revoke("adele@contoso.com")).await;
    let message = assert_error(&response, 503, "identityPlatformUnavailable");
    assert!(message.contains("temporarily unavailable"), "{message}");
    assert_eq!(response.header("retry-after"), Some("1"), "0.05 s rounded up");
    assert_eq!(env.login.calls().len(), 2, "one retry, not more");
    assert_eq!(env.graph.calls().len(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_platform_trouble_is_503_with_retry_after_never_a_refusal() {
    // A token endpoint that throttles or fails is temporary trouble: 503 with the wait,
    // so the caller retries; only a refusal of the credentials is a 502.
    let throttled = || {
        MockResponse::json(429, json!({"error": "invalid_request", "error_description": "AADSTS50196: too many requests", "error_codes": [50196]}))
            .header("retry-after", "0.1")
    };
    let failing = || MockResponse::text(500, "text/html", "<html>oops</html>");
    for (answer, retry_after) in [(throttled as fn() -> MockResponse, "1"), (failing, "2")] {
        let env = start().await;
        env.login.enqueue("POST", "/", answer());
        env.login.enqueue("POST", "/", answer());
        let response = env.send(revoke("adele@contoso.com")).await;
        let message = assert_error(&response, 503, "identityPlatformUnavailable");
        assert!(!message.contains("refused") && !message.contains("credentials"), "{message}");
        assert!(response.header("retry-after").is_some_and(|s| s <= retry_after), "{:?}", response.header("retry-after"));
        assert_eq!((env.login.calls().len(), env.graph.calls().len()), (2, 0));
    }

    // Unreachable (nothing listens on the port): 503 after its retry.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("http://127.0.0.1:{port}");
    let env = start_with(&[("login_base_url", Some(&url)), ("time_budget_ms", Some("3000"))]).await;
    let response = env.send(revoke("adele@contoso.com")).await;
    let message = assert_error(&response, 503, "identityPlatformUnavailable");
    assert!(message.contains("could not reach"), "{message}");
    assert!(response.header("retry-after").is_some());
    assert_eq!(log_line(&response)["outboundCalls"], 2, "one retry");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_body_is_cut_off_at_the_time_budget() {
    // An authenticated client that sends half its body and stops holds the instance only
    // for time_budget_ms: 504, nothing read further, nothing sent.
    let env = start_with(&[("time_budget_ms", Some("1500"))]).await;
    let app = env.app.with_request_timeout(Duration::from_secs(15));
    let request = revoke("adele@contoso.com");
    let response = app.send_stalled(request, 10).await.expect("the component answers before the host gives up");
    assert_nothing_leaked(&response);
    let message = assert_error(&response, 504, "upstreamTimeout");
    assert!(message.contains("body") && message.contains("time_budget_ms = 1500"), "{message}");
    assert_eq!(env.login.calls().len() + env.graph.calls().len(), 0);

    // An unauthenticated one is answered at once, its body never read.
    let unauthenticated = TestRequest::post("/revoke").json(&json!({ "userId": "adele@contoso.com" }));
    assert_error(&app.send_stalled(unauthenticated, 10).await.unwrap(), 401, "unauthenticated");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_failures_are_retried_within_the_budget() {
    // A port nothing listens on: bind, note the port, close.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("http://127.0.0.1:{port}");
    let env = start_with(&[("graph_base_url", Some(&url)), ("time_budget_ms", Some("2500"))]).await;
    let started = Instant::now();
    let response = env.send(revoke("adele@contoso.com")).await;
    let message = assert_error(&response, 503, "graphUnavailable");
    assert!(message.contains("could not reach Graph"), "{message}");
    assert!(response.header("retry-after").is_some());
    let graph_tries = log_line(&response)["outboundCalls"].as_u64().unwrap() - 1;
    assert!(graph_tries >= 2, "the first backoff (at most 1 s) fits a 2.5 s budget: {graph_tries} tries");
    assert!(started.elapsed() < Duration::from_millis(2500) + SLACK, "{:?}", started.elapsed());
}
