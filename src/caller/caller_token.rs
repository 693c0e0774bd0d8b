//! Entra ID access tokens as a caller credential (`Authorization: Bearer <jwt>`).
//!
//! SPEC.md, "Caller authentication", and issue 8: RS256 only, the key chosen by `kid` from
//! the tenant's JWKS ([`crate::caller::jwks`]), `iss` (v1 or v2), `tid`, `aud`, `exp`/`nbf` with
//! [`SKEW`]; then the optional authorisation rules `allowed_callers` (object ids) and
//! `caller_role` (an app role). Pure: the header value, the keys, the policy and the clock
//! are inputs; the answer is a [`Verdict`].
//!
//! Order of checks, and why: the header and the claims are read and checked first, the
//! signature last but before any authorisation rule. A token failing a claim is refused
//! whatever its signature, so checking claims first costs nothing in safety and means a
//! token for the wrong tenant or audience, or an expired one, never triggers a JWKS
//! refetch for its unknown `kid`; it also lets a forwarded Graph token be named as such
//! (Graph tokens carry a `nonce` header and never verify outside Graph). Only a token
//! whose signature verifies reaches the authorisation rules, so `403 forbidden` means
//! "authenticated".
//!
//! No reason ever contains the token or any part of it; claims that reach the log (the
//! caller's `oid` and `appid`/`azp`) are GUIDs parsed as such.
//!
//! The header and the claims are read as `serde_json::Value` objects, not with derived
//! deserializers: the component already carries `Value`'s parser, and two derived ones
//! cost about 5 KiB of the size budget. A member of the wrong type is `Malformed`, as
//! a derived reader would have it. Duplicate members are not refused (the last one
//! counts); that cannot matter: a token is accepted only with Entra's signature over its
//! exact bytes, and Entra issues no duplicate claims. For an unsigned or forged token
//! the claims decide only the reason it is refused and whether a JWKS fetch may happen.

use std::fmt;

use base64ct::{Base64UrlUnpadded, Encoding};
use serde_json::{Map, Value};

use crate::caller::jwks::Jwks;
use crate::crypto::signer;
use crate::inbound::guid::Guid;

/// Clock skew allowed on `exp` and `nbf` (issue 8: 5 minutes, as Entra's own validators).
pub const SKEW_SECONDS: u64 = 5 * 60;
/// Largest token accepted, in bytes. Entra app-only tokens are 1 to 2 KiB and user tokens
/// with many groups stay under 8 KiB (past 200 groups Entra sends an overage claim
/// instead); anything bigger is refused before any decoding.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;
/// The v1 token issuer in every cloud but China's; v1 tokens name the tenant under it.
const V1_ISSUER: &str = "https://sts.windows.net";
/// China (21Vianet) issues v1 tokens under its own security token service.
const V1_ISSUER_CHINA: (&str, &str) = ("https://login.chinacloudapi.cn", "https://sts.chinacloudapi.cn");
/// Audiences of Microsoft Graph in every cloud, and its application id: a token for Graph
/// is someone forwarding their Graph token, never a token for graph-revoke.
/// Source: Microsoft Graph national cloud deployments.
const GRAPH_AUDIENCES: &[&str] = &[
    "00000003-0000-0000-c000-000000000000",
    "https://graph.microsoft.com",
    "https://canary.graph.microsoft.com",
    "https://graph.microsoft.us",
    "https://dod-graph.microsoft.us",
    "https://microsoftgraph.chinacloudapi.cn",
];

/// Who may call, as configured (built from the `caller_*` settings and `tenant_id`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallerPolicy {
    /// The tenant whose tokens are accepted: `tenant_id` when it is a GUID, else `caller_tenant_id`.
    pub tenant: Guid,
    /// `login_base_url`, without a trailing slash: the v2 issuer is `{login_base_url}/{tid}/v2.0`.
    pub login_base_url: String,
    /// `caller_audience` as parsed by [`parse_audience`] (no trailing slash).
    pub audience: String,
    /// The app's `client_id`, also accepted as the audience (v2 tokens name the app by id).
    pub client_id: Option<Guid>,
    /// `allowed_callers`: when not empty, the token's `oid` must be one of them.
    pub allowed_callers: Vec<Guid>,
    /// `caller_role`: when set, it must be one of the token's `roles`.
    pub caller_role: Option<String>,
}

/// The authenticated caller, for the log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// `oid`: the object id of the calling service principal (or user).
    pub object_id: Option<Guid>,
    /// `appid` (v1) or `azp` (v2): the calling application's client id.
    pub app_id: Option<Guid>,
}

impl fmt::Display for Caller {
    /// `oid:<guid> appid:<guid>`, the parts that are known.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut sep = "";
        if let Some(oid) = self.object_id {
            write!(f, "oid:{oid}")?;
            sep = " ";
        }
        if let Some(app) = self.app_id {
            write!(f, "{sep}appid:{app}")?;
        }
        Ok(())
    }
}

