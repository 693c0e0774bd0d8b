//! The one module that touches the host: Spin variables, outbound HTTP, clock,
//! randomness and stdout. Everything else is pure and runs natively in `cargo test`.
//!
//! Interfaces are the standard WASI ones named in `wit/world.wit`
//! (`wasi:config/store`, `wasi:http/outgoing-handler`, ...), reached through
//! spin-sdk's generated bindings so the component carries one set of bindings.

use std::time::SystemTime;

use spin_sdk::http::{Method, Request, Response, SendError};
use spin_sdk::wit::wasi::config::store as config;

use crate::guid::Guid;
use crate::outbound::{OutboundRequest, OutboundResponse, TransportError};

/// A Spin variable, through `wasi:config/store`. `Ok(None)`: not set or not declared.
/// The host's error text is dropped: it could quote a secret store's answer.
pub fn variable(name: &str) -> Result<Option<String>, ()> {
    config::get(name).map_err(|_| ())
}

/// Sends one request through `wasi:http/outgoing-handler`. Redirects are not followed
/// (wasi:http never does), so `Authorization` never leaves its origin.
pub async fn send(request: OutboundRequest) -> Result<OutboundResponse, TransportError> {
    let method = match request.method {
        "GET" => Method::Get,
        _ => Method::Post,
    };
    let mut builder = Request::builder();
    // An explicit length, so the body is not sent chunked (a form POST to the identity
    // platform, an empty POST to Graph: both are best sent plainly).
    builder.header("content-length", request.body.len().to_string());
    builder.method(method).uri(request.url).body(request.body);
    for (name, value) in request.headers {
        builder.header(name, value);
    }
    let response: Response = spin_sdk::http::send(builder.build()).await.map_err(|e| match e {
        SendError::Http(code) => TransportError(format!("{code:?}")),
        SendError::Io(e) => TransportError(format!("I/O error: {e:?}")),
        SendError::RequestConversion(_) => TransportError("the request could not be built".into()),
        SendError::ResponseConversion(_) => TransportError("the response could not be read".into()),
    })?;
    Ok(OutboundResponse {
        status: *response.status(),
        headers: response
            .headers()
            .map(|(n, v)| (n.to_ascii_lowercase(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
            .collect(),
        body: response.into_body(),
    })
}

/// A fresh random GUID, for a `client-request-id` the caller did not send.
pub fn random_guid() -> Guid {
    let bytes = spin_sdk::wit::wasi::random0_2_6::random::get_random_bytes(16);
    Guid::from_random_bytes(bytes.try_into().unwrap_or([0; 16]))
}

/// The wall-clock time, RFC 3339 UTC to the second, for logs and `innerError.date`.
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(SystemTime::now()).to_string()
}

/// Writes one log line to stdout.
pub fn log(line: &str) {
    println!("{line}");
}
