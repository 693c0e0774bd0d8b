//! The pure entry points that take untrusted input, re-exported for the fuzz targets
//! (`fuzz/`), and the invariants both the fuzz targets and the property tests below
//! assert. Not an API: a cdylib exports only its wasi:http handler, so nothing here
//! reaches the `.wasm` (its size is the same with or without this module).
//!
//! The fuzz package compiles this crate from `src/lib.rs` as an rlib of its own: an
//! `rlib` crate type here would turn off LTO for the component (Cargo does no LTO for a
//! cdylib+rlib crate) and add about 80 KiB to it.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use percent_encoding::percent_decode_str;

pub use crate::graph::batch::read_batch_response;
pub use crate::error::Error;
pub use crate::graph::{read_lookup_response, read_revoke_response};
pub use crate::transport::outbound::OutboundResponse;
pub use crate::inbound::request_body::{
    check_content_type, check_graph_shaped_body, parse_revoke_body, read_query, RevokeRequest, Users, MAX_BODY_BYTES,
};
pub use crate::transport::retry::{parse_retry_after, MAX_RETRY_AFTER};
pub use crate::inbound::route::{route, Route};
pub use crate::identity::token::read_token_response;
pub use crate::caller::caller_token::Verdict as CallerVerdict;

/// A caller's `Authorization` header checked as the caller check does, against the JWKS
/// `jwks` (when it parses) and against a fixed one whose key no one holds: what it says of
/// each. A fixed tenant, login host and audience (`api://graph-revoke`), no rules.
pub fn verify_caller_token(authorization: &str, jwks: &[u8], now_unix: u64) -> (Option<CallerVerdict>, CallerVerdict) {
    use crate::caller::caller_token::{verify, CallerPolicy};
    use crate::caller::jwks::Jwks;
    use crate::inbound::guid::Guid;
    let policy = CallerPolicy {
        tenant: Guid::parse("72f988bf-86f1-41af-91ab-2d7cd011db47").expect("a GUID"),
        login_base_url: "https://login.microsoftonline.com".into(),
        audience: "api://graph-revoke".into(),
        client_id: Guid::parse("11111111-2222-3333-4444-555555555555"),
        allowed_callers: Vec::new(),
        caller_role: None,
    };
    let from_input = Jwks::parse(jwks).map(|keys| verify(authorization, &keys, &policy, now_unix));
    let fixed = Jwks::parse(FIXED_JWKS.as_bytes()).expect("the fixed JWKS parses");
    (from_input, verify(authorization, &fixed, &policy, now_unix))
}

/// A JWKS whose 2048-bit modulus is random (generated once, its factors thrown away): no
/// token can carry a signature it verifies, so nothing checked against it may pass. Its
/// `kid` values are the seeds' (`fuzz/seeds/caller_token`).
const FIXED_JWKS: &str = concat!(
    r#"{"keys":[{"kty":"RSA","use":"sig","kid":"k1","e":"AQAB","n":"jHLwCbZ6XR1k6HYDZXZFoqEvSlrCM8Hz4tokHwMF9ns6pDrLov_fESdG2aTg4nw1LGQcAgVh9hcLigNudME6GMX_qXga42F4d6-Asj_I_kUInccLuI1sRy_iK-cnO5vF9BKHQrxAaAEK_gm9rRgHLoWyAer36XXnSL4K4yF9AJ4pPgEB-ZJXkhOSGwmMNAlJ7_sf9QDgpY5FIsptLjB5SiCkQdnIgnoxYmg8v3jnwTt3DSt1stBcjfJMKzr5Yz_B7MUo9MjKgKRzycHEemW3IeK80-frO4VtktX5I2Ywb-Yo1W81lpPS3-tS9gx5is6sEVeA9zDEGquedwr-RNsnMQ"},"#,
    r#"{"kty":"RSA","kid":"k2","e":"AQAB","n":"jHLwCbZ6XR1k6HYDZXZFoqEvSlrCM8Hz4tokHwMF9ns6pDrLov_fESdG2aTg4nw1LGQcAgVh9hcLigNudME6GMX_qXga42F4d6-Asj_I_kUInccLuI1sRy_iK-cnO5vF9BKHQrxAaAEK_gm9rRgHLoWyAer36XXnSL4K4yF9AJ4pPgEB-ZJXkhOSGwmMNAlJ7_sf9QDgpY5FIsptLjB5SiCkQdnIgnoxYmg8v3jnwTt3DSt1stBcjfJMKzr5Yz_B7MUo9MjKgKRzycHEemW3IeK80-frO4VtktX5I2Ywb-Yo1W81lpPS3-tS9gx5is6sEVeA9zDEGquedwr-RNsnMQ"}]}"#
);

