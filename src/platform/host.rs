//! The one module that touches the host: Spin variables, the key-value store, outbound
//! HTTP, clocks, randomness and stdout. [`WasiHost`] is the component's implementation of
//! the seam ([`crate::platform::seam::Host`]) through which the flow reaches all of these; the
//! handler (the wasi:http edge) also uses the free functions here directly.
//!
//! Interfaces are the standard WASI ones named in `wit/world.wit`
//! (`wasi:config/store`, `wasi:keyvalue/store` and `atomics`, `wasi:http/outgoing-handler`,
//! `wasi:clocks/*`, ...). `wasi:config` and `wasi:keyvalue` go through
//! [`crate::platform::bindings`], generated from `wit/world.wit` itself; wasi:http, clocks, random
//! and stdout through spin-sdk's bindings (and the `wasi` crate its executor is built on).
//!
//! # Host calls
//! Every call here crosses the component boundary (a lift and lower of its arguments, a
//! resource-table lookup, often an allocation in the host; in Spin also a tracing span),
//! and a fresh instance per request pays them all again, so each request asks only what
//! it needs (`tests/host_calls.rs` pins the counts, and lists a warm revoke's 65):
//! - waiting costs one `subscribe-*` per thing waited for, and the executor's one `poll`
//!   for everything pending; whether a pollable was ready is learnt from its waker (see
//!   [`Registration`]), not by asking again; a timer is `subscribe-duration` (no clock
//!   reading), set only when first polled;
//! - an outbound request with an empty body (Graph's revoke) has no body resource at
//!   all; one that has a body writes it with `check-write` + `write` (no `flush`: the
//!   body's `finish` ends it); an answer's body is read until its declared length is in,
//!   not until a read reports the end, and is dropped without `finish` (trailers unread),
//!   and no body is read for 204, 304 or a length of 0;
//! - the incoming body is read only when the flow asks for it, the same way;
//! - headers go in one `fields.from-list` and come out in one `entries`; the status is
//!   set only when it is not 200, the method only when it is not GET (wasi:http's
//!   defaults); an answer's body is written with one `blocking-write-and-flush` per 4 KiB.

use std::cell::OnceCell;
use std::future::{poll_fn, Future};
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, SystemTime};

use futures::task::AtomicWaker;
use futures::Stream;
use spin_executor::CancelOnDropToken;
use spin_sdk::http::{
    ErrorCode, Fields, IncomingRequest, IncomingResponse, Method, OutgoingBody, OutgoingRequest, OutgoingResponse,
    ResponseOutparam, Scheme,
};
use spin_sdk::wit::wasi::http0_2_0::outgoing_handler;
use spin_sdk::wit::wasi::http0_2_0::types::IncomingBody;
use wasi::clocks::monotonic_clock;
use wasi::io::poll::Pollable;
use wasi::io::streams::{InputStream, OutputStream, StreamError};

use crate::platform::bindings::wasi::config::store as config;
use crate::platform::bindings::wasi::keyvalue::atomics;
use crate::platform::bindings::wasi::keyvalue::store as key_value;
use crate::inbound::guid::Guid;
use crate::transport::outbound::{OutboundRequest, OutboundResponse, SendFailure, TransportError};
use crate::platform::seam::Host;

/// The host as WASI gives it, for one request.
#[derive(Default)]
pub struct WasiHost {
    /// The key-value store `default`, opened on first use (a request that needs no token
    /// never opens it); `None` inside when the host has none or refuses it: the token
    /// cache then simply misses, and every request fetches its own token; the abuse
    /// brake cannot count, and lets requests through.
    store: OnceCell<Option<key_value::Bucket>>,
    /// The request's one wall-clock reading in seconds, taken on first use (see
    /// [`Host::unix_now`] below).
    unix_now: OnceCell<u64>,
}

impl WasiHost {
    fn store(&self) -> Option<&key_value::Bucket> {
        self.store.get_or_init(|| key_value::open("default").ok()).as_ref()
    }
}

impl Host for WasiHost {
    fn variable(&self, name: &str) -> Result<Option<String>, ()> {
        config::get(name).map_err(|_| ())
    }

