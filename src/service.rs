//! The request flow: route → caller (its settings, then its credential) → Graph
//! settings → input → abuse brake → token → Graph.
//!
//! Each step either moves on or returns an [`Error`]; the checks that cost nothing
//! (routing, the caller's key, the body, the id) all come before the first outbound
//! call, so a rejected request never reaches the identity platform or Graph. Settings
//! are read when a step needs them (see [`crate::settings`]): the caller check reads
//! only the caller's, the Graph settings come after it, the app credential only when
//! a token is fetched. Each variable is read at most once per request (the caller
//! check of a bearer token and the Graph settings share `tenant_id`, `client_id` and
//! `login_base_url`). The body is read only once the caller is authenticated, and
//! within the time budget. The abuse brake counts the users a request would revoke
//! once they are all valid, and before the first outbound call.

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::time::Duration;

use futures::Stream;

use crate::graph::batch::Operation;
use crate::caller::brake::{self, Decision};
use crate::caller;
use crate::error::Error;
use crate::graph::{self, Revoked};
use crate::inbound::incoming::{self, Incoming};
use crate::graph::outcome::{self, Verdict};
use crate::transport::pipeline::Budget;
use crate::inbound::request_body::{check_content_type, check_graph_shaped_body, parse_revoke_body, read_query, RevokeRequest, Users};
use crate::reply::response::{self, Reply};
use crate::graph::revocation;
use crate::inbound::route::{route, Route};
use crate::platform::seam::Host;
use crate::settings::{self, GraphSettings};
use crate::reply::trace::Trace;
use crate::inbound::user_id::UserId;

/// Serves one request. `body` is read only after the caller is authenticated.
pub async fn serve(
    host: &impl Host,
    incoming: &Incoming,
    body: impl Stream<Item = Result<Vec<u8>, ()>>,
    trace: &mut Trace,
) -> Result<Reply, Error> {
    // Every read may be a vault round trip: ask the host once per variable per request.
    let read: RefCell<Vec<(String, Result<Option<String>, ()>)>> = RefCell::default();
    let lookup = |name: &str| {
        if let Some((_, value)) = read.borrow().iter().find(|(n, _)| n == name) {
            return value.clone();
        }
        let value = host.variable(name);
        read.borrow_mut().push((name.to_string(), value.clone()));
        value
    };
    let route = route(&incoming.method, &incoming.path)?;
    trace.route = route.name();
    if route == Route::OpenApi {
        return Ok(response::openapi(&trace.correlation));
    }
    if route == Route::Health {
        return Ok(response::health(settings::check_all(&lookup, &|| host.unix_now()).as_ref(), &trace.correlation));
    }
    caller::identify(host, incoming, &lookup, trace).await?;
    let query = read_query(&incoming.query)?;
    let settings = GraphSettings::load(&lookup).map_err(|problems| Error::Configuration(problems.describe()))?;
    let budget = Budget::since(trace.started, Duration::from_millis(settings.time_budget_ms));
    let body = incoming::read_body(host, incoming, body, &budget).await?;
    let request = match route {
        Route::GraphShaped { raw_user_id } => {
            check_graph_shaped_body(incoming.header("content-type"), &body)?;
            RevokeRequest { users: Users::One(raw_user_id), what_if: false, verify: false }
        }
        _ => {
            check_content_type(incoming.header("content-type"), &body)?;
            parse_revoke_body(&body)?
        }
    };
    let what_if = request.what_if || query.what_if;
    let verify = request.verify || query.verify;
    // A dry run with verify shows the user's current signInSessionsValidFrom (nothing was
    // revoked, so nothing to verify): the same one lookup, one field more.
    let lookup_fields = if verify { graph::DRY_RUN_VERIFY_FIELDS } else { graph::DRY_RUN_FIELDS };
    match request.users {
        Users::One(raw) => {
            let user = UserId::parse(&raw).map_err(Error::InvalidUserId)?;
            trace.user_ids.push(user.to_string());
            if what_if {
                trace.outcome = "whatIf";
                let found = revocation::look_up_one(host, &settings, &user, lookup_fields, trace).await?;
                return Ok(response::dry_run(&found, &trace.correlation));
            }
            apply_brake(host, &settings, 1, trace)?;
            let (Revoked { value }, proof) = revocation::revoke_one(host, &settings, &user, verify, trace).await?;
            trace.outcome = "revoked";
            let warnings: Vec<String> = user.warning().into_iter().collect();
            Ok(response::revoked(value, &warnings, proof.as_ref(), &trace.correlation))
        }
        Users::Many { ids, skipped, derived } => {
            let users = distinct_users(&ids, settings.max_users)?;
            trace.user_ids = users.iter().map(UserId::to_string).collect();
            if !what_if {
                apply_brake(host, &settings, users.len(), trace)?;
            }
            let operation = if what_if { Operation::Lookup(lookup_fields) } else { Operation::Revoke };
            let (results, proofs) = revocation::many(host, &settings, &users, operation, verify, trace).await?;
            let verdict = outcome::verdict(&results);
            trace.outcome = match (&verdict, what_if) {
                (Verdict::Retry { code, .. }, _) => code,
                (_, true) => "whatIf",
                (Verdict::AllDone, false) => "revoked",
                (Verdict::Partial, false) => "partial",
            };
            Ok(response::many(&users, &derived, &results, &proofs, &verdict, &skipped, what_if, &trace.correlation))
        }
    }
}