/// A managed identity endpoint's answer as the component reads it: IMDS or App Service
/// (`app_service`), system- or user-assigned (`user_assigned`), at `now_unix`.
pub fn read_identity_response(
    app_service: bool,
    user_assigned: bool,
    response: &OutboundResponse,
    now_unix: u64,
) -> Result<crate::identity::token::AccessToken, Error> {
    use crate::identity::managed_identity::{Endpoint, ManagedIdentity};
    let endpoint = match app_service {
        true => Endpoint::AppService { url: "http://localhost:42356/msi/token".into(), header: crate::settings::secret::Secret::new("h") },
        false => Endpoint::Imds { origin: crate::identity::managed_identity::IMDS_ENDPOINT.into() },
    };
    let client_id = user_assigned.then(|| crate::inbound::guid::Guid::from_random_bytes([1; 16]));
    ManagedIdentity { endpoint, client_id }.read_token_response(response, now_unix)
}
pub use crate::inbound::user_id::UserId;
pub use crate::graph::verification::{judge, Verification};

/// Checks what [`UserId::path_segment`] promises for `id`: the segment is `/{id}` or
/// `('{id}')`; it holds no `/` after its leading one, no `?`, `#`, `\`, `%2F`, raw `+`
/// (Graph reads it as a space) or `^`, no whitespace, control or non-ASCII character;
/// every `%` starts a two-hex-digit escape; percent-decoding it (then undoubling `''`
/// in the quoted form) gives back the id; and a `$` id is always in the quoted form.
pub fn check_path_segment(id: &UserId) -> Result<(), String> {
    check_segment(&id.to_string(), &id.path_segment())
}

/// [`check_path_segment`] on the id as text and its segment.
fn check_segment(id: &str, segment: &str) -> Result<(), String> {
    let fail = |why: &str| Err(format!("{why}: id {id:?}, segment {segment:?}"));
    let (inner, quoted) = match (segment.strip_prefix('/'), segment.strip_prefix("('").and_then(|s| s.strip_suffix("')"))) {
        (Some(inner), _) => (inner, false),
        (None, Some(inner)) => (inner, true),
        (None, None) => return fail("the segment is neither /{id} nor ('{id}')"),
    };
    if inner.is_empty() {
        return fail("the segment is empty");
    }
    if let Some(bad) = inner.chars().find(|c| "/?#\\+^".contains(*c) || !c.is_ascii_graphic()) {
        return fail(&format!("the segment contains {bad:?}"));
    }
    if segment.to_ascii_lowercase().contains("%2f") {
        return fail("the segment contains %2F");
    }
    let bytes = inner.as_bytes();
    for (at, _) in inner.match_indices('%') {
        if !(bytes.len() > at + 2 && bytes[at + 1].is_ascii_hexdigit() && bytes[at + 2].is_ascii_hexdigit()) {
            return fail("a % starts no two-hex-digit escape");
        }
    }
    let Ok(decoded) = percent_decode_str(inner).decode_utf8() else {
        return fail("the segment does not percent-decode to UTF-8");
    };
    let decoded = if quoted {
        // An OData string literal: every quote inside is doubled.
        let mut text = String::with_capacity(decoded.len());
        let mut chars = decoded.chars();
        while let Some(c) = chars.next() {
            if c == '\'' && chars.next() != Some('\'') {
                return fail("a quote inside ('...') is not doubled");
            }
            text.push(c);
        }
        text
    } else {
        if decoded.starts_with('$') {
            return fail("a $ id outside ('...') reads as a system query option");
        }
        decoded.into_owned()
    };
    if decoded != id {
        return fail(&format!("the segment decodes to {decoded:?}"));
    }
    Ok(())
}

