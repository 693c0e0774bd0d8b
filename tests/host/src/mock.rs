//! A loopback HTTP server standing in for the Microsoft identity platform and Graph.
//!
//! The component is pointed at it through `login_base_url` and `graph_base_url` (which
//! also makes `allowed_outbound_hosts` allow it, exactly as in production). It records
//! every call verbatim, the raw path above all, because how a user id is escaped into the
//! URL is the component's most security-relevant output. By default it behaves like a
//! healthy tenant (see [`MockServer`]); tests script failures with
//! [`MockServer::enqueue`].

use std::collections::hash_map::RandomState;
use std::collections::{HashMap, VecDeque};
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
/// - `GET /{tenant}/discovery/v2.0/keys`: `200` with the JWKS document set by
///   [`MockServer::set_jwks`] (the tenant's token-signing keys; tests generate the keys
///   and mint the tokens), `{"keys":[]}` until one is set; counted by
///   [`MockServer::jwks_fetches`].
/// - `GET /v1.0/users/{id}?$select=…`: `200` `{"id", "userPrincipalName"}` (a dry run's
///   lookup): an object id is echoed with `user-<first 8>@contoso.com`, a UPN with a fixed id;
///   with `signInSessionsValidFromDateTime` when `$select` names it: the time (whole
///   seconds, UTC) of the last revocation of that id on this server, else
///   [`NEVER_REVOKED`]. [`MockServer::set_stale_reads`] makes it eventually consistent:
///   the value from before the last revocation.
/// - `POST /v1.0/$batch`: every item answered as its own request would be (scripts for
///   items: [`MockServer::enqueue_batch_item`]), the answers in *reverse* order, so a
///   client that matches by position instead of by `id` fails.
/// - `GET /metadata/identity/oauth2/token` (the instance metadata service, IMDS):
///   with `Metadata: true`, `api-version=2018-02-01` and a `resource`, `200` with a
///   bearer token `mock-access-token-mi-<n>` (its own count), `expires_in` and
///   `expires_on` as strings, as IMDS sends them; else IMDS's `400`.
/// - `GET /msi/token` (an App Service / Container Apps `IDENTITY_ENDPOINT`): with
///   `X-IDENTITY-HEADER: `[`MOCK_IDENTITY_HEADER`], `api-version=2019-08-01` and a
///   `resource`, `200` with such a token and only `expires_on`; else `401` or `400`.
/// - anything else: `404` `Request_ResourceNotFound`.
///
/// A token endpoint request can be checked by the test first
/// ([`MockServer::check_token_requests`]: a client assertion, say); a refusal is answered
/// instead of a token.
///
/// Graph paths (`/v1.0/…`, `/beta/…`) always carry `request-id` (and the echoed
/// `client-request-id`), as Graph's answers do.
///
/// # Bearer tokens
///
/// Like Graph, every call to a Graph path (single calls, `$batch`, lookups; scripted or
/// not) must carry `Authorization: Bearer <token>` with a token the identity platform
/// issued and that has not expired; anything else gets Graph's `401`
/// `InvalidAuthenticationToken` (with `WWW-Authenticate`) before any script is looked at.
/// Issued means: a `2xx` JSON answer of this server (default or scripted, any non-Graph
/// path) carrying a string `access_token`, or [`MockServer::issue_token`]. The login and
/// Graph mocks are separate servers: start Graph with [`MockServer::start_trusting`] so
/// it accepts the login mock's tokens. A server started with [`MockServer::start`]
/// trusts only the tokens it issued itself.
///
/// # Faults
///
/// [`MockServer::inject_faults`] makes Graph paths fail at random (seeded, so a run can
/// be repeated): throttling and outages, answers delayed, connections dropped before or
/// after the call took effect; inside `$batch`, items throttled or unavailable.
/// [`MockServer::revocations`] records which revocations took effect (were answered
/// `2xx`, whether or not the answer reached the client).
pub struct MockServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    server: tokio::task::AbortHandle,
}

