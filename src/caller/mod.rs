//! The caller check: which credential the request presents, the settings that credential
//! needs (read lazily), and whether it is accepted (SPEC.md, "Caller authentication").
//!
//! A request presents an API key (`x-api-key`), an Entra ID access token
//! (`Authorization: Bearer`), or nothing usable. What is read, by what is presented:
//! - `x-api-key`: `api_keys`; only if that is empty, `caller_audience` (401 or 500?).
//! - `Authorization` (and no `x-api-key`): `caller_audience` and, when it is set, the rest
//!   of the token policy ([`CallerSettings::tokens`]); only if it is empty, `api_keys`.
//! - nothing, a bearer token next to an API key (which one counts must not be a guess),
//!   or two `Authorization` headers: `api_keys`; only if empty, `caller_audience`.
//!
//! With neither configured the answer is 500 `configurationError` whatever was presented
//! (fail closed); else a refused caller gets 401 with the challenge of an enabled
//! credential, or 403 `forbidden` when a token authenticates but a rule refuses it. An
//! `Authorization` header of another scheme next to `x-api-key` (a gateway's own) is
//! ignored: it is no credential of ours.
//!
//! # Tokens and the JWKS cache
//! The token is checked first against no keys at all ([`caller_token::verify`] reads the
//! header and the claims before it looks for the key), so a token that fails anything but
//! its signature never costs an outbound call. Only one whose claims pass and whose `kid`
//! the cached keys lack may fetch the JWKS, within the limits of [`crate::caller::jwks`]: on a
//! missing or day-old cache entry; for an unknown `kid` at most once per 5 minutes per
//! tenant. The JWKS fetch is the only outbound call made before the caller is known.
//!
//! Trouble at the JWKS endpoint (an error status, no answer within [`JWKS_TIMEOUT`], an
//! answer that is no JWKS) with no usable keys cached: 503 `identityPlatformUnavailable`
//! with `Retry-After` until the next fetch may be tried. With fresh keys cached, a failed
//! refetch for an unknown `kid` leaves that `kid` unknown: 401.

pub(crate) mod caller_auth;
pub(crate) mod caller_token;
pub(crate) mod jwks;
pub(crate) mod brake;

use crate::caller::caller_auth::{authenticate, API_KEY_HEADER};
use crate::caller::caller_token::{Caller, CallerPolicy, Rejection, Verdict};
use crate::error::Error;
use crate::inbound::incoming::Incoming;
use crate::caller::jwks::{Entry, Jwks, Plan};
use crate::platform::seam::Host;
use crate::settings::{no_caller_credential, CallerSettings, Lookup, Problems};
use crate::reply::trace::Trace;
use std::time::Duration;

/// The most one JWKS fetch may take. Entra answers in well under a second; the fetch
/// happens about once a day per tenant (or for a new `kid`), and its time counts against
/// `time_budget_ms` like any other: a request that spent it has that much less for Graph.
pub const JWKS_TIMEOUT: Duration = Duration::from_secs(5);

/// Authenticates the caller; on success names it in `trace.caller` (`apiKey:<slot>` or
/// `oid:<object id>`) and, for a token, `trace.caller_app` (`appid`/`azp`).
pub async fn identify(host: &impl Host, incoming: &Incoming, lookup: Lookup<'_>, trace: &mut Trace) -> Result<(), Error> {
    let keys = incoming.header_values(API_KEY_HEADER);
    let authorization = incoming.header_values("authorization");
    let bearer = authorization.iter().any(|value| is_bearer(value));
    match (keys.is_empty(), authorization.as_slice()) {
        (false, _) if !bearer => {
            let Some(configured) = CallerSettings::api_keys(lookup).map_err(configuration)? else {
                return refuse_without_api_keys(lookup, "API keys are not accepted here; send an Entra ID access token as Authorization: Bearer.");
            };
            let slot = authenticate(&keys, &configured)?;
            trace.caller = Some(format!("apiKey:{}", slot.0));
            Ok(())
        }
        (true, [header]) => {
            let Some(policy) = CallerSettings::tokens(lookup).map_err(configuration)? else {
                return match CallerSettings::api_keys(lookup).map_err(configuration)? {
                    Some(_) => Err(Error::Unauthenticated(
                        "Entra ID access tokens are not accepted here (caller_audience is not set); send the API key in \
                         the x-api-key header."
                            .into(),
                    )),
                    None => Err(Error::Configuration(no_caller_credential())),
                };
            };
            let caller = check_token(host, header, &policy, trace).await?;
            trace.caller = Some(match (caller.object_id, caller.app_id) {
                (Some(oid), _) => format!("oid:{oid}"),
                (None, Some(app)) => format!("appid:{app}"),
                (None, None) => "token".into(),
            });
            trace.caller_app = caller.app_id.map(|app| app.to_string());
            Ok(())
        }
        _ => {
            let message = match (keys.is_empty(), authorization.len()) {
                (true, 0) => "Send a caller credential: the API key in the x-api-key header, or an Entra ID access token \
                              as Authorization: Bearer where caller_audience is set.",
                (true, _) => "Send exactly one Authorization header.",
                (false, _) => "Send one caller credential: x-api-key or Authorization: Bearer, not both.",
            };
            if CallerSettings::api_keys(lookup).map_err(configuration)?.is_some() {
                return Err(Error::Unauthenticated(message.into()));
            }
            refuse_without_api_keys(lookup, message)
        }
    }
}

