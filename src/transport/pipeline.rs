//! The outbound pipeline, one policy after another: the same `client-request-id` on
//! every try (set by the caller of [`send`]), `Retry-Attempt` on retries, a timeout
//! of whatever the time budget has left, and the retry policy of [`crate::transport::retry`].
//!
//! The host is reached through the seam ([`Host`]); what to wait for is decided by
//! pure code in [`crate::transport::retry`].

use std::cell::Cell;
use std::time::Duration;

use crate::transport::outbound::{OutboundRequest, OutboundResponse, SendFailure, TransportError};
use crate::transport::retry::{self, Next};
use crate::platform::seam::Host;

/// The time one incoming request may spend, retries included (`time_budget_ms`).
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    started: Duration,
    total: Duration,
}

impl Budget {
    /// A budget of `total` from `started` (a reading of [`Host::monotonic_now`] taken
    /// when the request arrived, so reading the body counts too).
    pub fn since(started: Duration, total: Duration) -> Budget {
        Budget { started, total }
    }

    /// Time spent so far, `now` being a reading of the same clock.
    pub fn elapsed(&self, now: Duration) -> Duration {
        now.saturating_sub(self.started)
    }

    pub fn remaining(&self, now: Duration) -> Duration {
        self.total.saturating_sub(self.elapsed(now))
    }

    pub fn total(&self) -> Duration {
        self.total
    }

    /// The budget in milliseconds, as `time_budget_ms` says it.
    pub fn millis(&self) -> u64 {
        u64::try_from(self.total.as_millis()).unwrap_or(u64::MAX)
    }
}

/// Which answers an endpoint retries, and how often.
pub struct RetryPolicy {
    pub max_retries: u32,
    pub retryable: fn(&OutboundResponse) -> bool,
}

/// Why [`send`] stopped without a usable answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// Still a retryable answer when retries or budget ran out; `retry_after` is what
    /// the caller should wait.
    Exhausted { last: OutboundResponse, retry_after: Duration },
    /// Never connected, after the retries the budget allowed (none for a permanent
    /// failure such as a host policy refusal).
    Unreachable { error: TransportError, retry_after: Duration },
    /// No answer before the budget ran out.
    TimedOut,
}

/// Sends `request` under `policy` within `budget`; `calls` counts every try (for the
/// log's outbound call count; a `Cell` so concurrent batches can share it).
pub async fn send(
    host: &impl Host,
    request: &OutboundRequest,
    policy: &RetryPolicy,
    budget: &Budget,
    calls: &Cell<u32>,
) -> Result<OutboundResponse, Failure> {
    let mut retries = 0;
    loop {
        let mut attempt = request.clone();
        if retries > 0 {
            attempt.headers.push(("retry-attempt", retries.to_string()));
        }
        let remaining = budget.remaining(host.monotonic_now());
        if remaining.is_zero() {
            return Err(Failure::TimedOut);
        }
        calls.set(calls.get() + 1);
        let (delay, failure) = match host.send(attempt, remaining).await {
            Ok(answer) if !(policy.retryable)(&answer) => return Ok(answer),
            Ok(answer) => {
                let delay = wait_before_retry(host, Some(&answer), retries);
                (delay, Failure::Exhausted { last: answer, retry_after: delay })
            }
            Err(SendFailure::TimedOut) => return Err(Failure::TimedOut),
            Err(SendFailure::Transport(error)) if !error.temporary => {
                return Err(Failure::Unreachable { error, retry_after: Duration::ZERO })
            }
            Err(SendFailure::Transport(error)) => {
                let delay = wait_before_retry(host, None, retries);
                (delay, Failure::Unreachable { error, retry_after: delay })
            }
        };
        match retry::next_step(retries, policy.max_retries, delay, budget.elapsed(host.monotonic_now()), budget.total()) {
            Next::Retry(wait) => {
                host.sleep(wait).await;
                retries += 1;
            }
            Next::GiveUp => return Err(failure),
        }
    }
}

