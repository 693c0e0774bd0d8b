//! Bad input gets a clear JSON error with the right status, and nothing else happens:
//! no token request, no Graph call.

mod common;

use common::*;
use graph_revoke_test_host::TestRequest;
use serde_json::json;

/// Sends, asserts the error, and asserts that neither mock was called.
async fn rejected(env: &Env, request: TestRequest, status: u16, code: &str) -> String {
    let response = env.send(request).await;
    let message = assert_error(&response, status, code);
    assert_eq!(env.outbound_calls(), 0, "a rejected request made an outbound call ({code}: {message})");
    let line = log_line(&response);
    assert_eq!(line["outcome"], code);
    assert_eq!(line["outboundCalls"], 0);
    message
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forbidden_characters_and_length_rules_are_named() {
    let env = start().await;
    let long_local = format!("{}@contoso.com", "a".repeat(65));
    let long_domain = format!("adele@{}.com", "d".repeat(45));
    let cases: Vec<(String, &str)> = vec![
        ("ad/ele@contoso.com".into(), "'/'"),
        ("ad\\ele@contoso.com".into(), "'\\'"),
        ("ad?ele@contoso.com".into(), "'?'"),
        ("ad%ele@contoso.com".into(), "'%'"),
        ("ad&ele@contoso.com".into(), "'&'"),
        ("ad,ele@contoso.com".into(), "','"),
        ("ad;ele@contoso.com".into(), "';'"),
        ("ad:ele@contoso.com".into(), "':'"),
        ("adele@con@toso.com".into(), "second '@'"),
        ("ad ele@contoso.com".into(), "whitespace"),
        ("adèle@contoso.com".into(), "non-ASCII"),
        ("adele.@contoso.com".into(), "ends with '.'"),
        ("ad\"ele@contoso.com".into(), "allowed are letters"),
        (long_local, "at most 64"),
        (long_domain, "at most 48"),
        ("".into(), "empty"),
        ("{6f4a9b2c-1d3e-4f50-8a6b-7c8d9e0f1a2b}".into(), "braces"),
        ("urn:uuid:6f4a9b2c-1d3e-4f50-8a6b-7c8d9e0f1a2b".into(), "urn:uuid"),
        ("6f4a9b2c1d3e4f508a6b7c8d9e0f1a2b".into(), "neither an object id"),
    ];
    for (user_id, rule) in cases {
        let message = rejected(&env, revoke(&user_id), 400, "invalidUserId").await;
        assert!(message.contains(rule), "{user_id:?}: expected {rule:?} in {message:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn injection_attempts_make_no_outbound_call() {
    let env = start().await;
    for user_id in [
        "adele@contoso.com/../../me",
        "../admin@contoso.com",
        "adele@contoso.com?$select=id",
        "adele@contoso.com#x@evil.com",
        "#x@evil@contoso.com",
        "adele%2F..@contoso.com",
        "user1%40a.com#x@evil.com",
        "adele@contoso.com\r\nAuthorization: Bearer x",
        "adele@contoso.com\nx",
    ] {
        rejected(&env, revoke(user_id), 400, "invalidUserId").await;
    }
    // The same through the Graph-shaped route, where the id arrives percent-encoded.
    for path in [
        "/users/..%2Fadmin/revokeSignInSessions",
        "/users/adele%40contoso.com%3F%24select%3Did/revokeSignInSessions",
        "/users/user1%2540a.com%23x%40evil.com/revokeSignInSessions",
        "/users/adele%40contoso.com%0D%0AX-Evil%3A%201/revokeSignInSessions",
        "/users/%FF%FE/revokeSignInSessions",
    ] {
        let request = TestRequest::post(path).header("x-api-key", API_KEY);
        rejected(&env, request, 400, "invalidUserId").await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_that_are_not_what_the_spec_says_are_refused() {
    let env = start().await;
    let keyed = |body: &str| {
        TestRequest::post("/revoke").header("x-api-key", API_KEY).header("content-type", "application/json").body(body.to_string())
    };
    assert!(rejected(&env, keyed("{\"userId\": "), 400, "invalidRequest").await.contains("JSON body is invalid"));
    assert!(rejected(&env, keyed("{\"userid\": \"a@b.com\"}"), 400, "invalidRequest").await.contains("unknown field `userid`"));
    assert!(rejected(&env, keyed("{\"userId\": 42}"), 400, "invalidRequest").await.contains("invalid type"));
    assert!(rejected(&env, keyed("{}"), 400, "invalidRequest").await.contains("names no user"));
    assert!(rejected(&env, keyed(""), 400, "invalidRequest").await.contains("empty"));
    let conflict = rejected(&env, keyed(r#"{"userId": "a@b.com", "userPrincipalName": "c@d.com"}"#), 400, "invalidRequest").await;
    assert!(conflict.contains("name different users"), "{conflict}");
    let typo = TestRequest::post("/revoke?whatif=true").header("x-api-key", API_KEY).json(&json!({"userId": "a@b.com"}));
    assert!(rejected(&env, typo, 400, "invalidRequest").await.contains("`whatif`"));
    assert!(rejected(&env, keyed(r#"{"userId": "a@b.com", "userIds": ["c@d.com"]}"#), 400, "invalidRequest").await.contains("one of userId, userIds or entities"));
    assert!(rejected(&env, keyed(r#"{"userIds": []}"#), 400, "invalidRequest").await.contains("empty"));
    assert!(rejected(&env, keyed(r#"{"userIds": "a@b.com"}"#), 400, "invalidRequest").await.contains("invalid type"));
    let graph_shaped = TestRequest::post("/users/a%40b.com/revokeSignInSessions")
        .header("x-api-key", API_KEY)
        .json(&json!({"userId": "c@d.com"}));
    assert!(rejected(&env, graph_shaped, 400, "invalidRequest").await.contains("unknown field `userId`"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_json_is_accepted() {
    let env = start().await;
    for content_type in [Some("text/plain"), Some("application/x-www-form-urlencoded"), None] {
        let mut request = TestRequest::post("/revoke").header("x-api-key", API_KEY).body("{\"userId\": \"a@b.com\"}");
        if let Some(ct) = content_type {
            request = request.header("content-type", ct);
        }
        let message = rejected(&env, request, 415, "unsupportedMediaType").await;
        assert!(message.contains("application/json"), "{message}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversize_bodies_are_refused() {
    let env = start().await;
    let padding = "x".repeat(64 * 1024);
    let big = format!("{{\"userId\": \"a@b.com\", \"pad\": \"{padding}\"}}");
    let message = rejected(&env, TestRequest::post("/revoke").header("x-api-key", API_KEY).header("content-type", "application/json").body(big), 413, "payloadTooLarge").await;
    assert!(message.contains("64 KiB"), "{message}");
    // Exactly at the limit is still read (and then refused for its unknown field, not its size).
    let at_limit = format!("{{\"userId\": \"a@b.com\", \"pad\": \"{}\"}}", "x".repeat(64 * 1024 - 32));
    assert_eq!(at_limit.len(), 64 * 1024);
    rejected(&env, TestRequest::post("/revoke").header("x-api-key", API_KEY).header("content-type", "application/json").body(at_limit), 400, "invalidRequest").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversize_chunked_bodies_are_refused_while_streaming() {
    // No content-length to look at: the limit must hold while the body streams in.
    let env = start().await;
    let padding = "x".repeat(256 * 1024);
    let big = format!("{{\"userId\": \"a@b.com\", \"pad\": \"{padding}\"}}");
    let total = big.len();
    let request = TestRequest::post("/revoke").header("x-api-key", API_KEY).header("content-type", "application/json").body(big).chunked(4096);
    let response = env.send(request).await;
    let message = assert_error(&response, 413, "payloadTooLarge");
    assert!(message.contains("64 KiB"), "{message}");
    assert_eq!(env.outbound_calls(), 0);
    assert_eq!(log_line(&response)["outboundCalls"], 0);
    assert!(
        response.request_body_bytes_read > 64 * 1024 && response.request_body_bytes_read < total,
        "read {} of {total} bytes: the body is refused once past 64 KiB, not read to its end",
        response.request_body_bytes_read
    );

    // The same on the Graph-shaped route, whose body is optional.
    let request = TestRequest::post("/users/a%40b.com/revokeSignInSessions")
        .header("x-api-key", API_KEY)
        .header("content-type", "application/json")
        .body(format!("{{\"pad\": \"{padding}\"}}"))
        .chunked(4096);
    assert_error(&env.send(request).await, 413, "payloadTooLarge");
    assert_eq!(env.outbound_calls(), 0);

    // Exactly 64 KiB, chunked: read whole (and refused for its unknown field, not its size).
    let at_limit = format!("{{\"userId\": \"a@b.com\", \"pad\": \"{}\"}}", "x".repeat(64 * 1024 - 32));
    assert_eq!(at_limit.len(), 64 * 1024);
    let request = TestRequest::post("/revoke").header("x-api-key", API_KEY).header("content-type", "application/json").body(at_limit).chunked(1000);
    let response = env.send(request).await;
    assert!(assert_error(&response, 400, "invalidRequest").contains("`pad`"));
    assert_eq!(response.request_body_bytes_read, 64 * 1024);
    assert_eq!(env.outbound_calls(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_routes_and_methods() {
    let env = start().await;
    rejected(&env, TestRequest::post("/revoke/now").header("x-api-key", API_KEY), 404, "notFound").await;
    rejected(&env, TestRequest::get("/"), 404, "notFound").await;
    let response = env.send(TestRequest::get("/revoke").header("x-api-key", API_KEY)).await;
    assert_error(&response, 405, "methodNotAllowed");
    assert_eq!(response.header("allow"), Some("POST"));
    let response = env.send(TestRequest::new("DELETE", "/healthz")).await;
    assert_error(&response, 405, "methodNotAllowed");
    assert_eq!(response.header("allow"), Some("GET"));
    assert_eq!(env.outbound_calls(), 0);
}
