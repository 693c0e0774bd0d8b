//! graph-revoke: a Spin component that revokes a Microsoft Entra ID user's sign-in
//! sessions through Microsoft Graph (`POST /users/{id}/revokeSignInSessions`, the
//! call behind `Revoke-MgUserSignInSession`). The contract is `SPEC.md`.
//!
//! # Layout
//! A functional core (everything but `host` and `handler` is pure and unit-tested
//! natively) inside a thin imperative shell.
//!
//! - `handler`: the wasi:http edge: reads the request (body size-capped), writes the reply and the log line.
//! - `service`: the flow of one request: route, settings, caller, input, then one user or many.
//! - `revocation`: the Graph side of a request: the token session, single calls, `$batch` rounds.
//! - `route`: which route a method and path name.
//! - `settings`: Spin variables parsed and checked; what `/healthz` reports.
//! - `caller_auth`: the caller's API key, compared in constant time.
//! - `caller_token`: Entra ID bearer tokens as caller credential: RS256, claims, allowed callers and role.
//! - `jwks`: the tenant's signing keys: request, answer, cache entry and refetch limits.
//! - `client_assertion`: the certificate credential's signed client assertion (PS256/RS256, `x5t#S256`).
//! - `managed_identity`: IMDS and App Service / Container Apps token requests and answers.
//! - `request_body`: content type, query and JSON body rules (one user, `userIds`, `entities`, `whatIf`).
//! - `sentinel`: which user a Microsoft Sentinel Account entity names.
//! - `user_id`: the identifier rules and the one function that puts an id in a URL.
//! - `guid`: GUIDs in the `8-4-4-4-12` shape.
//! - `token`: the client-credentials request and what its answer means.
//! - `graph`: the revoke and lookup requests and what Graph's answers mean.
//! - `batch`: `$batch` bodies, 20 to a batch, and reading answers back by id.
//! - `outbound`: outbound requests and responses as plain values.
//! - `pipeline`: sends with `Retry-Attempt`, a budget timeout and the retry policy; the one place that waits.
//! - `retry`: which answers to retry, `Retry-After`, backoff with jitter, the time budget.
//! - `token_cache`: the cached Graph token's key, format and freshness.
//! - `error`: the one error enum, its status and code.
//! - `response`: JSON replies: success, health, Graph's OData error shape.
//! - `log`: the one JSON log line per request.
//! - `secret`: secrets with a redacted `Debug`.
//! - `test_keys` (tests only): RSA keys and certificates generated at test time.
//! - `host`: the only module that touches the host (variables, key-value, HTTP, clocks, random, stdout).

mod batch;
mod caller_auth;
// Issue 8's core, not yet wired into the request flow (the coordinator wires it in).
#[allow(dead_code)]
mod caller_token;
#[allow(dead_code)]
mod client_assertion;
mod error;
mod graph;
mod guid;
mod handler;
mod host;
#[allow(dead_code)]
mod jwks;
mod log;
#[allow(dead_code)]
mod managed_identity;
mod outbound;
mod pipeline;
mod request_body;
mod response;
mod retry;
mod revocation;
mod route;
mod secret;
mod sentinel;
#[cfg(test)]
mod test_keys;
mod service;
mod settings;
mod token;
mod token_cache;
mod user_id;

use spin_sdk::http::{IncomingRequest, ResponseOutparam};

/// The component's entry point: one request, one reply, one log line.
#[spin_sdk::http_component]
async fn handle(request: IncomingRequest, response_out: ResponseOutparam) {
    handler::handle(request, response_out).await
}