struct Shared {
    calls: Mutex<Vec<RecordedCall>>,
    script: Mutex<VecDeque<Scripted>>,
    /// Scripts for `$batch` items, matched on the item's method and relative URL.
    item_script: Mutex<VecDeque<Scripted>>,
    /// Tokens this server issues or trusts (shared with a server started trusting it).
    tokens: Arc<Tokens>,
    faults: Mutex<Option<Faults>>,
    fault_counts: Mutex<FaultCounts>,
    /// User id (as in the path, decoded) → revocations answered `2xx`.
    revocations: Mutex<HashMap<String, u32>>,
    /// The JWKS document the identity platform publishes.
    jwks: Mutex<String>,
    /// User id (as `revocations`) → the times of its revocations, oldest first, as Graph
    /// writes `signInSessionsValidFromDateTime`.
    revoked_at: Mutex<HashMap<String, Vec<String>>>,
    /// Lookups show the value from before the last revocation (Graph's eventual consistency).
    stale_reads: std::sync::atomic::AtomicBool,
    /// TCP connections accepted so far (a pooled client reuses its connections).
    connections: std::sync::atomic::AtomicUsize,
    /// The test's check of token endpoint requests: `Some` refuses with that answer.
    token_check: Mutex<Option<Arc<TokenCheck>>>,
}

/// `signInSessionsValidFromDateTime` of a user this mock never revoked (the account's creation).
pub const NEVER_REVOKED: &str = "2024-01-01T00:00:00Z";

/// See [`MockServer::check_token_requests`].
type TokenCheck = dyn Fn(&RecordedCall) -> Option<MockResponse> + Send + Sync;

/// The `X-IDENTITY-HEADER` value the mock's App Service identity endpoint accepts (the
/// platform's `IDENTITY_HEADER`).
pub const MOCK_IDENTITY_HEADER: &str = "mock-identity-header-5f0c9d2e41b7";

struct Scripted {
    method: String,
    path_prefix: String,
    response: MockResponse,
}

/// Bearer tokens an identity platform issued, as the Graph mock trusting it sees them.
#[derive(Default)]
struct Tokens {
    /// Token → still valid (`false`: expired).
    known: Mutex<HashMap<String, bool>>,
    /// Token-endpoint answers so far (numbers `mock-access-token-<n>`).
    issued: AtomicU64,
    planted: AtomicU64,
    /// Managed identity endpoint answers so far (`mock-access-token-mi-<n>`).
    managed: AtomicU64,
}

impl Tokens {
    fn register(&self, token: &str) {
        self.known.lock().unwrap().insert(token.to_string(), true);
    }

    /// `Err` with Graph's reason when `authorization` does not carry a valid token.
    fn check(&self, authorization: Option<&str>) -> Result<(), &'static str> {
        let token = authorization
            .and_then(|a| a.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim())
            .unwrap_or("");
        if token.is_empty() {
            return Err("Access token is empty.");
        }
        match self.known.lock().unwrap().get(token) {
            Some(true) => Ok(()),
            Some(false) => Err("Lifetime validation failed, the token is expired."),
            None => Err("IDX14100: JWT is not well formed, there are no dots (.).\nThe token needs to be in JWS or JWE Compact Serialization Format."),
        }
    }
}

/// Faults to inject into Graph calls, each a probability in `0.0..=1.0` drawn per call
/// (and per `$batch` item for the `item_` ones). Outer faults are exclusive: at most one
/// of drop-before / 429 / 503 / 504 per call; a delay and a drop-after can come on top
/// of any answer.
#[derive(Clone, Debug, Default)]
pub struct FaultPlan {
    /// Same seed, same faults for the same calls (drawn from the call's method, path,
    /// body and how often that exact call came before), whatever the interleaving.
    pub seed: u64,
    /// Connection closed before the call took effect; no answer.
    pub drop_before: f64,
    /// `429` with `Retry-After`.
    pub throttle: f64,
    /// `503` with `Retry-After`.
    pub unavailable: f64,
    /// `504` with `Retry-After`.
    pub gateway_timeout: f64,
    /// The answer is held back for a time in `delay`.
    pub delay: f64,
    pub delay_range: (Duration, Duration),
    /// The call takes effect (a revocation is recorded), then the connection is closed
    /// without an answer.
    pub drop_after: f64,
    /// A `$batch` item answered `429` / `503` / `504` with `Retry-After`.
    pub item_throttle: f64,
    pub item_unavailable: f64,
    pub item_gateway_timeout: f64,
    /// `Retry-After` values, sent as fractional seconds (`0.137`).
    pub retry_after_range: (Duration, Duration),
}

