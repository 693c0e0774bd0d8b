//! The JSON answers: success, health and the OData error shape.
//!
//! Pure: the handler hands over what happened and the ids, and gets back status,
//! headers and body. Errors use Graph's shape so Logic Apps and Graph users read
//! them without new parsing.

use serde_json::json;

use crate::error::Error;
use crate::graph::FoundUser;
use crate::graph::outcome::{Done, ItemResult, Verdict};
use crate::inbound::request_body::{Derived, Skipped};
use crate::inbound::sentinel::Source;
use crate::settings::Problems;
use crate::reply::trace::Correlation;
use crate::inbound::user_id::UserId;
use crate::graph::verification::{self, Verification};

/// A finished answer, ready to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    fn json(status: u16, body: serde_json::Value, correlation: &Correlation) -> Reply {
        let mut headers = vec![
            ("content-type".to_string(), "application/json".to_string()),
            ("cache-control".to_string(), "no-store".to_string()),
            ("client-request-id".to_string(), correlation.client_request_id.clone()),
        ];
        if let Some(id) = &correlation.graph_request_id {
            headers.push(("request-id".to_string(), id.clone()));
        }
        Reply { status, headers, body: body.to_string().into_bytes() }
    }
}

/// `200 {"value": ..., "warnings"?: [...]}`: one user revoked; with `verify`, the proof
/// (`signInSessionsValidFrom`, `verified`, `verification`), which never changes the status.
pub fn revoked(value: bool, warnings: &[String], proof: Option<&Verification>, correlation: &Correlation) -> Reply {
    let mut body = json!({ "value": value });
    if !warnings.is_empty() {
        body["warnings"] = json!(warnings);
    }
    if let Some(proof) = proof {
        proof.write(&mut body);
    }
    Reply::json(200, body, correlation)
}

/// `200 {"value": false, "whatIf": true, "user": {...}}`: a dry run found the user; with
/// `verify`, also the user's current `signInSessionsValidFrom` (nothing to verify: nothing
/// was revoked).
pub fn dry_run(user: &FoundUser, correlation: &Correlation) -> Reply {
    let mut body = json!({ "value": false, "whatIf": true, "user": user });
    add_valid_from(&mut body, user);
    Reply::json(200, body, correlation)
}

/// A dry run's `signInSessionsValidFrom`, when the lookup asked for it and Graph gave a date.
fn add_valid_from(into: &mut serde_json::Value, user: &FoundUser) {
    if let Some(valid_from) = verification::valid_from(user) {
        into["signInSessionsValidFrom"] = json!(valid_from);
    }
}

/// Many users: the status the [`Verdict`] gives (200, 207, or 429/503/504 with
/// `Retry-After` when nobody succeeded and every failure is temporary); one result per
/// user in input order, and the entities that were skipped. A user whose id was
/// `derived` (Sentinel's `name@upnSuffix`) says so in its result, whatever the outcome:
/// `derivedFrom` and a warning. `proofs` (with `verify`; may be empty) holds the proof of
/// each revoked user, by position; it never changes the status.
#[allow(clippy::too_many_arguments)]
pub fn many(
    users: &[UserId],
    derived: &Derived,
    results: &[ItemResult],
    proofs: &[Option<Verification>],
    verdict: &Verdict,
    skipped: &[Skipped],
    what_if: bool,
    correlation: &Correlation,
) -> Reply {
    let all_done = *verdict == Verdict::AllDone;
    let items: Vec<serde_json::Value> = users
        .iter()
        .zip(results)
        .enumerate()
        .map(|(i, (user, result))| {
            let mut item = json!({ "userId": user.to_string(), "status": result.status });
            match &result.outcome {
                Ok(Done::Revoked(value)) => {
                    item["value"] = json!(value);
                    if let Some(warning) = user.warning() {
                        item["warnings"] = json!([warning]);
                    }
                    if let Some(Some(proof)) = proofs.get(i) {
                        proof.write(&mut item);
                    }
                }
                Ok(Done::Found(found)) => {
                    item["value"] = json!(false);
                    item["user"] = json!(found);
                    add_valid_from(&mut item, found);
                }
                Err(error) => {
                    item["value"] = json!(false);
                    item["error"] = json!({ "code": error.code(), "message": error.to_string() });
                }
            }
            if let Some(source) = derived.of(user) {
                mark_derived(&mut item, user, source);
            }
            item
        })
        .collect();
    let mut body = json!({ "value": all_done && !what_if, "results": items });
    if what_if {
        body["whatIf"] = json!(true);
    }
    if !skipped.is_empty() {
        let skipped: Vec<_> = skipped
            .iter()
            .map(|s| json!({ "index": s.index, "kind": s.kind, "reason": s.reason }))
            .collect();
        body["skipped"] = json!(skipped);
    }
    match verdict {
        Verdict::AllDone => Reply::json(200, body, correlation),
        Verdict::Partial => Reply::json(207, body, correlation),
        Verdict::Retry { status, retry_after, .. } => {
            let mut reply = Reply::json(*status, body, correlation);
            reply.headers.push(("retry-after".to_string(), retry_after.to_string()));
            reply
        }
    }
}

