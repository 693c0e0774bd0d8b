//! The mock identity platform and Graph, spoken to over raw TCP so that what the test
//! sends is exactly what goes over the wire.

use std::time::{Duration, Instant};

use graph_revoke_test_host::{FaultCounts, FaultPlan, MockResponse, MockServer, NEVER_REVOKED};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
}

/// Sends one HTTP/1.1 request with `Connection: close` and reads the whole answer.
async fn raw(
    mock: &MockServer,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Answer {
    try_raw(mock, method, target, headers, body)
        .await
        .unwrap_or_else(|| panic!("{method} {target}: the connection closed without an answer"))
}

/// [`raw`], `None` when the server closes the connection without answering.
async fn try_raw(
    mock: &MockServer,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Option<Answer> {
    let addr = mock.base_url().trim_start_matches("http://").to_string();
    let mut stream = TcpStream::connect(&addr).await.unwrap();
    let mut request =
        format!("{method} {target} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str(&format!("content-length: {}\r\n\r\n{body}", body.len()));
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    // A connection reset also means "no answer".
    let _ = stream.read_to_end(&mut response).await;
    let response = String::from_utf8(response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n")?;
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .map(|l| {
            let (n, v) = l.split_once(':').unwrap();
            (n.trim().to_string(), v.trim().to_string())
        })
        .collect();
    Some(Answer {
        status,
        headers,
        body: body.to_string(),
    })
}

/// `Bearer <token>` with a token `mock`'s token endpoint issued.
async fn bearer(mock: &MockServer) -> String {
    let answer = raw(mock, "POST", "/contoso.onmicrosoft.com/oauth2/v2.0/token", &[], "grant_type=client_credentials").await;
    format!("Bearer {}", answer.json()["access_token"].as_str().unwrap())
}

fn is_guid(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.iter().map(|g| g.len()).eq([8, 4, 4, 4, 12])
        && s.chars().all(|c| c == '-' || c.is_ascii_hexdigit())
}

#[tokio::test]
async fn issues_numbered_tokens() {
    let mock = MockServer::start().await;
    assert!(mock.base_url().starts_with("http://127.0.0.1:"));
    for n in 1..=2 {
        let a = raw(
            &mock,
            "POST",
            "/contoso.onmicrosoft.com/oauth2/v2.0/token",
            &[],
            "grant_type=client_credentials",
        )
        .await;
        assert_eq!(a.status, 200);
        assert_eq!(a.header("content-type"), Some("application/json"));
        let body = a.json();
        assert_eq!(body["access_token"], format!("mock-access-token-{n}"));
        assert_eq!(body["token_type"], "Bearer");
        assert_eq!(body["expires_in"], 3599);
    }
    let a = raw(&mock, "GET", "/contoso/oauth2/v2.0/token", &[], "").await;
    assert_eq!(a.status, 404, "only POST gets a token");
}

#[tokio::test]
async fn revokes_by_id_and_by_quoted_upn() {
    let mock = MockServer::start().await;
    let bearer = bearer(&mock).await;
    let bearer = bearer.as_str();
    for target in [
        "/v1.0/users/7a0e1c5e-0000-4000-8000-000000000001/revokeSignInSessions",
        "/v1.0/users/a%23EXT%23@x.com/revokeSignInSessions",
        "/v1.0/users('$o''brien@x.com')/revokeSignInSessions",
    ] {
        let a = raw(&mock, "POST", target, &[("client-request-id", "c-1"), ("authorization", bearer)], "{}").await;
        assert_eq!(a.status, 200, "{target}");
        assert_eq!(
            a.json(),
            json!({
                "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#Edm.Boolean",
                "value": true
            })
        );
        assert!(
            is_guid(a.header("request-id").unwrap()),
            "{:?}",
            a.header("request-id")
        );
        assert_eq!(a.header("client-request-id"), Some("c-1"));
    }
    let a = raw(&mock, "POST", "/v1.0/users/x/revokeSignInSessions", &[("authorization", bearer)], "").await;
    assert_eq!(a.header("client-request-id"), None, "echoed only when sent");
    for target in [
        "/v1.0/users/a/b/revokeSignInSessions",
        "/v1.0/users//revokeSignInSessions",
        "/v1.0/users('a/b')/revokeSignInSessions",
        "/v1.0/users/x/revokeSignInSessions/extra",
    ] {
        let a = raw(&mock, "POST", target, &[("authorization", bearer)], "").await;
        assert_eq!(a.status, 404, "{target}: the id must be one path segment");
    }
    let revoked = mock.revocations();
    let mut users: Vec<(&str, u32)> = revoked.iter().map(|(u, n)| (u.as_str(), *n)).collect();
    users.sort();
    assert_eq!(
        users,
        vec![("$o'brien@x.com", 1), ("7a0e1c5e-0000-4000-8000-000000000001", 1), ("a#EXT#@x.com", 1), ("x", 1)],
        "recorded decoded, 404s not recorded"
    );
}

#[tokio::test]
async fn anything_else_is_not_found() {
    let mock = MockServer::start().await;
    let bearer = bearer(&mock).await;
    for (method, target) in [
        ("GET", "/v1.0/users/x/manager"),
        ("POST", "/v1.0/me"),
        ("DELETE", "/"),
    ] {
        let a = raw(&mock, method, target, &[("authorization", &bearer)], "").await;
        assert_eq!(a.status, 404);
        assert_eq!(a.json()["error"]["code"], "Request_ResourceNotFound");
    }
}

#[tokio::test]
async fn lookups_and_batches_answer_like_graph() {
    let mock = MockServer::start().await;
    let bearer = bearer(&mock).await;
    let auth = [("authorization", bearer.as_str())];
    let found = raw(&mock, "GET", "/v1.0/users/adele@contoso.com?$select=id,userPrincipalName", &auth, "").await;
    assert_eq!(found.json()["userPrincipalName"], "adele@contoso.com");
    assert_eq!(raw(&mock, "POST", "/v1.0/$batch", &auth, "not a batch").await.status, 400);

    mock.enqueue_batch_item("POST", "/users/b@", MockResponse::empty(429).header("Retry-After", "3"));
    let body = r#"{"requests": [
        {"id": "1", "method": "POST", "url": "/users/a@x.com/revokeSignInSessions", "body": {}},
        {"id": "2", "method": "POST", "url": "/users/b@x.com/revokeSignInSessions", "body": {}},
        {"id": "3", "method": "GET", "url": "/users/c@x.com?$select=id"}
    ]}"#;
    let answer = raw(&mock, "POST", "/v1.0/$batch", &auth, body).await.json();
    let ids: Vec<&str> = answer["responses"].as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(ids, vec!["3", "2", "1"], "answered in reverse order");
    assert_eq!(answer["responses"][1]["status"], 429);
    assert_eq!(answer["responses"][1]["headers"]["Retry-After"], "3");
    assert_eq!(answer["responses"][2]["body"]["value"], true);
    assert_eq!(answer["responses"][0]["body"]["userPrincipalName"], "c@x.com");
    let revoked: Vec<String> = mock.revocations().into_keys().collect();
    assert_eq!(revoked, vec!["a@x.com"], "the throttled item took no effect");
}

#[tokio::test]
async fn lookups_show_when_sessions_are_valid_from_and_may_be_stale() {
    let mock = MockServer::start().await;
    let bearer = bearer(&mock).await;
    let auth = [("authorization", bearer.as_str())];
    let select = "?$select=id,signInSessionsValidFromDateTime";
    let valid_from = |answer: &Answer| answer.json()["signInSessionsValidFromDateTime"].clone();

    // Never revoked: the account's creation. Not selected: not shown.
    let answer = raw(&mock, "GET", &format!("/v1.0/users/o'hara@x.com{select}"), &auth, "").await;
    assert_eq!(valid_from(&answer), json!(NEVER_REVOKED));
    let answer = raw(&mock, "GET", "/v1.0/users/o'hara@x.com?$select=id,userPrincipalName", &auth, "").await;
    assert!(answer.json().get("signInSessionsValidFromDateTime").is_none());

    // Revoked twice (a single call, then a batch item): the last time, read alike in every form.
    assert_eq!(raw(&mock, "POST", "/v1.0/users/o'hara@x.com/revokeSignInSessions", &auth, "").await.status, 200);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let revoke = r#"{"requests": [{"id": "1", "method": "POST", "url": "/users('o''hara@x.com')/revokeSignInSessions", "body": {}}]}"#;
    assert_eq!(raw(&mock, "POST", "/v1.0/$batch", &auth, revoke).await.status, 200);
    let times = mock.revoked_at("o'hara@x.com");
    assert_eq!(times.len(), 2);
    assert!(times[0] < times[1] && times[1].ends_with('Z') && times[1].len() == 20, "{times:?}");
    let answer = raw(&mock, "GET", &format!("/v1.0/users/o%27hara@x.com{select}"), &auth, "").await;
    assert_eq!(valid_from(&answer), json!(times[1]));
    let lookup = format!(r#"{{"requests": [{{"id": "1", "method": "GET", "url": "/users('o''hara@x.com'){select}"}}]}}"#);
    let answer = raw(&mock, "POST", "/v1.0/$batch", &auth, &lookup).await.json();
    assert_eq!(answer["responses"][0]["body"]["signInSessionsValidFromDateTime"], json!(times[1]));

    // Stale: the value from before the last revocation.
    mock.set_stale_reads(true);
    let answer = raw(&mock, "GET", &format!("/v1.0/users/o'hara@x.com{select}"), &auth, "").await;
    assert_eq!(valid_from(&answer), json!(times[0]));
    let answer = raw(&mock, "GET", &format!("/v1.0/users/nobody@x.com{select}"), &auth, "").await;
    assert_eq!(valid_from(&answer), json!(NEVER_REVOKED));
    mock.set_stale_reads(false);
    let answer = raw(&mock, "GET", &format!("/v1.0/users/o'hara@x.com{select}"), &auth, "").await;
    assert_eq!(valid_from(&answer), json!(times[1]));
}

#[tokio::test]
async fn records_calls_verbatim() {
    let mock = MockServer::start().await;
    let target = "/v1.0/users('$a%23EXT%23''b@x.com')/revokeSignInSessions?x=%2B&y='";
    let before = Instant::now();
    raw(
        &mock,
        "POST",
        target,
        &[("Client-Request-Id", "c-2"), ("X-Two", "a"), ("x-two", "b")],
        "{\"k\":1}",
    )
    .await;
    let calls = mock.calls();
    assert_eq!(calls.len(), 1);
    let call = &calls[0];
    assert_eq!(call.method, "POST");
    assert_eq!(call.path, target);
    assert_eq!(call.header("client-request-id"), Some("c-2"));
    assert_eq!(call.header("X-TWO"), Some("a"));
    assert_eq!(call.headers.iter().filter(|(n, _)| n == "x-two").count(), 2);
    assert_eq!(call.body_text(), "{\"k\":1}");
    assert!(call.at >= before);
}

#[tokio::test]
async fn scripts_are_fifo_matched_and_used_once() {
    let mock = MockServer::start().await;
    mock.enqueue(
        "post",
        "/v1.0/users/",
        MockResponse::json(429, json!({"error": {"code": "TooManyRequests"}}))
            .header("Retry-After", "2"),
    );
    mock.enqueue(
        "POST",
        "/v1.0/users/",
        MockResponse::text(503, "text/plain", "busy"),
    );
    mock.enqueue("POST", "/tenant/", MockResponse::empty(400));

    let bearer = mock.issue_token();
    let auth = [("authorization", format!("Bearer {bearer}"))];
    let auth: Vec<(&str, &str)> = auth.iter().map(|(n, v)| (*n, v.as_str())).collect();
    let revoke = "/v1.0/users/x/revokeSignInSessions";
    let a = raw(&mock, "GET", revoke, &auth, "").await;
    assert_eq!(a.status, 404, "method must match");
    let a = raw(&mock, "POST", revoke, &[], "").await;
    assert_eq!(a.status, 401, "no token: refused before any script is used");
    let a = raw(&mock, "POST", revoke, &auth, "").await;
    assert_eq!((a.status, a.header("retry-after")), (429, Some("2")));
    let a = raw(&mock, "POST", revoke, &auth, "").await;
    assert_eq!((a.status, a.body.as_str()), (503, "busy"));
    let a = raw(&mock, "POST", revoke, &auth, "").await;
    assert_eq!(a.status, 200, "scripts used up: default again");
    let a = raw(&mock, "POST", "/tenant/oauth2/v2.0/token", &[], "").await;
    assert_eq!(a.status, 400);
    assert_eq!(a.header("content-length"), Some("0"));
}

#[tokio::test]
async fn delays_answers() {
    let mock = MockServer::start().await;
    mock.enqueue(
        "POST",
        "/slow",
        MockResponse::empty(204).delay(Duration::from_millis(200)),
    );
    let start = Instant::now();
    let a = raw(&mock, "POST", "/slow", &[], "").await;
    assert_eq!(a.status, 204);
    assert!(start.elapsed() >= Duration::from_millis(200));

    // Recorded on arrival, not when answered: seen while the answer is still held back.
    mock.enqueue("POST", "/hung", MockResponse::empty(204).delay(Duration::from_secs(3600)));
    let mock = std::sync::Arc::new(mock);
    let hung = tokio::spawn({
        let mock = mock.clone();
        async move { try_raw(&mock, "POST", "/hung", &[], "").await.map(|a| a.status) }
    });
    while mock.calls().len() < 2 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(!hung.is_finished(), "the answer is still held back");
    assert_eq!(mock.calls()[1].path, "/hung");
    hung.abort();
}

#[tokio::test]
async fn graph_paths_require_a_token_the_identity_platform_issued() {
    let login = MockServer::start().await;
    let graph = MockServer::start_trusting(&login).await;
    let revoke = "/v1.0/users/a@x.com/revokeSignInSessions";
    let lookup = "/v1.0/users/a@x.com?$select=id";
    let batch = r#"{"requests": [{"id": "1", "method": "POST", "url": "/users/b@x.com/revokeSignInSessions", "body": {}}]}"#;

    // Before any token: refused everywhere, in Graph's shape.
    let issued_elsewhere = bearer(&graph).await; // graph's own endpoint issues into the login's registry
    let other = MockServer::start().await;
    other.enqueue("POST", "/", MockResponse::json(200, json!({"access_token": "another-tenants-token"})));
    let foreign = bearer(&other).await;
    let missing = ("", "Access token is empty.");
    for (authorization, reason) in [missing, ("Basic abc", "Access token is empty."), (foreign.as_str(), "IDX14100"), ("Bearer ", "Access token is empty.")] {
        for (method, target, body) in [("POST", revoke, ""), ("GET", lookup, ""), ("POST", "/v1.0/$batch", batch)] {
            let headers: Vec<(&str, &str)> = match authorization {
                "" => vec![("client-request-id", "c-9")],
                a => vec![("client-request-id", "c-9"), ("authorization", a)],
            };
            let a = raw(&graph, method, target, &headers, body).await;
            assert_eq!(a.status, 401, "{authorization:?} {target}");
            let error = &a.json()["error"];
            assert_eq!(error["code"], "InvalidAuthenticationToken");
            assert!(error["message"].as_str().unwrap().starts_with(reason), "{error}");
            assert_eq!(error["innerError"]["client-request-id"], "c-9");
            assert!(error["innerError"]["date"].as_str().unwrap().ends_with('Z'));
            assert!(a.header("www-authenticate").unwrap().starts_with("Bearer "));
            assert!(is_guid(a.header("request-id").unwrap()));
        }
    }
    assert!(graph.revocations().is_empty(), "a refused call takes no effect");

    // Tokens from the login mock (numbered there), planted ones and scripted answers count.
    let from_login = bearer(&login).await;
    assert_eq!(from_login, "Bearer mock-access-token-2", "one numbering for the shared registry");
    login.enqueue("POST", "/", MockResponse::json(200, json!({"access_token": "scripted-token", "expires_in": 60})));
    let scripted = bearer(&login).await;
    let planted = format!("Bearer {}", login.issue_token());
    for token in [&issued_elsewhere, &from_login, &scripted, &planted] {
        assert_eq!(raw(&graph, "POST", revoke, &[("authorization", token)], "").await.status, 200, "{token}");
        assert_eq!(raw(&graph, "GET", lookup, &[("authorization", token)], "").await.status, 200, "{token}");
        assert_eq!(raw(&graph, "POST", "/v1.0/$batch", &[("authorization", token)], batch).await.status, 200, "{token}");
    }
    assert_eq!(raw(&other, "POST", revoke, &[("authorization", &from_login)], "").await.status, 401, "only the trusting server accepts it");

    // Expired: Graph's lifetime message.
    graph.expire_token("mock-access-token-2");
    let a = raw(&graph, "POST", revoke, &[("authorization", &from_login)], "").await;
    assert_eq!(a.status, 401);
    assert!(a.json()["error"]["message"].as_str().unwrap().contains("expired"));
    assert_eq!(raw(&graph, "POST", revoke, &[("authorization", &planted)], "").await.status, 200, "others still valid");
}

/// Sends the same sequence of calls to a mock with `plan` and returns what each got
/// (`None`: connection dropped) and the counts.
async fn under_faults(plan: FaultPlan) -> (Vec<Option<u16>>, Vec<Option<Value>>, FaultCounts, std::collections::HashMap<String, u32>) {
    let mock = MockServer::start().await;
    let bearer = format!("Bearer {}", mock.issue_token());
    mock.inject_faults(plan);
    let mut statuses = Vec::new();
    let mut batches = Vec::new();
    for i in 0..200 {
        let target = format!("/v1.0/users/u{i}@x.com/revokeSignInSessions");
        statuses.push(try_raw(&mock, "POST", &target, &[("authorization", &bearer)], "").await.map(|a| a.status));
    }
    let items: Vec<Value> = (0..20).map(|i| json!({"id": i.to_string(), "method": "POST", "url": format!("/users/b{i}@x.com/revokeSignInSessions"), "body": {}})).collect();
    let body = json!({ "requests": items }).to_string();
    for _ in 0..10 {
        let answer = try_raw(&mock, "POST", "/v1.0/$batch", &[("authorization", &bearer)], &body).await;
        batches.push(answer.map(|a| a.json()));
    }
    // The token endpoint is never faulted.
    for _ in 0..20 {
        assert_eq!(raw(&mock, "POST", "/t/oauth2/v2.0/token", &[], "").await.status, 200);
    }
    (statuses, batches, mock.faults_injected(), mock.revocations())
}

#[tokio::test]
async fn faults_are_seeded_counted_and_recorded_truthfully() {
    let plan = FaultPlan {
        seed: 7,
        drop_before: 0.05,
        throttle: 0.05,
        unavailable: 0.05,
        gateway_timeout: 0.05,
        delay: 0.05,
        delay_range: (Duration::from_millis(1), Duration::from_millis(5)),
        drop_after: 0.05,
        item_throttle: 0.1,
        item_unavailable: 0.1,
        item_gateway_timeout: 0.1,
        retry_after_range: (Duration::from_millis(100), Duration::from_millis(900)),
    };
    let (statuses, batches, counts, revoked) = under_faults(plan.clone()).await;
    // The same seed and calls: the same faults.
    let again = under_faults(plan.clone()).await;
    assert_eq!((&statuses, &counts), (&again.0, &again.2));
    // Another seed: other faults.
    let other = under_faults(FaultPlan { seed: 8, ..plan.clone() }).await;
    assert_ne!(statuses, other.0);

    let dropped = statuses.iter().filter(|s| s.is_none()).count() as u64;
    let batches_dropped = batches.iter().filter(|b| b.is_none()).count() as u64;
    assert_eq!(dropped + batches_dropped, counts.dropped_before + counts.dropped_after);
    let count = |code| statuses.iter().filter(|s| **s == Some(code)).count() as u64;
    assert!(count(429) > 0 && count(503) > 0 && count(504) > 0 && dropped > 0 && counts.delayed > 0, "{counts:?}");
    assert!(counts.items_throttled > 0 && counts.items_unavailable > 0 && counts.items_gateway_timeout > 0, "{counts:?}");

    // Every revocation answered 200 was recorded; a drop after the call took effect is
    // recorded although the client saw no answer; nothing else is.
    for (i, status) in statuses.iter().enumerate() {
        let user = format!("u{i}@x.com");
        if *status == Some(200) {
            assert_eq!(revoked.get(&user), Some(&1), "{user}");
        } else if status.is_some() {
            assert_eq!(revoked.get(&user), None, "{user} answered {status:?}");
        }
    }
    let single_recorded = revoked.keys().filter(|u| u.starts_with('u')).count() as u64;
    assert!(single_recorded >= count(200) && single_recorded <= count(200) + dropped);

    // Items: faulted ones carry Retry-After and are not recorded.
    let answered: Vec<&Value> = batches.iter().flatten().filter(|b| b.get("responses").is_some()).collect();
    assert!(!answered.is_empty());
    for batch in answered {
        for item in batch["responses"].as_array().unwrap() {
            let status = item["status"].as_u64().unwrap();
            if status != 200 {
                assert!([429, 503, 504].contains(&status), "{item}");
                let retry_after: f64 = item["headers"]["Retry-After"].as_str().unwrap().parse().unwrap();
                assert!((0.1..=0.9).contains(&retry_after), "{retry_after}");
            }
        }
    }
}

#[tokio::test]
async fn publishes_the_jwks_it_is_given_and_counts_fetches() {
    let mock = MockServer::start().await;
    let tenant = "72f988bf-86f1-41af-91ab-2d7cd011db47";
    let a = raw(&mock, "GET", &format!("/{tenant}/discovery/v2.0/keys"), &[], "").await;
    assert_eq!((a.status, a.json()), (200, json!({"keys": []})));
    let document = r#"{"keys":[{"kty":"RSA","use":"sig","kid":"k1","n":"AQAB","e":"AQAB"}]}"#;
    mock.set_jwks(document);
    let a = raw(&mock, "GET", &format!("/{tenant}/discovery/v2.0/keys"), &[], "").await;
    assert_eq!((a.status, a.header("content-type"), a.body.as_str()), (200, Some("application/json"), document));
    // Neither a Graph path (no token needed) nor a token answer.
    assert_eq!(raw(&mock, "POST", &format!("/{tenant}/discovery/v2.0/keys"), &[], "").await.status, 404);
    assert_eq!(raw(&mock, "GET", "/discovery/v2.0/keys", &[], "").await.status, 404);
    assert_eq!((mock.jwks_fetches(), mock.token_requests()), (2, 0));
    bearer(&mock).await;
    assert_eq!(mock.token_requests(), 1);
}
