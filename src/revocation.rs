//! Talking to Graph for one request: a token (cached or fresh), the calls, and the
//! answers. One user goes through a single call; many go through `$batch`.
//!
//! A Graph 401 drops the cached token and retries once with a fresh one. In a batch,
//! only the items that came back 429/503/504 are sent again, after the longest
//! `Retry-After` among them, as long as the time budget allows.

use std::cell::Cell;
use std::time::Duration;

use futures::StreamExt;

use crate::batch::{self, Operation, BATCH_SIZE};
use crate::error::Error;
use crate::graph::{self, FoundUser, Revoked};
use crate::host::{self, KeyValue};
use crate::outbound::{OutboundRequest, OutboundResponse};
use crate::pipeline::{self, Budget, Failure};
use crate::retry::{self, whole_seconds, Next, MAX_RETRIES};
use crate::secret::Secret;
use crate::service::Trace;
use crate::settings::Settings;
use crate::token;
use crate::token_cache;
use crate::user_id::UserId;

/// Batches in flight at once: 100 users (the default `max_users`) in one round of
/// five batches would be 100 requests in parallel against one tenant; four keeps a
/// large request well inside Graph's per-app limits while still overlapping waits.
const CONCURRENT_BATCHES: usize = 4;

/// What became of one user of many.
#[derive(Debug, Clone)]
pub struct ItemResult {
    /// Graph's status for the item, or the error's when Graph gave none.
    pub status: u16,
    pub outcome: Result<Done, Error>,
}

/// A user's successful outcome.
#[derive(Debug, Clone)]
pub enum Done {
    /// Revoked; Graph's boolean.
    Revoked(bool),
    /// Found by a dry run.
    Found(FoundUser),
}

/// Revokes one user.
pub async fn revoke_one(settings: &Settings, user: &UserId, trace: &mut Trace) -> Result<Revoked, Error> {
    let mut session = Session::open(settings, trace).await?;
    let answer = session
        .call(&|token, id| graph::revoke_request(&settings.graph_base_url, user, token, id), trace)
        .await?;
    graph::read_revoke_response(&answer, user, host::wall_now())
}

/// Looks one user up, for a dry run.
pub async fn look_up_one(settings: &Settings, user: &UserId, trace: &mut Trace) -> Result<FoundUser, Error> {
    let mut session = Session::open(settings, trace).await?;
    let answer = session
        .call(&|token, id| graph::lookup_request(&settings.graph_base_url, user, token, id), trace)
        .await?;
    graph::read_lookup_response(&answer, user, host::wall_now())
}

/// Revokes (or, for a dry run, looks up) many users through `$batch`; one result per
/// user, in the order given.
pub async fn many(settings: &Settings, users: &[UserId], operation: Operation, trace: &mut Trace) -> Result<Vec<ItemResult>, Error> {
    let mut session = Session::open(settings, trace).await?;
    let mut results: Vec<Option<ItemResult>> = vec![None; users.len()];
    let mut pending: Vec<usize> = (0..users.len()).collect();
    let mut retries = 0;
    // Users whose batch Graph refused outright (outer 400): none of them was revoked.
    let mut refused: Option<(usize, Error)> = None;
    loop {
        let chunks: Vec<&[usize]> = pending.chunks(BATCH_SIZE).collect();
        let calls = Cell::new(0);
        let client_request_id = trace.correlation.client_request_id.clone();
        let answers: Vec<_> = futures::stream::iter(chunks.iter().map(|chunk| {
            let items: Vec<(String, UserId)> = chunk.iter().map(|&i| (i.to_string(), users[i].clone())).collect();
            let request = batch::batch_request(&settings.graph_base_url, &items, operation, &session.token, &client_request_id);
            let (calls, budget) = (&calls, &session.budget);
            async move { pipeline::send(&request, &graph::RETRY_POLICY, budget, calls).await }
        }))
        .buffered(CONCURRENT_BATCHES)
        .collect()
        .await;
        trace.outbound_calls += calls.get();

        let mut again = Vec::new();
        let mut wait = Duration::ZERO;
        let mut unauthorized = false;
        for (chunk, answer) in chunks.iter().zip(answers) {
            let answer = match answer {
                Ok(answer) => answer,
                Err(failure) => {
                    let error = graph::gave_up(failure, settings.time_budget_ms);
                    set_all(&mut results, chunk, &error);
                    continue;
                }
            };
            trace.correlation.graph_request_id = graph::request_id(&answer).or(trace.correlation.graph_request_id.take());
            if answer.status == 401 && !session.refreshed {
                unauthorized = true;
                again.extend_from_slice(chunk);
                set_all(&mut results, chunk, &Error::GraphError("Graph rejected the access token (401).".into()));
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
                    wait = wait.max(pipeline::wait_before_retry(Some(&item), retries));
                    again.push(i);
                }
                results[i] = Some(read_item(&item, &users[i], operation));
            }
        }
        if again.is_empty() {
            break;
        }
        if unauthorized {
            // Other batches may already have revoked their users: a failed refresh is
            // reported on the users it concerns, never as the answer to the whole request.
            if let Err(error) = session.refresh(trace).await {
                set_all(&mut results, &again, &error);
                break;
            }
        }
        match retry::next_step(retries, MAX_RETRIES, wait, session.budget.elapsed(), session.budget.total()) {
            Next::Retry(delay) => {
                host::sleep(delay).await;
                retries += 1;
                pending = again;
            }
            Next::GiveUp => {
                // Still throttled: pass on the wait the caller should observe.
                for &i in &again {
                    if let Some(ItemResult { status, outcome: Err(error) }) = &mut results[i] {
                        if retry::is_retryable_status(*status) {
                            *error = graph::still_failing(*status, Some(whole_seconds(wait)));
                        }
                    }
                }
                break;
            }
        }
    }
    match refused {
        // Graph refused every batch: nobody was revoked, and that is one error (502).
        Some((count, error)) if count == users.len() => Err(error),
        _ => Ok(results.into_iter().map(|r| r.expect("every user has a result")).collect()),
    }
}

