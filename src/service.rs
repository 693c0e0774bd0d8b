//! The request flow: route → caller settings → caller → Graph settings → input →
//! token → Graph.
//!
//! Each step either moves on or returns an [`Error`]; the checks that cost nothing
//! (routing, the caller's key, the body, the id) all come before the first outbound
//! call, so a rejected request never reaches the identity platform or Graph. Settings
//! are read when a step needs them (see [`crate::settings`]): the caller check reads
//! only the caller's, the Graph settings come after it, the app credential only when
//! a token is fetched. The body is read only once the caller is authenticated, and
//! within the time budget.

use std::collections::BTreeSet;
use std::time::Duration;

use futures::Stream;

use crate::batch::Operation;
use crate::caller_auth::{authenticate, API_KEY_HEADER};
use crate::error::Error;
use crate::graph::Revoked;
use crate::incoming::{self, Incoming};
use crate::outcome::{self, Verdict};
use crate::pipeline::Budget;
use crate::request_body::{check_content_type, check_graph_shaped_body, parse_revoke_body, read_query, RevokeRequest, Users};
use crate::response::{self, Reply};
use crate::revocation;
use crate::route::{route, Route};
use crate::seam::Host;
use crate::settings::{self, CallerSettings, GraphSettings};
use crate::trace::Trace;
use crate::user_id::UserId;

