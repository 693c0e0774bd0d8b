//! The token session of one request: the cached Graph token, else a fresh one, and at
//! most one refresh when Graph refuses it.
//!
//! Which credential (`credential`, see [`CredentialChoice`]) is read first: it names the
//! cache entry. The credential itself (`client_secret`, the certificate and key, the
//! managed identity endpoint) is read only when a token must be fetched, and then once
//! per request: a warm request never reads it, so a warm revoke works even while the
//! secret is unreadable (`/healthz` still reports it), and a vault holding it is asked
//! only when a token is due. Every credential's answer becomes the same [`AccessToken`]:
//! cached, renewed and refreshed alike.
//!
//! [`AccessToken`]: crate::identity::token::AccessToken

use std::cell::Cell;
use std::time::Duration;

use crate::identity::client_assertion;
use crate::error::Error;
use crate::graph;
use crate::transport::outbound::{OutboundRequest, OutboundResponse};
use crate::transport::pipeline::{self, Budget, Failure};
use crate::platform::seam::Host;
use crate::settings::secret::Secret;
use crate::settings::{Credential, CredentialChoice, GraphSettings};
use crate::identity::token;
use crate::identity::token_cache;
use crate::reply::trace::Trace;

/// A token for this request, and how to renew it.
pub struct Session<'a, H: Host> {
    host: &'a H,
    settings: &'a GraphSettings,
    /// Which credential: read when the session opens; it names the cache entry.
    choice: CredentialChoice,
    /// Read on the first token fetch, kept for a refresh.
    credential: Option<Credential>,
    /// Where this request's token lives in the key-value store.
    cache_key: String,
    pub budget: Budget,
    pub token: Secret,
    /// The one refresh this request may make has been tried (successful or not).
    refresh_tried: bool,
}

impl<'a, H: Host> Session<'a, H> {
    /// The cached token, else a fresh one.
    pub async fn open(host: &'a H, settings: &'a GraphSettings, trace: &mut Trace) -> Result<Session<'a, H>, Error> {
        let budget = Budget::since(trace.started, Duration::from_millis(settings.time_budget_ms));
        let choice = CredentialChoice::load(&|name| host.variable(name)).map_err(configuration)?;
        let cache_key = token_cache::key(settings, &choice.cache_tag());
        let mut session = Session {
            host,
            settings,
            choice,
            credential: None,
            cache_key,
            budget,
            token: Secret::new(""),
            refresh_tried: false,
        };
        let cached = host.kv_get(&session.cache_key).and_then(|bytes| token_cache::decode(&bytes, host.unix_now()));
        session.token = match cached {
            Some(token) => {
                trace.token_from_cache = true;
                token
            }
            None => session.fresh_token(trace).await?,
        };
        Ok(session)
    }

    /// Whether a Graph 401 may still be answered with a fresh token.
    pub fn may_refresh(&self) -> bool {
        !self.refresh_tried
    }

    /// Forgets the token (Graph refused it) and gets a fresh one; once per request.
    pub async fn refresh(&mut self, trace: &mut Trace) -> Result<(), Error> {
        self.refresh_tried = true;
        self.host.kv_delete(&self.cache_key);
        self.token = self.fresh_token(trace).await?;
        trace.token_from_cache = false;
        Ok(())
    }

    /// Sends a request built for the current token; a 401 gets one more try with a
    /// fresh token. Notes Graph's request-id.
    pub async fn call(&mut self, build: &dyn Fn(&Secret, &str) -> OutboundRequest, trace: &mut Trace) -> Result<OutboundResponse, Error> {
        loop {
            let request = build(&self.token, &trace.correlation.client_request_id);
            let calls = Cell::new(0);
            let answer = pipeline::send(self.host, &request, &graph::RETRY_POLICY, &self.budget, &calls).await;
            trace.outbound_calls += calls.get();
            let answer = answer.map_err(|failure| {
                if let Failure::Exhausted { last, .. } = &failure {
                    trace.correlation.graph_request_id = graph::request_id(last);
                }
                graph::gave_up(failure, self.settings.time_budget_ms)
            })?;
            trace.correlation.graph_request_id = graph::request_id(&answer);
            if answer.status == 401 && self.may_refresh() {
                self.refresh(trace).await?;
                continue;
            }
            return Ok(answer);
        }
    }

    /// A new token from the identity platform (or the managed identity endpoint), stored
    /// for the next requests.
    async fn fresh_token(&mut self, trace: &mut Trace) -> Result<Secret, Error> {
        if self.credential.is_none() {
            let host = self.host;
            self.credential = Some(Credential::load(&|name| host.variable(name), &self.choice).map_err(configuration)?);
        }
        let credential = self.credential.as_ref().expect("read above");
        let client_request_id = &trace.correlation.client_request_id;
        let (request, policy) = match credential {
            Credential::ClientSecret(secret) => (
                token::token_request(self.settings, &[("client_secret", secret.expose())], client_request_id),
                &token::RETRY_POLICY,
            ),
            Credential::Certificate { certificate, alg } => {
                // Signed now, for this request's token endpoint: a fresh `jti`, PSS salt and
                // blinding from the host's CSPRNG. An expired certificate stops here.
                let endpoint = client_assertion::token_endpoint(&self.settings.login_base_url, &self.settings.tenant);
                let host = self.host;
                let assertion = certificate
                    .assertion(*alg, self.settings.client_id, &endpoint, host.unix_now(), &mut |buffer| host.random_bytes(buffer))
                    .map_err(Error::Configuration)?;
                let request = token::token_request(self.settings, &client_assertion::credential_fields(&assertion), client_request_id);
                (request, &token::RETRY_POLICY)
            }
            Credential::ManagedIdentity(identity) => {
                let mut request = identity.token_request(&self.settings.graph_base_url);
                request.headers.push(("client-request-id", client_request_id.clone()));
                (request, identity.retry_policy())
            }
        };
        let calls = Cell::new(0);
        let answer = pipeline::send(self.host, &request, policy, &self.budget, &calls).await;
        trace.outbound_calls += calls.get();
        let budget_ms = self.settings.time_budget_ms;
        let token = match credential {
            Credential::ManagedIdentity(identity) => {
                let answer = answer.map_err(|failure| identity.gave_up(failure, budget_ms))?;
                identity.read_token_response(&answer, self.host.unix_now())?
            }
            _ => token::read_token_response(&answer.map_err(|failure| token::gave_up(failure, budget_ms))?)?,
        };
        if let Some(entry) = token_cache::encode(&token.value, token.expires_in, self.host.unix_now()) {
            self.host.kv_set(&self.cache_key, &entry);
        }
        Ok(token.value)
    }
}

