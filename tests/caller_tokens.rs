//! Callers with Entra ID access tokens (`Authorization: Bearer`, issue 8 section 1): the
//! compiled component against a mock identity platform that publishes a JWKS of keys
//! generated at test time, with tokens the tests mint (tests/common/tokens.rs).
//!
//! What is proven: v1 and v2 tokens revoke, and a warm request makes one outbound call;
//! every refused token is a 401 (403 for an authenticated caller a rule refuses) with no
//! token request and no Graph call; forged `kid`s cost at most one JWKS fetch per five
//! minutes; API keys and tokens work side by side; nothing of a token reaches a response
//! or the log. The host has no clock control, so "five minutes later" is made by moving
//! the cached entry's timestamps back (the unit tests in src/service.rs run the same rules
//! on a virtual clock).

mod common;

use common::tokens::*;
use common::*;
use graph_revoke_test_host::{MockResponse, TestRequest, TestResponse};
use serde_json::{json, Value};

/// The app with tokens enabled (and `api_keys` still set), its mock publishing the key.
async fn start_tokens(changes: &[(&str, Option<&str>)]) -> Env {
    let mut all = vec![("caller_audience", Some(AUDIENCE)), ("caller_tenant_id", Some(TENANT_ID))];
    all.extend_from_slice(changes);
    let env = start_with(&all).await;
    env.login.set_jwks(&jwks(KID, signer()));
    env
}

fn revoke_as(authorization: &str) -> TestRequest {
    TestRequest::post("/revoke").header("authorization", authorization).json(&json!({ "userId": "adele@contoso.com" }))
}

/// Asserts nothing of `token` (any of its three parts) is in the response or the log.
fn assert_token_not_echoed(response: &TestResponse, token: &str) {
    let mut everything = format!("{}\n{}\n{}", response.text(), response.stdout, response.stderr);
    for (name, value) in &response.headers {
        everything.push_str(&format!("\n{name}: {value}"));
    }
    for part in token.split('.').filter(|p| p.len() >= 8) {
        assert!(!everything.contains(&part[..8]), "part of the token came back: {everything}");
    }
}

