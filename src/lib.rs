//! graph-revoke: a Spin component that revokes a Microsoft Entra ID user's sign-in
//! sessions through Microsoft Graph (`POST /users/{id}/revokeSignInSessions`, the
//! call behind `Revoke-MgUserSignInSession`). The contract is `SPEC.md`.
//!
//! # Layout
//! A functional core inside a thin imperative shell, grouped by the stage of the request
//! (a directory per stage; each module one concern). Everything but `platform::host` and
//! `handler` reaches the host only through the seam (`platform::seam::Host`) or not at
//! all, and is unit-tested natively, the request flow against a scripted fake host with a
//! virtual clock (`platform::fake_host`, tests only). Modules depend one way, from the flow
//! down to the leaves (`reply::trace`, `error`, `transport::outbound`, `settings::secret`,
//! `inbound::guid`, `platform::seam`, `crypto`).
//!
//! - `handler`: the wasi:http edge: the request as plain values, the reply and the log line.
//! - `service`: one request, step by step: route, caller, Graph settings, body, abuse brake,
//!   then one user or many (generic over the seam).
//! - `inbound/`: the request as it arrives: `route`, `incoming` (the body within its size
//!   cap and the time budget), `request_body` (content type, query, JSON rules),
//!   `sentinel` (Sentinel Account entities), `user_id` (the id rules and the one function
//!   that puts an id in a URL), `guid`.
//! - `caller/`: who is calling and whether they may: the check itself (`mod.rs`: which
//!   credential is presented, the settings it needs), `caller_auth` (API keys and digests,
//!   constant time), `caller_token` (Entra ID bearer tokens: RS256, claims, rules), `jwks`
//!   (the tenant's keys: cache and refetch limits), `brake` (`max_revocations` per caller).
//! - `settings/`: Spin variables parsed and checked, read lazily in parts; what `/healthz`
//!   reports; `cloud` (national cloud pairs), `secret` (redacted `Debug`).
//! - `identity/`: graph-revoke's own token: `session` (cached, fresh, refreshed once),
//!   `token` (the client-credentials request and its answer), `token_cache`,
//!   `client_assertion` (the certificate credential's signed assertion, read with `der`),
//!   `managed_identity` (IMDS and App Service).
//! - `graph/`: the Graph calls and what the answers mean (`mod.rs`), `batch` (`$batch`
//!   bodies and answers), `revocation` (single calls and batch rounds, results per user),
//!   `outcome` (the status rule for many users), `verification` (`verify`: the read-back
//!   judged).
//! - `transport/`: `outbound` (requests and answers as plain values), `pipeline` (sends
//!   with a budget timeout and the retry policy), `retry` (`Retry-After`, backoff, giving up).
//! - `reply/`: `response` (JSON replies, Graph's OData error shape), `trace` (per-request
//!   state for the log line and headers), `log` (the one JSON line per request).
//! - `platform/`: `seam` (the `Host` trait), `host` (the only module that touches WASI),
//!   `bindings` (generated from `wit/world.wit`), `fake_host` (tests only).
//! - `crypto/`: RSA for caller tokens and the client assertion: `signer` (RS256 and PS256
//!   signatures, RS256 verification) on `montgomery` (`modpow` on 32-bit limbs).
//! - `error`: the one error enum, its status and code.
//! - `test_keys` (tests only): RSA keys and certificates generated at test time.
//! - `fuzzing`: the pure entry points re-exported for the fuzz targets and property tests (not an API).

mod caller;
mod crypto;
mod error;
#[doc(hidden)]
pub mod fuzzing;
mod graph;
mod handler;
mod identity;
mod inbound;
mod platform;
mod reply;
mod service;
mod settings;
#[cfg(test)]
mod test_keys;
mod transport;

use spin_sdk::http::{IncomingRequest, ResponseOutparam};

/// The component's entry point: one request, one reply, one log line.
#[spin_sdk::http_component]
async fn handle(request: IncomingRequest, response_out: ResponseOutparam) {
    handler::handle(request, response_out).await
}
