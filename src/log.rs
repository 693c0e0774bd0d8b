//! The one JSON log line each request writes to stdout (SPEC.md, "Logs").
//!
//! The fields are listed here and nowhere else, and none of them can hold a secret,
//! a token, an API key or a request body: only ids, counts, codes and times.

use serde::Serialize;

/// Everything one log line says.
#[derive(Serialize, Debug, Default)]
#[serde(rename_all = "camelCase")]
pub struct LogLine {
    /// RFC 3339 UTC time the request ended.
    pub time: String,
    pub method: String,
    /// The route's name (`revoke`, `revokeSignInSessions`, `healthz`), or `unrouted`.
    pub route: &'static str,
    /// `revoked`, `ok`, or the error code.
    pub outcome: &'static str,
    pub status: u16,
    /// The authenticated caller (`apiKey:2`: the second entry of `api_keys`), never its secret.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub caller: Option<String>,
    /// Validated user ids only: a rejected id is not logged.
    pub user_ids: Vec<String>,
    pub client_request_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub graph_request_id: Option<String>,
    pub outbound_calls: u32,
    pub token_from_cache: bool,
    pub duration_ms: u64,
}

impl LogLine {
    /// The line, without its newline.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| "{\"outcome\":\"logError\"}".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_is_one_line_of_json_even_with_odd_ids() {
        let line = LogLine {
            route: "revoke",
            outcome: "revoked",
            user_ids: vec!["o'brien@contoso.com".into()],
            client_request_id: "a\nb".into(),
            ..LogLine::default()
        };
        let text = line.to_json();
        assert!(!text.contains('\n'));
        let parsed: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(parsed["userIds"][0], "o'brien@contoso.com");
        assert_eq!(parsed["tokenFromCache"], false);
        assert!(parsed.get("graphRequestId").is_none());
    }
}
