//! The router: `METHOD /path` on the first line. A Graph-shaped path's id goes on
//! through `UserId::parse` and the encoder, as the component does with it.

#![no_main]

use graph_revoke::fuzzing::{check_error, check_path_segment, route, Route, UserId};
use libfuzzer_sys::fuzz_target;

mod common;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (method, path) = text.split_once(' ').unwrap_or((&text, ""));
    match route(method, path) {
        Ok(Route::GraphShaped { raw_user_id }) => {
            assert!(method == "POST" && path.starts_with("/users/") && path.ends_with("/revokeSignInSessions"));
            if let Ok(id) = UserId::parse(&raw_user_id) {
                common::holds(check_path_segment(&id));
            }
        }
        Ok(Route::Revoke) => assert_eq!((method, path), ("POST", "/revoke")),
        Ok(Route::Health) => assert_eq!((method, path), ("GET", "/healthz")),
        Ok(Route::OpenApi) => assert_eq!((method, path), ("GET", "/openapi.json")),
        Err(error) => common::holds(check_error(&error)),
    }
});