/// The result of checking a bearer token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Authenticated and allowed.
    Accepted(Caller),
    /// Well-formed, with claims that pass, but signed with a key the JWKS lacks: the
    /// caller may refetch the JWKS (within [`crate::caller::jwks::may_refetch`]) and verify again;
    /// if it may not, or the key is still unknown, this is a 401.
    UnknownKey,
    /// Not authenticated (401); the reason is safe to show.
    Unauthenticated(Rejection),
    /// Authenticated, but a rule refuses this caller (403).
    Forbidden(Rule),
}

/// Why a token does not authenticate. The texts never contain the token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// The header is not `Bearer <token>`.
    NotBearer,
    /// Longer than [`MAX_TOKEN_BYTES`].
    TooLarge,
    /// Not three base64url segments of JSON, or a claim of the wrong type.
    Malformed,
    /// `alg` is not RS256 (`none`, HS256 and every other alg).
    Algorithm,
    /// No `kid` in the header.
    MissingKeyId,
    /// A `crit` header: extensions this verifier does not understand.
    CriticalHeader,
    /// The key the token names is unknown even after a refetch, or cannot be used.
    UnknownKey,
    /// The signature does not verify.
    Signature,
    /// `tid` missing or another tenant.
    Tenant,
    /// `iss` is neither the v1 nor the v2 issuer of the tenant.
    Issuer,
    /// `aud` is Microsoft Graph: a forwarded Graph token.
    GraphAudience,
    /// `aud` is not `caller_audience` nor the client id.
    Audience,
    /// `exp` missing or more than [`SKEW_SECONDS`] in the past.
    Expired,
    /// `nbf` more than [`SKEW_SECONDS`] in the future.
    NotYetValid,
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Rejection::NotBearer => "The Authorization header must be 'Bearer <access token>'.",
            Rejection::TooLarge => "The bearer token is too large to be an Entra ID access token.",
            Rejection::Malformed => "The bearer token is not a well-formed JWT.",
            Rejection::Algorithm => "The bearer token must be signed with RS256.",
            Rejection::MissingKeyId => "The bearer token names no signing key (kid).",
            Rejection::CriticalHeader => "The bearer token has critical header extensions, which are not supported.",
            Rejection::UnknownKey => "The bearer token is signed with a key the tenant does not publish.",
            Rejection::Signature => "The bearer token's signature does not verify.",
            Rejection::Tenant => "The bearer token was issued for another tenant.",
            Rejection::Issuer => "The bearer token's issuer is not this tenant's Entra ID (v1 or v2).",
            Rejection::GraphAudience => {
                "The bearer token is for Microsoft Graph; request a token for this API's audience (caller_audience) instead."
            }
            Rejection::Audience => "The bearer token is for another audience; request it for this API (caller_audience).",
            Rejection::Expired => "The bearer token has expired.",
            Rejection::NotYetValid => "The bearer token is not valid yet.",
        })
    }
}

/// The authorisation rule that refused an authenticated caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// `allowed_callers` does not list the token's `oid`.
    AllowedCallers,
    /// The token's `roles` lack `caller_role`.
    CallerRole,
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Rule::AllowedCallers => "The caller's object id (oid) is not in allowed_callers.",
            Rule::CallerRole => "The caller has not been granted the app role named by caller_role.",
        })
    }
}

/// The claims read (the others are ignored).
struct Claims<'a> {
    iss: Option<&'a str>,
    tid: Option<&'a str>,
    aud: Option<&'a str>,
    /// NumericDates (RFC 7519): whole or fractional seconds.
    exp: Option<f64>,
    nbf: Option<f64>,
    oid: Option<&'a str>,
    appid: Option<&'a str>,
    azp: Option<&'a str>,
    roles: Vec<&'a str>,
}

impl<'a> Claims<'a> {
    fn read(object: &'a Map<String, Value>) -> Result<Claims<'a>, Rejection> {
        let roles = match object.get("roles") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(roles)) => roles.iter().map(|r| r.as_str().ok_or(Rejection::Malformed)).collect::<Result<_, _>>()?,
            Some(_) => return Err(Rejection::Malformed),
        };
        Ok(Claims {
            iss: text(object, "iss")?,
            tid: text(object, "tid")?,
            aud: text(object, "aud")?,
            exp: number(object, "exp")?,
            nbf: number(object, "nbf")?,
            oid: text(object, "oid")?,
            appid: text(object, "appid")?,
            azp: text(object, "azp")?,
            roles,
        })
    }
}

/// A string member: `None` when absent or `null`; any other type is malformed.
fn text<'a>(object: &'a Map<String, Value>, name: &str) -> Result<Option<&'a str>, Rejection> {
    match object.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok(Some(text)),
        Some(_) => Err(Rejection::Malformed),
    }
}

/// A number member, likewise.
fn number(object: &Map<String, Value>, name: &str) -> Result<Option<f64>, Rejection> {
    match object.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => Ok(n.as_f64()),
        Some(_) => Err(Rejection::Malformed),
    }
}

