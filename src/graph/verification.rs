//! Proof of a revocation (`"verify": true`): what the read-back of
//! `signInSessionsValidFromDateTime` says, judged against the time the request began.
//!
//! Pure. Graph sets `signInSessionsValidFromDateTime` to the time of the revocation; a
//! read that shows a time at or after the request's start (less [`CLOCK_SKEW`]) proves
//! that this request's revocation (or one at most that much earlier) took effect. Graph
//! is eventually consistent, so a read right after the revoke may still show the old
//! value: that is `verified: false` with code `staleRead`, never a failed revoke. A read
//! that fails (403 without `User.Read.All`, throttled, time budget spent) is reported
//! the same way, with its own code and fix: the revoke happened, whatever the read says.

use std::time::{Duration, SystemTime};

use serde_json::{json, Value};

use crate::error::Error;
use crate::graph::FoundUser;

/// How much earlier than the request's start Graph's time may be and still count.
///
/// Graph writes the time of the revocation by its own clock, in whole seconds; we
/// compare with the host's clock. A wrong "verified" is the dangerous mistake here: a
/// stale read that shows an *earlier* revocation (the same playbook run twice, a help
/// desk that acted first) leaves valid every session issued since then, which in a
/// compromise is exactly the attacker's new sign-in. So the margin is as short as the
/// clocks allow: servers kept by NTP agree within a second, and Graph truncates to
/// whole seconds; one minute covers both with room. A host clock more than a minute
/// ahead of Graph makes a true revocation read as `staleRead`: the safe direction (the
/// message says to read again, and the revoke itself is never in doubt). The answer
/// carries Graph's time, so a caller can apply its own rule.
pub const CLOCK_SKEW: Duration = Duration::from_secs(60);

/// Longest `signInSessionsValidFromDateTime` passed on: an RFC 3339 UTC date with
/// seven fractional digits (.NET's precision) is 28 characters.
const MAX_DATE_LEN: usize = 40;

/// The proof for one revoked user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verification {
    /// Graph's `signInSessionsValidFromDateTime`, when read and a date.
    pub valid_from: Option<String>,
    /// Why it is not verified; `None`: verified.
    pub problem: Option<Problem>,
}

/// Why a revocation is not verified: a stable code (one of the error codes, or
/// `staleRead`) and what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub code: &'static str,
    pub message: String,
}

impl Verification {
    fn not_verified(valid_from: Option<String>, code: &'static str, message: String) -> Verification {
        Verification { valid_from, problem: Some(Problem { code, message }) }
    }

    pub fn verified(&self) -> bool {
        self.problem.is_none()
    }

    /// Adds the proof to an answer (one user's body, or one result of many):
    /// `signInSessionsValidFrom` when known, `verified`, and `verification: {code,
    /// message}` when not verified.
    pub fn write(&self, into: &mut Value) {
        if let Some(valid_from) = &self.valid_from {
            into["signInSessionsValidFrom"] = json!(valid_from);
        }
        into["verified"] = json!(self.verified());
        if let Some(problem) = &self.problem {
            into["verification"] = json!({ "code": problem.code, "message": problem.message });
        }
    }
}

/// Judges the read-back of a revoked user: Graph's answer (the user, or why there is
/// none) against `request_began`, the wall-clock time the request arrived.
/// `budget_ms` (`time_budget_ms`) is named when the budget ran out.
pub fn judge(read: Result<&FoundUser, &Error>, request_began: SystemTime, budget_ms: u64) -> Verification {
    let found = match read {
        Ok(found) => found,
        Err(error) => return failed(error, budget_ms),
    };
    let Some(raw) = found.sign_in_sessions_valid_from.as_deref() else {
        return Verification::not_verified(
            None,
            "staleRead",
            format!("Graph reports no signInSessionsValidFromDateTime for the user yet. {EVENTUAL}"),
        );
    };
    let Some(valid_from) = parse_date(raw) else {
        return Verification::not_verified(
            None,
            "graphError",
            format!("Graph's signInSessionsValidFromDateTime is not an RFC 3339 UTC date. {SUCCEEDED}"),
        );
    };
    let valid_from_text = Some(raw.to_string());
    // Later than the request's start less the skew (or so far ahead that adding overflows): verified.
    if valid_from.checked_add(CLOCK_SKEW).is_none_or(|latest| latest >= request_began) {
        return Verification { valid_from: valid_from_text, problem: None };
    }
    Verification::not_verified(
        valid_from_text,
        "staleRead",
        format!(
            "Graph still shows signInSessionsValidFromDateTime {raw}, more than {} seconds (the clock skew allowed) \
             before this request began. {EVENTUAL}",
            CLOCK_SKEW.as_secs()
        ),
    )
}

