//! Outbound HTTP as plain values: what to send and what came back.
//!
//! The token and Graph modules build [`OutboundRequest`]s and read
//! [`OutboundResponse`]s without touching the host, so they are unit-tested natively;
//! only the `host` module turns these into wasi:http calls.

use std::fmt;

/// A request to the identity platform or Graph.
#[derive(Clone)]
pub struct OutboundRequest {
    pub method: &'static str,
    /// Absolute URL; its origin is one of the two configured base URLs.
    pub url: String,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

/// `Debug` shows only method and URL: headers carry the bearer token, and the token
/// request's body carries the client secret.
impl fmt::Debug for OutboundRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} [headers and body redacted]", self.method, self.url)
    }
}

#[cfg(test)]
impl OutboundRequest {
    /// The value of a header, by lower-case name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_str())
    }
}

/// What came back.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OutboundResponse {
    pub status: u16,
    /// Header names in lower case.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl OutboundResponse {
    /// The first value of a header, by lower-case name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    /// Whole seconds from `Retry-After`, when it holds them.
    pub fn retry_after_seconds(&self) -> Option<u64> {
        self.header("retry-after")?.trim().parse().ok()
    }
}

/// Why a request has no answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendFailure {
    /// The host could not connect, or refused to send.
    Transport(TransportError),
    /// No answer within the time left in the budget.
    TimedOut,
}

/// The request never got an answer: the host could not connect, or refused to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransportError {
    /// The host's error code (e.g. `ConnectionRefused`), never a body or a header.
    pub code: String,
    /// Whether trying again may help (a refused connection may; a request the host
    /// denies by policy never will).
    pub temporary: bool,
}

impl fmt::Display for TransportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.code)
    }
}
