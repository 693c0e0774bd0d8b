//! Outgoing HTTP: Spin's `allowed_outbound_hosts` check in front of a real HTTP client.
//!
//! Like Spin, the allowed hosts are resolved on the instance's first outbound request:
//! every application variable through the providers (`resolver.prepare()`), once per
//! instance, shared by its later requests. If that resolution fails (an Azure Key
//! Vault miss, a variable no provider answers), every outbound request of the instance
//! is refused with `HTTP-request-denied`, as Spin does.
//!
//! An allowed request goes out through the app's [`OutboundClient`] (Spin's pooled client,
//! with the guest's request options as timeouts), so the component talks to a real
//! server, usually the [`MockServer`]. A refused request is recorded (see
//! [`TestApp::denied_outbound`]) and fails with `HTTP-request-denied`, the error Spin
//! gives, so a test sees both the component's reaction and the cause.
//!
//! [`MockServer`]: crate::MockServer
//! [`TestApp::denied_outbound`]: crate::TestApp::denied_outbound

use std::future::Future;
use std::sync::{Arc, Mutex};

use wasmtime_wasi_http::{Error, RequestOptions, Result, WasiBody, WasiHttpHooks};

use crate::allowed_hosts::AllowedHosts;
use crate::outbound_client::OutboundClient;
use crate::template::Template;
use crate::variables::{render_prepared, Variables};

/// The `wasi:http` hooks of one request.
pub(crate) struct OutboundPolicy {
    /// `allowed_outbound_hosts`, resolved on first use by this instance.
    pub(crate) allowed: AllowedHostsCheck,
    /// Shared with the [`TestApp`](crate::TestApp): every refused URL.
    pub(crate) denied: Arc<Mutex<Vec<String>>>,
    /// Shared with the [`TestApp`](crate::TestApp): allowed by the manifest, but not on
    /// loopback, so not sent: tests and benchmarks never leave 127.0.0.1.
    pub(crate) kept_off_network: Arc<Mutex<Vec<String>>>,
    /// The app's client: its pool is shared by all the app's instances.
    pub(crate) client: OutboundClient,
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
        let allowed = self.allowed.clone();
        let denied = self.denied.clone();
        let kept_off_network = self.kept_off_network.clone();
        let client = self.client.clone();
        Box::new(async move {
            let url = describe(request.uri());
            let refusal = match allowed.resolve().await {
                Ok(hosts) if hosts.allows(request.uri()) => None,
                Ok(_) => Some("not in allowed_outbound_hosts".to_string()),
                Err(e) => Some(format!("resolving allowed_outbound_hosts failed: {e}")),
            };
            if let Some(reason) = refusal {
                eprintln!("test host: denied outbound request to {url}: {reason}");
                denied.lock().unwrap().push(url);
                // Dropped inside the future, like Spin drops it in its sending task: a
                // guest still writing the body sees the stream close only once it yields.
                drop(request);
                return Err(Error::HttpRequestDenied);
            }
            if !is_loopback(request.uri()) {
                eprintln!("test host: kept {url} off the network: tests only reach 127.0.0.1");
                kept_off_network.lock().unwrap().push(url);
                drop(request);
                return Err(Error::DestinationNotFound);
            }
            let response = client.send(request, options).await?;
            // The connection is driven by the client's own task, not by this future.
            Ok((response, Box::new(async { Ok(()) }) as Box<dyn Future<Output = Result<()>> + Send>))
        })
    }
}

/// One instance's `allowed_outbound_hosts`: resolved on its first outbound request,
/// then shared by the instance's later ones (Spin's shared `allowed_hosts_future`).
#[derive(Clone)]
pub(crate) struct AllowedHostsCheck {
    variables: Arc<Variables>,
    templates: Arc<Vec<Template>>,
    resolved: Arc<tokio::sync::OnceCell<std::result::Result<Arc<AllowedHosts>, String>>>,
}

impl AllowedHostsCheck {
    /// A check for a new instance: nothing resolved yet.
    pub(crate) fn new(variables: Arc<Variables>, templates: Arc<Vec<Template>>) -> AllowedHostsCheck {
        AllowedHostsCheck { variables, templates, resolved: Default::default() }
    }

    async fn resolve(&self) -> std::result::Result<Arc<AllowedHosts>, String> {
        self.resolved
            .get_or_init(|| async {
                let values = self.variables.prepare().await?;
                let hosts = self
                    .templates
                    .iter()
                    .map(|t| render_prepared(t, &values))
                    .collect::<anyhow::Result<Vec<_>>>()
                    .map_err(|e| format!("{e:#}"))?;
                AllowedHosts::parse(&hosts)
                    .map(Arc::new)
                    .map_err(|e| format!("allowed_outbound_hosts resolved to {hosts:?}: {e:#}"))
            })
            .await
            .clone()
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