/// Checks the `Authorization` header value against the keys and the policy at `now_unix`.
pub fn verify(authorization: &str, keys: &Jwks, policy: &CallerPolicy, now_unix: u64) -> Verdict {
    match check(authorization, keys, policy, now_unix) {
        Ok(verdict) => verdict,
        Err(rejection) => Verdict::Unauthenticated(rejection),
    }
}

fn check(authorization: &str, keys: &Jwks, policy: &CallerPolicy, now_unix: u64) -> Result<Verdict, Rejection> {
    let token = bearer_token(authorization)?;
    if token.len() > MAX_TOKEN_BYTES {
        return Err(Rejection::TooLarge);
    }
    let mut segments = token.split('.');
    let (Some(header_b64), Some(claims_b64), Some(signature_b64), None) =
        (segments.next(), segments.next(), segments.next(), segments.next())
    else {
        return Err(Rejection::Malformed);
    };
    let header = decode_object(header_b64)?;
    if text(&header, "alg")? != Some("RS256") {
        return Err(Rejection::Algorithm);
    }
    if header.get("crit").is_some_and(|crit| !crit.is_null()) {
        return Err(Rejection::CriticalHeader);
    }
    let kid = text(&header, "kid")?.filter(|k| !k.is_empty()).ok_or(Rejection::MissingKeyId)?;
    let claims_object = decode_object(claims_b64)?;
    let claims = Claims::read(&claims_object)?;
    check_claims(&claims, policy, now_unix)?;

    let Some(key) = keys.find(kid) else {
        return Ok(Verdict::UnknownKey);
    };
    let (n, e) = key.public_numbers().ok_or(Rejection::UnknownKey)?;
    let signature = Base64UrlUnpadded::decode_vec(signature_b64).map_err(|_| Rejection::Malformed)?;
    let signing_input = &token[..header_b64.len() + 1 + claims_b64.len()];
    if !signer::verify_pkcs1v15(n, e, signing_input.as_bytes(), &signature) {
        return Err(Rejection::Signature);
    }

    let caller = Caller {
        object_id: claims.oid.and_then(Guid::parse),
        app_id: claims.appid.or(claims.azp).and_then(Guid::parse),
    };
    if !policy.allowed_callers.is_empty() && !caller.object_id.is_some_and(|oid| policy.allowed_callers.contains(&oid)) {
        return Ok(Verdict::Forbidden(Rule::AllowedCallers));
    }
    if let Some(role) = &policy.caller_role {
        if !claims.roles.iter().any(|r| r == role) {
            return Ok(Verdict::Forbidden(Rule::CallerRole));
        }
    }
    Ok(Verdict::Accepted(caller))
}

/// The token from `Bearer <token>` (the scheme in any case, RFC 9110).
fn bearer_token(authorization: &str) -> Result<&str, Rejection> {
    let (scheme, token) = authorization.trim().split_once(' ').ok_or(Rejection::NotBearer)?;
    let token = token.trim_start();
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() || token.contains(char::is_whitespace) {
        return Err(Rejection::NotBearer);
    }
    Ok(token)
}

/// A base64url segment holding a JSON object.
fn decode_object(segment: &str) -> Result<Map<String, Value>, Rejection> {
    let bytes = Base64UrlUnpadded::decode_vec(segment).map_err(|_| Rejection::Malformed)?;
    match serde_json::from_slice(&bytes) {
        Ok(Value::Object(object)) => Ok(object),
        _ => Err(Rejection::Malformed),
    }
}

fn check_claims(claims: &Claims, policy: &CallerPolicy, now_unix: u64) -> Result<(), Rejection> {
    let tid = claims.tid.and_then(Guid::parse);
    if tid != Some(policy.tenant) {
        return Err(Rejection::Tenant);
    }
    let issuer = claims.iss.ok_or(Rejection::Issuer)?;
    if !expected_issuers(policy).iter().any(|expected| expected == issuer) {
        return Err(Rejection::Issuer);
    }
    let audience = claims.aud.ok_or(Rejection::Audience)?;
    if is_graph_audience(audience) {
        return Err(Rejection::GraphAudience);
    }
    let audience = audience.strip_suffix('/').unwrap_or(audience);
    let by_name = audience == policy.audience;
    let by_id = Guid::parse(audience)
        .is_some_and(|id| Some(id) == policy.client_id || Guid::parse(&policy.audience) == Some(id));
    if !(by_name || by_id) {
        return Err(Rejection::Audience);
    }
    // Seconds as f64 are exact far beyond any real date; `as u64` floors, and saturates
    // negative or absurd values (JSON has no NaN or infinity).
    let exp = claims.exp.ok_or(Rejection::Expired)? as u64;
    if now_unix > exp.saturating_add(SKEW_SECONDS) {
        return Err(Rejection::Expired);
    }
    if let Some(nbf) = claims.nbf {
        if nbf as u64 > now_unix.saturating_add(SKEW_SECONDS) {
            return Err(Rejection::NotYetValid);
        }
    }
    Ok(())
}

