//! Graph's answer to a `$batch` (outer status, headers, body): items only from a 200 or
//! 424; each item's answer then read as a single call's, with the same promises (a
//! lookup also judged as the read-back of `verify`).

#![no_main]

use graph_revoke::fuzzing::{
    check_verification, judge, retry_after_clocks, read_batch_response, read_lookup_response, read_revoke_response, UserId,
};
use libfuzzer_sys::fuzz_target;

mod common;

fuzz_target!(|data: &[u8]| {
    // An HTTP-date Retry-After is read against a clock: the epoch, so every date is far ahead and the cap is exercised.
    let now = retry_after_clocks()[0];
    let answer = common::response(data);
    let user = UserId::parse("adele@contoso.com").unwrap();
    match read_batch_response(&answer) {
        Ok(items) => {
            assert!(matches!(answer.status, 200 | 424), "items from a {}", answer.status);
            for item in items.values() {
                match read_revoke_response(item, &user, now) {
                    Ok(_) => assert!((200..300).contains(&item.status)),
                    Err(error) => common::upstream_error(&error),
                }
                let read = read_lookup_response(item, &user, now);
                match &read {
                    Ok(_) => assert!((200..300).contains(&item.status)),
                    Err(error) => common::upstream_error(error),
                }
                common::holds(check_verification(&judge(read.as_ref(), retry_after_clocks()[1], 25_000)));
            }
        }
        Err(error) => common::upstream_error(&error),
    }
});
