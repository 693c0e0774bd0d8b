//! Many users in one request: `userIds` and Sentinel `entities` through `$batch`, and
//! dry runs (`whatIf`) for one user and many.

mod common;

use common::*;
use graph_revoke_test_host::{MockResponse, TestRequest};
use serde_json::{json, Value};

const BATCH: &str = "/v1.0/$batch";

fn revoke_many(ids: &[String]) -> TestRequest {
    TestRequest::post("/revoke").header("x-api-key", API_KEY).json(&json!({ "userIds": ids }))
}

fn upns(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("user{i}@contoso.com")).collect()
}

/// The `$batch` calls Graph received, each as its parsed body.
fn batches(env: &Env) -> Vec<Value> {
    env.graph.calls().iter().filter(|c| c.path == BATCH).map(|c| c.json()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_go_twenty_to_a_batch_and_come_back_in_input_order() {
    for (n, expected_batches) in [(1, 1), (20, 1), (21, 2), (100, 5)] {
        let env = start().await;
        let ids = upns(n);
        let response = env.send(revoke_many(&ids)).await;
        assert_eq!(response.status, 200, "{n}: {}", response.text());
        let body = response.json();
        assert_eq!(body["value"], true);
        let results = body["results"].as_array().unwrap();
        assert_eq!(results.len(), n);
        for (i, result) in results.iter().enumerate() {
            assert_eq!(result["userId"], ids[i]);
            assert_eq!(result["value"], true);
            assert_eq!(result["status"], 200);
            assert!(result.get("error").is_none());
        }
        let sent = batches(&env);
        assert_eq!(sent.len(), expected_batches, "{n} users");
        assert!(env.graph.calls().iter().all(|c| c.path == BATCH), "no single calls");
        let items: Vec<&Value> = sent.iter().flat_map(|b| b["requests"].as_array().unwrap()).collect();
        assert_eq!(items.len(), n);
        assert!(sent.iter().all(|b| b["requests"].as_array().unwrap().len() <= 20));
        // Batches may run concurrently, so they arrive in any order: find each user's item.
        let mut urls: Vec<&str> = items.iter().map(|i| i["url"].as_str().unwrap()).collect();
        urls.sort();
        urls.dedup();
        assert_eq!(urls.len(), n, "every user exactly once");
        let first = items.iter().find(|i| i["url"] == "/users/user0@contoso.com/revokeSignInSessions").unwrap();
        assert_eq!(
            *first,
            &json!({"id": first["id"], "method": "POST", "url": "/users/user0@contoso.com/revokeSignInSessions", "headers": {"Content-Type": "application/json"}, "body": {}})
        );
        let line = log_line(&response);
        assert_eq!(line["outboundCalls"], 1 + expected_batches);
        assert_eq!(line["userIds"].as_array().unwrap().len(), n);
        assert_eq!(line["outcome"], "revoked");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_item_answers_give_207_and_only_throttled_items_are_retried() {
    let env = start().await;
    let ids: Vec<String> = ["ok@contoso.com", "nocontent@contoso.com", "ghost@contoso.com", "admin@contoso.com", "busy@contoso.com"]
        .map(String::from)
        .to_vec();
    env.graph.enqueue_batch_item("POST", "/users/nocontent@", MockResponse::empty(204));
    env.graph.enqueue_batch_item("POST", "/users/ghost@", MockResponse::json(404, json!({"error": {"code": "Request_ResourceNotFound", "message": "no such user"}})));
    env.graph.enqueue_batch_item("POST", "/users/admin@", MockResponse::json(403, json!({"error": {"code": "Authorization_RequestDenied", "message": "Insufficient privileges to complete the operation."}})));
    env.graph.enqueue_batch_item("POST", "/users/busy@", MockResponse::json(429, json!({"error": {"code": "TooManyRequests", "message": "slow down"}})).header("Retry-After", "0.2"));
    let response = env.send(revoke_many(&ids)).await;
    assert_eq!(response.status, 207, "{}", response.text());
    let body = response.json();
    assert_eq!(body["value"], false);
    let results = body["results"].as_array().unwrap();
    let summary: Vec<(Value, Value, Value)> =
        results.iter().map(|r| (r["userId"].clone(), r["status"].clone(), r["error"]["code"].clone())).collect();
    assert_eq!(
        summary,
        vec![
            (json!("ok@contoso.com"), json!(200), Value::Null),
            (json!("nocontent@contoso.com"), json!(204), Value::Null),
            (json!("ghost@contoso.com"), json!(404), json!("userNotFound")),
            (json!("admin@contoso.com"), json!(403), json!("graphForbidden")),
            (json!("busy@contoso.com"), json!(200), Value::Null),
        ]
    );
    assert!(results[3]["error"]["message"].as_str().unwrap().contains("User.RevokeSessions.All"));
    let sent = batches(&env);
    assert_eq!(sent.len(), 2);
    let retried: Vec<&str> = sent[1]["requests"].as_array().unwrap().iter().map(|r| r["url"].as_str().unwrap()).collect();
    assert_eq!(retried, vec!["/users/busy@contoso.com/revokeSignInSessions"], "only the throttled item again");
    let calls = env.graph.calls();
    let gap = calls[1].at.duration_since(calls[0].at);
    assert!(gap >= std::time::Duration::from_millis(200), "waited {gap:?}");
    assert_eq!(log_line(&response)["outcome"], "partial");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_throttled_item_beyond_the_budget_is_reported_with_its_wait() {
    let env = start_with(&[("time_budget_ms", Some("2000"))]).await;
    env.graph.enqueue_batch_item("POST", "/users/busy@", MockResponse::empty(429).header("Retry-After", "30"));
    let response = env.send(revoke_many(&["ok@contoso.com".into(), "busy@contoso.com".into()])).await;
    assert_eq!(response.status, 207);
    let busy = &response.json()["results"][1];
    assert_eq!((busy["status"].clone(), busy["error"]["code"].clone()), (json!(429), json!("throttled")));
    assert!(busy["error"]["message"].as_str().unwrap().contains("30 seconds"));
    assert_eq!(batches(&env).len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exact_duplicates_are_revoked_once() {
    let env = start().await;
    let ids = ["A@contoso.com", "6F4A9B2C-1D3E-4F50-8A6B-7C8D9E0F1A2B", "A@contoso.com", "6f4a9b2c-1d3e-4f50-8a6b-7c8d9e0f1a2b"].map(String::from).to_vec();
    let response = env.send(revoke_many(&ids)).await;
    assert_eq!(response.status, 200);
    let users: Vec<Value> = response.json()["results"].as_array().unwrap().iter().map(|r| r["userId"].clone()).collect();
    assert_eq!(users, vec![json!("A@contoso.com"), json!("6f4a9b2c-1d3e-4f50-8a6b-7c8d9e0f1a2b")]);
    assert_eq!(batches(&env)[0]["requests"].as_array().unwrap().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_among_many_costs_nothing() {
    let env = start_with(&[("max_users", Some("3"))]).await;
    let message = assert_error(&env.send(revoke_many(&upns(4))).await, 413, "payloadTooLarge");
    assert!(message.contains("max_users") && message.contains('4'), "{message}");
    // Duplicates do not count against the limit.
    let mut four = upns(3);
    four.push("user0@contoso.com".into());
    assert_eq!(env.send(revoke_many(&four)).await.status, 200);
    let graph_calls = env.graph.calls().len();

    let ids = vec!["ok@contoso.com".to_string(), "bad/id@contoso.com".to_string(), "fine@contoso.com".to_string()];
    let message = assert_error(&env.send(revoke_many(&ids)).await, 400, "invalidUserId");
    assert!(message.starts_with("userIds[1]:") && message.contains("'/'"), "{message}");
    assert_eq!(env.graph.calls().len(), graph_calls, "nothing revoked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinel_entities_in_both_shapes() {
    let env = start().await;
    let entities = json!([
        {"kind": "Account", "properties": {"aadUserId": "6F4A9B2C-1D3E-4F50-8A6B-7C8D9E0F1A2B", "accountName": "adele", "upnSuffix": "contoso.com"}},
        {"kind": "Host", "properties": {"hostName": "laptop-7"}},
        {"$id": "4", "Type": "account", "Name": "bob", "UPNSuffix": "contoso.com"},
        {"kind": "Ip", "properties": {"address": "10.0.0.7"}},
    ]);
    let response = env.send(TestRequest::post("/revoke").header("x-api-key", API_KEY).json(&json!({ "entities": entities }))).await;
    assert_eq!(response.status, 200, "{}", response.text());
    let body = response.json();
    let users: Vec<&Value> = body["results"].as_array().unwrap().iter().map(|r| &r["userId"]).collect();
    assert_eq!(users, vec![&json!("6f4a9b2c-1d3e-4f50-8a6b-7c8d9e0f1a2b"), &json!("bob@contoso.com")]);
    assert_eq!(body["skipped"], json!([
        {"index": 1, "kind": "Host", "reason": "not an Account entity"},
        {"index": 3, "kind": "Ip", "reason": "not an Account entity"},
    ]));
    let only_hosts = json!({"entities": [{"kind": "Host", "properties": {}}]});
    let message = assert_error(&env.send(TestRequest::post("/revoke").header("x-api-key", API_KEY).json(&only_hosts)).await, 400, "invalidRequest");
    assert!(message.contains("no Account"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_bad_entity_among_many_is_named_and_nothing_is_sent() {
    let env = start().await;
    let good = |i: usize| json!({"kind": "Account", "properties": {"aadUserId": format!("6f4a9b2c-1d3e-4f50-8a6b-{i:012x}")}});
    let cases = [
        // (the bad entity, what the message must say)
        (json!({"kind": "Account", "properties": {"aadUserId": "6f4a9b2c-1d3e-4f50-8a6b"}}), "neither an object id"),
        (json!({"Type": "account", "Name": "ad/ele", "UPNSuffix": "contoso.com"}), "'/'"),
        (json!({"kind": "Account", "properties": {"accountName": "adele", "upnSuffix": "contoso.com?$select=id"}}), "'?'"),
    ];
    for (at, (bad, rule)) in [(0usize, cases[0].clone()), (7, cases[1].clone()), (11, cases[2].clone())] {
        let mut entities: Vec<Value> = (0..12).map(good).collect();
        entities.insert(at, bad.clone());
        // Other kinds around it do not shift the index.
        entities.insert(0, json!({"kind": "Host", "properties": {"hostName": "laptop-7"}}));
        let index = at + 1;
        let request = TestRequest::post("/revoke").header("x-api-key", API_KEY).json(&json!({ "entities": entities }));
        let response = env.send(request).await;
        let message = assert_error(&response, 400, "invalidUserId");
        assert!(message.starts_with(&format!("entities[{index}]:")) && message.contains(rule), "{bad}: {message}");
        assert_eq!(env.outbound_calls(), 0, "nothing revoked, no token fetched");
        assert_eq!(log_line(&response)["outboundCalls"], 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outer_400_revokes_nobody_and_an_outer_424_is_read_item_by_item() {
    let env = start().await;
    env.graph.enqueue("POST", BATCH, MockResponse::json(400, json!({"error": {"code": "BadRequest", "message": "Invalid batch payload."}})));
    let message = assert_error(&env.send(revoke_many(&upns(3))).await, 502, "graphError");
    assert!(message.contains("none of its users was revoked"), "{message}");

    let env = start().await;
    env.graph.enqueue("POST", BATCH, MockResponse::json(424, json!({"responses": [
        {"id": "1", "status": 424, "body": {"error": {"code": "FailedDependency", "message": "x"}}},
        {"id": "0", "status": 200, "body": {"value": true}},
    ]})));
    let response = env.send(revoke_many(&upns(2))).await;
    assert_eq!(response.status, 207, "{}", response.text());
    let results = response.json()["results"].clone();
    assert_eq!((results[0]["value"].clone(), results[1]["status"].clone()), (json!(true), json!(424)));
    assert_eq!(results[1]["error"]["code"], "graphError");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_for_one_user_looks_up_and_revokes_nothing() {
    let env = start().await;
    let request = TestRequest::post("/revoke").header("x-api-key", API_KEY).json(&json!({"userId": "adele@contoso.com", "whatIf": true}));
    let response = env.send(request).await;
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(response.json(), json!({"value": false, "whatIf": true, "user": {"id": "00000000-0000-4000-8000-000000000001", "userPrincipalName": "adele@contoso.com"}}));
    let call = env.only_graph_call();
    assert_eq!((call.method.as_str(), call.path.as_str()), ("GET", "/v1.0/users/adele@contoso.com?$select=id,userPrincipalName"));
    assert_eq!(log_line(&response)["outcome"], "whatIf");

    // The Graph-shaped route takes ?whatIf=true.
    let env = start().await;
    let response = env.send(TestRequest::post("/users/6F4A9B2C-1D3E-4F50-8A6B-7C8D9E0F1A2B/revokeSignInSessions?whatIf=true").header("x-api-key", API_KEY)).await;
    assert_eq!(response.json()["user"]["id"], "6f4a9b2c-1d3e-4f50-8a6b-7c8d9e0f1a2b");
    assert_eq!(env.only_graph_call().method, "GET");

    // Without User.Read.All the lookup is refused, and the message says so.
    let env = start().await;
    env.graph.enqueue("GET", "/v1.0/users/", MockResponse::json(403, json!({"error": {"code": "Authorization_RequestDenied", "message": "Insufficient privileges to complete the operation."}})));
    let request = TestRequest::post("/revoke").header("x-api-key", API_KEY).json(&json!({"userId": "adele@contoso.com", "whatIf": true}));
    let message = assert_error(&env.send(request).await, 403, "graphForbidden");
    assert!(message.contains("User.Read.All") && message.contains("Insufficient privileges"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_for_many_users_looks_each_up_in_a_batch() {
    let env = start().await;
    env.graph.enqueue_batch_item("GET", "/users/ghost@", MockResponse::json(404, json!({"error": {"code": "Request_ResourceNotFound", "message": "x"}})));
    let ids = vec!["adele@contoso.com".to_string(), "ghost@contoso.com".to_string()];
    let request = TestRequest::post("/revoke?whatIf=true").header("x-api-key", API_KEY).json(&json!({ "userIds": ids }));
    let response = env.send(request).await;
    assert_eq!(response.status, 207, "{}", response.text());
    let body = response.json();
    assert_eq!((body["value"].clone(), body["whatIf"].clone()), (json!(false), json!(true)));
    assert_eq!(body["results"][0]["user"]["userPrincipalName"], "adele@contoso.com");
    assert_eq!(body["results"][0]["value"], false);
    assert_eq!(body["results"][1]["error"]["code"], "userNotFound");
    let items = batches(&env)[0]["requests"].clone();
    assert!(items.as_array().unwrap().iter().all(|i| i["method"] == "GET" && i["url"].as_str().unwrap().ends_with("?$select=id,userPrincipalName")));
    assert!(env.graph.calls().iter().all(|c| !c.body_text().contains("revokeSignInSessions")), "a dry run revokes nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_answered_401_is_sent_again_once_with_a_fresh_token() {
    let env = start().await;
    assert_eq!(env.send(revoke_many(&upns(2))).await.status, 200);
    // The cached token expires at Graph: Graph's own 401 for the whole batch.
    env.graph.expire_token("mock-access-token-1");
    let response = env.send(revoke_many(&upns(2))).await;
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(env.login.calls().len(), 2);
    let calls = env.graph.calls();
    assert_eq!(calls.len(), 3);
    assert_eq!(calls[1].header("authorization"), Some("Bearer mock-access-token-1"));
    assert_eq!(calls[2].header("authorization"), Some("Bearer mock-access-token-2"));
    assert_eq!(env.graph.revocations().get("user0@contoso.com"), Some(&2), "the refused batch took no effect");

    // Refused twice (the fresh token too; scripted): each user carries the error; no loop.
    let expired = || MockResponse::json(401, json!({"error": {"code": "InvalidAuthenticationToken", "message": "Access token has expired."}}));
    env.graph.enqueue("POST", BATCH, expired());
    env.graph.enqueue("POST", BATCH, expired());
    let response = env.send(revoke_many(&upns(2))).await;
    assert_eq!(response.status, 207, "{}", response.text());
    assert_eq!(response.json()["results"][0]["error"]["code"], "graphError");
    assert_eq!(env.graph.calls().len(), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nobody_revoked_and_every_failure_temporary_is_429_503_or_504_not_207() {
    // Automation never retries a 2xx: when no user was revoked and every failure passes
    // by itself, the status says so, with the longest wait, and the body still has the results.
    let env = start_with(&[("time_budget_ms", Some("2000"))]).await;
    env.graph.enqueue_batch_item("POST", "/users/user0@", MockResponse::empty(429).header("Retry-After", "30"));
    env.graph.enqueue_batch_item("POST", "/users/user1@", MockResponse::empty(429).header("Retry-After", "45"));
    let response = env.send(revoke_many(&upns(2))).await;
    assert_eq!(response.status, 429, "{}", response.text());
    assert_eq!(response.header("retry-after"), Some("45"));
    let body = response.json();
    assert_eq!(body["value"], false);
    let codes: Vec<&Value> = body["results"].as_array().unwrap().iter().map(|r| &r["error"]["code"]).collect();
    assert_eq!(codes, vec![&json!("throttled"), &json!("throttled")]);
    assert_eq!(log_line(&response)["outcome"], "throttled");

    // Throttled and unavailable together: 503.
    let env = start_with(&[("time_budget_ms", Some("2000"))]).await;
    env.graph.enqueue_batch_item("POST", "/users/user0@", MockResponse::empty(429).header("Retry-After", "30"));
    env.graph.enqueue_batch_item("POST", "/users/user1@", MockResponse::empty(503).header("Retry-After", "20"));
    let response = env.send(revoke_many(&upns(2))).await;
    assert_eq!((response.status, response.header("retry-after")), (503, Some("30")), "{}", response.text());

    // A batch that never answers: 504.
    let env = start_with(&[("time_budget_ms", Some("1500"))]).await;
    env.graph.enqueue("POST", BATCH, MockResponse::json(200, json!({"responses": []})).delay(std::time::Duration::from_secs(20)));
    let response = env.send(revoke_many(&upns(2))).await;
    assert_eq!(response.status, 504, "{}", response.text());
    assert!(response.header("retry-after").is_some());
    assert_eq!(response.json()["results"][1]["error"]["code"], "upstreamTimeout");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_401_beside_a_batch_throttled_past_the_budget_still_revokes_its_users() {
    // 40 users, two batches: one answers 401, the other throttles one user for a minute.
    // Whichever batch the 401 hits, its users are sent again with the fresh token at once;
    // the only users not revoked are the throttled ones, with their wait.
    let env = start_with(&[("time_budget_ms", Some("3000"))]).await;
    env.graph.enqueue("POST", BATCH, MockResponse::json(401, json!({"error": {"code": "InvalidAuthenticationToken", "message": "Access token has expired."}})));
    env.graph.enqueue_batch_item("POST", "/users/user0@", MockResponse::empty(429).header("Retry-After", "60"));
    env.graph.enqueue_batch_item("POST", "/users/user20@", MockResponse::empty(429).header("Retry-After", "60"));
    let response = env.send(revoke_many(&upns(40))).await;
    assert_eq!(response.status, 207, "{}", response.text());
    let body = response.json();
    let results = body["results"].as_array().unwrap();
    let not_revoked: Vec<(&Value, &Value)> =
        results.iter().filter(|r| r["value"] != true).map(|r| (&r["userId"], &r["error"]["code"])).collect();
    assert_eq!(
        not_revoked,
        vec![(&json!("user0@contoso.com"), &json!("throttled")), (&json!("user20@contoso.com"), &json!("throttled"))],
        "no user is left with the 401"
    );
    assert!(results[0]["error"]["message"].as_str().unwrap().contains("60 seconds"));
    assert_eq!(env.login.calls().len(), 2, "one fresh token");
    let sent = batches(&env);
    assert_eq!(sent.len(), 3, "two batches, then the refused one again");
    assert_eq!(env.graph.calls()[2].header("authorization"), Some("Bearer mock-access-token-2"));
}