/// Marks a result whose user id was derived: `derivedFrom` and a warning of its own,
/// after any other (the result's `warnings` is per user, as for guests; there is no
/// top-level list, so each warning stays next to the user it concerns).
fn mark_derived(item: &mut serde_json::Value, user: &UserId, source: Source) {
    let (Some(how), Some(warning)) = (source.derived_from(), source.warning(&user.to_string())) else {
        return;
    };
    item["derivedFrom"] = json!(how);
    match item["warnings"].as_array_mut() {
        Some(warnings) => warnings.push(json!(warning)),
        None => item["warnings"] = json!([warning]),
    }
}

/// `200 {"status":"ok"}`, or `503 {"status":"misconfigured","missing":[...]}` naming, never showing, what is wrong.
pub fn health(problems: Option<&Problems>, correlation: &Correlation) -> Reply {
    match problems {
        None => Reply::json(200, json!({ "status": "ok" }), correlation),
        Some(problems) => {
            let mut body = json!({ "status": "misconfigured", "missing": problems.missing });
            if !problems.invalid.is_empty() {
                let invalid: Vec<_> = problems.invalid.iter().map(|(name, _)| *name).collect();
                body["invalid"] = json!(invalid);
            }
            Reply::json(503, body, correlation)
        }
    }
}

/// The OpenAPI 2.0 description (`src/openapi.json`, minified by `build.rs`).
pub fn openapi(correlation: &Correlation) -> Reply {
    let mut reply = Reply::json(200, json!(null), correlation);
    reply.body = include_bytes!(concat!(env!("OUT_DIR"), "/openapi.min.json")).to_vec();
    reply
}

/// Graph's error shape: `{"error": {"code", "message", "innerError": {...}}}`.
/// `date` is the UTC time of the answer, as Graph writes it.
pub fn error(error: &Error, correlation: &Correlation, date: &str) -> Reply {
    let mut inner = json!({ "client-request-id": correlation.client_request_id, "date": date });
    if let Some(id) = &correlation.graph_request_id {
        inner["request-id"] = json!(id);
    }
    let body = json!({
        "error": { "code": error.code(), "message": error.to_string(), "innerError": inner }
    });
    let mut reply = Reply::json(error.status(), body, correlation);
    reply.headers.extend(error.extra_headers().into_iter().map(|(n, v)| (n.to_string(), v)));
    reply
}

#[cfg(test)]
mod tests {
    use super::*;

    fn correlation() -> Correlation {
        Correlation { client_request_id: "cid".into(), graph_request_id: Some("rid".into()) }
    }

    fn body(reply: &Reply) -> serde_json::Value {
        serde_json::from_slice(&reply.body).unwrap()
    }