/// The 500 for settings that stop a token from being fetched (named, never their values).
fn configuration(problems: crate::settings::Problems) -> Error {
    Error::Configuration(problems.describe())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::platform::fake_host::{FakeHost, Reply};
    use serde_json::json;

    fn graph_settings(host: &FakeHost) -> GraphSettings {
        GraphSettings::load(&|name| host.variable(name)).unwrap()
    }

    fn secret_reads(host: &FakeHost) -> usize {
        host.reads().iter().filter(|n| *n == "client_secret").count()
    }

    fn expired() -> Reply {
        Reply::json(401, json!({"error": {"code": "InvalidAuthenticationToken", "message": "x"}}))
    }

    fn revoke(token: &Secret, id: &str) -> OutboundRequest {
        let user = crate::inbound::user_id::UserId::parse("a@contoso.com").unwrap();
        graph::revoke_request(crate::platform::fake_host::GRAPH, &user, token, id)
    }

    #[test]
    fn a_cached_token_reads_no_credential_and_a_fresh_one_is_stored() {
        let host = FakeHost::new();
        let settings = graph_settings(&host);
        let mut trace = Trace::default();
        let session = host.run(Session::open(&host, &settings, &mut trace)).unwrap();
        assert_eq!((session.token.expose(), trace.token_from_cache, secret_reads(&host)), ("token-1", false, 1));
        drop(session);
        let mut trace = Trace::default();
        let session = host.run(Session::open(&host, &settings, &mut trace)).unwrap();
        assert_eq!((session.token.expose(), trace.token_from_cache, secret_reads(&host)), ("token-1", true, 1));
        assert_eq!(host.token_requests(), 1);
    }

    #[test]
    fn a_refresh_reads_the_credential_at_most_once_per_request() {
        // Cold, then a 401: the credential read for the first token serves the refresh.
        // A revoke that Graph first answers 401 (the token expired early).
        fn revoke_after_a_401(host: &FakeHost) -> Trace {
            host.enqueue("POST", "/revokeSignInSessions", expired());
            let settings = graph_settings(host);
            let mut trace = Trace::default();
            let answer = host.run(async {
                let mut session = Session::open(host, &settings, &mut trace).await?;
                session.call(&revoke, &mut trace).await
            });
            assert_eq!(answer.unwrap().status, 200);
            trace
        }
        let host = FakeHost::new();
        revoke_after_a_401(&host);
        assert_eq!((host.token_requests(), secret_reads(&host)), (2, 1));

        // Warm, then a 401: read once, for the refresh.
        let host = FakeHost::new();
        host.plant_token("warm");
        let trace = revoke_after_a_401(&host);
        assert_eq!((host.token_requests(), secret_reads(&host), trace.token_from_cache), (1, 1, false));
    }

    #[test]
    fn a_token_fetch_without_a_credential_is_a_configuration_error_and_sends_nothing() {
        let host = FakeHost::new();
        host.set_var("client_secret", Some("  "));
        let settings = graph_settings(&host);
        let error = host.run(Session::open(&host, &settings, &mut Trace::default())).err().unwrap();
        assert_eq!(error.code(), "configurationError");
        assert!(error.to_string().contains("client_secret"));
        assert!(host.sent().is_empty());
    }

    fn managed_identity(host: &FakeHost, endpoint: Option<&str>) {
        host.set_var("credential", Some("managed_identity"));
        host.set_var("client_secret", None);
        if let Some(endpoint) = endpoint {
            host.set_var("managed_identity_endpoint", Some(endpoint));
            host.set_var("managed_identity_header", Some("unit-test-identity-header"));
        }
    }

    fn open(host: &FakeHost) -> Result<(Secret, Trace), Error> {
        let settings = graph_settings(host);
        let mut trace = Trace::default();
        let session = host.run(Session::open(host, &settings, &mut trace))?;
        Ok((session.token, trace))
    }

    #[test]
    fn a_managed_identity_token_is_fetched_cached_and_refreshed_like_any_other() {
        let host = FakeHost::new();
        managed_identity(&host, None);
        let (token, trace) = open(&host).unwrap();
        assert_eq!((token.expose(), trace.token_from_cache, trace.outbound_calls), ("mi-token-1", false, 1));
        let sent = host.sent();
        assert!(sent[0].is_identity_request() && sent[0].url.starts_with("http://169.254.169.254/metadata/identity/oauth2/token?"));
        assert_eq!((sent[0].method, sent[0].header("metadata")), ("GET", Some("true")));
        assert_eq!(sent[0].header("client-request-id"), Some(""));
        assert!(!host.reads().iter().any(|n| n == "client_secret"), "{:?}", host.reads());
        // Cached: the next request makes no identity request and reads no endpoint.
        host.clear_reads();
        let (token, trace) = open(&host).unwrap();
        assert_eq!((token.expose(), trace.token_from_cache, host.sent().len()), ("mi-token-1", true, 1));
        assert!(!host.reads().iter().any(|n| n.starts_with("managed_identity_endpoint")), "{:?}", host.reads());
        // A Graph 401 gets one fresh token from the identity endpoint.
        host.enqueue("POST", "/revokeSignInSessions", expired());
        let settings = graph_settings(&host);
        let mut trace = Trace::default();
        let answer = host.run(async {
            let mut session = Session::open(&host, &settings, &mut trace).await?;
            session.call(&revoke, &mut trace).await
        });
        assert_eq!(answer.unwrap().status, 200);
        assert_eq!(host.sent().iter().filter(|s| s.is_identity_request()).count(), 2);
        assert_eq!(host.token_requests(), 0, "the login endpoint is never asked");
    }

    #[test]
    fn the_app_service_endpoint_gets_its_header_and_a_switch_of_credential_misses_the_cache() {
        let host = FakeHost::new();
        let (token, _) = open(&host).unwrap();
        assert_eq!(token.expose(), "token-1");
        managed_identity(&host, Some("http://localhost:42356/msi/token"));
        let (token, trace) = open(&host).unwrap();
        assert_eq!((token.expose(), trace.token_from_cache), ("mi-token-2", false), "the secret's token is not reused");
        let request = host.sent().pop().unwrap();
        assert!(request.url.starts_with("http://localhost:42356/msi/token?api-version=2019-08-01&resource="), "{}", request.url);
        assert_eq!(request.header("x-identity-header"), Some("unit-test-identity-header"));
        // Another (user-assigned) identity: another entry.
        host.set_var("managed_identity_client_id", Some("0a1b2c3d-4e5f-6071-8293-a4b5c6d7e8f9"));
        let (token, _) = open(&host).unwrap();
        assert_eq!(token.expose(), "mi-token-3");
        assert!(host.sent().pop().unwrap().url.ends_with("&client_id=0a1b2c3d-4e5f-6071-8293-a4b5c6d7e8f9"));
        // And back: the secret's token is still cached.
        host.set_var("credential", None);
        host.set_var("client_secret", Some("unit-test-client-secret"));
        let (token, trace) = open(&host).unwrap();
        assert_eq!((token.expose(), trace.token_from_cache), ("token-1", true));
    }

    #[test]
    fn managed_identity_trouble_maps_like_the_token_endpoints() {
        let identity_not_found = Reply::json(400, json!({"error": "invalid_request", "error_description": "Identity not found"}));
        let cases: Vec<(Vec<Reply>, u16, &str, Option<u64>, &str)> = vec![
            (vec![identity_not_found], 502, "tokenRequestFailed", None, "system-assigned"),
            (vec![Reply::status(503), Reply::status(500)], 503, "identityPlatformUnavailable", Some(2), "instance metadata service answered 500"),
            (vec![Reply::status(429).header("Retry-After", "7"); 2], 503, "identityPlatformUnavailable", Some(7), "answered 429"),
            (vec![Reply::status(404), Reply::status(410)], 503, "identityPlatformUnavailable", Some(2), "answered 410"),
            (vec![Reply::Unreachable { temporary: true }; 2], 503, "identityPlatformUnavailable", Some(2), "runs on Azure with a managed identity"),
            (vec![Reply::Unreachable { temporary: false }], 502, "tokenRequestFailed", None, "allowed_outbound_hosts"),
            (vec![Reply::json(200, json!({"access_token": ""}))], 502, "tokenRequestFailed", None, "without a token"),
        ];
        for (answers, status, code, retry_after, says) in cases {
            let host = FakeHost::new();
            managed_identity(&host, None);
            let tries = answers.len();
            for answer in answers {
                host.enqueue("GET", "/metadata/identity/oauth2/token", answer);
            }
            let error = open(&host).err().unwrap();
            assert_eq!((error.status(), error.code(), error.retry_after()), (status, code, retry_after), "{error}");
            assert!(error.to_string().contains(says), "{error}");
            assert_eq!(host.sent().len(), tries);
            let key = token_cache::key(&graph_settings(&host), "managed_identity");
            assert_eq!(host.kv_get(&key), None, "nothing cached");
        }
    }

    fn certificate(host: &FakeHost, credential: &str) -> Vec<u8> {
        let (pem, der) = crate::test_keys::certificate(crate::test_keys::signer());
        host.set_var("credential", Some(credential));
        host.set_var("client_secret", None);
        host.set_var("client_certificate", Some(&pem));
        host.set_var("client_private_key", Some(&crate::test_keys::private_key_pem(crate::test_keys::signer())));
        der
    }

    fn form(body: &[u8]) -> std::collections::BTreeMap<String, String> {
        form_urlencoded::parse(body).into_owned().collect()
    }

    #[test]
    fn a_certificate_signs_a_fresh_assertion_for_every_token_request() {
        use base64ct::{Base64UrlUnpadded, Encoding};
        let host = FakeHost::new();
        let der = certificate(&host, "certificate");
        let public_key = crate::test_keys::certificate_public_key(&der);
        let settings = graph_settings(&host);
        let mut trace = Trace::default();
        let answer = host.run(async {
            let mut session = Session::open(&host, &settings, &mut trace).await?;
            host.enqueue("POST", "/revokeSignInSessions", expired());
            session.call(&revoke, &mut trace).await
        });
        assert_eq!(answer.unwrap().status, 200, "a 401 refresh signs again");
        let requests: Vec<_> = host.sent().into_iter().filter(|s| s.is_token_request()).collect();
        assert_eq!(requests.len(), 2);
        let mut jtis = Vec::new();
        for request in &requests {
            let form = form(&request.body);
            assert_eq!(form["client_assertion_type"], "urn:ietf:params:oauth:client-assertion-type:jwt-bearer");
            assert!(!form.contains_key("client_secret"));
            let assertion = &form["client_assertion"];
            let (input, signature) = assertion.rsplit_once('.').unwrap();
            let signature = Base64UrlUnpadded::decode_vec(signature).unwrap();
            assert!(public_key.pss_verify::<sha2_test::Sha256>(input.as_bytes(), &signature).is_ok());
            let claims: serde_json::Value =
                serde_json::from_slice(&Base64UrlUnpadded::decode_vec(input.split('.').nth(1).unwrap()).unwrap()).unwrap();
            assert_eq!(claims["aud"], request.url);
            assert_eq!(claims["nbf"], host.unix_now());
            jtis.push(claims["jti"].clone());
        }
        assert_ne!(jtis[0], jtis[1]);
        assert_eq!(host.reads().iter().filter(|n| *n == "client_private_key").count(), 1, "read once per request");
    }

    #[test]
    fn an_expired_certificate_is_a_configuration_error_and_sends_nothing() {
        let host = FakeHost::new();
        certificate(&host, "certificate_rs256");
        let key = crate::settings::secret::Secret::new(host.variable("client_private_key").unwrap().unwrap());
        let not_after = crate::identity::client_assertion::CertificateCredential::parse(&host.variable("client_certificate").unwrap().unwrap(), &key)
            .unwrap()
            .not_after();
        host.run(host.sleep(std::time::Duration::from_secs(not_after.saturating_sub(host.unix_now()))));
        let error = open(&host).err().unwrap();
        assert_eq!(error.code(), "configurationError");
        assert!(error.to_string().contains("client_certificate expired"), "{error}");
        assert!(host.sent().is_empty());
    }
}
