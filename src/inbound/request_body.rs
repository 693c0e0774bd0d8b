//! What a caller may send: content type, query and JSON body of the revoke routes.
//!
//! Strict on purpose: an unknown field or query parameter is a 400 that names it,
//! because a typo (`userid`, `whatif`) must never silently do something else, and
//! least of all revoke when a dry run was meant.

use std::collections::BTreeSet;

use serde::Deserialize;

use crate::error::Error;
use crate::inbound::sentinel::{read_entity, Entity, Source};
use crate::inbound::user_id::UserId;

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
    user_ids: Option<Vec<String>>,
    /// Microsoft Sentinel entities, in either shape (see [`crate::inbound::sentinel`]).
    entities: Option<Vec<serde_json::Value>>,
    #[serde(rename = "whatIf")]
    what_if: Option<bool>,
    /// Read `signInSessionsValidFromDateTime` back after the revoke (see [`crate::graph::verification`]).
    verify: Option<bool>,
}

/// What a caller asked for, ids not yet validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevokeRequest {
    pub users: Users,
    /// A dry run: everything but the revoke.
    pub what_if: bool,
    /// Proof: read `signInSessionsValidFromDateTime` back after the revoke.
    pub verify: bool,
}

/// What the query string of a revoke route asks for: the same switches as the body's,
/// so the Graph-shaped route, whose body must stay Graph's empty `{}`, can ask too.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Query {
    pub what_if: bool,
    pub verify: bool,
}

/// One user, or many.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Users {
    One(String),
    /// Each id with where it came from (`userIds[2]`, `entities[0]`), for error messages;
    /// which of them were derived rather than given.
    Many { ids: Vec<(String, String)>, skipped: Vec<Skipped>, derived: Derived },
}

/// The users whose id was not given but derived, and how (`name@upnSuffix` from a
/// Sentinel Account entity without an object id; see [`crate::inbound::sentinel`]).
///
/// Keyed by the validated id, so it survives the dropping of duplicates: a user named
/// twice counts as derived if either naming was derived (one warning too many beats
/// one too few when the guess may be another person). `name@upnSuffix` is the only
/// derivation there is, so a set of ids says it all (and shares its code with the
/// duplicate check's set).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Derived(BTreeSet<String>);

impl Derived {
    /// Notes that `raw` came from `source`, if that is a derivation. An id that does not
    /// parse is left out: the request is refused for it anyway, before any outbound call.
    fn note(&mut self, raw: &str, source: Source) {
        if source != Source::NameAtUpnSuffix {
            return;
        }
        if let Ok(user) = UserId::parse(raw) {
            self.0.insert(user.to_string());
        }
    }

    /// How `user`'s id was derived, if it was (the answer's `derivedFrom` and warning).
    pub fn of(&self, user: &UserId) -> Option<Source> {
        if self.0.is_empty() {
            return None;
        }
        self.0.contains(&user.to_string()).then_some(Source::NameAtUpnSuffix)
    }
}

/// An entity that names no user to revoke.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// Its position in `entities`.
    pub index: usize,
    pub kind: String,
    pub reason: String,
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

/// Reads the query string: only `whatIf` and `verify` are known, each `true` or `false`.
pub fn read_query(query: &str) -> Result<Query, Error> {
    let mut switches = Query::default();
    for (name, value) in form_urlencoded::parse(query.as_bytes()) {
        let switch = match name.as_ref() {
            "whatIf" => &mut switches.what_if,
            "verify" => &mut switches.verify,
            name => {
                return Err(Error::InvalidRequest(format!(
                    "Unknown query parameter `{name}`; the only ones are whatIf and verify."
                )))
            }
        };
        *switch = match value.as_ref() {
            "true" => true,
            "false" => false,
            _ => {
                return Err(Error::InvalidRequest(format!("The query parameter {name} must be true or false.")))
            }
        };
    }
    Ok(switches)
}

