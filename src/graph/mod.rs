//! The Graph calls: `POST {graph}/v1.0/users/{id}/revokeSignInSessions`, the user lookups
//! (a dry run's `GET /users/{id}?$select=id,userPrincipalName`, and the read-back of
//! `signInSessionsValidFromDateTime` that proves a revoke), and what their answers
//! mean. The paths here serve single calls and `$batch` items alike.
//!
//! Success is lenient (any 2xx, with any body): once Graph has revoked, we never
//! report a failure. Failures are mapped to the SPEC's codes; Graph's own text is
//! passed on only for 403, where it tells the operator which permission is missing.

pub(crate) mod batch;
pub(crate) mod revocation;
pub(crate) mod outcome;
pub(crate) mod verification;

use std::time::SystemTime;

use serde::Deserialize;

use crate::error::Error;
use crate::transport::outbound::{OutboundRequest, OutboundResponse};
use crate::transport::pipeline::{Failure, RetryPolicy};
use crate::transport::retry::{self, whole_seconds, MAX_RETRIES};
use crate::settings::secret::Secret;
use crate::inbound::user_id::UserId;

/// Graph calls are retried on 429, 503 and 504, at most [`MAX_RETRIES`] times.
pub const RETRY_POLICY: RetryPolicy = RetryPolicy {
    max_retries: MAX_RETRIES,
    retryable: |answer| retry::is_retryable_status(answer.status),
};

/// Longest piece of Graph's message we pass on (a 403's explanation is one sentence).
const MAX_GRAPH_MESSAGE: usize = 300;

/// A successful revocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revoked {
    /// Graph's boolean (`true` when Graph sent no JSON boolean: 204 or another body).
    pub value: bool,
}

/// What a dry run's lookup asks for.
pub const DRY_RUN_FIELDS: &str = "id,userPrincipalName";
/// A dry run with `verify`: also the time the user's sessions are valid from.
pub const DRY_RUN_VERIFY_FIELDS: &str = "id,userPrincipalName,signInSessionsValidFromDateTime";
/// The read-back after a revoke (`verify`); needs `User.Read.All`.
pub const READ_BACK_FIELDS: &str = "id,signInSessionsValidFromDateTime";

/// A user as a lookup found them (serialised as a dry run's `user`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FoundUser {
    pub id: String,
    #[serde(default)]
    pub user_principal_name: String,
    /// Graph's `signInSessionsValidFromDateTime`, unchecked, when asked for and not null;
    /// the answer carries it as `signInSessionsValidFrom` once checked (see
    /// [`crate::graph::verification`]), never inside `user`.
    #[serde(default, rename = "signInSessionsValidFromDateTime", skip_serializing)]
    pub sign_in_sessions_valid_from: Option<String>,
}

/// `/users/{id}/revokeSignInSessions`, relative to `/v1.0` (as `$batch` items want it).
pub fn revoke_path(user: &UserId) -> String {
    format!("/users{}/revokeSignInSessions", user.path_segment())
}

/// `/users/{id}?$select={fields}`, relative to `/v1.0`; `fields` one of the `*_FIELDS` above.
pub fn lookup_path(user: &UserId, fields: &str) -> String {
    format!("/users{}?$select={fields}", user.path_segment())
}

/// What every Graph call carries: the bearer token and the request's one `client-request-id`.
pub fn headers(token: &Secret, client_request_id: &str) -> Vec<(&'static str, String)> {
    vec![
        ("authorization", format!("Bearer {}", token.expose())),
        ("accept", "application/json".into()),
        ("client-request-id", client_request_id.into()),
    ]
}

/// The lookup request for one user (a dry run's, or the read-back of `verify`).
pub fn lookup_request(graph_base_url: &str, user: &UserId, fields: &str, token: &Secret, client_request_id: &str) -> OutboundRequest {
    OutboundRequest {
        method: "GET",
        url: format!("{graph_base_url}/v1.0{}", lookup_path(user, fields)),
        headers: headers(token, client_request_id),
        body: Vec::new(),
    }
}

/// The revoke request for one user.
pub fn revoke_request(graph_base_url: &str, user: &UserId, token: &Secret, client_request_id: &str) -> OutboundRequest {
    OutboundRequest {
        method: "POST",
        url: format!("{graph_base_url}/v1.0{}", revoke_path(user)),
        headers: headers(token, client_request_id),
        body: Vec::new(),
    }
}

