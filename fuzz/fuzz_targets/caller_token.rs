//! A caller's bearer token (the first line) against the JWKS in the body and against a
//! fixed JWKS whose key no one holds: never a panic, and nothing passes the fixed one
//! (a token is accepted only with a signature its key verifies).

#![no_main]

use graph_revoke::fuzzing::{verify_caller_token, CallerVerdict};
use libfuzzer_sys::fuzz_target;

mod common;

/// 2026-12-03, inside the seeds' `nbf`..`exp`.
const NOW: u64 = 1_796_300_000;

fuzz_target!(|data: &[u8]| {
    let (head, jwks) = common::split(data);
    let authorization = head.first().map(String::as_str).unwrap_or("");
    let (_, fixed) = verify_caller_token(authorization, jwks, NOW);
    assert!(
        !matches!(fixed, CallerVerdict::Accepted(_) | CallerVerdict::Forbidden(_)),
        "a token passed a key no one holds: {fixed:?}"
    );
});
