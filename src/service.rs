//! The request flow: route → settings → caller → input → token → Graph.
//!
//! Each step either moves on or returns an [`Error`]; the checks that cost nothing
//! (routing, settings, the caller's key, the body, the id) all come before the first
//! outbound call, so a rejected request never reaches the identity platform or Graph.
//! The body is read only once the caller is authenticated.

use std::future::Future;
use std::time::Duration;

use crate::caller_auth::{authenticate, API_KEY_HEADER};
use crate::error::Error;
use crate::graph::{self, Revoked};
use crate::host::{self, KeyValue};
use crate::pipeline::{self, Budget, Failure};
use crate::secret::Secret;
use crate::token_cache;
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
    /// When the request arrived, on the host's monotonic clock.
    pub started: Duration,
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

/// A token, then the revoke call; a Graph 401 gets one more try with a fresh token.
async fn revoke(settings: &Settings, user: &UserId, trace: &mut Trace) -> Result<Revoked, Error> {
    let budget = Budget::since(trace.started, Duration::from_millis(settings.time_budget_ms));
    let cache = KeyValue::open_default();
    let mut token = match cached_token(settings, &cache) {
        Some(token) => {
            trace.token_from_cache = true;
            token
        }
        None => fresh_token(settings, &cache, &budget, trace).await?,
    };
    let mut refreshed = false;
    loop {
        let request = graph::revoke_request(&settings.graph_base_url, user, &token, &trace.correlation.client_request_id);
        let calls = &mut trace.outbound_calls;
        let answer = pipeline::send(&request, &graph::RETRY_POLICY, &budget, || *calls += 1).await;
        let answer = answer.map_err(|failure| {
            if let Failure::Exhausted { last, .. } = &failure {
                trace.correlation.graph_request_id = graph::request_id(last);
            }
            graph::gave_up(failure, settings.time_budget_ms)
        })?;
        trace.correlation.graph_request_id = graph::request_id(&answer);
        if answer.status == 401 && !refreshed {
            // The token was revoked or expired early: forget it, and try once more.
            cache.delete(&token_cache::key(settings));
            token = fresh_token(settings, &cache, &budget, trace).await?;
            trace.token_from_cache = false;
            refreshed = true;
            continue;
        }
        return graph::read_revoke_response(&answer, user);
    }
}

/// The cached token, if there is a good one.
fn cached_token(settings: &Settings, cache: &KeyValue) -> Option<Secret> {
    let bytes = cache.get(&token_cache::key(settings))?;
    token_cache::decode(&bytes, host::unix_now())
}

/// A new token from the identity platform, stored for the next requests.
async fn fresh_token(settings: &Settings, cache: &KeyValue, budget: &Budget, trace: &mut Trace) -> Result<Secret, Error> {
    let request = token::token_request(settings, &trace.correlation.client_request_id);
    let calls = &mut trace.outbound_calls;
    let answer = pipeline::send(&request, &token::RETRY_POLICY, budget, || *calls += 1)
        .await
        .map_err(|failure| token::gave_up(failure, settings.time_budget_ms))?;
    let token = token::read_token_response(&answer)?;
    if let Some(entry) = token_cache::encode(&token.value, token.expires_in, host::unix_now()) {
        cache.set(&token_cache::key(settings), &entry);
    }
    Ok(token.value)
}
