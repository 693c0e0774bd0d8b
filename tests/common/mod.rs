//! Shared set-up for the tests that drive the compiled component: a mock identity
//! platform and a mock Graph on 127.0.0.1, the app started from the real `spin.toml`,
//! and assertions every test wants (nothing leaked, nothing sent).
#![allow(dead_code)]

pub mod tokens;

use graph_revoke_test_host::{Component, Manifest, MockServer, TestApp, TestRequest, TestResponse};

pub const TENANT: &str = "contoso.onmicrosoft.com";
pub const CLIENT_ID: &str = "6a1c5c0e-7d1b-4a57-9e0c-2f3d4b5a6c7d";
/// Characters that must survive form encoding: `+ & = ~ /`.
pub const CLIENT_SECRET: &str = "Xy8Q~mock+secret&value=with/odd~chars.0123";
pub const API_KEY: &str = "k3y-for-tests-0123456789abcdef0123456789";
pub const SECOND_API_KEY: &str = "rotated-key-fedcba9876543210fedcba98765";
/// The mock identity platform hands out tokens with this prefix.
pub const TOKEN_PREFIX: &str = "mock-access-token";

/// A running app with its two upstream mocks; `graph` trusts the tokens `login` issues.
pub struct Env {
    pub app: TestApp,
    pub login: MockServer,
    pub graph: MockServer,
}

/// The variables a correct deployment sets, pointed at the two mocks.
pub fn variables(login: &MockServer, graph: &MockServer) -> Vec<(String, String)> {
    vec![
        ("tenant_id".into(), TENANT.into()),
        ("client_id".into(), CLIENT_ID.into()),
        ("client_secret".into(), CLIENT_SECRET.into()),
        ("api_keys".into(), format!("{API_KEY}, {SECOND_API_KEY}")),
        ("login_base_url".into(), login.base_url()),
        ("graph_base_url".into(), graph.base_url()),
    ]
}

/// Starts the app from `spin.toml` with `changes` applied to the correct variables
/// (`None` removes one).
pub async fn start_with(changes: &[(&str, Option<&str>)]) -> Env {
    let manifest = Manifest::load_default().expect("spin.toml parses");
    start_with_manifest(&manifest, changes).await
}

pub async fn start_with_manifest(manifest: &Manifest, changes: &[(&str, Option<&str>)]) -> Env {
    let login = MockServer::start().await;
    // Graph accepts only the tokens the login mock issued (or `login.issue_token()`).
    let graph = MockServer::start_trusting(&login).await;
    let mut vars = variables(&login, &graph);
    for (name, value) in changes {
        vars.retain(|(n, _)| n != name);
        if let Some(value) = value {
            vars.push((name.to_string(), value.to_string()));
        }
    }
    let borrowed: Vec<(&str, &str)> = vars.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
    let app = TestApp::start(Component::shared().expect("component compiles"), manifest, &borrowed)
        .expect("app starts");
    Env { app, login, graph }
}

pub async fn start() -> Env {
    start_with(&[]).await
}

/// Each of `names` read (or looked up) once: what a count per variable should be.
pub fn each_once(names: &[&str]) -> std::collections::BTreeMap<String, usize> {
    names.iter().map(|n| (n.to_string(), 1)).collect()
}

/// `POST /revoke` for one user, authenticated.
pub fn revoke(user_id: &str) -> TestRequest {
    TestRequest::post("/revoke")
        .header("x-api-key", API_KEY)
        .json(&serde_json::json!({ "userId": user_id }))
}

impl Env {
    pub async fn send(&self, request: TestRequest) -> TestResponse {
        let response = self.app.send(request).await.expect("the host runs the request");
        assert_nothing_leaked(&response);
        assert!(self.app.denied_outbound().is_empty(), "outbound to a host spin.toml does not allow: {:?}", self.app.denied_outbound());
        assert!(self.app.kept_off_network().is_empty(), "outbound off loopback: {:?}", self.app.kept_off_network());
        response
    }

    /// Every call either mock received.
    pub fn outbound_calls(&self) -> usize {
        self.login.calls().len() + self.graph.calls().len()
    }

    /// The one Graph call, asserting there was exactly one.
    pub fn only_graph_call(&self) -> graph_revoke_test_host::RecordedCall {
        let calls = self.graph.calls();
        assert_eq!(calls.len(), 1, "Graph calls: {:?}", calls.iter().map(|c| &c.path).collect::<Vec<_>>());
        calls.into_iter().next().unwrap()
    }
}

/// No secret, token or key in the body, a header, or what the component printed: not
/// the client secret, an API key, a Graph token of the mock, a caller's JWT (every JWT
/// starts `eyJ`, the base64url of `{"`), nor `Bearer ` followed by anything token-like (8
/// or more token68 characters; prose such as `Bearer <access token>` and the challenge
/// `Bearer realm="..."` are not).
pub fn assert_nothing_leaked(response: &TestResponse) {
    let mut places = vec![("body", response.text()), ("stdout", response.stdout.clone()), ("stderr", response.stderr.clone())];
    for (name, value) in &response.headers {
        places.push(("header", format!("{name}: {value}")));
    }
    let token68 = |c: char| c.is_ascii_alphanumeric() || "-._~+/=".contains(c);
    for (place, text) in places {
        for secret in [CLIENT_SECRET, API_KEY, SECOND_API_KEY, TOKEN_PREFIX, "eyJ"] {
            assert!(!text.contains(secret), "{secret:?} leaked into the {place}: {text}");
        }
        for (at, _) in text.match_indices("Bearer ") {
            let after = &text[at + "Bearer ".len()..];
            let run = after.chars().take_while(|c| token68(*c)).count();
            assert!(run < 8, "a bearer token leaked into the {place}: {text}");
        }
    }
}

/// Asserts an OData error with this status and code; returns its message.
pub fn assert_error(response: &TestResponse, status: u16, code: &str) -> String {
    let body = response.json();
    assert_eq!(response.status, status, "body: {body}");
    assert_eq!(body["error"]["code"], code, "body: {body}");
    assert_eq!(response.header("content-type"), Some("application/json"));
    let inner = &body["error"]["innerError"];
    assert!(inner["client-request-id"].is_string(), "innerError lacks client-request-id: {body}");
    assert!(inner["date"].as_str().is_some_and(|d| d.ends_with('Z')), "innerError lacks date: {body}");
    body["error"]["message"].as_str().expect("message").to_string()
}

/// The request's one log line, parsed.
pub fn log_line(response: &TestResponse) -> serde_json::Value {
    let lines: Vec<&str> = response.stdout.lines().collect();
    assert_eq!(lines.len(), 1, "expected one log line, got: {:?}", response.stdout);
    serde_json::from_str(lines[0]).expect("the log line is JSON")
}
