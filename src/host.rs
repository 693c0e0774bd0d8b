//! The one module that touches the host: Spin variables, the key-value store, outbound
//! HTTP, clocks, randomness and stdout. [`WasiHost`] is the component's implementation of
//! the seam ([`crate::seam::Host`]) through which the flow reaches all of these; the
//! handler (the wasi:http edge) also uses the free functions here directly.
//!
//! Interfaces are the standard WASI ones named in `wit/world.wit`
//! (`wasi:config/store`, `wasi:keyvalue/store`, `wasi:http/outgoing-handler`,
//! `wasi:clocks/*`, ...). `wasi:config` and `wasi:keyvalue` go through
//! [`crate::bindings`], generated from `wit/world.wit` itself; wasi:http, clocks, random
//! and stdout through spin-sdk's bindings (and the `wasi` crate its executor is built on).

use std::cell::OnceCell;
use std::future::Future;
use std::pin::{pin, Pin};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use futures::future::{self, Either};
use futures::SinkExt;
use spin_executor::CancelOnDropToken;
use spin_sdk::http::{ErrorCode, Fields, IncomingResponse, Method, OutgoingRequest, Scheme, SendError};
use wasi::clocks::monotonic_clock;

use crate::bindings::wasi::config::store as config;
use crate::bindings::wasi::keyvalue::store as key_value;
use crate::guid::Guid;
use crate::outbound::{OutboundRequest, OutboundResponse, SendFailure, TransportError};
use crate::seam::Host;

/// The host as WASI gives it, for one request.
#[derive(Default)]
pub struct WasiHost {
    /// The key-value store `default`, opened on first use (a request that needs no token
    /// never opens it); `None` inside when the host has none or refuses it: the token
    /// cache then simply misses, and every request fetches its own token.
    store: OnceCell<Option<key_value::Bucket>>,
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
        sleep(duration).await
    }

    fn monotonic_now(&self) -> Duration {
        monotonic_now()
    }

    fn wall_now(&self) -> SystemTime {
        SystemTime::now()
    }

    fn random_u32(&self) -> u32 {
        spin_sdk::wit::wasi::random0_2_6::random::get_random_u64() as u32
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
}

/// Sends one request through `wasi:http/outgoing-handler`, giving up after `timeout`
/// (the rest of the time budget), so a hung upstream cannot hold the request.
/// Redirects are not followed (wasi:http never does), so `Authorization` never leaves
/// its origin.
async fn send(request: OutboundRequest, timeout: Duration) -> Result<OutboundResponse, SendFailure> {
    match future::select(pin!(exchange(request)), pin!(sleep(timeout))).await {
        Either::Left((result, _)) => result.map_err(|e| SendFailure::Transport(transport_error(e))),
        Either::Right(_) => Err(SendFailure::TimedOut),
    }
}

/// One request and its whole answer, on wasi:http's own resources: spin-sdk's
/// `Request`/`Response` would bring `anyhow` (and with it std's backtrace printer and
/// symbol demangler), `http::Uri` and Unicode case tables, ~80 KiB of the component.
async fn exchange(request: OutboundRequest) -> Result<OutboundResponse, SendError> {
    let unbuildable = || SendError::RequestConversion("".into());
    // `url` starts with an origin that `settings::parse_origin` accepted.
    let (scheme, rest) = match request.url.split_once("://") {
        Some(("https", rest)) => (Scheme::Https, rest),
        Some((_, rest)) => (Scheme::Http, rest),
        None => return Err(unbuildable()),
    };
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    // An explicit length, so the body is not sent chunked (a form POST to the identity
    // platform, an empty POST to Graph: both are best sent plainly).
    let mut headers = vec![("content-length".to_string(), request.body.len().to_string().into_bytes())];
    headers.extend(request.headers.into_iter().map(|(n, v)| (n.to_string(), v.into_bytes())));
    let outgoing = OutgoingRequest::new(Fields::from_list(&headers).map_err(|_| unbuildable())?);
    let method = if request.method == "GET" { Method::Get } else { Method::Post };
    if outgoing.set_method(&method).is_err()
        || outgoing.set_scheme(Some(&scheme)).is_err()
        || outgoing.set_authority(Some(authority)).is_err()
        || outgoing.set_path_with_query(Some(if path.is_empty() { "/" } else { path })).is_err()
    {
        return Err(unbuildable());
    }
    let mut body = outgoing.take_body();
    let write_body = async move {
        let written = body.send(request.body).await;
        drop(body); // finishes the body
        written.map_err(SendError::Io)
    };
    // `send` hands the request to the host on its first poll; the body follows.
    let (response, ()) = future::try_join(spin_sdk::http::send::<_, IncomingResponse>(outgoing), write_body).await?;
    let status = response.status();
    let headers = response
        .headers()
        .entries()
        .into_iter()
        .map(|(n, v)| (n.to_ascii_lowercase(), String::from_utf8_lossy(&v).into_owned()))
        .collect();
    let body = response.into_body().await.map_err(|_| SendError::ResponseConversion("".into()))?;
    Ok(OutboundResponse { status, headers, body })
}

/// The host's reason, and whether it is worth another try: connection-level trouble
/// is; a request the host denies (not in `allowed_outbound_hosts`) or cannot form is not.
fn transport_error(error: SendError) -> TransportError {
    match error {
        SendError::Http(code) => TransportError {
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
        },
        SendError::Io(_) => TransportError { code: "I/O error".into(), temporary: true },
        SendError::RequestConversion(_) => TransportError { code: "the request could not be built".into(), temporary: false },
        SendError::ResponseConversion(_) => TransportError { code: "the response could not be read".into(), temporary: true },
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

/// Waits on the host's monotonic clock (a wasi pollable the executor blocks on), so a
/// wait costs no CPU.
fn sleep(duration: Duration) -> Sleep {
    let nanos = u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX);
    Sleep { deadline: monotonic_clock::now().saturating_add(nanos), registration: None }
}

/// The future of [`sleep`].
struct Sleep {
    deadline: monotonic_clock::Instant,
    /// Keeps the executor's wake-up registered; dropping it (a cancelled wait) unregisters.
    registration: Option<CancelOnDropToken>,
}

impl Future for Sleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<()> {
        if monotonic_clock::now() >= self.deadline {
            self.registration = None;
            return Poll::Ready(());
        }
        let pollable = monotonic_clock::subscribe_instant(self.deadline);
        self.registration = Some(spin_executor::push_waker_and_get_token(pollable, context.waker().clone()).into());
        Poll::Pending
    }
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
