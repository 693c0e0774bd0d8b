//! Caller authentication with `x-api-key`: fail closed, every key of a rotation
//! accepted, and nothing else happens for a caller without a valid key.

mod common;

use common::*;
use graph_revoke_test_host::TestRequest;
use serde_json::json;

fn unkeyed() -> TestRequest {
    TestRequest::post("/revoke").json(&json!({ "userId": "adele@contoso.com" }))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_wrong_and_short_keys_get_401_and_no_outbound_call() {
    let env = start().await;
    let short = &API_KEY[..31];
    let longer = format!("{API_KEY}x");
    for key in [None, Some("wrong-key-wrong-key-wrong-key-wrong-key"), Some(short), Some(longer.as_str()), Some("")] {
        let mut request = unkeyed();
        if let Some(key) = key {
            request = request.header("x-api-key", key);
        }
        let response = env.send(request).await;
        let message = assert_error(&response, 401, "unauthenticated");
        assert!(message.contains("x-api-key"), "{message}");
        assert!(response.header("www-authenticate").is_some_and(|h| h.contains("x-api-key")));
        assert_eq!(log_line(&response)["userIds"], json!([]), "an unauthenticated caller's ids are not logged");
    }
    assert_eq!(env.outbound_calls(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_body_of_an_unauthenticated_request_is_not_even_read() {
    let env = start().await;
    // Invalid JSON and an invalid id: 401 all the same, so a caller without a key learns nothing.
    let request = TestRequest::post("/revoke").header("content-type", "application/json").body("{not json");
    assert_error(&env.send(request).await, 401, "unauthenticated");
    let request = TestRequest::post("/users/..%2Fadmin/revokeSignInSessions");
    assert_error(&env.send(request).await, 401, "unauthenticated");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_keys_of_a_rotation_work() {
    let env = start().await;
    for key in [API_KEY, SECOND_API_KEY] {
        let response = env.send(unkeyed().header("x-api-key", key)).await;
        assert_eq!(response.status, 200, "{}", response.text());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_configured_keys_revoke_routes_fail_closed() {
    let env = start_with(&[("api_keys", None)]).await;
    for request in [
        unkeyed().header("x-api-key", API_KEY),
        TestRequest::post("/users/adele%40contoso.com/revokeSignInSessions").header("x-api-key", API_KEY),
    ] {
        let message = assert_error(&env.send(request).await, 500, "configurationError");
        assert!(message.contains("api_keys"), "{message}");
    }
    assert_eq!(env.outbound_calls(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configured_key_shorter_than_32_characters_is_a_configuration_error() {
    let too_short = "only-twenty-characters";
    let env = start_with(&[("api_keys", Some(&format!("{API_KEY},{too_short}")))]).await;
    let response = env.send(unkeyed().header("x-api-key", API_KEY)).await;
    let message = assert_error(&response, 500, "configurationError");
    assert!(message.contains("api_keys") && message.contains("32"), "{message}");
    assert!(!message.contains(too_short) && !response.stdout.contains(too_short));
    assert_eq!(env.outbound_calls(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_key_next_to_a_right_one_is_refused() {
    let env = start().await;
    let wrong = "wrong-key-wrong-key-wrong-key-wrong-key";
    // The wrong key first, and both keys folded into one value as a proxy may do.
    for request in [
        unkeyed().header("x-api-key", wrong).header("x-api-key", API_KEY),
        unkeyed().header("x-api-key", &format!("{API_KEY}, {SECOND_API_KEY}")),
        unkeyed().header("x-api-key", &format!("{wrong},{API_KEY}")),
    ] {
        assert_error(&env.send(request).await, 401, "unauthenticated");
    }
    assert_eq!(env.outbound_calls(), 0);
}

/// The safe rule: a request with more than one `x-api-key` header is not authenticated,
/// whatever the keys (which one a proxy, a log or the component reads is then never in
/// doubt). The component reads only the first header today.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_than_one_api_key_header_is_refused() {
    let env = start().await;
    let wrong = "wrong-key-wrong-key-wrong-key-wrong-key";
    for (first, second) in [(API_KEY, wrong), (API_KEY, API_KEY), (API_KEY, SECOND_API_KEY), (wrong, API_KEY)] {
        let request = unkeyed().header("x-api-key", first).header("x-api-key", second);
        let response = env.send(request).await;
        let message = assert_error(&response, 401, "unauthenticated");
        assert!(message.contains("x-api-key"), "{message}");
        assert!(response.header("www-authenticate").is_some_and(|h| h.contains("x-api-key")));
    }
    assert_eq!(env.outbound_calls(), 0);
}
