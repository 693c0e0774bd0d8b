//! Host calls per request (issue 10). Every call into a host interface crosses the
//! component boundary, and real Spin wraps each one in a tracing span; a fresh instance
//! per request pays them all again. These tests pin, per interface, what a warm revoke,
//! `/healthz` and a rejected request make the host do, so a change that adds a call
//! fails here and has to say why (update the tables below and the README's).
//!
//! The counts are the guest's calls as the test host counts them (`TestApp::host_calls`:
//! every imported function, resource drops included), taken request by request.
//!
//! Where a warm revoke's 65 calls go (the README has the same list):
//! - the incoming request (11): `method`, `path-with-query`, `headers` + `entries` + the
//!   fields' drop, then, once the caller is authenticated, `consume`, `stream`, one
//!   `read` (reads stop at the declared `Content-Length`), the stream's and the body's
//!   drop, and the request's drop;
//! - settings (9 `wasi:config/store` `get`s), the token cache (`open`, `get`, the
//!   bucket's drop) and the abuse brake's `increment` (`wasi:keyvalue/atomics`);
//! - the Graph call (23): `fields.from-list` for all headers, `outgoing-request.new`,
//!   `set-method`, `set-scheme`, `set-authority`, `set-path-with-query` (an empty POST
//!   body needs no `body`, stream or `finish`), `handle`, the answer's `subscribe`, one
//!   `poll` (the executor's, for all that waits), `get`, the drops of both pollables and
//!   of the future; then `status`, `headers` + `entries` + drop, `consume`, `stream`, one
//!   `read`, the drops of stream, body and answer;
//! - clocks (4 monotonic: the request's start, the budget left before the Graph call, the
//!   call's timeout (`subscribe-duration`) and the log's duration; 2 wall readings: one
//!   in seconds for the brake's window and the token's freshness (kept for the request),
//!   and one for the log line and error `date` together;
//!   Graph's answer is read against the wall clock only when it carries a `Retry-After`)
//!   and one random GUID (the `client-request-id`);
//! - the answer (8): `fields.from-list`, `outgoing-response.new` (200 is the default:
//!   no `set-status-code`), `body`, `set`, `write`, one `blocking-write-and-flush`, the
//!   stream's drop, `finish`; and the log line (3): `get-stdout`, one
//!   `blocking-write-and-flush`, the stream's drop.
//!
//! Before this was cut (issue 10) a warm revoke made 83 calls, `/healthz` 39 and a
//! rejected request 33.

mod common;

use std::collections::BTreeMap;

use common::*;
use graph_revoke_test_host::{Component, HostCalls, Manifest, RuntimeConfig, TestApp, TestRequest};

/// Requests measured per case, one at a time: every one must cost the same.
const REQUESTS: usize = 5;

/// The calls each of `REQUESTS` requests made, one snapshot per request.
async fn calls_of_each(env: &Env, request: fn() -> TestRequest, status: u16) -> Vec<HostCalls> {
    let mut each = Vec::new();
    for _ in 0..REQUESTS {
        let before = env.app.host_calls();
        let response = env.send(request()).await;
        assert_eq!(response.status, status, "{}", response.text());
        let calls = env.app.host_calls().since(&before);
        assert_eq!(calls.instances, 1);
        each.push(calls);
    }
    each
}

fn rejected() -> TestRequest {
    TestRequest::post("/revoke")
        .header("x-api-key", "not-the-key-0123456789abcdef0123456789ab")
        .json(&serde_json::json!({ "userId": "adele@contoso.com" }))
}

/// Calls per interface, as a table to compare with an expected one.
fn table(calls: &HostCalls) -> BTreeMap<&'static str, u64> {
    calls.calls.clone()
}

