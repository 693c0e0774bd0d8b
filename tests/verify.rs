//! Proof of a revocation (`"verify": true`): after the revoke, the compiled component reads
//! `signInSessionsValidFromDateTime` back from the mock Graph, which records when it revoked
//! each user and can answer like a replica that has not seen the write yet (stale), refuse the
//! read (no `User.Read.All`), throttle it, or answer too late for the time budget. Whatever the
//! read says, a revoke that happened stays a success.

mod common;

use common::*;
use graph_revoke_test_host::{MockResponse, RecordedCall, TestRequest, NEVER_REVOKED};
use serde_json::{json, Value};
use std::time::Duration;

const BATCH: &str = "/v1.0/$batch";
const READ_BACK: &str = "?$select=id,signInSessionsValidFromDateTime";

fn verify(body: Value) -> TestRequest {
    let mut body = body;
    body["verify"] = json!(true);
    TestRequest::post("/revoke").header("x-api-key", API_KEY).json(&body)
}

fn upns(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("user{i}@contoso.com")).collect()
}

/// The Graph calls, as method and path.
fn graph_calls(env: &Env) -> Vec<(String, String)> {
    env.graph.calls().into_iter().map(|c| (c.method, c.path)).collect()
}

/// The `$batch` calls, each as its items' method and URL.
fn batches(env: &Env) -> Vec<Vec<(String, String)>> {
    env.graph
        .calls()
        .iter()
        .filter(|c| c.path == BATCH)
        .map(|c: &RecordedCall| {
            c.json()["requests"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| (i["method"].as_str().unwrap().to_string(), i["url"].as_str().unwrap().to_string()))
                .collect()
        })
        .collect()
}

