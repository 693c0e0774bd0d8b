//! The host seam: everything the flow needs from the host, as one small trait.
//!
//! The request flow (`service`, `revocation`, `session`, `pipeline`, `incoming`) reaches
//! the host only through [`Host`]: outbound HTTP, waiting, clocks, randomness, Spin
//! variables and the key-value store (values and atomic counters). `host::WasiHost` implements it on WASI
//! (the only implementation in the component, so the generic code is compiled once and
//! costs nothing in size); the unit tests implement it with a scripted fake that has a
//! virtual clock (`fake_host`), so the whole flow, `$batch` rounds included, runs
//! natively in `cargo test`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::transport::outbound::{OutboundRequest, OutboundResponse, SendFailure};

/// What the flow asks of the host. Single-threaded, like a Spin instance: the futures
/// need not be `Send`.
#[allow(async_fn_in_trait)]
pub trait Host {
    /// A Spin variable. `Ok(None)`: not set or not declared. `Err`: the host could not
    /// read it (its text is dropped: it could quote a secret store's answer).
    fn variable(&self, name: &str) -> Result<Option<String>, ()>;

    /// Sends one request, giving up after `timeout` with [`SendFailure::TimedOut`].
    /// Redirects are never followed.
    async fn send(&self, request: OutboundRequest, timeout: Duration) -> Result<OutboundResponse, SendFailure>;

    /// Waits `duration` without using the CPU.
    async fn sleep(&self, duration: Duration);

    /// Time on the host's monotonic clock, for budgets and durations.
    fn monotonic_now(&self) -> Duration;

    /// The wall-clock time, for HTTP-date `Retry-After` values and token expiry.
    fn wall_now(&self) -> SystemTime;

    /// Seconds since the Unix epoch, for token expiry shared across instances.
    fn unix_now(&self) -> u64 {
        self.wall_now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
    }

    /// A random number, for backoff jitter.
    fn random_u32(&self) -> u32;

    /// Fills `buffer` from a cryptographically secure source (`wasi:random/random`): the
    /// client assertion's `jti`, its PSS salt and the RSA blinding.
    fn random_bytes(&self, buffer: &mut [u8]);

    /// A value of the key-value store `default`; `None` when absent or when there is no store.
    fn kv_get(&self, key: &str) -> Option<Vec<u8>>;

    /// Best effort: a failed write costs a token request later, nothing else.
    fn kv_set(&self, key: &str, value: &[u8]);

    /// Best effort, like [`Host::kv_set`].
    fn kv_delete(&self, key: &str);

    /// Adds `delta` to the counter at `key` of the store `default` and returns the new
    /// value, in one atomic step across every instance sharing the store
    /// (`wasi:keyvalue/atomics` `increment`); a missing counter counts from zero. `Err`:
    /// no store, or the store failed (the abuse brake then lets the request through).
    fn kv_increment(&self, key: &str, delta: i64) -> Result<i64, ()>;
}
