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
/// or an HTTP-date, relative to `now`. A date in the past means no wait. Every form is
/// capped at [`MAX_RETRY_AFTER`]. The one reader of `Retry-After` in the component:
/// single calls, `$batch` items and their provisional errors all come through here.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    let wait = if value.starts_with(|c: char| c.is_ascii_digit()) {
        parse_seconds(value)?
    } else {
        let at = httpdate::parse_http_date(value).ok()?;
        at.duration_since(now).unwrap_or(Duration::ZERO)
    };
    Some(wait.min(MAX_RETRY_AFTER))
}

/// Longest `Retry-After` taken at its word, in any form: a day. Graph asks for seconds
/// to minutes; anything longer is a broken or hostile answer, and the wait is passed on
/// to the caller's retry policy, which should not be told to come back in 8,000 years.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(86_400);

/// `7` or `2.128`: digits, optionally a point and more digits. Integer arithmetic
/// (no float parsing, which would add kilobytes to the component).
fn parse_seconds(text: &str) -> Option<Duration> {
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(whole) || !(fraction.is_empty() || digits(fraction)) {
        return None;
    }
    let seconds = whole.get(..whole.len().min(6))?.parse::<u64>().ok()?;
    let seconds = if whole.len() > 6 { u64::MAX / 2 } else { seconds };
    let nanos = fraction.bytes().chain(std::iter::repeat(b'0')).take(9).fold(0u32, |n, b| n * 10 + u32::from(b - b'0'));
    Some(Duration::new(seconds, nanos))
}

/// Exponential backoff with jitter for retry number `retry` (0 for the first retry):
/// `BASE_DELAY * 2^retry`, scaled into `[1/2, 1)` by `jitter` (any `u32`), so that many
/// instances throttled together do not come back together.
pub fn backoff(retry: u32, jitter: u32) -> Duration {
    let full = BASE_DELAY.saturating_mul(1 << retry.min(10)).min(MAX_BACKOFF);
    let half = u64::try_from(full.as_nanos() / 2).unwrap_or(u64::MAX);
    Duration::from_nanos(half + ((u128::from(half) * u128::from(jitter)) >> 32) as u64)
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
        assert_eq!(parse_retry_after("0.05", now()), Some(Duration::from_millis(50)));
        assert_eq!(parse_retry_after("1.", now()), Some(Duration::from_secs(1)));
        assert_eq!(parse_retry_after("99999999999", now()), Some(MAX_RETRY_AFTER));
        assert_eq!(parse_retry_after("Wed, 25 Nov 2026 10:00:05 GMT", now()), Some(Duration::from_secs(5)));
        assert_eq!(parse_retry_after("Wed, 25 Nov 2026 09:59:00 GMT", now()), Some(Duration::ZERO));
        // Obsolete date formats httpdate reads (RFC 850, asctime) count as dates too.
        assert_eq!(parse_retry_after("Wednesday, 25-Nov-26 10:00:09 GMT", now()), Some(Duration::from_secs(9)));
        for bad in ["", "soon", "-1", "NaN", "inf", "1.2.3", "1e3", ".5", "5 s"] {
            assert_eq!(parse_retry_after(bad, now()), None, "{bad}");
        }
    }

    #[test]
    fn every_form_is_capped_at_the_same_maximum() {
        for far in [
            "Fri, 31 Dec 9999 23:59:59 GMT",
            "Thu, 26 Nov 2026 10:00:01 GMT",
            "86401",
            "86400.5",
            "99999999999999999999999999",
            "999999.999999999999",
        ] {
            assert_eq!(parse_retry_after(far, now()), Some(MAX_RETRY_AFTER), "{far}");
        }
        assert_eq!(parse_retry_after("Thu, 26 Nov 2026 09:59:59 GMT", now()), Some(MAX_RETRY_AFTER - Duration::from_secs(1)));
        assert_eq!(whole_seconds(MAX_RETRY_AFTER), 86_400);
    }

    #[test]
    fn backoff_doubles_and_jitters_within_half() {
        assert_eq!(backoff(0, 0), Duration::from_millis(500));
        let high = backoff(0, u32::MAX);
        assert!(high > Duration::from_millis(999) && high < Duration::from_secs(1), "{high:?}");
        assert_eq!(backoff(2, 1 << 31), Duration::from_secs(3));
        assert!(backoff(20, u32::MAX) < MAX_BACKOFF && backoff(20, u32::MAX) > MAX_BACKOFF * 99 / 100);
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
