//! Graph's answer to a revoke and to a lookup (status, headers, body), for a plain and a
//! `$` user: success only from a 2xx; errors well formed, their message free of raw
//! upstream text, any `Retry-After` passed on within the cap; the lookup judged as the
//! read-back of `verify` passes on only a date (`check_verification`).

#![no_main]

use graph_revoke::fuzzing::{check_verification, judge, retry_after_clocks, read_lookup_response, read_revoke_response, UserId};
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
        let read = read_lookup_response(&answer, &user, now);
        match &read {
            Ok(_) => assert!((200..300).contains(&answer.status), "found on a {}", answer.status),
            Err(error) => common::upstream_error(error),
        }
        // Judged against each clock, as the read-back of a revoke made then.
        for began in retry_after_clocks() {
            let proof = judge(read.as_ref(), began, 25_000);
            common::holds(check_verification(&proof));
            assert!(proof.problem.is_some() || read.is_ok(), "verified by a failed read");
        }
    }
});