/// No read-back answer within the time budget (none was sent if the revoke used it up).
fn budget_spent(budget_ms: u64) -> Verification {
    Verification::not_verified(
        None,
        "upstreamTimeout",
        format!(
            "Not verified: time budget spent (time_budget_ms = {budget_ms}) before signInSessionsValidFromDateTime \
             could be read back. {SUCCEEDED}"
        ),
    )
}

/// A dry run's `signInSessionsValidFrom` (`whatIf` with `verify`): Graph's value, when
/// it is a date.
pub fn valid_from(found: &FoundUser) -> Option<&str> {
    found.sign_in_sessions_valid_from.as_deref().filter(|raw| parse_date(raw).is_some())
}

const SUCCEEDED: &str = "The revocation itself succeeded (Graph answered 2xx); only its proof is missing.";
const EVENTUAL: &str = "Graph is eventually consistent: the revocation succeeded (Graph answered 2xx) but is \
                        not visible yet; read the user's signInSessionsValidFromDateTime again in a minute.";

/// A read-back that failed: the error's code, and a message that says the revoke stands.
fn failed(error: &Error, budget_ms: u64) -> Verification {
    let message = match error {
        Error::GraphForbidden { graph_message, .. } => format!(
            "Graph refused to read the user back: \"{graph_message}\". Fix: grant the app registration the \
             application permission User.Read.All with admin consent (verify reads \
             signInSessionsValidFromDateTime). {SUCCEEDED}"
        ),
        Error::UpstreamTimeout { .. } | Error::BodyTimeout { .. } => return budget_spent(budget_ms),
        // Its text may describe a revoke (a refused batch: "none of its users was revoked"),
        // which would contradict the revoke that happened.
        Error::GraphError(_) => format!("Not verified: Graph's answer to the read-back was not usable. {SUCCEEDED}"),
        other => format!("Not verified: {other} {SUCCEEDED}"),
    };
    Verification::not_verified(None, error.code(), message)
}

