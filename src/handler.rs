//! The wasi:http edge: turns the incoming request into [`Incoming`] and a stream of
//! body chunks, runs the flow on [`WasiHost`], writes the reply and the log line.
//!
//! Nothing here can fail in a way the caller does not see as JSON: every error
//! goes through [`response::error`], the one mapping.

use futures::StreamExt;
use spin_sdk::http::{Fields, IncomingRequest, OutgoingResponse, ResponseOutparam};

use crate::guid::Guid;
use crate::host::{self, WasiHost};
use crate::incoming::Incoming;
use crate::log::LogLine;
use crate::response::{self, Reply};
use crate::service::serve;
use crate::trace::{Correlation, Trace};

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

    // The host's error text is dropped: it is of no use to the caller.
    let body = request.into_body_stream().map(|chunk| chunk.map_err(|_| ()));
    let result = serve(&wasi, &incoming, body, &mut trace).await;
    let (reply, outcome) = match result {
        Ok(reply) => (reply, trace.outcome),
        Err(error) => (response::error(&error, &trace.correlation, &host::now_rfc3339()), error.code()),
    };

    host::log(
        &LogLine {
            time: host::now_rfc3339(),
            method: incoming.method,
            route: trace.route,
            outcome,
            status: reply.status,
            caller: trace.caller,
            user_ids: trace.user_ids,
            client_request_id: trace.correlation.client_request_id,
            graph_request_id: trace.correlation.graph_request_id,
            outbound_calls: trace.outbound_calls,
            token_from_cache: trace.token_from_cache,
            duration_ms: host::monotonic_now().saturating_sub(started).as_millis() as u64,
        }
        .to_json(),
    );
    write(out, reply).await;
}

/// Writes the reply; if the host refuses it there is no one left to tell.
async fn write(out: ResponseOutparam, reply: Reply) {
    let headers: Vec<(String, Vec<u8>)> = reply.headers.into_iter().map(|(n, v)| (n, v.into_bytes())).collect();
    let Ok(fields) = Fields::from_list(&headers) else {
        return;
    };
    let response = OutgoingResponse::new(fields);
    let _ = response.set_status_code(reply.status);
    let _ = out.set_with_body(response, reply.body).await;
}
