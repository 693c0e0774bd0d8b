//! The incoming request as plain values, and reading its body within the size cap and
//! the time budget.
//!
//! The handler turns wasi:http's request into [`Incoming`] and a stream of body chunks;
//! the body is read only once the caller is authenticated, and a slow caller cannot hold
//! the instance past `time_budget_ms`: the budget covers the whole request.

use std::pin::pin;

use futures::future::{self, Either};
use futures::{Stream, StreamExt};

use crate::error::Error;
use crate::transport::pipeline::Budget;
use crate::inbound::request_body::MAX_BODY_BYTES;
use crate::platform::seam::Host;

/// The parts of the incoming request the flow reads before the body.
pub struct Incoming {
    pub method: String,
    pub path: String,
    pub query: String,
    /// Header names in lower case.
    pub headers: Vec<(String, String)>,
}

impl Incoming {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    /// Every value of a header, in order (a header sent twice has two).
    pub fn header_values(&self, name: &str) -> Vec<&str> {
        self.headers.iter().filter(|(n, _)| n == name).map(|(_, v)| v.as_str()).collect()
    }
}

/// Reads the body, refusing it as soon as it passes [`MAX_BODY_BYTES`] (a declared
/// `Content-Length` over the limit is refused before a byte is read), and giving up
/// when `budget` runs out before the last chunk: 504 `upstreamTimeout`
/// ([`Error::BodyTimeout`]), nothing revoked.
pub async fn read_body(
    host: &impl Host,
    incoming: &Incoming,
    chunks: impl Stream<Item = Result<Vec<u8>, ()>>,
    budget: &Budget,
) -> Result<Vec<u8>, Error> {
    let too_large = || Error::PayloadTooLarge(format!("The body is larger than {} KiB.", MAX_BODY_BYTES / 1024));
    let content_length = incoming.header("content-length").and_then(|v| v.trim().parse::<u64>().ok());
    if content_length.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
        return Err(too_large());
    }
    let read = async {
        let mut body = Vec::new();
        let mut chunks = pin!(chunks);
        while let Some(chunk) = chunks.next().await {
            let chunk = chunk.map_err(|()| Error::InvalidRequest("The request body could not be read.".into()))?;
            if body.len() + chunk.len() > MAX_BODY_BYTES {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    };
    // Lazy: a body already there (nearly always) is read on the first poll, and the
    // deadline (a clock reading and a timer) is never set.
    let deadline = async { host.sleep(budget.remaining(host.monotonic_now())).await };
    let body = match future::select(pin!(read), pin!(deadline)).await {
        Either::Left((body, _)) => body,
        Either::Right(_) => Err(Error::BodyTimeout { budget_ms: budget.millis() }),
    };
    body
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::platform::fake_host::FakeHost;
    use std::time::Duration;

    fn incoming(content_length: Option<usize>) -> Incoming {
        let headers = content_length.map(|n| ("content-length".to_string(), n.to_string())).into_iter().collect();
        Incoming { method: "POST".into(), path: "/revoke".into(), query: String::new(), headers }
    }

    fn read(host: &FakeHost, incoming: &Incoming, chunks: Vec<Vec<u8>>) -> Result<Vec<u8>, Error> {
        let budget = Budget::since(Duration::ZERO, Duration::from_secs(25));
        host.run(read_body(host, incoming, futures::stream::iter(chunks.into_iter().map(Ok)), &budget))
    }

    #[test]
    fn chunks_are_joined() {
        let host = FakeHost::new();
        assert_eq!(read(&host, &incoming(None), vec![b"{\"a\":".to_vec(), b"1}".to_vec()]), Ok(b"{\"a\":1}".to_vec()));
        assert_eq!(read(&host, &incoming(None), vec![]), Ok(vec![]));
    }

    #[test]
    fn too_large_is_refused_by_its_declared_length_or_as_it_streams() {
        let host = FakeHost::new();
        let declared = read(&host, &incoming(Some(MAX_BODY_BYTES + 1)), vec![b"{}".to_vec()]);
        assert_eq!(declared.unwrap_err().code(), "payloadTooLarge");
        let chunk = vec![b' '; 16 * 1024];
        let streamed = read(&host, &incoming(None), vec![chunk; 5]);
        assert_eq!(streamed.unwrap_err().code(), "payloadTooLarge");
        assert_eq!(read(&host, &incoming(None), vec![vec![b' '; MAX_BODY_BYTES]]).unwrap().len(), MAX_BODY_BYTES);
    }

    #[test]
    fn a_broken_body_is_a_400() {
        let host = FakeHost::new();
        let budget = Budget::since(Duration::ZERO, Duration::from_secs(25));
        let chunks = futures::stream::iter([Ok(b"{".to_vec()), Err(())]);
        let error = host.run(read_body(&host, &incoming(None), chunks, &budget)).unwrap_err();
        assert_eq!(error.code(), "invalidRequest");
    }
}
