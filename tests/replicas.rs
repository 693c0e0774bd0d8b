//! Several replicas behind one shared key-value store (`runtime-config/redis-replicas.toml`,
//! the SpinKube layout): the Graph token is fetched once between them, and however their
//! requests interleave, every request uses a token issued for its own tenant.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::*;
use graph_revoke_test_host::{Component, KeyValueBackend, Manifest, MockResponse, MockServer, RecordedCall, RuntimeConfig, TestApp};
use serde_json::json;

const OTHER_TENANT: &str = "fabrikam.onmicrosoft.com";

/// A replica of the app: the project's manifest, the Redis runtime config, the variables
/// of a correct deployment for `tenant`, the `default` store on `backend`.
fn replica(tenant: &str, login: &MockServer, graph: &MockServer, backend: &KeyValueBackend) -> TestApp {
    let config = RuntimeConfig::load_project("runtime-config/redis-replicas.toml").unwrap();
    assert_eq!(config.key_value_stores().get("default").map(String::as_str), Some("redis"));
    let vars = variables(login, graph).into_iter().map(|(n, v)| if n == "tenant_id" { (n, tenant.to_string()) } else { (n, v) });
    TestApp::builder(Component::shared().unwrap(), &Manifest::load_default().unwrap())
        .runtime_config(config)
        .variables(vars)
        .shared_key_value(backend)
        .start()
        .unwrap()
}

fn token_calls(login: &MockServer) -> Vec<RecordedCall> {
    login.calls().into_iter().filter(|c| c.path.ends_with("/oauth2/v2.0/token")).collect()
}

/// The token cache's entries (the store also holds the abuse brake's counters).
fn token_keys(store: &KeyValueBackend) -> Vec<String> {
    store.keys().into_iter().filter(|k| k.starts_with("graph-revoke/token/")).collect()
}

fn bearer(call: &RecordedCall) -> String {
    call.header("authorization").unwrap_or_default().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_sharing_one_store_fetch_the_token_once() {
    let login = MockServer::start().await;
    let graph = MockServer::start_trusting(&login).await;
    let shared = KeyValueBackend::new();
    let first = replica(TENANT, &login, &graph, &shared);
    let second = replica(TENANT, &login, &graph, &shared);

    for (app, user) in [(&first, "adele@contoso.com"), (&second, "alex@contoso.com"), (&first, "megan@contoso.com")] {
        let response = app.send(revoke(user)).await.unwrap();
        assert_nothing_leaked(&response);
        assert_eq!(response.status, 200, "{}", response.text());
    }
    assert_eq!(token_calls(&login).len(), 1, "one token between the two replicas");
    let tokens: BTreeSet<String> = graph.calls().iter().map(bearer).collect();
    assert_eq!(tokens.len(), 1, "{tokens:?}");
    assert_eq!(token_keys(&shared).len(), 1, "{:?}", shared.keys());

    // Without the shared store each replica fetches its own.
    let login = MockServer::start().await;
    let graph = MockServer::start_trusting(&login).await;
    let (a, b) = (KeyValueBackend::new(), KeyValueBackend::new());
    for app in [replica(TENANT, &login, &graph, &a), replica(TENANT, &login, &graph, &b)] {
        assert_eq!(app.send(revoke("adele@contoso.com")).await.unwrap().status, 200);
    }
    assert_eq!(token_calls(&login).len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_cold_requests_on_replicas_of_two_tenants_leave_only_their_own_valid_tokens() {
    let login = MockServer::start().await;
    let graph = MockServer::start_trusting(&login).await;
    // Distinct tokens per tenant, so a request that used another tenant's token (or a
    // token no one issued) shows in what Graph received.
    const ROUNDS: usize = 12;
    let mut issued: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for (tenant, tag) in [(TENANT, "contoso"), (OTHER_TENANT, "fabrikam")] {
        for n in 1..=ROUNDS {
            let token = format!("{tag}-token-{n}");
            let body = json!({ "token_type": "Bearer", "expires_in": 3599, "ext_expires_in": 3599, "access_token": token });
            login.enqueue("POST", &format!("/{tenant}/oauth2/v2.0/token"), MockResponse::json(200, body));
            issued.entry(tenant).or_default().push(token);
        }
    }
    let shared = KeyValueBackend::new();
    let contoso = [replica(TENANT, &login, &graph, &shared), replica(TENANT, &login, &graph, &shared)];
    let fabrikam = [replica(OTHER_TENANT, &login, &graph, &shared), replica(OTHER_TENANT, &login, &graph, &shared)];

    // A burst of cold requests on all four replicas at once, then more, one at a time.
    let burst = (0..8).map(|i| {
        let (app, user) = match i % 4 {
            0 => (&contoso[0], format!("c{i}@contoso.com")),
            1 => (&fabrikam[0], format!("f{i}@fabrikam.com")),
            2 => (&contoso[1], format!("c{i}@contoso.com")),
            _ => (&fabrikam[1], format!("f{i}@fabrikam.com")),
        };
        async move { app.send(revoke(&user)).await.unwrap() }
    });
    for response in futures::future::join_all(burst).await {
        assert_eq!(response.status, 200, "{}", response.text());
    }
    let fetched_in_burst = token_calls(&login).len();
    eprintln!("{fetched_in_burst} token requests during the burst of 8 cold requests");
    assert!((2..=8).contains(&fetched_in_burst), "{fetched_in_burst}");
    let graph_calls_in_burst = graph.calls().len();
    for round in 0..4 {
        for (i, app) in contoso.iter().chain(&fabrikam).enumerate() {
            let user = if i < 2 { format!("c-later-{round}-{i}@contoso.com") } else { format!("f-later-{round}-{i}@fabrikam.com") };
            let response = app.send(revoke(&user)).await.unwrap();
            assert_eq!(response.status, 200, "{}", response.text());
            for text in [response.text(), response.stdout.clone()] {
                assert!(!text.contains("-token-"), "a token leaked: {text}");
            }
        }
    }
    assert_eq!(token_calls(&login).len(), fetched_in_burst, "every later request used a cached token");

    // Which tokens each tenant got, in the order the platform issued them.
    let mut served: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for call in token_calls(&login) {
        let tenant = if call.path.starts_with(&format!("/{TENANT}/")) { TENANT } else { OTHER_TENANT };
        let n = served.get(tenant).map_or(0, Vec::len);
        served.entry(tenant).or_default().push(issued[tenant][n].clone());
    }
    let graph_calls = graph.calls();
    for call in &graph_calls {
        let tenant = if call.path.contains("@contoso.com") { TENANT } else { OTHER_TENANT };
        let token = bearer(call);
        let token = token.strip_prefix("Bearer ").unwrap_or_else(|| panic!("not a bearer token: {token:?}"));
        assert!(
            served.get(tenant).is_some_and(|s| s.iter().any(|t| t == token)),
            "Graph call {} for {tenant} carried {token:?}, not a token issued to that tenant ({served:?})",
            call.path
        );
    }
    // After the burst, each tenant's later requests all used one token: the entry the
    // last writer left, whole.
    for tenant in [TENANT, OTHER_TENANT] {
        let later: BTreeSet<String> = graph_calls[graph_calls_in_burst..]
            .iter()
            .filter(|c| c.path.contains(if tenant == TENANT { "@contoso.com" } else { "@fabrikam.com" }))
            .map(bearer)
            .collect();
        assert_eq!(later.len(), 1, "{tenant}: {later:?}");
    }
    assert_eq!(token_keys(&shared).len(), 2, "one entry per tenant: {:?}", shared.keys());
}
