//! The retry policy: which answers are worth another try, how long to wait, and when
//! to stop and hand the wait to the caller instead.
//!
//! Pure: the caller supplies the clock readings and a random number. Modelled on the
//! Microsoft Graph SDKs' RetryHandler (429/503/504, `Retry-After`, exponential backoff,
//! at most 3 retries), with one change: the budget is checked *after* the next delay is
//! known, so a wait that would overrun `time_budget_ms` is never started. The caller
//! then gets 429/503 with `Retry-After` at once, and its own retry policy takes over
//! (Logic Apps retries 408/429/5xx four times).

use std::time::{Duration, SystemTime};

/// Most retries of a Graph call after the first attempt (Graph SDK default).
pub const MAX_RETRIES: u32 = 3;
/// First backoff when Graph gave no `Retry-After`; doubles on each retry.
const BASE_DELAY: Duration = Duration::from_secs(1);
/// Longest single backoff we compute ourselves.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Statuses worth another try: throttled, unavailable, gateway timeout.
pub fn is_retryable_status(status: u16) -> bool {
    matches!(status, 429 | 503 | 504)
}

/// `Retry-After` as whole seconds (`7`), fractional seconds (`2.128`, which Graph sends)
/// or an HTTP-date, relative to `now`. A date in the past means no wait.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<f64>() {
        return (seconds.is_finite() && seconds >= 0.0).then(|| Duration::from_secs_f64(seconds.min(86_400.0)));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// Exponential backoff with jitter for retry number `retry` (0 for the first retry):
/// `BASE_DELAY * 2^retry`, scaled by `0.5 + jitter / 2` where `jitter` is in `[0, 1)`,
/// so that many instances throttled together do not come back together.
pub fn backoff(retry: u32, jitter: f64) -> Duration {
    let full = BASE_DELAY.saturating_mul(1 << retry.min(10)).min(MAX_BACKOFF);
    full.mul_f64(0.5 + jitter.clamp(0.0, 1.0) / 2.0)
}

/// What to do after a retryable failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Wait this long, then try again.
    Retry(Duration),
    /// Stop now and hand the wait to the caller.
    GiveUp,
}

/// Decides after `retries_done` of at most `max_retries` retries have failed, given the
/// `delay` the next retry would need, the time `elapsed` since the request began and
/// the `budget`.
pub fn next_step(retries_done: u32, max_retries: u32, delay: Duration, elapsed: Duration, budget: Duration) -> Next {
    if retries_done < max_retries && elapsed.saturating_add(delay) < budget {
        Next::Retry(delay)
    } else {
        Next::GiveUp
    }
}

/// Whole seconds for a `Retry-After` header, rounded up so the caller never comes back early.
pub fn whole_seconds(delay: Duration) -> u64 {
    delay.as_secs() + u64::from(delay.subsec_nanos() > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> SystemTime {
        httpdate::parse_http_date("Wed, 25 Nov 2026 10:00:00 GMT").unwrap()
    }

    #[test]
    fn retry_after_in_all_three_forms() {
        assert_eq!(parse_retry_after("7", now()), Some(Duration::from_secs(7)));
        assert_eq!(parse_retry_after(" 2.128 ", now()), Some(Duration::from_millis(2128)));
        assert_eq!(parse_retry_after("Wed, 25 Nov 2026 10:00:05 GMT", now()), Some(Duration::from_secs(5)));
        assert_eq!(parse_retry_after("Wed, 25 Nov 2026 09:59:00 GMT", now()), Some(Duration::ZERO));
        for bad in ["", "soon", "-1", "NaN", "inf"] {
            assert_eq!(parse_retry_after(bad, now()), None, "{bad}");
        }
    }

    #[test]
    fn backoff_doubles_and_jitters_within_half() {
        assert_eq!(backoff(0, 0.0), Duration::from_millis(500));
        let high = backoff(0, 0.999_999);
        assert!(high > Duration::from_millis(999) && high < Duration::from_secs(1), "{high:?}");
        assert_eq!(backoff(2, 1.0), Duration::from_secs(4));
        assert_eq!(backoff(20, 1.0), MAX_BACKOFF);
    }

    #[test]
    fn at_most_three_retries() {
        let budget = Duration::from_secs(60);
        for done in 0..MAX_RETRIES {
            assert_eq!(next_step(done, MAX_RETRIES, Duration::from_secs(1), Duration::ZERO, budget), Next::Retry(Duration::from_secs(1)));
        }
        assert!(matches!(next_step(MAX_RETRIES, MAX_RETRIES, Duration::from_secs(1), Duration::ZERO, budget), Next::GiveUp));
    }

    #[test]
    fn a_wait_that_would_overrun_the_budget_is_handed_to_the_caller() {
        let step = next_step(0, MAX_RETRIES, Duration::from_secs(30), Duration::from_secs(1), Duration::from_secs(25));
        assert_eq!(step, Next::GiveUp);
        assert_eq!(whole_seconds(Duration::from_millis(2128)), 3);
        assert_eq!(whole_seconds(Duration::from_secs(30)), 30);
    }
}
