//! What became of each of many users, and which status the whole answer gets.
//!
//! Pure: `revocation` produces the results, `response` writes them; the rule that picks
//! the status lives here alone.

use crate::error::Error;
use crate::graph::FoundUser;

/// `Retry-After` when every user failed temporarily but no wait is known (every batch
/// timed out): the first step of our own backoff, so the caller's retry does not hammer.
pub const UNKNOWN_WAIT_SECONDS: u64 = 1;

/// What became of one user of many.
#[derive(Debug, Clone)]
pub struct ItemResult {
    /// Graph's status for the item, or the error's when Graph gave none.
    pub status: u16,
    pub outcome: Result<Done, Error>,
}

/// A user's successful outcome.
#[derive(Debug, Clone)]
pub enum Done {
    /// Revoked; Graph's boolean.
    Revoked(bool),
    /// Found by a dry run.
    Found(FoundUser),
}

/// How to answer a request for many users.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// 200: every user revoked (or found, in a dry run).
    AllDone,
    /// 207: some did not succeed.
    Partial,
    /// No user succeeded and every failure is temporary: answer `status` (`code` for the
    /// log) with `Retry-After: retry_after`, because automation never retries a 2xx.
    Retry { status: u16, code: &'static str, retry_after: u64 },
}

/// The status rule for many users (SPEC.md, "Responses"):
/// - every user done: 200;
/// - no user succeeded (Graph answered 2xx for none) and every failure is temporary
///   ([`Error::is_temporary`]: throttled, unavailable with a wait, timed out): the
///   failures' own status when they all share one code (all throttled: 429 `throttled`;
///   all timed out: 504 `upstreamTimeout`; all unavailable: 503 `graphUnavailable`, or
///   `identityPlatformUnavailable` when a token refresh failed for everyone); when the
///   kinds mix, 503 `graphUnavailable`: each specific status claims something true only
///   if it holds for every user ("you are throttled", "the budget ran out"), while "Graph
///   could not serve this now, retry after" holds for any mix. `Retry-After` is the
///   longest wait among them, or [`UNKNOWN_WAIT_SECONDS`] when none is known;
/// - otherwise 207.
pub fn verdict(results: &[ItemResult]) -> Verdict {
    let done = |r: &ItemResult| matches!(r.outcome, Ok(Done::Revoked(true)) | Ok(Done::Found(_)));
    if results.iter().all(done) {
        return Verdict::AllDone;
    }
    let failures: Vec<&Error> = results.iter().filter_map(|r| r.outcome.as_ref().err()).collect();
    if failures.len() < results.len() || !failures.iter().all(|e| e.is_temporary()) {
        return Verdict::Partial;
    }
    let first = failures[0];
    let retry_after = failures.iter().filter_map(|e| e.retry_after()).max().unwrap_or(UNKNOWN_WAIT_SECONDS);
    let (status, code) = if failures.iter().all(|e| e.code() == first.code()) {
        (first.status(), first.code())
    } else {
        (503, "graphUnavailable")
    };
    Verdict::Retry { status, code, retry_after }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failed(error: Error) -> ItemResult {
        ItemResult { status: error.status(), outcome: Err(error) }
    }

    fn revoked() -> ItemResult {
        ItemResult { status: 200, outcome: Ok(Done::Revoked(true)) }
    }

    fn throttled(s: u64) -> ItemResult {
        failed(Error::Throttled { retry_after: Some(s) })
    }

    fn unavailable(s: u64) -> ItemResult {
        failed(Error::GraphUnavailable { detail: "Graph answered 503".into(), retry_after: Some(s) })
    }

    fn timed_out() -> ItemResult {
        failed(Error::UpstreamTimeout { budget_ms: 1000 })
    }

    #[test]
    fn all_done_is_200_and_any_success_among_failures_is_207() {
        assert_eq!(verdict(&[revoked(), revoked()]), Verdict::AllDone);
        assert_eq!(verdict(&[revoked(), throttled(30)]), Verdict::Partial);
        // Graph's `false` is an answer, not temporary trouble: someone got a 2xx.
        let not_revoked = ItemResult { status: 200, outcome: Ok(Done::Revoked(false)) };
        assert_eq!(verdict(&[not_revoked, throttled(30)]), Verdict::Partial);
    }

    #[test]
    fn one_lasting_failure_keeps_207() {
        let missing = failed(Error::UserNotFound { user: "u".into() });
        assert_eq!(verdict(&[missing, throttled(30)]), Verdict::Partial);
        let refused = failed(Error::GraphUnavailable { detail: "HttpRequestDenied".into(), retry_after: None });
        assert_eq!(verdict(&[refused, throttled(30)]), Verdict::Partial);
    }

    #[test]
    fn one_kind_of_temporary_failure_keeps_its_status_and_the_longest_wait() {
        assert_eq!(
            verdict(&[throttled(3), throttled(30)]),
            Verdict::Retry { status: 429, code: "throttled", retry_after: 30 }
        );
        assert_eq!(
            verdict(&[unavailable(2), unavailable(1)]),
            Verdict::Retry { status: 503, code: "graphUnavailable", retry_after: 2 }
        );
        assert_eq!(
            verdict(&[timed_out(), timed_out()]),
            Verdict::Retry { status: 504, code: "upstreamTimeout", retry_after: UNKNOWN_WAIT_SECONDS }
        );
        let identity = failed(Error::IdentityPlatformUnavailable { detail: "d".into(), retry_after: Some(5) });
        assert_eq!(
            verdict(&[identity]),
            Verdict::Retry { status: 503, code: "identityPlatformUnavailable", retry_after: 5 }
        );
    }

    #[test]
    fn mixed_kinds_are_503_with_the_longest_wait() {
        assert_eq!(
            verdict(&[throttled(30), unavailable(2)]),
            Verdict::Retry { status: 503, code: "graphUnavailable", retry_after: 30 }
        );
        assert_eq!(
            verdict(&[timed_out(), throttled(7)]),
            Verdict::Retry { status: 503, code: "graphUnavailable", retry_after: 7 }
        );
    }
}
