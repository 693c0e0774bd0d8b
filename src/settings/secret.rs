//! Secrets (the client secret, access tokens, API keys) as a type that cannot leak by accident.
//!
//! `Debug` prints `[redacted]`, there is no `Display`, and the value comes out only
//! through [`Secret::expose`], so every place a secret is used is easy to find. There is
//! no `PartialEq`: `==` on secrets would compare byte by byte and stop at the first
//! difference, telling a guesser by its timing how much was right. A secret is compared
//! only in constant time (`subtle`, as [`crate::caller::caller_auth`] does with API keys).

use std::fmt;

/// A secret string.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The value, for the one place that must send it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_value() {
        let s = Secret::new("hunter2-very-secret");
        assert_eq!(format!("{s:?}"), "[redacted]");
        assert_eq!(format!("{:?}", vec![s.clone()]), "[[redacted]]");
        assert_eq!(s.expose(), "hunter2-very-secret");
    }

    /// `Secret` must not implement `PartialEq` (so no `==`, and no `Eq` either). Checked at
    /// compile time: if it did, the call below would match both impls and not compile.
    #[test]
    fn secrets_have_no_equality_operator() {
        trait NoEquality<Marker> {
            fn check() {}
        }
        struct WithoutEq;
        struct WithEq;
        impl<T: ?Sized> NoEquality<WithoutEq> for T {}
        impl<T: ?Sized + PartialEq> NoEquality<WithEq> for T {}
        <Secret as NoEquality<_>>::check();
    }
}
