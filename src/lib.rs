//! graph-revoke: a Spin component that revokes a Microsoft Entra ID user's sign-in
//! sessions through Microsoft Graph (`POST /users/{id}/revokeSignInSessions`, the
//! call behind `Revoke-MgUserSignInSession`). The contract is `SPEC.md`.
//!
//! # Layout
//! A functional core inside a thin imperative shell: everything but `host` and
//! `handler` reaches the host only through the seam (`seam::Host`) or not at all, and is
//! unit-tested natively, the request flow against a scripted fake host with a virtual
//! clock (`fake_host`, tests only). Modules depend one way, from the flow down to the
//! leaves (`trace`, `error`, `outbound`, `secret`, `guid`, `seam`).
//!
//! The shell:
//! - `handler`: the wasi:http edge: the request as plain values, the reply and the log line.
//! - `host`: the only module that touches WASI: `WasiHost` (the seam on wasi:config,
//!   key-value, HTTP, clocks, random), plus stdout and the time for the edge.
//!
//! The flow (generic over `seam::Host`):
//! - `service`: one request: route, caller settings, caller, Graph settings, body, then one user or many.
//! - `incoming`: the request as plain values; its body read within the size cap and the time budget.
//! - `revocation`: the Graph calls of a request: single calls and `$batch` rounds, results per user.
//! - `session`: the request's token: cached, fresh (the credential read only then), refreshed once.
//! - `pipeline`: sends with `Retry-Attempt`, a budget timeout and the retry policy; the time budget.
//!
//! The pure core:
//! - `seam`: the `Host` trait: what the flow needs from the host.
//! - `trace`: per-request state for the log line and the headers (`Trace`, `Correlation`).
//! - `route`: which route a method and path name.
//! - `settings`: Spin variables parsed and checked, in three lazily read parts; what `/healthz` reports.
//! - `cloud`: which identity platform goes with which Graph (national clouds); a mixed pair is a problem.
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
//! - `outcome`: what became of each of many users, and the status rule for the answer.
//! - `outbound`: outbound requests and responses as plain values.
//! - `retry`: which answers to retry, `Retry-After`, backoff with jitter, when to give up.
//! - `token_cache`: the cached Graph token's key, format and freshness.
//! - `error`: the one error enum, its status and code.
//! - `response`: JSON replies: success, many users, health, Graph's OData error shape.
//! - `log`: the one JSON log line per request.
//! - `secret`: secrets with a redacted `Debug`.
//! - `test_keys` (tests only): RSA keys and certificates generated at test time.
//! - `bindings`: `wasi:config` and `wasi:keyvalue` bindings generated from `wit/world.wit` (used by `host` only).
//! - `fuzzing`: the pure entry points re-exported for the fuzz targets and property tests (not an API).

mod batch;
mod bindings;
mod caller_auth;
// Issue 8's core, unit-tested but not yet wired into the request flow.
#[allow(dead_code)]
mod caller_token;
#[allow(dead_code)]
mod client_assertion;
mod cloud;
mod error;
#[cfg(test)]
mod fake_host;
#[doc(hidden)]
pub mod fuzzing;
mod graph;
mod guid;
mod handler;
mod host;
mod incoming;
#[allow(dead_code)]
mod jwks;
mod log;
#[allow(dead_code)]
mod managed_identity;
mod outbound;
mod outcome;
mod pipeline;
mod request_body;
mod response;
mod retry;
mod revocation;
mod route;
mod seam;
mod secret;
mod sentinel;
#[cfg(test)]
mod test_keys;
mod service;
mod session;
mod settings;
mod token;
mod token_cache;
mod trace;
mod user_id;

use spin_sdk::http::{IncomingRequest, ResponseOutparam};

/// The component's entry point: one request, one reply, one log line.
#[spin_sdk::http_component]
async fn handle(request: IncomingRequest, response_out: ResponseOutparam) {
    handler::handle(request, response_out).await
}
