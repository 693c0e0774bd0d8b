//! The host's outbound HTTP client, as Spin 3.5 and later have it: one client per app,
//! whose idle connections outlive the instance that opened them.
//!
//! Spin 3.5 (spinframework/spin#3229, #3240) sends a guest's outbound request through a
//! `hyper_util` legacy client kept in the app's state, so a connection opened by one
//! instance is reused by the next request's instance: a warm revoke in real Spin 3.6.3 /
//! 4.0.2 opens no TCP connection of its own. `[outbound_http] connection_pooling = false`
//! in the runtime config turns that off (Spin then keeps no idle connection: a
//! connection per request, as Spin before 3.5 and wasmtime's `default_send_request`
//! did). The timeouts are the guest's request options, applied where Spin applies them:
//! connect (to a new connection only: a pooled one is ready), first byte (the whole
//! wait for the response head), between bytes (each body frame). Errors map as Spin maps
//! them: a connect timeout is `ConnectionTimeout`, a failed connect `ConnectionRefused`,
//! no head in time `ConnectionReadTimeout`, anything else the client reports
//! `HttpProtocolError`.

use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::Uri;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;
use wasmtime_wasi_http::{Error, RequestOptions, WasiBody};

/// wasmtime's default for a timeout the guest did not set (Spin's is the same).
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);

tokio::task_local! {
    /// The connect timeout of the request being sent: the connector cannot take it as
    /// a parameter (Spin passes its connect options the same way).
    static CONNECT_TIMEOUT: Duration;
}

/// One app's outbound client; clones share the pool.
#[derive(Clone)]
pub(crate) struct OutboundClient {
    client: Client<Connector, WasiBody>,
}

impl OutboundClient {
    /// A client whose connections are reused across requests and instances when
    /// `pooling` is on (Spin's default), or closed after each request when it is off.
    pub(crate) fn new(pooling: bool) -> OutboundClient {
        let mut builder = Client::builder(TokioExecutor::new());
        if !pooling {
            builder.pool_max_idle_per_host(0);
        }
        OutboundClient { client: builder.build(Connector) }
    }

    /// Sends one request (absolute URI) and waits for the response head.
    pub(crate) async fn send(&self, request: http::Request<WasiBody>, options: Option<RequestOptions>) -> Result<http::Response<WasiBody>, Error> {
        let timeout = |pick: fn(&RequestOptions) -> Option<Duration>| options.as_ref().and_then(pick).unwrap_or(DEFAULT_TIMEOUT);
        let connect_timeout = timeout(|o| o.connect_timeout);
        let first_byte_timeout = timeout(|o| o.first_byte_timeout);
        // Tokio's interval panics on zero; 1 ns is as good as zero.
        let between_bytes_timeout = timeout(|o| o.between_bytes_timeout).max(Duration::from_nanos(1));

        let sending = CONNECT_TIMEOUT.scope(connect_timeout, self.client.request(request));
        let response = tokio::time::timeout(first_byte_timeout, sending)
            .await
            .map_err(|_| Error::ConnectionReadTimeout)?
            .map_err(client_error)?;
        Ok(response.map(|incoming| TimedBody::new(incoming, between_bytes_timeout).boxed_unsync()))
    }
}

/// Spin's mapping of a client error: the connector's own failure when there is one,
/// otherwise a protocol error.
fn client_error(error: hyper_util::client::legacy::Error) -> Error {
    let cause = std::error::Error::source(&error).and_then(|cause| cause.downcast_ref::<ConnectFailure>());
    match cause {
        Some(ConnectFailure::Timeout) => Error::ConnectionTimeout,
        Some(ConnectFailure::Refused) => Error::ConnectionRefused,
        None => Error::HttpProtocolError,
    }
}

/// Opens plain TCP connections (the tests' mocks speak HTTP/1.1 on loopback).
#[derive(Clone)]
struct Connector;

#[derive(Debug)]
enum ConnectFailure {
    Timeout,
    Refused,
}

impl std::fmt::Display for ConnectFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ConnectFailure::Timeout => "connect timed out",
            ConnectFailure::Refused => "connection refused",
        })
    }
}

impl std::error::Error for ConnectFailure {}

impl tower_service::Service<Uri> for Connector {
    type Response = TokioIo<TcpStream>;
    type Error = ConnectFailure;
    type Future = Pin<Box<dyn std::future::Future<Output = Result<Self::Response, ConnectFailure>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), ConnectFailure>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        // Read now: the client may finish this connect in a task of its own, outside the
        // request's scope, when a pooled connection frees up first.
        let connect_timeout = CONNECT_TIMEOUT.try_with(|t| *t).unwrap_or(DEFAULT_TIMEOUT);
        Box::pin(async move {
            let host = uri.host().ok_or(ConnectFailure::Refused)?.trim_matches(|c| c == '[' || c == ']').to_string();
            let port = uri.port_u16().unwrap_or(80);
            let stream = tokio::time::timeout(connect_timeout, TcpStream::connect((host.as_str(), port)))
                .await
                .map_err(|_| ConnectFailure::Timeout)?
                .map_err(|_| ConnectFailure::Refused)?;
            Ok(TokioIo::new(stream))
        })
    }
}

/// A response body that fails with `ConnectionReadTimeout` when no frame comes within
/// the between-bytes timeout.
struct TimedBody {
    incoming: hyper::body::Incoming,
    timer: tokio::time::Interval,
}

impl TimedBody {
    fn new(incoming: hyper::body::Incoming, between_bytes: Duration) -> TimedBody {
        let mut timer = tokio::time::interval(between_bytes);
        timer.reset();
        TimedBody { incoming, timer }
    }
}

impl Body for TimedBody {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        match Pin::new(&mut self.incoming).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                self.timer.reset();
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(if e.is_timeout() { Error::HttpResponseTimeout } else { Error::from(e) }))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => {
                ready!(self.timer.poll_tick(cx));
                Poll::Ready(Some(Err(Error::ConnectionReadTimeout)))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.incoming.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.incoming.size_hint()
    }
}
