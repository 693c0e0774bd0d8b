//! A loopback HTTP server standing in for the Microsoft identity platform and Graph.
//!
//! The component is pointed at it through `login_base_url` and `graph_base_url` (which
//! also makes `allowed_outbound_hosts` allow it, exactly as in production). It records
//! every call verbatim, the raw path above all, because how a user id is escaped into the
//! URL is the component's most security-relevant output. By default it behaves like a
//! healthy tenant (see [`MockServer`]); tests script failures with
//! [`MockServer::enqueue`].

use std::collections::hash_map::RandomState;
use std::collections::VecDeque;
use std::convert::Infallible;
use std::hash::{BuildHasher, Hasher};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::task::JoinSet;

/// A scripted answer.
#[derive(Clone, Debug)]
pub struct MockResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Wait this long before answering (a slow or hung upstream).
    pub delay: Option<Duration>,
}

impl MockResponse {
    /// A JSON body with `content-type: application/json`.
    pub fn json(status: u16, value: serde_json::Value) -> Self {
        MockResponse {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: serde_json::to_vec(&value).expect("serialising a serde_json::Value"),
            delay: None,
        }
    }

    pub fn text(status: u16, content_type: &str, body: &str) -> Self {
        MockResponse {
            status,
            headers: vec![("content-type".into(), content_type.into())],
            body: body.as_bytes().to_vec(),
            delay: None,
        }
    }

    /// No body, no headers.
    pub fn empty(status: u16) -> Self {
        MockResponse {
            status,
            headers: Vec::new(),
            body: Vec::new(),
            delay: None,
        }
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay = Some(delay);
        self
    }
}

/// One request the server received.
#[derive(Clone, Debug)]
pub struct RecordedCall {
    pub method: String,
    /// Path and query exactly as on the request line: not decoded, not normalised.
    pub path: String,
    /// Names in lower case, in the order received.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// When the request (head and body) had arrived.
    pub at: Instant,
}

impl RecordedCall {
    /// The first value of a header; the name is case-insensitive.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as text (invalid UTF-8 replaced).
    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// The mock identity platform and Graph.
///
/// Unscripted calls get the behaviour of a healthy tenant:
/// - `POST /{tenant}/oauth2/v2.0/token`: `200` with a bearer token
///   `mock-access-token-<n>`, `n` counting token calls from 1, valid 3599 s.
/// - `POST /v1.0/users/{id}/revokeSignInSessions` (or `/v1.0/users('{upn}')/…`), the id
///   being one path segment: `200` `{"@odata.context": …, "value": true}` with a fresh
///   `request-id` and the caller's `client-request-id` echoed.
/// - `GET /v1.0/users/{id}?$select=…`: `200` `{"id", "userPrincipalName"}` (a dry run's
///   lookup): an object id is echoed with `user-<first 8>@contoso.com`, a UPN with a fixed id.
/// - `POST /v1.0/$batch`: every item answered as its own request would be (scripts for
///   items: [`MockServer::enqueue_batch_item`]), the answers in *reverse* order, so a
///   client that matches by position instead of by `id` fails.
/// - anything else: `404` `Request_ResourceNotFound`.
///
/// Graph paths (`/v1.0/…`, `/beta/…`) always carry `request-id` (and the echoed
/// `client-request-id`), as Graph's answers do.
pub struct MockServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    server: tokio::task::AbortHandle,
}

#[derive(Default)]
struct Shared {
    calls: Mutex<Vec<RecordedCall>>,
    script: Mutex<VecDeque<Scripted>>,
    /// Scripts for `$batch` items, matched on the item's method and relative URL.
    item_script: Mutex<VecDeque<Scripted>>,
    tokens_issued: AtomicU64,
}

struct Scripted {
    method: String,
    path_prefix: String,
    response: MockResponse,
}

