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
    /// The authenticated caller (`apiKey:2`: the second entry of `api_keys`; `oid:<guid>`:
    /// the object id an Entra ID access token names), never its secret.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub caller: Option<String>,
    /// The calling application of an Entra ID access token (its `appid`/`azp`, a GUID).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub caller_app: Option<String>,
    /// Validated user ids only: a rejected id is not logged.
    pub user_ids: Vec<String>,
    /// `engaged` when the abuse brake refused the request, `unavailable` when it could
    /// not count (the request went through); absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub brake: Option<&'static str>,
    /// The caller's users in the brake's window, this request's included, and the
    /// limit (`max_revocations`), whenever the brake counted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub brake_count: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub brake_limit: Option<u64>,
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
        assert!(parsed.get("brake").is_none() && parsed.get("brakeCount").is_none());
    }

    #[test]
    fn an_engaged_brake_shows_with_its_count_and_limit() {
        let line = LogLine { brake: Some("engaged"), brake_count: Some(320), brake_limit: Some(300), ..LogLine::default() };
        let parsed: serde_json::Value = serde_json::from_str(&line.to_json()).unwrap();
        assert_eq!((&parsed["brake"], &parsed["brakeCount"], &parsed["brakeLimit"]), (&"engaged".into(), &320.into(), &300.into()));
    }
}