/// The v1 and v2 issuers of the policy's tenant.
fn expected_issuers(policy: &CallerPolicy) -> [String; 2] {
    let v1 = if policy.login_base_url == V1_ISSUER_CHINA.0 { V1_ISSUER_CHINA.1 } else { V1_ISSUER };
    [format!("{v1}/{}/", policy.tenant), format!("{}/{}/v2.0", policy.login_base_url, policy.tenant)]
}

/// Whether an audience is Microsoft Graph (any cloud, with or without a trailing slash).
pub fn is_graph_audience(audience: &str) -> bool {
    let audience = audience.trim().trim_end_matches('/');
    GRAPH_AUDIENCES.iter().any(|g| g.eq_ignore_ascii_case(audience))
}

/// Parses `caller_audience`: the App ID URI or client id callers request tokens for.
/// Returned without a trailing slash; a Graph audience is refused (it would accept
/// forwarded Graph tokens).
pub fn parse_audience(text: &str) -> Result<String, String> {
    let text = text.trim();
    let audience = text.strip_suffix('/').unwrap_or(text);
    if audience.is_empty() || audience.len() > 256 || audience.contains(|c: char| c.is_whitespace() || c == ',') {
        return Err("must be the App ID URI (e.g. api://graph-revoke) or client id that callers request tokens for".into());
    }
    if is_graph_audience(audience) {
        return Err("must be this API's App ID URI or client id, never Microsoft Graph's".into());
    }
    Ok(audience.to_string())
}

/// Parses `allowed_callers`: comma-separated object ids (GUIDs).
pub fn parse_allowed_callers(text: &str) -> Result<Vec<Guid>, String> {
    let entries: Vec<&str> = text.split(',').map(str::trim).filter(|e| !e.is_empty()).collect();
    if entries.is_empty() {
        return Err("holds no object id".into());
    }
    entries
        .iter()
        .enumerate()
        .map(|(i, e)| {
            Guid::parse(e).ok_or_else(|| {
                format!(
                    "entry {} of {} is not an object id (a GUID; the service principal's, not its application id)",
                    i + 1,
                    entries.len()
                )
            })
        })
        .collect()
}

/// Parses `caller_role`: an app role's value, which has no spaces.
pub fn parse_caller_role(text: &str) -> Result<String, String> {
    let role = text.trim();
    if role.is_empty() || role.len() > 250 || role.contains(|c: char| c.is_whitespace() || c == ',') {
        return Err("must be one app role value, e.g. Sessions.Revoke (no spaces or commas)".into());
    }
    Ok(role.to_string())
}