#[derive(Deserialize)]
struct GraphError {
    error: GraphErrorBody,
}

#[derive(Deserialize)]
struct GraphErrorBody {
    code: Option<String>,
    message: Option<String>,
}

/// Reads Graph's answer to a revoke. `now` (the wall clock) reads a `Retry-After` date.
pub fn read_revoke_response(response: &OutboundResponse, user: &UserId, now: SystemTime) -> Result<Revoked, Error> {
    if (200..300).contains(&response.status) {
        let value = serde_json::from_slice::<serde_json::Value>(&response.body)
            .ok()
            .and_then(|v| v.get("value").and_then(serde_json::Value::as_bool))
            .unwrap_or(true);
        return Ok(Revoked { value });
    }
    Err(failure(response, user, false, now))
}

/// Reads Graph's answer to a lookup (a dry run's, or a read-back). `now` (the wall clock)
/// reads a `Retry-After` date. A 403 says what a dry run needs; the read-back words its own
/// fix from it (see [`crate::graph::verification`]).
pub fn read_lookup_response(response: &OutboundResponse, user: &UserId, now: SystemTime) -> Result<FoundUser, Error> {
    if (200..300).contains(&response.status) {
        return serde_json::from_slice::<FoundUser>(&response.body).map_err(|_| {
            Error::GraphError(format!("Graph answered {} to the user lookup without the user.", response.status))
        });
    }
    Err(failure(response, user, true, now))
}

/// A non-2xx answer as the caller's error. A 429/503/504 carries its own `Retry-After`
/// (a `$batch` item's provisional error, before the batch loop decides on a retry).
fn failure(response: &OutboundResponse, user: &UserId, dry_run: bool, now: SystemTime) -> Error {
    let status = response.status;
    let error = serde_json::from_slice::<GraphError>(&response.body).ok().map(|e| e.error);
    let code = error.as_ref().and_then(|e| e.code.as_deref()).and_then(safe_code);
    match status {
        404 => Error::UserNotFound { user: user.to_string() },
        403 => Error::GraphForbidden {
            graph_message: error
                .and_then(|e| e.message)
                .map(|m| printable(&m))
                .unwrap_or_else(|| "no message".into()),
            dry_run,
        },
        429 | 503 | 504 => still_failing(
            status,
            response.header("retry-after").and_then(|v| retry::parse_retry_after(v, now)).map(whole_seconds),
        ),
        401 => Error::GraphError(format!(
            "Graph rejected the access token (401{}); check that graph_base_url and login_base_url \
             belong to the same cloud.",
            code.map(|c| format!(" {c}")).unwrap_or_default()
        )),
        _ => Error::GraphError(format!(
            "Graph answered {status}{}, which graph-revoke does not expect{}.",
            code.map(|c| format!(" ({c})")).unwrap_or_default(),
            response
                .header("request-id")
                .and_then(safe_code)
                .map(|id| format!("; Graph request-id {id}"))
                .unwrap_or_default()
        )),
    }
}

/// Graph's `request-id`, if it looks like one (it is logged and returned).
pub fn request_id(answer: &OutboundResponse) -> Option<String> {
    answer.header("request-id").and_then(safe_code).map(str::to_string)
}

/// What the caller gets when the pipeline gave up on Graph.
pub fn gave_up(failure: Failure, budget_ms: u64) -> Error {
    match failure {
        Failure::Exhausted { last, retry_after } => still_failing(last.status, Some(whole_seconds(retry_after))),
        Failure::Unreachable { error, retry_after } => Error::GraphUnavailable {
            retry_after: error.temporary.then(|| whole_seconds(retry_after)),
            detail: format!("could not reach Graph: {error}"),
        },
        Failure::TimedOut => Error::UpstreamTimeout { budget_ms },
    }
}

/// Throttled (429) or unavailable (503, 504), with the wait to pass on.
pub fn still_failing(status: u16, retry_after: Option<u64>) -> Error {
    match status {
        429 => Error::Throttled { retry_after },
        _ => Error::GraphUnavailable { detail: format!("Graph answered {status}"), retry_after },
    }
}

/// An error code or request id, only if it looks like one (letters, digits, `_ - .`):
/// anything else from upstream is not echoed.
fn safe_code(text: &str) -> Option<&str> {
    let ok = !text.is_empty()
        && text.len() <= 64
        && text.chars().all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c));
    ok.then_some(text)
}