/// The abuse brake ([`crate::caller::brake`]): adds the `users` this request would revoke to the
/// caller's count for the current window, atomically, before anything is sent. Past
/// `max_revocations`, gives them back and refuses: 429 with `Retry-After` until the
/// window ends, nothing sent. A dry run never gets here: it revokes no one.
///
/// When the store cannot count (none configured, or down), the request goes through
/// and the log line says `"brake": "unavailable"`: a revoke during an incident at 3 a.m.
/// matters more than the brake, which guards against a leaked credential, and the log
/// line makes the gap visible to whoever watches it.
fn apply_brake(host: &impl Host, settings: &GraphSettings, users: usize, trace: &mut Trace) -> Result<(), Error> {
    let limit = settings.max_revocations;
    if limit == 0 {
        return Ok(());
    }
    // Always set once the caller is authenticated; never a secret.
    let caller = trace.caller.as_deref().unwrap_or("unknown");
    let prefix = brake::caller_prefix(&settings.tenant, &settings.client_id.to_string(), caller);
    let added = users as u64;
    let delta = i64::try_from(added).unwrap_or(i64::MAX);
    let window = brake::window(host.unix_now());
    let key = brake::counter_key(&prefix, window.index);
    let Ok(count) = host.kv_increment(&key, delta) else {
        trace.brake = Some("unavailable");
        return Ok(());
    };
    trace.brake_count = Some((u64::try_from(count).unwrap_or(0), limit));
    match brake::decide(count, added, limit) {
        Decision::Allow { new_window } => {
            if new_window {
                sweep_old_windows(host, &prefix, window.index);
            }
            Ok(())
        }
        Decision::Refuse => {
            // A refusal must not use up the caller's allowance. If the give-back fails,
            // the count stays too high: the brake refuses sooner, never later.
            let _ = host.kv_increment(&key, -delta);
            trace.brake = Some("engaged");
            Err(Error::Braked { users: added, limit, retry_after: window.ends_in })
        }
    }
}

