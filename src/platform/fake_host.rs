//! A scripted host for unit tests (`cfg(test)` only): the seam ([`Host`]) with a
//! virtual clock, scripted answers, and a record of what was sent.
//!
//! - Time: [`FakeHost::run`] drives a future; whenever it is stuck, the clock jumps to
//!   the earliest pending `sleep` and wakes it. Waiting costs no real time, and a
//!   30-second `Retry-After` is tested in microseconds.
//! - Answers: unscripted requests get a healthy tenant: the token endpoint issues
//!   `token-1`, `token-2`..., a managed identity endpoint (IMDS, or `/msi/token`)
//!   `mi-token-N`; Graph accepts only a token it issued (or one planted with
//!   [`FakeHost::plant_token`]) and answers 401 otherwise; revokes answer
//!   `{"value": true}`, lookups find the user (with `signInSessionsValidFromDateTime`
//!   when selected: the time of the user's last revocation on this fake, else
//!   [`NEVER_REVOKED`]), `$batch` answers each item as its own
//!   request would be, in reverse order (a client that matches by position fails).
//!   [`FakeHost::enqueue`] scripts the next request that matches a method and a URL
//!   fragment; [`FakeHost::enqueue_item`] the next `$batch` item with that method and
//!   URL prefix. Scripts are used once each, oldest first. The tenant's signing keys
//!   (`GET {login}/{tenant}/discovery/v2.0/keys`) are what [`FakeHost::set_jwks`] set,
//!   else an empty JWKS.
//! - Record: [`FakeHost::sent`] (with the virtual time of each send),
//!   [`FakeHost::max_in_flight`], and every variable read ([`FakeHost::reads`]).
//! - Store: in memory; counters kept as Spin's SQLite store keeps them (8 little-endian
//!   bytes); [`FakeHost::set_store_down`] makes every store call fail.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::pin::{pin, Pin};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use crate::inbound::incoming::Incoming;
use crate::transport::outbound::{OutboundRequest, OutboundResponse, SendFailure, TransportError};
use crate::platform::seam::Host;
use crate::reply::trace::{Correlation, Trace};

/// The caller's key every fake accepts.
pub const API_KEY: &str = "unit-test-api-key-0123456789abcdef";
pub const GRAPH: &str = "https://graph.test";
pub const LOGIN: &str = "https://login.test";
/// Unix seconds at virtual time zero.
const EPOCH: u64 = 1_795_000_000;
/// `signInSessionsValidFromDateTime` of a user this fake never revoked: long before [`EPOCH`].
pub const NEVER_REVOKED: &str = "2026-01-01T00:00:00Z";

/// A scripted answer.
#[derive(Debug, Clone)]
pub enum Reply {
    /// This response after `after` (timed out instead if `after` reaches the timeout).
    Answer { response: OutboundResponse, after: Duration },
    /// No answer ever: the send times out.
    Hang,
    /// No connection: `temporary` like a refused connection, or not, like a host policy refusal.
    Unreachable { temporary: bool },
}

impl Reply {
    /// A response with this status and no body.
    pub fn status(status: u16) -> Reply {
        Reply::Answer { response: OutboundResponse { status, headers: vec![], body: vec![] }, after: Duration::ZERO }
    }

    pub fn json(status: u16, body: Value) -> Reply {
        let response = OutboundResponse {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: body.to_string().into_bytes(),
        };
        Reply::Answer { response, after: Duration::ZERO }
    }

    pub fn header(mut self, name: &str, value: &str) -> Reply {
        if let Reply::Answer { response, .. } = &mut self {
            response.headers.push((name.to_ascii_lowercase(), value.to_string()));
        }
        self
    }

    pub fn after(mut self, delay: Duration) -> Reply {
        if let Reply::Answer { after, .. } = &mut self {
            *after = delay;
        }
        self
    }

    fn response(self) -> OutboundResponse {
        match self {
            Reply::Answer { response, .. } => response,
            _ => panic!("a $batch item needs an answer"),
        }
    }
}