/// Serves one request. `body` is read only after the caller is authenticated.
pub async fn serve(
    host: &impl Host,
    incoming: &Incoming,
    body: impl Stream<Item = Result<Vec<u8>, ()>>,
    trace: &mut Trace,
) -> Result<Reply, Error> {
    let lookup = |name: &str| host.variable(name);
    let route = route(&incoming.method, &incoming.path)?;
    trace.route = route.name();
    if route == Route::OpenApi {
        return Ok(response::openapi(&trace.correlation));
    }
    if route == Route::Health {
        return Ok(response::health(settings::check_all(&lookup).as_ref(), &trace.correlation));
    }
    let caller = CallerSettings::load(&lookup).map_err(|problems| Error::Configuration(problems.describe()))?;
    let slot = authenticate(&incoming.header_values(API_KEY_HEADER), &caller.api_keys)?;
    trace.caller = Some(format!("apiKey:{}", slot.0));
    let query_what_if = read_query(&incoming.query)?;
    let settings = GraphSettings::load(&lookup).map_err(|problems| Error::Configuration(problems.describe()))?;
    let budget = Budget::since(trace.started, Duration::from_millis(settings.time_budget_ms));
    let body = incoming::read_body(host, incoming, body, &budget).await?;
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
                let found = revocation::look_up_one(host, &settings, &user, trace).await?;
                return Ok(response::dry_run(&found, &trace.correlation));
            }
            let Revoked { value } = revocation::revoke_one(host, &settings, &user, trace).await?;
            trace.outcome = "revoked";
            let warnings: Vec<String> = user.warning().into_iter().collect();
            Ok(response::revoked(value, &warnings, &trace.correlation))
        }
        Users::Many { ids, skipped, derived } => {
            let users = distinct_users(&ids, settings.max_users)?;
            trace.user_ids = users.iter().map(UserId::to_string).collect();
            let operation = if what_if { Operation::Lookup } else { Operation::Revoke };
            let results = revocation::many(host, &settings, &users, operation, trace).await?;
            let verdict = outcome::verdict(&results);
            trace.outcome = match (&verdict, what_if) {
                (Verdict::Retry { code, .. }, _) => code,
                (_, true) => "whatIf",
                (Verdict::AllDone, false) => "revoked",
                (Verdict::Partial, false) => "partial",
            };
            Ok(response::many(&users, &derived, &results, &verdict, &skipped, what_if, &trace.correlation))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake_host::{FakeHost, Reply as Script, API_KEY};
    use serde_json::{json, Value};

    const AUTHENTICATED: &[(&str, &str)] = &[("x-api-key", API_KEY), ("content-type", "application/json")];
    const GRAPH_SETTINGS: [&str; 6] = ["tenant_id", "client_id", "graph_base_url", "login_base_url", "time_budget_ms", "max_users"];

    fn body(reply: &Reply) -> Value {
        serde_json::from_slice(&reply.body).unwrap()
    }

    fn header<'a>(reply: &'a Reply, name: &str) -> Option<&'a str> {
        reply.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    fn revoke(host: &FakeHost, body: Value) -> (Reply, Trace) {
        host.serve("POST", "/revoke", AUTHENTICATED, &body.to_string())
    }

    fn sorted(mut names: Vec<String>) -> Vec<String> {
        names.sort();
        names
    }

    fn names(list: &[&str]) -> Vec<String> {
        sorted(list.iter().map(|n| n.to_string()).collect())
    }

    #[test]
    fn each_route_reads_only_the_settings_it_needs() {
        // Finding 9: the caller check reads api_keys alone; the Graph settings come after it;
        // client_secret only when a token is fetched; /healthz reads all; /openapi.json none.
        let host = FakeHost::new();
        assert_eq!(host.serve("GET", "/openapi.json", &[], "").0.status, 200);
        assert_eq!(host.reads(), Vec::<String>::new());

        assert_eq!(host.serve("GET", "/healthz", &[], "").0.status, 200);
        let mut all = GRAPH_SETTINGS.to_vec();
        all.extend(["client_secret", "api_keys"]);
        assert_eq!(sorted(host.reads()), names(&all));

        host.clear_reads();
        let wrong_key = [("x-api-key", "a-wrong-key-that-is-long-enough-0000000")];
        assert_eq!(host.serve("POST", "/revoke", &wrong_key, r#"{"userId":"a@contoso.com"}"#).0.status, 401);
        assert_eq!(host.reads(), vec!["api_keys"]);

        host.clear_reads();
        let (cold, trace) = revoke(&host, json!({"userId": "a@contoso.com"}));
        assert_eq!(cold.status, 200);
        assert!(!trace.token_from_cache);
        let mut cold_reads = GRAPH_SETTINGS.to_vec();
        cold_reads.extend(["api_keys", "client_secret"]);
        assert_eq!(sorted(host.reads()), names(&cold_reads), "each variable once");
        assert_eq!(host.reads()[0], "api_keys", "the caller check comes first");

        host.clear_reads();
        let (warm, trace) = revoke(&host, json!({"userId": "a@contoso.com"}));
        assert_eq!(warm.status, 200);
        assert!(trace.token_from_cache);
        let mut warm_reads = GRAPH_SETTINGS.to_vec();
        warm_reads.push("api_keys");
        assert_eq!(sorted(host.reads()), names(&warm_reads), "a warm revoke never reads client_secret");
    }

    #[test]
    fn a_missing_client_secret_is_found_when_a_token_is_needed() {
        // Cold: 500 naming it, nothing sent.
        let host = FakeHost::new();
        host.set_var("client_secret", None);
        let (reply, _) = revoke(&host, json!({"userId": "a@contoso.com"}));
        assert_eq!((reply.status, body(&reply)["error"]["code"].clone()), (500, json!("configurationError")));
        assert!(body(&reply)["error"]["message"].as_str().unwrap().contains("client_secret"));
        assert!(host.sent().is_empty());
        // Warm: the cached token suffices; /healthz still names it.
        host.plant_token("warm");
        assert_eq!(revoke(&host, json!({"userId": "a@contoso.com"})).0.status, 200);
        let (health, _) = host.serve("GET", "/healthz", &[], "");
        assert_eq!((health.status, body(&health)["missing"].clone()), (503, json!(["client_secret"])));
    }

    #[test]
    fn broken_graph_settings_are_not_read_for_an_unauthenticated_caller() {
        let host = FakeHost::new();
        host.set_var("tenant_id", None);
        assert_eq!(host.serve("POST", "/revoke", &[], "{}").0.status, 401);
        let (reply, _) = revoke(&host, json!({"userId": "a@contoso.com"}));
        assert_eq!(reply.status, 500);
        assert!(body(&reply)["error"]["message"].as_str().unwrap().contains("tenant_id"));
        host.set_var("api_keys", None);
        let (reply, _) = host.serve("POST", "/revoke", &[], "{}");
        assert!(reply.status == 500 && body(&reply)["error"]["message"].as_str().unwrap().contains("api_keys"));
    }

    fn many(n: usize) -> Value {
        json!({ "userIds": (0..n).map(|i| format!("user{i}@contoso.com")).collect::<Vec<_>>() })
    }

    #[test]
    fn nobody_revoked_and_every_failure_temporary_is_not_a_2xx() {
        // Finding 1. All throttled past the budget: 429 with the longest wait, the same body.
        let host = FakeHost::new();
        host.enqueue_item("POST", "/users/user0@", Script::status(429).header("Retry-After", "30"));
        host.enqueue_item("POST", "/users/user1@", Script::status(429).header("Retry-After", "40"));
        let (reply, trace) = revoke(&host, many(2));
        assert_eq!((reply.status, header(&reply, "retry-after")), (429, Some("40")));
        let b = body(&reply);
        assert_eq!(b["value"], false);
        assert_eq!(b["results"][0]["error"]["code"], "throttled");
        assert_eq!(b["results"][1]["status"], 429);
        assert_eq!(trace.outcome, "throttled");

        // Throttled and unavailable: 503.
        let host = FakeHost::new();
        host.enqueue_item("POST", "/users/user0@", Script::status(429).header("Retry-After", "30"));
        host.enqueue_item("POST", "/users/user1@", Script::status(503).header("Retry-After", "40"));
        let (reply, _) = revoke(&host, many(2));
        assert_eq!((reply.status, header(&reply, "retry-after")), (503, Some("40")));

        // A hung batch: 504, after exactly the budget.
        let host = FakeHost::new();
        host.enqueue("POST", "/$batch", Script::Hang);
        let (reply, trace) = revoke(&host, many(2));
        assert_eq!((reply.status, header(&reply, "retry-after")), (504, Some("1")));
        assert_eq!(body(&reply)["results"][0]["error"]["code"], "upstreamTimeout");
        assert_eq!((trace.outcome, host.now()), ("upstreamTimeout", Duration::from_secs(25)));

        // One revoked: 207, no Retry-After.
        let host = FakeHost::new();
        host.enqueue_item("POST", "/users/user1@", Script::status(429).header("Retry-After", "30"));
        let (reply, trace) = revoke(&host, many(2));
        assert_eq!((reply.status, header(&reply, "retry-after"), trace.outcome), (207, None, "partial"));

        // One lasting failure among temporary ones: 207.
        let host = FakeHost::new();
        host.enqueue_item("POST", "/users/user0@", Script::status(404));
        host.enqueue_item("POST", "/users/user1@", Script::status(429).header("Retry-After", "30"));
        assert_eq!(revoke(&host, many(2)).0.status, 207);
    }

    #[test]
    fn identity_platform_trouble_is_503_with_retry_after_and_refusals_stay_502() {
        // Finding 6.
        let cases: Vec<(Vec<Script>, u16, &str, Option<&str>)> = vec![
            (vec![Script::status(429).header("Retry-After", "3"), Script::status(429).header("Retry-After", "3")], 503, "identityPlatformUnavailable", Some("3")),
            (vec![Script::status(500), Script::status(502)], 503, "identityPlatformUnavailable", Some("2")),
            (vec![Script::json(400, json!({"error": "temporarily_unavailable"})); 2], 503, "identityPlatformUnavailable", Some("2")),
            (vec![Script::Unreachable { temporary: true }; 2], 503, "identityPlatformUnavailable", Some("2")),
            (vec![Script::Unreachable { temporary: false }], 502, "tokenRequestFailed", None),
            (vec![Script::json(401, json!({"error": "invalid_client", "error_codes": [7000215]}))], 502, "tokenRequestFailed", None),
        ];
        for (answers, status, code, retry_after) in cases {
            let host = FakeHost::new();
            let tries = answers.len();
            for answer in answers {
                host.enqueue("POST", "/oauth2/v2.0/token", answer);
            }
            let (reply, _) = revoke(&host, json!({"userId": "a@contoso.com"}));
            let b = body(&reply);
            assert_eq!((reply.status, b["error"]["code"].as_str().unwrap()), (status, code), "{b}");
            assert_eq!(header(&reply, "retry-after"), retry_after, "{b}");
            assert_eq!(host.token_requests(), tries);
            assert_eq!(host.sent().len(), tries, "no Graph call without a token");
            if status == 503 {
                assert!(!b["error"]["message"].as_str().unwrap().contains("refused"), "{b}");
            }
        }
    }

    fn slow_body<'a>(host: &'a FakeHost, first: &'a str, rest: &'a str, gap: Duration) -> impl futures::Stream<Item = Result<Vec<u8>, ()>> + 'a {
        futures::stream::unfold(0, move |step| async move {
            match step {
                0 => Some((Ok(first.as_bytes().to_vec()), 1)),
                1 => {
                    host.sleep(gap).await;
                    Some((Ok(rest.as_bytes().to_vec()), 2))
                }
                _ => None,
            }
        })
    }

    #[test]
    fn a_body_slower_than_the_budget_is_a_504_and_revokes_nothing() {
        // Finding 8: the budget covers reading the body.
        let host = FakeHost::new();
        host.set_var("time_budget_ms", Some("2000"));
        let chunks = slow_body(&host, r#"{"userId":"#, r#""a@contoso.com"}"#, Duration::from_secs(60));
        let (reply, _) = host.serve_stream("POST", "/revoke", AUTHENTICATED, chunks);
        let b = body(&reply);
        assert_eq!((reply.status, b["error"]["code"].as_str().unwrap()), (504, "upstreamTimeout"), "{b}");
        assert!(b["error"]["message"].as_str().unwrap().contains("body"), "{b}");
        assert_eq!(host.now(), Duration::from_secs(2));
        assert!(host.sent().is_empty());

        // A body that never ends, likewise.
        let host = FakeHost::new();
        let (reply, _) = host.serve_stream("POST", "/revoke", AUTHENTICATED, futures::stream::pending());
        assert_eq!((reply.status, host.now()), (504, Duration::from_secs(25)));

        // Slow but within the budget: served, and the budget left is what Graph gets.
        let host = FakeHost::new();
        host.set_var("time_budget_ms", Some("2000"));
        host.enqueue("POST", "/revokeSignInSessions", Script::Hang);
        let chunks = slow_body(&host, r#"{"userId":"#, r#""a@contoso.com"}"#, Duration::from_millis(1500));
        let (reply, _) = host.serve_stream("POST", "/revoke", AUTHENTICATED, chunks);
        assert_eq!(reply.status, 504);
        assert_eq!(host.now(), Duration::from_secs(2), "the whole request within 2 s");
        assert_eq!(host.sent().len(), 2);
    }

    #[test]
    fn an_unauthenticated_caller_never_gets_its_body_read() {
        let host = FakeHost::new();
        let (reply, _) = host.serve_stream("POST", "/revoke", &[], futures::stream::pending());
        assert_eq!(reply.status, 401);
        assert_eq!(host.now(), Duration::ZERO);
    }
}
