//! `UserId::parse` and the path encoder: whatever text parses, its path segment is
//! safe in a URL and decodes back to the id, and the id parses back to itself.

#![no_main]

use graph_revoke::fuzzing::{check_path_segment, UserId};
use libfuzzer_sys::fuzz_target;

mod common;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(id) = UserId::parse(&text) {
        common::holds(check_path_segment(&id));
        assert_eq!(UserId::parse(&id.to_string()).as_ref(), Ok(&id), "the id does not parse back to itself");
        // Every id is a userPrincipalName or an object id: an ASCII text with no space.
        assert!(id.to_string().bytes().all(|b| b.is_ascii_graphic()), "{id:?}");
    }
});
