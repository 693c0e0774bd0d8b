//! Load with faults: 10,000 requests through the compiled component, 8, 16 and then 32
//! at a time, against a mock Graph that throttles, fails, stalls and drops connections
//! at random (seeded), with a small time budget and small `Retry-After` values.
//!
//! `cargo bench --bench load_with_faults` (after `cargo build --target wasm32-wasip2
//! --release`; `./scripts/bench` does both). Not run in CI. Checks, and exits non-zero
//! if one fails:
//! - every answer is a status the SPEC allows for these requests (200, 207, 429, 502,
//!   503, 504; never a trap, a panic, guest stderr, or a 500), with its shape: one user
//!   `{"value": true}`, many users `{"value", "results"}` naming exactly the users asked
//!   for in input order, a dry run `{"value": false, "whatIf": true, …}`, errors Graph's
//!   OData shape with the code the SPEC gives that status and `Retry-After` on a 429;
//! - against the mock's record of revocations that took effect: every user reported
//!   revoked was revoked (none lost), no user was revoked that no request asked to
//!   revoke, and a dry run revoked no one. A user reported *not* revoked may or may not
//!   have been revoked (the call may have taken effect and its answer been lost, or the
//!   budget ran out while Graph was working); the summary counts those.
//! - the peak linear memory per instance stays flat from the first requests to the last.
//!
//! Every request names users no other request names, so a revocation in the record can
//! only come from the request that asked for it.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use graph_revoke_test_host::{Component, FaultPlan, Manifest, MockServer, TestApp, TestRequest, TestResponse};
use serde_json::{json, Value};

const REQUESTS: usize = 10_000;
/// Concurrency of each phase; the requests are split evenly between them.
const PHASES: [usize; 3] = [8, 16, 32];
const SEED: u64 = 0x5eed_2026;
const TIME_BUDGET_MS: u64 = 3000;
const API_KEY: &str = "bench-key-0123456789abcdef0123456789abcdef";

fn faults() -> FaultPlan {
    FaultPlan {
        seed: SEED,
        drop_before: 0.01,
        throttle: 0.02,
        unavailable: 0.015,
        gateway_timeout: 0.01,
        delay: 0.02,
        // Up to past the budget: some requests must end in upstreamTimeout.
        delay_range: (Duration::from_millis(10), Duration::from_millis(3500)),
        drop_after: 0.01,
        item_throttle: 0.02,
        item_unavailable: 0.01,
        item_gateway_timeout: 0.01,
        retry_after_range: (Duration::from_millis(50), Duration::from_millis(500)),
    }
}

/// What one request asks for.
#[derive(Clone, Debug)]
struct Planned {
    kind: Kind,
    users: Vec<String>,
    request: TestRequest,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    /// `POST /revoke {"userId"}`.
    One,
    /// `POST /users/{id}/revokeSignInSessions`.
    GraphShaped,
    /// `POST /revoke {"userIds": [...]}`, 2 to 100 users.
    Many,
    /// A dry run, one user or many.
    WhatIfOne,
    WhatIfMany,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::One => "one user",
            Kind::GraphShaped => "one user, Graph-shaped route",
            Kind::Many => "many users",
            Kind::WhatIfOne => "whatIf, one user",
            Kind::WhatIfMany => "whatIf, many users",
        }
    }

    fn is_dry_run(self) -> bool {
        matches!(self, Kind::WhatIfOne | Kind::WhatIfMany)
    }

    fn is_many(self) -> bool {
        matches!(self, Kind::Many | Kind::WhatIfMany)
    }
}

/// splitmix64.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// User `k` of request `i`: a UPN, or now and then an object id. Dry runs get their own
/// names, so a revocation of one of them is unmistakable.
fn user(i: usize, k: usize, dry_run: bool, rng: &mut Rng) -> String {
    let prefix = if dry_run { "w" } else { "r" };
    match rng.below(5) {
        0 if !dry_run => format!("00000000-0000-4000-8000-{i:06x}{k:06x}"),
        _ => format!("{prefix}{i}u{k}@contoso.com"),
    }
}