impl MockServer {
    /// Listens on `127.0.0.1` (an ephemeral port) and serves HTTP/1.1 on the current
    /// tokio runtime until dropped.
    pub async fn start() -> MockServer {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("mock server: cannot bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("mock server: local address");
        let shared = Arc::new(Shared::default());
        let server = tokio::spawn(serve(listener, shared.clone())).abort_handle();
        MockServer {
            addr,
            shared,
            server,
        }
    }

    /// `http://127.0.0.1:<port>`, for `login_base_url` and `graph_base_url`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every call received so far, oldest first.
    pub fn calls(&self) -> Vec<RecordedCall> {
        self.shared.calls.lock().unwrap().clone()
    }

    /// Scripts the answer to the next call whose method matches (case-insensitive) and
    /// whose raw path starts with `path_prefix`. Scripts are used once each, oldest
    /// first; calls no script matches get the default behaviour.
    pub fn enqueue(&self, method: &str, path_prefix: &str, response: MockResponse) {
        self.shared.script.lock().unwrap().push_back(Scripted {
            method: method.to_string(),
            path_prefix: path_prefix.to_string(),
            response,
        });
    }
}

impl MockServer {
    /// Scripts the answer to the next `$batch` item whose method matches and whose URL
    /// (relative, as in the batch body: `/users/{id}/revokeSignInSessions`) starts with
    /// `url_prefix`. Used once each, oldest first. Only status, headers and a JSON body
    /// are used (`delay` is not).
    pub fn enqueue_batch_item(&self, method: &str, url_prefix: &str, response: MockResponse) {
        self.shared.item_script.lock().unwrap().push_back(Scripted {
            method: method.to_string(),
            path_prefix: url_prefix.to_string(),
            response,
        });
    }
}

impl RecordedCall {
    /// The body as JSON (panics with the text if it is not).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body_text()))
    }
}