/// Faults injected so far.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FaultCounts {
    pub dropped_before: u64,
    pub throttled: u64,
    pub unavailable: u64,
    pub gateway_timeout: u64,
    pub delayed: u64,
    pub dropped_after: u64,
    pub items_throttled: u64,
    pub items_unavailable: u64,
    pub items_gateway_timeout: u64,
}

impl FaultCounts {
    pub fn total(&self) -> u64 {
        self.dropped_before
            + self.throttled
            + self.unavailable
            + self.gateway_timeout
            + self.delayed
            + self.dropped_after
            + self.items_throttled
            + self.items_unavailable
            + self.items_gateway_timeout
    }
}

struct Faults {
    plan: FaultPlan,
    /// How often each exact call (by hash) came so far.
    seen: HashMap<u64, u64>,
}

/// A call's own random stream: splitmix64.
struct Draws(u64);

impl Draws {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    fn within(&mut self, (low, high): (Duration, Duration)) -> Duration {
        low + high.saturating_sub(low).mul_f64(self.unit())
    }
}

/// The faults one call gets.
struct CallFaults {
    plan: FaultPlan,
    draws: Draws,
}

impl CallFaults {
    /// `429`/`503`/`504` (or none) with the probabilities given.
    fn status(&mut self, rates: [f64; 3]) -> Option<u16> {
        let x = self.draws.unit();
        let [a, b, c] = rates;
        match x {
            x if x < a => Some(429),
            x if x < a + b => Some(503),
            x if x < a + b + c => Some(504),
            _ => None,
        }
    }

    fn retry_after(&mut self) -> String {
        format!("{:.3}", self.draws.within(self.plan.retry_after_range).as_secs_f64())
    }
}

impl MockServer {
    /// Listens on `127.0.0.1` (an ephemeral port) and serves HTTP/1.1 on the current
    /// tokio runtime until dropped. Trusts only bearer tokens it issued itself.
    pub async fn start() -> MockServer {
        Self::start_with_tokens(Arc::default()).await
    }

    /// [`MockServer::start`], trusting the bearer tokens `issuer` issues (and issuing
    /// into the same registry): the Graph mock of a login mock.
    pub async fn start_trusting(issuer: &MockServer) -> MockServer {
        Self::start_with_tokens(issuer.shared.tokens.clone()).await
    }