/// Clocks a `Retry-After` date is read against: the epoch, a day in 2026, and the
/// last second an HTTP-date can name.
pub fn retry_after_clocks() -> [SystemTime; 3] {
    [UNIX_EPOCH, UNIX_EPOCH + Duration::from_secs(1_795_600_800), UNIX_EPOCH + Duration::from_secs(253_402_300_799)]
}

/// Checks that `Retry-After: value` parses to at most [`MAX_RETRY_AFTER`], whatever
/// its form and the clock.
pub fn check_retry_after(value: &str) -> Result<(), String> {
    for now in retry_after_clocks() {
        if let Some(wait) = parse_retry_after(value, now) {
            if wait > MAX_RETRY_AFTER {
                return Err(format!("Retry-After {value:?} at {now:?} gives {wait:?}, over the cap {MAX_RETRY_AFTER:?}"));
            }
        }
    }
    Ok(())
}

/// Checks what every error promises whatever input caused it: a 4xx/5xx status, a code,
/// a message, header values a header can carry, and a `Retry-After` within the cap.
pub fn check_error(error: &Error) -> Result<(), String> {
    let fail = |why: &str| Err(format!("{why}: {error:?}"));
    if !(400..600).contains(&error.status()) || error.code().is_empty() || error.to_string().trim().is_empty() {
        return fail("status, code or message missing");
    }
    for (name, value) in error.extra_headers() {
        if value.is_empty() || !value.bytes().all(|b| b == b' ' || b.is_ascii_graphic()) {
            return fail(&format!("header {name} carries {value:?}"));
        }
        if name == "retry-after" && value.parse::<u64>().map_or(true, |s| s > MAX_RETRY_AFTER.as_secs()) {
            return fail("Retry-After passed on is not whole seconds within the cap");
        }
    }
    Ok(())
}

/// Checks an error built from an upstream answer: besides [`check_error`], its message
/// holds no control character and is bounded, whatever the upstream body held.
pub fn check_upstream_error(error: &Error) -> Result<(), String> {
    check_error(error)?;
    let message = error.to_string();
    if message.chars().any(char::is_control) || message.len() > 2048 {
        return Err(format!("upstream text reached the message unfiltered: {error:?}"));
    }
    Ok(())
}