fn expected(pairs: &[(&'static str, u64)]) -> BTreeMap<&'static str, u64> {
    pairs.iter().copied().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_and_a_rejected_request_make_exactly_these_host_calls() {
    let env = start().await;
    // Neither reads the body, calls out, opens the store or waits.
    let common = [
        ("wasi:http/types", 12),
        ("wasi:io/streams", 4),
        ("wasi:cli/stdout", 1),
        ("wasi:clocks/monotonic-clock", 2),
        ("wasi:clocks/wall-clock", 1),
        ("wasi:random/random", 1),
    ];
    // /healthz reads every variable it checks (it is for probes): the eight of an API-key
    // deployment, `max_revocations`, `caller_audience` (empty: the token policy's other
    // variables are not read), `credential` and `client_private_key` (empty: the secret is
    // the credential, so the certificate's and managed identity's are not read).
    let mut healthz = expected(&common);
    healthz.insert("wasi:config/store", 12);
    // A wrong key: only `api_keys` is read; the status is not the default 200, so one
    // `set-status-code` more.
    let mut refused = expected(&common);
    refused.insert("wasi:config/store", 1);
    refused.insert("wasi:http/types", 13);

    for (name, request, status, want) in
        [("/healthz", (|| TestRequest::get("/healthz")) as fn() -> TestRequest, 200, healthz), ("rejected", rejected, 401, refused)]
    {
        for calls in calls_of_each(&env, request, status).await {
            assert_eq!(table(&calls), want, "{name}: host calls per interface");
            assert_eq!(calls.stdout_writes, 1, "{name}: one log line, one write");
        }
    }
    assert_eq!(env.outbound_calls(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_warm_revoke_makes_exactly_these_host_calls() {
    let env = start().await;
    // The first revoke fetches and caches the token.
    assert_eq!(env.send(revoke("adele@contoso.com")).await.status, 200);
    // The abuse brake adds one variable (`max_revocations`) and one `increment`; its
    // window and the token cache's freshness share one wall-clock reading (they took one
    // each: 66 calls); the token cache's key one more variable (`credential`). Graph's
    // answer without `Retry-After` costs no wall-clock read (it did: 67 calls).
    let want = expected(&[
        ("wasi:config/store", 9),
        ("wasi:keyvalue/store", 3),
        ("wasi:keyvalue/atomics", 1),
        ("wasi:http/outgoing-handler", 1),
        ("wasi:http/types", 32),
        ("wasi:io/streams", 8),
        ("wasi:io/poll", 3),
        ("wasi:clocks/monotonic-clock", 4),
        ("wasi:clocks/wall-clock", 2),
        ("wasi:random/random", 1),
        ("wasi:cli/stdout", 1),
    ]);
    for calls in calls_of_each(&env, || revoke("adele@contoso.com"), 200).await {
        // Graph's answer usually arrives with its body; when the body comes a moment
        // later, the read that finds nothing waits once more: `subscribe` and one more
        // `read` (streams), one more `poll` and the pollable's drop (poll). Nothing else
        // may vary.
        let mut calls = table(&calls);
        let late = calls.get("wasi:io/streams").copied().unwrap_or(0).saturating_sub(want["wasi:io/streams"]);
        assert_eq!(late % 2, 0, "{calls:#?}");
        for interface in ["wasi:io/streams", "wasi:io/poll"] {
            *calls.get_mut(interface).unwrap() -= late;
        }
        assert_eq!(calls, want, "a warm revoke's host calls per interface ({} waits for a late body)", late / 2);
        assert_eq!(want.values().sum::<u64>(), 65);
    }
    assert_eq!(env.login.calls().len(), 1, "one token, cached");
    assert_eq!(env.graph.calls().len(), 1 + REQUESTS);
}

/// Spin 3.5+ keeps an app's outbound connections open across instances (its default;
/// `[outbound_http] connection_pooling = false` turns it off): a warm revoke then costs
/// the host no TCP connection, provided the component reads each answer to its end, so
/// the connection is idle and can be handed to the next request. Three revokes in three
/// instances: one connection to each mock when pooled, one per Graph call when not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbound_connections_outlive_the_instance_unless_pooling_is_off() {
    let users = ["adele.vance@contoso.com", "alex.wilber@contoso.com", "megan.bowen@contoso.com"];
    let env = start().await;
    for user in users {
        assert_eq!(env.send(revoke(user)).await.status, 200);
    }
    assert_eq!((env.login.connections(), env.graph.connections()), (1, 1), "pooled: one connection to each mock");

    let unpooled = TestApp::builder(Component::shared().unwrap(), &Manifest::load_default().unwrap())
        .variables(variables(&env.login, &env.graph))
        .runtime_config(RuntimeConfig::from_str("[outbound_http]\nconnection_pooling = false\n").unwrap())
        .start()
        .unwrap();
    for user in users {
        let response = unpooled.send(revoke(user)).await.unwrap();
        assert_eq!(response.status, 200, "{}", response.text());
    }
    // Its own token cache: one more token fetch, on a connection of its own.
    assert_eq!((env.login.connections(), env.graph.connections()), (2, 4), "not pooled: a connection per call");
    assert_eq!(env.graph.calls().len(), 6);
}