fn plan(i: usize, rng: &mut Rng) -> Planned {
    let roll = rng.below(100);
    let kind = match roll {
        0..=49 => Kind::One,
        50..=59 => Kind::GraphShaped,
        60..=89 => Kind::Many,
        90..=94 => Kind::WhatIfOne,
        _ => Kind::WhatIfMany,
    };
    let count = match kind {
        Kind::Many | Kind::WhatIfMany if rng.below(20) == 0 => 100,
        Kind::Many | Kind::WhatIfMany => 2 + rng.below(59) as usize,
        _ => 1,
    };
    let users: Vec<String> = (0..count).map(|k| user(i, k, kind.is_dry_run(), rng)).collect();
    let request = match kind {
        Kind::One => TestRequest::post("/revoke").json(&json!({ "userId": users[0] })),
        Kind::GraphShaped => TestRequest::post(&format!("/users/{}/revokeSignInSessions", users[0].replace('@', "%40"))),
        Kind::Many => TestRequest::post("/revoke").json(&json!({ "userIds": users })),
        Kind::WhatIfOne => TestRequest::post("/revoke").json(&json!({ "userId": users[0], "whatIf": true })),
        Kind::WhatIfMany => TestRequest::post("/revoke?whatIf=true").json(&json!({ "userIds": users })),
    };
    Planned {
        kind,
        users,
        request: request.header("x-api-key", API_KEY),
    }
}

/// One request's outcome, as checked.
struct Outcome {
    index: usize,
    kind: Kind,
    status: u16,
    latency: Duration,
    peak_memory: usize,
    /// Users the answer says were revoked.
    reported_revoked: Vec<String>,
    /// Users the answer says were not revoked.
    reported_not_revoked: Vec<String>,
    /// What is wrong with the answer (empty: nothing).
    problems: Vec<String>,
    /// 207 although no user was revoked and every failure was temporary (SPEC: 429/503/504).
    all_failed_207: bool,
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let failed = runtime.block_on(run());
    if failed {
        std::process::exit(1);
    }
}

async fn run() -> bool {
    let component = Component::shared().expect("build the component first: cargo build --target wasm32-wasip2 --release");
    let manifest = Manifest::load_default().unwrap();
    let login = MockServer::start().await;
    let graph = MockServer::start_trusting(&login).await;
    graph.inject_faults(faults());
    let (login_url, graph_url) = (login.base_url(), graph.base_url());
    let budget = TIME_BUDGET_MS.to_string();
    let variables = [
        ("tenant_id", "contoso.onmicrosoft.com"),
        ("client_id", "6a1c5c0e-7d1b-4a57-9e0c-2f3d4b5a6c7d"),
        ("client_secret", "bench-secret"),
        ("api_keys", API_KEY),
        ("login_base_url", login_url.as_str()),
        ("graph_base_url", graph_url.as_str()),
        ("time_budget_ms", budget.as_str()),
        // The abuse brake stays on (its increment is part of what a revoke costs), with a
        // limit no benchmark reaches in one 10-minute window.
        ("max_revocations", "1000000000"),
    ];
    let app = Arc::new(TestApp::start(component.clone(), &manifest, &variables).unwrap());

    let mut rng = Rng(SEED);
    let plans: Arc<Vec<Planned>> = Arc::new((0..REQUESTS).map(|i| plan(i, &mut rng)).collect());
    let outcomes: Arc<Mutex<Vec<Outcome>>> = Arc::new(Mutex::new(Vec::with_capacity(REQUESTS)));
    let started = Instant::now();
    let mut phase_times = Vec::new();
    let per_phase = REQUESTS.div_ceil(PHASES.len());
    for (p, concurrency) in PHASES.into_iter().enumerate() {
        let range = (p * per_phase)..((p + 1) * per_phase).min(REQUESTS);
        let next = Arc::new(AtomicUsize::new(range.start));
        let phase_started = Instant::now();
        let workers: Vec<_> = (0..concurrency)
            .map(|_| {
                let (app, plans, outcomes, next, end) = (app.clone(), plans.clone(), outcomes.clone(), next.clone(), range.end);
                tokio::spawn(async move {
                    loop {
                        let index = next.fetch_add(1, Ordering::Relaxed);
                        if index >= end {
                            return;
                        }
                        let planned = &plans[index];
                        let t = Instant::now();
                        let result = app.send(planned.request.clone()).await;
                        let outcome = check(index, planned, result, t.elapsed());
                        outcomes.lock().unwrap().push(outcome);
                    }
                })
            })
            .collect();
        for worker in workers {
            worker.await.unwrap();
        }
        phase_times.push((concurrency, range.len(), phase_started.elapsed()));
    }
    let wall = started.elapsed();

    let mut outcomes = std::mem::take(&mut *outcomes.lock().unwrap());
    outcomes.sort_by_key(|o| o.index);
    report(&outcomes, &plans, &graph, &login, &app, wall, &phase_times)
}

