//! Inputs as readable text, so the seeds in `fuzz/seeds/` say what they test: a head of
//! lines, a blank line, then a body of raw bytes, like an HTTP message.
//!
//! ```text
//! 429
//! retry-after: 7
//!
//! {"error":{"code":"TooManyRequests"}}
//! ```

#![allow(dead_code)] // each target uses part of this

use graph_revoke::fuzzing::{check_upstream_error, Error, OutboundResponse};

/// The head's lines and the body.
pub fn split(data: &[u8]) -> (Vec<String>, &[u8]) {
    let (head, body) = match data.windows(2).position(|w| w == b"\n\n") {
        Some(at) => (&data[..at], &data[at + 2..]),
        None => (data, &[][..]),
    };
    let head = String::from_utf8_lossy(head).lines().map(str::to_string).collect();
    (head, body)
}

/// A head line `name: value` as the lower-case name and the value, leading spaces trimmed.
pub fn header(line: &str) -> Option<(String, String)> {
    let (name, value) = line.split_once(':')?;
    Some((name.trim().to_ascii_lowercase(), value.trim_start().to_string()))
}

/// An upstream answer: the status on the first line (0 if none), then headers (names in
/// lower case, as the host gives them), then the body.
pub fn response(data: &[u8]) -> OutboundResponse {
    let (head, body) = split(data);
    let mut lines = head.iter();
    let status = lines.next().and_then(|l| l.trim().parse().ok()).unwrap_or(0);
    let headers = lines.filter_map(|l| header(l)).collect();
    OutboundResponse { status, headers, body: body.to_vec() }
}

/// Fails the run (a crash libFuzzer saves) when an invariant does not hold.
#[track_caller]
pub fn holds(check: Result<(), String>) {
    if let Err(why) = check {
        panic!("invariant broken: {why}");
    }
}

/// An error made from an upstream answer must be well formed.
#[track_caller]
pub fn upstream_error(error: &Error) {
    holds(check_upstream_error(error));
}