/// An RFC 3339 UTC date (`2026-11-25T10:00:03Z`, any fractional digits), bounded in length.
fn parse_date(raw: &str) -> Option<SystemTime> {
    (raw.len() <= MAX_DATE_LEN).then(|| humantime::parse_rfc3339(raw).ok()).flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    const BEGAN: &str = "2026-11-25T10:00:00Z";

    fn began() -> SystemTime {
        humantime::parse_rfc3339(BEGAN).unwrap()
    }

    fn user(valid_from: Option<&str>) -> FoundUser {
        FoundUser {
            id: "6f4a9b2c-1d3e-4f50-8a6b-7c8d9e0f1a2b".into(),
            user_principal_name: String::new(),
            sign_in_sessions_valid_from: valid_from.map(str::to_string),
        }
    }

    fn judged(valid_from: Option<&str>) -> Verification {
        judge(Ok(&user(valid_from)), began(), 25000)
    }

    fn code(verification: &Verification) -> Option<&'static str> {
        verification.problem.as_ref().map(|p| p.code)
    }

    fn body(verification: &Verification) -> Value {
        let mut body = json!({"value": true});
        verification.write(&mut body);
        body
    }

    #[test]
    fn a_time_from_this_request_on_is_verified() {
        for after in ["2026-11-25T10:00:03Z", "2026-11-25T10:00:00Z", "2026-11-25T10:00:03.1234567Z", "2026-11-25T10:00:03+00:00"] {
            let verification = judged(Some(after));
            assert!(verification.verified(), "{after}: {verification:?}");
            assert_eq!(body(&verification), json!({"value": true, "signInSessionsValidFrom": after, "verified": true}));
        }
    }

    #[test]
    fn graphs_clock_may_be_behind_ours_by_the_skew_and_no_more() {
        assert!(judged(Some("2026-11-25T09:59:00Z")).verified(), "exactly one minute behind");
        let stale = judged(Some("2026-11-25T09:58:59Z"));
        assert_eq!(code(&stale), Some("staleRead"));
        // Far ahead (Graph's clock, or a date near the end of time): still verified, no overflow.
        assert!(judged(Some("9999-12-31T23:59:59Z")).verified());
    }

    #[test]
    fn a_stale_read_says_so_with_graphs_time_and_the_requests() {
        let stale = judged(Some("2026-11-20T08:00:00Z"));
        let b = body(&stale);
        assert_eq!(b["verified"], false);
        assert_eq!(b["value"], true, "the revoke stands");
        assert_eq!(b["signInSessionsValidFrom"], "2026-11-20T08:00:00Z");
        assert_eq!(b["verification"]["code"], "staleRead");
        let message = b["verification"]["message"].as_str().unwrap();
        assert!(message.contains("2026-11-20T08:00:00Z") && message.contains("more than 60 seconds"), "{message}");
        assert!(message.contains("eventually consistent") && message.contains("succeeded"), "{message}");

        // No value at all: stale too, nothing to show.
        let none = judged(None);
        assert_eq!((code(&none), none.valid_from.clone()), (Some("staleRead"), None));
        assert!(body(&none).get("signInSessionsValidFrom").is_none());
    }

    #[test]
    fn a_value_that_is_no_date_is_not_passed_on() {
        for raw in ["yesterday", "2026-11-25", "2026-11-25T10:00:00+01:00", "2026-11-25T10:00:00Z<script>", "2026-11-25T10:00:00.0000000000000000000000Z", "2026-13-25T10:00:00Z"] {
            let verification = judged(Some(raw));
            assert_eq!((code(&verification), verification.valid_from.clone()), (Some("graphError"), None), "{raw}");
            assert!(!body(&verification).to_string().contains(raw), "{raw}");
            assert_eq!(valid_from(&user(Some(raw))), None);
        }
        assert_eq!(valid_from(&user(Some("2026-11-25T10:00:03Z"))), Some("2026-11-25T10:00:03Z"));
        assert_eq!(valid_from(&user(None)), None);
    }

    #[test]
    fn a_forbidden_read_names_user_read_all_and_the_revoke_stands() {
        let forbidden = Error::GraphForbidden { graph_message: "Insufficient privileges to complete the operation.".into(), dry_run: true };
        let verification = judge(Err(&forbidden), began(), 25000);
        let problem = verification.problem.clone().unwrap();
        assert_eq!(problem.code, "graphForbidden");
        assert!(problem.message.contains("User.Read.All") && problem.message.contains("Insufficient privileges"), "{}", problem.message);
        assert!(problem.message.contains("revocation itself succeeded"), "{}", problem.message);
        assert!(!problem.message.contains("whatIf"), "not a dry run's fix: {}", problem.message);
    }

    #[test]
    fn a_failed_read_keeps_its_code_and_never_says_nothing_was_revoked() {
        let cases = [
            (Error::Throttled { retry_after: Some(7) }, "throttled", "retry after 7 seconds"),
            (Error::GraphUnavailable { detail: "Graph answered 503".into(), retry_after: Some(2) }, "graphUnavailable", "503"),
            (Error::UpstreamTimeout { budget_ms: 25000 }, "upstreamTimeout", "time budget spent (time_budget_ms = 25000)"),
            (Error::GraphError("Graph refused the whole batch (400); none of its users was revoked.".into()), "graphError", "not usable"),
            (Error::UserNotFound { user: "a@contoso.com".into() }, "userNotFound", "a@contoso.com"),
        ];
        for (error, expected, says) in cases {
            let verification = judge(Err(&error), began(), 25000);
            let problem = verification.problem.unwrap();
            assert_eq!(problem.code, expected);
            assert!(problem.message.contains(says), "{}", problem.message);
            assert!(problem.message.contains("revocation itself succeeded"), "{}", problem.message);
            assert!(!problem.message.contains("none of its users"), "{}", problem.message);
            assert!(verification.valid_from.is_none());
        }
        let spent = budget_spent(1500);
        assert_eq!(code(&spent), Some("upstreamTimeout"));
        assert!(spent.problem.unwrap().message.starts_with("Not verified: time budget spent (time_budget_ms = 1500)"));
    }
}