    async fn send(&self, request: OutboundRequest, timeout: Duration) -> Result<OutboundResponse, SendFailure> {
        send(request, timeout).await
    }

    async fn sleep(&self, duration: Duration) {
        Sleep::new(duration).await
    }

    fn monotonic_now(&self) -> Duration {
        monotonic_now()
    }

    fn wall_now(&self) -> SystemTime {
        SystemTime::now()
    }

    /// Read once per request and kept (one host call instead of one per use): the first
    /// uses are at the start of the flow (a caller token's `exp`/`nbf`, the brake's
    /// window, the token cache's freshness), where it is the time to the second. A later
    /// use (a token fetched after retries, its client assertion) gets a time at most the
    /// time budget old, against margins of minutes: a fetched token is then cached as
    /// expiring that much sooner, never later, and an assertion's `nbf` is that much
    /// earlier. `wall_now` (a `Retry-After` date, the proof's estimate, the log line)
    /// reads the clock afresh.
    fn unix_now(&self) -> u64 {
        *self.unix_now.get_or_init(|| self.wall_now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0))
    }

    fn random_u32(&self) -> u32 {
        spin_sdk::wit::wasi::random0_2_6::random::get_random_u64() as u32
    }

    fn random_bytes(&self, buffer: &mut [u8]) {
        let bytes = spin_sdk::wit::wasi::random0_2_6::random::get_random_bytes(buffer.len() as u64);
        buffer.copy_from_slice(&bytes[..buffer.len()]);
    }

    fn kv_get(&self, key: &str) -> Option<Vec<u8>> {
        self.store()?.get(key).ok().flatten()
    }

    fn kv_set(&self, key: &str, value: &[u8]) {
        if let Some(bucket) = self.store() {
            let _ = bucket.set(key, value);
        }
    }

    fn kv_delete(&self, key: &str) {
        if let Some(bucket) = self.store() {
            let _ = bucket.delete(key);
        }
    }

    /// `wasi:keyvalue/atomics@0.2.0-draft2` `increment`, served by Spin 3.0 and later
    /// (`crates/factor-key-value`; SQLite in a transaction, Redis `INCRBY`).
    fn kv_increment(&self, key: &str, delta: i64) -> Result<i64, ()> {
        let bucket = self.store().ok_or(())?;
        atomics::increment(bucket, key, delta).map_err(|_| ())
    }
}

/// Sends one request through `wasi:http/outgoing-handler`, giving up after `timeout`
/// (the rest of the time budget), so a hung upstream cannot hold the request.
/// Redirects are not followed (wasi:http never does), so `Authorization` never leaves
/// its origin.
///
/// On wasi:http's own resources, call by call: spin-sdk's `Request`/`Response` would
/// bring `anyhow` (and with it std's backtrace printer and symbol demangler), `http::Uri`
/// and Unicode case tables, ~80 KiB of the component; and its body sink and stream make
/// more host calls than a request needs (see "Host calls" above).
async fn send(request: OutboundRequest, timeout: Duration) -> Result<OutboundResponse, SendFailure> {
    // The timeout runs from here: one `subscribe-duration`, registered with the
    // executor at once, and waited on together with whatever the exchange waits for.
    let mut deadline = pin!(Sleep::new(timeout));
    poll_fn(|context| {
        let _ = deadline.as_mut().poll(context);
        Poll::Ready(())
    })
    .await;

    let outgoing = outgoing_request(&request).ok_or_else(unbuildable)?;
    // No body at all for an empty one (revokeSignInSessions): the host sends an empty
    // body, with the `content-length: 0` that `outgoing_request` sets, and the request
    // needs neither `body`, `write`, a stream nor `finish` (wasmtime-wasi-http, Spin's,
    // sends an absent body as an empty one, in 48 as in the versions of Spin 3.x).
    let body = match request.body.is_empty() {
        true => None,
        false => {
            let body = outgoing.body().map_err(|()| unbuildable())?;
            let stream = body.write().map_err(|()| unbuildable())?;
            Some((stream, body))
        }
    };
    let future = outgoing_handler::handle(outgoing, None).map_err(http_failure)?;
    if let Some((stream, body)) = body {
        write_all(&stream, &request.body, deadline.as_mut()).await?;
        drop(stream);
        // As spin-sdk's body sink: the host's verdict arrives with the response.
        let _ = OutgoingBody::finish(body, None);
    }
    ready_within(future.subscribe(), deadline.as_mut()).await?;
    let response = match future.get() {
        Some(Ok(Ok(response))) => response,
        Some(Ok(Err(code))) => return Err(http_failure(code)),
        // Taken already: cannot happen, as `get` is called once.
        Some(Err(())) | None => return Err(unreadable()),
    };
    drop(future);
    let status = response.status();
    let headers: Vec<(String, String)> = response
        .headers()
        .entries()
        .into_iter()
        .map(|(n, v)| (n.to_ascii_lowercase(), String::from_utf8_lossy(&v).into_owned()))
        .collect();
    let length = content_length(headers.iter().find(|(n, _)| n == "content-length").map(|(_, v)| v.as_str()));
    // 204 and 304 never have a body; nor has a declared length of 0: no `consume`.
    let body = match (status, length) {
        (204 | 304, _) | (_, Some(0)) => Vec::new(),
        _ => read_all(&response, length, deadline.as_mut()).await?,
    };
    Ok(OutboundResponse { status, headers, body })
}

