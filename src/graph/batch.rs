//! Graph JSON batching: many users in `POST {graph}/v1.0/$batch`, 20 to a batch.
//!
//! Pure: builds the batch body from the same paths as single calls (so the one id
//! encoder serves both) and reads the answers back by `id`, in whatever order Graph
//! sends them. What to retry and when is the caller's, with the same policy as single
//! calls; here an item's answer is turned back into an [`OutboundResponse`] so the
//! single-call readers map it.

use std::collections::HashMap;

use serde::Deserialize;
use serde_json::{json, Value};

use crate::error::Error;
use crate::graph;
use crate::transport::outbound::{OutboundRequest, OutboundResponse};
use crate::settings::secret::Secret;
use crate::inbound::user_id::UserId;

/// Most requests in one `$batch` (Graph's limit).
pub const BATCH_SIZE: usize = 20;

/// What each item of a batch does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Revoke,
    /// A lookup selecting these fields (`graph::DRY_RUN_FIELDS`, `graph::READ_BACK_FIELDS`...).
    Lookup(&'static str),
}

/// The `$batch` request for `items` (each an id unique in the batch, and its user).
pub fn batch_request(
    graph_base_url: &str,
    items: &[(String, UserId)],
    operation: Operation,
    token: &Secret,
    client_request_id: &str,
) -> OutboundRequest {
    let requests: Vec<Value> = items
        .iter()
        .map(|(id, user)| match operation {
            Operation::Revoke => json!({
                "id": id,
                "method": "POST",
                "url": graph::revoke_path(user),
                "headers": { "Content-Type": "application/json" },
                "body": {},
            }),
            Operation::Lookup(fields) => json!({ "id": id, "method": "GET", "url": graph::lookup_path(user, fields) }),
        })
        .collect();
    OutboundRequest {
        method: "POST",
        url: format!("{graph_base_url}/v1.0/$batch"),
        headers: [graph::headers(token, client_request_id), vec![("content-type", "application/json".into())]].concat(),
        body: json!({ "requests": requests }).to_string().into_bytes(),
    }
}

#[derive(Deserialize)]
struct BatchAnswer {
    #[serde(default)]
    responses: Vec<ItemAnswer>,
}

#[derive(Deserialize)]
struct ItemAnswer {
    id: String,
    status: u16,
    #[serde(default)]
    headers: HashMap<String, Value>,
    #[serde(default)]
    body: Value,
}

/// Reads the answer to a `$batch` whose outer status is not a retryable one: each item's
/// answer by id, as a plain response. An outer 400 means Graph ran none of the items.
pub fn read_batch_response(response: &OutboundResponse) -> Result<HashMap<String, OutboundResponse>, Error> {
    match response.status {
        // 424: some items failed a dependency; every item still has its own answer.
        200 | 424 => {}
        400 => {
            return Err(Error::GraphError(
                "Graph refused the whole batch (400); none of its users was revoked.".into(),
            ))
        }
        status => {
            return Err(Error::GraphError(format!("Graph answered {status} to the batch; none of its users is known revoked.")))
        }
    }
    let answer: BatchAnswer = serde_json::from_slice(&response.body)
        .map_err(|_| Error::GraphError(format!("Graph answered {} to the batch without a readable body.", response.status)))?;
    Ok(answer
        .responses
        .into_iter()
        .map(|item| {
            let headers = item
                .headers
                .into_iter()
                .filter_map(|(name, value)| Some((name.to_ascii_lowercase(), value.as_str()?.to_string())))
                .collect();
            let body = match item.body {
                Value::Null => Vec::new(),
                body => body.to_string().into_bytes(),
            };
            (item.id, OutboundResponse { status: item.status, headers, body })
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn users(ids: &[&str]) -> Vec<(String, UserId)> {
        ids.iter().enumerate().map(|(i, id)| (i.to_string(), UserId::parse(id).unwrap())).collect()
    }

    #[test]
    fn revoke_items_use_the_one_encoder_and_an_empty_body() {
        let request = batch_request(
            "https://graph.microsoft.com",
            &users(&["a_b.com#EXT#@contoso.com", "$x@contoso.com"]),
            Operation::Revoke,
            &Secret::new("tok"),
            "cid",
        );
        assert_eq!(request.url, "https://graph.microsoft.com/v1.0/$batch");
        let body: Value = serde_json::from_slice(&request.body).unwrap();
        assert_eq!(
            body["requests"][0],
            json!({"id": "0", "method": "POST", "url": "/users/a_b.com%23EXT%23@contoso.com/revokeSignInSessions", "headers": {"Content-Type": "application/json"}, "body": {}})
        );
        assert_eq!(body["requests"][1]["url"], "/users('$x@contoso.com')/revokeSignInSessions");
    }

    #[test]
    fn lookup_items_are_gets() {
        let request = batch_request("https://g", &users(&["a@b.com"]), Operation::Lookup(graph::DRY_RUN_FIELDS), &Secret::new("t"), "c");
        let body: Value = serde_json::from_slice(&request.body).unwrap();
        assert_eq!(body["requests"][0], json!({"id": "0", "method": "GET", "url": "/users/a@b.com?$select=id,userPrincipalName"}));
        let request = batch_request("https://g", &users(&["a@b.com"]), Operation::Lookup(graph::READ_BACK_FIELDS), &Secret::new("t"), "c");
        let body: Value = serde_json::from_slice(&request.body).unwrap();
        assert_eq!(body["requests"][0]["url"], "/users/a@b.com?$select=id,signInSessionsValidFromDateTime");
    }

    #[test]
    fn answers_are_read_by_id_in_any_order() {
        let body = json!({"responses": [
            {"id": "1", "status": 429, "headers": {"Retry-After": "3"}, "body": {"error": {"code": "TooManyRequests", "message": "x"}}},
            {"id": "0", "status": 204},
        ]});
        let answer = OutboundResponse { status: 200, headers: vec![], body: body.to_string().into_bytes() };
        let items = read_batch_response(&answer).unwrap();
        assert_eq!(items["0"].status, 204);
        assert!(items["0"].body.is_empty());
        assert_eq!(items["1"].header("retry-after"), Some("3"));
    }

    #[test]
    fn an_outer_400_revoked_nobody_and_a_424_is_read_item_by_item() {
        let refused = OutboundResponse { status: 400, headers: vec![], body: b"{}".to_vec() };
        assert!(read_batch_response(&refused).unwrap_err().to_string().contains("none of its users"));
        let body = json!({"responses": [{"id": "0", "status": 424}, {"id": "1", "status": 200, "body": {"value": true}}]});
        let partial = OutboundResponse { status: 424, headers: vec![], body: body.to_string().into_bytes() };
        let items = read_batch_response(&partial).unwrap();
        assert_eq!((items["0"].status, items["1"].status), (424, 200));
    }
}
