//! Microsoft Sentinel entities: which user an Account entity names.
//!
//! Sentinel hands automation its entities in two shapes: the ARM shape of incidents
//! (`{"kind": "Account", "properties": {"aadUserId", "accountName", "upnSuffix"}}`) and
//! the flat shape of alerts (`{"Type": "account", "AadUserId", "Name", "UPNSuffix"}`).
//! The Entra object id wins over `name@upnSuffix`: it survives renames. Entities of any
//! other kind (hosts, IPs, files...) are reported as skipped, not refused, so one
//! automation can post every entity of an incident.

use serde_json::Value;

/// What one entity comes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entity {
    /// An account, with the raw (not yet validated) id to revoke.
    Account(String),
    /// Not something to revoke; `kind` as Sentinel named it, `reason` for the caller.
    Skipped { kind: String, reason: String },
}

/// Reads one entity in either shape.
pub fn read_entity(entity: &Value) -> Entity {
    let (kind, fields) = match (entity.get("kind"), entity.get("properties")) {
        (Some(kind), Some(properties)) => (kind.as_str().unwrap_or(""), properties),
        _ => (entity.get("Type").and_then(Value::as_str).unwrap_or("account"), entity),
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
        return Entity::Account(object_id);
    }
    match (text(&["accountName", "Name"]), text(&["upnSuffix", "UPNSuffix"])) {
        (Some(name), Some(suffix)) => Entity::Account(format!("{name}@{suffix}")),
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

    #[test]
    fn the_arm_shape_prefers_the_object_id() {
        let entity = json!({"kind": "Account", "properties": {"aadUserId": "6f4a9b2c-1d3e-4f50-8a6b-7c8d9e0f1a2b", "accountName": "adele", "upnSuffix": "contoso.com"}});
        assert_eq!(read_entity(&entity), Entity::Account("6f4a9b2c-1d3e-4f50-8a6b-7c8d9e0f1a2b".into()));
        let entity = json!({"kind": "Account", "properties": {"accountName": "adele", "upnSuffix": "contoso.com", "friendlyName": "Adele"}});
        assert_eq!(read_entity(&entity), Entity::Account("adele@contoso.com".into()));
    }

    #[test]
    fn the_flat_shape_reads_the_same() {
        let entity = json!({"$id": "3", "Type": "account", "Name": "adele", "UPNSuffix": "contoso.com", "AadUserId": "6F4A9B2C-1D3E-4F50-8A6B-7C8D9E0F1A2B"});
        assert_eq!(read_entity(&entity), Entity::Account("6F4A9B2C-1D3E-4F50-8A6B-7C8D9E0F1A2B".into()));
        let entity = json!({"Name": "adele", "UPNSuffix": "contoso.com"});
        assert_eq!(read_entity(&entity), Entity::Account("adele@contoso.com".into()));
    }

    #[test]
    fn other_kinds_and_unusable_accounts_are_skipped() {
        assert!(matches!(read_entity(&json!({"kind": "Host", "properties": {"hostName": "pc1"}})), Entity::Skipped { kind, .. } if kind == "Host"));
        assert!(matches!(read_entity(&json!({"Type": "ip", "Address": "10.0.0.1"})), Entity::Skipped { kind, .. } if kind == "ip"));
        assert!(matches!(read_entity(&json!({"kind": "Account", "properties": {"accountName": "adele", "ntDomain": "CONTOSO"}})), Entity::Skipped { reason, .. } if reason.contains("upnSuffix")));
        assert!(matches!(read_entity(&json!("adele@contoso.com")), Entity::Skipped { .. }));
    }
}
