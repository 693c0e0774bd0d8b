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
use crate::pipeline::Budget;
use crate::request_body::MAX_BODY_BYTES;
use crate::seam::Host;

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
    let deadline = host.sleep(budget.remaining(host.monotonic_now()));
    let body = match future::select(pin!(read), pin!(deadline)).await {
        Either::Left((body, _)) => body,
        Either::Right(_) => Err(Error::BodyTimeout { budget_ms: budget.millis() }),
    };
    body
}