/// The request, without its body: one `fields.from-list` for every header (an explicit
/// `content-length`, so a body is never sent chunked: a form POST to the identity
/// platform, an empty POST to Graph: both are best sent plainly), `new`, and the
/// setters; the method only when not GET (wasi:http's default).
fn outgoing_request(request: &OutboundRequest) -> Option<OutgoingRequest> {
    // `url` starts with an origin that `settings::parse_origin` accepted.
    let (scheme, rest) = match request.url.split_once("://")? {
        ("https", rest) => (Scheme::Https, rest),
        (_, rest) => (Scheme::Http, rest),
    };
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let mut headers = Vec::with_capacity(request.headers.len() + 1);
    headers.push(("content-length".to_string(), request.body.len().to_string().into_bytes()));
    headers.extend(request.headers.iter().map(|(n, v)| (n.to_string(), v.clone().into_bytes())));
    let outgoing = OutgoingRequest::new(Fields::from_list(&headers).ok()?);
    if request.method != "GET" {
        outgoing.set_method(&Method::Post).ok()?;
    }
    outgoing.set_scheme(Some(&scheme)).ok()?;
    outgoing.set_authority(Some(authority)).ok()?;
    outgoing.set_path_with_query(Some(if path.is_empty() { "/" } else { path })).ok()?;
    Some(outgoing)
}

/// Writes `bytes` to a body stream as far as the host accepts them (`check-write`, then
/// `write`; a fresh wasi:http body takes a whole small body at once), waiting for room
/// only when there is none, within the deadline. No `flush`: the body's `finish` ends it.
async fn write_all(stream: &OutputStream, mut bytes: &[u8], mut deadline: Pin<&mut Sleep>) -> Result<(), SendFailure> {
    while !bytes.is_empty() {
        match stream.check_write() {
            Ok(0) => ready_within(stream.subscribe(), deadline.as_mut()).await?,
            Ok(room) => {
                let (now, later) = bytes.split_at(bytes.len().min(usize::try_from(room).unwrap_or(usize::MAX)));
                stream.write(now).map_err(|_| io_failure())?;
                bytes = later;
            }
            Err(_) => return Err(io_failure()),
        }
    }
    Ok(())
}