/// One item's answer as a result.
fn read_item(item: &OutboundResponse, user: &UserId, operation: Operation) -> ItemResult {
    let outcome = match operation {
        Operation::Revoke => graph::read_revoke_response(item, user, host::wall_now()).map(|r| Done::Revoked(r.value)),
        Operation::Lookup => graph::read_lookup_response(item, user, host::wall_now()).map(Done::Found),
    };
    ItemResult { status: item.status, outcome }
}

fn set_all(results: &mut [Option<ItemResult>], chunk: &[usize], error: &Error) {
    for &i in chunk {
        results[i] = Some(ItemResult { status: error.status(), outcome: Err(error.clone()) });
    }
}

/// A token for this request, and how to renew it.
struct Session<'a> {
    settings: &'a Settings,
    cache: KeyValue,
    /// Where this request's token lives in `cache`.
    cache_key: String,
    budget: Budget,
    token: Secret,
    /// A Graph 401 has already been answered with a fresh token.
    refreshed: bool,
}

impl<'a> Session<'a> {
    /// The cached token, else a fresh one.
    async fn open(settings: &'a Settings, trace: &mut Trace) -> Result<Session<'a>, Error> {
        let budget = Budget::since(trace.started, Duration::from_millis(settings.time_budget_ms));
        let cache = KeyValue::open_default();
        let cache_key = token_cache::key(settings);
        let cached = cache.get(&cache_key).and_then(|bytes| token_cache::decode(&bytes, host::unix_now()));
        let token = match cached {
            Some(token) => {
                trace.token_from_cache = true;
                token
            }
            None => fresh_token(settings, &cache, &cache_key, &budget, trace).await?,
        };
        Ok(Session { settings, cache, cache_key, budget, token, refreshed: false })
    }

    /// Forgets the token (Graph refused it) and gets a fresh one, once.
    async fn refresh(&mut self, trace: &mut Trace) -> Result<(), Error> {
        self.cache.delete(&self.cache_key);
        self.token = fresh_token(self.settings, &self.cache, &self.cache_key, &self.budget, trace).await?;
        trace.token_from_cache = false;
        self.refreshed = true;
        Ok(())
    }

    /// Sends a request built for the current token; a 401 gets one more try with a
    /// fresh token. Notes Graph's request-id.
    async fn call(&mut self, build: &dyn Fn(&Secret, &str) -> OutboundRequest, trace: &mut Trace) -> Result<OutboundResponse, Error> {
        loop {
            let request = build(&self.token, &trace.correlation.client_request_id);
            let calls = Cell::new(0);
            let answer = pipeline::send(&request, &graph::RETRY_POLICY, &self.budget, &calls).await;
            trace.outbound_calls += calls.get();
            let answer = answer.map_err(|failure| {
                if let Failure::Exhausted { last, .. } = &failure {
                    trace.correlation.graph_request_id = graph::request_id(last);
                }
                graph::gave_up(failure, self.settings.time_budget_ms)
            })?;
            trace.correlation.graph_request_id = graph::request_id(&answer);
            if answer.status == 401 && !self.refreshed {
                self.refresh(trace).await?;
                continue;
            }
            return Ok(answer);
        }
    }
}

/// A new token from the identity platform, stored for the next requests.
async fn fresh_token(settings: &Settings, cache: &KeyValue, cache_key: &str, budget: &Budget, trace: &mut Trace) -> Result<Secret, Error> {
    let request = token::token_request(settings, &trace.correlation.client_request_id);
    let calls = Cell::new(0);
    let answer = pipeline::send(&request, &token::RETRY_POLICY, budget, &calls).await;
    trace.outbound_calls += calls.get();
    let answer = answer.map_err(|failure| token::gave_up(failure, settings.time_budget_ms))?;
    let token = token::read_token_response(&answer)?;
    if let Some(entry) = token_cache::encode(&token.value, token.expires_in, host::unix_now()) {
        cache.set(cache_key, &entry);
    }
    Ok(token.value)
}