/// One request the host sent.
#[derive(Debug, Clone)]
pub struct Sent {
    /// Virtual time of the send.
    pub at: Duration,
    pub method: &'static str,
    pub url: String,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

impl Sent {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_str())
    }

    pub fn is_token_request(&self) -> bool {
        self.url.ends_with("/oauth2/v2.0/token")
    }

    pub fn is_jwks_request(&self) -> bool {
        self.url.ends_with("/discovery/v2.0/keys")
    }

    /// A request to a managed identity endpoint (IMDS or App Service).
    pub fn is_identity_request(&self) -> bool {
        is_identity_request(&self.url)
    }

    pub fn is_batch(&self) -> bool {
        self.url.ends_with("/v1.0/$batch")
    }

    /// The item URLs of a `$batch`, in the order sent.
    pub fn batch_urls(&self) -> Vec<String> {
        let body: Value = serde_json::from_slice(&self.body).expect("a $batch body is JSON");
        body["requests"].as_array().unwrap().iter().map(|r| r["url"].as_str().unwrap().to_string()).collect()
    }
}

struct Scripted {
    method: &'static str,
    fragment: String,
    reply: Reply,
}

/// The fake host. Single-threaded, like a Spin instance.
pub struct FakeHost {
    now: Cell<Duration>,
    /// Pending sleeps by id: deadline and who to wake.
    sleepers: RefCell<BTreeMap<u64, (Duration, Option<Waker>)>>,
    next_sleeper: Cell<u64>,
    variables: RefCell<HashMap<String, String>>,
    reads: RefCell<Vec<String>>,
    kv: RefCell<HashMap<String, Vec<u8>>>,
    script: RefCell<Vec<Scripted>>,
    item_script: RefCell<Vec<Scripted>>,
    sent: RefCell<Vec<Sent>>,
    in_flight: Cell<usize>,
    max_in_flight: Cell<usize>,
    /// Tokens Graph accepts.
    issued: RefCell<Vec<String>>,
    /// How long unscripted answers take.
    default_delay: Cell<Duration>,
    /// `kv_increment` fails (a store that is down), as does everything else on the store.
    store_down: Cell<bool>,
    /// The JWKS document the identity platform publishes.
    jwks: RefCell<String>,
    /// Each user's last revocation (by its path segment), as Graph writes it.
    revoked_at: RefCell<HashMap<String, String>>,
    /// State of [`Host::random_bytes`].
    random_draws: Cell<u64>,
}