/// An answer's whole body: `consume`, `stream`, reads until the declared length is in
/// (no read only to learn that the stream ended) or the stream ends, waiting only when
/// a read finds nothing yet; then the stream and the body are dropped (no `finish`:
/// trailers are not read, so no `future-trailers` either).
async fn read_all(response: &IncomingResponse, length: Option<u64>, mut deadline: Pin<&mut Sleep>) -> Result<Vec<u8>, SendFailure> {
    let body = response.consume().map_err(|()| unreadable())?;
    let stream = body.stream().map_err(|()| unreadable())?;
    let mut data = Vec::new();
    loop {
        let wanted = match length {
            Some(length) if data.len() as u64 >= length => break,
            Some(length) => length - data.len() as u64,
            None => READ_SIZE,
        };
        match stream.read(wanted) {
            Ok(chunk) if chunk.is_empty() => ready_within(stream.subscribe(), deadline.as_mut()).await?,
            Ok(chunk) if data.is_empty() => data = chunk,
            Ok(chunk) => data.extend_from_slice(&chunk),
            Err(StreamError::Closed) => break,
            Err(StreamError::LastOperationFailed(_)) => return Err(unreadable()),
        }
    }
    drop(stream);
    drop(body);
    Ok(data)
}

/// Waits until the host reports `pollable` ready, or `deadline` passes first. The
/// pollable goes to spin's executor, which waits on every pending one in a single
/// `poll` call; whether this one was ready is known from its waker, without asking the
/// host again. The answer wins when both are ready (as the request's own future did
/// when it raced a timer).
async fn ready_within(pollable: Pollable, mut deadline: Pin<&mut Sleep>) -> Result<(), SendFailure> {
    let mut pollable = Some(pollable);
    let mut registration = None;
    poll_fn(|context| {
        let registration = registration.get_or_insert_with(|| Registration::new(pollable.take().unwrap(), context));
        if registration.poll_ready(context) {
            Poll::Ready(Ok(()))
        } else if deadline.as_mut().poll(context).is_ready() {
            Poll::Ready(Err(SendFailure::TimedOut))
        } else {
            Poll::Pending
        }
    })
    .await
}

/// What to ask of a body stream per read when no length is declared.
const READ_SIZE: u64 = 64 * 1024;

/// A `content-length` value, as the flow reads it.
pub fn content_length(value: Option<&str>) -> Option<u64> {
    value.and_then(|v| v.trim().parse::<u64>().ok())
}

fn http_failure(code: ErrorCode) -> SendFailure {
    SendFailure::Transport(transport_error(code))
}

fn io_failure() -> SendFailure {
    SendFailure::Transport(TransportError { code: "I/O error".into(), temporary: true })
}

fn unbuildable() -> SendFailure {
    SendFailure::Transport(TransportError { code: "the request could not be built".into(), temporary: false })
}

fn unreadable() -> SendFailure {
    SendFailure::Transport(TransportError { code: "the response could not be read".into(), temporary: true })
}

/// The host's reason, and whether it is worth another try: connection-level trouble
/// is; a request the host denies (not in `allowed_outbound_hosts`) or cannot form is not.
fn transport_error(code: ErrorCode) -> TransportError {
    TransportError {
        temporary: matches!(
            code,
            ErrorCode::DnsTimeout
                | ErrorCode::DestinationUnavailable
                | ErrorCode::ConnectionRefused
                | ErrorCode::ConnectionTerminated
                | ErrorCode::ConnectionTimeout
                | ErrorCode::ConnectionReadTimeout
                | ErrorCode::ConnectionWriteTimeout
                | ErrorCode::ConnectionLimitReached
                | ErrorCode::HttpResponseIncomplete
                | ErrorCode::HttpResponseTimeout
                // What wasmtime-wasi-http (Spin's too) reports for a connection the
                // server closed before answering: a dropped connection, worth a retry.
                // The load test with faults found it reported as lasting.
                | ErrorCode::HttpProtocolError
        ),
        code: describe(&code).into(),
    }
}

