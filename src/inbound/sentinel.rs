//! Microsoft Sentinel entities: which user an Account entity names.
//!
//! Sentinel hands automation its entities in two shapes: the ARM shape of incidents
//! (`{"kind": "Account", "properties": {"aadUserId", "accountName", "upnSuffix"}}`) and
//! the flat shape of alerts (`{"Type": "account", "AadUserId", "Name", "UPNSuffix"}`).
//! The Entra object id wins over `name@upnSuffix`: it survives renames. Entities of any
//! other kind (hosts, IPs, files...) are reported as skipped, not refused, so one
//! automation can post every entity of an incident. An entity that names no kind at all
//! is an Account: the output of Sentinel's "Entities - Get Accounts" action is accounts
//! only, without `Type`.
//!
//! `name@upnSuffix` is a guess, kept because Sentinel's own playbooks make it: for an
//! on-premises account (Defender for Identity: `Name` is the sAMAccountName, `NTDomain`
//! is set) it need not be the cloud userPrincipalName, and may even be another cloud
//! user. Such an account is marked [`Source::NameAtUpnSuffix`], and every answer about
//! it says so (`derivedFrom` and a warning, see [`crate::reply::response::many`]).

use serde_json::Value;

/// How an Account entity's user id was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The entity's Entra object id (`aadUserId`): the user itself.
    ObjectId,
    /// Built as `name@upnSuffix` from an entity without an object id: a guess.
    NameAtUpnSuffix,
}

impl Source {
    /// What the answer's `derivedFrom` says, for an id that was not given as such.
    pub fn derived_from(self) -> Option<&'static str> {
        match self {
            Source::ObjectId => None,
            Source::NameAtUpnSuffix => Some("name@upnSuffix"),
        }
    }

    /// The warning that goes with a derived `user`, if its id was derived.
    pub fn warning(self, user: &str) -> Option<String> {
        let how = self.derived_from()?;
        Some(format!(
            "{user} was derived as {how} from a Sentinel Account entity without aadUserId: an \
             on-premises account name (sAMAccountName) need not match the cloud userPrincipalName, \
             so this may be a different user; check it (a whatIf run shows the user it resolves to), \
             or send the entity's aadUserId"
        ))
    }
}

/// What one entity comes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entity {
    /// An account, with the raw (not yet validated) id to revoke and where it came from.
    Account { id: String, source: Source },
    /// Not something to revoke; `kind` as Sentinel named it, `reason` for the caller.
    Skipped { kind: String, reason: String },
}

