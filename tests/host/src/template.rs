//! Spin's `{{ name }}` templates and its rules for variable names.
//!
//! Spin lets manifest strings (component variables, `allowed_outbound_hosts` entries) mix
//! literal text with `{{ variable }}` expressions that name application variables. The
//! host parses them the same way so that a manifest Spin rejects is rejected here too, and
//! a manifest Spin accepts resolves to the same strings.

use anyhow::{bail, Result};

/// A parsed template: literal text and references to application variables, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Template {
    parts: Vec<Part>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Part {
    Literal(String),
    Variable(String),
}

impl Template {
    /// Splits `text` at `{{` … `}}`; the name inside is trimmed. Like Spin, there is no
    /// escape for `{{`, and an unclosed `{{` is an error.
    pub(crate) fn parse(text: &str) -> Result<Template> {
        let mut parts = Vec::new();
        let mut rest = text;
        while !rest.is_empty() {
            if let Some(after_open) = rest.strip_prefix("{{") {
                let Some((name, after_close)) = after_open.split_once("}}") else {
                    bail!("invalid template {text:?}: unmatched '{{{{'");
                };
                parts.push(Part::Variable(name.trim().to_string()));
                rest = after_close;
            } else {
                let end = rest.find("{{").unwrap_or(rest.len());
                parts.push(Part::Literal(rest[..end].to_string()));
                rest = &rest[end..];
            }
        }
        Ok(Template { parts })
    }

    /// True when the template has no `{{ }}` expression.
    pub(crate) fn is_literal(&self) -> bool {
        self.parts.iter().all(|p| matches!(p, Part::Literal(_)))
    }

    /// The application variables the template refers to.
    pub(crate) fn variables(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|p| match p {
            Part::Variable(name) => Some(name.as_str()),
            Part::Literal(_) => None,
        })
    }

    /// Substitutes every expression with `lookup(name)`.
    pub(crate) fn render(&self, mut lookup: impl FnMut(&str) -> Result<String>) -> Result<String> {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Literal(text) => out.push_str(text),
                Part::Variable(name) => out.push_str(&lookup(name)?),
            }
        }
        Ok(out)
    }
}

/// Spin's rule for variable names (application and component alike), which keeps them
/// convertible to `SPIN_VARIABLE_*` environment names: lower-case ASCII letters, digits and
/// single underscores, starting with a letter and ending with a letter or digit.
pub(crate) fn validate_name(name: &str) -> Result<()> {
    let reason = if name.is_empty() {
        "must not be empty"
    } else if name
        .chars()
        .any(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
    {
        "may contain only lower-case letters, digits and underscores"
    } else if !name.starts_with(|c: char| c.is_ascii_lowercase()) {
        "must start with a lower-case letter"
    } else if name.ends_with('_') {
        "must end with a lower-case letter or digit"
    } else if name.contains("__") {
        "must not contain consecutive underscores"
    } else {
        return Ok(());
    };
    bail!("invalid variable name {name:?}: {reason}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(t: &str) -> String {
        Template::parse(t)
            .unwrap()
            .render(|name| Ok(format!("<{name}>")))
            .unwrap()
    }

    #[test]
    fn parses_literals_expressions_and_mixes() {
        assert_eq!(render(""), "");
        assert_eq!(render("plain"), "plain");
        assert_eq!(render("{{ a }}"), "<a>");
        assert_eq!(render("{{a}}{{ b }}"), "<a><b>");
        assert_eq!(render("x-{{ a }}-y"), "x-<a>-y");
        assert!(Template::parse("plain").unwrap().is_literal());
        assert!(!Template::parse("x{{a}}").unwrap().is_literal());
        assert!(Template::parse("{{ a }} {{ b").is_err());
    }

    #[test]
    fn names_follow_spin_rules() {
        for good in ["a", "tenant_id", "a1", "a_1_b"] {
            validate_name(good).unwrap();
        }
        for bad in ["", "Tenant", "1a", "_a", "a_", "a__b", "a-b", "a.b"] {
            assert!(validate_name(bad).is_err(), "{bad}");
        }
    }
}