impl Drop for MockServer {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// Accepts connections until aborted; dropping the `JoinSet` closes them all.
async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    let mut connections = JoinSet::new();
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let shared = shared.clone();
        connections.spawn(async move {
            let service = service_fn(move |request| handle(shared.clone(), request));
            // A client hanging up mid-request is an expected test scenario, not an error.
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
        // Reap finished connections so the set does not grow without bound.
        while connections.try_join_next().is_some() {}
    }
}

async fn handle(
    shared: Arc<Shared>,
    request: hyper::Request<Incoming>,
) -> Result<hyper::Response<Full<Bytes>>, Infallible> {
    let (parts, body) = request.into_parts();
    let body = match body.collect().await {
        Ok(collected) => collected.to_bytes().to_vec(),
        Err(_) => Vec::new(),
    };
    let call = RecordedCall {
        method: parts.method.to_string(),
        path: parts.uri.to_string(),
        headers: parts
            .headers
            .iter()
            .map(|(n, v)| {
                (
                    n.as_str().to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body,
        at: Instant::now(),
    };
    shared.calls.lock().unwrap().push(call.clone());

    let scripted = {
        let mut script = shared.script.lock().unwrap();
        script
            .iter()
            .position(|s| {
                s.method.eq_ignore_ascii_case(&call.method) && call.path.starts_with(&s.path_prefix)
            })
            .and_then(|i| script.remove(i))
    };
    let response = match scripted {
        Some(s) => s.response,
        None => default_response(&shared, &call),
    };
    if let Some(delay) = response.delay {
        tokio::time::sleep(delay).await;
    }

    let mut builder = hyper::Response::builder().status(response.status);
    for (name, value) in &response.headers {
        builder = builder.header(name.as_str(), value.as_str());
    }
    Ok(builder
        .body(Full::new(Bytes::from(response.body)))
        .unwrap_or_else(|e| {
            let mut r = hyper::Response::new(Full::new(Bytes::from(format!(
                "mock: invalid scripted response: {e}"
            ))));
            *r.status_mut() = hyper::StatusCode::INTERNAL_SERVER_ERROR;
            r
        }))
}

/// The healthy-tenant behaviour described on [`MockServer`].
fn default_response(shared: &Shared, call: &RecordedCall) -> MockResponse {
    let path = call.path.split('?').next().unwrap_or("");
    let post = call.method == "POST";
    let segments: Vec<&str> = path.split('/').collect();

    let response = if post
        && matches!(segments.as_slice(), ["", tenant, "oauth2", "v2.0", "token"] if !tenant.is_empty())
    {
        let n = shared.tokens_issued.fetch_add(1, Ordering::SeqCst) + 1;
        MockResponse::json(
            200,
            json!({
                "token_type": "Bearer",
                "expires_in": 3599,
                "ext_expires_in": 3599,
                "access_token": format!("mock-access-token-{n}"),
            }),
        )
    } else if post && is_revoke_path(path) {
        revoked()
    } else if post && path == "/v1.0/$batch" {
        batch(shared, call)
    } else if call.method == "GET" && is_user_path(path) {
        found(path)
    } else {
        MockResponse::json(
            404,
            json!({"error": {"code": "Request_ResourceNotFound", "message": "mock: no route"}}),
        )
    };

    if path.starts_with("/v1.0/") || path.starts_with("/beta/") {
        let mut response = response.header("request-id", &guid());
        if let Some(id) = call.header("client-request-id") {
            response = response.header("client-request-id", id);
        }
        response
    } else {
        response
    }
}

fn revoked() -> MockResponse {
    MockResponse::json(
        200,
        json!({
            "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#Edm.Boolean",
            "value": true,
        }),
    )
}

/// The user a lookup of `/v1.0/users/{id}` finds.
fn found(path: &str) -> MockResponse {
    let id = path
        .strip_prefix("/v1.0/users/")
        .or_else(|| path.strip_prefix("/v1.0/users('").and_then(|r| r.strip_suffix("')")))
        .unwrap_or("");
    let (object_id, upn) = if id.contains('@') {
        ("00000000-0000-4000-8000-000000000001".to_string(), id.replace("%23", "#").replace("%2B", "+"))
    } else {
        (id.to_string(), format!("user-{}@contoso.com", id.get(..8).unwrap_or(id)))
    };
    MockResponse::json(200, json!({ "id": object_id, "userPrincipalName": upn }))
}

/// `/v1.0/users/{id}` or `/v1.0/users('{upn}')`, the id one path segment.
fn is_user_path(path: &str) -> bool {
    let one_segment = |id: &str| !id.is_empty() && !id.contains('/');
    path.strip_prefix("/v1.0/users/").is_some_and(one_segment)
        || path.strip_prefix("/v1.0/users('").and_then(|r| r.strip_suffix("')")).is_some_and(one_segment)
}

/// Answers a `$batch`: each item as scripted or as its own request would be, in
/// reverse order. A body that is not a batch gets Graph's 400.
fn batch(shared: &Shared, call: &RecordedCall) -> MockResponse {
    let Some(items) = serde_json::from_slice::<serde_json::Value>(&call.body)
        .ok()
        .and_then(|b| b.get("requests").and_then(|r| r.as_array()).cloned())
    else {
        return MockResponse::json(400, json!({"error": {"code": "BadRequest", "message": "mock: not a batch"}}));
    };
    let mut responses = Vec::new();
    for item in items.iter().rev() {
        let id = item["id"].clone();
        let method = item["method"].as_str().unwrap_or("");
        let url = item["url"].as_str().unwrap_or("");
        let scripted = {
            let mut script = shared.item_script.lock().unwrap();
            script
                .iter()
                .position(|s| s.method.eq_ignore_ascii_case(method) && url.starts_with(&s.path_prefix))
                .and_then(|i| script.remove(i))
        };
        let path = format!("/v1.0{}", url.split('?').next().unwrap_or(""));
        let answer = match scripted {
            Some(s) => s.response,
            None if method == "POST" && is_revoke_path(&path) => revoked(),
            None if method == "GET" && is_user_path(&path) => found(&path),
            None => MockResponse::json(404, json!({"error": {"code": "Request_ResourceNotFound", "message": "mock: no route"}})),
        };
        let headers: serde_json::Map<String, serde_json::Value> =
            answer.headers.iter().map(|(n, v)| (n.clone(), json!(v))).collect();
        let mut response = json!({ "id": id, "status": answer.status, "headers": headers });
        if !answer.body.is_empty() {
            response["body"] = serde_json::from_slice(&answer.body).unwrap_or_else(|_| json!(String::from_utf8_lossy(&answer.body)));
        }
        responses.push(response);
    }
    MockResponse::json(200, json!({ "responses": responses }))
}

/// `/v1.0/users/{id}/revokeSignInSessions` or `/v1.0/users('{upn}')/revokeSignInSessions`
/// with the id in exactly one path segment: an id that leaks a `/` into the path (and so
/// would reach another Graph resource) gets the 404 of an unknown route.
fn is_revoke_path(path: &str) -> bool {
    let one_segment = |id: &str| !id.is_empty() && !id.contains('/');
    if let Some(id) = path
        .strip_prefix("/v1.0/users/")
        .and_then(|rest| rest.strip_suffix("/revokeSignInSessions"))
    {
        return one_segment(id);
    }
    path.strip_prefix("/v1.0/users('")
        .and_then(|rest| rest.strip_suffix("')/revokeSignInSessions"))
        .is_some_and(one_segment)
}

/// A random version-4-shaped GUID, like Graph's `request-id`.
fn guid() -> String {
    let random = || {
        let mut hasher = RandomState::new().build_hasher();
        hasher.write_u128(Instant::now().elapsed().as_nanos());
        hasher.finish()
    };
    let (a, b) = (random(), random());
    format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0x0fff,
        0x8000 | (b >> 48) & 0x3fff,
        b & 0xffff_ffff_ffff
    )
}
