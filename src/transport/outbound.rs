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
#[derive(Clone, Default, PartialEq, Eq)]
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
}

/// `Debug` shows the status and the body's size only: the token endpoint's answer carries the
/// access token in its body, and headers may carry cookies or tokens too. (`Retry-After`
/// is read by [`crate::transport::retry::parse_retry_after`], nowhere else.)
impl fmt::Debug for OutboundResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} [headers and body redacted; body {} bytes]", self.status, self.body.len())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_a_body_or_a_header_value() {
        let answer = OutboundResponse {
            status: 200,
            headers: vec![("set-cookie".into(), "session=cookie-secret".into())],
            body: br#"{"token_type":"Bearer","access_token":"eyJ0eXAi.secret-token"}"#.to_vec(),
        };
        let text = format!("{answer:?}");
        assert_eq!(text, format!("200 [headers and body redacted; body {} bytes]", answer.body.len()));
        // Nested, as in a pipeline failure or a test's assertion message.
        let nested = format!("{:?}", Some(vec![answer]));
        assert!(!nested.contains("secret-token") && !nested.contains("cookie-secret"), "{nested}");
        let request = OutboundRequest { method: "POST", url: "https://login/t".into(), headers: vec![("authorization", "Bearer tok".into())], body: b"client_secret=s".to_vec() };
        assert_eq!(format!("{request:?}"), "POST https://login/t [headers and body redacted]");
    }
}