/// The refusal when `api_keys` is empty: 401 with the bearer challenge if tokens are on,
/// else 500 (nothing is configured).
fn refuse_without_api_keys(lookup: Lookup<'_>, message: &str) -> Result<(), Error> {
    match CallerSettings::tokens(lookup).map_err(configuration)? {
        Some(_) => Err(Error::TokenUnauthenticated { message: message.into(), error: None }),
        None => Err(Error::Configuration(no_caller_credential())),
    }
}

fn configuration(problems: Problems) -> Error {
    Error::Configuration(problems.describe())
}

/// `Bearer <...>`, the scheme in any case.
fn is_bearer(value: &str) -> bool {
    value.trim_start().split_once(' ').is_some_and(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
}

/// Verifies the token against the tenant's keys, fetching them when the cache rules allow.
async fn check_token(host: &impl Host, authorization: &str, policy: &CallerPolicy, trace: &mut Trace) -> Result<Caller, Error> {
    let now = host.unix_now();
    let key = jwks::key(&policy.login_base_url, policy.tenant);
    let entry = host.kv_get(&key).and_then(|bytes| Entry::decode(&bytes));
    let plan = jwks::plan(entry.as_ref(), now);
    let none = Jwks::default();
    let cached = match (&entry, plan) {
        (Some(entry), Plan::Use) => entry.keys(),
        _ => &none,
    };
    let mut verdict = caller_token::verify(authorization, cached, policy, now);
    if verdict == Verdict::UnknownKey {
        let may_fetch = match (&entry, plan) {
            (_, Plan::Fetch) => true,
            (Some(entry), Plan::Use) => jwks::may_refetch(entry, now),
            (entry, _) => {
                return Err(Error::IdentityPlatformUnavailable {
                    detail: "the last fetch of the tenant's signing keys failed; the keys are not asked for again yet".into(),
                    retry_after: Some(entry.as_ref().map_or(1, |e| jwks::retry_after(e, now))),
                })
            }
        };
        if may_fetch {
            match fetch(host, policy, trace).await {
                Ok(fresh) => {
                    verdict = caller_token::verify(authorization, &fresh, policy, now);
                    host.kv_set(&key, &Entry::fetched(fresh, now).encode());
                }
                Err(detail) => {
                    host.kv_set(&key, &Entry::failed(entry, now).encode());
                    if plan != Plan::Use {
                        return Err(Error::IdentityPlatformUnavailable {
                            detail,
                            retry_after: Some(jwks::RETRY_FAILED_FETCH_AFTER.as_secs()),
                        });
                    }
                }
            }
        }
    }
    match verdict {
        Verdict::Accepted(caller) => Ok(caller),
        Verdict::UnknownKey => Err(rejected(Rejection::UnknownKey)),
        Verdict::Unauthenticated(rejection) => Err(rejected(rejection)),
        Verdict::Forbidden(rule) => Err(Error::Forbidden(rule.to_string())),
    }
}

/// The 401 for a token that does not authenticate (RFC 6750: `invalid_request` for a
/// header that is not `Bearer <token>`, `invalid_token` for everything else).
fn rejected(rejection: Rejection) -> Error {
    let error = if rejection == Rejection::NotBearer { "invalid_request" } else { "invalid_token" };
    Error::TokenUnauthenticated { message: rejection.to_string(), error: Some(error) }
}

/// One GET of the tenant's JWKS, no retry (a failure is recorded and limits the next try).
async fn fetch(host: &impl Host, policy: &CallerPolicy, trace: &mut Trace) -> Result<Jwks, String> {
    let request = jwks::jwks_request(&policy.login_base_url, policy.tenant, &trace.correlation.client_request_id);
    trace.outbound_calls += 1;
    match host.send(request, JWKS_TIMEOUT).await {
        Ok(answer) => jwks::read_jwks_response(&answer),
        Err(crate::transport::outbound::SendFailure::Transport(error)) => Err(format!("could not reach it for the tenant's signing keys: {error}")),
        Err(crate::transport::outbound::SendFailure::TimedOut) => {
            Err(format!("no answer for the tenant's signing keys within {} s", JWKS_TIMEOUT.as_secs()))
        }
    }
}