/// The host's error code in words. Written out rather than `Debug`-printed: the derived
/// `Debug` of the whole `error-code` variant costs the component kilobytes.
fn describe(code: &ErrorCode) -> &'static str {
    match code {
        ErrorCode::HttpRequestDenied => "HttpRequestDenied: the host refused it; check allowed_outbound_hosts in spin.toml",
        ErrorCode::DnsTimeout => "DnsTimeout",
        ErrorCode::DnsError(_) => "DnsError",
        ErrorCode::DestinationNotFound => "DestinationNotFound",
        ErrorCode::DestinationUnavailable => "DestinationUnavailable",
        ErrorCode::ConnectionRefused => "ConnectionRefused",
        ErrorCode::ConnectionTerminated => "ConnectionTerminated",
        ErrorCode::ConnectionTimeout => "ConnectionTimeout",
        ErrorCode::ConnectionReadTimeout => "ConnectionReadTimeout",
        ErrorCode::ConnectionWriteTimeout => "ConnectionWriteTimeout",
        ErrorCode::ConnectionLimitReached => "ConnectionLimitReached",
        ErrorCode::TlsProtocolError => "TlsProtocolError",
        ErrorCode::TlsCertificateError => "TlsCertificateError",
        ErrorCode::TlsAlertReceived(_) => "TlsAlertReceived",
        ErrorCode::HttpResponseIncomplete => "HttpResponseIncomplete",
        ErrorCode::HttpResponseTimeout => "HttpResponseTimeout",
        ErrorCode::HttpProtocolError => "HttpProtocolError",
        _ => "an HTTP error",
    }
}

/// Waits `duration` on the host's monotonic clock (a wasi pollable the executor blocks
/// on), so a wait costs no CPU; and costs the host one `subscribe-duration` (and the
/// pollable's drop) only once it is first polled: no clock reading, and nothing at all
/// for a wait that is created but never needed.
struct Sleep {
    duration: Duration,
    registration: Option<Registration>,
}

impl Sleep {
    fn new(duration: Duration) -> Sleep {
        Sleep { duration, registration: None }
    }
}

impl Future for Sleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<()> {
        match &self.registration {
            Some(registration) if registration.poll_ready(context) => Poll::Ready(()),
            Some(_) => Poll::Pending,
            None if self.duration.is_zero() => Poll::Ready(()),
            None => {
                let nanos = u64::try_from(self.duration.as_nanos()).unwrap_or(u64::MAX);
                self.registration = Some(Registration::new(monotonic_clock::subscribe_duration(nanos), context));
                Poll::Pending
            }
        }
    }
}

/// A host pollable handed to spin's executor, which waits on all pending ones in one
/// `poll` call and drops each once it is ready. Whether it was ready is known from its
/// own waker, not by asking the host (`ready`) again; dropping the registration while
/// it still waits drops the pollable (one call), as cancelling must.
struct Registration {
    ready: Arc<Ready>,
    _pollable: CancelOnDropToken,
}

impl Registration {
    fn new(pollable: Pollable, context: &Context<'_>) -> Registration {
        let ready = Arc::new(Ready { fired: AtomicBool::new(false), waker: AtomicWaker::new() });
        ready.waker.register(context.waker());
        let token = spin_executor::push_waker_and_get_token(pollable, Waker::from(ready.clone()));
        Registration { ready, _pollable: token.into() }
    }

    /// Whether the host has reported the pollable ready; if not yet, `context`'s task
    /// is the one to wake when it is.
    fn poll_ready(&self, context: &Context<'_>) -> bool {
        if self.ready.fired.load(Ordering::Acquire) {
            return true;
        }
        self.ready.waker.register(context.waker());
        self.ready.fired.load(Ordering::Acquire)
    }
}

/// The waker the executor calls when a registered pollable is ready: notes it, then
/// wakes the task that waits.
struct Ready {
    fired: AtomicBool,
    waker: AtomicWaker,
}

impl Wake for Ready {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.fired.store(true, Ordering::Release);
        self.waker.wake();
    }
}

/// The incoming request's body, as a stream of chunks for [`crate::inbound::incoming::read_body`].
/// Lazy: a request whose body is never read (`/healthz`, a rejected caller) or declared
/// empty never `consume`s it. Reads stop once the declared `Content-Length` is in (no
/// read only to learn that the stream ended); a read that finds nothing yet waits on
/// the stream's pollable. The host's error text is dropped: it is of no use to the caller.
pub struct RequestBody {
    // Dropped in this order: the pollable before its stream, the stream before its body.
    registration: Option<Registration>,
    stream: Option<InputStream>,
    body: Option<IncomingBody>,
    request: Option<IncomingRequest>,
    /// The declared `Content-Length`, if any.
    declared: Option<u64>,
    received: u64,
    ended: bool,
}

