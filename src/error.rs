//! The one error type, and the one place that turns it into a status and an OData body.
//!
//! Every failure of a request ends here, so a caller always gets Graph's error shape
//! (`{"error": {"code", "message", "innerError"}}`) with a fix in the message, and
//! never an upstream body, a secret or an `anyhow` chain (spin-sdk would put that text
//! in a 500 body). `Display` is the message; it never contains a secret.

use std::fmt;

/// Everything that can stop a request, with the facts needed to explain it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// Malformed JSON, wrong types, unknown or missing fields (400).
    InvalidRequest(String),
    /// A user id fails the identifier rules; the text names the rule (400).
    InvalidUserId(String),
    /// Missing or wrong caller credential (401), challenged for an API key.
    Unauthenticated(String),
    /// Missing or refused Entra ID access token (401), challenged for a bearer token;
    /// `error` is RFC 6750's code (`invalid_token`, `invalid_request`), `None` when no
    /// token was presented. The message never contains the token.
    TokenUnauthenticated { message: String, error: Option<&'static str> },
    /// An authenticated caller that a rule (`allowed_callers`, `caller_role`) refuses
    /// (403); the message names the rule.
    Forbidden(String),
    /// No route for this path (404).
    NotFound,
    /// A known path with another method (405); `allow` lists the methods it takes.
    MethodNotAllowed { allow: &'static str },
    /// Body over the size limit (413).
    PayloadTooLarge(String),
    /// A body that is not JSON (415).
    UnsupportedMediaType(String),
    /// Required settings missing or malformed, named, never their values (500).
    Configuration(String),
    /// The identity platform refused the credentials, or answered something that is no
    /// token and not temporary trouble (502).
    TokenRequestFailed(String),
    /// The token endpoint failed temporarily: 5xx, 429, `temporarily_unavailable`, or
    /// unreachable, after its one retry (503); `retry_after` in seconds.
    IdentityPlatformUnavailable { detail: String, retry_after: Option<u64> },
    /// Graph answered 403: its message plus the fix (403). `dry_run`: the 403 came from
    /// the user lookup of a `whatIf`, which needs another permission.
    GraphForbidden { graph_message: String, dry_run: bool },
    /// Graph answered 404 for this user (404).
    UserNotFound { user: String },
    /// Graph is throttling (429); `retry_after` in seconds, passed on.
    Throttled { retry_after: Option<u64> },
    /// The abuse brake: this request's `users` would take the caller past `limit`
    /// (`max_revocations`) in the current window, which ends in `retry_after` seconds
    /// (429 `throttled`, as Graph's own throttling, so automation retries it the same way).
    Braked { users: u64, limit: u64, retry_after: u64 },
    /// Graph answered 503/504 or could not be reached (503).
    GraphUnavailable { detail: String, retry_after: Option<u64> },
    /// Any other unexpected Graph answer (502); described, never echoed raw.
    GraphError(String),
    /// The time budget ran out waiting for an answer (504); `budget_ms` is the setting.
    UpstreamTimeout { budget_ms: u64 },
    /// The time budget ran out before the caller had sent its whole body. 504
    /// `upstreamTimeout` too: the SPEC's code for "the time budget ran out" (it has no
    /// 408), and automation retries a 504 as it would a 408.
    BodyTimeout { budget_ms: u64 },
}

impl Error {
    /// The HTTP status this error answers with (SPEC.md, "Responses").
    pub fn status(&self) -> u16 {
        match self {
            Error::InvalidRequest(_) | Error::InvalidUserId(_) => 400,
            Error::Unauthenticated(_) | Error::TokenUnauthenticated { .. } => 401,
            Error::Forbidden(_) | Error::GraphForbidden { .. } => 403,
            Error::NotFound | Error::UserNotFound { .. } => 404,
            Error::MethodNotAllowed { .. } => 405,
            Error::PayloadTooLarge(_) => 413,
            Error::UnsupportedMediaType(_) => 415,
            Error::Throttled { .. } | Error::Braked { .. } => 429,
            Error::Configuration(_) => 500,
            Error::TokenRequestFailed(_) | Error::GraphError(_) => 502,
            Error::GraphUnavailable { .. } | Error::IdentityPlatformUnavailable { .. } => 503,
            Error::UpstreamTimeout { .. } | Error::BodyTimeout { .. } => 504,
        }
    }

    /// The stable, machine-readable `error.code`.
    pub fn code(&self) -> &'static str {
        match self {
            Error::InvalidRequest(_) => "invalidRequest",
            Error::InvalidUserId(_) => "invalidUserId",
            Error::Unauthenticated(_) | Error::TokenUnauthenticated { .. } => "unauthenticated",
            Error::Forbidden(_) => "forbidden",
            Error::NotFound => "notFound",
            Error::MethodNotAllowed { .. } => "methodNotAllowed",
            Error::PayloadTooLarge(_) => "payloadTooLarge",
            Error::UnsupportedMediaType(_) => "unsupportedMediaType",
            Error::Configuration(_) => "configurationError",
            Error::TokenRequestFailed(_) => "tokenRequestFailed",
            Error::GraphForbidden { .. } => "graphForbidden",
            Error::UserNotFound { .. } => "userNotFound",
            Error::Throttled { .. } | Error::Braked { .. } => "throttled",
            Error::GraphUnavailable { .. } => "graphUnavailable",
            Error::IdentityPlatformUnavailable { .. } => "identityPlatformUnavailable",
            Error::GraphError(_) => "graphError",
            Error::UpstreamTimeout { .. } | Error::BodyTimeout { .. } => "upstreamTimeout",
        }
    }

    /// Headers the status needs besides the JSON content type.
    pub fn extra_headers(&self) -> Vec<(&'static str, String)> {
        match self {
            Error::Unauthenticated(_) => vec![(
                "www-authenticate",
                r#"APIKey realm="graph-revoke", header="x-api-key""#.to_string(),
            )],
            Error::TokenUnauthenticated { error, .. } => vec![(
                "www-authenticate",
                match error {
                    Some(error) => format!(r#"Bearer realm="graph-revoke", error="{error}""#),
                    None => r#"Bearer realm="graph-revoke""#.to_string(),
                },
            )],
            Error::MethodNotAllowed { allow } => vec![("allow", allow.to_string())],
            _ => self.retry_after().map(|s| vec![("retry-after", s.to_string())]).unwrap_or_default(),
        }
    }

    /// The seconds to pass on in `Retry-After`, when known.
    pub fn retry_after(&self) -> Option<u64> {
        match self {
            Error::Throttled { retry_after }
            | Error::GraphUnavailable { retry_after, .. }
            | Error::IdentityPlatformUnavailable { retry_after, .. } => *retry_after,
            Error::Braked { retry_after, .. } => Some(*retry_after),
            _ => None,
        }
    }

    /// Trouble that passes by itself, so the same request may succeed later: throttling,
    /// an unavailable upstream with a known wait, a time budget that ran out. An upstream
    /// "unavailable" with no wait is a host refusing the call by policy: not temporary.
    pub fn is_temporary(&self) -> bool {
        match self {
            Error::Throttled { .. }
            | Error::Braked { .. }
            | Error::IdentityPlatformUnavailable { .. }
            | Error::UpstreamTimeout { .. }
            | Error::BodyTimeout { .. } => true,
            Error::GraphUnavailable { retry_after, .. } => retry_after.is_some(),
            _ => false,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::InvalidRequest(m)
            | Error::InvalidUserId(m)
            | Error::Unauthenticated(m)
            | Error::TokenUnauthenticated { message: m, .. }
            | Error::Forbidden(m)
            | Error::PayloadTooLarge(m)
            | Error::UnsupportedMediaType(m)
            | Error::Configuration(m)
            | Error::TokenRequestFailed(m)
            | Error::GraphError(m) => f.write_str(m),
            Error::NotFound => f.write_str(
                "No such route. Use POST /revoke, POST /users/{userId}/revokeSignInSessions, GET /healthz or GET /openapi.json.",
            ),
            Error::MethodNotAllowed { allow } => {
                write!(f, "This route accepts only {allow}.")
            }
            Error::GraphForbidden { graph_message, dry_run: true } => write!(
                f,
                "Graph refused to look the user up: \"{graph_message}\". Fix: a dry run (whatIf) reads \
                 the user, which needs the application permission User.Read.All with admin consent, \
                 besides User.RevokeSessions.All."
            ),
            Error::GraphForbidden { graph_message, dry_run: false } => write!(
                f,
                "Graph refused the revocation: \"{graph_message}\". Fix: grant the app registration the \
                 application permission User.RevokeSessions.All and grant admin consent; revoking a \
                 privileged user (an administrator) also needs the app to hold a directory role that \
                 may manage that user, such as Privileged Authentication Administrator."
            ),
            Error::UserNotFound { user } => write!(
                f,
                "Graph found no user '{user}' in this tenant. Check the object id or userPrincipalName, \
                 and that tenant_id names the user's tenant."
            ),
            Error::Throttled { retry_after } => match retry_after {
                Some(s) => write!(f, "Graph is throttling requests; retry after {s} seconds."),
                None => f.write_str("Graph is throttling requests; retry later."),
            },
            Error::Braked { users, limit, retry_after } => write!(
                f,
                "This caller may have at most {limit} users revoked per 10-minute window (max_revocations); \
                 {users} more would pass that, so nothing was revoked. Retry after {retry_after} \
                 seconds, when the window ends. The limit keeps a leaked caller credential from signing out \
                 the organisation; if the volume is legitimate, raise max_revocations."
            ),
            Error::UpstreamTimeout { budget_ms } => write!(
                f,
                "No answer from upstream within the time budget (time_budget_ms = {budget_ms}). \
                 Revoking is idempotent: retry the request."
            ),
            Error::BodyTimeout { budget_ms } => write!(
                f,
                "The request body did not arrive within the time budget (time_budget_ms = {budget_ms}); \
                 nothing was revoked. Send the whole body at once and retry."
            ),
            Error::GraphUnavailable { detail, retry_after } => match retry_after {
                Some(s) => write!(f, "Graph is unavailable ({detail}); retry after {s} seconds."),
                None => write!(f, "Graph is unavailable ({detail}); retry later."),
            },
            Error::IdentityPlatformUnavailable { detail, retry_after } => match retry_after {
                Some(s) => write!(f, "The identity platform is temporarily unavailable ({detail}); retry after {s} seconds."),
                None => write!(f, "The identity platform is temporarily unavailable ({detail}); retry later."),
            },
        }
    }
}

impl std::error::Error for Error {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_has_the_status_of_the_spec_table() {
        let table: Vec<(Error, u16, &str)> = vec![
            (Error::InvalidRequest("x".into()), 400, "invalidRequest"),
            (Error::InvalidUserId("x".into()), 400, "invalidUserId"),
            (Error::Unauthenticated("x".into()), 401, "unauthenticated"),
            (Error::TokenUnauthenticated { message: "x".into(), error: None }, 401, "unauthenticated"),
            (Error::Forbidden("x".into()), 403, "forbidden"),
            (Error::GraphForbidden { graph_message: "m".into(), dry_run: false }, 403, "graphForbidden"),
            (Error::UserNotFound { user: "u".into() }, 404, "userNotFound"),
            (Error::NotFound, 404, "notFound"),
            (Error::MethodNotAllowed { allow: "GET" }, 405, "methodNotAllowed"),
            (Error::PayloadTooLarge("x".into()), 413, "payloadTooLarge"),
            (Error::UnsupportedMediaType("x".into()), 415, "unsupportedMediaType"),
            (Error::Throttled { retry_after: None }, 429, "throttled"),
            (Error::Braked { users: 1, limit: 1, retry_after: 1 }, 429, "throttled"),
            (Error::Configuration("x".into()), 500, "configurationError"),
            (Error::TokenRequestFailed("x".into()), 502, "tokenRequestFailed"),
            (Error::GraphError("x".into()), 502, "graphError"),
            (Error::GraphUnavailable { detail: "d".into(), retry_after: None }, 503, "graphUnavailable"),
            (Error::IdentityPlatformUnavailable { detail: "d".into(), retry_after: None }, 503, "identityPlatformUnavailable"),
            (Error::UpstreamTimeout { budget_ms: 1 }, 504, "upstreamTimeout"),
            (Error::BodyTimeout { budget_ms: 1 }, 504, "upstreamTimeout"),
        ];
        for (error, status, code) in table {
            assert_eq!(error.status(), status, "{error:?}");
            assert_eq!(error.code(), code, "{error:?}");
        }
    }

    #[test]
    fn graph_forbidden_names_the_permission_and_privileged_targets() {
        let text = Error::GraphForbidden { graph_message: "Insufficient privileges".into(), dry_run: false }.to_string();
        assert!(text.contains("Insufficient privileges"));
        assert!(text.contains("User.RevokeSessions.All"));
        assert!(text.contains("admin consent"));
        assert!(text.contains("Privileged Authentication Administrator"));
        let dry = Error::GraphForbidden { graph_message: "x".into(), dry_run: true }.to_string();
        assert!(dry.contains("User.Read.All") && dry.contains("whatIf"));
    }

    #[test]
    fn headers_follow_the_status() {
        assert_eq!(
            Error::Throttled { retry_after: Some(7) }.extra_headers(),
            vec![("retry-after", "7".to_string())]
        );
        assert_eq!(Error::MethodNotAllowed { allow: "POST" }.extra_headers()[0].0, "allow");
        assert_eq!(Error::Unauthenticated("x".into()).extra_headers()[0].0, "www-authenticate");
        let challenge = |error| Error::TokenUnauthenticated { message: "x".into(), error }.extra_headers();
        assert_eq!(challenge(None), vec![("www-authenticate", r#"Bearer realm="graph-revoke""#.to_string())]);
        assert_eq!(
            challenge(Some("invalid_token")),
            vec![("www-authenticate", r#"Bearer realm="graph-revoke", error="invalid_token""#.to_string())]
        );
        assert!(Error::Forbidden("x".into()).extra_headers().is_empty());
        assert!(Error::Throttled { retry_after: None }.extra_headers().is_empty());
        assert_eq!(
            Error::Braked { users: 20, limit: 300, retry_after: 42 }.extra_headers(),
            vec![("retry-after", "42".to_string())]
        );
        assert_eq!(
            Error::IdentityPlatformUnavailable { detail: "d".into(), retry_after: Some(4) }.extra_headers(),
            vec![("retry-after", "4".to_string())]
        );
    }

    #[test]
    fn the_brake_names_the_setting_and_the_window() {
        let text = Error::Braked { users: 20, limit: 300, retry_after: 42 }.to_string();
        for part in ["max_revocations", "300 users revoked per 10-minute window", "20 more", "Retry after 42 seconds", "nothing was revoked"] {
            assert!(text.contains(part), "{part}: {text}");
        }
    }

    #[test]
    fn only_passing_trouble_is_temporary() {
        let temporary = [
            Error::Throttled { retry_after: None },
            Error::GraphUnavailable { detail: "d".into(), retry_after: Some(1) },
            Error::IdentityPlatformUnavailable { detail: "d".into(), retry_after: Some(1) },
            Error::UpstreamTimeout { budget_ms: 1 },
        ];
        assert!(temporary.iter().all(Error::is_temporary));
        let lasting = [
            Error::GraphUnavailable { detail: "HttpRequestDenied".into(), retry_after: None },
            Error::GraphError("x".into()),
            Error::TokenRequestFailed("x".into()),
            Error::UserNotFound { user: "u".into() },
            Error::Configuration("x".into()),
        ];
        assert!(!lasting.iter().any(Error::is_temporary));
    }
}
