//! Talking to Graph for one request: the calls and what their answers mean for each
//! user. One user goes through a single call; many go through `$batch` rounds. The
//! token comes from the request's [`Session`].
//!
//! A Graph 401 drops the cached token and retries once with a fresh one. In a batch,
//! only the users of a batch answered 401 and the items that came back 429/503/504 are
//! sent again: the former with the fresh token whatever becomes of the latter, the
//! latter after the longest `Retry-After` among them, as long as the time budget allows. Results are returned,
//! one per user; how to answer the caller is decided by the caller of [`many`].
//!
//! With `verify`, the revoked users are read back in the same session (same token, same
//! time budget): one `GET` for one user, `$batch` lookups for many, only for the users
//! Graph answered 2xx, and judged by [`crate::graph::verification`]. A read-back never turns a
//! revoke into a failure, and the `request-id` returned stays the revoke's.

use std::cell::Cell;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::StreamExt;

use crate::graph::batch::{self, Operation, BATCH_SIZE};
use crate::error::Error;
use crate::graph::{self, FoundUser, Revoked};
use crate::transport::outbound::OutboundResponse;
use crate::graph::outcome::{Done, ItemResult};
use crate::transport::pipeline;
use crate::transport::retry::{self, whole_seconds, Next, MAX_RETRIES};
use crate::platform::seam::Host;
use crate::identity::session::Session;
use crate::settings::GraphSettings;
use crate::reply::trace::Trace;
use crate::inbound::user_id::UserId;
use crate::graph::verification::{self, Verification};

/// Batches in flight at once: 100 users (the default `max_users`) in one round of
/// five batches would be 100 requests in parallel against one tenant; four keeps a
/// large request well inside Graph's per-app limits while still overlapping waits.
pub const CONCURRENT_BATCHES: usize = 4;

/// Revokes one user; with `verify`, reads the revocation back (see [`crate::graph::verification`]).
pub async fn revoke_one(
    host: &impl Host,
    settings: &GraphSettings,
    user: &UserId,
    verify: bool,
    trace: &mut Trace,
) -> Result<(Revoked, Option<Verification>), Error> {
    let mut session = Session::open(host, settings, trace).await?;
    let answer = session
        .call(&|token, id| graph::revoke_request(&settings.graph_base_url, user, token, id), trace)
        .await?;
    let revoked = graph::read_revoke_response(&answer, user, retry_after_clock(host, &answer))?;
    if !verify {
        return Ok((revoked, None));
    }
    // With the budget spent, the pipeline sends nothing and the read fails as timed out:
    // "not verified: time budget spent".
    let began = request_began(host, trace);
    let revoke_request_id = trace.correlation.graph_request_id.clone();
    let read = session
        .call(&|token, id| graph::lookup_request(&settings.graph_base_url, user, graph::READ_BACK_FIELDS, token, id), trace)
        .await
        .and_then(|answer| graph::read_lookup_response(&answer, user, retry_after_clock(host, &answer)));
    trace.correlation.graph_request_id = revoke_request_id;
    Ok((revoked, Some(verification::judge(read.as_ref(), began, settings.time_budget_ms))))
}

/// Looks one user up, for a dry run; `fields` is what to `$select`.
pub async fn look_up_one(
    host: &impl Host,
    settings: &GraphSettings,
    user: &UserId,
    fields: &'static str,
    trace: &mut Trace,
) -> Result<FoundUser, Error> {
    let mut session = Session::open(host, settings, trace).await?;
    let answer = session
        .call(&|token, id| graph::lookup_request(&settings.graph_base_url, user, fields, token, id), trace)
        .await?;
    graph::read_lookup_response(&answer, user, retry_after_clock(host, &answer))
}

/// The `now` a Graph answer is read against: the wall clock, read only when the answer
/// carries a `Retry-After` (its HTTP-date form is the one thing the readers need `now`
/// for), so a successful answer, or each of a `$batch`'s items, costs no host call.
/// Otherwise the epoch, which nothing reads.
fn retry_after_clock(host: &impl Host, answer: &OutboundResponse) -> SystemTime {
    match answer.header("retry-after") {
        Some(_) => host.wall_now(),
        None => UNIX_EPOCH,
    }
}

