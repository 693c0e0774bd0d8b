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
    /// Who called, once authenticated: `apiKey:<position in api_keys>`, or for an Entra ID
    /// access token `oid:<object id, lower case>`; never the key or the token.
    pub caller: Option<String>,
    /// For an Entra ID access token, the calling application's client id (`appid` or `azp`).
    pub caller_app: Option<String>,
    pub user_ids: Vec<String>,
    /// The abuse brake: `engaged` (refused, nothing sent) or `unavailable` (the store
    /// could not count; let through); `None` when it counted and allowed, was off, or
    /// did not apply (a dry run, a rejected request).
    pub brake: Option<&'static str>,
    /// The caller's count in the window (this request's users included) and the limit,
    /// whenever the brake counted.
    pub brake_count: Option<(u64, u64)>,
    pub outbound_calls: u32,
    pub token_from_cache: bool,
    /// For the log: `ok`, `revoked`, `partial` (some of many failed), `whatIf`, or the
    /// code of the status many users were answered with.
    pub outcome: &'static str,
}
