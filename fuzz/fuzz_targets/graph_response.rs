//! Graph's answer to a revoke and to a dry run's lookup (status, headers, body), for a
//! plain and a `$` user: success only from a 2xx; errors well formed, their message
//! free of raw upstream text, any `Retry-After` passed on within the cap.

#![no_main]

use graph_revoke::fuzzing::{retry_after_clocks, read_lookup_response, read_revoke_response, UserId};
use libfuzzer_sys::fuzz_target;

mod common;

fuzz_target!(|data: &[u8]| {
    // An HTTP-date Retry-After is read against a clock: the epoch, so every date is far ahead and the cap is exercised.
    let now = retry_after_clocks()[0];
    let answer = common::response(data);
    for user in ["adele@contoso.com", "$o'hara@contoso.com"] {
        let user = UserId::parse(user).unwrap();
        match read_revoke_response(&answer, &user, now) {
            Ok(_) => assert!((200..300).contains(&answer.status), "revoked on a {}", answer.status),
            Err(error) => common::upstream_error(&error),
        }
        match read_lookup_response(&answer, &user, now) {
            Ok(_) => assert!((200..300).contains(&answer.status), "found on a {}", answer.status),
            Err(error) => common::upstream_error(&error),
        }
    }
});