/// Reads a `POST /revoke` body.
pub fn parse_revoke_body(body: &[u8]) -> Result<RevokeRequest, Error> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(Error::InvalidRequest(
            "The body is empty; send {\"userId\": \"<object id or userPrincipalName>\"}.".into(),
        ));
    }
    let parsed: RevokeBody = serde_json::from_slice(body)
        .map_err(|e| Error::InvalidRequest(format!("The JSON body is invalid: {e}.")))?;
    let what_if = parsed.what_if == Some(true);
    let verify = parsed.verify == Some(true);
    let single: Vec<(&str, String)> = [
        ("userId", parsed.user_id),
        ("UserId", parsed.user_id_cmdlet),
        ("userPrincipalName", parsed.user_principal_name),
    ]
    .into_iter()
    .filter_map(|(name, value)| value.map(|v| (name, v)))
    .collect();
    let forms = [!single.is_empty(), parsed.user_ids.is_some(), parsed.entities.is_some()];
    if forms.iter().filter(|given| **given).count() > 1 {
        return Err(Error::InvalidRequest(
            "Send one of userId, userIds or entities, not several.".into(),
        ));
    }
    let users = if let Some(ids) = parsed.user_ids {
        if ids.is_empty() {
            return Err(Error::InvalidRequest("userIds is empty; name at least one user.".into()));
        }
        let ids = ids.into_iter().enumerate().map(|(i, id)| (format!("userIds[{i}]"), id)).collect();
        Users::Many { ids, skipped: Vec::new(), derived: Derived::default() }
    } else if let Some(entities) = parsed.entities {
        read_entities(&entities)?
    } else {
        let Some((first_name, first)) = single.first() else {
            return Err(Error::InvalidRequest(
                "The body names no user; send {\"userId\": ...}, {\"userIds\": [...]} or {\"entities\": [...]}."
                    .into(),
            ));
        };
        if let Some((other_name, _)) = single.iter().find(|(_, v)| v != first) {
            return Err(Error::InvalidRequest(format!(
                "{first_name} and {other_name} name different users; send one of them."
            )));
        }
        Users::One(first.clone())
    };
    Ok(RevokeRequest { users, what_if, verify })
}

/// The accounts among Sentinel entities; an error if there are none.
fn read_entities(entities: &[serde_json::Value]) -> Result<Users, Error> {
    let mut ids = Vec::new();
    let mut skipped = Vec::new();
    let mut derived = Derived::default();
    for (index, entity) in entities.iter().enumerate() {
        match read_entity(entity) {
            Entity::Account { id, source } => {
                derived.note(&id, source);
                ids.push((format!("entities[{index}]"), id));
            }
            Entity::Skipped { kind, reason } => skipped.push(Skipped { index, kind, reason }),
        }
    }
    if ids.is_empty() {
        return Err(Error::InvalidRequest(format!(
            "The {} entities hold no Account with an aadUserId or accountName and upnSuffix; nothing to revoke.",
            entities.len()
        )));
    }
    Ok(Users::Many { ids, skipped, derived })
}

