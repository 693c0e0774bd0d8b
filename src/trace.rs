//! What one request did, for its log line and its response headers: the per-request
//! state every step may add to. A leaf: it depends on nothing else in the crate.

use std::time::Duration;

/// The ids that tie a request to Graph's logs.
#[derive(Debug, Clone, Default)]
pub struct Correlation {
    /// The caller's `client-request-id` if it was a GUID, else a fresh one; also sent to Graph.
    pub client_request_id: String,
    /// Graph's `request-id`, once Graph has answered.
    pub graph_request_id: Option<String>,
}

/// What the flow did, for the log line and the response headers.
#[derive(Debug, Default)]
pub struct Trace {
    /// When the request arrived, on the host's monotonic clock: the time budget runs from here.
    pub started: Duration,
    pub route: &'static str,
    pub correlation: Correlation,
    /// Who called, once authenticated: `apiKey:<position in api_keys>`; never the key.
    pub caller: Option<String>,
    pub user_ids: Vec<String>,
    pub outbound_calls: u32,
    pub token_from_cache: bool,
    /// For the log: `ok`, `revoked`, `partial` (some of many failed), `whatIf`, or the
    /// code of the status many users were answered with.
    pub outcome: &'static str,
}
