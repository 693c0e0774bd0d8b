//! Caller authentication: is this request allowed to revoke sessions?
//!
//! API keys (SPEC.md, "Caller authentication"): the caller sends `x-api-key`, and it
//! must equal one of the configured keys. Every configured key is compared, in
//! constant time, so neither timing nor early exit tells a caller how close a guess was.
//! Entra ID caller tokens are a later addition; they will be a second `Credential` here.

use subtle::ConstantTimeEq;

use crate::error::Error;
use crate::secret::Secret;

/// The header that carries the caller's key.
pub const API_KEY_HEADER: &str = "x-api-key";

/// Checks the caller's `x-api-key` (if any) against the configured keys.
pub fn authenticate(presented: Option<&str>, configured: &[Secret]) -> Result<(), Error> {
    let Some(presented) = presented else {
        return Err(Error::Unauthenticated(format!(
            "Send the API key in the {API_KEY_HEADER} header."
        )));
    };
    let mut matched = subtle::Choice::from(0u8);
    for key in configured {
        matched |= presented.as_bytes().ct_eq(key.expose().as_bytes());
    }
    if bool::from(matched) {
        Ok(())
    } else {
        Err(Error::Unauthenticated(format!(
            "The {API_KEY_HEADER} header does not hold a valid API key."
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> Vec<Secret> {
        vec![Secret::new("a".repeat(32)), Secret::new("b".repeat(40))]
    }

    #[test]
    fn any_configured_key_is_accepted() {
        assert!(authenticate(Some(&"a".repeat(32)), &keys()).is_ok());
        assert!(authenticate(Some(&"b".repeat(40)), &keys()).is_ok());
    }

    #[test]
    fn missing_wrong_and_partial_keys_are_refused() {
        assert!(matches!(authenticate(None, &keys()), Err(Error::Unauthenticated(m)) if m.contains("x-api-key")));
        for wrong in ["", "a", &"a".repeat(31), &"a".repeat(33), &"c".repeat(32)] {
            assert!(authenticate(Some(wrong), &keys()).is_err(), "{wrong}");
        }
    }

    #[test]
    fn the_message_never_echoes_the_presented_key() {
        let err = authenticate(Some("guess-guess-guess"), &keys()).unwrap_err();
        assert!(!err.to_string().contains("guess"));
    }
}