/// The wall-clock time the request arrived: now, less the time spent since on the
/// monotonic clock (the wall clock may have been stepped since; this is what the host
/// believed then).
fn request_began(host: &impl Host, trace: &Trace) -> SystemTime {
    let spent = host.monotonic_now().saturating_sub(trace.started);
    host.wall_now().checked_sub(spent).unwrap_or(UNIX_EPOCH)
}

/// Revokes (or, for a dry run, looks up) many users through `$batch`; one result per
/// user, in the order given. With `verify`, then reads back the users Graph answered 2xx
/// to a revoke, in `$batch` lookups within what is left of the time budget: one proof per
/// revoked user (`None` for the others; no proofs at all without `verify`). `Err` only
/// when there is no result to give per user: no token, or Graph refused every batch
/// outright; never because of the read-back.
pub async fn many<H: Host>(
    host: &H,
    settings: &GraphSettings,
    users: &[UserId],
    operation: Operation,
    verify: bool,
    trace: &mut Trace,
) -> Result<(Vec<ItemResult>, Vec<Option<Verification>>), Error> {
    let mut session = Session::open(host, settings, trace).await?;
    let results = rounds(host, &mut session, settings, users, operation, trace).await?;
    // Only a revoke has revoked users (a dry run's lookup has nothing to verify).
    let revoked: Vec<usize> = if verify {
        (0..users.len()).filter(|&i| matches!(results[i].outcome, Ok(Done::Revoked(_)))).collect()
    } else {
        Vec::new()
    };
    let mut proofs: Vec<Option<Verification>> = Vec::new();
    if revoked.is_empty() {
        return Ok((results, proofs));
    }
    // As for one user: with the budget spent, no batch is sent and each read times out.
    let budget_ms = settings.time_budget_ms;
    let began = request_began(host, trace);
    let revoke_request_id = trace.correlation.graph_request_id.clone();
    let to_read: Vec<UserId> = revoked.iter().map(|&i| users[i].clone()).collect();
    let reads = rounds(host, &mut session, settings, &to_read, Operation::Lookup(graph::READ_BACK_FIELDS), trace).await;
    trace.correlation.graph_request_id = revoke_request_id;
    proofs.resize(users.len(), None);
    // A read that came back as a revoke cannot happen (the items were lookups); if it did, it proves nothing.
    let not_a_lookup = Error::GraphError(String::new());
    for (k, &i) in revoked.iter().enumerate() {
        let read = match &reads {
            Ok(reads) => match &reads[k].outcome {
                Ok(Done::Found(found)) => Ok(found),
                Ok(Done::Revoked(_)) => Err(&not_a_lookup),
                Err(error) => Err(error),
            },
            Err(error) => Err(error),
        };
        proofs[i] = Some(verification::judge(read, began, budget_ms));
    }
    Ok((results, proofs))
}

