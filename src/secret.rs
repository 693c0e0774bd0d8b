//! Secrets (the client secret, access tokens, API keys) as a type that cannot leak by accident.
//!
//! `Debug` prints `[redacted]`, there is no `Display`, and the value comes out only
//! through [`Secret::expose`], so every place a secret is used is easy to find.

use std::fmt;

/// A secret string.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The value, for the one place that must send or compare it.
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
}
