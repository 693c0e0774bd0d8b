//! Outgoing HTTP: Spin's `allowed_outbound_hosts` check in front of a real HTTP client.
//!
//! An allowed request goes out through `wasmtime_wasi_http::default_send_request` (plain
//! TCP or TLS, with the guest's request options as timeouts), so the component talks to a
//! real server, usually the [`MockServer`]. A refused request is recorded (see
//! [`TestApp::denied_outbound`]) and fails with `HTTP-request-denied`, the error Spin
//! gives, so a test sees both the component's reaction and the cause.
//!
//! [`MockServer`]: crate::MockServer
//! [`TestApp::denied_outbound`]: crate::TestApp::denied_outbound

use std::future::Future;
use std::sync::{Arc, Mutex};

use http_body_util::BodyExt;
use wasmtime_wasi_http::{Error, RequestOptions, Result, WasiBody, WasiHttpHooks};

use crate::allowed_hosts::AllowedHosts;

/// The `wasi:http` hooks of one request.
pub(crate) struct OutboundPolicy {
    pub(crate) allowed: Arc<AllowedHosts>,
    /// Shared with the [`TestApp`](crate::TestApp): every refused URL.
    pub(crate) denied: Arc<Mutex<Vec<String>>>,
    /// Shared with the [`TestApp`](crate::TestApp): allowed by the manifest, but not on
    /// loopback, so not sent: tests and benchmarks never leave 127.0.0.1.
    pub(crate) kept_off_network: Arc<Mutex<Vec<String>>>,
}

type SendFuture = Box<
    dyn Future<
            Output = Result<(
                http::Response<WasiBody>,
                Box<dyn Future<Output = Result<()>> + Send>,
            )>,
        > + Send,
>;

impl WasiHttpHooks for OutboundPolicy {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        _fut: Box<dyn Future<Output = Result<()>> + Send>,
    ) -> SendFuture {
        if !self.allowed.allows(request.uri()) {
            let url = describe(request.uri());
            eprintln!("test host: denied outbound request to {url}: not in allowed_outbound_hosts");
            self.denied.lock().unwrap().push(url);
            // Dropped inside the future, like Spin drops it in its sending task: a guest
            // still writing the body sees the stream close only once the guest yields.
            return Box::new(async move {
                drop(request);
                Err(Error::HttpRequestDenied)
            });
        }
        if !is_loopback(request.uri()) {
            let url = describe(request.uri());
            eprintln!("test host: kept {url} off the network: tests only reach 127.0.0.1");
            self.kept_off_network.lock().unwrap().push(url);
            return Box::new(async move {
                drop(request);
                Err(Error::DestinationNotFound)
            });
        }
        Box::new(async move {
            let (response, io) = wasmtime_wasi_http::default_send_request(request, options).await?;
            Ok((
                response.map(BodyExt::boxed_unsync),
                Box::new(io) as Box<dyn Future<Output = Result<()>> + Send>,
            ))
        })
    }
}

/// Whether the request stays on this machine (the mocks bind 127.0.0.1).
fn is_loopback(uri: &http::Uri) -> bool {
    match uri.host() {
        Some("localhost") => true,
        Some(host) => host
            .trim_matches(|c| c == '[' || c == ']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback()),
        None => false,
    }
}

/// `scheme://host:port/path?query`, with the port always spelled out.
fn describe(uri: &http::Uri) -> String {
    let scheme = uri.scheme_str().unwrap_or("https");
    let host = uri.host().unwrap_or("");
    let port = uri
        .port_u16()
        .unwrap_or(if scheme == "http" { 80 } else { 443 });
    let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    format!("{scheme}://{host}:{port}{path}")
}