/// Checks the optional body of the Graph-shaped route: nothing, or `{}`.
///
/// Its own content-type rule: with no body at all the `Content-Type` is not looked at,
/// because `curl -X POST -d ''` (and many HTTP clients) send
/// `application/x-www-form-urlencoded` with an empty body. A body that is there must be
/// JSON, as on `POST /revoke`.
pub fn check_graph_shaped_body(content_type: Option<&str>, body: &[u8]) -> Result<(), Error> {
    if body.is_empty() {
        return Ok(());
    }
    check_content_type(content_type, body)?;
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(());
    }
    serde_json::from_slice::<GraphShapedBody>(body)
        .map(|_| ())
        .map_err(|e| Error::InvalidRequest(format!("The JSON body is invalid: {e}.")))
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

    fn one(body: &[u8]) -> String {
        match parse_revoke_body(body).unwrap().users {
            Users::One(id) => id,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn every_alias_names_the_user() {
        for field in ["userId", "UserId", "userPrincipalName"] {
            let body = format!("{{\"{field}\": \"adele@contoso.com\"}}");
            assert_eq!(one(body.as_bytes()), "adele@contoso.com");
        }
        let same = br#"{"userId": "a@b.com", "userPrincipalName": "a@b.com", "whatIf": false}"#;
        assert_eq!(one(same), "a@b.com");
        assert!(!parse_revoke_body(same).unwrap().what_if);
        assert!(parse_revoke_body(br#"{"userId": "a@b.com", "whatIf": true}"#).unwrap().what_if);
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
        for body in [&b"{"[..], b"[]", b"\"a@b.com\"", br#"{"userId": 5}"#, br#"{"userId": null}"#, b"{}", b"  ", br#"{"userIds": "a@b.com"}"#, br#"{"userIds": [1]}"#] {
            assert!(matches!(parse_revoke_body(body), Err(Error::InvalidRequest(_))), "{body:?}");
        }
        assert!(message(parse_revoke_body(b"[]")).contains("a JSON object such as"));
    }

    #[test]
    fn many_users_keep_where_each_id_came_from() {
        let request = parse_revoke_body(br#"{"userIds": ["a@b.com", "c@d.com"], "whatIf": true}"#).unwrap();
        assert!(request.what_if);
        assert_eq!(
            request.users,
            Users::Many {
                ids: vec![("userIds[0]".into(), "a@b.com".into()), ("userIds[1]".into(), "c@d.com".into())],
                skipped: vec![],
                derived: Derived::default()
            }
        );
        assert!(message(parse_revoke_body(br#"{"userIds": []}"#)).contains("empty"));
        assert!(message(parse_revoke_body(br#"{"userId": "a@b.com", "userIds": ["c@d.com"]}"#)).contains("one of"));
    }

    #[test]
    fn entities_skip_what_is_not_an_account() {
        let body = br#"{"entities": [{"kind": "Host", "properties": {}}, {"kind": "Account", "properties": {"accountName": "a", "upnSuffix": "b.com"}}]}"#;
        let Users::Many { ids, skipped, .. } = parse_revoke_body(body).unwrap().users else { panic!() };
        assert_eq!(ids, vec![("entities[1]".into(), "a@b.com".into())]);
        assert_eq!(skipped, vec![Skipped { index: 0, kind: "Host".into(), reason: "not an Account entity".into() }]);
        assert!(message(parse_revoke_body(br#"{"entities": [{"kind": "Ip", "properties": {}}]}"#)).contains("no Account"));
    }

    #[test]
    fn queries_are_strict() {
        let query = |what_if, verify| Ok(Query { what_if, verify });
        assert_eq!(read_query(""), query(false, false));
        assert_eq!(read_query("whatIf=false"), query(false, false));
        assert_eq!(read_query("whatIf=true"), query(true, false));
        assert_eq!(read_query("verify=true"), query(false, true));
        assert_eq!(read_query("verify=true&whatIf=true"), query(true, true));
        assert_eq!(read_query("verify=true&verify=false"), query(false, false), "the last one counts");
        assert!(message(read_query("whatif=true")).contains("`whatif`"));
        assert!(message(read_query("Verify=true")).contains("`Verify`"));
        assert!(message(read_query("whatIf=yes")).contains("whatIf must be true or false"));
        assert!(message(read_query("verify=1")).contains("verify must be true or false"));
        assert!(message(read_query("verify")).contains("verify must be true or false"));
    }

    #[test]
    fn verify_is_a_boolean_of_its_own() {
        let request = parse_revoke_body(br#"{"userId": "a@b.com", "verify": true}"#).unwrap();
        assert!(request.verify && !request.what_if);
        assert!(!parse_revoke_body(br#"{"userId": "a@b.com", "verify": false}"#).unwrap().verify);
        assert!(!parse_revoke_body(br#"{"userId": "a@b.com"}"#).unwrap().verify);
        let many = parse_revoke_body(br#"{"userIds": ["a@b.com"], "verify": true, "whatIf": true}"#).unwrap();
        assert!(many.verify && many.what_if);
        assert!(message(parse_revoke_body(br#"{"userId": "a@b.com", "verify": "yes"}"#)).contains("invalid type"));
        assert!(message(parse_revoke_body(br#"{"userId": "a@b.com", "Verify": true}"#)).contains("unknown field `Verify`"));
        // The Graph-shaped body stays Graph's: verify goes in its query.
        assert!(message(check_graph_shaped_body(Some("application/json"), br#"{"verify": true}"#)).contains("unknown field `verify`"));
    }

    #[test]
    fn the_graph_shaped_body_is_empty_or_an_empty_object() {
        let json = Some("application/json");
        assert!(check_graph_shaped_body(None, b"").is_ok());
        assert!(check_graph_shaped_body(json, b"").is_ok());
        assert!(check_graph_shaped_body(json, b" {} ").is_ok());
        assert!(message(check_graph_shaped_body(json, br#"{"userId": "x"}"#)).contains("unknown field `userId`"));
        assert!(check_graph_shaped_body(json, b"nope").is_err());
    }

    #[test]
    fn an_empty_graph_shaped_body_may_have_any_content_type() {
        // `curl -X POST -d ''` sends this content type with nothing after it.
        let form = Some("application/x-www-form-urlencoded");
        assert!(check_graph_shaped_body(form, b"").is_ok());
        assert!(check_graph_shaped_body(Some("text/plain"), b"").is_ok());
        // A body that is there must still be JSON, and say so.
        assert!(matches!(check_graph_shaped_body(form, b"a=b"), Err(Error::UnsupportedMediaType(_))));
        assert!(matches!(check_graph_shaped_body(form, b"{}"), Err(Error::UnsupportedMediaType(_))));
        assert!(matches!(check_graph_shaped_body(None, b"{}"), Err(Error::UnsupportedMediaType(_))));
        // POST /revoke keeps its rule: a form content type is refused even when empty.
        assert!(matches!(check_content_type(form, b""), Err(Error::UnsupportedMediaType(_))));
    }

    #[test]
    fn entities_named_by_name_at_upn_suffix_are_marked_derived() {
        let body = br#"{"entities": [
            {"Type": "account", "Name": "adele", "NTDomain": "CONTOSO", "UPNSuffix": "contoso.com"},
            {"kind": "Account", "properties": {"aadUserId": "6F4A9B2C-1D3E-4F50-8A6B-7C8D9E0F1A2B", "accountName": "bob", "upnSuffix": "contoso.com"}},
            {"AadUserId": "carol@contoso.com"},
            {"Name": " bad user ", "UPNSuffix": "contoso.com"}
        ]}"#;
        let Users::Many { ids, derived, .. } = parse_revoke_body(body).unwrap().users else { panic!() };
        assert_eq!(ids.len(), 4);
        let user = |raw: &str| UserId::parse(raw).unwrap();
        assert_eq!(derived.of(&user("adele@contoso.com")), Some(Source::NameAtUpnSuffix));
        assert_eq!(derived.of(&user("6f4a9b2c-1d3e-4f50-8a6b-7c8d9e0f1a2b")), None);
        assert_eq!(derived.of(&user("carol@contoso.com")), None);
        assert_eq!(derived.of(&user("bob@contoso.com")), None);
        // Named twice, once derived: derived (the warning is kept).
        let twice = br#"{"entities": [{"AadUserId": "dave@contoso.com"}, {"Name": "dave", "UPNSuffix": "contoso.com"}]}"#;
        let Users::Many { derived, .. } = parse_revoke_body(twice).unwrap().users else { panic!() };
        assert_eq!(derived.of(&user("dave@contoso.com")), Some(Source::NameAtUpnSuffix));
        // userIds are given, never derived.
        let Users::Many { derived, .. } = parse_revoke_body(br#"{"userIds": ["adele@contoso.com"]}"#).unwrap().users else { panic!() };
        assert_eq!(derived, Derived::default());
    }
}
