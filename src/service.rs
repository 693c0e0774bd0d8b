//! The request flow: route → settings → caller → input → token → Graph.
//!
//! Each step either moves on or returns an [`Error`]; the checks that cost nothing
//! (routing, settings, the caller's key, the body, the id) all come before the first
//! outbound call, so a rejected request never reaches the identity platform or Graph.
//! The body is read only once the caller is authenticated.

use std::collections::BTreeSet;
use std::future::Future;
use std::time::Duration;

use crate::batch::Operation;
use crate::caller_auth::{authenticate, API_KEY_HEADER};
use crate::error::Error;
use crate::graph::Revoked;
use crate::host;
use crate::request_body::{check_content_type, check_graph_shaped_body, parse_revoke_body, read_query, RevokeRequest, Users};
use crate::response::{self, Correlation, Reply};
use crate::revocation;
use crate::route::{route, Route};
use crate::settings::Settings;
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
    /// For the log: `ok`, `revoked`, `partial` (some of many failed) or `whatIf`.
    pub outcome: &'static str,
}

/// Serves one request. `body` is awaited only after the caller is authenticated.
pub async fn serve(
    incoming: &Incoming,
    body: impl Future<Output = Result<Vec<u8>, Error>>,
    trace: &mut Trace,
) -> Result<Reply, Error> {
    let route = route(&incoming.method, &incoming.path)?;
    trace.route = route.name();
    if route == Route::OpenApi {
        return Ok(response::openapi(&trace.correlation));
    }
    let settings = Settings::load(&host::variable);
    if route == Route::Health {
        return Ok(response::health(settings.as_ref().err(), &trace.correlation));
    }
    let settings = settings.map_err(|problems| Error::Configuration(problems.describe()))?;
    authenticate(incoming.header(API_KEY_HEADER), &settings.api_keys)?;
    let query_what_if = read_query(&incoming.query)?;
    let body = body.await?;
    let request = match route {
        Route::GraphShaped { raw_user_id } => {
            check_graph_shaped_body(incoming.header("content-type"), &body)?;
            RevokeRequest { users: Users::One(raw_user_id), what_if: false }
        }
        _ => {
            check_content_type(incoming.header("content-type"), &body)?;
            parse_revoke_body(&body)?
        }
    };
    let what_if = request.what_if || query_what_if;
    match request.users {
        Users::One(raw) => {
            let user = UserId::parse(&raw).map_err(Error::InvalidUserId)?;
            trace.user_ids.push(user.to_string());
            if what_if {
                trace.outcome = "whatIf";
                let found = revocation::look_up_one(&settings, &user, trace).await?;
                return Ok(response::dry_run(&found, &trace.correlation));
            }
            let Revoked { value } = revocation::revoke_one(&settings, &user, trace).await?;
            trace.outcome = "revoked";
            let warnings: Vec<String> = user.warning().into_iter().collect();
            Ok(response::revoked(value, &warnings, &trace.correlation))
        }
        Users::Many { ids, skipped, derived } => {
            let users = distinct_users(&ids, settings.max_users)?;
            trace.user_ids = users.iter().map(UserId::to_string).collect();
            let operation = if what_if { Operation::Lookup } else { Operation::Revoke };
            let results = revocation::many(&settings, &users, operation, trace).await?;
            let reply = response::many(&users, &derived, &results, &skipped, what_if, &trace.correlation);
            trace.outcome = match (what_if, reply.status) {
                (true, _) => "whatIf",
                (false, 200) => "revoked",
                (false, _) => "partial",
            };
            Ok(reply)
        }
    }
}

/// Validates every id (the first bad one is a 400 naming where it came from), drops
/// exact duplicates, and enforces `max_users`, all before any outbound call.
fn distinct_users(ids: &[(String, String)], max_users: usize) -> Result<Vec<UserId>, Error> {
    let mut users: Vec<UserId> = Vec::with_capacity(ids.len());
    // A 64 KiB body holds thousands of ids: look duplicates up in a set, not the list.
    let mut seen = BTreeSet::new();
    for (place, raw) in ids {
        let user = UserId::parse(raw).map_err(|rule| Error::InvalidUserId(format!("{place}: {rule}")))?;
        if seen.insert(user.to_string()) {
            users.push(user);
        }
    }
    if users.len() > max_users {
        return Err(Error::PayloadTooLarge(format!(
            "The request names {} distinct users; at most {max_users} (max_users) are allowed in one request. \
             Split it; nothing was revoked.",
            users.len()
        )));
    }
    Ok(users)
}