const TOKEN_SETTINGS: [&str; 7] =
    ["caller_audience", "tenant_id", "caller_tenant_id", "login_base_url", "client_id", "allowed_callers", "caller_role"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v2_and_v1_tokens_revoke_and_a_warm_request_makes_one_outbound_call() {
    let env = start_tokens(&[]).await;
    let v2 = token(&v2_claims(&env.login.base_url()));
    let cold = env.send(revoke_as(&bearer(&v2))).await;
    assert_eq!(cold.status, 200, "{}", cold.text());
    assert_eq!(cold.json(), json!({ "value": true }));
    assert_eq!((env.login.jwks_fetches(), env.login.token_requests(), env.graph.calls().len()), (1, 1, 1));
    let line = log_line(&cold);
    assert_eq!(line["caller"], format!("oid:{CALLER_OID}"));
    assert_eq!(line["callerApp"], CALLER_APP);
    assert_eq!(line["outboundCalls"], 3, "the keys, the Graph token, the revoke");
    assert_token_not_echoed(&cold, &v2);

    // v1 (a Logic App's managed identity by default), on the Graph-shaped route: the keys
    // and the Graph token are cached, so one outbound call, to Graph.
    let v1 = token(&v1_claims());
    let request = TestRequest::post("/users/adele%40contoso.com/revokeSignInSessions").header("authorization", &bearer(&v1));
    let warm = env.send(request).await;
    assert_eq!(warm.status, 200, "{}", warm.text());
    let line = log_line(&warm);
    assert_eq!((line["outboundCalls"].clone(), line["tokenFromCache"].clone()), (json!(1), json!(true)));
    assert_eq!((line["caller"].clone(), line["callerApp"].clone()), (json!(format!("oid:{CALLER_OID}")), json!(CALLER_APP)));
    assert_eq!((env.login.jwks_fetches(), env.login.token_requests(), env.graph.calls().len()), (1, 1, 2));
    assert_token_not_echoed(&warm, &v1);
    // Graph gets the component's own token, never the caller's.
    for call in env.graph.calls() {
        assert!(call.header("authorization").is_some_and(|a| a.starts_with("Bearer mock-access-token")));
    }
    // The keys are cached by login host and tenant.
    let key = format!("graph-revoke/jwks/v1/{}/{TENANT_ID}", env.login.base_url());
    assert!(env.app.kv_keys().contains(&key), "{:?}", env.app.kv_keys());
}

/// An HS256 token MACed with `secret`: the key-confusion forgery.
fn hs256(claims: &Value, secret: &[u8]) -> String {
    use hmac::{KeyInit, Mac};
    let input = format!("{}.{}", b64(json!({"alg": "HS256", "typ": "JWT", "kid": KID}).to_string().as_bytes()), b64(claims.to_string().as_bytes()));
    let mut mac = hmac::Hmac::<sha2_test::Sha256>::new_from_slice(secret).unwrap();
    mac.update(input.as_bytes());
    format!("{input}.{}", b64(&mac.finalize().into_bytes()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_refused_token_is_a_401_before_any_outbound_call() {
    use rsa_test::pkcs8::{EncodePublicKey, LineEnding};
    let env = start_tokens(&[]).await;
    let login = env.login.base_url();
    let good = v2_claims(&login);
    let now = now();
    let rs256 = |kid: Option<&str>, claims: &Value| {
        let header = match kid {
            Some(kid) => json!({"typ": "JWT", "alg": "RS256", "kid": kid}),
            None => json!({"typ": "JWT", "alg": "RS256"}),
        };
        sign(&header, claims, signer())
    };
    let public_pem = signer().to_public_key().to_public_key_pem(LineEnding::LF).unwrap();
    let public_der = signer().to_public_key().to_public_key_der().unwrap().as_bytes().to_vec();
    let parts: Vec<String> = token(&good).split('.').map(String::from).collect();
    let cases: Vec<(&str, String)> = vec![
        ("expired beyond the 5 minutes of skew", token(&with(good.clone(), "exp", json!(now - 360)))),
        ("not valid for another 6 minutes", token(&with(good.clone(), "nbf", json!(now + 360)))),
        ("no exp", token(&with(good.clone(), "exp", Value::Null))),
        ("another audience", token(&with(good.clone(), "aud", json!("api://another-api")))),
        ("a Graph token forwarded", token(&with(good.clone(), "aud", json!("https://graph.microsoft.com")))),
        ("Graph's app id as audience", token(&with(good.clone(), "aud", json!("00000003-0000-0000-c000-000000000000")))),
        ("another issuer", token(&with(good.clone(), "iss", json!(format!("https://login.microsoftonline.com/{TENANT_ID}/v2.0"))))),
        ("another tenant", {
            let other = "0b1c2d3e-4f50-4617-8293-a4b5c6d7e8f9";
            token(&with(with(good.clone(), "tid", json!(other)), "iss", json!(format!("{login}/{other}/v2.0"))))
        }),
        ("alg none", format!("{}.{}.", b64(br#"{"alg":"none","typ":"JWT"}"#), parts[1])),
        ("alg none with a kid and a signature", format!("{}.{}.{}", b64(format!(r#"{{"alg":"none","kid":"{KID}"}}"#).as_bytes()), parts[1], parts[2])),
        ("HS256 keyed with the public key (PEM)", hs256(&good, public_pem.as_bytes())),
        ("HS256 keyed with the public key (DER)", hs256(&good, &public_der)),
        ("RS512", sign(&json!({"alg": "RS512", "kid": KID}), &good, signer())),
        ("no kid", rs256(None, &good)),
        ("malformed base64", format!("{}!.{}.{}", parts[0], parts[1], parts[2])),
        ("malformed JSON", format!("{}.{}.{}", parts[0], b64(b"{\"aud\": "), parts[2])),
        ("claims that are not an object", format!("{}.{}.{}", parts[0], b64(b"[1,2,3]"), parts[2])),
        ("two segments", format!("{}.{}", parts[0], parts[1])),
        ("oversized", token(&with(good.clone(), "pad", json!("x".repeat(17 * 1024))))),
    ];
    for (what, token) in &cases {
        let response = env.send(revoke_as(&bearer(token))).await;
        let message = assert_error(&response, 401, "unauthenticated");
        assert_eq!(
            response.header("www-authenticate"),
            Some(r#"Bearer realm="graph-revoke", error="invalid_token""#),
            "{what}: {message}"
        );
        assert!(log_line(&response).get("caller").is_none(), "{what}");
        assert_token_not_echoed(&response, token);
    }
    let basic = env.send(revoke_as("Basic YWRtaW46YWRtaW4=")).await;
    assert_error(&basic, 401, "unauthenticated");
    assert_eq!(basic.header("www-authenticate"), Some(r#"Bearer realm="graph-revoke", error="invalid_request""#));
    assert_eq!(env.outbound_calls(), 0, "no JWKS fetch, no token request, no Graph call: {:?}", env.login.calls());

    // Within the skew: accepted (this fetches the keys and a Graph token).
    for claims in [with(good.clone(), "exp", json!(now - 240)), with(good.clone(), "nbf", json!(now + 240))] {
        let response = env.send(revoke_as(&bearer(&token(&claims)))).await;
        assert_eq!(response.status, 200, "{}", response.text());
    }
    let (graph_calls, token_requests) = (env.graph.calls().len(), env.login.token_requests());

    // With the keys at hand: a signature by another key under the right kid, and claims
    // changed after signing.
    let forged = sign(&json!({"alg": "RS256", "kid": KID}), &good, forger());
    let raised = with(good.clone(), "roles", json!(["Directory.ReadWrite.All"]));
    let tampered = format!("{}.{}.{}", parts[0], b64(raised.to_string().as_bytes()), parts[2]);
    for token in [forged, tampered] {
        let response = env.send(revoke_as(&bearer(&token))).await;
        let message = assert_error(&response, 401, "unauthenticated");
        assert!(message.contains("signature"), "{message}");
    }
    assert_eq!((env.graph.calls().len(), env.login.token_requests(), env.login.jwks_fetches()), (graph_calls, token_requests, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allowed_callers_and_caller_role_refuse_with_403_naming_the_rule() {
    let other_caller = "0a0b0c0d-1111-4222-8333-944445555666";
    for (changes, claims_role, rule) in [
        (vec![("allowed_callers", Some(other_caller))], json!([ROLE]), "allowed_callers"),
        (vec![("caller_role", Some("Sessions.RevokeAll"))], json!([ROLE]), "caller_role"),
        (vec![("caller_role", Some(ROLE))], json!([]), "caller_role"),
    ] {
        let env = start_tokens(&changes).await;
        let token = token(&with(v2_claims(&env.login.base_url()), "roles", claims_role));
        let response = env.send(revoke_as(&bearer(&token))).await;
        let message = assert_error(&response, 403, "forbidden");
        assert!(message.contains(rule), "{message}");
        assert!(response.header("www-authenticate").is_none());
        assert_token_not_echoed(&response, &token);
        assert_eq!((env.login.jwks_fetches(), env.login.token_requests(), env.graph.calls().len()), (1, 0, 0), "{rule}");
    }
    // Both rules met (object ids in any case): revoked.
    let allowed = format!("{other_caller}, {}", CALLER_OID.to_uppercase());
    let env = start_tokens(&[("allowed_callers", Some(&allowed)), ("caller_role", Some(ROLE))]).await;
    let response = env.send(revoke_as(&bearer(&token(&v2_claims(&env.login.base_url()))))).await;
    assert_eq!(response.status, 200, "{}", response.text());
}

/// Moves the cached keys' fetch and attempt times `seconds` into the past (the test host
/// has no clock to advance).
fn age_cached_keys(env: &Env, seconds: u64) {
    let key = format!("graph-revoke/jwks/v1/{}/{TENANT_ID}", env.login.base_url());
    let mut entry: Value = serde_json::from_slice(&env.app.kv_get(&key).expect("the keys are cached")).unwrap();
    for name in ["fetchedAt", "attemptedAt"] {
        entry[name] = json!(entry[name].as_u64().unwrap().saturating_sub(seconds));
    }
    env.app.kv_set(&key, entry.to_string().as_bytes());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_kids_cost_at_most_one_jwks_fetch_per_five_minutes() {
    let env = start_tokens(&[]).await;
    let claims = v2_claims(&env.login.base_url());
    let forged = |kid: String| sign(&json!({"typ": "JWT", "alg": "RS256", "kid": kid}), &claims, forger());
    // Nothing cached: the first forged kid (its claims pass) fetches the keys once.
    for i in 0..25 {
        let response = env.send(revoke_as(&bearer(&forged(format!("forged-{i}"))))).await;
        let message = assert_error(&response, 401, "unauthenticated");
        assert!(message.contains("key"), "{message}");
    }
    assert_eq!(env.login.jwks_fetches(), 1, "25 forged kids, one fetch");

    // 4 minutes later: still no refetch.
    age_cached_keys(&env, 240);
    assert_error(&env.send(revoke_as(&bearer(&forged("forged-a".into())))).await, 401, "unauthenticated");
    assert_eq!(env.login.jwks_fetches(), 1);
    // Past 5 minutes: one refetch for the whole flood.
    age_cached_keys(&env, 61);
    for i in 0..25 {
        assert_error(&env.send(revoke_as(&bearer(&forged(format!("forged-b{i}"))))).await, 401, "unauthenticated");
    }
    assert_eq!(env.login.jwks_fetches(), 2, "25 more forged kids after 5 minutes, one more fetch");
    assert_eq!((env.login.token_requests(), env.graph.calls().len()), (0, 0));

    // A real key rollover: the new key's first token refetches (the interval has passed)
    // and gets in.
    env.login.set_jwks(&jwks("rolled-kid", forger()));
    age_cached_keys(&env, 301);
    let response = env.send(revoke_as(&bearer(&forged("rolled-kid".into())))).await;
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(env.login.jwks_fetches(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trouble_at_the_jwks_endpoint_is_503_with_retry_after_and_not_hammered() {
    let env = start_tokens(&[]).await;
    env.login.enqueue("GET", &format!("/{TENANT_ID}/discovery/v2.0/keys"), MockResponse::json(503, json!({"error": "busy"})));
    let token = token(&v2_claims(&env.login.base_url()));
    for _ in 0..3 {
        let response = env.send(revoke_as(&bearer(&token))).await;
        let message = assert_error(&response, 503, "identityPlatformUnavailable");
        assert!(message.contains("signing keys"), "{message}");
        let retry_after: u64 = response.header("retry-after").expect("Retry-After").parse().unwrap();
        assert!((1..=30).contains(&retry_after), "{retry_after}");
    }
    assert_eq!(env.login.jwks_fetches(), 1, "a failed fetch is not retried for 30 s");
    assert_eq!((env.login.token_requests(), env.graph.calls().len()), (0, 0));
    // 30 s later (moved back, as above): fetched again, and the caller gets in.
    age_cached_keys(&env, 30);
    assert_eq!(env.send(revoke_as(&bearer(&token))).await.status, 200);
    assert_eq!(env.login.jwks_fetches(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_keys_and_tokens_work_side_by_side_and_neither_fails_closed() {
    // Both enabled: either works; both at once is refused.
    let env = start_tokens(&[]).await;
    let minted = token(&v2_claims(&env.login.base_url()));
    assert_eq!(env.send(revoke("adele@contoso.com")).await.status, 200);
    let response = env.send(revoke_as(&bearer(&minted))).await;
    assert_eq!(response.status, 200, "{}", response.text());
    let both = env.send(revoke("adele@contoso.com").header("authorization", &bearer(&minted))).await;
    assert!(assert_error(&both, 401, "unauthenticated").contains("not both"));

    // Tokens only: an API key is told to bring a token.
    let env = start_tokens(&[("api_keys", None)]).await;
    for request in [revoke("adele@contoso.com"), TestRequest::post("/revoke").json(&json!({ "userId": "adele@contoso.com" }))] {
        let response = env.send(request).await;
        assert_error(&response, 401, "unauthenticated");
        assert_eq!(response.header("www-authenticate"), Some(r#"Bearer realm="graph-revoke""#));
    }
    let minted = token(&v2_claims(&env.login.base_url()));
    assert_eq!(env.send(revoke_as(&bearer(&minted))).await.status, 200);
    assert_eq!(env.send(TestRequest::get("/healthz")).await.status, 200, "tokens alone are a complete configuration");

    // API keys only: a token is told to bring a key.
    let env = start().await;
    let response = env.send(revoke_as(&bearer(&minted))).await;
    assert!(assert_error(&response, 401, "unauthenticated").contains("caller_audience"));
    assert!(response.header("www-authenticate").is_some_and(|c| c.starts_with("APIKey")));

    // Neither: 500 whatever is presented, nothing sent.
    let env = start_with(&[("api_keys", None)]).await;
    for request in [revoke_as(&bearer(&minted)), revoke("adele@contoso.com")] {
        let message = assert_error(&env.send(request).await, 500, "configurationError");
        assert!(message.contains("api_keys") && message.contains("caller_audience"), "{message}");
    }
    assert_eq!(env.outbound_calls(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_caller_reads_the_token_policy_and_every_variable_once() {
    let env = start_tokens(&[]).await;
    env.app.clear_config_reads();
    assert_eq!(env.send(revoke_as("Bearer not.a.token")).await.status, 401);
    assert_eq!(env.app.config_reads(), each_once(&TOKEN_SETTINGS), "a refused token reads the token policy alone");

    env.app.clear_config_reads();
    let response = env.send(revoke_as(&bearer(&token(&v2_claims(&env.login.base_url()))))).await;
    assert_eq!(response.status, 200);
    let mut cold = TOKEN_SETTINGS.to_vec();
    cold.extend(["graph_base_url", "time_budget_ms", "max_users", "max_revocations", "credential", "client_private_key", "client_secret"]);
    assert_eq!(env.app.config_reads(), each_once(&cold), "each once: tenant_id, client_id and login_base_url are shared");

    // An API-key caller reads nothing of the token policy.
    env.app.clear_config_reads();
    assert_eq!(env.send(revoke("adele@contoso.com")).await.status, 200);
    let warm = ["api_keys", "tenant_id", "client_id", "graph_base_url", "login_base_url", "time_budget_ms", "max_users", "max_revocations", "credential"];
    assert_eq!(env.app.config_reads(), each_once(&warm));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_checks_the_token_policy() {
    // tenant_id is a domain: caller_tenant_id is required.
    let env = start_tokens(&[("caller_tenant_id", None)]).await;
    let health = env.send(TestRequest::get("/healthz")).await;
    assert_eq!((health.status, health.json()), (503, json!({ "status": "misconfigured", "missing": [], "invalid": ["caller_tenant_id"] })));
    let token = token(&v2_claims(&env.login.base_url()));
    let message = assert_error(&env.send(revoke_as(&bearer(&token))).await, 500, "configurationError");
    assert!(message.contains("caller_tenant_id"), "{message}");
    assert_eq!(env.outbound_calls(), 0);

    // A Graph audience, and allowed_callers that are not object ids: named, not quoted.
    let env = start_tokens(&[("caller_audience", Some("https://graph.microsoft.com")), ("allowed_callers", Some("my-logic-app"))]).await;
    let health = env.send(TestRequest::get("/healthz")).await;
    assert_eq!(health.json(), json!({ "status": "misconfigured", "missing": [], "invalid": ["caller_audience"] }));
    let env = start_tokens(&[("allowed_callers", Some("my-logic-app"))]).await;
    let health = env.send(TestRequest::get("/healthz")).await;
    assert_eq!(health.json(), json!({ "status": "misconfigured", "missing": [], "invalid": ["allowed_callers"] }));
    assert!(!health.text().contains("my-logic-app"));
}
