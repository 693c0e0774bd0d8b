//! The mock identity platform and Graph, spoken to over raw TCP so that what the test
//! sends is exactly what goes over the wire.

use std::time::{Duration, Instant};

use graph_revoke_test_host::{MockResponse, MockServer};
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
    stream.read_to_end(&mut response).await.unwrap();
    let response = String::from_utf8(response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
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
    Answer {
        status,
        headers,
        body: body.to_string(),
    }
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
    for target in [
        "/v1.0/users/7a0e1c5e-0000-4000-8000-000000000001/revokeSignInSessions",
        "/v1.0/users/a%23EXT%23@x.com/revokeSignInSessions",
        "/v1.0/users('$o''brien@x.com')/revokeSignInSessions",
    ] {
        let a = raw(&mock, "POST", target, &[("client-request-id", "c-1")], "{}").await;
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
    let a = raw(&mock, "POST", "/v1.0/users/x/revokeSignInSessions", &[], "").await;
    assert_eq!(a.header("client-request-id"), None, "echoed only when sent");
    for target in [
        "/v1.0/users/a/b/revokeSignInSessions",
        "/v1.0/users//revokeSignInSessions",
        "/v1.0/users('a/b')/revokeSignInSessions",
        "/v1.0/users/x/revokeSignInSessions/extra",
    ] {
        let a = raw(&mock, "POST", target, &[], "").await;
        assert_eq!(a.status, 404, "{target}: the id must be one path segment");
    }
}

#[tokio::test]
async fn anything_else_is_not_found() {
    let mock = MockServer::start().await;
    for (method, target) in [
        ("GET", "/v1.0/users/x/manager"),
        ("POST", "/v1.0/me"),
        ("DELETE", "/"),
    ] {
        let a = raw(&mock, method, target, &[], "").await;
        assert_eq!(a.status, 404);
        assert_eq!(a.json()["error"]["code"], "Request_ResourceNotFound");
    }
}

#[tokio::test]
async fn lookups_and_batches_answer_like_graph() {
    let mock = MockServer::start().await;
    let found = raw(&mock, "GET", "/v1.0/users/adele@contoso.com?$select=id,userPrincipalName", &[], "").await;
    assert_eq!(found.json()["userPrincipalName"], "adele@contoso.com");
    assert_eq!(raw(&mock, "POST", "/v1.0/$batch", &[], "not a batch").await.status, 400);

    mock.enqueue_batch_item("POST", "/users/b@", MockResponse::empty(429).header("Retry-After", "3"));
    let body = r#"{"requests": [
        {"id": "1", "method": "POST", "url": "/users/a@x.com/revokeSignInSessions", "body": {}},
        {"id": "2", "method": "POST", "url": "/users/b@x.com/revokeSignInSessions", "body": {}},
        {"id": "3", "method": "GET", "url": "/users/c@x.com?$select=id"}
    ]}"#;
    let answer = raw(&mock, "POST", "/v1.0/$batch", &[], body).await.json();
    let ids: Vec<&str> = answer["responses"].as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(ids, vec!["3", "2", "1"], "answered in reverse order");
    assert_eq!(answer["responses"][1]["status"], 429);
    assert_eq!(answer["responses"][1]["headers"]["Retry-After"], "3");
    assert_eq!(answer["responses"][2]["body"]["value"], true);
    assert_eq!(answer["responses"][0]["body"]["userPrincipalName"], "c@x.com");
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

    let revoke = "/v1.0/users/x/revokeSignInSessions";
    let a = raw(&mock, "GET", revoke, &[], "").await;
    assert_eq!(a.status, 404, "method must match");
    let a = raw(&mock, "POST", revoke, &[], "").await;
    assert_eq!((a.status, a.header("retry-after")), (429, Some("2")));
    let a = raw(&mock, "POST", revoke, &[], "").await;
    assert_eq!((a.status, a.body.as_str()), (503, "busy"));
    let a = raw(&mock, "POST", revoke, &[], "").await;
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
    assert!(
        mock.calls()[0].at < start + Duration::from_millis(150),
        "recorded on arrival"
    );
}
