//! The JSON answers: success, health and the OData error shape.
//!
//! Pure: the handler hands over what happened and the ids, and gets back status,
//! headers and body. Errors use Graph's shape so Logic Apps and Graph users read
//! them without new parsing.

use serde_json::json;

use crate::error::Error;
use crate::graph::FoundUser;
use crate::request_body::Skipped;
use crate::revocation::{Done, ItemResult};
use crate::settings::Problems;
use crate::user_id::UserId;

/// A finished answer, ready to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// The ids that tie a request to Graph's logs.
#[derive(Debug, Clone, Default)]
pub struct Correlation {
    /// The caller's `client-request-id` if it was a GUID, else a fresh one; also sent to Graph.
    pub client_request_id: String,
    /// Graph's `request-id`, once Graph has answered.
    pub graph_request_id: Option<String>,
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

/// `200 {"value": ..., "warnings"?: [...]}`: one user revoked.
pub fn revoked(value: bool, warnings: &[String], correlation: &Correlation) -> Reply {
    let mut body = json!({ "value": value });
    if !warnings.is_empty() {
        body["warnings"] = json!(warnings);
    }
    Reply::json(200, body, correlation)
}

/// `200 {"value": false, "whatIf": true, "user": {...}}`: a dry run found the user.
pub fn dry_run(user: &FoundUser, correlation: &Correlation) -> Reply {
    Reply::json(200, json!({ "value": false, "whatIf": true, "user": user }), correlation)
}

/// Many users: `200` when every one succeeded (revoked, or found by a dry run), else
/// `207`; one result per user in input order, and the entities that were skipped.
pub fn many(users: &[UserId], results: &[ItemResult], skipped: &[Skipped], what_if: bool, correlation: &Correlation) -> Reply {
    let all_done = results.iter().all(|r| match &r.outcome {
        Ok(Done::Revoked(value)) => *value,
        Ok(Done::Found(_)) => true,
        Err(_) => false,
    });
    let items: Vec<serde_json::Value> = users
        .iter()
        .zip(results)
        .map(|(user, result)| {
            let mut item = json!({ "userId": user.to_string(), "status": result.status });
            match &result.outcome {
                Ok(Done::Revoked(value)) => {
                    item["value"] = json!(value);
                    if let Some(warning) = user.warning() {
                        item["warnings"] = json!([warning]);
                    }
                }
                Ok(Done::Found(found)) => {
                    item["value"] = json!(false);
                    item["user"] = json!(found);
                }
                Err(error) => {
                    item["value"] = json!(false);
                    item["error"] = json!({ "code": error.code(), "message": error.to_string() });
                }
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
    Reply::json(if all_done { 200 } else { 207 }, body, correlation)
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
        assert_eq!(body(&revoked(true, &[], &correlation())), json!({"value": true}));
        assert_eq!(body(&revoked(true, &["w".into()], &correlation())), json!({"value": true, "warnings": ["w"]}));
    }

    #[test]
    fn health_names_missing_and_invalid_variables() {
        let problems = Problems { missing: vec!["client_secret"], invalid: vec![("max_users", "rule".into())] };
        let reply = health(Some(&problems), &correlation());
        assert_eq!(reply.status, 503);
        assert_eq!(body(&reply), json!({"status": "misconfigured", "missing": ["client_secret"], "invalid": ["max_users"]}));
        assert_eq!(health(None, &correlation()).status, 200);
    }
}
