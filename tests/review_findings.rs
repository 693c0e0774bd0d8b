//! The review findings of issue 7 that a caller can observe, each against the compiled
//! component: Sentinel users derived from `name@upnSuffix` say so (3), routing comes
//! before decoding and an empty Graph-shaped body may carry any content type (4),
//! `Retry-After` is capped in every form (5), and secret hygiene: plain `http://` only
//! for loopback, a huge `expires_in`, `#ext#` in lower case (7).
//!
//! Each test here fails on the code before its fix.

mod common;

use std::time::{SystemTime, UNIX_EPOCH};

use common::*;
use graph_revoke_test_host::{MockResponse, TestRequest};
use serde_json::{json, Value};

/// The cap on any `Retry-After` the component passes on: a day.
const MAX_RETRY_AFTER_SECONDS: u64 = 86_400;

fn keyed_revoke(body: &Value) -> TestRequest {
    TestRequest::post("/revoke").header("x-api-key", API_KEY).json(body)
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

// Finding 3 -------------------------------------------------------------------------

/// An incident's entities: an on-premises account (Defender for Identity: sAMAccountName
/// and NTDomain, no object id), a cloud account with its object id, and the output of
/// "Entities - Get Accounts" (no `Type`), also without an object id.
fn incident_entities() -> Value {
    json!({ "entities": [
        {"$id": "3", "Type": "account", "Name": "adele", "NTDomain": "CONTOSO", "UPNSuffix": "contoso.com", "Sid": "S-1-5-21-1004"},
        {"kind": "Account", "properties": {"aadUserId": "6f4a9b2c-1d3e-4f50-8a6b-7c8d9e0f1a2b", "accountName": "bob", "upnSuffix": "contoso.com"}},
        {"Name": "carol", "UPNSuffix": "contoso.com"},
        {"kind": "Host", "properties": {"hostName": "laptop-7"}}
    ]})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_derived_from_name_at_upn_suffix_says_so_in_its_result() {
    let env = start().await;
    let response = env.send(keyed_revoke(&incident_entities())).await;
    assert_eq!(response.status, 200, "{}", response.text());
    let body = response.json();
    let results = body["results"].as_array().unwrap();
    assert_eq!(results.len(), 3, "{body}");

    let adele = &results[0];
    assert_eq!(adele["userId"], "adele@contoso.com");
    assert_eq!(adele["value"], true);
    assert_eq!(adele["derivedFrom"], "name@upnSuffix", "{adele}");
    let warning = adele["warnings"][0].as_str().unwrap_or_else(|| panic!("no warning: {adele}"));
    assert!(warning.contains("adele@contoso.com") && warning.contains("name@upnSuffix") && warning.contains("aadUserId"), "{warning}");
    assert!(warning.contains("userPrincipalName"), "{warning}");

    let bob = &results[1];
    assert_eq!(bob["userId"], "6f4a9b2c-1d3e-4f50-8a6b-7c8d9e0f1a2b");
    assert!(bob.get("derivedFrom").is_none() && bob.get("warnings").is_none(), "given by object id: {bob}");

    // No Type and no kind: still an Account, and derived like any other.
    let carol = &results[2];
    assert_eq!(carol["userId"], "carol@contoso.com");
    assert_eq!(carol["derivedFrom"], "name@upnSuffix", "{carol}");

    assert_eq!(body["skipped"], json!([{"index": 3, "kind": "Host", "reason": "not an Account entity"}]));
    // The answer is documented: the served OpenAPI names derivedFrom on a user's result.
    let document = env.send(TestRequest::get("/openapi.json")).await.json();
    assert!(document["definitions"]["UserResult"]["properties"]["derivedFrom"].is_object());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_shows_which_user_a_derived_id_resolves_to() {
    let env = start().await;
    // The tenant's user behind adele@contoso.com is not the on-premises adele.
    env.graph.enqueue_batch_item(
        "GET",
        "/users/adele@contoso.com",
        MockResponse::json(200, json!({"id": "0b7d2e44-5c1a-4f3e-9d8b-1a2b3c4d5e6f", "userPrincipalName": "adele@contoso.com"})),
    );
    let mut request = incident_entities();
    request["whatIf"] = json!(true);
    let response = env.send(keyed_revoke(&request)).await;
    assert_eq!(response.status, 200, "{}", response.text());
    let body = response.json();
    assert_eq!(body["whatIf"], true);
    assert_eq!(body["value"], false);
    let adele = &body["results"][0];
    assert_eq!(adele["derivedFrom"], "name@upnSuffix", "{adele}");
    assert_eq!(adele["user"], json!({"id": "0b7d2e44-5c1a-4f3e-9d8b-1a2b3c4d5e6f", "userPrincipalName": "adele@contoso.com"}));
    assert!(adele["warnings"][0].as_str().is_some_and(|w| w.contains("name@upnSuffix")), "{adele}");
    let bob = &body["results"][1];
    assert_eq!(bob["user"]["id"], "6f4a9b2c-1d3e-4f50-8a6b-7c8d9e0f1a2b");
    assert!(bob.get("derivedFrom").is_none(), "{bob}");
    // Nothing was revoked.
    let revokes = env.graph.calls().iter().filter(|c| c.body_text().contains("revokeSignInSessions")).count();
    assert_eq!(revokes, 0);
}

// Finding 4 -------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_method_is_checked_before_the_path_id_is_decoded() {
    let env = start().await;
    for request in [
        TestRequest::get("/users/%FF/revokeSignInSessions"),
        TestRequest::get("/users/%FF/revokeSignInSessions").header("x-api-key", API_KEY),
        TestRequest::new("PUT", "/users/%FF%FE/revokeSignInSessions").header("x-api-key", API_KEY),
    ] {
        let response = env.send(request).await;
        assert_error(&response, 405, "methodNotAllowed");
        assert_eq!(response.header("allow"), Some("POST"));
    }
    // POST with the undecodable id is still the id's fault.
    let response = env.send(TestRequest::post("/users/%FF/revokeSignInSessions").header("x-api-key", API_KEY)).await;
    assert_error(&response, 400, "invalidUserId");
    assert_eq!(env.outbound_calls(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_dash_d_empty_is_accepted_on_the_graph_shaped_route() {
    let env = start().await;
    // What `curl -X POST -d ''` sends.
    let curl = TestRequest::post("/users/adele%40contoso.com/revokeSignInSessions")
        .header("x-api-key", API_KEY)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Vec::new());
    let response = env.send(curl).await;
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(response.json(), json!({"value": true}));
    assert_eq!(env.only_graph_call().path, "/v1.0/users/adele@contoso.com/revokeSignInSessions");

    // A body that is there must still be JSON.
    let form = TestRequest::post("/users/adele%40contoso.com/revokeSignInSessions")
        .header("x-api-key", API_KEY)
        .header("content-type", "application/x-www-form-urlencoded")
        .body("userId=bob%40contoso.com");
    assert_error(&env.send(form).await, 415, "unsupportedMediaType");
    // POST /revoke is unchanged: its body is required, so a form content type is refused.
    let revoke_form = TestRequest::post("/revoke")
        .header("x-api-key", API_KEY)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Vec::new());
    assert_error(&env.send(revoke_form).await, 415, "unsupportedMediaType");
    assert_eq!(env.graph.calls().len(), 1, "the refused requests called nothing");
}

// Finding 5 -------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_is_capped_in_every_form() {
    for value in ["Fri, 31 Dec 9999 23:59:59 GMT", "99999999999", "86400.25"] {
        let env = start().await;
        env.graph.enqueue(
            "POST",
            "/v1.0/users/",
            MockResponse::json(429, json!({"error": {"code": "TooManyRequests", "message": "slow down"}})).header("Retry-After", value),
        );
        let response = env.send(revoke("adele@contoso.com")).await;
        let message = assert_error(&response, 429, "throttled");
        assert_eq!(response.header("retry-after"), Some(MAX_RETRY_AFTER_SECONDS.to_string().as_str()), "{value}: {message}");
        assert_eq!(env.graph.calls().len(), 1, "{value}: a wait past the budget is not waited");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_items_retry_after_date_is_capped_too() {
    let env = start().await;
    env.graph.enqueue_batch_item(
        "POST",
        "/users/busy@",
        MockResponse::json(429, json!({"error": {"code": "TooManyRequests", "message": "slow down"}})).header("Retry-After", "Fri, 31 Dec 9999 23:59:59 GMT"),
    );
    let response = env.send(keyed_revoke(&json!({"userIds": ["ok@contoso.com", "busy@contoso.com"]}))).await;
    assert_eq!(response.status, 207, "{}", response.text());
    let busy = &response.json()["results"][1];
    assert_eq!(busy["error"]["code"], "throttled", "{busy}");
    let message = busy["error"]["message"].as_str().unwrap();
    assert!(message.contains(&format!("retry after {MAX_RETRY_AFTER_SECONDS} seconds")), "{message}");
}

// Finding 7 -------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_is_refused_for_a_host_that_is_not_loopback() {
    for variable in ["graph_base_url", "login_base_url"] {
        let env = start_with(&[(variable, Some("http://graph.example.com"))]).await;
        let response = env.send(revoke("adele@contoso.com")).await;
        let message = assert_error(&response, 500, "configurationError");
        assert!(message.contains(&format!("{variable} must use https://")) && message.contains("loopback"), "{message}");
        assert!(!message.contains("graph.example.com"), "the value is not echoed: {message}");
        assert_eq!(env.outbound_calls(), 0);
    }
    // The mocks themselves are on 127.0.0.1 over plain HTTP: loopback stays allowed.
    let env = start().await;
    assert_eq!(env.send(revoke("adele@contoso.com")).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_expires_in_is_cached_for_a_day_at_most() {
    let env = start().await;
    env.login.enqueue(
        "POST",
        "/",
        MockResponse::json(200, json!({"token_type": "Bearer", "expires_in": u64::MAX, "access_token": "mock-access-token-long"})),
    );
    let first = env.send(revoke("adele@contoso.com")).await;
    assert_eq!(first.status, 200, "{}", first.text());
    // The next request uses the cached token: its expiry neither overflowed nor wrapped.
    let second = env.send(revoke("adele@contoso.com")).await;
    assert_eq!(second.status, 200, "{}", second.text());
    assert_eq!(log_line(&second)["tokenFromCache"], true);
    assert_eq!(env.login.calls().len(), 1);
    assert_eq!(env.graph.calls().last().unwrap().header("authorization"), Some("Bearer mock-access-token-long"));
    // The token cache's entry (the store also holds the abuse brake's counters).
    let keys: Vec<String> = env.app.kv_keys().into_iter().filter(|k| k.starts_with("graph-revoke/token/")).collect();
    assert_eq!(keys.len(), 1, "{keys:?}");
    let entry: Value = serde_json::from_slice(&env.app.kv_get(&keys[0]).unwrap()).unwrap();
    let expires_at = entry["expiresAt"].as_u64().unwrap();
    let now = unix_now();
    assert!(expires_at > now + 3600 && expires_at <= now + 86_400 + 5, "expiresAt {expires_at}, now {now}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guest_marker_in_lower_case_still_warns() {
    let env = start().await;
    let response = env.send(revoke("alice_fabrikam.com#ext#@contoso.onmicrosoft.com")).await;
    assert_eq!(response.status, 200, "{}", response.text());
    let body = response.json();
    let warning = body["warnings"][0].as_str().unwrap_or_else(|| panic!("no warning: {body}"));
    assert!(warning.contains("home tenant"), "{warning}");
    assert_eq!(env.only_graph_call().path, "/v1.0/users/alice_fabrikam.com%23ext%23@contoso.onmicrosoft.com/revokeSignInSessions");
}
