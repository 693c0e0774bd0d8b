//! The identity platform's answer (status, headers, body): a token only from a 2xx with
//! a non-empty `access_token`; anything else a well-formed error whose message holds
//! no upstream text unfiltered.

#![no_main]

use graph_revoke::fuzzing::read_token_response;
use libfuzzer_sys::fuzz_target;

mod common;

fuzz_target!(|data: &[u8]| {
    let answer = common::response(data);
    match read_token_response(&answer) {
        Ok(token) => {
            assert!((200..300).contains(&answer.status), "a token from a {}", answer.status);
            assert!(!token.value.expose().is_empty(), "an empty token");
        }
        Err(error) => common::upstream_error(&error),
    }
});
