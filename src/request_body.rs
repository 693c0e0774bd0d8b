//! What a caller may send: content type, query and JSON body of the revoke routes.
//!
//! Strict on purpose: an unknown field or query parameter is a 400 that names it,
//! because a typo (`userid`, `whatif`) must never silently do something else, and
//! least of all revoke when a dry run was meant.

use serde::de::IgnoredAny;
use serde::Deserialize;

use crate::error::Error;

/// Largest body accepted (SPEC.md): far above any real request, small enough that
/// reading it costs nothing.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// The body of `POST /revoke`. Field names are the SPEC's, case-sensitive.
#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields, expecting = "a JSON object such as {\"userId\": \"adele@contoso.com\"}")]
struct RevokeBody {
    #[serde(rename = "userId")]
    user_id: Option<String>,
    /// The cmdlet's `-InputObject` hashtable spelling.
    #[serde(rename = "UserId")]
    user_id_cmdlet: Option<String>,
    #[serde(rename = "userPrincipalName")]
    user_principal_name: Option<String>,
    #[serde(rename = "userIds")]
    user_ids: Option<IgnoredAny>,
    entities: Option<IgnoredAny>,
    #[serde(rename = "whatIf")]
    what_if: Option<bool>,
}

/// The body of `POST /users/{id}/revokeSignInSessions`: like Graph's, empty or `{}`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "an empty JSON object {} (the user id is in the path)")]
struct GraphShapedBody {}

/// `Content-Type` must be JSON (any charset) whenever there is a body.
pub fn check_content_type(content_type: Option<&str>, body: &[u8]) -> Result<(), Error> {
    let media_type = content_type
        .map(|v| v.split(';').next().unwrap_or("").trim().to_ascii_lowercase())
        .unwrap_or_default();
    if media_type == "application/json" || (body.is_empty() && content_type.is_none()) {
        Ok(())
    } else {
        Err(Error::UnsupportedMediaType(match content_type {
            Some(_) => format!("The body must be JSON, sent with Content-Type: application/json (got {media_type})."),
            None => "The body must be JSON, sent with Content-Type: application/json.".into(),
        }))
    }
}

/// Reads the query string: only `whatIf` is known, and dry runs come in a later version.
pub fn check_query(query: &str) -> Result<(), Error> {
    for (name, value) in form_urlencoded::parse(query.as_bytes()) {
        match name.as_ref() {
            "whatIf" => match value.as_ref() {
                "false" => {}
                "true" => return Err(what_if_unsupported()),
                _ => {
                    return Err(Error::InvalidRequest("The query parameter whatIf must be true or false.".into()))
                }
            },
            _ => {
                return Err(Error::InvalidRequest(format!(
                    "Unknown query parameter `{name}`; the only one is whatIf."
                )))
            }
        }
    }
    Ok(())
}

/// The raw (unvalidated) user id of a `POST /revoke` body.
pub fn parse_revoke_body(body: &[u8]) -> Result<String, Error> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(Error::InvalidRequest(
            "The body is empty; send {\"userId\": \"<object id or userPrincipalName>\"}.".into(),
        ));
    }
    let parsed: RevokeBody = serde_json::from_slice(body)
        .map_err(|e| Error::InvalidRequest(format!("The JSON body is invalid: {e}.")))?;
    if parsed.user_ids.is_some() || parsed.entities.is_some() {
        return Err(Error::InvalidRequest(
            "userIds and entities (many users in one request) are not supported by this version; \
             nothing was revoked. Send one request per user with {\"userId\": ...}."
                .into(),
        ));
    }
    if parsed.what_if == Some(true) {
        return Err(what_if_unsupported());
    }
    let given: Vec<(&str, String)> = [
        ("userId", parsed.user_id),
        ("UserId", parsed.user_id_cmdlet),
        ("userPrincipalName", parsed.user_principal_name),
    ]
    .into_iter()
    .filter_map(|(name, value)| value.map(|v| (name, v)))
    .collect();
    let Some((first_name, first)) = given.first() else {
        return Err(Error::InvalidRequest(
            "The body has no userId; send {\"userId\": \"<object id or userPrincipalName>\"}.".into(),
        ));
    };
    if let Some((other_name, _)) = given.iter().find(|(_, v)| v != first) {
        return Err(Error::InvalidRequest(format!(
            "{first_name} and {other_name} name different users; send one of them."
        )));
    }
    Ok(first.clone())
}

