//! The abuse brake: at most `max_revocations` users per caller per window (SPEC.md,
//! "Caller authentication"), so a leaked caller credential cannot sign out a whole
//! organisation.
//!
//! Pure: window arithmetic, the store keys, and the decision from a counter value. The
//! flow (`service`) does the counting in the key-value store `default` with
//! `wasi:keyvalue/atomics` `increment`, which adds and returns the new value in one
//! atomic step on every store Spin offers (SQLite in a transaction, Redis `INCRBY`), so
//! replicas sharing a store count together and no read-then-write race exists: each
//! request sees its own users already added, and is allowed only if that sum is within
//! the limit. A refused request takes its users back (`delta` is signed), so a refusal
//! costs the caller nothing; if the give-back fails the count is only too high, which
//! refuses sooner, never later.
//!
//! Windows are fixed (aligned to the Unix epoch), [`WINDOW`] long: a caller may revoke
//! the limit at the end of one window and again at the start of the next, so up to twice
//! the limit within a short span around a boundary. The window is fixed rather than a
//! second variable because every manifest variable costs a vault lookup per request in
//! a vault-only layout.
//!
//! Counter values are never read or written except through `increment`: Spin's SQLite
//! store keeps them as 8 little-endian bytes and Redis as decimal text. Old windows do
//! not pile up: when a caller starts a new window (its counter came back equal to what
//! was added), a per-caller marker lists its windows still in the store, and those that
//! ended before the previous one began are deleted (best effort). So three keys per
//! caller remain at most: the current window, the previous one, and the marker; a caller
//! that stops calling leaves them (a few bytes) until it calls again. Two new-window
//! requests of one caller racing on the marker can leave a stray counter; every
//! `graph-revoke/brake/` key may be deleted by hand at any time, at the cost of
//! forgetting that window's count.

use std::time::Duration;

/// The length of a window: 10 minutes (SPEC.md, issue 13: "300 users per 10 minutes").
pub const WINDOW: Duration = Duration::from_secs(10 * 60);

/// Where the counters live in the store `default`, next to the token cache
/// (`graph-revoke/token/...`). `v1`: bumped if the key shape or meaning changes.
const PREFIX: &str = "graph-revoke/brake/v1";

/// The window a moment falls in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// Whole windows since the Unix epoch.
    pub index: u64,
    /// Seconds until the window ends, at least 1: the `Retry-After` of a refusal.
    pub ends_in: u64,
}

/// The window `unix_now` (seconds) falls in.
pub fn window(unix_now: u64) -> Window {
    let length = WINDOW.as_secs();
    Window { index: unix_now / length, ends_in: (length - unix_now % length).max(1) }
}

/// Where one caller's keys live. `caller` is the identity the caller check established
/// (`apiKey:2`, `oid:<guid>`): never a secret, never raw input. It is scoped by tenant and
/// client (the deployment), like the token cache, so deployments sharing one store (one
/// Redis behind several apps) never count each other's `apiKey:1` together.
pub fn caller_prefix(tenant: &str, client_id: &str, caller: &str) -> String {
    format!("{PREFIX}/{tenant}/{client_id}/{caller}")
}

/// The counter of the caller at `prefix` ([`caller_prefix`]) in window `index`.
pub fn counter_key(prefix: &str, index: u64) -> String {
    format!("{prefix}/{index}")
}

/// The marker that lists the caller's windows still in the store, for removing them
/// once they are over.
pub fn marker_key(prefix: &str) -> String {
    format!("{prefix}/windows")
}

/// The marker's value: the window indexes, comma-separated decimal digits. (Written out
/// by hand: `join` and `collect::<Option<_>>` cost the component a kilobyte.)
pub fn encode_marker(windows: &[u64]) -> Vec<u8> {
    let mut text = String::new();
    for (i, w) in windows.iter().enumerate() {
        if i > 0 {
            text.push(',');
        }
        text += &w.to_string();
    }
    text.into_bytes()
}

