//! The request flow: route → settings → caller → input → token → Graph.
//!
//! Each step either moves on or returns an [`Error`]; the checks that cost nothing
//! (routing, settings, the caller's key, the body, the id) all come before the first
//! outbound call, so a rejected request never reaches the identity platform or Graph.
//! The body is read only once the caller is authenticated.

use std::future::Future;

use crate::caller_auth::{authenticate, API_KEY_HEADER};
use crate::error::Error;
use crate::graph::{self, Revoked};
use crate::host;
use crate::outbound::{OutboundRequest, OutboundResponse, TransportError};
use crate::request_body::{check_content_type, check_graph_shaped_body, check_query, parse_revoke_body};
use crate::response::{self, Correlation, Reply};
use crate::route::{route, Route};
use crate::settings::Settings;
use crate::token;
use crate::user_id::UserId;

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

/// What the flow did, for the log line and the response headers.
#[derive(Debug, Default)]
pub struct Trace {
    pub route: &'static str,
    pub correlation: Correlation,
    pub user_ids: Vec<String>,
    pub outbound_calls: u32,
    pub token_from_cache: bool,
}

/// Serves one request. `body` is awaited only after the caller is authenticated.
pub async fn serve(
    incoming: &Incoming,
    body: impl Future<Output = Result<Vec<u8>, Error>>,
    trace: &mut Trace,
) -> Result<Reply, Error> {
    let route = route(&incoming.method, &incoming.path)?;
    trace.route = route.name();
    let settings = Settings::load(&host::variable);
    if route == Route::Health {
        return Ok(response::health(settings.as_ref().err(), &trace.correlation));
    }
    let settings = settings.map_err(|problems| Error::Configuration(problems.describe()))?;
    authenticate(incoming.header(API_KEY_HEADER), &settings.api_keys)?;
    check_query(&incoming.query)?;
    let body = body.await?;
    check_content_type(incoming.header("content-type"), &body)?;
    let raw_user_id = match route {
        Route::GraphShaped { raw_user_id } => {
            check_graph_shaped_body(&body)?;
            raw_user_id
        }
        _ => parse_revoke_body(&body)?,
    };
    let user = UserId::parse(&raw_user_id).map_err(Error::InvalidUserId)?;
    trace.user_ids.push(user.to_string());

    let Revoked { value } = revoke(&settings, &user, trace).await?;
    let warnings: Vec<String> = user.warning().into_iter().collect();
    Ok(response::revoked(value, &warnings, &trace.correlation))
}

/// Token, then the revoke call.
async fn revoke(settings: &Settings, user: &UserId, trace: &mut Trace) -> Result<Revoked, Error> {
    let client_request_id = trace.correlation.client_request_id.clone();
    let answer = send(token::token_request(settings, &client_request_id), trace)
        .await
        .map_err(|e| token::transport_failure(&e))?;
    let token = token::read_token_response(&answer)?;

    let request = graph::revoke_request(&settings.graph_base_url, user, &token.value, &client_request_id);
    let answer = send(request, trace).await.map_err(|e| graph::transport_failure(&e))?;
    trace.correlation.graph_request_id = answer
        .header("request-id")
        .filter(|id| id.len() <= 64 && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
        .map(str::to_string);
    graph::read_revoke_response(&answer, user)
}

/// Sends and counts.
async fn send(request: OutboundRequest, trace: &mut Trace) -> Result<OutboundResponse, TransportError> {
    trace.outbound_calls += 1;
    host::send(request).await
}