impl FakeHost {
    /// A correctly configured deployment against a healthy tenant.
    pub fn new() -> FakeHost {
        let variables = [
            ("tenant_id", "contoso.onmicrosoft.com"),
            ("client_id", "11111111-2222-3333-4444-555555555555"),
            ("client_secret", "unit-test-client-secret"),
            ("api_keys", API_KEY),
            ("graph_base_url", GRAPH),
            ("login_base_url", LOGIN),
            ("time_budget_ms", "25000"),
            ("max_users", "100"),
            ("max_revocations", "300"),
        ];
        FakeHost {
            now: Cell::new(Duration::ZERO),
            sleepers: RefCell::default(),
            next_sleeper: Cell::new(0),
            variables: RefCell::new(variables.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect()),
            reads: RefCell::default(),
            kv: RefCell::default(),
            script: RefCell::default(),
            item_script: RefCell::default(),
            sent: RefCell::default(),
            in_flight: Cell::new(0),
            max_in_flight: Cell::new(0),
            issued: RefCell::default(),
            default_delay: Cell::new(Duration::ZERO),
            store_down: Cell::new(false),
            jwks: RefCell::new(r#"{"keys":[]}"#.into()),
            revoked_at: RefCell::default(),
            random_draws: Cell::new(0),
        }
    }

    /// Sets (`Some`) or removes (`None`) a variable.
    pub fn set_var(&self, name: &str, value: Option<&str>) -> &Self {
        match value {
            Some(v) => self.variables.borrow_mut().insert(name.into(), v.into()),
            None => self.variables.borrow_mut().remove(name),
        };
        self
    }

    /// Scripts the next request with this method whose URL contains `fragment`.
    pub fn enqueue(&self, method: &'static str, fragment: &str, reply: Reply) {
        self.script.borrow_mut().push(Scripted { method, fragment: fragment.into(), reply });
    }

    /// Scripts the next `$batch` item with this method whose URL starts with `prefix`.
    pub fn enqueue_item(&self, method: &'static str, prefix: &str, reply: Reply) {
        self.item_script.borrow_mut().push(Scripted { method, fragment: prefix.into(), reply });
    }

    /// The JWKS document the identity platform publishes from now on.
    pub fn set_jwks(&self, document: &str) {
        *self.jwks.borrow_mut() = document.into();
    }

    /// Moves the clocks on (time passing between requests).
    pub fn advance(&self, duration: Duration) {
        self.now.set(self.now.get() + duration);
    }

    pub fn jwks_requests(&self) -> usize {
        self.sent.borrow().iter().filter(|s| s.is_jwks_request()).count()
    }

    /// Unscripted answers take this long.
    pub fn set_default_delay(&self, delay: Duration) {
        self.default_delay.set(delay);
    }

    /// Stores a valid cached token (a warm instance) that Graph accepts.
    pub fn plant_token(&self, token: &str) {
        let lookup = |n: &str| Ok(self.variables.borrow().get(n).cloned());
        let settings = crate::settings::GraphSettings::load(&lookup).unwrap();
        let choice = crate::settings::CredentialChoice::load(&lookup).unwrap();
        let entry = crate::identity::token_cache::encode(&crate::settings::secret::Secret::new(token), 3599, EPOCH).unwrap();
        self.kv.borrow_mut().insert(crate::identity::token_cache::key(&settings, &choice.cache_tag()), entry);
        self.issued.borrow_mut().push(token.into());
    }

    /// `true`: the key-value store fails every call from now on, as one that is down.
    pub fn set_store_down(&self, down: bool) {
        self.store_down.set(down);
    }

    /// A counter `kv_increment` keeps (8 little-endian bytes, as Spin's SQLite store).
    pub fn counter(&self, key: &str) -> Option<i64> {
        self.kv.borrow().get(key).map(|v| i64::from_le_bytes(v.as_slice().try_into().expect("a counter")))
    }

    /// The store's keys, sorted.
    pub fn kv_keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = self.kv.borrow().keys().cloned().collect();
        keys.sort();
        keys
    }

    /// Sets a value in the store directly.
    pub fn kv_plant(&self, key: &str, value: &[u8]) {
        self.kv.borrow_mut().insert(key.into(), value.into());
    }

    pub fn now(&self) -> Duration {
        self.now.get()
    }

    pub fn sent(&self) -> Vec<Sent> {
        self.sent.borrow().clone()
    }

    pub fn token_requests(&self) -> usize {
        self.sent.borrow().iter().filter(|s| s.is_token_request()).count()
    }

    pub fn batches(&self) -> Vec<Sent> {
        self.sent.borrow().iter().filter(|s| s.is_batch()).cloned().collect()
    }

    /// The most requests that were in flight at once.
    pub fn max_in_flight(&self) -> usize {
        self.max_in_flight.get()
    }

    /// Every variable read, in order.
    pub fn reads(&self) -> Vec<String> {
        self.reads.borrow().clone()
    }

    /// Forgets the reads so far.
    pub fn clear_reads(&self) {
        self.reads.borrow_mut().clear();
    }

