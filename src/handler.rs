//! The wasi:http edge: turns the incoming request into [`Incoming`], runs the
//! flow, writes the reply and the log line.
//!
//! Nothing here can fail in a way the caller does not see as JSON: every error
//! goes through [`response::error`], the one mapping.

use futures::StreamExt;
use spin_sdk::http::{Fields, IncomingRequest, OutgoingResponse, ResponseOutparam};

use crate::error::Error;
use crate::guid::Guid;
use crate::host;
use crate::log::LogLine;
use crate::request_body::MAX_BODY_BYTES;
use crate::response::{self, Correlation, Reply};
use crate::service::{serve, Incoming, Trace};

/// Handles one request from start to log line.
pub async fn handle(request: IncomingRequest, out: ResponseOutparam) {
    let started = host::monotonic_now();
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

    let content_length = incoming.header("content-length").and_then(|v| v.trim().parse::<u64>().ok());
    let result = serve(&incoming, read_body(request, content_length), &mut trace).await;
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

/// Reads the body, refusing it as soon as it passes [`MAX_BODY_BYTES`]: a declared
/// `Content-Length` over the limit is refused before a byte is read.
async fn read_body(request: IncomingRequest, content_length: Option<u64>) -> Result<Vec<u8>, Error> {
    let too_large = || Error::PayloadTooLarge(format!("The body is larger than {} KiB.", MAX_BODY_BYTES / 1024));
    if content_length.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
        return Err(too_large());
    }
    let mut body = Vec::new();
    let mut chunks = request.into_body_stream();
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk.map_err(|_| Error::InvalidRequest("The request body could not be read.".into()))?;
        if body.len() + chunk.len() > MAX_BODY_BYTES {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
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