/// The tenant whose tokens are accepted: `tenant_id` when it is a GUID; when it is a domain,
/// `caller_tenant_id` (a GUID) is required, since tokens name their tenant only by GUID.
/// When both are GUIDs they must agree: a token from another tenant is never accepted.
/// The error names the variable and the rule.
pub fn caller_tenant(tenant_id: &str, caller_tenant_id: Option<&str>) -> Result<Guid, (&'static str, String)> {
    let caller_tenant_id = caller_tenant_id.map(str::trim).filter(|t| !t.is_empty());
    let configured = match caller_tenant_id {
        Some(text) => Some(Guid::parse(text).ok_or(("caller_tenant_id", "must be the tenant id, a GUID".to_string()))?),
        None => None,
    };
    match (Guid::parse(tenant_id.trim()), configured) {
        (Some(tenant), None) => Ok(tenant),
        (Some(tenant), Some(caller)) if caller == tenant => Ok(tenant),
        (Some(_), Some(_)) => Err(("caller_tenant_id", "must equal tenant_id (tokens from another tenant are never accepted)".into())),
        (None, Some(caller)) => Ok(caller),
        (None, None) => Err((
            "caller_tenant_id",
            "is required with caller_audience when tenant_id is a domain: set it to the tenant id (a GUID)".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_keys::{self, b64, mint};

    const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
    const CLIENT_ID: &str = "11111111-2222-3333-4444-555555555555";
    const CALLER_OID: &str = "aaaaaaaa-0000-4000-8000-000000000001";
    const CALLER_APP: &str = "bbbbbbbb-0000-4000-8000-000000000002";
    const NOW: u64 = 1_795_000_000;
    const KID: &str = "test-kid-1";

    fn policy() -> CallerPolicy {
        CallerPolicy {
            tenant: Guid::parse(TENANT).unwrap(),
            login_base_url: "https://login.microsoftonline.com".into(),
            audience: "api://graph-revoke".into(),
            client_id: Guid::parse(CLIENT_ID),
            allowed_callers: vec![],
            caller_role: None,
        }
    }

    fn keys() -> Jwks {
        Jwks::parse(test_keys::jwks_document(KID, &test_keys::signer().to_public_key()).as_bytes()).unwrap()
    }

    fn header() -> String {
        format!(r#"{{"typ":"JWT","alg":"RS256","x5t":"{KID}","kid":"{KID}"}}"#)
    }

    /// Claims of a v2 app-only token as Entra issues them, with `edit` applied to the JSON.
    fn v2_claims() -> serde_json::Value {
        serde_json::json!({
            "aud": "api://graph-revoke",
            "iss": format!("https://login.microsoftonline.com/{TENANT}/v2.0"),
            "iat": NOW - 60, "nbf": NOW - 60, "exp": NOW + 3540,
            "aio": "E2ZgYJi", "azp": CALLER_APP, "azpacr": "2",
            "oid": CALLER_OID, "rh": "0.AQ", "roles": ["Sessions.Revoke"],
            "sub": CALLER_OID, "tid": TENANT, "uti": "x", "ver": "2.0"
        })
    }

    fn v1_claims() -> serde_json::Value {
        serde_json::json!({
            "aud": "api://graph-revoke/",
            "iss": format!("https://sts.windows.net/{TENANT}/"),
            "iat": NOW - 60, "nbf": NOW - 60, "exp": NOW + 3540,
            "appid": CALLER_APP, "appidacr": "2", "idp": format!("https://sts.windows.net/{TENANT}/"),
            "oid": CALLER_OID, "roles": ["Sessions.Revoke"], "sub": CALLER_OID, "tid": TENANT, "ver": "1.0"
        })
    }

    fn with(mut claims: serde_json::Value, key: &str, value: serde_json::Value) -> serde_json::Value {
        if value.is_null() {
            claims.as_object_mut().unwrap().remove(key);
        } else {
            claims[key] = value;
        }
        claims
    }

    fn token(claims: &serde_json::Value) -> String {
        mint(&header(), &claims.to_string(), test_keys::signer())
    }

    fn check_token(token: &str, policy: &CallerPolicy) -> Verdict {
        verify(&format!("Bearer {token}"), &keys(), policy, NOW)
    }

    fn accepted() -> Verdict {
        Verdict::Accepted(Caller { object_id: Guid::parse(CALLER_OID), app_id: Guid::parse(CALLER_APP) })
    }

    fn rejected(r: Rejection) -> Verdict {
        Verdict::Unauthenticated(r)
    }

    #[test]
    fn v2_and_v1_tokens_are_accepted() {
        assert_eq!(check_token(&token(&v2_claims()), &policy()), accepted());
        assert_eq!(check_token(&token(&v1_claims()), &policy()), accepted());
    }

    #[test]
    fn the_caller_is_named_by_oid_and_app_id_for_the_log() {
        let Verdict::Accepted(caller) = check_token(&token(&v1_claims()), &policy()) else { panic!() };
        assert_eq!(caller.to_string(), format!("oid:{CALLER_OID} appid:{CALLER_APP}"));
        // A claim that is not a GUID never reaches the log.
        let claims = with(v2_claims(), "azp", "x\ny".into());
        let Verdict::Accepted(caller) = check_token(&token(&claims), &policy()) else { panic!() };
        assert_eq!(caller.to_string(), format!("oid:{CALLER_OID}"));
    }

    #[test]
    fn the_audience_may_be_the_app_id_uri_with_or_without_slash_or_the_client_id() {
        for aud in ["api://graph-revoke", "api://graph-revoke/", CLIENT_ID, &CLIENT_ID.to_uppercase()] {
            let claims = with(v2_claims(), "aud", aud.into());
            assert_eq!(check_token(&token(&claims), &policy()), accepted(), "{aud}");
        }
        // caller_audience may itself be the client id, and the configured slash is optional.
        let mut by_id = policy();
        by_id.audience = CLIENT_ID.into();
        by_id.client_id = None;
        assert_eq!(check_token(&token(&with(v2_claims(), "aud", CLIENT_ID.into())), &by_id), accepted());
    }

    #[test]
    fn wrong_audience_tenant_and_issuer_are_refused() {
        let cases = [
            (with(v2_claims(), "aud", "api://other".into()), Rejection::Audience),
            (with(v2_claims(), "aud", "api://graph-revoke//".into()), Rejection::Audience),
            (with(v2_claims(), "aud", "99999999-2222-3333-4444-555555555555".into()), Rejection::Audience),
            (with(v2_claims(), "aud", serde_json::Value::Null), Rejection::Audience),
            (with(v2_claims(), "tid", "00000000-0000-0000-0000-000000000001".into()), Rejection::Tenant),
            (with(v2_claims(), "tid", serde_json::Value::Null), Rejection::Tenant),
            (with(v2_claims(), "iss", "https://login.microsoftonline.com/00000000-0000-0000-0000-000000000001/v2.0".into()), Rejection::Issuer),
            (with(v2_claims(), "iss", format!("https://login.microsoftonline.us/{TENANT}/v2.0").into()), Rejection::Issuer),
            (with(v2_claims(), "iss", format!("https://evil.example/{TENANT}/v2.0").into()), Rejection::Issuer),
            (with(v2_claims(), "iss", format!("https://sts.windows.net/{TENANT}").into()), Rejection::Issuer),
            (with(v2_claims(), "iss", serde_json::Value::Null), Rejection::Issuer),
        ];
        for (claims, rejection) in cases {
            assert_eq!(check_token(&token(&claims), &policy()), rejected(rejection), "{claims}");
        }
    }

    #[test]
    fn national_cloud_issuers_follow_login_base_url() {
        let mut china = policy();
        china.login_base_url = "https://login.chinacloudapi.cn".into();
        let v1 = with(v1_claims(), "iss", format!("https://sts.chinacloudapi.cn/{TENANT}/").into());
        assert_eq!(check_token(&token(&v1), &china), accepted());
        let v2 = with(v2_claims(), "iss", format!("https://login.chinacloudapi.cn/{TENANT}/v2.0").into());
        assert_eq!(check_token(&token(&v2), &china), accepted());
        // A global-cloud v2 issuer is not China's.
        assert_eq!(check_token(&token(&v2_claims()), &china), rejected(Rejection::Issuer));
    }

    #[test]
    fn graph_tokens_are_refused_as_such() {
        for aud in [
            "https://graph.microsoft.com",
            "https://graph.microsoft.com/",
            "00000003-0000-0000-c000-000000000000",
            "https://graph.microsoft.us",
            "https://dod-graph.microsoft.us",
            "https://microsoftgraph.chinacloudapi.cn",
        ] {
            let claims = with(v2_claims(), "aud", aud.into());
            assert_eq!(check_token(&token(&claims), &policy()), rejected(Rejection::GraphAudience), "{aud}");
        }
    }

    #[test]
    fn expiry_and_not_before_allow_five_minutes_of_skew() {
        let expired_at = |exp: u64| with(v2_claims(), "exp", exp.into());
        assert_eq!(check_token(&token(&expired_at(NOW - 300)), &policy()), accepted());
        assert_eq!(check_token(&token(&expired_at(NOW - 301)), &policy()), rejected(Rejection::Expired));
        assert_eq!(check_token(&token(&with(v2_claims(), "exp", serde_json::Value::Null)), &policy()), rejected(Rejection::Expired));
        let not_before = |nbf: u64| with(v2_claims(), "nbf", nbf.into());
        assert_eq!(check_token(&token(&not_before(NOW + 300)), &policy()), accepted());
        assert_eq!(check_token(&token(&not_before(NOW + 301)), &policy()), rejected(Rejection::NotYetValid));
        assert_eq!(check_token(&token(&with(v2_claims(), "nbf", serde_json::Value::Null)), &policy()), accepted());
        // Fractional NumericDates are read; a string is not a date.
        assert_eq!(check_token(&token(&with(v2_claims(), "exp", (NOW as f64 + 0.5).into())), &policy()), accepted());
        assert_eq!(check_token(&token(&with(v2_claims(), "exp", "soon".into())), &policy()), rejected(Rejection::Malformed));
    }

    #[test]
    fn only_rs256_with_a_kid_is_accepted() {
        let claims = v2_claims().to_string();
        let unsigned = format!("{}.{}.", b64(br#"{"alg":"none","typ":"JWT"}"#), b64(claims.as_bytes()));
        assert_eq!(check_token(&unsigned, &policy()), rejected(Rejection::Algorithm));
        let none_with_sig = mint(&format!(r#"{{"alg":"none","kid":"{KID}"}}"#), &claims, test_keys::signer());
        assert_eq!(check_token(&none_with_sig, &policy()), rejected(Rejection::Algorithm));
        for alg in ["PS256", "RS384", "RS512", "ES256", "rs256", ""] {
            let t = mint(&format!(r#"{{"alg":"{alg}","kid":"{KID}"}}"#), &claims, test_keys::signer());
            assert_eq!(check_token(&t, &policy()), rejected(Rejection::Algorithm), "{alg}");
        }
        let no_alg = mint(&format!(r#"{{"kid":"{KID}"}}"#), &claims, test_keys::signer());
        assert_eq!(check_token(&no_alg, &policy()), rejected(Rejection::Algorithm));
        for header in [r#"{"alg":"RS256"}"#, r#"{"alg":"RS256","kid":""}"#] {
            let t = mint(header, &claims, test_keys::signer());
            assert_eq!(check_token(&t, &policy()), rejected(Rejection::MissingKeyId), "{header}");
        }
        let crit = mint(&format!(r#"{{"alg":"RS256","kid":"{KID}","crit":["b64"],"b64":false}}"#), &claims, test_keys::signer());
        assert_eq!(check_token(&crit, &policy()), rejected(Rejection::CriticalHeader));
    }

    #[test]
    fn hs256_signed_with_the_public_key_as_hmac_secret_is_refused() {
        use hmac::{KeyInit, Mac};
        // The classic key-confusion forgery: HMAC-SHA256 keyed with the published key.
        let public_key = test_keys::signer().to_public_key();
        let input = format!(
            "{}.{}",
            b64(format!(r#"{{"alg":"HS256","typ":"JWT","kid":"{KID}"}}"#).as_bytes()),
            b64(v2_claims().to_string().as_bytes())
        );
        for secret in [test_keys::spki_der(&public_key), test_keys::spki_pem(&public_key).into_bytes()] {
            let mut mac = hmac::Hmac::<sha2_test::Sha256>::new_from_slice(&secret).unwrap();
            mac.update(input.as_bytes());
            let forged = format!("{input}.{}", b64(&mac.finalize().into_bytes()));
            assert_eq!(check_token(&forged, &policy()), rejected(Rejection::Algorithm));
        }
    }

    #[test]
    fn a_signature_by_another_key_or_over_other_claims_is_refused() {
        let claims = v2_claims().to_string();
        let by_other = mint(&header(), &claims, test_keys::other());
        assert_eq!(check_token(&by_other, &policy()), rejected(Rejection::Signature));
        // Claims swapped after signing.
        let good = token(&v2_claims());
        let tampered_claims = with(v2_claims(), "roles", serde_json::json!(["Everything"])).to_string();
        let parts: Vec<&str> = good.split('.').collect();
        let tampered = format!("{}.{}.{}", parts[0], b64(tampered_claims.as_bytes()), parts[2]);
        assert_eq!(check_token(&tampered, &policy()), rejected(Rejection::Signature));
        // A truncated signature.
        let signature = Base64UrlUnpadded::decode_vec(parts[2]).unwrap();
        let truncated = format!("{}.{}.{}", parts[0], parts[1], b64(&signature[..signature.len() - 1]));
        assert_eq!(check_token(&truncated, &policy()), rejected(Rejection::Signature));
    }

    #[test]
    fn an_unknown_kid_asks_for_a_refetch_unless_the_claims_already_fail() {
        let claims = v2_claims().to_string();
        let unknown = mint(r#"{"alg":"RS256","kid":"forged-kid"}"#, &claims, test_keys::other());
        assert_eq!(check_token(&unknown, &policy()), Verdict::UnknownKey);
        // A token that fails its claims never costs a JWKS fetch.
        let expired = mint(r#"{"alg":"RS256","kid":"forged-kid"}"#, &with(v2_claims(), "exp", (NOW - 3600).into()).to_string(), test_keys::other());
        assert_eq!(check_token(&expired, &policy()), rejected(Rejection::Expired));
        // Once refetched with the key, it verifies.
        let refetched = Jwks::parse(test_keys::jwks_document("forged-kid", &test_keys::other().to_public_key()).as_bytes()).unwrap();
        assert_eq!(verify(&format!("Bearer {unknown}"), &refetched, &policy(), NOW), accepted());
    }

    #[test]
    fn malformed_tokens_are_refused() {
        let good = token(&v2_claims());
        let parts: Vec<&str> = good.split('.').collect();
        let cases = [
            "abc".to_string(),
            "a.b".into(),
            format!("{good}.extra"),
            format!("{}.{}.{}.{}.{}", parts[0], parts[1], parts[2], parts[2], parts[2]),
            format!("{}=.{}.{}", parts[0], parts[1], parts[2]),
            format!("{}.{}!.{}", parts[0], parts[1], parts[2]),
            format!("{}.{}.{}", parts[0], parts[1], "***"),
            format!("{}.{}.{}", b64(b"not json"), parts[1], parts[2]),
            format!("{}.{}.{}", parts[0], b64(b"[1,2]"), parts[2]),
            format!("{}.{}.{}", parts[0], b64(br#"{"aud":1}"#), parts[2]),
            format!("{}.{}.{}", parts[0], b64(br#"{"aud":["api://graph-revoke"]}"#), parts[2]),
            format!("{}.{}.{}", parts[0], b64(br#"{"roles":"Sessions.Revoke"}"#), parts[2]),
            format!("{}.{}.{}", parts[0], b64(br#"{"exp":true}"#), parts[2]),
            format!("{}.{}.{}", parts[0], b64(br#"{"roles":["a",1]}"#), parts[2]),
            format!("{}.{}.{}", b64(br#"{"alg":["RS256"]}"#), parts[1], parts[2]),
            format!("{}.{}.{}", b64(br#"{"alg":"RS256","kid":7}"#), parts[1], parts[2]),
        ];
        for t in cases {
            assert_eq!(check_token(&t, &policy()), rejected(Rejection::Malformed), "{t}");
        }
        // Duplicate claims: the last counts, and nothing unsigned gets through with them.
        let duplicate = format!(r#"{{"tid":"{TENANT}","tid":"b"}}"#);
        assert_eq!(check_token(&format!("{}.{}.{}", parts[0], b64(duplicate.as_bytes()), parts[2]), &policy()), rejected(Rejection::Tenant));
        let mut claims = v2_claims().to_string();
        claims.insert_str(1, r#""oid":"cccccccc-0000-4000-8000-000000000003","#);
        let resigned_elsewhere = format!("{}.{}.{}", parts[0], b64(claims.as_bytes()), parts[2]);
        assert_eq!(check_token(&resigned_elsewhere, &policy()), rejected(Rejection::Signature));
    }

    #[test]
    fn the_header_must_be_bearer_and_the_token_not_oversized() {
        let good = token(&v2_claims());
        for header in ["", "Bearer", "Bearer ", "Basic abc", &format!("Token {good}"), &format!("Bearer {good} x")] {
            assert_eq!(verify(header, &keys(), &policy(), NOW), rejected(Rejection::NotBearer), "{header}");
        }
        assert_eq!(verify(&format!("bearer {good}"), &keys(), &policy(), NOW), accepted());
        assert_eq!(verify(&format!("  BEARER   {good} "), &keys(), &policy(), NOW), accepted());
        let padded = with(v2_claims(), "pad", "x".repeat(MAX_TOKEN_BYTES).into());
        assert_eq!(check_token(&token(&padded), &policy()), rejected(Rejection::TooLarge));
        let big_garbage = "a".repeat(10 * MAX_TOKEN_BYTES);
        assert_eq!(check_token(&big_garbage, &policy()), rejected(Rejection::TooLarge));
    }

    #[test]
    fn allowed_callers_and_caller_role_forbid_authenticated_callers() {
        let mut allowed = policy();
        allowed.allowed_callers = vec![Guid::parse("cccccccc-0000-4000-8000-000000000003").unwrap()];
        assert_eq!(check_token(&token(&v2_claims()), &allowed), Verdict::Forbidden(Rule::AllowedCallers));
        allowed.allowed_callers.push(Guid::parse(&CALLER_OID.to_uppercase()).unwrap());
        assert_eq!(check_token(&token(&v2_claims()), &allowed), accepted());
        assert_eq!(check_token(&token(&with(v2_claims(), "oid", serde_json::Value::Null)), &allowed), Verdict::Forbidden(Rule::AllowedCallers));

        let mut role = policy();
        role.caller_role = Some("Sessions.Revoke".into());
        assert_eq!(check_token(&token(&v2_claims()), &role), accepted());
        for roles in [serde_json::json!([]), serde_json::json!(["sessions.revoke"]), serde_json::json!(["Other"]), serde_json::Value::Null] {
            let claims = with(v2_claims(), "roles", roles.clone());
            assert_eq!(check_token(&token(&claims), &role), Verdict::Forbidden(Rule::CallerRole), "{roles}");
        }
        // Forbidden needs a valid signature: a forged token with no role is a 401.
        let forged = mint(&header(), &with(v2_claims(), "roles", serde_json::json!([])).to_string(), test_keys::other());
        assert_eq!(check_token(&forged, &role), rejected(Rejection::Signature));
    }

    #[test]
    fn no_reason_contains_the_token() {
        let t = token(&with(v2_claims(), "aud", "api://other".into()));
        let Verdict::Unauthenticated(r) = check_token(&t, &policy()) else { panic!() };
        let text = r.to_string();
        for part in t.split('.') {
            assert!(!text.contains(&part[..16]), "{text}");
        }
        assert!(!format!("{r:?}").contains(&t[..16]));
    }

    #[test]
    fn an_unusable_published_key_is_refused_not_trusted() {
        let weak = Jwks::from_keys([(KID.to_string(), vec![0xc5; 128], vec![1, 0, 1])]);
        assert_eq!(verify(&format!("Bearer {}", token(&v2_claims())), &weak, &policy(), NOW), rejected(Rejection::UnknownKey));
    }

    #[test]
    fn settings_are_parsed_with_rules_that_name_no_values() {
        assert_eq!(parse_audience(" api://graph-revoke/ ").unwrap(), "api://graph-revoke");
        assert_eq!(parse_audience(CLIENT_ID).unwrap(), CLIENT_ID);
        for bad in ["", "/", "a b", "a,b", "https://graph.microsoft.com/", "00000003-0000-0000-c000-000000000000"] {
            assert!(parse_audience(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_allowed_callers(&format!(" {CALLER_OID} ,{CALLER_APP},")).unwrap().len(), 2);
        let e = parse_allowed_callers(&format!("{CALLER_OID},my-logic-app")).unwrap_err();
        assert!(e.contains("entry 2 of 2") && !e.contains("my-logic-app"), "{e}");
        assert!(parse_allowed_callers(" , ").is_err());
        assert_eq!(parse_caller_role(" Sessions.Revoke ").unwrap(), "Sessions.Revoke");
        assert!(parse_caller_role("a b").is_err() && parse_caller_role("").is_err());
    }

    #[test]
    fn the_accepted_tenant_is_a_guid() {
        let tenant = Guid::parse(TENANT).unwrap();
        assert_eq!(caller_tenant(TENANT, None), Ok(tenant));
        assert_eq!(caller_tenant(&TENANT.to_uppercase(), Some(TENANT)), Ok(tenant));
        assert_eq!(caller_tenant("contoso.onmicrosoft.com", Some(TENANT)), Ok(tenant));
        assert_eq!(caller_tenant("contoso.onmicrosoft.com", None).unwrap_err().0, "caller_tenant_id");
        assert_eq!(caller_tenant("contoso.onmicrosoft.com", Some(" ")).unwrap_err().0, "caller_tenant_id");
        assert_eq!(caller_tenant("contoso.onmicrosoft.com", Some("contoso")).unwrap_err().0, "caller_tenant_id");
        assert!(caller_tenant(TENANT, Some("00000000-0000-0000-0000-000000000001")).is_err());
    }
}