    /// Runs `future` to its end on the virtual clock: whenever it waits, time jumps to
    /// the earliest pending sleep. Panics if it waits on nothing (it would hang forever).
    pub fn run<F: Future>(&self, future: F) -> F::Output {
        let mut future = pin!(future);
        let mut context = Context::from_waker(Waker::noop());
        for _ in 0..100_000 {
            if let Poll::Ready(output) = future.as_mut().poll(&mut context) {
                return output;
            }
            let earliest = self.sleepers.borrow().values().map(|(deadline, _)| *deadline).min();
            let deadline = earliest.expect("the flow waits on nothing: it would hang forever");
            self.now.set(self.now.get().max(deadline));
            let due: Vec<Waker> = self
                .sleepers
                .borrow_mut()
                .values_mut()
                .filter(|(deadline, _)| *deadline <= self.now.get())
                .filter_map(|(_, waker)| waker.take())
                .collect();
            due.into_iter().for_each(Waker::wake);
        }
        panic!("the flow did not finish after 100000 steps");
    }

    /// Serves one request through the whole flow, as the handler would, with the body
    /// sent at once. Returns the reply (errors mapped as the handler maps them) and the trace.
    pub fn serve(&self, method: &str, path_and_query: &str, headers: &[(&str, &str)], body: &str) -> (crate::reply::response::Reply, Trace) {
        let chunks = futures::stream::iter(if body.is_empty() { vec![] } else { vec![Ok(body.as_bytes().to_vec())] });
        self.serve_stream(method, path_and_query, headers, chunks)
    }

    /// [`FakeHost::serve`] with the body as a stream of chunks.
    pub fn serve_stream(
        &self,
        method: &str,
        path_and_query: &str,
        headers: &[(&str, &str)],
        body: impl futures::Stream<Item = Result<Vec<u8>, ()>>,
    ) -> (crate::reply::response::Reply, Trace) {
        let (path, query) = path_and_query.split_once('?').unwrap_or((path_and_query, ""));
        let incoming = Incoming {
            method: method.into(),
            path: path.into(),
            query: query.into(),
            headers: headers.iter().map(|(n, v)| (n.to_ascii_lowercase(), v.to_string())).collect(),
        };
        let mut trace = Trace {
            started: self.now(),
            route: "unrouted",
            outcome: "ok",
            correlation: Correlation { client_request_id: "cid".into(), graph_request_id: None },
            ..Trace::default()
        };
        let result = self.run(crate::service::serve(self, &incoming, body, &mut trace));
        let reply = match result {
            Ok(reply) => reply,
            Err(error) => {
                trace.outcome = error.code();
                crate::reply::response::error(&error, &trace.correlation, "2026-11-25T10:00:00Z")
            }
        };
        (reply, trace)
    }

    /// The answer to `request`: scripted, else the healthy tenant's.
    fn reply_to(&self, request: &OutboundRequest) -> Reply {
        let scripted = take(&self.script, request.method, |fragment| request.url.contains(fragment));
        if let Some(reply) = scripted {
            // A scripted token is one Graph accepts.
            if let Reply::Answer { response, .. } = &reply {
                let token = serde_json::from_slice::<Value>(&response.body).ok().and_then(|b| b["access_token"].as_str().map(String::from));
                self.issued.borrow_mut().extend(token);
            }
            return reply;
        }
        let delay = self.default_delay.get();
        if request.method == "GET" && is_identity_request(&request.url) {
            // A healthy managed identity endpoint: IMDS's answer, expiry as strings.
            let token = format!("mi-token-{}", self.issued.borrow().len() + 1);
            self.issued.borrow_mut().push(token.clone());
            return Reply::json(200, json!({"token_type": "Bearer", "expires_in": "86399", "access_token": token})).after(delay);
        }
        if request.url.starts_with(LOGIN) && request.url.ends_with("/oauth2/v2.0/token") {
            let token = format!("token-{}", self.issued.borrow().len() + 1);
            self.issued.borrow_mut().push(token.clone());
            return Reply::json(200, json!({"token_type": "Bearer", "expires_in": 3599, "access_token": token})).after(delay);
        }
        if request.method == "GET" && request.url.starts_with(LOGIN) && request.url.ends_with("/discovery/v2.0/keys") {
            let document: Value = serde_json::from_str(&self.jwks.borrow()).expect("set_jwks takes JSON");
            return Reply::json(200, document).after(delay);
        }
        let bearer = request.headers.iter().find(|(n, _)| *n == "authorization").map(|(_, v)| v.as_str());
        let accepted = bearer.and_then(|b| b.strip_prefix("Bearer ")).is_some_and(|t| self.issued.borrow().iter().any(|i| i == t));
        let path = request.url.strip_prefix(GRAPH).and_then(|p| p.strip_prefix("/v1.0"));
        let reply = match path {
            Some(_) if !accepted => Reply::json(401, json!({"error": {"code": "InvalidAuthenticationToken", "message": "fake"}})),
            Some("/$batch") => self.batch(request),
            Some(path) => self.single(request.method, path),
            None => Reply::status(404),
        };
        reply.header("request-id", "rid-fake").after(delay)
    }

