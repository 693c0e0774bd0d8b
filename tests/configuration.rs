//! Settings as Spin gives them: the real `spin.toml`, its defaults, required
//! variables, and the outbound hosts it allows.

mod common;

use common::*;
use graph_revoke_test_host::{Component, Manifest, TestApp, TestRequest};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_required_variable_stops_the_app_from_starting() {
    let manifest = Manifest::load_default().unwrap();
    for missing in ["tenant_id", "client_id"] {
        let vars = [("tenant_id", TENANT), ("client_id", CLIENT_ID), ("client_secret", CLIENT_SECRET), ("api_keys", API_KEY)];
        let vars: Vec<_> = vars.into_iter().filter(|(n, _)| *n != missing).collect();
        let error = TestApp::start(Component::shared().unwrap(), &manifest, &vars).err().expect("start refused");
        assert!(error.to_string().contains(missing), "{error}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_client_secret_is_named_by_health_and_by_revoke() {
    let env = start_with(&[("client_secret", None)]).await;
    let health = env.send(TestRequest::get("/healthz")).await;
    assert_eq!(health.status, 503);
    assert_eq!(health.json(), json!({ "status": "misconfigured", "missing": ["client_secret"] }));
    let message = assert_error(&env.send(revoke("adele@contoso.com")).await, 500, "configurationError");
    assert!(message.contains("client_secret"), "{message}");
    assert_eq!(env.outbound_calls(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_names_every_missing_or_malformed_variable_and_no_value() {
    let env = start_with(&[("client_secret", None), ("api_keys", None), ("max_users", Some("many")), ("tenant_id", Some("not a tenant"))]).await;
    let health = env.send(TestRequest::get("/healthz")).await;
    assert_eq!(health.status, 503);
    assert_eq!(
        health.json(),
        json!({ "status": "misconfigured", "missing": ["client_secret", "api_keys"], "invalid": ["tenant_id", "max_users"] })
    );
    assert!(!health.text().contains("many") && !health.text().contains("not a tenant"));
    assert_eq!(env.outbound_calls(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_and_graph_pair_from_two_clouds_is_named_and_nothing_is_sent() {
    // The global identity platform with US Government Graph: AADSTS90002/500011 in real
    // life; here the component says which setting to fix before asking for a token.
    let env = start_with(&[("graph_base_url", Some("https://graph.microsoft.us")), ("login_base_url", None)]).await;
    let health = env.send(TestRequest::get("/healthz")).await;
    assert_eq!(health.status, 503);
    assert_eq!(health.json(), json!({ "status": "misconfigured", "missing": [], "invalid": ["graph_base_url"] }));
    let message = assert_error(&env.send(revoke("adele@contoso.com")).await, 500, "configurationError");
    assert!(message.contains("US Government") && message.contains("login_base_url"), "{message}");
    assert_eq!(env.outbound_calls(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_manifest_defaults_point_at_the_public_cloud() {
    // Without the two base URLs the component uses spin.toml's defaults, and the
    // manifest allows them; the test host keeps the request off the network.
    let env = start_with(&[("login_base_url", None), ("graph_base_url", None)]).await;
    let response = env.app.send(revoke("adele@contoso.com")).await.unwrap();
    assert_nothing_leaked(&response);
    assert!(env.app.denied_outbound().is_empty());
    assert_eq!(
        env.app.kept_off_network(),
        vec![format!("https://login.microsoftonline.com:443/{TENANT}/oauth2/v2.0/token")]
    );
    let message = assert_error(&response, 502, "tokenRequestFailed");
    assert!(message.contains("login_base_url"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_variable_the_manifest_does_not_declare_reads_as_missing() {
    // Drop graph_base_url from the component's variables, as a careless edit would.
    let text = Manifest::load_default().unwrap().text().replace("graph_base_url = \"{{ graph_base_url }}\"\n", "");
    let manifest = Manifest::from_str(&text).unwrap();
    let env = start_with_manifest(&manifest, &[]).await;
    let message = assert_error(&env.send(revoke("adele@contoso.com")).await, 500, "configurationError");
    assert!(message.contains("graph_base_url"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbound_calls_go_only_to_hosts_the_manifest_allows() {
    // A manifest that allows only the login host: the Graph call is refused by the host.
    let text = Manifest::load_default().unwrap().text().replace(
        "allowed_outbound_hosts = [\"{{ login_base_url }}\", \"{{ graph_base_url }}\"]",
        "allowed_outbound_hosts = [\"{{ login_base_url }}\"]",
    );
    assert_ne!(text, Manifest::load_default().unwrap().text(), "the manifest line moved; update this test");
    let env = start_with_manifest(&Manifest::from_str(&text).unwrap(), &[]).await;
    let response = env.app.send(revoke("adele@contoso.com")).await.unwrap();
    assert_nothing_leaked(&response);
    assert_eq!(env.app.denied_outbound().len(), 1, "a policy refusal is not retried");
    assert_eq!(env.graph.calls().len(), 0);
    let message = assert_error(&response, 503, "graphUnavailable");
    assert!(message.contains("allowed_outbound_hosts"), "{message}");
    assert_eq!(response.header("retry-after"), None);
}

/// Every variable of spin.toml a client-secret, API-key deployment reads (the other
/// credentials' variables are read only when `credential` chooses them: tests/credentials.rs;
/// the caller token settings only once `caller_audience` is set: tests/caller_tokens.rs).
const ALL: [&str; 11] = [
    "api_keys",
    "client_id",
    "client_private_key",
    "client_secret",
    "credential",
    "graph_base_url",
    "login_base_url",
    "max_revocations",
    "max_users",
    "tenant_id",
    "time_budget_ms",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_are_read_when_each_step_needs_them() {
    // Each read may be a vault round trip: the caller check reads api_keys alone, the
    // Graph settings come after it, which credential (it names the token's cache entry)
    // when a token is needed, client_secret only when a token is fetched.
    let env = start().await;
    assert_eq!(env.send(TestRequest::get("/openapi.json")).await.status, 200);
    assert_eq!(env.app.config_reads(), each_once(&[]), "/openapi.json reads nothing");

    assert_eq!(env.send(TestRequest::get("/healthz")).await.status, 200);
    let mut health = ALL.to_vec();
    health.push("caller_audience");
    assert_eq!(env.app.config_reads(), each_once(&health), "/healthz reads everything in use, once; caller_audience says tokens are off");

    env.app.clear_config_reads();
    let rejected = TestRequest::post("/revoke").header("x-api-key", &"x".repeat(40)).json(&json!({ "userId": "adele@contoso.com" }));
    assert_eq!(env.send(rejected).await.status, 401);
    assert_eq!(env.app.config_reads(), each_once(&["api_keys"]), "a rejected caller costs one read");

    env.app.clear_config_reads();
    let cold = env.send(revoke("adele@contoso.com")).await;
    assert_eq!((cold.status, log_line(&cold)["tokenFromCache"].clone()), (200, json!(false)));
    assert_eq!(env.app.config_reads(), each_once(&ALL), "a cold revoke reads each variable once");

    env.app.clear_config_reads();
    let warm = env.send(revoke("adele@contoso.com")).await;
    assert_eq!((warm.status, log_line(&warm)["tokenFromCache"].clone()), (200, json!(true)));
    let without_secret: Vec<&str> = ALL.into_iter().filter(|n| !["client_secret", "client_private_key"].contains(n)).collect();
    assert_eq!(env.app.config_reads(), each_once(&without_secret), "a warm revoke never reads client_secret");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_warm_revoke_needs_no_client_secret() {
    // A cached token suffices: the secret is needed (and its absence a 500) only to fetch one.
    let env = start().await;
    assert_eq!(env.send(revoke("adele@contoso.com")).await.status, 200);
    // The token cache's entry (the store also holds the abuse brake's counters).
    let keys: Vec<String> = env.app.kv_keys().into_iter().filter(|k| k.starts_with("graph-revoke/token/")).collect();
    let entry = env.app.kv_get(&keys[0]).unwrap();

    let mut vars = variables(&env.login, &env.graph);
    vars.retain(|(n, _)| n != "client_secret");
    let vars: Vec<(&str, &str)> = vars.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
    let app = TestApp::start(Component::shared().unwrap(), &Manifest::load_default().unwrap(), &vars).unwrap();
    let cold = app.send(revoke("adele@contoso.com")).await.unwrap();
    assert_nothing_leaked(&cold);
    assert_error(&cold, 500, "configurationError");
    app.kv_set(&keys[0], &entry);
    let warm = app.send(revoke("adele@contoso.com")).await.unwrap();
    assert_nothing_leaked(&warm);
    assert_eq!(warm.status, 200, "{}", warm.text());
    assert_eq!(app.config_reads().get("client_secret"), Some(&1), "read once, by the cold request");
    assert_eq!(env.login.calls().len(), 1);
    let health = app.send(TestRequest::get("/healthz")).await.unwrap();
    assert_eq!(health.json(), json!({ "status": "misconfigured", "missing": ["client_secret"] }));
}