/// The `$batch` rounds of [`many`] in an open session.
async fn rounds<H: Host>(
    host: &H,
    session: &mut Session<'_, H>,
    settings: &GraphSettings,
    users: &[UserId],
    operation: Operation,
    trace: &mut Trace,
) -> Result<Vec<ItemResult>, Error> {
    let mut results: Vec<Option<ItemResult>> = vec![None; users.len()];
    let mut pending: Vec<usize> = (0..users.len()).collect();
    let mut retries = 0;
    // Users whose batch Graph refused outright (outer 400): none of them was revoked.
    let mut refused: Option<(usize, Error)> = None;
    loop {
        let chunks: Vec<&[usize]> = pending.chunks(BATCH_SIZE).collect();
        let answers = send_round(host, session, settings, users, &chunks, operation, trace).await;

        // Users to send again: those whose batch was answered 401 (at once, with a
        // fresh token), and those whose item was throttled or unavailable (after `wait`).
        let mut unauthorized = Vec::new();
        let mut throttled = Vec::new();
        let mut wait = Duration::ZERO;
        for (chunk, answer) in chunks.iter().zip(answers) {
            let answer = match answer {
                Ok(answer) => answer,
                Err(failure) => {
                    set_all(&mut results, chunk, &graph::gave_up(failure, settings.time_budget_ms));
                    continue;
                }
            };
            trace.correlation.graph_request_id = graph::request_id(&answer).or(trace.correlation.graph_request_id.take());
            if answer.status == 401 {
                // Replaced by the next round's answer when a fresh token is to come.
                let error = Error::GraphError(
                    "Graph rejected the access token (401); check that graph_base_url and login_base_url \
                     belong to the same cloud."
                        .into(),
                );
                set_all(&mut results, chunk, &error);
                if session.may_refresh() {
                    unauthorized.extend_from_slice(chunk);
                }
                continue;
            }
            let mut items = match batch::read_batch_response(&answer) {
                Ok(items) => items,
                Err(error) => {
                    set_all(&mut results, chunk, &error);
                    if answer.status == 400 {
                        let count = refused.take().map_or(0, |(n, _)| n);
                        refused = Some((count + chunk.len(), error));
                    }
                    continue;
                }
            };
            for &i in chunk.iter() {
                let Some(item) = items.remove(&i.to_string()) else {
                    let error = Error::GraphError("Graph's batch answer has no item for this user.".into());
                    results[i] = Some(ItemResult { status: error.status(), outcome: Err(error) });
                    continue;
                };
                if retry::is_retryable_status(item.status) {
                    wait = wait.max(pipeline::wait_before_retry(host, Some(&item), retries));
                    throttled.push(i);
                }
                results[i] = Some(read_item(&item, &users[i], operation, retry_after_clock(host, &item)));
            }
        }

        // A 401 needs no wait: those users go again with the fresh token whatever the
        // throttled ones do (with them after their wait when it fits the budget, else at
        // once), so a refreshed token never leaves them with a permanent 401 error.
        // Other batches may already have revoked their users: a failed refresh is
        // reported on the users it concerns, never as the answer to the whole request.
        let mut again = Vec::new();
        if !unauthorized.is_empty() {
            match session.refresh(trace).await {
                Ok(()) => again = unauthorized,
                Err(error) => set_all(&mut results, &unauthorized, &error),
            }
        }
        if !throttled.is_empty() {
            let now = host.monotonic_now();
            match retry::next_step(retries, MAX_RETRIES, wait, session.budget.elapsed(now), session.budget.total()) {
                Next::Retry(delay) => {
                    host.sleep(delay).await;
                    retries += 1;
                    again.extend(throttled);
                }
                Next::GiveUp => {
                    // Still throttled: pass on the wait the caller should observe.
                    for &i in &throttled {
                        if let Some(ItemResult { status, outcome: Err(error) }) = &mut results[i] {
                            *error = graph::still_failing(*status, Some(whole_seconds(wait)));
                        }
                    }
                }
            }
        }
        if again.is_empty() {
            break;
        }
        pending = again;
    }
    match refused {
        // Graph refused every batch: nobody was revoked, and that is one error (502).
        Some((count, error)) if count == users.len() => Err(error),
        _ => Ok(results.into_iter().map(|r| r.expect("every user has a result")).collect()),
    }
}

/// Sends one round: a `$batch` per chunk, at most [`CONCURRENT_BATCHES`] in flight;
/// the answers in the order of `chunks`.
async fn send_round<H: Host>(
    host: &H,
    session: &Session<'_, H>,
    settings: &GraphSettings,
    users: &[UserId],
    chunks: &[&[usize]],
    operation: Operation,
    trace: &mut Trace,
) -> Vec<Result<OutboundResponse, pipeline::Failure>> {
    let calls = Cell::new(0);
    let client_request_id = &trace.correlation.client_request_id;
    let answers = futures::stream::iter(chunks.iter().map(|chunk| {
        let items: Vec<(String, UserId)> = chunk.iter().map(|&i| (i.to_string(), users[i].clone())).collect();
        let request = batch::batch_request(&settings.graph_base_url, &items, operation, &session.token, client_request_id);
        let (calls, budget) = (&calls, &session.budget);
        async move { pipeline::send(host, &request, &graph::RETRY_POLICY, budget, calls).await }
    }))
    .buffered(CONCURRENT_BATCHES)
    .collect()
    .await;
    trace.outbound_calls += calls.get();
    answers
}