    fn header<'a>(reply: &'a Reply, name: &str) -> Option<&'a str> {
        reply.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    #[test]
    fn errors_have_graphs_shape_and_carry_both_ids() {
        let reply = error(&Error::Throttled { retry_after: Some(3) }, &correlation(), "2026-11-25T10:00:00Z");
        assert_eq!(reply.status, 429);
        let b = body(&reply);
        assert_eq!(b["error"]["code"], "throttled");
        assert_eq!(b["error"]["innerError"]["request-id"], "rid");
        assert_eq!(b["error"]["innerError"]["client-request-id"], "cid");
        assert_eq!(b["error"]["innerError"]["date"], "2026-11-25T10:00:00Z");
        assert_eq!(header(&reply, "retry-after"), Some("3"));
        assert_eq!(header(&reply, "request-id"), Some("rid"));
        assert_eq!(header(&reply, "content-type"), Some("application/json"));
    }

    #[test]
    fn success_adds_warnings_only_when_there_are_some() {
        assert_eq!(body(&revoked(true, &[], None, &correlation())), json!({"value": true}));
        assert_eq!(body(&revoked(true, &["w".into()], None, &correlation())), json!({"value": true, "warnings": ["w"]}));
    }

    #[test]
    fn a_derived_user_says_so_in_its_result_whatever_the_outcome() {
        let body_of = br#"{"entities": [
            {"Type": "account", "Name": "adele", "NTDomain": "CONTOSO", "UPNSuffix": "contoso.com"},
            {"Type": "account", "Name": "guest_fabrikam.com#EXT#", "UPNSuffix": "contoso.onmicrosoft.com"},
            {"AadUserId": "6f4a9b2c-1d3e-4f50-8a6b-7c8d9e0f1a2b"},
            {"Name": "ghost", "UPNSuffix": "contoso.com"}
        ]}"#;
        let crate::inbound::request_body::Users::Many { ids, derived, .. } = crate::inbound::request_body::parse_revoke_body(body_of).unwrap().users else {
            panic!()
        };
        let users: Vec<UserId> = ids.iter().map(|(_, raw)| UserId::parse(raw).unwrap()).collect();
        let revoked = |value| ItemResult { status: 200, outcome: Ok(Done::Revoked(value)) };
        let missing = ItemResult { status: 404, outcome: Err(Error::UserNotFound { user: "ghost@contoso.com".into() }) };
        let results = [revoked(true), revoked(true), revoked(true), missing];
        let b = body(&many(&users, &derived, &results, &[], &crate::graph::outcome::verdict(&results), &[], false, &correlation()));
        let items = b["results"].as_array().unwrap();
        assert_eq!(items[0]["derivedFrom"], "name@upnSuffix");
        assert_eq!(items[0]["warnings"].as_array().unwrap().len(), 1);
        assert!(items[0]["warnings"][0].as_str().unwrap().contains("adele@contoso.com was derived as name@upnSuffix"));
        // A derived guest gets both warnings, the guest one first.
        assert_eq!(items[1]["derivedFrom"], "name@upnSuffix");
        let warnings = items[1]["warnings"].as_array().unwrap();
        assert!(warnings[0].as_str().unwrap().contains("guest") && warnings[1].as_str().unwrap().contains("derived"), "{warnings:?}");
        // Given by object id: nothing added.
        assert!(items[2].get("derivedFrom").is_none() && items[2].get("warnings").is_none(), "{}", items[2]);
        // A failure keeps the mark: the guess may be why no user was found.
        assert_eq!(items[3]["derivedFrom"], "name@upnSuffix");
        assert!(items[3]["warnings"][0].as_str().unwrap().contains("ghost@contoso.com"));
        assert_eq!(items[3]["error"]["code"], "userNotFound");

        // A dry run shows which user the guess resolves to, next to the mark.
        let found = FoundUser { id: "00000000-0000-4000-8000-000000000001".into(), user_principal_name: "adele@contoso.com".into(), sign_in_sessions_valid_from: None };
        let dry = [ItemResult { status: 200, outcome: Ok(Done::Found(found)) }];
        let b = body(&many(&users[..1], &derived, &dry, &[], &crate::graph::outcome::verdict(&dry), &[], true, &correlation()));
        let item = &b["results"][0];
        assert_eq!(item["derivedFrom"], "name@upnSuffix");
        assert_eq!(item["user"], json!({"id": "00000000-0000-4000-8000-000000000001", "userPrincipalName": "adele@contoso.com"}));
        assert!(item["warnings"][0].as_str().unwrap().contains("whatIf"));
    }

    #[test]
    fn health_names_missing_and_invalid_variables() {
        let problems = Problems { missing: vec!["client_secret"], invalid: vec![("max_users", "rule".into())] };
        let reply = health(Some(&problems), &correlation());
        assert_eq!(reply.status, 503);
        assert_eq!(body(&reply), json!({"status": "misconfigured", "missing": ["client_secret"], "invalid": ["max_users"]}));
        assert_eq!(health(None, &correlation()).status, 200);
    }

    #[test]
    fn many_users_answer_with_the_verdicts_status_and_the_same_body() {
        let users = vec![UserId::parse("a@contoso.com").unwrap(), UserId::parse("b@contoso.com").unwrap()];
        let throttled = Error::Throttled { retry_after: Some(30) };
        let results = vec![
            ItemResult { status: 429, outcome: Err(throttled.clone()) },
            ItemResult { status: 429, outcome: Err(throttled) },
        ];
        let verdict = Verdict::Retry { status: 429, code: "throttled", retry_after: 30 };
        let reply = many(&users, &Derived::default(), &results, &[], &verdict, &[], false, &correlation());
        assert_eq!(reply.status, 429);
        assert_eq!(header(&reply, "retry-after"), Some("30"));
        let b = body(&reply);
        assert_eq!(b["value"], false);
        assert_eq!(b["results"][1]["error"]["code"], "throttled");
        assert_eq!(b["results"][0]["status"], 429);

        let partial = many(&users, &Derived::default(), &results, &[], &Verdict::Partial, &[], false, &correlation());
        assert_eq!((partial.status, header(&partial, "retry-after")), (207, None));
        let done = vec![ItemResult { status: 200, outcome: Ok(Done::Revoked(true)) }; 2];
        let all = many(&users, &Derived::default(), &done, &[], &Verdict::AllDone, &[], false, &correlation());
        assert_eq!((all.status, body(&all)["value"].clone()), (200, json!(true)));
    }
}
