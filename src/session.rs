//! The token session of one request: the cached Graph token, else a fresh one, and at
//! most one refresh when Graph refuses it.
//!
//! The app credential (`client_secret`) is read only when a token must be fetched, and
//! then once per request: a warm request never reads it, so a warm revoke works even
//! while the secret is unreadable (`/healthz` still reports it), and a vault holding it
//! is asked only when a token is due.

use std::cell::Cell;
use std::time::Duration;

use crate::error::Error;
use crate::graph;
use crate::outbound::{OutboundRequest, OutboundResponse};
use crate::pipeline::{self, Budget, Failure};
use crate::seam::Host;
use crate::secret::Secret;
use crate::settings::{Credential, GraphSettings};
use crate::token;
use crate::token_cache;
use crate::trace::Trace;

/// A token for this request, and how to renew it.
pub struct Session<'a, H: Host> {
    host: &'a H,
    settings: &'a GraphSettings,
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
        let cache_key = token_cache::key(settings);
        let mut session = Session {
            host,
            settings,
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

    /// A new token from the identity platform, stored for the next requests.
    async fn fresh_token(&mut self, trace: &mut Trace) -> Result<Secret, Error> {
        let credential = match self.credential.take() {
            Some(credential) => credential,
            None => Credential::load(&|name| self.host.variable(name))
                .map_err(|problems| Error::Configuration(problems.describe()))?,
        };
        let request = token::token_request(self.settings, &credential, &trace.correlation.client_request_id);
        self.credential = Some(credential);
        let calls = Cell::new(0);
        let answer = pipeline::send(self.host, &request, &token::RETRY_POLICY, &self.budget, &calls).await;
        trace.outbound_calls += calls.get();
        let answer = answer.map_err(|failure| token::gave_up(failure, self.settings.time_budget_ms))?;
        let token = token::read_token_response(&answer)?;
        if let Some(entry) = token_cache::encode(&token.value, token.expires_in, self.host.unix_now()) {
            self.host.kv_set(&self.cache_key, &entry);
        }
        Ok(token.value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake_host::{FakeHost, Reply};
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
        let user = crate::user_id::UserId::parse("a@contoso.com").unwrap();
        graph::revoke_request(crate::fake_host::GRAPH, &user, token, id)
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
        let host = FakeHost::new();
        host.enqueue("POST", "/revokeSignInSessions", expired());
        let settings = graph_settings(&host);
        let mut trace = Trace::default();
        let answer = host.run(async {
            let mut session = Session::open(&host, &settings, &mut trace).await?;
            session.call(&revoke, &mut trace).await
        });
        assert_eq!(answer.unwrap().status, 200);
        assert_eq!((host.token_requests(), secret_reads(&host)), (2, 1));

        // Warm, then a 401: read once, for the refresh.
        let host = FakeHost::new();
        host.plant_token("warm");
        host.enqueue("POST", "/revokeSignInSessions", expired());
        let settings = graph_settings(&host);
        let mut trace = Trace::default();
        let answer = host.run(async {
            let mut session = Session::open(&host, &settings, &mut trace).await?;
            session.call(&revoke, &mut trace).await
        });
        assert_eq!(answer.unwrap().status, 200);
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
}
