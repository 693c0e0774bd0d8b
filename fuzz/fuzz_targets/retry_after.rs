//! `Retry-After` in every form (seconds, fractions, HTTP-dates, junk): never a panic,
//! never a wait over the cap, whatever the clock says.

#![no_main]

use graph_revoke::fuzzing::check_retry_after;
use libfuzzer_sys::fuzz_target;

mod common;

fuzz_target!(|data: &[u8]| {
    common::holds(check_retry_after(&String::from_utf8_lossy(data)));
});