/// Checks one answer against the SPEC.
fn check<E: std::fmt::Display>(index: usize, planned: &Planned, result: Result<TestResponse, E>, latency: Duration) -> Outcome {
    let mut outcome = Outcome {
        index,
        kind: planned.kind,
        status: 0,
        latency,
        peak_memory: 0,
        reported_revoked: Vec::new(),
        reported_not_revoked: Vec::new(),
        problems: Vec::new(),
        all_failed_207: false,
    };
    let response = match result {
        Ok(response) => response,
        Err(e) => {
            outcome.problems.push(format!("no answer (trap, panic or host timeout): {e:#}"));
            return outcome;
        }
    };
    outcome.status = response.status;
    outcome.peak_memory = response.peak_memory_bytes;
    let problems = &mut outcome.problems;
    if !response.stderr.is_empty() {
        problems.push(format!("guest stderr: {}", response.stderr));
    }
    if response.header("content-type") != Some("application/json") {
        problems.push(format!("content-type {:?}", response.header("content-type")));
    }
    let Ok(body) = serde_json::from_slice::<Value>(&response.body) else {
        problems.push(format!("status {} with a body that is not JSON: {}", response.status, response.text()));
        return outcome;
    };
    let many_shape = body.get("results").is_some();
    match (response.status, planned.kind.is_many(), many_shape) {
        // One user, revoked or looked up.
        (200, false, false) => {
            if planned.kind.is_dry_run() {
                let ok = body["value"] == false && body["whatIf"] == true && body["user"]["id"].is_string();
                if !ok {
                    problems.push(format!("dry-run shape: {body}"));
                }
            } else if body["value"] == true {
                outcome.reported_revoked.push(planned.users[0].clone());
            } else {
                problems.push(format!("200 without value true: {body}"));
            }
        }
        // Many users: 200 / 207, or (SPEC, when nobody succeeded and every failure is
        // temporary) 429 / 503 / 504 with the same body.
        (200 | 207 | 429 | 503 | 504, true, true) => {
            let results = body["results"].as_array().cloned().unwrap_or_default();
            let named: Vec<&str> = results.iter().map(|r| r["userId"].as_str().unwrap_or("?")).collect();
            if named != planned.users.iter().map(String::as_str).collect::<Vec<_>>() {
                problems.push(format!("results name other users than asked for (missing, extra or out of order): {named:?}"));
            }
            let mut revoked = 0;
            let mut temporary = 0;
            for r in &results {
                let user = r["userId"].as_str().unwrap_or("?").to_string();
                let failed = r["error"]["code"].is_string() && r["error"]["message"].is_string();
                let shape_ok = r["status"].is_u64()
                    && match planned.kind.is_dry_run() {
                        // A dry run's item: the user looked up (value false), or an error.
                        true => r["value"] == false && (r["user"]["id"].is_string() || failed),
                        false => r["value"] == true || (r["value"] == false && failed),
                    };
                if !shape_ok {
                    problems.push(format!("result shape: {r}"));
                }
                if r["value"] == true && !planned.kind.is_dry_run() {
                    revoked += 1;
                    outcome.reported_revoked.push(user);
                } else if !planned.kind.is_dry_run() {
                    if matches!(r["status"].as_u64(), Some(429 | 503 | 504)) || r["error"]["code"] == "upstreamTimeout" {
                        temporary += 1;
                    }
                    outcome.reported_not_revoked.push(user);
                }
            }
            let all = results.len();
            if !body["value"].is_boolean() {
                problems.push(format!("value is not a boolean: {}", body["value"]));
            }
            if planned.kind.is_dry_run() {
                if body["whatIf"] != true || body["value"] != false {
                    problems.push(format!("dry-run shape: whatIf {} value {}", body["whatIf"], body["value"]));
                }
            } else {
                if response.status == 200 && revoked != all {
                    problems.push(format!("200 but only {revoked} of {all} revoked"));
                }
                if body["value"] != json!(revoked == all) {
                    problems.push(format!("value {} but {revoked} of {all} revoked", body["value"]));
                }
                if response.status == 207 && revoked == 0 && temporary == all {
                    outcome.all_failed_207 = true;
                    problems.push("207 although nobody was revoked and every failure was temporary (SPEC: 429/503/504 with Retry-After)".into());
                }
            }
            if matches!(response.status, 429 | 503 | 504) && revoked > 0 {
                problems.push(format!("{} although {revoked} users were revoked", response.status));
            }
            if matches!(response.status, 429 | 503 | 504) && response.header("retry-after").is_none() {
                problems.push(format!("{} for many users without Retry-After", response.status));
            }
        }
        // Errors: Graph's OData shape with the SPEC's code for the status.
        (429 | 502 | 503 | 504, _, false) => {
            let code = body["error"]["code"].as_str().unwrap_or("");
            let allowed: &[&str] = match response.status {
                429 => &["throttled"],
                502 => &["graphError", "tokenRequestFailed"],
                503 => &["graphUnavailable", "identityPlatformUnavailable"],
                _ => &["upstreamTimeout"],
            };
            if !allowed.contains(&code) {
                problems.push(format!("status {} with code {code:?}: {body}", response.status));
            }
            let inner = &body["error"]["innerError"];
            if !body["error"]["message"].is_string() || !inner["client-request-id"].is_string() || !inner["date"].is_string() {
                problems.push(format!("error shape: {body}"));
            }
            if response.status == 429 && response.header("retry-after").is_none() {
                problems.push("429 without Retry-After".into());
            }
            for user in &planned.users {
                if !planned.kind.is_dry_run() {
                    outcome.reported_not_revoked.push(user.clone());
                }
            }
        }
        (status, _, _) => problems.push(format!("status {status} not expected for {:?}: {body}", planned.kind)),
    }
    outcome
}