/// Reads one entity in either shape.
pub fn read_entity(entity: &Value) -> Entity {
    // ARM shape: the fields are under `properties`; flat shape: on the entity itself.
    // The kind is `kind` (ARM) or `Type` (flat); a JSON object naming neither is an Account.
    let fields = entity.get("properties").filter(|p| p.is_object()).unwrap_or(entity);
    let kind = match entity.get("kind").or_else(|| entity.get("Type")) {
        Some(kind) => kind.as_str().unwrap_or(""),
        None if entity.is_object() => "account",
        None => "",
    };
    if !kind.eq_ignore_ascii_case("account") {
        let kind = if kind.is_empty() { "unknown" } else { kind };
        return Entity::Skipped { kind: kind.to_string(), reason: "not an Account entity".into() };
    }
    let text = |names: &[&str]| {
        names
            .iter()
            .find_map(|name| fields.get(*name).and_then(Value::as_str))
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_string)
    };
    if let Some(object_id) = text(&["aadUserId", "AadUserId"]) {
        return Entity::Account { id: object_id, source: Source::ObjectId };
    }
    match (text(&["accountName", "Name"]), text(&["upnSuffix", "UPNSuffix"])) {
        (Some(name), Some(suffix)) => Entity::Account { id: format!("{name}@{suffix}"), source: Source::NameAtUpnSuffix },
        _ => Entity::Skipped {
            kind: "Account".into(),
            reason: "the account has neither aadUserId nor accountName with upnSuffix".into(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn given(id: &str) -> Entity {
        Entity::Account { id: id.into(), source: Source::ObjectId }
    }

    fn derived(id: &str) -> Entity {
        Entity::Account { id: id.into(), source: Source::NameAtUpnSuffix }
    }

    #[test]
    fn the_arm_shape_prefers_the_object_id() {
        let entity = json!({"kind": "Account", "properties": {"aadUserId": "6f4a9b2c-1d3e-4f50-8a6b-7c8d9e0f1a2b", "accountName": "adele", "upnSuffix": "contoso.com"}});
        assert_eq!(read_entity(&entity), given("6f4a9b2c-1d3e-4f50-8a6b-7c8d9e0f1a2b"));
        let entity = json!({"kind": "Account", "properties": {"accountName": "adele", "upnSuffix": "contoso.com", "friendlyName": "Adele"}});
        assert_eq!(read_entity(&entity), derived("adele@contoso.com"));
    }

    #[test]
    fn the_flat_shape_reads_the_same() {
        let entity = json!({"$id": "3", "Type": "account", "Name": "adele", "UPNSuffix": "contoso.com", "AadUserId": "6F4A9B2C-1D3E-4F50-8A6B-7C8D9E0F1A2B"});
        assert_eq!(read_entity(&entity), given("6F4A9B2C-1D3E-4F50-8A6B-7C8D9E0F1A2B"));
        let entity = json!({"Name": "adele", "UPNSuffix": "contoso.com"});
        assert_eq!(read_entity(&entity), derived("adele@contoso.com"));
    }

    #[test]
    fn other_kinds_and_unusable_accounts_are_skipped() {
        assert!(matches!(read_entity(&json!({"kind": "Host", "properties": {"hostName": "pc1"}})), Entity::Skipped { kind, .. } if kind == "Host"));
        assert!(matches!(read_entity(&json!({"Type": "ip", "Address": "10.0.0.1"})), Entity::Skipped { kind, .. } if kind == "ip"));
        assert!(matches!(read_entity(&json!({"kind": "Account", "properties": {"accountName": "adele", "ntDomain": "CONTOSO"}})), Entity::Skipped { reason, .. } if reason.contains("upnSuffix")));
        assert!(matches!(read_entity(&json!("adele@contoso.com")), Entity::Skipped { .. }));
    }

    #[test]
    fn an_on_premises_account_is_derived_and_says_so() {
        // Defender for Identity: Name is the sAMAccountName, NTDomain the on-premises domain.
        let entity = json!({"Type": "account", "Name": "adele", "NTDomain": "CONTOSO", "UPNSuffix": "contoso.com", "Sid": "S-1-5-21-1"});
        assert_eq!(read_entity(&entity), derived("adele@contoso.com"));
        assert_eq!(Source::NameAtUpnSuffix.derived_from(), Some("name@upnSuffix"));
        assert_eq!(Source::ObjectId.derived_from(), None);
        assert!(Source::NameAtUpnSuffix.warning("adele@contoso.com").unwrap().contains("adele@contoso.com was derived as name@upnSuffix"));
        assert_eq!(Source::ObjectId.warning("adele@contoso.com"), None);
        let with_id = json!({"Type": "account", "Name": "adele", "NTDomain": "CONTOSO", "UPNSuffix": "contoso.com", "AadUserId": "6f4a9b2c-1d3e-4f50-8a6b-7c8d9e0f1a2b"});
        assert_eq!(read_entity(&with_id), given("6f4a9b2c-1d3e-4f50-8a6b-7c8d9e0f1a2b"));
    }

    #[test]
    fn an_entity_without_type_or_kind_is_an_account() {
        // "Entities - Get Accounts" output: accounts only, no Type.
        assert_eq!(read_entity(&json!({"AadUserId": "6f4a9b2c-1d3e-4f50-8a6b-7c8d9e0f1a2b"})), given("6f4a9b2c-1d3e-4f50-8a6b-7c8d9e0f1a2b"));
        assert_eq!(read_entity(&json!({"properties": {"accountName": "adele", "upnSuffix": "contoso.com"}})), derived("adele@contoso.com"));
        // A kind without ARM properties is still that kind, not an Account.
        assert!(matches!(read_entity(&json!({"kind": "Host", "hostName": "pc1"})), Entity::Skipped { kind, .. } if kind == "Host"));
    }
}