    /// A single Graph call, or a `$batch` item, as a healthy tenant answers it.
    fn single(&self, method: &str, path: &str) -> Reply {
        match (method, path.strip_prefix("/users")) {
            ("POST", Some(rest)) if rest.ends_with("/revokeSignInSessions") => {
                let segment = rest.trim_end_matches("/revokeSignInSessions");
                let at = humantime::format_rfc3339_seconds(self.wall_now()).to_string();
                self.revoked_at.borrow_mut().insert(segment.to_string(), at);
                Reply::json(200, json!({"value": true}))
            }
            ("GET", Some(rest)) => {
                let (segment, query) = rest.split_once('?').unwrap_or((rest, ""));
                let id = segment.trim_start_matches('/');
                let mut user = json!({"id": "00000000-0000-4000-8000-000000000001", "userPrincipalName": id});
                if query.contains("signInSessionsValidFromDateTime") {
                    let at = self.revoked_at.borrow().get(segment).cloned();
                    user["signInSessionsValidFromDateTime"] = json!(at.as_deref().unwrap_or(NEVER_REVOKED));
                }
                Reply::json(200, user)
            }
            _ => Reply::json(404, json!({"error": {"code": "Request_ResourceNotFound", "message": "fake"}})),
        }
    }

    fn batch(&self, request: &OutboundRequest) -> Reply {
        let body: Value = serde_json::from_slice(&request.body).expect("a $batch body is JSON");
        let items = body["requests"].as_array().expect("requests");
        let responses: Vec<Value> = items
            .iter()
            .rev()
            .map(|item| {
                let (method, url) = (item["method"].as_str().unwrap(), item["url"].as_str().unwrap());
                let reply = take(&self.item_script, method, |prefix| url.starts_with(prefix))
                    .unwrap_or_else(|| self.single(method, url));
                let response = reply.response();
                let headers: serde_json::Map<String, Value> =
                    response.headers.iter().map(|(n, v)| (n.clone(), json!(v))).collect();
                let mut answer = json!({"id": item["id"], "status": response.status, "headers": headers});
                if !response.body.is_empty() {
                    answer["body"] = serde_json::from_slice(&response.body).unwrap();
                }
                answer
            })
            .collect();
        Reply::json(200, json!({ "responses": responses }))
    }

    fn sleeping(&self, duration: Duration) -> FakeSleep<'_> {
        let id = self.next_sleeper.get();
        self.next_sleeper.set(id + 1);
        FakeSleep { host: self, deadline: self.now.get().saturating_add(duration), id }
    }
}

/// IMDS's token path, or an App Service endpoint as the tests write it (`/msi/token`).
fn is_identity_request(url: &str) -> bool {
    url.contains("/metadata/identity/oauth2/token?") || url.contains("/msi/token?")
}

/// Removes and returns the oldest script with this method that `matches`.
fn take(script: &RefCell<Vec<Scripted>>, method: &str, matches: impl Fn(&str) -> bool) -> Option<Reply> {
    let mut script = script.borrow_mut();
    let i = script.iter().position(|s| s.method == method && matches(&s.fragment))?;
    Some(script.remove(i).reply)
}