/// How long to wait before retry number `retries` (0 for the first) after `answer`
/// (`None`: no answer at all): its `Retry-After`, else backoff with jitter. Also used
/// for `$batch` items, which carry their own `Retry-After`.
pub fn wait_before_retry(host: &impl Host, answer: Option<&OutboundResponse>, retries: u32) -> Duration {
    answer
        .and_then(|a| a.header("retry-after"))
        .and_then(|v| retry::parse_retry_after(v, host.wall_now()))
        .unwrap_or_else(|| retry::backoff(retries, host.random_u32()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::platform::fake_host::{FakeHost, Reply};

    fn request() -> OutboundRequest {
        OutboundRequest { method: "POST", url: "https://graph.test/v1.0/x".into(), headers: vec![("client-request-id", "cid".into())], body: vec![] }
    }

    fn send_on(host: &FakeHost, budget_s: u64) -> (Result<OutboundResponse, Failure>, u32) {
        let calls = Cell::new(0);
        let budget = Budget::since(host.now(), Duration::from_secs(budget_s));
        let policy = RetryPolicy { max_retries: 3, retryable: |a| retry::is_retryable_status(a.status) };
        let result = host.run(send(host, &request(), &policy, &budget, &calls));
        (result, calls.get())
    }

    #[test]
    fn retries_carry_retry_attempt_and_the_same_client_request_id() {
        let host = FakeHost::new();
        host.enqueue("POST", "/v1.0/x", Reply::status(503));
        host.enqueue("POST", "/v1.0/x", Reply::status(429).header("Retry-After", "2"));
        host.enqueue("POST", "/v1.0/x", Reply::status(204));
        let (result, calls) = send_on(&host, 25);
        assert_eq!((result.unwrap().status, calls), (204, 3));
        let sent = host.sent();
        let attempts: Vec<_> = sent.iter().map(|s| s.header("retry-attempt")).collect();
        assert_eq!(attempts, vec![None, Some("1"), Some("2")]);
        assert!(sent.iter().all(|s| s.header("client-request-id") == Some("cid")));
        // Backoff 0.75 s (no Retry-After), then the 2 s Graph asked for.
        assert_eq!(sent.iter().map(|s| s.at).collect::<Vec<_>>(), vec![Duration::ZERO, Duration::from_millis(750), Duration::from_millis(2750)]);
    }

    #[test]
    fn a_permanent_transport_failure_is_not_retried_and_a_temporary_one_is() {
        let host = FakeHost::new();
        host.enqueue("POST", "/v1.0/x", Reply::Unreachable { temporary: false });
        let (result, calls) = send_on(&host, 25);
        assert!(matches!(result, Err(Failure::Unreachable { retry_after, .. }) if retry_after.is_zero()));
        assert_eq!(calls, 1);

        let host = FakeHost::new();
        for _ in 0..4 {
            host.enqueue("POST", "/v1.0/x", Reply::Unreachable { temporary: true });
        }
        let (result, calls) = send_on(&host, 25);
        assert!(matches!(result, Err(Failure::Unreachable { error, .. }) if error.temporary));
        assert_eq!(calls, 4);
    }

    #[test]
    fn each_try_gets_only_what_is_left_of_the_budget() {
        let host = FakeHost::new();
        host.enqueue("POST", "/v1.0/x", Reply::status(503).header("Retry-After", "1"));
        host.enqueue("POST", "/v1.0/x", Reply::Hang);
        let (result, calls) = send_on(&host, 5);
        assert_eq!((result, calls), (Err(Failure::TimedOut), 2));
        assert_eq!(host.now(), Duration::from_secs(5));

        // A spent budget sends nothing.
        let host = FakeHost::new();
        let (result, calls) = send_on(&host, 0);
        assert_eq!((result, calls), (Err(Failure::TimedOut), 0));
    }
}
