//! How the component authenticates to Graph (`credential`, issue 8 section 2), driven end
//! to end: the managed identity endpoints (IMDS and App Service) mocked with their error
//! answers, and the certificate's client assertion checked at the mock token endpoint.
//! Every credential's token is cached, reused and refreshed alike; switching credential
//! takes only variables; no token, key, assertion or header shows in an answer or a log line.

mod common;
/// Test-only RSA keys and self-signed certificates, generated at test time (the unit
/// tests' own module, shared).
#[allow(dead_code)]
#[path = "../src/test_keys.rs"]
mod test_keys;

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};

use base64ct::{Base64UrlUnpadded, Encoding};
use common::*;
use graph_revoke_test_host::{
    Component, Manifest, MockResponse, MockServer, RecordedCall, TestApp, TestRequest, TestResponse, MOCK_IDENTITY_HEADER,
};
use serde_json::{json, Value};

/// Everyone's test set-up: the login and Graph mocks, and a managed identity endpoint
/// (IMDS or App Service) whose tokens Graph accepts, as it accepts the identity platform's.
struct Identity {
    app: TestApp,
    login: MockServer,
    graph: MockServer,
    endpoint: MockServer,
}

/// spin.toml with `origin` added to `allowed_outbound_hosts`, as the README tells a
/// managed identity deployment to do.
fn manifest_allowing(origin: &str) -> Manifest {
    let text = Manifest::load_default().unwrap().text().to_string();
    let line = "allowed_outbound_hosts = [\"{{ login_base_url }}\", \"{{ graph_base_url }}\"]";
    assert!(text.contains(line), "spin.toml's allowed_outbound_hosts moved; update manifest_allowing()");
    Manifest::from_str(&text.replacen(line, &format!("allowed_outbound_hosts = [\"{{{{ login_base_url }}}}\", \"{{{{ graph_base_url }}}}\", \"{origin}\"]"), 1)).unwrap()
}

/// The correct variables with `changes` applied (`None` removes one).
fn with_changes(base: Vec<(String, String)>, changes: &[(&str, Option<String>)]) -> Vec<(String, String)> {
    let mut vars = base;
    for (name, value) in changes {
        vars.retain(|(n, _)| n != name);
        if let Some(value) = value {
            vars.push((name.to_string(), value.clone()));
        }
    }
    vars
}

fn start_app(manifest: &Manifest, vars: &[(String, String)]) -> TestApp {
    let borrowed: Vec<(&str, &str)> = vars.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
    TestApp::start(Component::shared().unwrap(), manifest, &borrowed).expect("app starts")
}

/// Managed identity through a mock endpoint that spin.toml (changed as the README says)
/// allows; `app_service`: the App Service form (`/msi/token` and the identity header),
/// else IMDS at the mock's origin. No client secret is set.
async fn managed_identity(app_service: bool, changes: &[(&str, Option<String>)]) -> Identity {
    let login = MockServer::start().await;
    let graph = MockServer::start_trusting(&login).await;
    let endpoint = MockServer::start_trusting(&login).await;
    let mut base = with_changes(
        variables(&login, &graph),
        &[("client_secret", None), ("credential", Some("managed_identity".into()))],
    );
    if app_service {
        base.push(("managed_identity_endpoint".into(), format!("{}/msi/token", endpoint.base_url())));
        base.push(("managed_identity_header".into(), MOCK_IDENTITY_HEADER.into()));
    } else {
        base.push(("managed_identity_endpoint".into(), endpoint.base_url()));
    }
    let app = start_app(&manifest_allowing(&endpoint.base_url()), &with_changes(base, changes));
    Identity { app, login, graph, endpoint }
}

impl Identity {
    async fn send(&self, request: TestRequest) -> TestResponse {
        let response = self.app.send(request).await.expect("the host runs the request");
        assert_no_credential_leaked(&response);
        assert!(self.app.denied_outbound().is_empty(), "{:?}", self.app.denied_outbound());
        assert!(self.app.kept_off_network().is_empty(), "{:?}", self.app.kept_off_network());
        response
    }
}