fn forbidden() -> MockResponse {
    MockResponse::json(403, json!({"error": {"code": "Authorization_RequestDenied", "message": "Insufficient privileges to complete the operation."}}))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_user_is_verified_with_one_revoke_and_one_read() {
    let env = start().await;
    // The revoke's request-id is the one returned, not the read-back's.
    let revoke_request_id = "5b2c3f1e-0d4a-4e7b-9c8d-1a2b3c4d5e6f";
    env.graph.enqueue(
        "POST",
        "/v1.0/users/adele@contoso.com/revokeSignInSessions",
        MockResponse::json(200, json!({"value": true})).header("request-id", revoke_request_id),
    );
    let response = env.send(verify(json!({"userId": "adele@contoso.com"}))).await;
    assert_eq!(response.status, 200, "{}", response.text());
    let revoked_at = env.graph.revoked_at("adele@contoso.com");
    assert_eq!(revoked_at.len(), 1, "revoked once");
    assert_eq!(response.json(), json!({"value": true, "signInSessionsValidFrom": revoked_at[0], "verified": true}));
    assert_eq!(
        graph_calls(&env),
        vec![
            ("POST".into(), "/v1.0/users/adele@contoso.com/revokeSignInSessions".into()),
            ("GET".into(), format!("/v1.0/users/adele@contoso.com{READ_BACK}")),
        ]
    );
    let calls = env.graph.calls();
    assert_eq!(calls[1].header("authorization"), calls[0].header("authorization"), "one token for both");
    assert_eq!(calls[1].header("client-request-id"), calls[0].header("client-request-id"));
    assert_eq!(response.header("request-id"), Some(revoke_request_id));
    let line = log_line(&response);
    assert_eq!((line["outboundCalls"].clone(), line["outcome"].clone()), (json!(3), json!("revoked")), "token, revoke, read");

    // Warm: exactly two calls, one revoke and one read.
    let response = env.send(verify(json!({"userId": "6F4A9B2C-1D3E-4F50-8A6B-7C8D9E0F1A2B"}))).await;
    assert_eq!(response.json()["verified"], true, "{}", response.text());
    assert_eq!(log_line(&response)["outboundCalls"], 2);
    assert_eq!(env.login.calls().len(), 1);
    assert_eq!(
        graph_calls(&env)[2..],
        [
            ("POST".into(), "/v1.0/users/6f4a9b2c-1d3e-4f50-8a6b-7c8d9e0f1a2b/revokeSignInSessions".into()),
            ("GET".into(), format!("/v1.0/users/6f4a9b2c-1d3e-4f50-8a6b-7c8d9e0f1a2b{READ_BACK}")),
        ]
    );

    // Without verify: one call, the answer unchanged.
    let response = env.send(revoke("adele@contoso.com")).await;
    assert_eq!(response.json(), json!({"value": true}));
    assert_eq!(env.graph.calls().len(), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_read_is_not_verified_and_the_revoke_stands() {
    let env = start().await;
    env.graph.set_stale_reads(true);
    let response = env.send(verify(json!({"userId": "adele@contoso.com"}))).await;
    assert_eq!(response.status, 200, "{}", response.text());
    let body = response.json();
    assert_eq!((body["value"].clone(), body["verified"].clone()), (json!(true), json!(false)), "{body}");
    assert_eq!(body["signInSessionsValidFrom"], NEVER_REVOKED, "Graph's stale value is shown");
    assert_eq!(body["verification"]["code"], "staleRead");
    let message = body["verification"]["message"].as_str().unwrap();
    assert!(message.contains("eventually consistent") && message.contains(NEVER_REVOKED), "{message}");
    assert_eq!(env.graph.revocations()["adele@contoso.com"], 1, "the revoke happened");
    assert_eq!(log_line(&response)["outcome"], "revoked");

    // The Graph-shaped route asks with ?verify=true.
    env.graph.set_stale_reads(false);
    let graph_shaped = |query: &str| {
        TestRequest::post(&format!("/users/adele%40contoso.com/revokeSignInSessions{query}")).header("x-api-key", API_KEY)
    };
    let response = env.send(graph_shaped("?verify=true")).await;
    assert_eq!(response.status, 200, "{}", response.text());
    let times = env.graph.revoked_at("adele@contoso.com");
    assert_eq!(response.json(), json!({"value": true, "signInSessionsValidFrom": times[1], "verified": true}));
    // A stale read that shows an earlier revoke of seconds ago (within the minute of clock
    // skew allowed) still counts: the two clocks cannot tell it from this one.
    env.graph.set_stale_reads(true);
    let response = env.send(graph_shaped("?verify=true&whatIf=false")).await;
    assert_eq!((response.json()["signInSessionsValidFrom"].clone(), response.json()["verified"].clone()), (json!(times[1]), json!(true)));
    // The Graph-shaped body stays Graph's empty object: verify is not a body field there.
    let response = env.send(graph_shaped("").json(&json!({"verify": true}))).await;
    assert!(assert_error(&response, 400, "invalidRequest").contains("unknown field `verify`"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_back_refused_for_lack_of_user_read_all_names_the_fix() {
    let env = start().await;
    env.graph.enqueue("GET", "/v1.0/users/", forbidden());
    let response = env.send(verify(json!({"userId": "adele@contoso.com"}))).await;
    assert_eq!(response.status, 200, "{}", response.text());
    let body = response.json();
    assert_eq!((body["value"].clone(), body["verified"].clone()), (json!(true), json!(false)), "{body}");
    assert!(body.get("signInSessionsValidFrom").is_none());
    assert_eq!(body["verification"]["code"], "graphForbidden");
    let message = body["verification"]["message"].as_str().unwrap();
    assert!(message.contains("User.Read.All") && message.contains("admin consent") && message.contains("Insufficient privileges"), "{message}");
    assert!(message.contains("revocation itself succeeded"), "{message}");
    assert_eq!(env.graph.revocations()["adele@contoso.com"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_throttled_read_back_is_reported_and_never_waited_past_the_budget() {
    let env = start().await;
    env.graph.enqueue("GET", "/v1.0/users/", MockResponse::json(429, json!({"error": {"code": "TooManyRequests", "message": "x"}})).header("Retry-After", "60"));
    let response = env.send(verify(json!({"userId": "adele@contoso.com"}))).await;
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(response.header("retry-after"), None, "nothing for the caller to retry");
    let body = response.json();
    assert_eq!((body["verified"].clone(), body["verification"]["code"].clone()), (json!(false), json!("throttled")), "{body}");
    assert!(body["verification"]["message"].as_str().unwrap().contains("retry after 60 seconds"), "{body}");
    assert_eq!(env.graph.calls().len(), 2, "a 60 s wait does not fit the 25 s budget: not retried");

    // A short wait is waited for, and the read then proves the revoke.
    let env = start().await;
    env.graph.enqueue("GET", "/v1.0/users/", MockResponse::empty(503).header("Retry-After", "1"));
    let response = env.send(verify(json!({"userId": "adele@contoso.com"}))).await;
    assert_eq!(response.json()["verified"], true, "{}", response.text());
    let calls = env.graph.calls();
    assert_eq!(calls.len(), 3);
    assert_eq!(calls[2].header("retry-attempt"), Some("1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_time_budget_ends_the_read_back_and_the_revoke_stands() {
    let env = start_with(&[("time_budget_ms", Some("3000"))]).await;
    env.graph.enqueue(
        "POST",
        "/v1.0/users/adele@contoso.com/revokeSignInSessions",
        MockResponse::json(200, json!({"value": true})).delay(Duration::from_millis(1500)),
    );
    env.graph.enqueue("GET", "/v1.0/users/", MockResponse::json(200, json!({"id": "x"})).delay(Duration::from_secs(6)));
    let response = env.send(verify(json!({"userId": "adele@contoso.com"}))).await;
    assert_eq!(response.status, 200, "{}", response.text());
    let body = response.json();
    assert_eq!((body["value"].clone(), body["verified"].clone()), (json!(true), json!(false)), "{body}");
    assert_eq!(body["verification"]["code"], "upstreamTimeout");
    let message = body["verification"]["message"].as_str().unwrap();
    assert!(message.starts_with("Not verified: time budget spent (time_budget_ms = 3000)"), "{message}");
    assert!(log_line(&response)["durationMs"].as_u64().unwrap() < 6000, "the read was not awaited past the budget");

    // Many users: the revoke batch takes most of the budget, the read batch never answers in time.
    let env = start_with(&[("time_budget_ms", Some("3000"))]).await;
    env.graph.enqueue(
        "POST",
        BATCH,
        MockResponse::json(200, json!({"responses": [{"id": "1", "status": 204}, {"id": "0", "status": 204}]})).delay(Duration::from_millis(1500)),
    );
    env.graph.enqueue("POST", BATCH, MockResponse::json(200, json!({"responses": []})).delay(Duration::from_secs(6)));
    let response = env.send(verify(json!({"userIds": upns(2)}))).await;
    assert_eq!(response.status, 200, "{}", response.text());
    let body = response.json();
    assert_eq!(body["value"], true);
    for result in body["results"].as_array().unwrap() {
        assert_eq!((result["status"].clone(), result["value"].clone(), result["verified"].clone()), (json!(204), json!(true), json!(false)), "{result}");
        assert!(result["verification"]["message"].as_str().unwrap().contains("time budget spent"), "{result}");
    }
    assert_eq!(batches(&env).len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_revoke_is_never_read_back() {
    let env = start().await;
    env.graph.enqueue("POST", "/v1.0/users/", forbidden());
    let response = env.send(verify(json!({"userId": "adele@contoso.com"}))).await;
    let message = assert_error(&response, 403, "graphForbidden");
    assert!(message.contains("User.RevokeSessions.All"), "{message}");
    assert_eq!(env.only_graph_call().method, "POST", "no read-back");

    // Many users, none revoked: no read batch.
    let env = start().await;
    for user in upns(2) {
        env.graph.enqueue_batch_item("POST", &format!("/users/{user}"), MockResponse::json(404, json!({"error": {"code": "Request_ResourceNotFound", "message": "x"}})));
    }
    let response = env.send(verify(json!({"userIds": upns(2)}))).await;
    assert_eq!(response.status, 207, "{}", response.text());
    assert!(response.json()["results"].as_array().unwrap().iter().all(|r| r.get("verified").is_none()), "{}", response.text());
    assert_eq!(batches(&env).len(), 1, "no read-back batch");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_users_are_read_back_in_batches_after_the_revokes() {
    // adele verified; ghost not found (no read); bob read back stale; carol's read refused.
    let env = start().await;
    env.graph.enqueue_batch_item("POST", "/users/ghost@", MockResponse::json(404, json!({"error": {"code": "Request_ResourceNotFound", "message": "x"}})));
    env.graph.enqueue_batch_item("GET", "/users/bob@", MockResponse::json(200, json!({"id": "b", "signInSessionsValidFromDateTime": "2025-06-01T08:00:00Z"})));
    env.graph.enqueue_batch_item("GET", "/users/carol@", forbidden());
    let ids = ["adele@contoso.com", "ghost@contoso.com", "bob@contoso.com", "carol@contoso.com"];
    let response = env.send(verify(json!({ "userIds": ids }))).await;
    assert_eq!(response.status, 207, "{}", response.text());
    let body = response.json();
    let results = body["results"].as_array().unwrap();
    let adele_at = env.graph.revoked_at("adele@contoso.com");
    assert_eq!(
        results[0],
        json!({"userId": "adele@contoso.com", "status": 200, "value": true, "signInSessionsValidFrom": adele_at[0], "verified": true})
    );
    assert_eq!(results[1]["error"]["code"], "userNotFound");
    assert!(results[1].get("verified").is_none() && results[1].get("verification").is_none(), "{}", results[1]);
    assert_eq!((results[2]["status"].clone(), results[2]["value"].clone()), (json!(200), json!(true)));
    assert_eq!((results[2]["verified"].clone(), results[2]["verification"]["code"].clone()), (json!(false), json!("staleRead")));
    assert_eq!(results[2]["signInSessionsValidFrom"], "2025-06-01T08:00:00Z");
    assert_eq!((results[3]["status"].clone(), results[3]["verification"]["code"].clone()), (json!(200), json!("graphForbidden")));
    assert!(results[3]["verification"]["message"].as_str().unwrap().contains("User.Read.All"));

    // One revoke batch, then one read batch for the three revoked, nothing else.
    let sent = batches(&env);
    assert_eq!(sent.len(), 2);
    assert!(sent[0].iter().all(|(method, url)| method == "POST" && url.ends_with("/revokeSignInSessions")));
    let mut read: Vec<String> = sent[1].iter().map(|(method, url)| format!("{method} {url}")).collect();
    read.sort();
    let expected: Vec<String> = ["adele", "bob", "carol"].iter().map(|u| format!("GET /users/{u}@contoso.com{READ_BACK}")).collect();
    assert_eq!(read, expected);
    assert_eq!(graph_calls(&env).iter().filter(|(_, path)| path != BATCH).count(), 0, "no single calls");
    assert_eq!(log_line(&response)["outboundCalls"], 3, "token, revoke batch, read batch");

    // 25 users: 20 + 5 revoked, then 20 + 5 read back; all verified.
    let env = start().await;
    let response = env.send(verify(json!({ "userIds": upns(25) }))).await;
    assert_eq!(response.status, 200, "{}", response.text());
    let body = response.json();
    assert!(body["results"].as_array().unwrap().iter().all(|r| r["verified"] == true), "{body}");
    let mut sizes: Vec<(String, usize)> = batches(&env).iter().map(|b| (b[0].0.clone(), b.len())).collect();
    sizes.sort();
    assert_eq!(sizes, vec![("GET".into(), 5), ("GET".into(), 20), ("POST".into(), 5), ("POST".into(), 20)]);
    assert_eq!(log_line(&response)["outboundCalls"], 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_with_what_if_shows_the_current_value_and_revokes_nothing() {
    let env = start().await;
    let dry_run = |user: &str| {
        TestRequest::post("/revoke?whatIf=true&verify=true").header("x-api-key", API_KEY).json(&json!({"userId": user}))
    };
    let response = env.send(dry_run("adele@contoso.com")).await;
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(
        response.json(),
        json!({"value": false, "whatIf": true, "signInSessionsValidFrom": NEVER_REVOKED,
               "user": {"id": "00000000-0000-4000-8000-000000000001", "userPrincipalName": "adele@contoso.com"}})
    );
    let call = env.only_graph_call();
    assert_eq!((call.method.as_str(), call.path.as_str()), ("GET", "/v1.0/users/adele@contoso.com?$select=id,userPrincipalName,signInSessionsValidFromDateTime"));

    // After a revoke, a dry run shows its time.
    assert_eq!(env.send(revoke("adele@contoso.com")).await.status, 200);
    let response = env.send(dry_run("adele@contoso.com")).await;
    assert_eq!(response.json()["signInSessionsValidFrom"], json!(env.graph.revoked_at("adele@contoso.com")[0]));
    assert!(response.json().get("verified").is_none(), "nothing revoked, nothing verified");
    assert_eq!(env.graph.revocations()["adele@contoso.com"], 1, "dry runs revoke nothing");
}
