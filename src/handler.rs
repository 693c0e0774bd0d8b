//! The wasi:http edge: turns the incoming request into [`Incoming`] and a stream of
//! body chunks, runs the flow on [`WasiHost`], writes the reply and the log line.
//!
//! Nothing here can fail in a way the caller does not see as JSON: every error
//! goes through [`response::error`], the one mapping.

use spin_sdk::http::{IncomingRequest, ResponseOutparam};

use crate::inbound::guid::Guid;
use crate::platform::host::{self, WasiHost};
use crate::inbound::incoming::Incoming;
use crate::reply::log::LogLine;
use crate::reply::response;
use crate::service::serve;
use crate::reply::trace::{Correlation, Trace};

/// Handles one request from start to log line.
pub async fn handle(request: IncomingRequest, out: ResponseOutparam) {
    let started = host::monotonic_now();
    let wasi = WasiHost::default();
    let path_with_query = request.path_with_query().unwrap_or_default();
    let (path, query) = path_with_query.split_once('?').unwrap_or((&path_with_query, ""));
    let incoming = Incoming {
        method: request.method().to_string(),
        path: path.to_string(),
        query: query.to_string(),
        headers: request
            .headers()
            .entries()
            .into_iter()
            .map(|(n, v)| (n.to_ascii_lowercase(), String::from_utf8_lossy(&v).into_owned()))
            .collect(),
    };
    // The caller's id is echoed only when it is a GUID, so it cannot carry anything else.
    let client_request_id = incoming
        .header("client-request-id")
        .filter(|id| Guid::parse(id).is_some())
        .map(str::to_string)
        .unwrap_or_else(|| host::random_guid().to_string());
    let mut trace = Trace {
        started,
        route: "unrouted",
        outcome: "ok",
        correlation: Correlation { client_request_id, graph_request_id: None },
        ..Trace::default()
    };

    // Read (lazily) only once the caller is authenticated.
    let body = host::RequestBody::new(request, host::content_length(incoming.header("content-length")));
    let result = serve(&wasi, &incoming, body, &mut trace).await;
    // One wall-clock reading: the error's `date` and the log line's `time` both say
    // when the request ended.
    let now = host::now_rfc3339();
    let (reply, outcome) = match result {
        Ok(reply) => (reply, trace.outcome),
        Err(error) => (response::error(&error, &trace.correlation, &now), error.code()),
    };

    host::log(
        &LogLine {
            time: now,
            method: incoming.method,
            route: trace.route,
            outcome,
            status: reply.status,
            caller: trace.caller,
            caller_app: trace.caller_app,
            user_ids: trace.user_ids,
            brake: trace.brake,
            brake_count: trace.brake_count.map(|(count, _)| count),
            brake_limit: trace.brake_count.map(|(_, limit)| limit),
            client_request_id: trace.correlation.client_request_id,
            graph_request_id: trace.correlation.graph_request_id,
            outbound_calls: trace.outbound_calls,
            token_from_cache: trace.token_from_cache,
            duration_ms: host::monotonic_now().saturating_sub(started).as_millis() as u64,
        }
        .to_json(),
    );
    host::respond(out, reply.status, reply.headers, &reply.body);
}
