//! Revoking one user end to end: the compiled component, the mock identity platform
//! and the mock Graph, asserting exactly what went over the wire.

mod common;

use common::*;
use graph_revoke_test_host::{MockResponse, TestRequest};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_upn_is_revoked_with_one_token_call_and_one_graph_call() {
    let env = start().await;
    let response = env.send(revoke("adele.vance@contoso.com")).await;

    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(response.json(), json!({ "value": true }));

    let token_calls = env.login.calls();
    assert_eq!(token_calls.len(), 1);
    let token = &token_calls[0];
    assert_eq!(token.method, "POST");
    assert_eq!(token.path, format!("/{TENANT}/oauth2/v2.0/token"));
    assert_eq!(token.header("content-type"), Some("application/x-www-form-urlencoded"));
    let form: Vec<(String, String)> = url_form(&token.body_text());
    assert_eq!(
        form,
        vec![
            ("client_id".into(), CLIENT_ID.into()),
            ("scope".into(), format!("{}/.default", env.graph.base_url())),
            ("client_secret".into(), CLIENT_SECRET.into()),
            ("grant_type".into(), "client_credentials".into()),
        ]
    );
    // The secret went form-encoded: its '+', '&' and '=' did not split or turn into spaces.
    assert!(token.body_text().contains("client_secret=Xy8Q%7Emock%2Bsecret%26value%3Dwith%2Fodd%7Echars.0123"));

    let call = env.only_graph_call();
    assert_eq!(call.method, "POST");
    assert_eq!(call.path, "/v1.0/users/adele.vance@contoso.com/revokeSignInSessions");
    assert_eq!(call.header("authorization"), Some("Bearer mock-access-token-1"));
    assert!(call.body.is_empty());
}

/// Decodes an `application/x-www-form-urlencoded` body (test-side, by hand, to stay independent of the component).
fn url_form(body: &str) -> Vec<(String, String)> {
    body.split('&')
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap();
            (decode(k), decode(v))
        })
        .collect()
}