/// Checks a proof judged from an upstream answer (`verify`): a code whenever it is not
/// verified, a message free of control characters and bounded, and Graph's time passed on
/// only as a short RFC 3339 UTC date (so nothing else from upstream reaches the answer),
/// always present when verified.
pub fn check_verification(verification: &Verification) -> Result<(), String> {
    let fail = |why: &str| Err(format!("{why}: {verification:?}"));
    if let Some(date) = &verification.valid_from {
        if date.len() > 40 || humantime::parse_rfc3339(date).is_err() {
            return fail("a value that is no RFC 3339 UTC date was passed on");
        }
    }
    match &verification.problem {
        None if verification.valid_from.is_none() => fail("verified without a date"),
        None => Ok(()),
        Some(problem) if problem.code.is_empty() || problem.message.trim().is_empty() => fail("no code or message"),
        Some(problem) if problem.message.chars().any(char::is_control) || problem.message.len() > 2048 => {
            fail("upstream text reached the message unfiltered")
        }
        Some(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Valid UPNs: every character a local part may hold, `$` first sometimes (the
    /// quoted form), quotes, `#EXT#` guests; within every length limit.
    fn upn() -> impl Strategy<Value = String> {
        let local = "[$]?[A-Za-z0-9'._!#^~+$-]{0,56}[A-Za-z0-9'_!#^~+$-]";
        let domain = "[A-Za-z0-9-]{1,20}(\\.[A-Za-z0-9-]{1,12}){0,2}";
        (local, domain, any::<bool>()).prop_map(|(local, domain, guest)| {
            let local = if guest { format!("{local}#EXT#") } else { local };
            format!("{local}@{domain}")
        })
    }

    fn guid() -> impl Strategy<Value = String> {
        "[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
    }

    proptest! {
        #[test]
        fn every_valid_upn_encodes_to_a_safe_segment_that_decodes_back(raw in upn()) {
            let id = UserId::parse(&raw).map_err(TestCaseError::fail)?;
            prop_assert_eq!(check_path_segment(&id), Ok(()));
            prop_assert_eq!(UserId::parse(&id.to_string()), Ok(id));
        }

        #[test]
        fn dollar_upns_with_quotes_decode_back(local in "[a-z']{1,20}", domain in "[a-z]{1,10}\\.com") {
            let id = UserId::parse(&format!("${local}@{domain}")).unwrap();
            prop_assert!(id.path_segment().starts_with("('$"));
            prop_assert_eq!(check_path_segment(&id), Ok(()));
        }

        #[test]
        fn object_ids_encode_to_their_lower_case_form(raw in guid()) {
            let id = UserId::parse(&raw).unwrap();
            prop_assert_eq!(id.path_segment(), format!("/{}", raw.to_ascii_lowercase()));
            prop_assert_eq!(check_path_segment(&id), Ok(()));
        }

        #[test]
        fn any_text_that_parses_encodes_to_a_safe_segment(raw in "[ -~\\t\\r\\n\u{80}-\u{10FFFF}]{0,40}") {
            if let Ok(id) = UserId::parse(&raw) {
                prop_assert_eq!(check_path_segment(&id), Ok(()));
            }
        }

        #[test]
        fn any_id_with_a_url_delimiter_is_refused(
            before in "[a-z]{1,8}",
            delimiter in "[/?%\\\\\\s\\x00-\\x1f\\x7f]",
            after in "[a-z]{0,8}@contoso\\.com",
        ) {
            let raw = format!("{before}{delimiter}{after}");
            prop_assert!(UserId::parse(&raw).is_err(), "{:?} parsed", raw);
        }

        #[test]
        fn retry_after_seconds_never_exceed_the_cap(value in "[ ]?[0-9]{1,30}(\\.[0-9]{0,30})?[ ]?") {
            prop_assert_eq!(check_retry_after(&value), Ok(()));
        }

        #[test]
        fn retry_after_dates_never_exceed_the_cap(seconds in 0u64..253_402_300_800) {
            let value = httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(seconds));
            prop_assert_eq!(check_retry_after(&value), Ok(()));
        }

        #[test]
        fn retry_after_never_panics_on_any_text(value in "\\PC{0,40}") {
            for now in retry_after_clocks() {
                let _ = parse_retry_after(&value, now);
            }
        }
    }

    #[test]
    fn the_checker_catches_what_it_claims_to() {
        let id = UserId::parse("$o'hara#1@contoso.com").unwrap();
        assert_eq!(check_path_segment(&id), Ok(()));
        for (id, bad) in [
            ("a/b@c.com", "/a/b@c.com"),
            ("a/b@c.com", "/a%2Fb@c.com"),
            ("a?b@c.com", "/a?b@c.com"),
            ("a#b@c.com", "/a#b@c.com"),
            ("a b@c.com", "/a b@c.com"),
            ("a\u{1}b@c.com", "/a\u{1}b@c.com"),
            ("a%b@c.com", "/a%b@c.com"),
            ("$a@c.com", "/$a@c.com"),
            ("$a'b@c.com", "('$a'b@c.com')"),
            ("a+b@c.com", "/a+b@c.com"),
            ("a@c.com", "a@c.com"),
            ("a@c.com", "/"),
        ] {
            assert!(check_segment(id, bad).is_err(), "{bad}");
        }
        assert_eq!(check_segment("a+b@c.com", "/a%2Bb@c.com"), Ok(()));
        assert!(check_retry_after("7").is_ok());
        assert!(check_error(&Error::Throttled { retry_after: Some(u64::MAX) }).is_err());
        assert!(check_error(&Error::Throttled { retry_after: Some(7) }).is_ok());
        assert!(check_upstream_error(&Error::GraphError("a\nb".into())).is_err());
        let date = |d: &str| Verification { valid_from: Some(d.into()), problem: None };
        assert!(check_verification(&date("2026-11-25T10:00:03Z")).is_ok());
        assert!(check_verification(&date("2026-11-25T10:00:03Z<b>")).is_err());
        assert!(check_verification(&Verification { valid_from: None, problem: None }).is_err());
    }
}