    async fn start_with_tokens(tokens: Arc<Tokens>) -> MockServer {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("mock server: cannot bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("mock server: local address");
        let shared = Arc::new(Shared {
            calls: Mutex::default(),
            script: Mutex::default(),
            item_script: Mutex::default(),
            tokens,
            faults: Mutex::default(),
            fault_counts: Mutex::default(),
            revocations: Mutex::default(),
            jwks: Mutex::new(r#"{"keys":[]}"#.to_string()),
            revoked_at: Mutex::default(),
            stale_reads: Default::default(),
            connections: Default::default(),
            token_check: Mutex::default(),
        });
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

    /// The TCP connections this server has accepted so far.
    pub fn connections(&self) -> usize {
        self.shared.connections.load(std::sync::atomic::Ordering::SeqCst)
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

    /// A new valid token, as if this server's token endpoint had issued it (for a test
    /// that plants a token in the cache). Not numbered with the token endpoint's.
    pub fn issue_token(&self) -> String {
        let n = self.shared.tokens.planted.fetch_add(1, Ordering::SeqCst) + 1;
        let token = format!("mock-access-token-planted-{n}");
        self.shared.tokens.register(&token);
        token
    }

    /// Checks every unscripted token endpoint request (`POST /{tenant}/oauth2/v2.0/token`)
    /// before a token is issued: `check` returns `None` to let it pass, or the answer to
    /// give instead (the identity platform refusing the credential).
    pub fn check_token_requests(&self, check: impl Fn(&RecordedCall) -> Option<MockResponse> + Send + Sync + 'static) {
        *self.shared.token_check.lock().unwrap() = Some(Arc::new(check));
    }

    /// From now on Graph answers `token` with `401` "the token is expired".
    pub fn expire_token(&self, token: &str) {
        self.shared.tokens.known.lock().unwrap().insert(token.to_string(), false);
    }

    /// Injects faults into Graph calls from now on (replacing any earlier plan).
    pub fn inject_faults(&self, plan: FaultPlan) {
        *self.shared.faults.lock().unwrap() = Some(Faults {
            plan,
            seen: HashMap::new(),
        });
    }

    /// What [`MockServer::inject_faults`] injected so far.
    pub fn faults_injected(&self) -> FaultCounts {
        self.shared.fault_counts.lock().unwrap().clone()
    }

    /// Every user whose revocation took effect (answered `2xx`, single call or `$batch`
    /// item, whether or not the answer reached the client), with how often. The id as
    /// the path carried it, decoded: `%XX` unescaped, `('…')` unquoted.
    pub fn revocations(&self) -> HashMap<String, u32> {
        self.shared.revocations.lock().unwrap().clone()
    }

    /// From now on (`true`), lookups of `signInSessionsValidFromDateTime` show the value
    /// from before each user's last revocation, as a Graph replica that has not yet seen
    /// the write does.
    pub fn set_stale_reads(&self, stale: bool) {
        self.shared.stale_reads.store(stale, Ordering::SeqCst);
    }

    /// The `signInSessionsValidFromDateTime` values written for a user id (as
    /// [`MockServer::revocations`] names it), oldest first.
    pub fn revoked_at(&self, user: &str) -> Vec<String> {
        self.shared.revoked_at.lock().unwrap().get(user).cloned().unwrap_or_default()
    }
}

impl MockServer {
    /// The JWKS document `GET /{tenant}/discovery/v2.0/keys` answers from now on (any
    /// tenant), as published by the identity platform: `{"keys":[{"kty":"RSA","kid",...}]}`.
    pub fn set_jwks(&self, document: &str) {
        *self.shared.jwks.lock().unwrap() = document.to_string();
    }

    /// How many JWKS requests (`GET /{tenant}/discovery/v2.0/keys`) this server received.
    pub fn jwks_fetches(&self) -> usize {
        self.calls().iter().filter(|c| c.method == "GET" && is_jwks_path(c.path.split('?').next().unwrap_or(""))).count()
    }

    /// How many token requests (`POST /{tenant}/oauth2/v2.0/token`) this server received.
    pub fn token_requests(&self) -> usize {
        self.calls().iter().filter(|c| c.method == "POST" && c.path.ends_with("/oauth2/v2.0/token")).count()
    }

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
        shared.connections.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let shared = shared.clone();
        connections.spawn(async move {
            let service = service_fn(move |request| handle(shared.clone(), request));
            // A client hanging up mid-request is an expected test scenario, not an error;
            // nor is a dropped connection the server chose to inject.
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
        // Reap finished connections so the set does not grow without bound.
        while connections.try_join_next().is_some() {}
    }
}

/// A service error: hyper closes the connection without answering.
#[derive(Debug)]
struct DropConnection;

impl std::fmt::Display for DropConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("mock: connection dropped on purpose")
    }
}

impl std::error::Error for DropConnection {}

async fn handle(
    shared: Arc<Shared>,
    request: hyper::Request<Incoming>,
) -> Result<hyper::Response<Full<Bytes>>, DropConnection> {
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
    let path = call.path.split('?').next().unwrap_or("");
    let graph = is_graph_path(path);

    let mut faults = if graph { shared.faults_for(&call) } else { None };
    let count = |f: fn(&mut FaultCounts) -> &mut u64| *f(&mut shared.fault_counts.lock().unwrap()) += 1;
    if let Some(f) = faults.as_mut() {
        if f.draws.chance(f.plan.drop_before) {
            count(|c| &mut c.dropped_before);
            return Err(DropConnection);
        }
    }

    let response = if let Err(reason) = graph.then(|| shared.tokens.check(call.header("authorization"))).unwrap_or(Ok(())) {
        with_graph_ids(unauthorized(reason, &call), &call)
    } else if let Some(status) = faults.as_mut().and_then(|f| {
        let p = &f.plan;
        f.status([p.throttle, p.unavailable, p.gateway_timeout])
    }) {
        count(match status {
            429 => |c| &mut c.throttled,
            503 => |c| &mut c.unavailable,
            _ => |c| &mut c.gateway_timeout,
        });
        let retry_after = faults.as_mut().unwrap().retry_after();
        with_graph_ids(fault_answer(status).header("Retry-After", &retry_after), &call)
    } else {
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
            None => default_response(&shared, &call, faults.as_mut()),
        };
        if call.method == "POST" && is_revoke_path(path) && (200..300).contains(&response.status) {
            shared.record_revocation(path.strip_prefix("/v1.0").unwrap_or(path));
        }
        if !graph && (200..300).contains(&response.status) {
            if let Some(token) = serde_json::from_slice::<serde_json::Value>(&response.body)
                .ok()
                .and_then(|b| b.get("access_token")?.as_str().map(str::to_string))
            {
                shared.tokens.register(&token);
            }
        }
        response
    };

    let mut delay = response.delay;
    if let Some(f) = faults.as_mut() {
        if f.draws.chance(f.plan.delay) {
            count(|c| &mut c.delayed);
            delay = Some(delay.unwrap_or_default() + f.draws.within(f.plan.delay_range));
        }
    }
    if let Some(delay) = delay {
        tokio::time::sleep(delay).await;
    }
    if let Some(f) = faults.as_mut() {
        if f.draws.chance(f.plan.drop_after) {
            count(|c| &mut c.dropped_after);
            return Err(DropConnection);
        }
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

impl Shared {
    /// The faults for this call, if a plan is set: its own random stream, from the
    /// seed, the call's content and how often the same call came before.
    fn faults_for(&self, call: &RecordedCall) -> Option<CallFaults> {
        let mut faults = self.faults.lock().unwrap();
        let faults = faults.as_mut()?;
        let mut hash = 0xcbf2_9ce4_8422_2325u64;
        for byte in call.method.bytes().chain([0]).chain(call.path.bytes()).chain([0]).chain(call.body.iter().copied()) {
            hash = (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
        }
        let seen = faults.seen.entry(hash).or_insert(0);
        *seen += 1;
        let mut draws = Draws(faults.plan.seed ^ hash ^ seen.wrapping_mul(0xd6e8_feb8_6659_fd93));
        draws.next();
        Some(CallFaults {
            plan: faults.plan.clone(),
            draws,
        })
    }

    /// Records a revocation that took effect, and its time; `path` is `/users/…/revokeSignInSessions`.
    fn record_revocation(&self, path: &str) {
        let Some(segment) = path
            .strip_prefix("/users")
            .and_then(|rest| rest.strip_suffix("/revokeSignInSessions"))
        else {
            return;
        };
        let id = user_of_segment(segment);
        *self.revocations.lock().unwrap().entry(id.clone()).or_insert(0) += 1;
        self.revoked_at.lock().unwrap().entry(id).or_default().push(rfc3339_now());
    }

    /// What a lookup shows as `signInSessionsValidFromDateTime` for the user in `segment`.
    fn valid_from(&self, segment: &str) -> String {
        let times = self.revoked_at.lock().unwrap().get(&user_of_segment(segment)).cloned().unwrap_or_default();
        let skip = usize::from(self.stale_reads.load(Ordering::SeqCst));
        times.iter().rev().nth(skip).cloned().unwrap_or_else(|| NEVER_REVOKED.to_string())
    }
}

/// The user id a path segment names (`/{id}` or `('{id}')`), decoded: `%XX` unescaped,
/// `('…')` unquoted.
fn user_of_segment(segment: &str) -> String {
    let id = match segment.strip_prefix("('").and_then(|s| s.strip_suffix("')")) {
        Some(quoted) => quoted.replace("''", "'"),
        None => segment.trim_start_matches('/').to_string(),
    };
    percent_decode(&id)
}

/// `%XX` unescaped (invalid escapes kept as they are).
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `/{tenant}/discovery/v2.0/keys`: a tenant's JWKS.
fn is_jwks_path(path: &str) -> bool {
    matches!(path.split('/').collect::<Vec<_>>().as_slice(), ["", tenant, "discovery", "v2.0", "keys"] if !tenant.is_empty())
}

/// Graph's own paths, where a bearer token is required and faults are injected.
fn is_graph_path(path: &str) -> bool {
    path.starts_with("/v1.0/") || path.starts_with("/beta/")
}

/// Graph's `401` for a missing, unknown or expired token.
fn unauthorized(reason: &str, call: &RecordedCall) -> MockResponse {
    MockResponse::json(
        401,
        json!({"error": {
            "code": "InvalidAuthenticationToken",
            "message": reason,
            "innerError": {
                "date": rfc3339_now(),
                "request-id": guid(),
                "client-request-id": call.header("client-request-id").unwrap_or(""),
            },
        }}),
    )
    .header(
        "WWW-Authenticate",
        "Bearer realm=\"\", authorization_uri=\"https://login.microsoftonline.com/common/oauth2/authorize\", client_id=\"00000003-0000-0000-c000-000000000000\"",
    )
}

/// Graph's answer for an injected `429` / `503` / `504`.
fn fault_answer(status: u16) -> MockResponse {
    let (code, message) = match status {
        429 => ("TooManyRequests", "Too many requests."),
        503 => ("serviceNotAvailable", "Service unavailable."),
        _ => ("gatewayTimeout", "Gateway timeout."),
    };
    MockResponse::json(status, json!({"error": {"code": code, "message": message}}))
}

/// The healthy-tenant behaviour described on [`MockServer`].
fn default_response(shared: &Shared, call: &RecordedCall, faults: Option<&mut CallFaults>) -> MockResponse {
    let path = call.path.split('?').next().unwrap_or("");
    let post = call.method == "POST";
    let segments: Vec<&str> = path.split('/').collect();

    let check = shared.token_check.lock().unwrap().clone();
    let response = if post
        && matches!(segments.as_slice(), ["", tenant, "oauth2", "v2.0", "token"] if !tenant.is_empty())
    {
        if let Some(refusal) = check.and_then(|check| check(call)) {
            return refusal;
        }
        let n = shared.tokens.issued.fetch_add(1, Ordering::SeqCst) + 1;
        MockResponse::json(
            200,
            json!({
                "token_type": "Bearer",
                "expires_in": 3599,
                "ext_expires_in": 3599,
                "access_token": format!("mock-access-token-{n}"),
            }),
        )
    } else if call.method == "GET" && is_jwks_path(path) {
        MockResponse::text(200, "application/json", &shared.jwks.lock().unwrap())
    } else if post && is_revoke_path(path) {
        revoked()
    } else if post && path == "/v1.0/$batch" {
        batch(shared, call, faults)
    } else if call.method == "GET" && is_user_path(path) {
        found(shared, &call.path)
    } else if call.method == "GET" && path == "/metadata/identity/oauth2/token" {
        managed_identity(shared, call, true)
    } else if call.method == "GET" && path == "/msi/token" {
        managed_identity(shared, call, false)
    } else {
        MockResponse::json(
            404,
            json!({"error": {"code": "Request_ResourceNotFound", "message": "mock: no route"}}),
        )
    };
    with_graph_ids(response, call)
}

/// On Graph paths, Graph's `request-id` and the caller's `client-request-id` echoed.
fn with_graph_ids(response: MockResponse, call: &RecordedCall) -> MockResponse {
    if is_graph_path(&call.path) {
        let mut response = response.header("request-id", &guid());
        if let Some(id) = call.header("client-request-id") {
            response = response.header("client-request-id", id);
        }
        response
    } else {
        response
    }
}

/// The instance metadata service (`imds`) or an App Service identity endpoint, checking
/// what each checks: IMDS the `Metadata` header, App Service the identity header; both
/// their api-version and a resource.
fn managed_identity(shared: &Shared, call: &RecordedCall, imds: bool) -> MockResponse {
    let query: HashMap<String, String> = call
        .path
        .split_once('?')
        .map(|(_, q)| q)
        .unwrap_or("")
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .map(|(name, value)| (name.to_string(), percent_decode(&value.replace('+', " "))))
        .collect();
    let resource = query.get("resource").cloned().unwrap_or_default();
    let refusal = if imds {
        if call.header("metadata") != Some("true") {
            Some((400, "Required metadata header not specified"))
        } else if query.get("api-version").map(String::as_str) != Some("2018-02-01") {
            Some((400, "Invalid API version"))
        } else if resource.is_empty() {
            Some((400, "Required query variable 'resource' is missing"))
        } else {
            None
        }
    } else if call.header("x-identity-header") != Some(MOCK_IDENTITY_HEADER) {
        Some((401, "Unauthorized"))
    } else if query.get("api-version").map(String::as_str) != Some("2019-08-01") || resource.is_empty() {
        Some((400, "Invalid request"))
    } else {
        None
    };
    if let Some((status, message)) = refusal {
        return match imds {
            true => MockResponse::json(status, json!({"error": "invalid_request", "error_description": message})),
            false => MockResponse::json(status, json!({"statusCode": status, "message": message})),
        };
    }
    let n = shared.tokens.managed.fetch_add(1, Ordering::SeqCst) + 1;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let client_id = query.get("client_id").cloned().unwrap_or_else(|| "5e3f0a7c-0000-4000-8000-000000000000".into());
    let mut answer = json!({
        "access_token": format!("mock-access-token-mi-{n}"),
        "expires_on": (now + 86_399).to_string(),
        "resource": resource,
        "token_type": "Bearer",
        "client_id": client_id,
    });
    if imds {
        answer["expires_in"] = json!("86399");
        answer["ext_expires_in"] = json!("86399");
        answer["not_before"] = json!(now.to_string());
    }
    MockResponse::json(200, answer)
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

/// The user a lookup of `/v1.0/users/{id}?$select=…` finds.
fn found(shared: &Shared, path_and_query: &str) -> MockResponse {
    let (path, query) = path_and_query.split_once('?').unwrap_or((path_and_query, ""));
    let segment = path.strip_prefix("/v1.0/users").unwrap_or("");
    let id = path
        .strip_prefix("/v1.0/users/")
        .or_else(|| path.strip_prefix("/v1.0/users('").and_then(|r| r.strip_suffix("')")))
        .unwrap_or("");
    let (object_id, upn) = if id.contains('@') {
        ("00000000-0000-4000-8000-000000000001".to_string(), id.replace("%23", "#").replace("%2B", "+"))
    } else {
        (id.to_string(), format!("user-{}@contoso.com", id.get(..8).unwrap_or(id)))
    };
    let mut user = json!({ "id": object_id, "userPrincipalName": upn });
    if query.contains("signInSessionsValidFromDateTime") {
        user["signInSessionsValidFromDateTime"] = json!(shared.valid_from(segment));
    }
    MockResponse::json(200, user)
}

/// `/v1.0/users/{id}` or `/v1.0/users('{upn}')`, the id one path segment.
fn is_user_path(path: &str) -> bool {
    let one_segment = |id: &str| !id.is_empty() && !id.contains('/');
    path.strip_prefix("/v1.0/users/").is_some_and(one_segment)
        || path.strip_prefix("/v1.0/users('").and_then(|r| r.strip_suffix("')")).is_some_and(one_segment)
}

/// Answers a `$batch`: each item as scripted or as its own request would be, in
/// reverse order. A body that is not a batch gets Graph's 400.
fn batch(shared: &Shared, call: &RecordedCall, mut faults: Option<&mut CallFaults>) -> MockResponse {
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
        let fault = faults.as_deref_mut().and_then(|f| {
            let p = &f.plan;
            let status = f.status([p.item_throttle, p.item_unavailable, p.item_gateway_timeout])?;
            Some((status, f.retry_after()))
        });
        let answer = match (scripted, fault) {
            (Some(s), _) => s.response,
            (None, Some((status, retry_after))) => {
                let mut counts = shared.fault_counts.lock().unwrap();
                *match status {
                    429 => &mut counts.items_throttled,
                    503 => &mut counts.items_unavailable,
                    _ => &mut counts.items_gateway_timeout,
                } += 1;
                fault_answer(status).header("Retry-After", &retry_after)
            }
            (None, None) if method == "POST" && is_revoke_path(&path) => revoked(),
            (None, None) if method == "GET" && is_user_path(&path) => found(shared, &format!("/v1.0{url}")),
            (None, None) => MockResponse::json(404, json!({"error": {"code": "Request_ResourceNotFound", "message": "mock: no route"}})),
        };
        if method == "POST" && is_revoke_path(&path) && (200..300).contains(&answer.status) {
            shared.record_revocation(url.split('?').next().unwrap_or(""));
        }
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

/// Now as RFC 3339 UTC, as in Graph's `innerError.date` (`2026-11-25T10:00:00Z`).
fn rfc3339_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (days, rest) = ((secs / 86_400) as i64, secs % 86_400);
    // Days since 1970-01-01 to a civil date (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
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