fn decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                out.push(u8::from_str_radix(&text[i + 1..i + 3], 16).unwrap());
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identifiers_reach_graph_in_their_one_encoding() {
    let cases = [
        // GUID: upper case in, lower case out.
        ("6F4A9B2C-1D3E-4F50-8A6B-7C8D9E0F1A2B", "/v1.0/users/6f4a9b2c-1d3e-4f50-8a6b-7c8d9e0f1a2b/revokeSignInSessions"),
        ("alice_fabrikam.com#EXT#@contoso.onmicrosoft.com", "/v1.0/users/alice_fabrikam.com%23EXT%23@contoso.onmicrosoft.com/revokeSignInSessions"),
        ("$adele@contoso.com", "/v1.0/users('$adele@contoso.com')/revokeSignInSessions"),
        ("$o'hara@contoso.com", "/v1.0/users('$o''hara@contoso.com')/revokeSignInSessions"),
        ("o'brien@contoso.com", "/v1.0/users/o'brien@contoso.com/revokeSignInSessions"),
        ("bob+ops@contoso.com", "/v1.0/users/bob%2Bops@contoso.com/revokeSignInSessions"),
        ("\t tab@contoso.com \t", "/v1.0/users/tab@contoso.com/revokeSignInSessions"),
        ("a^b~c!d-e_f@contoso.com", "/v1.0/users/a%5Eb~c!d-e_f@contoso.com/revokeSignInSessions"),
    ];
    for (user_id, path) in cases {
        let env = start().await;
        let response = env.send(revoke(user_id)).await;
        assert_eq!(response.status, 200, "{user_id}: {}", response.text());
        assert_eq!(env.only_graph_call().path, path, "{user_id}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guest_is_revoked_with_a_warning_about_the_home_tenant() {
    let env = start().await;
    let response = env.send(revoke("alice_fabrikam.com#EXT#@contoso.onmicrosoft.com")).await;
    let body = response.json();
    assert_eq!(response.status, 200);
    assert_eq!(body["value"], true);
    let warning = body["warnings"][0].as_str().expect("a warning");
    assert!(warning.contains("#EXT#") && warning.contains("home tenant"), "{warning}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_alias_of_the_user_field_works() {
    for field in ["userId", "UserId", "userPrincipalName"] {
        let env = start().await;
        let request = TestRequest::post("/revoke")
            .header("x-api-key", API_KEY)
            .json(&json!({ field: "adele@contoso.com", "whatIf": false }));
        let response = env.send(request).await;
        assert_eq!(response.status, 200, "{field}: {}", response.text());
        assert_eq!(env.only_graph_call().path, "/v1.0/users/adele@contoso.com/revokeSignInSessions");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_graph_shaped_route_is_a_drop_in() {
    for body in [None, Some("{}")] {
        let env = start().await;
        let mut request = TestRequest::post("/users/alice_fabrikam.com%23EXT%23%40contoso.com/revokeSignInSessions")
            .header("x-api-key", SECOND_API_KEY);
        if let Some(body) = body {
            request = request.header("content-type", "application/json; charset=utf-8").body(body);
        }
        let response = env.send(request).await;
        assert_eq!(response.status, 200, "{}", response.text());
        assert_eq!(response.json()["value"], true);
        assert_eq!(
            env.only_graph_call().path,
            "/v1.0/users/alice_fabrikam.com%23EXT%23@contoso.com/revokeSignInSessions"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dollar_and_plus_upns_through_the_graph_shaped_route() {
    // (path the caller sends, path Graph receives, user Graph revoked)
    let cases = [
        ("/users/%24x%40contoso.com/revokeSignInSessions", "/v1.0/users('$x@contoso.com')/revokeSignInSessions", "$x@contoso.com"),
        ("/users/$x@contoso.com/revokeSignInSessions", "/v1.0/users('$x@contoso.com')/revokeSignInSessions", "$x@contoso.com"),
        ("/users/%24o'hara%40contoso.com/revokeSignInSessions", "/v1.0/users('$o''hara@contoso.com')/revokeSignInSessions", "$o'hara@contoso.com"),
        ("/users/a%2Bb@contoso.com/revokeSignInSessions", "/v1.0/users/a%2Bb@contoso.com/revokeSignInSessions", "a+b@contoso.com"),
        ("/users/a%2Bb%40contoso.com/revokeSignInSessions", "/v1.0/users/a%2Bb@contoso.com/revokeSignInSessions", "a+b@contoso.com"),
        // In a path `+` is a plus, not a space.
        ("/users/a+b@contoso.com/revokeSignInSessions", "/v1.0/users/a%2Bb@contoso.com/revokeSignInSessions", "a+b@contoso.com"),
    ];
    for (path, graph_path, user) in cases {
        let env = start().await;
        let response = env.send(TestRequest::post(path).header("x-api-key", API_KEY)).await;
        assert_eq!(response.status, 200, "{path}: {}", response.text());
        assert_eq!(response.json()["value"], true);
        assert_eq!(env.only_graph_call().path, graph_path, "{path}");
        let revoked: Vec<String> = env.graph.revocations().into_keys().collect();
        assert_eq!(revoked, vec![user.to_string()], "{path}");
        assert_eq!(log_line(&response)["userIds"], json!([user]));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunked_body_is_read_like_any_other() {
    let env = start().await;
    let body = serde_json::to_vec(&json!({"userId": "adele@contoso.com", "whatIf": false})).unwrap();
    // Several small chunks with pauses between them, no content-length.
    let request = TestRequest::post("/revoke")
        .header("x-api-key", API_KEY)
        .header("content-type", "application/json")
        .body(body.clone())
        .chunked_with_pauses(7, std::time::Duration::from_millis(5));
    let response = env.send(request).await;
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(response.request_body_bytes_read, body.len());
    assert_eq!(env.only_graph_call().path, "/v1.0/users/adele@contoso.com/revokeSignInSessions");

    // Many users in one chunk per user's worth of bytes; the Graph-shaped route's `{}` too.
    let env = start().await;
    let ids: Vec<String> = (0..30).map(|i| format!("user{i}@contoso.com")).collect();
    let request = TestRequest::post("/revoke").header("x-api-key", API_KEY).json(&json!({ "userIds": ids })).chunked(20);
    let response = env.send(request).await;
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(response.json()["results"].as_array().unwrap().len(), 30);
    assert_eq!(env.graph.revocations().len(), 30);
    let request = TestRequest::post("/users/adele%40contoso.com/revokeSignInSessions")
        .header("x-api-key", API_KEY)
        .header("content-type", "application/json")
        .body("{ }")
        .chunked(1);
    assert_eq!(env.send(request).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_request_id_is_kept_from_the_caller_and_sent_upstream() {
    let env = start().await;
    env.graph.enqueue(
        "POST",
        "/v1.0/users/",
        MockResponse::json(200, json!({ "value": true })).header("request-id", "1f2e3d4c-0000-4000-8000-000000000001"),
    );
    let caller_id = "0F1E2D3C-4B5A-4968-8776-655443322110";
    let response = env.send(revoke("adele@contoso.com").header("client-request-id", caller_id)).await;
    assert_eq!(response.status, 200);
    assert_eq!(response.header("client-request-id"), Some(caller_id));
    assert_eq!(response.header("request-id"), Some("1f2e3d4c-0000-4000-8000-000000000001"));
    assert_eq!(env.login.calls()[0].header("client-request-id"), Some(caller_id));
    assert_eq!(env.only_graph_call().header("client-request-id"), Some(caller_id));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_request_id_that_is_not_a_guid_is_replaced() {
    let env = start().await;
    let response = env.send(revoke("adele@contoso.com").header("client-request-id", "x\" injected")).await;
    let id = response.header("client-request-id").expect("an id").to_string();
    assert_eq!(id.len(), 36, "{id}");
    assert!(id.chars().all(|c| c.is_ascii_hexdigit() || c == '-'), "{id}");
    assert_eq!(env.only_graph_call().header("client-request-id"), Some(id.as_str()));
    // A fresh id per request.
    let again = env.send(revoke("adele@contoso.com")).await;
    assert_ne!(again.header("client-request-id"), Some(id.as_str()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_json_log_line_per_request_with_ids_and_counts() {
    let env = start().await;
    env.graph.enqueue("POST", "/v1.0/users/", MockResponse::empty(204).header("request-id", "abc-123"));
    let response = env.send(revoke("adele@contoso.com").header("client-request-id", "0f1e2d3c-4b5a-4968-8776-655443322110")).await;
    assert_eq!(response.status, 200);
    let line = log_line(&response);
    assert_eq!(line["route"], "revoke");
    assert_eq!(line["outcome"], "revoked");
    assert_eq!(line["status"], 200);
    assert_eq!(line["userIds"], json!(["adele@contoso.com"]));
    assert_eq!(line["clientRequestId"], "0f1e2d3c-4b5a-4968-8776-655443322110");
    assert_eq!(line["graphRequestId"], "abc-123");
    assert_eq!(line["outboundCalls"], 2);
    assert_eq!(line["tokenFromCache"], false);
    assert!(line["durationMs"].is_u64());
    assert!(line["time"].as_str().unwrap().ends_with('Z'));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_is_ok_and_calls_nothing() {
    let env = start().await;
    let response = env.send(TestRequest::get("/healthz")).await;
    assert_eq!(response.status, 200);
    assert_eq!(response.json(), json!({ "status": "ok" }));
    assert_eq!(env.outbound_calls(), 0);
    assert_eq!(log_line(&response)["outcome"], "ok");
}