fn percentile(sorted: &[Duration], q: f64) -> Duration {
    sorted.get(((sorted.len() as f64 * q) as usize).min(sorted.len().saturating_sub(1))).copied().unwrap_or_default()
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

#[allow(clippy::too_many_arguments)]
fn report(
    outcomes: &[Outcome],
    plans: &[Planned],
    graph: &MockServer,
    login: &MockServer,
    app: &TestApp,
    wall: Duration,
    phases: &[(usize, usize, Duration)],
) -> bool {
    let revocations = graph.revocations();
    let faults = graph.faults_injected();

    // Users: reported revoked vs the record.
    let asked: HashSet<&str> = plans.iter().filter(|p| !p.kind.is_dry_run()).flat_map(|p| p.users.iter().map(String::as_str)).collect();
    let dry: HashSet<&str> = plans.iter().filter(|p| p.kind.is_dry_run()).flat_map(|p| p.users.iter().map(String::as_str)).collect();
    let mut lost = Vec::new();
    let mut reported_revoked = 0;
    let mut not_reported_but_revoked = 0;
    let mut reported_not_revoked = 0;
    for o in outcomes {
        for user in &o.reported_revoked {
            reported_revoked += 1;
            if !revocations.contains_key(user) {
                lost.push(format!("request {}: {user} reported revoked, no revocation took effect", o.index));
            }
        }
        for user in &o.reported_not_revoked {
            reported_not_revoked += 1;
            if revocations.contains_key(user) {
                not_reported_but_revoked += 1;
            }
        }
    }
    let extra: Vec<&String> = revocations.keys().filter(|u| !asked.contains(u.as_str())).collect();
    let dry_revoked: Vec<&String> = revocations.keys().filter(|u| dry.contains(u.as_str())).collect();

    let problems: Vec<String> = outcomes.iter().flat_map(|o| o.problems.iter().map(move |p| format!("request {} ({}): {p}", o.index, o.kind.name()))).collect();
    let mut statuses: BTreeMap<u16, usize> = BTreeMap::new();
    for o in outcomes {
        *statuses.entry(o.status).or_default() += 1;
    }
    let all_failed_207 = outcomes.iter().filter(|o| o.all_failed_207).count();

    let mut latencies: Vec<Duration> = outcomes.iter().map(|o| o.latency).collect();
    latencies.sort();
    let mut by_kind: BTreeMap<Kind, Vec<&Outcome>> = BTreeMap::new();
    for o in outcomes {
        by_kind.entry(o.kind).or_default().push(o);
    }

    // Memory: the first and last 2,000 requests of each kind, compared.
    let mut memory_rows = Vec::new();
    let mut memory_flat = true;
    for (kind, list) in &by_kind {
        let n = list.len();
        let window = (n / 5).max(1);
        let peak = |slice: &[&Outcome]| slice.iter().map(|o| o.peak_memory).max().unwrap_or(0);
        let (first, last, all) = (peak(&list[..window]), peak(&list[n - window..]), peak(list));
        // Flat: the last requests peak no higher than the first (plus one 64 KiB page).
        let flat = last <= first + 64 * 1024;
        memory_flat &= flat;
        memory_rows.push(format!("| peak linear memory, {}: first {window} / last {window} / max | {} / {} / {} KiB{} |", kind.name(), first / 1024, last / 1024, all / 1024, if flat { "" } else { " (NOT flat)" }));
    }

    let count = |s: u16| statuses.get(&s).copied().unwrap_or(0);
    println!("| load with faults | value |");
    println!("|---|---|");
    println!("| requests | {} ({} one user, {} Graph-shaped, {} many users, {} whatIf one, {} whatIf many) |", outcomes.len(),
        by_kind.get(&Kind::One).map_or(0, Vec::len), by_kind.get(&Kind::GraphShaped).map_or(0, Vec::len), by_kind.get(&Kind::Many).map_or(0, Vec::len),
        by_kind.get(&Kind::WhatIfOne).map_or(0, Vec::len), by_kind.get(&Kind::WhatIfMany).map_or(0, Vec::len));
    let users_asked: usize = plans.iter().map(|p| p.users.len()).sum();
    println!("| users named | {users_asked} ({} to revoke, {} in dry runs) |", asked.len(), dry.len());
    for (concurrency, n, time) in phases {
        println!("| phase: {n} requests, {concurrency} concurrent | {:.1} s ({:.0} requests/s) |", time.as_secs_f64(), *n as f64 / time.as_secs_f64());
    }
    println!("| wall time | {:.1} s |", wall.as_secs_f64());
    println!("| time budget / Retry-After injected | {TIME_BUDGET_MS} ms / 0.05 to 0.5 s |");
    println!("| statuses | {} |", statuses.iter().map(|(s, n)| format!("{s}: {n}")).collect::<Vec<_>>().join(", "));
    println!(
        "| faults injected (Graph calls {}, token calls {}) | {} in all: connection dropped before {} / after the call took effect {}; 429 {}, 503 {}, 504 {}; delayed {}; $batch items 429 {}, 503 {}, 504 {} |",
        graph.calls().len(), login.calls().len(), faults.total(), faults.dropped_before, faults.dropped_after, faults.throttled, faults.unavailable,
        faults.gateway_timeout, faults.delayed, faults.items_throttled, faults.items_unavailable, faults.items_gateway_timeout
    );
    println!("| users reported revoked | {reported_revoked} |");
    println!("| users reported revoked with no revocation in Graph's record (lost) | {} |", lost.len());
    println!("| revocations of users no revoke request named (extra) / of dry-run users | {} / {} |", extra.len(), dry_revoked.len());
    println!("| users reported not revoked | {reported_not_revoked}, of which Graph had revoked {not_reported_but_revoked} (allowed: the answer was lost or the budget ran out) |");
    println!("| answers with a wrong status or shape, traps, panics, stderr | {} |", problems.len());
    println!("| 207 with nobody revoked and only temporary failures (SPEC: 429/503/504) | {all_failed_207} |");
    println!("| 500 answers | {} |", count(500));
    println!("| latency p50 / p99 / max, all | {} / {} / {} |", ms(percentile(&latencies, 0.5)), ms(percentile(&latencies, 0.99)), ms(*latencies.last().unwrap()));
    for (kind, list) in &by_kind {
        let mut l: Vec<Duration> = list.iter().map(|o| o.latency).collect();
        l.sort();
        println!("| latency p50 / p99, {} | {} / {} |", kind.name(), ms(percentile(&l, 0.5)), ms(percentile(&l, 0.99)));
    }
    for row in &memory_rows {
        println!("{row}");
    }
    let denied = app.denied_outbound().len() + app.kept_off_network().len();

    // Problems grouped by what went wrong (the text before the first ':' of each).
    let mut kinds: BTreeMap<String, (usize, &String)> = BTreeMap::new();
    for p in &problems {
        let what = p.split_once("): ").map_or(p.as_str(), |(_, rest)| rest);
        let key = what.split(':').next().unwrap_or(what).chars().take(60).collect::<String>();
        kinds.entry(key).or_insert((0, p)).0 += 1;
    }
    let mut failures: Vec<String> = Vec::new();
    failures.extend(kinds.iter().map(|(key, (n, example))| format!("{n} x {key}; e.g. {example}")));
    failures.extend(lost.iter().take(20).cloned());
    failures.extend(extra.iter().take(20).map(|u| format!("{u} revoked although no revoke request named it")));
    failures.extend(dry_revoked.iter().take(20).map(|u| format!("{u} revoked by a dry run")));
    if !memory_flat {
        failures.push("peak memory per instance grew from the first requests to the last".into());
    }
    if denied > 0 {
        failures.push(format!("{denied} outbound calls refused or kept off the network"));
    }
    let failed = !(problems.is_empty() && lost.is_empty() && extra.is_empty() && dry_revoked.is_empty() && memory_flat && denied == 0);
    if failed {
        eprintln!("\nload with faults FAILED ({} problems, {} lost, {} extra, {} dry-run revocations); the first:", problems.len(), lost.len(), extra.len(), dry_revoked.len());
        for f in failures {
            eprintln!("- {f}");
        }
    } else {
        println!("\nload with faults: every answer as the SPEC says; no user lost or misreported.");
    }
    failed
}