impl RequestBody {
    pub fn new(request: IncomingRequest, declared: Option<u64>) -> RequestBody {
        RequestBody { registration: None, stream: None, body: None, request: Some(request), declared, received: 0, ended: false }
    }

    /// `consume` and `stream`, once.
    fn open(&mut self) -> Option<&InputStream> {
        if self.stream.is_none() {
            let body = self.request.take()?.consume().ok()?;
            self.stream = Some(body.stream().ok()?);
            self.body = Some(body);
        }
        self.stream.as_ref()
    }
}

impl Stream for RequestBody {
    type Item = Result<Vec<u8>, ()>;

    fn poll_next(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        let wanted = match this.declared {
            _ if this.ended => return Poll::Ready(None),
            Some(declared) if this.received >= declared => return Poll::Ready(None),
            Some(declared) => declared - this.received,
            None => READ_SIZE,
        };
        match &this.registration {
            Some(registration) if !registration.poll_ready(context) => return Poll::Pending,
            _ => this.registration = None,
        }
        let Some(stream) = this.open() else {
            this.ended = true;
            return Poll::Ready(Some(Err(())));
        };
        match stream.read(wanted) {
            Ok(chunk) if chunk.is_empty() => {
                let pollable = stream.subscribe();
                this.registration = Some(Registration::new(pollable, context));
                Poll::Pending
            }
            Ok(chunk) => {
                this.received += chunk.len() as u64;
                Poll::Ready(Some(Ok(chunk)))
            }
            Err(StreamError::Closed) => {
                this.ended = true;
                Poll::Ready(None)
            }
            Err(StreamError::LastOperationFailed(_)) => {
                this.ended = true;
                Poll::Ready(Some(Err(())))
            }
        }
    }
}

/// Answers: one `fields.from-list` for all headers, `new`, the status only when it is
/// not 200 (wasi:http's default), the body, `set`, then the body in
/// `blocking-write-and-flush` calls of at most 4096 bytes (one for nearly every answer;
/// blocking is harmless here, nothing else is left to do), and `finish`. If the host
/// refuses any of it there is no one left to tell.
pub fn respond(out: ResponseOutparam, status: u16, headers: Vec<(String, String)>, body: &[u8]) {
    let headers: Vec<(String, Vec<u8>)> = headers.into_iter().map(|(n, v)| (n, v.into_bytes())).collect();
    let Ok(fields) = Fields::from_list(&headers) else {
        return;
    };
    let response = OutgoingResponse::new(fields);
    if status != 200 {
        let _ = response.set_status_code(status);
    }
    let Ok(outgoing) = response.body() else {
        return;
    };
    out.set(response);
    let Ok(stream) = outgoing.write() else {
        return;
    };
    for chunk in body.chunks(4096) {
        if stream.blocking_write_and_flush(chunk).is_err() {
            break;
        }
    }
    drop(stream);
    let _ = OutgoingBody::finish(outgoing, None);
}

/// Time on the host's monotonic clock, for budgets and durations.
pub fn monotonic_now() -> Duration {
    Duration::from_nanos(monotonic_clock::now())
}

/// A fresh random GUID, for a `client-request-id` the caller did not send.
pub fn random_guid() -> Guid {
    let bytes = spin_sdk::wit::wasi::random0_2_6::random::get_random_bytes(16);
    Guid::from_random_bytes(bytes.try_into().unwrap_or([0; 16]))
}

/// The wall-clock time, RFC 3339 UTC to the second, for logs and `innerError.date`.
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(SystemTime::now()).to_string()
}

/// Writes one log line to stdout.
pub fn log(line: &str) {
    // Straight to wasi:cli/stdout: std's `println!` machinery costs ~3 KiB.
    let stdout = wasi::cli::stdout::get_stdout();
    // `blocking-write-and-flush` takes at most 4096 bytes a call.
    for chunk in [line.as_bytes(), b"\n"].concat().chunks(4096) {
        if stdout.blocking_write_and_flush(chunk).is_err() {
            break;
        }
    }
}