/// Nothing secret in the answer or the log line: tokens, keys, the client secret, the
/// identity header, a client assertion (a JWT: `eyJ`), a PEM.
fn assert_no_credential_leaked(response: &TestResponse) {
    assert_nothing_leaked(response);
    let mut text = format!("{}\n{}\n{}", response.text(), response.stdout, response.stderr);
    for (name, value) in &response.headers {
        text.push_str(&format!("\n{name}: {value}"));
    }
    for secret in [MOCK_IDENTITY_HEADER, "eyJ", "client_assertion=", "PRIVATE KEY", "CERTIFICATE-----"] {
        assert!(!text.contains(secret), "{secret:?} leaked: {text}");
    }
}

fn query_of(path: &str) -> Vec<(String, String)> {
    let query = path.split_once('?').map(|(_, q)| q).unwrap_or("");
    query.split('&').filter_map(|p| p.split_once('=')).map(|(n, v)| (n.to_string(), v.to_string())).collect()
}

fn encoded(url: &str) -> String {
    url.replace(':', "%3A").replace('/', "%2F")
}

// ---------------------------------------------------------------------------------------
// Managed identity

/// The token cache's keys in the app's store (the abuse brake keeps its counters there too).
fn token_keys(app: &TestApp) -> Vec<String> {
    app.kv_keys().into_iter().filter(|k| k.starts_with("graph-revoke/token/")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_imds_token_is_fetched_once_cached_and_accepted_by_graph() {
    let env = managed_identity(false, &[]).await;
    let cold = env.send(revoke("adele@contoso.com")).await;
    assert_eq!(cold.status, 200, "{}", cold.text());
    assert_eq!(log_line(&cold)["tokenFromCache"], false);

    let calls = env.endpoint.calls();
    assert_eq!(calls.len(), 1);
    let call = &calls[0];
    assert_eq!(call.method, "GET");
    assert!(call.path.starts_with("/metadata/identity/oauth2/token?"), "{}", call.path);
    assert_eq!(
        query_of(&call.path),
        [("api-version".into(), "2018-02-01".into()), ("resource".into(), encoded(&env.graph.base_url()))]
    );
    assert_eq!(call.header("metadata"), Some("true"));
    assert_eq!(call.header("x-identity-header"), None);
    assert!(call.header("client-request-id").is_some());
    assert!(call.body.is_empty());
    assert!(env.login.calls().is_empty(), "the identity platform is never asked");
    assert_eq!(env.graph.calls()[0].header("authorization"), Some("Bearer mock-access-token-mi-1"));

    let warm = env.send(revoke("alex@contoso.com")).await;
    assert_eq!((warm.status, log_line(&warm)["tokenFromCache"].clone()), (200, json!(true)));
    assert_eq!(env.endpoint.calls().len(), 1, "the cached token serves the next request");
    assert_eq!(env.graph.calls().len(), 2);
    let keys = token_keys(&env.app);
    assert_eq!(keys.len(), 1);
    assert!(keys[0].contains("/managed_identity/"), "{keys:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_assigned_identity_is_asked_for_by_its_client_id() {
    let id = "0a1b2c3d-4e5f-6071-8293-a4b5c6d7e8f9";
    for app_service in [false, true] {
        let env = managed_identity(app_service, &[("managed_identity_client_id", Some(id.to_uppercase()))]).await;
        assert_eq!(env.send(revoke("adele@contoso.com")).await.status, 200);
        let call = env.endpoint.calls().pop().unwrap();
        assert_eq!(query_of(&call.path).last().unwrap(), &("client_id".to_string(), id.to_string()), "{}", call.path);
        assert!(token_keys(&env.app)[0].contains(&format!("/managed_identity:{id}/")), "{:?}", token_keys(&env.app));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_app_service_endpoint_gets_its_header_and_api_version() {
    let env = managed_identity(true, &[]).await;
    let cold = env.send(revoke("adele@contoso.com")).await;
    assert_eq!(cold.status, 200, "{}", cold.text());
    let calls = env.endpoint.calls();
    assert_eq!(calls.len(), 1);
    assert!(calls[0].path.starts_with("/msi/token?"), "{}", calls[0].path);
    assert_eq!(
        query_of(&calls[0].path),
        [("api-version".into(), "2019-08-01".into()), ("resource".into(), encoded(&env.graph.base_url()))]
    );
    assert_eq!(calls[0].header("x-identity-header"), Some(MOCK_IDENTITY_HEADER));
    assert_eq!(calls[0].header("metadata"), None);
    // App Service states only `expires_on`: the token is cached all the same.
    let warm = env.send(revoke("alex@contoso.com")).await;
    assert_eq!((warm.status, log_line(&warm)["tokenFromCache"].clone()), (200, json!(true)));
    assert_eq!(env.endpoint.calls().len(), 1);

    // A wrong identity header: 502 naming IDENTITY_HEADER, never echoing it.
    let env = managed_identity(true, &[("managed_identity_header", Some("stale-identity-header-value".into()))]).await;
    let response = env.send(revoke("adele@contoso.com")).await;
    let message = assert_error(&response, 502, "tokenRequestFailed");
    assert!(message.contains("IDENTITY_HEADER"), "{message}");
    assert!(!response.text().contains("stale-identity-header-value") && !response.stdout.contains("stale-identity-header-value"));
    assert_eq!((env.endpoint.calls().len(), env.graph.calls().len()), (1, 0), "a refusal is not retried");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graph_401_gets_one_fresh_managed_identity_token() {
    let env = managed_identity(false, &[]).await;
    assert_eq!(env.send(revoke("adele@contoso.com")).await.status, 200);
    env.graph.expire_token("mock-access-token-mi-1");
    let response = env.send(revoke("alex@contoso.com")).await;
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(env.endpoint.calls().len(), 2);
    assert_eq!(env.graph.calls().last().unwrap().header("authorization"), Some("Bearer mock-access-token-mi-2"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn managed_identity_error_answers_map_like_the_token_endpoints() {
    const PATH: &str = "/metadata/identity/oauth2/token";
    let not_found = || MockResponse::json(400, json!({"error": "invalid_request", "error_description": "Identity not found"}));
    let resource = || {
        MockResponse::json(
            400,
            json!({"error": "invalid_resource", "error_description": "AADSTS500011: The resource principal named x was not found. Trace ID: 5ca1ab1e"}),
        )
    };
    let cases: Vec<(Vec<MockResponse>, u16, &str, Option<&str>, &str)> = vec![
        (vec![not_found()], 502, "tokenRequestFailed", None, "system-assigned managed identity"),
        (vec![resource()], 502, "tokenRequestFailed", None, "graph_base_url"),
        (vec![MockResponse::empty(500), MockResponse::empty(503)], 503, "identityPlatformUnavailable", Some("2"), "answered 503"),
        (vec![MockResponse::empty(429).header("Retry-After", "1"); 2], 503, "identityPlatformUnavailable", Some("1"), "answered 429"),
        (vec![MockResponse::text(200, "text/html", "<html>a captive portal</html>")], 502, "tokenRequestFailed", None, "without a token"),
    ];
    for (answers, status, code, retry_after, says) in cases {
        let env = managed_identity(false, &[]).await;
        let tries = answers.len();
        for answer in answers {
            env.endpoint.enqueue("GET", PATH, answer);
        }
        let response = env.send(revoke("adele@contoso.com")).await;
        let message = assert_error(&response, status, code);
        assert!(message.contains(says), "{message}");
        assert!(!message.contains("Trace ID") && !message.contains("portal"), "{message}");
        assert_eq!(response.header("retry-after"), retry_after, "{message}");
        assert_eq!(env.endpoint.calls().len(), tries, "{message}");
        assert_eq!(env.graph.calls().len(), 0, "no Graph call without a token");
        assert!(token_keys(&env.app).is_empty(), "nothing cached");
    }
    // A user-assigned identity that is not assigned: the message names the setting.
    let env = managed_identity(false, &[("managed_identity_client_id", Some("0a1b2c3d-4e5f-6071-8293-a4b5c6d7e8f9".into()))]).await;
    env.endpoint.enqueue("GET", PATH, not_found());
    let message = assert_error(&env.send(revoke("adele@contoso.com")).await, 502, "tokenRequestFailed");
    assert!(message.contains("managed_identity_client_id"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_endpoint_is_temporary_and_one_the_manifest_does_not_allow_is_named() {
    // Nothing listens on the port (allowed by the manifest): refused twice, 503 with a wait.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", listener.local_addr().unwrap())
    };
    let login = MockServer::start().await;
    let graph = MockServer::start_trusting(&login).await;
    let vars = with_changes(
        variables(&login, &graph),
        &[("client_secret", None), ("credential", Some("managed_identity".into())), ("managed_identity_endpoint", Some(closed.clone()))],
    );
    let app = start_app(&manifest_allowing(&closed), &vars);
    let response = app.send(revoke("adele@contoso.com")).await.unwrap();
    assert_no_credential_leaked(&response);
    let message = assert_error(&response, 503, "identityPlatformUnavailable");
    assert!(message.contains("could not reach the instance metadata service"), "{message}");
    assert!(response.header("retry-after").is_some());
    assert_eq!(graph.calls().len(), 0);

    // The real spin.toml with IMDS (the default endpoint): the host refuses the call, and
    // the message says where to allow it.
    let vars = with_changes(variables(&login, &graph), &[("client_secret", None), ("credential", Some("managed_identity".into()))]);
    let app = start_app(&Manifest::load_default().unwrap(), &vars);
    let response = app.send(revoke("adele@contoso.com")).await.unwrap();
    assert_no_credential_leaked(&response);
    let message = assert_error(&response, 502, "tokenRequestFailed");
    assert!(message.contains("allowed_outbound_hosts") && message.contains("http://169.254.169.254"), "{message}");
    let denied = app.denied_outbound();
    assert_eq!(denied.len(), 1, "a policy refusal is not retried: {denied:?}");
    assert!(denied[0].starts_with("http://169.254.169.254:80/metadata/identity/oauth2/token?api-version=2018-02-01&resource="), "{denied:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_manifest_allows_exactly_the_login_and_graph_hosts() {
    let text = Manifest::load_default().unwrap().text().to_string();
    let lines: Vec<&str> = text.lines().filter(|l| l.starts_with("allowed_outbound_hosts")).collect();
    assert_eq!(lines, ["allowed_outbound_hosts = [\"{{ login_base_url }}\", \"{{ graph_base_url }}\"]"]);
    let declared = Manifest::load_default().unwrap().declared_variables();
    for (name, secret) in [
        ("credential", false),
        ("client_certificate", false),
        ("client_private_key", true),
        ("managed_identity_client_id", false),
        ("managed_identity_endpoint", false),
        ("managed_identity_header", true),
    ] {
        let variable = declared.iter().find(|v| v.name == name).unwrap_or_else(|| panic!("{name} is not declared"));
        assert_eq!((variable.required, variable.secret, variable.default.as_deref()), (false, secret, Some("")), "{name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switching_credential_takes_only_variables_and_each_kind_has_its_own_cache_entry() {
    // One store shared by three deployments of the same app registration: the secret, then
    // managed identity, then the secret again.
    let secret = start().await;
    assert_eq!(secret.send(revoke("adele@contoso.com")).await.status, 200);
    assert_eq!(secret.login.calls().len(), 1);

    let endpoint = MockServer::start_trusting(&secret.login).await;
    let vars = with_changes(
        variables(&secret.login, &secret.graph),
        &[
            ("client_secret", None),
            ("credential", Some("managed_identity".into())),
            ("managed_identity_endpoint", Some(endpoint.base_url())),
        ],
    );
    let borrowed: Vec<(&str, &str)> = vars.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
    let switched = TestApp::builder(Component::shared().unwrap(), &manifest_allowing(&endpoint.base_url()))
        .variables(borrowed)
        .shared_key_value(&secret.app.key_value_backend())
        .start()
        .unwrap();
    let response = switched.send(revoke("alex@contoso.com")).await.unwrap();
    assert_no_credential_leaked(&response);
    assert_eq!((response.status, log_line(&response)["tokenFromCache"].clone()), (200, json!(false)), "{}", response.text());
    assert_eq!(endpoint.calls().len(), 1, "the secret's cached token is not reused");
    assert_eq!(secret.graph.calls().last().unwrap().header("authorization"), Some("Bearer mock-access-token-mi-1"));

    let keys = token_keys(&secret.app);
    assert_eq!(keys.len(), 2, "{keys:?}");
    assert!(keys.iter().any(|k| k.contains("/default/")) && keys.iter().any(|k| k.contains("/managed_identity/")), "{keys:?}");

    // Back to the secret: its entry is still there.
    let again = secret.send(revoke("adele@contoso.com")).await;
    assert_eq!((again.status, log_line(&again)["tokenFromCache"].clone()), (200, json!(true)));
    assert_eq!(secret.login.calls().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_warm_managed_identity_revoke_reads_which_credential_but_not_the_endpoint() {
    let env = managed_identity(true, &[]).await;
    assert_eq!(env.send(revoke("adele@contoso.com")).await.status, 200);
    let cold = env.app.config_reads();
    for name in ["credential", "managed_identity_client_id", "managed_identity_endpoint", "managed_identity_header"] {
        assert_eq!(cold.get(name), Some(&1), "{name}: {cold:?}");
    }
    assert_eq!(cold.get("client_secret"), None, "{cold:?}");
    env.app.clear_config_reads();
    assert_eq!(env.send(revoke("alex@contoso.com")).await.status, 200);
    let warm = env.app.config_reads();
    assert_eq!((warm.get("credential"), warm.get("managed_identity_client_id")), (Some(&1), Some(&1)), "{warm:?}");
    for name in ["managed_identity_endpoint", "managed_identity_header", "client_secret"] {
        assert_eq!(warm.get(name), None, "{name}: {warm:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_names_the_managed_identity_settings() {
    let env = managed_identity(true, &[("managed_identity_header", None), ("managed_identity_client_id", Some("not-a-guid".into()))]).await;
    let health = env.send(TestRequest::get("/healthz")).await;
    assert_eq!(health.status, 503);
    assert_eq!(
        health.json(),
        json!({"status": "misconfigured", "missing": ["managed_identity_header"], "invalid": ["managed_identity_client_id"]})
    );
    let env = managed_identity(false, &[("credential", Some("password".into()))]).await;
    let health = env.send(TestRequest::get("/healthz")).await;
    assert_eq!(health.json(), json!({"status": "misconfigured", "missing": [], "invalid": ["credential"]}));
    let message = assert_error(&env.send(revoke("adele@contoso.com")).await, 500, "configurationError");
    assert!(message.contains("credential must be") && !message.contains("password"), "{message}");
    assert!(env.endpoint.calls().is_empty());
}

// ---------------------------------------------------------------------------------------
// Certificate

/// What the mock token endpoint found wrong with client assertions, and the `jti`s seen.
#[derive(Default)]
struct Checks {
    failures: Mutex<Vec<String>>,
    jtis: Mutex<HashSet<String>>,
    assertions: Mutex<Vec<String>>,
}

fn now_unix() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

fn segment(text: &str) -> Option<Value> {
    serde_json::from_slice(&Base64UrlUnpadded::decode_vec(text).ok()?).ok()
}

/// Checks one token request as Entra would check a certificate credential (issue 8,
/// section 2): `Err` says what is wrong.
fn check_assertion(call: &RecordedCall, expected_alg: &str, certificate_der: &[u8], endpoint: &str, checks: &Checks) -> Result<(), String> {
    let form: BTreeMap<String, String> = form_urlencoded::parse(&call.body).into_owned().collect();
    let expect = |field: &str, value: &str| match form.get(field) {
        Some(v) if v == value => Ok(()),
        other => Err(format!("{field} is {other:?}, not {value:?}")),
    };
    expect("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer")?;
    expect("client_id", CLIENT_ID)?;
    expect("grant_type", "client_credentials")?;
    if form.contains_key("client_secret") {
        return Err("a client_secret was sent too".into());
    }
    let assertion = form.get("client_assertion").ok_or("no client_assertion")?;
    checks.assertions.lock().unwrap().push(assertion.clone());
    let parts: Vec<&str> = assertion.split('.').collect();
    let [header, claims, signature] = parts[..] else { return Err(format!("{} segments", parts.len())) };
    let header = segment(header).ok_or("the header is not base64url JSON")?;
    let thumbprint = Base64UrlUnpadded::encode_string(&<sha2_test::Sha256 as sha2_test::Digest>::digest(certificate_der));
    if header != json!({"alg": expected_alg, "typ": "JWT", "x5t#S256": thumbprint}) {
        return Err(format!("header {header}"));
    }
    let claims = segment(claims).ok_or("the claims are not base64url JSON")?;
    let number = |name: &str| claims[name].as_u64().ok_or(format!("{name} is not a number: {claims}"));
    let (nbf, iat, exp) = (number("nbf")?, number("iat")?, number("exp")?);
    let now = now_unix();
    if claims["aud"] != endpoint || claims["iss"] != CLIENT_ID || claims["sub"] != CLIENT_ID {
        return Err(format!("aud/iss/sub: {claims}"));
    }
    if nbf != iat || iat.abs_diff(now) > 60 || exp <= iat || exp - iat > 600 {
        return Err(format!("times (now {now}): {claims}"));
    }
    let jti = claims["jti"].as_str().ok_or("no jti")?;
    if jti.len() < 16 || !checks.jtis.lock().unwrap().insert(jti.to_string()) {
        return Err(format!("jti {jti:?} reused or too short"));
    }
    if claims.as_object().map(|o| o.len()) != Some(7) {
        return Err(format!("claims beyond the seven: {claims}"));
    }
    let signature = Base64UrlUnpadded::decode_vec(signature).map_err(|_| "the signature is not base64url")?;
    let key = test_keys::certificate_public_key(certificate_der);
    let input = assertion.rsplit_once('.').unwrap().0.as_bytes();
    let verified = match expected_alg {
        "PS256" => key.pss_verify::<sha2_test::Sha256>(input, &signature),
        _ => key.pkcs1v15_verify::<sha2_test::Sha256>(input, &signature),
    };
    verified.map_err(|_| "the signature does not verify with the certificate's key".to_string())
}

/// Entra's refusal of a bad assertion.
fn aadsts(code: u32) -> MockResponse {
    MockResponse::json(
        401,
        json!({"error": "invalid_client", "error_description": format!("AADSTS{code}: refused. Trace ID: 0ddba11"), "error_codes": [code]}),
    )
}

/// An app with the certificate credential: `credential` as given (None: left empty, the
/// default with a key), the secret removed; the login mock checks every assertion.
async fn certificate_app(credential: Option<&str>, expected_alg: &'static str) -> (Env, Arc<Checks>, String) {
    let (pem, der) = test_keys::certificate(test_keys::signer());
    let key = test_keys::private_key_pem(test_keys::signer());
    let env = start_with(&[
        ("client_secret", None),
        ("credential", credential),
        ("client_certificate", Some(pem.as_str())),
        ("client_private_key", Some(key.as_str())),
    ])
    .await;
    let checks = Arc::new(Checks::default());
    let endpoint = format!("{}/{TENANT}/oauth2/v2.0/token", env.login.base_url());
    let seen = checks.clone();
    env.login.check_token_requests(move |call| match check_assertion(call, expected_alg, &der, &endpoint, &seen) {
        Ok(()) => None,
        Err(why) => {
            seen.failures.lock().unwrap().push(why);
            Some(aadsts(700027))
        }
    });
    (env, checks, key)
}

/// No PEM line of the key, and no assertion, in the answer or the log line.
fn assert_no_key_or_assertion(response: &TestResponse, key_pem: &str, checks: &Checks) {
    assert_no_credential_leaked(response);
    let text = format!("{}\n{}\n{}", response.text(), response.stdout, response.stderr);
    for line in key_pem.lines().filter(|l| !l.starts_with("-----")) {
        assert!(!text.contains(line), "a line of the private key leaked: {text}");
    }
    for assertion in checks.assertions.lock().unwrap().iter() {
        for part in assertion.split('.') {
            assert!(!text.contains(part), "a part of a client assertion leaked: {text}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ps256_client_assertion_is_what_entra_expects_and_is_signed_afresh_for_every_token() {
    // credential left empty: a private key makes the certificate the default (PS256).
    let (env, checks, key) = certificate_app(None, "PS256").await;
    let cold = env.send(revoke("adele@contoso.com")).await;
    assert_eq!(cold.status, 200, "{} {:?}", cold.text(), checks.failures.lock().unwrap());
    assert_no_key_or_assertion(&cold, &key, &checks);
    let warm = env.send(revoke("alex@contoso.com")).await;
    assert_eq!((warm.status, log_line(&warm)["tokenFromCache"].clone()), (200, json!(true)));
    assert_eq!(env.login.calls().len(), 1, "the token is cached like any other");
    // Graph refuses the token: a new one, with a new assertion.
    env.graph.expire_token("mock-access-token-1");
    let refreshed = env.send(revoke("alex@contoso.com")).await;
    assert_eq!(refreshed.status, 200, "{}", refreshed.text());
    assert_no_key_or_assertion(&refreshed, &key, &checks);
    assert_eq!(env.login.calls().len(), 2);
    assert!(checks.failures.lock().unwrap().is_empty(), "{:?}", checks.failures.lock().unwrap());
    assert_eq!(checks.jtis.lock().unwrap().len(), 2, "two assertions, two jtis");
    assert!(token_keys(&env.app)[0].contains("/default/"), "{:?}", token_keys(&env.app));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_rs256_signs_rs256_and_certificate_ps256() {
    for (credential, alg) in [("certificate_rs256", "RS256"), ("certificate", "PS256")] {
        let (env, checks, key) = certificate_app(Some(credential), alg).await;
        let response = env.send(revoke("adele@contoso.com")).await;
        assert_eq!(response.status, 200, "{credential}: {} {:?}", response.text(), checks.failures.lock().unwrap());
        assert_no_key_or_assertion(&response, &key, &checks);
        assert!(checks.failures.lock().unwrap().is_empty(), "{:?}", checks.failures.lock().unwrap());
        assert!(token_keys(&env.app)[0].contains("/certificate/"), "{:?}", token_keys(&env.app));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mock_refuses_an_assertion_it_cannot_verify() {
    // The check is real: an app told to sign RS256 fails a mock that expects PS256.
    let (env, checks, _) = certificate_app(Some("certificate_rs256"), "PS256").await;
    let message = assert_error(&env.send(revoke("adele@contoso.com")).await, 502, "tokenRequestFailed");
    assert!(message.contains("AADSTS700027"), "{message}");
    assert_eq!(checks.failures.lock().unwrap().len(), 1, "{:?}", checks.failures.lock().unwrap());
    assert!(checks.failures.lock().unwrap()[0].contains("header"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signature_and_time_range_refusals_name_their_fix() {
    for (code, fix) in [(700027, "upload the certificate in client_certificate"), (700024, "clock")] {
        let (env, checks, key) = certificate_app(Some("certificate"), "PS256").await;
        env.login.enqueue("POST", &format!("/{TENANT}/oauth2/v2.0/token"), aadsts(code));
        let response = env.send(revoke("adele@contoso.com")).await;
        let message = assert_error(&response, 502, "tokenRequestFailed");
        assert!(message.contains(&format!("AADSTS{code}")) && message.contains(fix), "{message}");
        assert!(!message.contains("Trace ID"), "{message}");
        let form: BTreeMap<String, String> = form_urlencoded::parse(&env.login.calls()[0].body).into_owned().collect();
        checks.assertions.lock().unwrap().push(form["client_assertion"].clone());
        assert_no_key_or_assertion(&response, &key, &checks);
        assert_eq!((env.login.calls().len(), env.graph.calls().len()), (1, 0), "a refusal is not retried");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_that_is_not_the_keys_is_named_and_nothing_is_sent() {
    let (pem, _) = test_keys::certificate(test_keys::other());
    let key = test_keys::private_key_pem(test_keys::signer());
    let env = start_with(&[("client_secret", None), ("client_certificate", Some(pem.as_str())), ("client_private_key", Some(key.as_str()))]).await;
    let health = env.send(TestRequest::get("/healthz")).await;
    assert_eq!(health.json(), json!({"status": "misconfigured", "missing": [], "invalid": ["client_certificate"]}));
    let response = env.send(revoke("adele@contoso.com")).await;
    let message = assert_error(&response, 500, "configurationError");
    assert!(message.contains("client_certificate does not belong to client_private_key"), "{message}");
    assert_eq!(env.outbound_calls(), 0);
    // Only the certificate: the key is missing.
    let env = start_with(&[("client_secret", None), ("credential", Some("certificate")), ("client_certificate", Some(pem.as_str()))]).await;
    let health = env.send(TestRequest::get("/healthz")).await;
    assert_eq!(health.json(), json!({"status": "misconfigured", "missing": ["client_private_key"]}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_certificate_is_named_by_healthz_and_nothing_is_sent() {
    let (pem, _) = test_keys::expired_certificate(test_keys::signer());
    let key = test_keys::private_key_pem(test_keys::signer());
    let env = start_with(&[("client_secret", None), ("client_certificate", Some(pem.as_str())), ("client_private_key", Some(key.as_str()))]).await;
    let health = env.send(TestRequest::get("/healthz")).await;
    assert_eq!((health.status, health.json()), (503, json!({"status": "misconfigured", "missing": [], "invalid": ["client_certificate"]})));
    let response = env.send(revoke("adele@contoso.com")).await;
    let message = assert_error(&response, 500, "configurationError");
    assert!(message.contains("client_certificate expired") && message.contains("upload it to the app registration"), "{message}");
    assert_no_key_or_assertion(&response, &key, &Checks::default());
    assert_eq!(env.outbound_calls(), 0, "no assertion is signed with an expired certificate");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_warm_certificate_revoke_never_reads_the_key_or_the_certificate() {
    let (env, _checks, _) = certificate_app(Some("certificate"), "PS256").await;
    assert_eq!(env.send(revoke("adele@contoso.com")).await.status, 200);
    let cold = env.app.config_reads();
    assert_eq!((cold.get("client_private_key"), cold.get("client_certificate")), (Some(&1), Some(&1)), "{cold:?}");
    assert_eq!(cold.get("client_secret"), None);
    env.app.clear_config_reads();
    assert_eq!(env.send(revoke("alex@contoso.com")).await.status, 200);
    let warm = env.app.config_reads();
    assert_eq!(warm.get("credential"), Some(&1));
    for name in ["client_private_key", "client_certificate", "client_secret"] {
        assert_eq!(warm.get(name), None, "{name}: {warm:?}");
    }
}