/// One item's answer as a result.
fn read_item(item: &OutboundResponse, user: &UserId, operation: Operation, now: SystemTime) -> ItemResult {
    let outcome = match operation {
        Operation::Revoke => graph::read_revoke_response(item, user, now).map(|r| Done::Revoked(r.value)),
        Operation::Lookup(_) => graph::read_lookup_response(item, user, now).map(Done::Found),
    };
    ItemResult { status: item.status, outcome }
}

fn set_all(results: &mut [Option<ItemResult>], chunk: &[usize], error: &Error) {
    for &i in chunk {
        results[i] = Some(ItemResult { status: error.status(), outcome: Err(error.clone()) });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::platform::fake_host::{FakeHost, Reply};
    use serde_json::json;

    fn users(n: usize) -> Vec<UserId> {
        (0..n).map(|i| UserId::parse(&format!("user{i}@contoso.com")).unwrap()).collect()
    }

    fn settings(host: &FakeHost) -> GraphSettings {
        GraphSettings::load(&|name| host.variable(name)).unwrap()
    }

    /// Revokes `n` users on the fake, to the end.
    fn revoke_many(host: &FakeHost, n: usize) -> (Result<Vec<ItemResult>, Error>, Trace) {
        let settings = settings(host);
        let mut trace = Trace::default();
        let result = host.run(many(host, &settings, &users(n), Operation::Revoke, false, &mut trace));
        (result.map(|(results, proofs)| {
            assert!(proofs.is_empty(), "no proofs without verify");
            results
        }), trace)
    }

    fn revoked(result: &ItemResult) -> bool {
        matches!(result.outcome, Ok(Done::Revoked(true)))
    }

    fn error(result: &ItemResult) -> &Error {
        result.outcome.as_ref().unwrap_err()
    }

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    /// The users a batch carried, as their indexes.
    fn batch_users(sent: &crate::platform::fake_host::Sent) -> Vec<usize> {
        let mut users: Vec<usize> = sent
            .batch_urls()
            .iter()
            .map(|url| url.trim_start_matches("/users/user").split('@').next().unwrap().parse().unwrap())
            .collect();
        users.sort_unstable();
        users
    }

    #[test]
    fn users_go_twenty_to_a_batch_and_answers_are_matched_by_id() {
        let host = FakeHost::new();
        let (results, trace) = revoke_many(&host, 45);
        let results = results.unwrap();
        assert_eq!(results.len(), 45);
        assert!(results.iter().all(revoked));
        let batches = host.batches();
        assert_eq!(batches.iter().map(|b| batch_users(b).len()).collect::<Vec<_>>(), vec![20, 20, 5]);
        assert_eq!(batch_users(&batches[2]), (40..45).collect::<Vec<_>>());
        assert_eq!(trace.outbound_calls, 4, "one token call and three batches");
        assert!(batches.iter().all(|b| b.header("authorization") == Some("Bearer token-1")));
    }

    #[test]
    fn answers_in_any_order_reach_their_users() {
        let host = FakeHost::new();
        // Graph answers the batch in its own order: here item 1 first, and item 0 a 404.
        host.enqueue(
            "POST",
            "/$batch",
            Reply::json(200, json!({"responses": [
                {"id": "1", "status": 204},
                {"id": "2", "status": 200, "body": {"value": true}},
                {"id": "0", "status": 404, "body": {"error": {"code": "Request_ResourceNotFound", "message": "x"}}},
            ]})),
        );
        let (results, _) = revoke_many(&host, 3);
        let results = results.unwrap();
        assert_eq!(error(&results[0]).code(), "userNotFound");
        assert_eq!((results[1].status, revoked(&results[1])), (204, true));
        assert_eq!((results[2].status, revoked(&results[2])), (200, true));
    }

    #[test]
    fn at_most_four_batches_are_in_flight() {
        let host = FakeHost::new();
        host.set_default_delay(Duration::from_millis(100));
        let (results, _) = revoke_many(&host, 100);
        assert!(results.unwrap().iter().all(revoked));
        assert_eq!(host.max_in_flight(), CONCURRENT_BATCHES);
        let starts: Vec<Duration> = host.batches().iter().map(|b| b.at).collect();
        // The token takes 100 ms; four batches start together, the fifth when one is done.
        assert_eq!(starts, vec![secs(0.1), secs(0.1), secs(0.1), secs(0.1), secs(0.2)]);
        assert_eq!(host.now(), secs(0.3));
    }

    #[test]
    fn an_outer_429_503_or_504_is_retried_then_reported_with_its_wait() {
        for (status, code) in [(429, "throttled"), (503, "graphUnavailable"), (504, "graphUnavailable")] {
            let host = FakeHost::new();
            for _ in 0..4 {
                host.enqueue("POST", "/$batch", Reply::status(status).header("Retry-After", "2"));
            }
            let (results, _) = revoke_many(&host, 2);
            let results = results.unwrap();
            assert!(results.iter().all(|r| error(r).code() == code && error(r).retry_after() == Some(2)), "{status}");
            assert_eq!(host.batches().len(), 4, "{status}: one try and three retries");
            assert_eq!(host.now(), secs(6.0), "{status}: three waits of 2 s");

            // Once is nothing: the retry succeeds.
            let host = FakeHost::new();
            host.enqueue("POST", "/$batch", Reply::status(status).header("Retry-After", "2"));
            assert!(revoke_many(&host, 2).0.unwrap().iter().all(revoked), "{status}");
            assert_eq!(host.batches()[1].header("retry-attempt"), Some("1"));
        }
    }

    #[test]
    fn a_hung_batch_times_out_at_the_budget_and_spares_the_others() {
        let host = FakeHost::new();
        host.set_var("time_budget_ms", Some("5000"));
        host.enqueue("POST", "/$batch", Reply::Hang);
        let (results, _) = revoke_many(&host, 21);
        let results = results.unwrap();
        assert!(results[..20].iter().all(|r| error(r).code() == "upstreamTimeout" && r.status == 504));
        assert!(revoked(&results[20]));
        assert_eq!(host.now(), secs(5.0));
    }

    #[test]
    fn a_refused_batch_spares_the_others_and_all_refused_is_one_error() {
        let host = FakeHost::new();
        let refused = || Reply::json(400, json!({"error": {"code": "BadRequest", "message": "Invalid batch payload."}}));
        host.enqueue("POST", "/$batch", refused());
        let (results, _) = revoke_many(&host, 21);
        let results = results.unwrap();
        assert!(results[..20].iter().all(|r| error(r).to_string().contains("none of its users was revoked")));
        assert!(revoked(&results[20]));
        assert_eq!(host.batches().len(), 2, "a refusal is not retried");

        let host = FakeHost::new();
        host.enqueue("POST", "/$batch", refused());
        host.enqueue("POST", "/$batch", refused());
        let (result, _) = revoke_many(&host, 21);
        assert_eq!(result.unwrap_err().code(), "graphError");
    }

    #[test]
    fn only_throttled_items_are_retried_after_the_longest_wait() {
        let host = FakeHost::new();
        host.enqueue_item("POST", "/users/user1@", Reply::status(429).header("Retry-After", "1"));
        host.enqueue_item("POST", "/users/user3@", Reply::status(503).header("Retry-After", "3"));
        host.enqueue_item("POST", "/users/user2@", Reply::status(404));
        let (results, _) = revoke_many(&host, 4);
        let results = results.unwrap();
        assert!(revoked(&results[0]) && revoked(&results[1]) && revoked(&results[3]));
        assert_eq!(error(&results[2]).code(), "userNotFound");
        let batches = host.batches();
        assert_eq!(batches.len(), 2);
        assert_eq!(batch_users(&batches[1]), vec![1, 3]);
        assert_eq!(batches[1].at, secs(3.0));
    }

    #[test]
    fn throttling_that_outlasts_the_budget_or_the_retries_is_handed_to_the_caller() {
        // Waits of 10 s in a 25 s budget: tries at 0, 10 and 20 s; the next would end at 30 s.
        let host = FakeHost::new();
        for _ in 0..10 {
            host.enqueue_item("POST", "/users/user0@", Reply::status(429).header("Retry-After", "10"));
        }
        let (results, _) = revoke_many(&host, 2);
        let results = results.unwrap();
        assert_eq!(*error(&results[0]), Error::Throttled { retry_after: Some(10) });
        assert!(revoked(&results[1]));
        assert_eq!(host.batches().iter().map(|b| b.at).collect::<Vec<_>>(), vec![secs(0.0), secs(10.0), secs(20.0)]);
        assert_eq!(host.now(), secs(20.0), "the last wait was not started");

        // Short waits: one try and three retries, then the wait is passed on.
        let host = FakeHost::new();
        for _ in 0..10 {
            host.enqueue_item("POST", "/users/user0@", Reply::status(503).header("Retry-After", "1"));
        }
        let results = revoke_many(&host, 1).0.unwrap();
        assert_eq!(error(&results[0]).retry_after(), Some(1));
        assert_eq!(host.batches().len(), 4);
    }

    #[test]
    fn a_batch_401_is_sent_again_once_with_a_fresh_token() {
        let host = FakeHost::new();
        let expired = || Reply::json(401, json!({"error": {"code": "InvalidAuthenticationToken", "message": "expired"}}));
        host.enqueue("POST", "/$batch", expired());
        let (results, trace) = revoke_many(&host, 2);
        assert!(results.unwrap().iter().all(revoked));
        assert_eq!(host.token_requests(), 2);
        assert_eq!(host.batches()[1].header("authorization"), Some("Bearer token-2"));
        assert!(!trace.token_from_cache);

        // Refused again with the fresh token: an error on its users, no loop.
        let host = FakeHost::new();
        host.enqueue("POST", "/$batch", expired());
        host.enqueue("POST", "/$batch", expired());
        let results = revoke_many(&host, 2).0.unwrap();
        assert!(results.iter().all(|r| error(r).code() == "graphError" && error(r).to_string().contains("401")));
        assert_eq!((host.batches().len(), host.token_requests()), (2, 2));
    }

    #[test]
    fn a_batch_401_is_retried_at_once_even_when_another_batch_is_throttled_past_the_budget() {
        // Finding 2: batch A (users 0-19) answers 401, batch B's user 20 is throttled for
        // a minute. A's users get the fresh token at once; B's user gets the wait.
        let host = FakeHost::new();
        host.enqueue("POST", "/$batch", Reply::json(401, json!({"error": {"code": "InvalidAuthenticationToken", "message": "x"}})));
        host.enqueue_item("POST", "/users/user20@", Reply::status(429).header("Retry-After", "60"));
        let results = revoke_many(&host, 21).0.unwrap();
        assert!(results[..20].iter().all(revoked), "{:?}", results[0]);
        assert_eq!(*error(&results[20]), Error::Throttled { retry_after: Some(60) });
        let batches = host.batches();
        assert_eq!(batches.len(), 3);
        assert_eq!(batch_users(&batches[2]), (0..20).collect::<Vec<_>>());
        assert_eq!(batches[2].header("authorization"), Some("Bearer token-2"));
        assert_eq!(batches[2].at, Duration::ZERO, "no wait before a fresh token");

        // A wait that fits the budget: A's users go with B's throttled one after it.
        let host = FakeHost::new();
        host.enqueue("POST", "/$batch", Reply::json(401, json!({"error": {"code": "InvalidAuthenticationToken", "message": "x"}})));
        host.enqueue_item("POST", "/users/user20@", Reply::status(429).header("Retry-After", "2"));
        let results = revoke_many(&host, 21).0.unwrap();
        assert!(results.iter().all(revoked));
        let batches = host.batches();
        assert_eq!(batches.len(), 4);
        assert_eq!((batch_users(&batches[2]), batches[2].at), ((0..20).collect(), secs(2.0)));
        assert_eq!((batch_users(&batches[3]), batches[3].at), (vec![20], secs(2.0)));
    }

    #[test]
    fn a_failed_refresh_stays_on_the_users_it_concerns() {
        let expired = || Reply::json(401, json!({"error": {"code": "InvalidAuthenticationToken", "message": "x"}}));
        // The identity platform is down when the batch 401 needs a fresh token.
        let host = FakeHost::new();
        host.plant_token("warm");
        host.enqueue("POST", "/$batch", expired());
        host.enqueue("POST", "/oauth2/v2.0/token", Reply::status(503).header("Retry-After", "1"));
        host.enqueue("POST", "/oauth2/v2.0/token", Reply::status(503).header("Retry-After", "1"));
        let results = revoke_many(&host, 21).0.unwrap();
        assert!(results[..20].iter().all(|r| *error(r) == Error::IdentityPlatformUnavailable { detail: "it answered 503".into(), retry_after: Some(1) }));
        assert!(revoked(&results[20]));
        assert_eq!(host.token_requests(), 2, "one refresh, retried once");

        // The credential was refused: a 502 on those users, still no loop.
        let host = FakeHost::new();
        host.plant_token("warm");
        host.enqueue("POST", "/$batch", expired());
        host.enqueue("POST", "/oauth2/v2.0/token", Reply::json(401, json!({"error": "invalid_client", "error_codes": [7000215]})));
        let results = revoke_many(&host, 2).0.unwrap();
        assert!(results.iter().all(|r| error(r).code() == "tokenRequestFailed"));
        assert_eq!(host.batches().len(), 1);
    }

    #[test]
    fn a_dry_run_looks_everyone_up_in_batches() {
        let host = FakeHost::new();
        host.enqueue_item("GET", "/users/user1@", Reply::status(404));
        let settings = settings(&host);
        let mut trace = Trace::default();
        let (results, proofs) = host.run(many(&host, &settings, &users(2), Operation::Lookup(graph::DRY_RUN_FIELDS), true, &mut trace)).unwrap();
        assert!(proofs.is_empty(), "a dry run revokes nothing, so verifies nothing");
        assert!(matches!(&results[0].outcome, Ok(Done::Found(user)) if user.user_principal_name == "user0@contoso.com"));
        assert_eq!(error(&results[1]).code(), "userNotFound");
        assert!(host.batches()[0].batch_urls().iter().all(|u| u.ends_with("?$select=id,userPrincipalName")));
    }

    #[test]
    fn a_single_call_401_gets_one_fresh_token() {
        let user = UserId::parse("adele@contoso.com").unwrap();
        let expired = || Reply::json(401, json!({"error": {"code": "InvalidAuthenticationToken", "message": "x"}}));
        let host = FakeHost::new();
        host.plant_token("warm");
        host.enqueue("POST", "/revokeSignInSessions", expired());
        let settings = settings(&host);
        let mut trace = Trace::default();
        assert_eq!(host.run(revoke_one(&host, &settings, &user, false, &mut trace)), Ok((Revoked { value: true }, None)));
        let sent = host.sent();
        let auth: Vec<_> = sent.iter().map(|s| (s.is_token_request(), s.header("authorization").map(str::to_string))).collect();
        assert_eq!(
            auth,
            vec![(false, Some("Bearer warm".into())), (true, None), (false, Some("Bearer token-2".into()))]
        );
        assert_eq!(trace.outbound_calls, 3);
        assert!(sent.iter().all(|s| s.method == "POST"));

        // Twice: an error, never a loop.
        let host = FakeHost::new();
        host.enqueue("POST", "/revokeSignInSessions", expired());
        host.enqueue("POST", "/revokeSignInSessions", expired());
        let error = host.run(revoke_one(&host, &settings, &user, false, &mut Trace::default())).unwrap_err();
        assert!(error.code() == "graphError" && error.to_string().contains("401"), "{error}");
        assert_eq!((host.sent().len(), host.token_requests()), (4, 2));
    }

    #[test]
    fn a_single_call_waits_out_throttling_within_the_budget_only() {
        let user = UserId::parse("adele@contoso.com").unwrap();
        let host = FakeHost::new();
        host.enqueue("POST", "/revokeSignInSessions", Reply::status(429).header("Retry-After", "7"));
        let settings = settings(&host);
        assert!(host.run(revoke_one(&host, &settings, &user, false, &mut Trace::default())).is_ok());
        assert_eq!(host.now(), secs(7.0));

        let host = FakeHost::new();
        host.enqueue("POST", "/revokeSignInSessions", Reply::status(429).header("Retry-After", "30"));
        let error = host.run(revoke_one(&host, &settings, &user, false, &mut Trace::default())).unwrap_err();
        assert_eq!(error, Error::Throttled { retry_after: Some(30) });
        assert_eq!(host.now(), Duration::ZERO, "a wait past the budget is not started");
    }
}