/// Best effort, once per caller and window: deletes the caller's counters of windows
/// that are over (see [`brake::sweep`]), so they do not pile up in the store.
fn sweep_old_windows(host: &impl Host, prefix: &str, index: u64) {
    let marker = brake::marker_key(prefix);
    let listed = host.kv_get(&marker).map(|bytes| brake::decode_marker(&bytes)).unwrap_or_default();
    let (over, kept) = brake::sweep(&listed, index);
    host.kv_set(&marker, &brake::encode_marker(&kept));
    for window in over {
        host.kv_delete(&brake::counter_key(prefix, window));
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
    use crate::platform::fake_host::{FakeHost, Reply as Script, API_KEY};
    use serde_json::{json, Value};

    const AUTHENTICATED: &[(&str, &str)] = &[("x-api-key", API_KEY), ("content-type", "application/json")];
    const GRAPH_SETTINGS: [&str; 7] =
        ["tenant_id", "client_id", "graph_base_url", "login_base_url", "time_budget_ms", "max_users", "max_revocations"];

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
        // which credential (`credential`, it names the token's cache entry) when a token is
        // needed; client_private_key (none: the default is the secret) and client_secret only
        // when a token is fetched; /healthz reads all;
        // /openapi.json none.
        let host = FakeHost::new();
        assert_eq!(host.serve("GET", "/openapi.json", &[], "").0.status, 200);
        assert_eq!(host.reads(), Vec::<String>::new());

        assert_eq!(host.serve("GET", "/healthz", &[], "").0.status, 200);
        let mut all = GRAPH_SETTINGS.to_vec();
        all.extend(["credential", "client_private_key", "client_secret", "api_keys", "caller_audience"]);
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
        cold_reads.extend(["api_keys", "credential", "client_private_key", "client_secret"]);
        assert_eq!(sorted(host.reads()), names(&cold_reads), "each variable once");
        assert_eq!(host.reads()[0], "api_keys", "the caller check comes first");

        host.clear_reads();
        let (warm, trace) = revoke(&host, json!({"userId": "a@contoso.com"}));
        assert_eq!(warm.status, 200);
        assert!(trace.token_from_cache);
        let mut warm_reads = GRAPH_SETTINGS.to_vec();
        warm_reads.extend(["api_keys", "credential"]);
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

    /// Where the fake's caller keeps its brake keys (`API_KEY` is the first entry: `apiKey:1`).
    fn prefix() -> String {
        brake::caller_prefix("contoso.onmicrosoft.com", "11111111-2222-3333-4444-555555555555", "apiKey:1")
    }

    /// The counter of the fake's caller in the window of the fake's current time.
    fn counter(host: &FakeHost) -> Option<i64> {
        host.counter(&brake::counter_key(&prefix(), brake::window(host.unix_now()).index))
    }

    fn users(from: usize, n: usize) -> Value {
        json!({ "userIds": (from..from + n).map(|i| format!("user{i}@contoso.com")).collect::<Vec<_>>() })
    }

    /// Users Graph was asked to revoke: single calls and `$batch` items.
    fn revoked_users(host: &FakeHost) -> usize {
        let sent = host.sent();
        let single = sent.iter().filter(|s| s.url.ends_with("/revokeSignInSessions")).count();
        let batched: usize = host.batches().iter().map(|b| b.batch_urls().iter().filter(|u| u.ends_with("/revokeSignInSessions")).count()).sum();
        single + batched
    }

    #[test]
    fn past_max_revocations_the_caller_gets_429_and_nothing_is_sent() {
        let host = FakeHost::new();
        host.set_var("max_revocations", Some("25"));
        let (first, trace) = revoke(&host, users(0, 20));
        assert_eq!(first.status, 200);
        assert_eq!((trace.brake, trace.brake_count), (None, Some((20, 25))));
        let sent = host.sent().len();

        // 20 + 10 > 25: refused whole, nothing sent, the 10 given back.
        let (refused, trace) = revoke(&host, users(20, 10));
        let b = body(&refused);
        assert_eq!((refused.status, b["error"]["code"].as_str()), (429, Some("throttled")), "{b}");
        // The fake's clock starts 200 s before the end of a window.
        assert_eq!(header(&refused, "retry-after"), Some("200"));
        let message = b["error"]["message"].as_str().unwrap();
        assert!(message.contains("max_revocations") && message.contains("10-minute window") && !message.contains("brake/"), "{message}");
        assert_eq!((trace.brake, trace.brake_count, trace.outcome), (Some("engaged"), Some((30, 25)), "throttled"));
        assert_eq!(host.sent().len(), sent, "no token request, no Graph call");
        assert_eq!(counter(&host), Some(20), "the refused users were given back");

        // What still fits is allowed; then one more is not, on either route.
        assert_eq!(revoke(&host, users(30, 5)).0.status, 200);
        assert_eq!(counter(&host), Some(25));
        assert_eq!(revoke(&host, json!({"userId": "one.more@contoso.com"})).0.status, 429);
        let graph_shaped = host.serve("POST", "/users/one.more@contoso.com/revokeSignInSessions", AUTHENTICATED, "");
        assert_eq!(graph_shaped.0.status, 429);
        assert_eq!(revoked_users(&host), 25);

        // The next window starts afresh, and the Retry-After of a refusal is its whole length at most.
        host.advance(Duration::from_secs(200));
        assert_eq!(revoke(&host, users(40, 25)).0.status, 200);
        let (refused, _) = revoke(&host, users(70, 1));
        assert_eq!((refused.status, header(&refused, "retry-after")), (429, Some("600")));
        assert_eq!(revoked_users(&host), 50);
    }

    #[test]
    fn a_batch_larger_than_the_limit_is_refused_even_first_in_its_window() {
        let host = FakeHost::new();
        host.set_var("max_revocations", Some("10"));
        assert_eq!(revoke(&host, users(0, 11)).0.status, 429);
        assert!(host.sent().is_empty());
        assert_eq!(counter(&host), Some(0));
        assert_eq!(revoke(&host, users(0, 10)).0.status, 200);
    }

    #[test]
    fn dry_runs_are_not_counted_and_never_braked() {
        let host = FakeHost::new();
        host.set_var("max_revocations", Some("2"));
        let mut what_if = users(0, 5);
        what_if["whatIf"] = json!(true);
        assert_eq!(revoke(&host, what_if.clone()).0.status, 200);
        assert_eq!(host.serve("POST", "/revoke?whatIf=true", AUTHENTICATED, r#"{"userId":"a@contoso.com"}"#).0.status, 200);
        assert_eq!(counter(&host), None, "nothing counted");
        assert_eq!(revoke(&host, users(0, 2)).0.status, 200);
        assert_eq!(revoke(&host, json!({"userId": "a@contoso.com"})).0.status, 429);
        let (dry, trace) = revoke(&host, what_if);
        assert_eq!((dry.status, trace.brake, trace.brake_count), (200, None, None), "a dry run past the limit still runs");
        let (dry, _) = revoke(&host, json!({"userId": "a@contoso.com", "whatIf": true}));
        assert_eq!(dry.status, 200);
    }

    #[test]
    fn zero_turns_the_brake_off_and_counts_nothing() {
        let host = FakeHost::new();
        host.set_var("max_revocations", Some("0"));
        for from in 0..5 {
            assert_eq!(revoke(&host, users(from * 100, 100)).0.status, 200);
        }
        assert_eq!(revoked_users(&host), 500);
        assert!(host.kv_keys().iter().all(|k| !k.contains("/brake/")), "{:?}", host.kv_keys());
    }

    #[test]
    fn bad_input_is_refused_before_it_is_counted() {
        let host = FakeHost::new();
        host.set_var("max_revocations", Some("3"));
        host.set_var("max_users", Some("5"));
        assert_eq!(revoke(&host, users(0, 6)).0.status, 413);
        assert_eq!(revoke(&host, json!({"userIds": ["a@contoso.com", "not an id"]})).0.status, 400);
        assert_eq!(revoke(&host, json!({"userId": "{0b2c4f4e-1f0a-4d3c-9a8b-7c6d5e4f3a2b}"})).0.status, 400);
        assert_eq!(counter(&host), None);
        // Duplicates count once: what would be sent.
        let (reply, trace) = revoke(&host, json!({"userIds": ["a@contoso.com", "a@contoso.com", "b@contoso.com"]}));
        assert_eq!((reply.status, trace.brake_count), (200, Some((2, 3))));
    }

    #[test]
    fn a_malformed_max_revocations_is_a_500_naming_it_and_nothing_is_sent() {
        let host = FakeHost::new();
        host.set_var("max_revocations", Some("300/10min"));
        let (reply, _) = revoke(&host, json!({"userId": "a@contoso.com"}));
        let b = body(&reply);
        assert_eq!((reply.status, b["error"]["code"].as_str()), (500, Some("configurationError")));
        assert!(b["error"]["message"].as_str().unwrap().contains("max_revocations"), "{b}");
        assert!(!b["error"]["message"].as_str().unwrap().contains("300/10min"), "{b}");
        assert!(host.sent().is_empty());
        let (health, _) = host.serve("GET", "/healthz", &[], "");
        assert_eq!((health.status, body(&health)["invalid"].clone()), (503, json!(["max_revocations"])));
    }

    #[test]
    fn a_store_that_cannot_count_lets_the_revoke_through_and_says_so() {
        let host = FakeHost::new();
        host.set_var("max_revocations", Some("1"));
        host.set_store_down(true);
        for _ in 0..3 {
            let (reply, trace) = revoke(&host, json!({"userId": "a@contoso.com"}));
            assert_eq!((reply.status, trace.brake, trace.brake_count), (200, Some("unavailable"), None));
        }
        // A counter the store cannot add to (not 8 bytes): the same.
        let host = FakeHost::new();
        host.kv_plant(&brake::counter_key(&prefix(), brake::window(host.unix_now()).index), b"garbage");
        let (reply, trace) = revoke(&host, json!({"userId": "a@contoso.com"}));
        assert_eq!((reply.status, trace.brake), (200, Some("unavailable")));
    }

    #[test]
    fn a_new_window_sweeps_the_callers_windows_that_are_over() {
        let host = FakeHost::new();
        let start = brake::window(host.unix_now()).index;
        let key = |w: u64| brake::counter_key(&prefix(), w);
        let marker = brake::marker_key(&prefix());
        assert_eq!(revoke(&host, json!({"userId": "a@contoso.com"})).0.status, 200);
        assert_eq!(host.kv_get(&marker), Some(brake::encode_marker(&[start])));
        assert_eq!(revoke(&host, json!({"userId": "b@contoso.com"})).0.status, 200);
        // The next window keeps the previous one (a lagging replica may still count there).
        host.advance(brake::WINDOW);
        assert_eq!(revoke(&host, json!({"userId": "a@contoso.com"})).0.status, 200);
        assert_eq!((host.counter(&key(start)), host.counter(&key(start + 1))), (Some(2), Some(1)));
        assert_eq!(host.kv_get(&marker), Some(brake::encode_marker(&[start, start + 1])));
        // The one after deletes it.
        host.advance(brake::WINDOW);
        assert_eq!(revoke(&host, json!({"userId": "a@contoso.com"})).0.status, 200);
        assert_eq!(host.counter(&key(start)), None);
        assert_eq!(host.kv_get(&marker), Some(brake::encode_marker(&[start + 1, start + 2])));
        // Back after an hour: everything left goes.
        host.advance(brake::WINDOW * 6);
        assert_eq!(revoke(&host, json!({"userId": "a@contoso.com"})).0.status, 200);
        let brake_keys: Vec<String> = host.kv_keys().into_iter().filter(|k| k.contains("/brake/")).collect();
        assert_eq!(brake_keys, vec![key(start + 8), marker.clone()]);
    }

    #[test]
    fn callers_are_counted_apart() {
        let host = FakeHost::new();
        let second = "second-unit-test-api-key-0123456789";
        host.set_var("api_keys", Some(&format!("{API_KEY},{second}")));
        host.set_var("max_revocations", Some("1"));
        assert_eq!(revoke(&host, json!({"userId": "a@contoso.com"})).0.status, 200);
        assert_eq!(revoke(&host, json!({"userId": "a@contoso.com"})).0.status, 429);
        let other = [("x-api-key", second), ("content-type", "application/json")];
        let (reply, trace) = host.serve("POST", "/revoke", &other, r#"{"userId":"a@contoso.com"}"#);
        assert_eq!((reply.status, trace.caller.as_deref()), (200, Some("apiKey:2")));
    }

    /// The Graph calls sent, as method and URL after `/v1.0` (the token requests left out).
    fn graph_calls(host: &FakeHost) -> Vec<(String, String)> {
        let graph = format!("{}/v1.0", crate::platform::fake_host::GRAPH);
        host.sent()
            .iter()
            .filter(|s| !s.is_token_request())
            .map(|s| (s.method.to_string(), s.url.trim_start_matches(&graph).to_string()))
            .collect()
    }

    #[test]
    fn verify_reads_one_user_back_after_the_revoke() {
        let host = FakeHost::new();
        host.plant_token("warm");
        let (reply, trace) = revoke(&host, json!({"userId": "adele@contoso.com", "verify": true}));
        // The fake writes the revocation's time (virtual zero) as Graph would.
        let now = humantime::format_rfc3339_seconds(host.wall_now()).to_string();
        assert_eq!(reply.status, 200);
        assert_eq!(body(&reply), json!({"value": true, "signInSessionsValidFrom": now, "verified": true}));
        assert_eq!(
            graph_calls(&host),
            vec![
                ("POST".into(), "/users/adele@contoso.com/revokeSignInSessions".into()),
                ("GET".into(), "/users/adele@contoso.com?$select=id,signInSessionsValidFromDateTime".into()),
            ]
        );
        assert_eq!((trace.outbound_calls, trace.outcome), (2, "revoked"), "one revoke and one read, warm");
        assert!(host.sent().iter().all(|s| s.header("client-request-id") == Some("cid")));

        // Cold: the one token serves both calls.
        let host = FakeHost::new();
        let (reply, trace) = revoke(&host, json!({"userId": "adele@contoso.com", "verify": true}));
        assert_eq!((reply.status, body(&reply)["verified"].clone()), (200, json!(true)));
        assert_eq!((trace.outbound_calls, host.token_requests()), (3, 1));

        // Without verify, nothing is read back and nothing is added.
        let host = FakeHost::new();
        host.plant_token("warm");
        let (reply, _) = revoke(&host, json!({"userId": "adele@contoso.com", "verify": false}));
        assert_eq!(body(&reply), json!({"value": true}));
        assert_eq!(graph_calls(&host).len(), 1);
    }

    #[test]
    fn a_stale_or_refused_read_back_never_fails_the_revoke() {
        let stale = Script::json(200, json!({"id": "x", "signInSessionsValidFromDateTime": crate::platform::fake_host::NEVER_REVOKED}));
        let forbidden = Script::json(403, json!({"error": {"code": "Authorization_RequestDenied", "message": "Insufficient privileges to complete the operation."}}));
        let cases = [
            (stale, "staleRead", "eventually consistent"),
            (forbidden, "graphForbidden", "User.Read.All"),
            (Script::status(429).header("Retry-After", "60"), "throttled", "retry after 60 seconds"),
            (Script::status(500), "graphError", "not usable"),
        ];
        for (answer, code, says) in cases {
            let host = FakeHost::new();
            host.plant_token("warm");
            host.enqueue("POST", "/revokeSignInSessions", Script::json(200, json!({"value": true})).header("request-id", "rid-revoke"));
            host.enqueue("GET", "/users/", answer);
            let (reply, trace) = revoke(&host, json!({"userId": "adele@contoso.com", "verify": true}));
            let b = body(&reply);
            assert_eq!((reply.status, b["value"].clone(), b["verified"].clone()), (200, json!(true), json!(false)), "{code}: {b}");
            assert_eq!(b["verification"]["code"], code, "{b}");
            assert!(b["verification"]["message"].as_str().unwrap().contains(says), "{b}");
            assert_eq!(header(&reply, "request-id"), Some("rid-revoke"), "{code}: the revoke's request-id");
            assert_eq!(header(&reply, "retry-after"), None, "{code}: nothing for the caller to retry");
            assert_eq!(trace.outcome, "revoked");
            assert_eq!(host.now(), Duration::ZERO, "{code}: a throttled read that outlasts the budget is not waited for");
        }
        // Only a stale read shows the value read.
        let host = FakeHost::new();
        host.enqueue("GET", "/users/", Script::json(200, json!({"id": "x", "signInSessionsValidFromDateTime": "2026-01-01T00:00:00Z"})));
        let b = body(&revoke(&host, json!({"userId": "adele@contoso.com", "verify": true})).0);
        assert_eq!(b["signInSessionsValidFrom"], "2026-01-01T00:00:00Z");
    }

    #[test]
    fn a_read_back_gets_what_is_left_of_the_budget_and_no_more() {
        let host = FakeHost::new();
        host.set_var("time_budget_ms", Some("2000"));
        host.plant_token("warm");
        host.enqueue("POST", "/revokeSignInSessions", Script::json(200, json!({"value": true})).after(Duration::from_millis(1500)));
        host.enqueue("GET", "/users/", Script::Hang);
        let (reply, _) = revoke(&host, json!({"userId": "adele@contoso.com", "verify": true}));
        let b = body(&reply);
        assert_eq!((reply.status, b["value"].clone(), b["verified"].clone()), (200, json!(true), json!(false)), "{b}");
        assert_eq!(b["verification"]["code"], "upstreamTimeout");
        assert!(b["verification"]["message"].as_str().unwrap().starts_with("Not verified: time budget spent (time_budget_ms = 2000)"), "{b}");
        assert_eq!(host.now(), Duration::from_secs(2), "the whole request within its budget");

        // A throttled read whose wait fits the budget is retried.
        let host = FakeHost::new();
        host.plant_token("warm");
        host.enqueue("GET", "/users/", Script::status(429).header("Retry-After", "2"));
        let b = body(&revoke(&host, json!({"userId": "adele@contoso.com", "verify": true})).0);
        assert_eq!(b["verified"], true, "{b}");
        assert_eq!((graph_calls(&host).len(), host.now()), (3, Duration::from_secs(2)));
    }

    #[test]
    fn a_failed_revoke_is_not_read_back() {
        let host = FakeHost::new();
        host.plant_token("warm");
        host.enqueue("POST", "/revokeSignInSessions", Script::status(404));
        let (reply, _) = revoke(&host, json!({"userId": "adele@contoso.com", "verify": true}));
        assert_eq!(reply.status, 404);
        assert!(body(&reply)["error"].is_object());
        assert_eq!(graph_calls(&host).len(), 1, "no read-back");
    }

    #[test]
    fn verify_on_the_graph_shaped_route_is_a_query_parameter() {
        let host = FakeHost::new();
        host.plant_token("warm");
        let key = [("x-api-key", API_KEY)];
        let (reply, _) = host.serve("POST", "/users/adele%40contoso.com/revokeSignInSessions?verify=true", &key, "");
        assert_eq!((reply.status, body(&reply)["verified"].clone()), (200, json!(true)));
        assert_eq!(graph_calls(&host).len(), 2);
        // On /revoke too, and the body's false does not undo the query's true.
        let (reply, _) = host.serve("POST", "/revoke?verify=true", AUTHENTICATED, r#"{"userId": "adele@contoso.com", "verify": false}"#);
        assert_eq!(body(&reply)["verified"], true);
        // The Graph-shaped body stays Graph's.
        let json_key = [("x-api-key", API_KEY), ("content-type", "application/json")];
        let (reply, _) = host.serve("POST", "/users/adele%40contoso.com/revokeSignInSessions", &json_key, r#"{"verify": true}"#);
        assert_eq!(reply.status, 400);
        assert_eq!(graph_calls(&host).len(), 4, "the refused request sent nothing");
    }

    #[test]
    fn verify_with_what_if_shows_the_current_value_and_revokes_nothing() {
        let host = FakeHost::new();
        host.plant_token("warm");
        let (reply, trace) = revoke(&host, json!({"userId": "adele@contoso.com", "verify": true, "whatIf": true}));
        assert_eq!(
            body(&reply),
            json!({"value": false, "whatIf": true, "signInSessionsValidFrom": crate::platform::fake_host::NEVER_REVOKED,
                   "user": {"id": "00000000-0000-4000-8000-000000000001", "userPrincipalName": "adele@contoso.com"}})
        );
        assert_eq!(
            graph_calls(&host),
            vec![("GET".into(), "/users/adele@contoso.com?$select=id,userPrincipalName,signInSessionsValidFromDateTime".into())]
        );
        assert_eq!((trace.outbound_calls, trace.outcome), (1, "whatIf"));

        // Many: one lookup batch, each found user with its value.
        let host = FakeHost::new();
        host.plant_token("warm");
        let (reply, _) = host.serve("POST", "/revoke?whatIf=true&verify=true", AUTHENTICATED, &many(2).to_string());
        let b = body(&reply);
        assert_eq!(reply.status, 200, "{b}");
        assert!(b["results"].as_array().unwrap().iter().all(|r| r["signInSessionsValidFrom"] == crate::platform::fake_host::NEVER_REVOKED && r.get("verified").is_none()), "{b}");
        let batches = host.batches();
        assert_eq!(batches.len(), 1);
        assert!(batches[0].batch_urls().iter().all(|u| u.ends_with("?$select=id,userPrincipalName,signInSessionsValidFromDateTime")));
    }

    #[test]
    fn many_users_are_read_back_in_batches_only_when_revoked() {
        // 23 users: user1 not found, user2 read back stale, user3's read refused; the rest verified.
        let host = FakeHost::new();
        host.plant_token("warm");
        host.enqueue_item("POST", "/users/user1@", Script::status(404));
        host.enqueue_item("GET", "/users/user2@", Script::json(200, json!({"id": "x", "signInSessionsValidFromDateTime": "2026-01-01T00:00:00Z"})));
        host.enqueue_item("GET", "/users/user3@", Script::json(403, json!({"error": {"code": "Authorization_RequestDenied", "message": "Insufficient privileges"}})));
        let mut request = many(23);
        request["verify"] = json!(true);
        let (reply, trace) = revoke(&host, request);
        let b = body(&reply);
        assert_eq!(reply.status, 207, "{b}");
        let results = b["results"].as_array().unwrap();
        assert_eq!(results[0]["verified"], true);
        assert_eq!(results[0]["signInSessionsValidFrom"], humantime::format_rfc3339_seconds(host.wall_now()).to_string());
        assert!(results[1].get("verified").is_none() && results[1]["error"]["code"] == "userNotFound", "{}", results[1]);
        assert_eq!((results[2]["value"].clone(), results[2]["verified"].clone()), (json!(true), json!(false)));
        assert_eq!(results[2]["verification"]["code"], "staleRead");
        assert_eq!(results[3]["verification"]["code"], "graphForbidden");
        assert!(results[3]["verification"]["message"].as_str().unwrap().contains("User.Read.All"));
        assert!(results[4..].iter().all(|r| r["verified"] == true && r["status"] == 200));
        assert!(results.iter().all(|r| r["status"] != 403), "the read never changes a user's status");

        // Two revoke batches (20 + 3), then two read batches (20 + 2) for the 22 revoked.
        let batches = host.batches();
        let sizes: Vec<(bool, usize)> = batches.iter().map(|b| (b.batch_urls()[0].contains("?$select="), b.batch_urls().len())).collect();
        assert_eq!(sizes, vec![(false, 20), (false, 3), (true, 20), (true, 2)]);
        let read: Vec<String> = batches[2..].iter().flat_map(|b| b.batch_urls()).collect();
        assert!(read.iter().all(|u| u.ends_with("?$select=id,signInSessionsValidFromDateTime")));
        assert!(!read.iter().any(|u| u.starts_with("/users/user1@")), "no read-back for a failed revoke");
        assert_eq!(trace.outbound_calls, 4);
    }

    #[test]
    fn many_read_backs_retry_throttled_items_within_the_budget_and_report_the_rest() {
        let host = FakeHost::new();
        host.plant_token("warm");
        host.enqueue_item("GET", "/users/user0@", Script::status(429).header("Retry-After", "1"));
        host.enqueue_item("GET", "/users/user1@", Script::status(429).header("Retry-After", "1"));
        for _ in 0..4 {
            host.enqueue_item("GET", "/users/user1@", Script::status(503).header("Retry-After", "1"));
        }
        let mut request = many(2);
        request["verify"] = json!(true);
        let (reply, _) = revoke(&host, request);
        let b = body(&reply);
        assert_eq!((reply.status, b["value"].clone()), (200, json!(true)), "{b}");
        assert_eq!(b["results"][0]["verified"], true, "{b}");
        assert_eq!(b["results"][1]["verification"]["code"], "graphUnavailable", "{b}");
        assert_eq!(header(&reply, "retry-after"), None);
        // One revoke batch, then the read: a try and three retries.
        assert_eq!(host.batches().len(), 5);

        // A read-back batch that hangs: the budget ends it, the revokes stand.
        let host = FakeHost::new();
        host.set_var("time_budget_ms", Some("3000"));
        host.plant_token("warm");
        host.enqueue("POST", "/$batch", Script::json(200, json!({"responses": [{"id": "0", "status": 204}, {"id": "1", "status": 204}]})));
        host.enqueue("POST", "/$batch", Script::Hang);
        let mut request = many(2);
        request["verify"] = json!(true);
        let (reply, _) = revoke(&host, request);
        let b = body(&reply);
        assert_eq!((reply.status, host.now()), (200, Duration::from_secs(3)), "{b}");
        for result in b["results"].as_array().unwrap() {
            assert_eq!((result["status"].clone(), result["verified"].clone()), (json!(204), json!(false)));
            assert!(result["verification"]["message"].as_str().unwrap().contains("time budget spent"), "{result}");
        }
    }

    #[test]
    fn an_unauthenticated_caller_never_gets_its_body_read() {
        let host = FakeHost::new();
        let (reply, _) = host.serve_stream("POST", "/revoke", &[], futures::stream::pending());
        assert_eq!(reply.status, 401);
        assert_eq!(host.now(), Duration::ZERO);
    }

    /// Entra ID caller tokens against the fake identity platform.
    mod tokens {
        use super::*;
        use crate::platform::fake_host::LOGIN;
        use crate::platform::seam::Host;
        use crate::test_keys::{self, mint};

        pub const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
        const OID: &str = "aaaaaaaa-0000-4000-8000-000000000001";
        const APP: &str = "bbbbbbbb-0000-4000-8000-000000000002";
        const KID: &str = "unit-kid";
        const TOKEN_SETTINGS: [&str; 7] =
            ["caller_audience", "tenant_id", "caller_tenant_id", "login_base_url", "client_id", "allowed_callers", "caller_role"];
        const USER: &str = r#"{"userId":"a@contoso.com"}"#;

        /// A deployment accepting tokens for `api://graph-revoke` from [`TENANT`] (and API keys).
        pub fn token_host() -> FakeHost {
            let host = FakeHost::new();
            host.set_var("caller_audience", Some("api://graph-revoke")).set_var("caller_tenant_id", Some(TENANT));
            host.set_jwks(&test_keys::jwks_document(KID, &test_keys::signer().to_public_key()));
            host
        }

        fn claims(host: &FakeHost) -> Value {
            let now = host.unix_now();
            json!({
                "aud": "api://graph-revoke", "iss": format!("{LOGIN}/{TENANT}/v2.0"), "tid": TENANT,
                "oid": OID, "azp": APP, "roles": ["Sessions.Revoke"], "nbf": now - 60, "exp": now + 3600, "ver": "2.0"
            })
        }

        fn signed(claims: &Value, kid: &str, key: &rsa_test::PrivateKey) -> String {
            mint(&format!(r#"{{"typ":"JWT","alg":"RS256","kid":"{kid}"}}"#), &claims.to_string(), key)
        }

        pub fn good(host: &FakeHost) -> String {
            signed(&claims(host), KID, test_keys::signer())
        }

        fn forged(host: &FakeHost, kid: &str) -> String {
            signed(&claims(host), kid, test_keys::other())
        }

        pub fn call(host: &FakeHost, token: &str) -> (Reply, Trace) {
            let authorization = format!("Bearer {token}");
            host.serve("POST", "/revoke", &[("authorization", &authorization), ("content-type", "application/json")], USER)
        }

        fn challenge(reply: &Reply) -> &str {
            header(reply, "www-authenticate").unwrap_or("")
        }

        #[test]
        fn a_token_is_checked_against_keys_fetched_once_and_kept_a_day() {
            let host = token_host();
            let (reply, trace) = call(&host, &good(&host));
            assert_eq!(reply.status, 200, "{:?}", body(&reply));
            assert_eq!(trace.caller, Some(format!("oid:{OID}")));
            assert_eq!(trace.caller_app.as_deref(), Some(APP));
            assert_eq!((host.jwks_requests(), host.token_requests(), host.sent().len(), trace.outbound_calls), (1, 1, 3, 3));
            assert!(host.sent()[0].is_jwks_request(), "the keys first, before any token request");
            assert_eq!(host.sent()[0].url, format!("{LOGIN}/{TENANT}/discovery/v2.0/keys"));

            // Warm: the keys and the Graph token cached, one outbound call.
            let (reply, trace) = call(&host, &good(&host));
            assert_eq!((reply.status, trace.outbound_calls, host.sent().len()), (200, 1, 4));

            // A day later the keys are fetched again.
            host.advance(Duration::from_secs(24 * 3600));
            assert_eq!(call(&host, &good(&host)).0.status, 200);
            assert_eq!(host.jwks_requests(), 2);
        }

        #[test]
        fn the_caller_check_reads_the_token_policy_first_and_each_variable_once() {
            let host = token_host();
            let (reply, _) = call(&host, "not.a.jwt");
            assert_eq!(reply.status, 401);
            assert_eq!(host.reads(), TOKEN_SETTINGS, "a refused token reads the token policy alone");
            assert!(host.sent().is_empty());

            host.clear_reads();
            assert_eq!(call(&host, &good(&host)).0.status, 200);
            let mut cold = TOKEN_SETTINGS.to_vec();
            cold.extend(["graph_base_url", "time_budget_ms", "max_users", "max_revocations", "credential", "client_private_key", "client_secret"]);
            assert_eq!(sorted(host.reads()), names(&cold), "each variable once: tenant_id, client_id and login_base_url are shared");
            assert_eq!(host.reads()[0], "caller_audience");

            host.clear_reads();
            let (reply, _) = host.serve("POST", "/revoke", AUTHENTICATED, USER);
            assert_eq!(reply.status, 200);
            let mut warm = GRAPH_SETTINGS.to_vec();
            warm.extend(["api_keys", "credential"]);
            assert_eq!(sorted(host.reads()), names(&warm), "an API-key caller reads nothing of the token policy");
        }

        #[test]
        fn a_token_refused_on_its_claims_costs_no_outbound_call_even_with_no_keys_cached() {
            let host = token_host();
            let now = host.unix_now();
            let mut expired = claims(&host);
            expired["exp"] = json!(now - 301);
            let mut other_tenant = claims(&host);
            other_tenant["tid"] = json!("00000000-0000-0000-0000-000000000001");
            for token in [signed(&expired, "any-kid", test_keys::other()), signed(&other_tenant, KID, test_keys::signer()), "x.y.z".into()] {
                let (reply, trace) = call(&host, &token);
                assert_eq!((reply.status, body(&reply)["error"]["code"].as_str()), (401, Some("unauthenticated")));
                assert_eq!(challenge(&reply), r#"Bearer realm="graph-revoke", error="invalid_token""#);
                assert_eq!((trace.caller, trace.outbound_calls), (None, 0));
            }
            assert!(host.sent().is_empty());
        }

        #[test]
        fn forged_kids_refetch_the_keys_at_most_once_per_five_minutes() {
            let host = token_host();
            assert_eq!(call(&host, &good(&host)).0.status, 200);
            // The keys were fetched moments ago: a forged kid is refused without a refetch.
            assert_eq!(call(&host, &forged(&host, "forged-early")).0.status, 401);
            assert_eq!(host.jwks_requests(), 1);
            host.advance(Duration::from_secs(300));
            let before = host.sent().len();
            for i in 0..20 {
                let (reply, _) = call(&host, &forged(&host, &format!("forged-{i}")));
                assert_eq!(reply.status, 401);
                assert!(body(&reply)["error"]["message"].as_str().unwrap().contains("key"), "{:?}", body(&reply));
            }
            assert_eq!(host.jwks_requests(), 2, "one refetch for twenty forged kids");
            assert_eq!(host.sent().len(), before + 1, "and nothing else");

            host.advance(Duration::from_secs(299));
            assert_eq!(call(&host, &forged(&host, "forged-late")).0.status, 401);
            assert_eq!(host.jwks_requests(), 2);
            host.advance(Duration::from_secs(1));
            assert_eq!(call(&host, &forged(&host, "forged-later")).0.status, 401);
            assert_eq!(host.jwks_requests(), 3, "five minutes after the last fetch, one more");

            // A real key rollover: the new kid's first token refetches (once the interval
            // has passed) and is accepted.
            host.set_jwks(&test_keys::jwks_document("rolled-kid", &test_keys::other().to_public_key()));
            host.advance(Duration::from_secs(300));
            assert_eq!(call(&host, &forged(&host, "rolled-kid")).0.status, 200);
            assert_eq!(host.jwks_requests(), 4);
        }

        #[test]
        fn trouble_at_the_keys_endpoint_is_503_with_retry_after_and_not_hammered() {
            let cases: Vec<(Script, &str)> = vec![
                (Script::status(500), "500"),
                (Script::status(404), "login_base_url"),
                (Script::json(200, json!({"value": "not a jwks"})), "not a JWKS"),
                (Script::Unreachable { temporary: true }, "ConnectionRefused"),
                (Script::Hang, "within 5 s"),
            ];
            for (answer, says) in cases {
                let host = token_host();
                host.enqueue("GET", "/discovery/v2.0/keys", answer);
                let (reply, _) = call(&host, &good(&host));
                let b = body(&reply);
                assert_eq!((reply.status, b["error"]["code"].as_str()), (503, Some("identityPlatformUnavailable")), "{b}");
                assert!(b["error"]["message"].as_str().unwrap().contains(says), "{b}");
                assert_eq!(header(&reply, "retry-after"), Some("30"));
                assert_eq!((host.jwks_requests(), host.token_requests()), (1, 0));

                // Not asked again for 30 s; then asked, and the caller gets in.
                let waited = host.now();
                host.advance(Duration::from_secs(10));
                let (reply, _) = call(&host, &good(&host));
                assert_eq!((reply.status, host.jwks_requests()), (503, 1));
                let left = 30 - 10 - waited.as_secs();
                assert_eq!(header(&reply, "retry-after"), Some(left.to_string().as_str()));
                host.advance(Duration::from_secs(left));
                assert_eq!(call(&host, &good(&host)).0.status, 200);
                assert_eq!(host.jwks_requests(), 2);
            }
        }

        #[test]
        fn a_failed_refetch_for_an_unknown_kid_keeps_the_cached_keys() {
            let host = token_host();
            assert_eq!(call(&host, &good(&host)).0.status, 200);
            host.advance(Duration::from_secs(300));
            host.enqueue("GET", "/discovery/v2.0/keys", Script::status(503));
            assert_eq!(call(&host, &forged(&host, "new-kid")).0.status, 401);
            assert_eq!(host.jwks_requests(), 2);
            assert_eq!(call(&host, &good(&host)).0.status, 200, "the cached keys still serve");
            assert_eq!(host.jwks_requests(), 2);
        }

        #[test]
        fn allowed_callers_and_caller_role_answer_403_naming_the_rule_after_no_token_request() {
            let host = token_host();
            host.set_var("allowed_callers", Some("cccccccc-0000-4000-8000-000000000003"));
            let (reply, trace) = call(&host, &good(&host));
            let b = body(&reply);
            assert_eq!((reply.status, b["error"]["code"].as_str()), (403, Some("forbidden")), "{b}");
            assert!(b["error"]["message"].as_str().unwrap().contains("allowed_callers"), "{b}");
            assert_eq!((trace.caller, host.token_requests(), host.sent().len()), (None, 0, 1), "the JWKS fetch only");

            host.set_var("allowed_callers", Some(&format!("cccccccc-0000-4000-8000-000000000003,{OID}")));
            host.set_var("caller_role", Some("Sessions.RevokeAll"));
            let (reply, _) = call(&host, &good(&host));
            assert_eq!(reply.status, 403);
            assert!(body(&reply)["error"]["message"].as_str().unwrap().contains("caller_role"));
            host.set_var("caller_role", Some("Sessions.Revoke"));
            assert_eq!(call(&host, &good(&host)).0.status, 200);
        }

        #[test]
        fn which_credential_is_asked_for_follows_what_is_configured() {
            let api_key = [("x-api-key", API_KEY)];
            // Tokens only.
            let host = token_host();
            host.set_var("api_keys", None);
            for headers in [&api_key[..], &[]] {
                let (reply, _) = host.serve("POST", "/revoke", headers, USER);
                assert_eq!((reply.status, challenge(&reply)), (401, r#"Bearer realm="graph-revoke""#));
            }
            assert_eq!(call(&host, &good(&host)).0.status, 200);

            // API keys only: a token is told to send a key.
            let host = FakeHost::new();
            let (reply, _) = call(&host, &good(&host));
            assert_eq!(reply.status, 401);
            assert!(challenge(&reply).starts_with("APIKey"));
            assert!(body(&reply)["error"]["message"].as_str().unwrap().contains("caller_audience"));
            assert_eq!(host.reads(), ["caller_audience", "api_keys"]);

            // Neither: 500 whatever is presented.
            host.set_var("api_keys", None);
            let bearer = format!("Bearer {}", good(&host));
            for headers in [&api_key[..], &[], &[("authorization", bearer.as_str())]] {
                let (reply, _) = host.serve("POST", "/revoke", headers, USER);
                assert_eq!((reply.status, body(&reply)["error"]["code"].as_str()), (500, Some("configurationError")));
            }
            assert!(host.sent().is_empty());

            // Both enabled: either works; both at once is refused; a gateway's own
            // Authorization next to x-api-key is ignored.
            let host = token_host();
            assert_eq!(host.serve("POST", "/revoke", AUTHENTICATED, USER).0.status, 200);
            assert_eq!(call(&host, &good(&host)).0.status, 200);
            let bearer = format!("Bearer {}", good(&host));
            let (reply, _) = host.serve("POST", "/revoke", &[("x-api-key", API_KEY), ("authorization", &bearer)], USER);
            assert_eq!(reply.status, 401);
            assert!(body(&reply)["error"]["message"].as_str().unwrap().contains("not both"));
            let gateway = [("x-api-key", API_KEY), ("authorization", "Basic Z2F0ZXdheTp4"), ("content-type", "application/json")];
            assert_eq!(host.serve("POST", "/revoke", &gateway, USER).0.status, 200);
            let (reply, _) = host.serve("POST", "/revoke", &[("authorization", &bearer), ("authorization", &bearer)], USER);
            assert!(reply.status == 401 && body(&reply)["error"]["message"].as_str().unwrap().contains("exactly one"));
        }
    }
}
