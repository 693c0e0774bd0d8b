//! A managed identity endpoint's answer (IMDS or App Service, status, headers, body): a
//! token only from a 2xx with a non-empty `access_token`, its lifetime read from
//! `expires_in` or `expires_on` (numbers or strings) without overflow at any clock;
//! anything else a well-formed error whose message holds no upstream text unfiltered.

#![no_main]

use graph_revoke::fuzzing::read_identity_response;
use libfuzzer_sys::fuzz_target;

mod common;

fuzz_target!(|data: &[u8]| {
    let answer = common::response(data);
    for (app_service, user_assigned) in [(false, false), (false, true), (true, false), (true, true)] {
        for now in [0, 1_795_000_000, u64::MAX] {
            match read_identity_response(app_service, user_assigned, &answer, now) {
                Ok(token) => {
                    assert!((200..300).contains(&answer.status), "a token from a {}", answer.status);
                    assert!(!token.value.expose().is_empty(), "an empty token");
                }
                Err(error) => common::upstream_error(&error),
            }
        }
    }
});