/// Checks the optional body of the Graph-shaped route: nothing, or `{}`.
pub fn check_graph_shaped_body(body: &[u8]) -> Result<(), Error> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(());
    }
    serde_json::from_slice::<GraphShapedBody>(body)
        .map(|_| ())
        .map_err(|e| Error::InvalidRequest(format!("The JSON body is invalid: {e}.")))
}

fn what_if_unsupported() -> Error {
    Error::InvalidRequest(
        "whatIf (dry run) is not supported by this version; nothing was revoked. \
         Remove whatIf to revoke for real."
            .into(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(result: Result<impl std::fmt::Debug, Error>) -> String {
        result.unwrap_err().to_string()
    }

    #[test]
    fn json_content_types_are_accepted_with_any_charset() {
        assert!(check_content_type(Some("application/json"), b"{}").is_ok());
        assert!(check_content_type(Some("Application/JSON; charset=utf-8"), b"{}").is_ok());
        assert!(check_content_type(None, b"").is_ok());
    }

    #[test]
    fn other_content_types_are_unsupported() {
        for ct in [Some("text/plain"), Some("application/x-www-form-urlencoded"), None] {
            assert!(matches!(check_content_type(ct, b"{}"), Err(Error::UnsupportedMediaType(_))), "{ct:?}");
        }
    }

    #[test]
    fn every_alias_names_the_user() {
        for field in ["userId", "UserId", "userPrincipalName"] {
            let body = format!("{{\"{field}\": \"adele@contoso.com\"}}");
            assert_eq!(parse_revoke_body(body.as_bytes()).unwrap(), "adele@contoso.com");
        }
        let same = br#"{"userId": "a@b.com", "userPrincipalName": "a@b.com", "whatIf": false}"#;
        assert_eq!(parse_revoke_body(same).unwrap(), "a@b.com");
    }

    #[test]
    fn conflicting_aliases_are_refused() {
        let body = br#"{"userId": "a@b.com", "UserId": "c@d.com"}"#;
        assert!(message(parse_revoke_body(body)).contains("userId and UserId name different users"));
    }

    #[test]
    fn unknown_fields_are_named() {
        assert!(message(parse_revoke_body(br#"{"userid": "a@b.com"}"#)).contains("unknown field `userid`"));
        assert!(message(parse_revoke_body(br#"{"userId": "a@b.com", "whatif": true}"#)).contains("`whatif`"));
    }

    #[test]
    fn malformed_and_mistyped_bodies_are_invalid_requests() {
        for body in [&b"{"[..], b"[]", b"\"a@b.com\"", br#"{"userId": 5}"#, br#"{"userId": null}"#, b"{}", b"  "] {
            assert!(matches!(parse_revoke_body(body), Err(Error::InvalidRequest(_))), "{body:?}");
        }
        assert!(message(parse_revoke_body(b"[]")).contains("a JSON object such as"));
    }

    #[test]
    fn features_of_later_versions_are_refused_never_ignored() {
        assert!(message(parse_revoke_body(br#"{"userIds": ["a@b.com"]}"#)).contains("nothing was revoked"));
        assert!(message(parse_revoke_body(br#"{"entities": []}"#)).contains("not supported"));
        assert!(message(parse_revoke_body(br#"{"userId": "a@b.com", "whatIf": true}"#)).contains("dry run"));
        assert!(message(check_query("whatIf=true")).contains("dry run"));
    }

    #[test]
    fn queries_are_strict() {
        assert!(check_query("").is_ok());
        assert!(check_query("whatIf=false").is_ok());
        assert!(message(check_query("whatif=true")).contains("`whatif`"));
        assert!(message(check_query("whatIf=yes")).contains("true or false"));
    }

    #[test]
    fn the_graph_shaped_body_is_empty_or_an_empty_object() {
        assert!(check_graph_shaped_body(b"").is_ok());
        assert!(check_graph_shaped_body(b" {} ").is_ok());
        assert!(message(check_graph_shaped_body(br#"{"userId": "x"}"#)).contains("unknown field `userId`"));
        assert!(check_graph_shaped_body(b"nope").is_err());
    }
}