/// Graph's message without control characters, cut to [`MAX_GRAPH_MESSAGE`] characters.
fn printable(text: &str) -> String {
    text.chars().filter(|c| !c.is_control()).take(MAX_GRAPH_MESSAGE).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user() -> UserId {
        UserId::parse("adele@contoso.com").unwrap()
    }

    fn now() -> SystemTime {
        httpdate::parse_http_date("Wed, 25 Nov 2026 10:00:00 GMT").unwrap()
    }

    fn read_revoke_response_now(response: &OutboundResponse, user: &UserId) -> Result<Revoked, Error> {
        read_revoke_response(response, user, now())
    }

    fn read_lookup_response_now(response: &OutboundResponse, user: &UserId) -> Result<FoundUser, Error> {
        read_lookup_response(response, user, now())
    }

    fn answer(status: u16, body: &str) -> OutboundResponse {
        OutboundResponse { status, headers: vec![], body: body.as_bytes().to_vec() }
    }

    #[test]
    fn the_request_puts_the_encoded_id_in_the_path_and_the_token_in_a_header() {
        let guest = UserId::parse("a_b.com#EXT#@contoso.com").unwrap();
        let request = revoke_request("https://graph.microsoft.com", &guest, &Secret::new("tok"), "cid");
        assert_eq!(request.url, "https://graph.microsoft.com/v1.0/users/a_b.com%23EXT%23@contoso.com/revokeSignInSessions");
        assert_eq!(request.header("authorization"), Some("Bearer tok"));
        assert_eq!(request.header("client-request-id"), Some("cid"));
        assert!(!format!("{request:?}").contains("tok\""));
    }

    #[test]
    fn any_success_counts() {
        assert_eq!(read_revoke_response_now(&answer(200, r#"{"value":true}"#), &user()), Ok(Revoked { value: true }));
        assert_eq!(read_revoke_response_now(&answer(200, ""), &user()), Ok(Revoked { value: true }));
        assert_eq!(read_revoke_response_now(&answer(200, "ok"), &user()), Ok(Revoked { value: true }));
        assert_eq!(read_revoke_response_now(&answer(204, ""), &user()), Ok(Revoked { value: true }));
        assert_eq!(read_revoke_response_now(&answer(200, r#"{"value":false}"#), &user()), Ok(Revoked { value: false }));
    }

    #[test]
    fn failures_map_to_the_spec_codes() {
        let code = |status, body| read_revoke_response_now(&answer(status, body), &user()).unwrap_err().code();
        assert_eq!(code(404, r#"{"error":{"code":"Request_ResourceNotFound","message":"x"}}"#), "userNotFound");
        assert_eq!(code(403, r#"{"error":{"code":"Authorization_RequestDenied","message":"x"}}"#), "graphForbidden");
        assert_eq!(code(429, ""), "throttled");
        assert_eq!(code(503, ""), "graphUnavailable");
        assert_eq!(code(504, ""), "graphUnavailable");
        assert_eq!(code(400, r#"{"error":{"code":"Request_BadRequest","message":"x"}}"#), "graphError");
        assert_eq!(code(500, "<html>boom</html>"), "graphError");
        assert_eq!(code(302, ""), "graphError");
    }

    #[test]
    fn only_a_403_passes_graph_text_on() {
        let forbidden = read_revoke_response_now(
            &answer(403, r#"{"error":{"code":"Authorization_RequestDenied","message":"Insufficient privileges to complete the operation.\r\n"}}"#),
            &user(),
        )
        .unwrap_err();
        assert!(forbidden.to_string().contains("\"Insufficient privileges to complete the operation.\""));
        let bad = read_revoke_response_now(
            &answer(400, r#"{"error":{"code":"Request_BadRequest","message":"secret internals"}}"#),
            &user(),
        )
        .unwrap_err()
        .to_string();
        assert!(bad.contains("Request_BadRequest") && !bad.contains("internals"));
        let html = read_revoke_response_now(&answer(500, r#"{"error":{"code":"<script>","message":"m"}}"#), &user())
            .unwrap_err()
            .to_string();
        assert!(!html.contains("<script>"));
    }

    #[test]
    fn a_lookup_reads_the_user_and_its_403_names_user_read_all() {
        let found = read_lookup_response_now(&answer(200, r#"{"id":"6f4a9b2c-1d3e-4f50-8a6b-7c8d9e0f1a2b","userPrincipalName":"adele@contoso.com","@odata.context":"x"}"#), &user());
        assert_eq!(found.unwrap().user_principal_name, "adele@contoso.com");
        let denied = read_lookup_response_now(&answer(403, r#"{"error":{"code":"Authorization_RequestDenied","message":"Insufficient privileges"}}"#), &user());
        assert!(denied.unwrap_err().to_string().contains("User.Read.All"));
        assert_eq!(read_lookup_response_now(&answer(404, ""), &user()).unwrap_err().code(), "userNotFound");
        assert_eq!(read_lookup_response_now(&answer(200, "<html>"), &user()).unwrap_err().code(), "graphError");
        let request = lookup_request("https://graph.microsoft.com", &user(), DRY_RUN_FIELDS, &Secret::new("t"), "cid");
        assert_eq!((request.method, request.url.as_str()), ("GET", "https://graph.microsoft.com/v1.0/users/adele@contoso.com?$select=id,userPrincipalName"));
    }

    #[test]
    fn a_read_back_asks_for_and_reads_sign_in_sessions_valid_from() {
        let request = lookup_request("https://g", &UserId::parse("$x@contoso.com").unwrap(), READ_BACK_FIELDS, &Secret::new("t"), "cid");
        assert_eq!(request.url, "https://g/v1.0/users('$x@contoso.com')?$select=id,signInSessionsValidFromDateTime");
        let read = |body: &str| read_lookup_response_now(&answer(200, body), &user()).map(|u| u.sign_in_sessions_valid_from);
        assert_eq!(read(r#"{"id":"i","signInSessionsValidFromDateTime":"2026-11-25T10:00:03Z"}"#), Ok(Some("2026-11-25T10:00:03Z".into())));
        assert_eq!(read(r#"{"id":"i","signInSessionsValidFromDateTime":null}"#), Ok(None));
        assert_eq!(read(r#"{"id":"i"}"#), Ok(None));
        assert_eq!(read(r#"{"id":"i","signInSessionsValidFromDateTime":5}"#).unwrap_err().code(), "graphError");
        // Never shown inside a dry run's `user`: the answer carries it checked, under its own name.
        let found = FoundUser { id: "i".into(), user_principal_name: "u".into(), sign_in_sessions_valid_from: Some("x".into()) };
        assert_eq!(serde_json::to_value(&found).unwrap(), serde_json::json!({"id": "i", "userPrincipalName": "u"}));
    }

    #[test]
    fn retry_after_is_passed_on() {
        let mut throttled = answer(429, "");
        throttled.headers.push(("retry-after".into(), "7".into()));
        assert_eq!(read_revoke_response(&throttled, &user(), now()), Err(Error::Throttled { retry_after: Some(7) }));
    }

    #[test]
    fn retry_after_is_read_in_every_form_and_capped() {
        let with = |status, value: &str| {
            let mut a = answer(status, "");
            a.headers.push(("retry-after".into(), value.into()));
            read_revoke_response(&a, &user(), now()).unwrap_err()
        };
        // Graph's fractional seconds, rounded up; an HTTP-date against the clock given.
        assert_eq!(with(429, "2.128"), Error::Throttled { retry_after: Some(3) });
        assert_eq!(with(429, "Wed, 25 Nov 2026 10:00:05 GMT"), Error::Throttled { retry_after: Some(5) });
        let capped = Some(retry::whole_seconds(retry::MAX_RETRY_AFTER));
        assert_eq!(with(429, "Fri, 31 Dec 9999 23:59:59 GMT"), Error::Throttled { retry_after: capped });
        assert_eq!(with(429, "99999999999"), Error::Throttled { retry_after: capped });
        assert!(matches!(with(503, "Fri, 31 Dec 9999 23:59:59 GMT"), Error::GraphUnavailable { retry_after, .. } if retry_after == capped));
        assert_eq!(with(429, "soon"), Error::Throttled { retry_after: None });
        let mut lookup = answer(504, "");
        lookup.headers.push(("retry-after".into(), "0.5".into()));
        assert!(matches!(read_lookup_response(&lookup, &user(), now()), Err(Error::GraphUnavailable { retry_after: Some(1), .. })));
    }
}