/// A wait on the virtual clock.
struct FakeSleep<'a> {
    host: &'a FakeHost,
    deadline: Duration,
    id: u64,
}

impl Future for FakeSleep<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<()> {
        if self.host.now.get() >= self.deadline {
            self.host.sleepers.borrow_mut().remove(&self.id);
            return Poll::Ready(());
        }
        self.host.sleepers.borrow_mut().insert(self.id, (self.deadline, Some(context.waker().clone())));
        Poll::Pending
    }
}

impl Drop for FakeSleep<'_> {
    fn drop(&mut self) {
        self.host.sleepers.borrow_mut().remove(&self.id);
    }
}

/// Counts a request out of flight when its send ends, answered or cancelled.
struct InFlight<'a>(&'a Cell<usize>);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.set(self.0.get() - 1);
    }
}

impl Host for FakeHost {
    fn variable(&self, name: &str) -> Result<Option<String>, ()> {
        self.reads.borrow_mut().push(name.to_string());
        Ok(self.variables.borrow().get(name).cloned())
    }

    async fn send(&self, request: OutboundRequest, timeout: Duration) -> Result<OutboundResponse, SendFailure> {
        let reply = self.reply_to(&request);
        self.sent.borrow_mut().push(Sent {
            at: self.now.get(),
            method: request.method,
            url: request.url,
            headers: request.headers,
            body: request.body,
        });
        self.in_flight.set(self.in_flight.get() + 1);
        self.max_in_flight.set(self.max_in_flight.get().max(self.in_flight.get()));
        let _in_flight = InFlight(&self.in_flight);
        match reply {
            Reply::Answer { response, after } if after < timeout => {
                self.sleeping(after).await;
                Ok(response)
            }
            Reply::Answer { .. } | Reply::Hang => {
                self.sleeping(timeout).await;
                Err(SendFailure::TimedOut)
            }
            Reply::Unreachable { temporary } => Err(SendFailure::Transport(TransportError {
                code: if temporary { "ConnectionRefused" } else { "HttpRequestDenied" }.into(),
                temporary,
            })),
        }
    }

    async fn sleep(&self, duration: Duration) {
        self.sleeping(duration).await
    }

    fn monotonic_now(&self) -> Duration {
        self.now.get()
    }

    fn wall_now(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(EPOCH) + self.now.get()
    }

    fn random_u32(&self) -> u32 {
        // The middle of the jitter range: backoffs of 0.75 s, 1.5 s, 3 s.
        1 << 31
    }

    fn random_bytes(&self, buffer: &mut [u8]) {
        // Different bytes on every call (splitmix64 over a counter): unique `jti`s.
        for byte in buffer.iter_mut() {
            let n = self.random_draws.get().wrapping_add(0x9e37_79b9_7f4a_7c15);
            self.random_draws.set(n);
            let mut z = n;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            *byte = (z ^ (z >> 31)) as u8;
        }
    }

    fn kv_get(&self, key: &str) -> Option<Vec<u8>> {
        if self.store_down.get() {
            return None;
        }
        self.kv.borrow().get(key).cloned()
    }

    fn kv_set(&self, key: &str, value: &[u8]) {
        if !self.store_down.get() {
            self.kv.borrow_mut().insert(key.into(), value.into());
        }
    }

    fn kv_delete(&self, key: &str) {
        if !self.store_down.get() {
            self.kv.borrow_mut().remove(key);
        }
    }

    /// As Spin's SQLite store: 8 little-endian bytes; any other value is an error.
    fn kv_increment(&self, key: &str, delta: i64) -> Result<i64, ()> {
        if self.store_down.get() {
            return Err(());
        }
        let mut kv = self.kv.borrow_mut();
        let old = match kv.get(key) {
            Some(value) => i64::from_le_bytes(value.as_slice().try_into().map_err(|_| ())?),
            None => 0,
        };
        let new = old.checked_add(delta).ok_or(())?;
        kv.insert(key.into(), new.to_le_bytes().to_vec());
        Ok(new)
    }
}
