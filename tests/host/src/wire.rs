//! The request a test sends and the response it gets back.
//!
//! Plain data with builders, so tests read like the HTTP exchange they describe; the
//! conversion to what the guest receives (absolute URI, `Host`, Spin's `spin-*` headers)
//! lives in [`crate::app`].

use std::time::Duration;

/// An incoming request for the component.
#[derive(Clone, Debug)]
pub struct TestRequest {
    pub method: String,
    /// Path and query exactly as a client would send them, e.g. `/revoke?whatIf=true`.
    pub path_and_query: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// `None`: the body in one piece with `content-length` (added unless set).
    /// `Some`: `transfer-encoding: chunked`, no `content-length`, in pieces.
    pub chunked: Option<Chunked>,
}

/// How a chunked body is handed to the guest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Chunked {
    /// Bytes per chunk (the last may be shorter); at least 1.
    pub chunk_size: usize,
    /// A wait before each chunk after the first (a slow client).
    pub pause: Option<Duration>,
}

impl TestRequest {
    pub fn new(method: &str, path_and_query: &str) -> Self {
        TestRequest {
            method: method.to_string(),
            path_and_query: path_and_query.to_string(),
            headers: Vec::new(),
            body: Vec::new(),
            chunked: None,
        }
    }

    pub fn get(path_and_query: &str) -> Self {
        Self::new("GET", path_and_query)
    }

    pub fn post(path_and_query: &str) -> Self {
        Self::new("POST", path_and_query)
    }

    /// Adds a header (repeat the call for several values of one name).
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    pub fn body(mut self, bytes: impl Into<Vec<u8>>) -> Self {
        self.body = bytes.into();
        self
    }

    /// Sends the body chunked, `chunk_size` bytes a chunk, with no `content-length`
    /// (as a client streaming a body of unknown length does).
    pub fn chunked(mut self, chunk_size: usize) -> Self {
        self.chunked = Some(Chunked {
            chunk_size: chunk_size.max(1),
            pause: None,
        });
        self
    }

    /// [`TestRequest::chunked`] with a wait of `pause` before each chunk but the first.
    pub fn chunked_with_pauses(mut self, chunk_size: usize, pause: Duration) -> Self {
        self.chunked = Some(Chunked {
            chunk_size: chunk_size.max(1),
            pause: Some(pause),
        });
        self
    }

    /// A JSON body with `content-type: application/json` (replacing any content type).
    pub fn json(mut self, value: &serde_json::Value) -> Self {
        self.headers
            .retain(|(n, _)| !n.eq_ignore_ascii_case("content-type"));
        self.headers
            .push(("content-type".to_string(), "application/json".to_string()));
        self.body = serde_json::to_vec(value).expect("serialising a serde_json::Value");
        self
    }

    pub(crate) fn has_header(&self, name: &str) -> bool {
        self.headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case(name))
    }

    pub(crate) fn header_value(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// The component's response, plus what it printed while handling the request.
#[derive(Clone, Debug)]
pub struct TestResponse {
    pub status: u16,
    /// Header names are lower case, in the order the guest set them.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The guest's stdout during this request (the component's JSON log line).
    pub stdout: String,
    pub stderr: String,
    /// The most linear memory the instance held at once, in bytes (all its memories).
    pub peak_memory_bytes: usize,
    /// How many bytes of the request body the guest was handed (it may stop early).
    pub request_body_bytes_read: usize,
}

impl TestResponse {
    /// The first value of a header; the name is case-insensitive.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON; panics with the status and body text if it is not JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "response body is not JSON ({e}); status {}, body: {}",
                self.status,
                self.text()
            )
        })
    }

    /// The body as text (invalid UTF-8 replaced).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}
