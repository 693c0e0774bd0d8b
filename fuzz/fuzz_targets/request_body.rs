//! What a caller sends to the revoke routes: a head with `content-type:` and `query:`
//! lines (each optional), a blank line, then the body. Every rule either passes or
//! answers a well-formed 4xx; every id a body names goes through the id parser and
//! encoder as the component does.

#![no_main]

use graph_revoke::fuzzing::{
    check_content_type, check_error, check_graph_shaped_body, check_path_segment, parse_revoke_body, read_query,
    UserId, Users, MAX_BODY_BYTES,
};
use libfuzzer_sys::fuzz_target;

mod common;

fuzz_target!(|data: &[u8]| {
    let (head, body) = common::split(data);
    if body.len() > MAX_BODY_BYTES {
        return; // the handler answers 413 before any of this
    }
    let headers: Vec<_> = head.iter().filter_map(|l| common::header(l)).collect();
    let value = |name: &str| headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str());

    if let Err(error) = check_content_type(value("content-type"), body) {
        common::holds(check_error(&error));
        assert_eq!(error.status(), 415, "{error:?}");
    }
    if let Err(error) = read_query(value("query").unwrap_or("")) {
        common::holds(check_error(&error));
        assert_eq!(error.status(), 400, "{error:?}");
    }
    if let Err(error) = check_graph_shaped_body(value("content-type"), body) {
        common::holds(check_error(&error));
        assert!(matches!(error.status(), 400 | 415), "{error:?}");
    }
    match parse_revoke_body(body) {
        Ok(request) => {
            let ids: Vec<&String> = match &request.users {
                Users::One(id) => vec![id],
                Users::Many { ids, .. } => {
                    assert!(!ids.is_empty(), "a set of no users was accepted");
                    for (label, _) in ids {
                        assert!(label.starts_with("userIds[") || label.starts_with("entities["), "{label}");
                    }
                    ids.iter().map(|(_, id)| id).collect()
                }
            };
            for id in ids {
                if let Ok(id) = UserId::parse(id) {
                    common::holds(check_path_segment(&id));
                }
            }
        }
        Err(error) => {
            common::holds(check_error(&error));
            assert_eq!(error.status(), 400, "{error:?}");
        }
    }
});