/// The windows a marker lists; empty if it is not one we wrote.
pub fn decode_marker(bytes: &[u8]) -> Vec<u64> {
    let mut windows = Vec::new();
    for part in bytes.split(|&b| b == b',') {
        let digits = !part.is_empty() && part.iter().all(u8::is_ascii_digit);
        match std::str::from_utf8(part).ok().filter(|_| digits).and_then(|p| p.parse().ok()) {
            Some(w) => windows.push(w),
            None => return Vec::new(),
        }
    }
    windows
}

/// When a caller starts window `index`: of its windows the marker lists, those to delete
/// now, and the list the marker keeps. A window is deleted once the one after it is over
/// too, never sooner: a replica whose clock lags (or a refused request giving its users
/// back just after a boundary) may still count in the previous window, and deleting it
/// under them would restart its count.
pub fn sweep(listed: &[u64], index: u64) -> (Vec<u64>, Vec<u64>) {
    // A handful of windows: linear scans, and no sort (a sort costs the component KiBs).
    let (mut delete, mut keep) = (Vec::new(), Vec::new());
    for &w in listed {
        let list = if w.saturating_add(1) < index { &mut delete } else { &mut keep };
        if w != index && !list.contains(&w) {
            list.push(w);
        }
    }
    let at = keep.iter().position(|&w| w > index).unwrap_or(keep.len());
    keep.insert(at, index);
    (delete, keep)
}

/// What the counter's new value means for a request that added `added` users.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Within the limit: go on. `new_window`: the counter was zero before (the first
    /// request of the caller in this window), so the caller's previous window can go.
    Allow { new_window: bool },
    /// Past the limit: refuse, send nothing, give the users back.
    Refuse,
}

/// Allowed when the count, this request's users included, is within `limit`.
pub fn decide(count: i64, added: u64, limit: u64) -> Decision {
    match u64::try_from(count) {
        Ok(count) if count <= limit => Decision::Allow { new_window: count == added },
        // Negative: a store that lost its value while a give-back was in flight; the
        // users were added, so the true count is at least `added`.
        Err(_) if added <= limit => Decision::Allow { new_window: false },
        _ => Decision::Refuse,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn windows_are_ten_minutes_from_the_epoch() {
        assert_eq!(window(0), Window { index: 0, ends_in: 600 });
        assert_eq!(window(599), Window { index: 0, ends_in: 1 });
        assert_eq!(window(600), Window { index: 1, ends_in: 600 });
        assert_eq!(window(1_795_000_000), Window { index: 2_991_666, ends_in: 200 });
        assert_eq!(window(u64::MAX).ends_in, 600 - u64::MAX % 600);
    }

    #[test]
    fn keys_name_the_deployment_the_caller_and_the_window() {
        let client = "11111111-2222-3333-4444-555555555555";
        let prefix = caller_prefix("contoso.onmicrosoft.com", client, "apiKey:2");
        assert_eq!(counter_key(&prefix, 2_991_666), format!("graph-revoke/brake/v1/contoso.onmicrosoft.com/{client}/apiKey:2/2991666"));
        let oid = caller_prefix("contoso.onmicrosoft.com", client, "oid:0b2c4f4e-1f0a-4d3c-9a8b-7c6d5e4f3a2b");
        assert_eq!(marker_key(&oid), format!("graph-revoke/brake/v1/contoso.onmicrosoft.com/{client}/oid:0b2c4f4e-1f0a-4d3c-9a8b-7c6d5e4f3a2b/windows"));
        let key = |tenant: &str, caller: &str, w: u64| counter_key(&caller_prefix(tenant, client, caller), w);
        assert_ne!(key("a.com", "apiKey:1", 7), key("a.com", "apiKey:2", 7));
        assert_ne!(key("a.com", "apiKey:1", 7), key("a.com", "apiKey:1", 8));
        assert_ne!(key("a.com", "apiKey:1", 7), key("b.com", "apiKey:1", 7));
    }

    #[test]
    fn markers_round_trip_and_foreign_values_are_ignored() {
        assert_eq!(encode_marker(&[2_991_665, 2_991_666]), b"2991665,2991666");
        assert_eq!(decode_marker(&encode_marker(&[2_991_665, 2_991_666])), vec![2_991_665, 2_991_666]);
        assert_eq!(decode_marker(b"7"), vec![7]);
        for foreign in [&b""[..], b"-1", b" 7", b"7\n", b"7,,8", b"7,x", b"\x07\0\0\0\0\0\0\0", b"99999999999999999999999"] {
            assert_eq!(decode_marker(foreign), Vec::<u64>::new(), "{foreign:?}");
        }
    }

    #[test]
    fn a_window_is_swept_once_the_next_one_is_over_too() {
        // Every window in use: the previous one stays, the one before goes.
        assert_eq!(sweep(&[8, 9], 10), (vec![8], vec![9, 10]));
        assert_eq!(sweep(&[9], 10), (vec![], vec![9, 10]));
        // A caller back after a pause: everything it left goes.
        assert_eq!(sweep(&[3, 4], 10), (vec![3, 4], vec![10]));
        // No marker yet (or a foreign one), a repeated start, a replica ahead in time.
        assert_eq!(sweep(&[], 10), (vec![], vec![10]));
        assert_eq!(sweep(&[9, 10], 10), (vec![], vec![9, 10]));
        assert_eq!(sweep(&[11], 10), (vec![], vec![10, 11]));
        assert_eq!(sweep(&[u64::MAX], 0), (vec![], vec![0, u64::MAX]));
    }

    #[test]
    fn the_limit_itself_is_allowed_one_more_is_not() {
        assert_eq!(decide(300, 1, 300), Decision::Allow { new_window: false });
        assert_eq!(decide(301, 1, 300), Decision::Refuse);
        assert_eq!(decide(20, 20, 300), Decision::Allow { new_window: true });
        assert_eq!(decide(310, 20, 300), Decision::Refuse);
        // A batch bigger than the limit never passes, even first in its window.
        assert_eq!(decide(301, 301, 300), Decision::Refuse);
        assert_eq!(decide(-5, 3, 300), Decision::Allow { new_window: false });
        assert_eq!(decide(-5, 301, 300), Decision::Refuse);
    }

    proptest! {
        #[test]
        fn retry_after_ends_the_window_exactly(now in any::<u64>()) {
            let w = window(now);
            prop_assert!((1..=600).contains(&w.ends_in));
            // A moment `ends_in` later is in the next window; one second earlier is not.
            if let Some(later) = now.checked_add(w.ends_in) {
                prop_assert_eq!(window(later).index, w.index + 1);
                prop_assert_eq!(window(later - 1).index, w.index);
            }
        }

        /// Whatever order concurrent requests' increments and give-backs land in, the
        /// users of allowed requests never sum past the limit.
        #[test]
        fn allowed_users_never_pass_the_limit(
            sizes in proptest::collection::vec(1u64..40, 1..30),
            limit in 1u64..100,
            order in proptest::collection::vec(any::<bool>(), 0..60),
        ) {
            // Each request increments, then (if refused) gives back later; `order` picks
            // whether the next event is a pending give-back or the next increment.
            let (mut counter, mut allowed, mut pending) = (0i64, 0u64, Vec::new());
            let mut requests = sizes.iter().copied();
            let mut choices = order.iter().copied().chain(std::iter::repeat(false));
            loop {
                let give_back = !pending.is_empty() && choices.next().unwrap_or(false);
                if give_back {
                    counter -= pending.pop().unwrap() as i64;
                    continue;
                }
                let Some(n) = requests.next() else { break };
                counter += n as i64;
                match decide(counter, n, limit) {
                    Decision::Allow { .. } => allowed += n,
                    Decision::Refuse => pending.push(n),
                }
                prop_assert!(allowed <= limit, "allowed {} of limit {}", allowed, limit);
            }
        }
    }
}
