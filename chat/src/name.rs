//! The name of a server, channel, role or group DM: parsed once where it enters, so a service
//! never receives one it has to check.

use crate::{ChatError, ChatResult};
use serde::Serialize;

/// A trimmed name of 1 to `Name::MAX` characters without control characters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Name(String);

impl Name {
    /// Longest name, in characters.
    pub const MAX: usize = 100;
    /// What a refused name is told, as the `name` field's error.
    pub const RULE: &'static str = "must be 1-100 characters";

    /// Trims `raw` and accepts it if it is 1 to `MAX` characters without control characters;
    /// otherwise the `name` field error.
    pub fn parse(raw: &str) -> ChatResult<Self> {
        let n = raw.trim();
        if n.is_empty() || n.chars().count() > Self::MAX || n.chars().any(char::is_control) {
            return Err(ChatError::field("name", Self::RULE));
        }
        Ok(Self(n.to_owned()))
    }

    /// An optional name where blank means none (group DMs): `None` for absent or
    /// whitespace-only input, otherwise `parse`.
    pub fn parse_optional(raw: Option<&str>) -> ChatResult<Option<Self>> {
        match raw.map(str::trim) {
            None | Some("") => Ok(None),
            Some(n) => Self::parse(n).map(Some),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for Name {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(raw: &str) -> bool {
        matches!(Name::parse(raw), Err(ChatError::Validation(m)) if m["name"] == [Name::RULE])
    }

    #[test]
    fn trims_and_bounds() {
        assert_eq!(Name::parse("  general ").unwrap().as_str(), "general");
        assert_eq!(
            Name::parse(&"é".repeat(100))
                .unwrap()
                .as_str()
                .chars()
                .count(),
            100
        );
        assert!(refused(&"a".repeat(101)));
        assert!(refused("   "));
        assert!(refused("a\u{7}b"));
    }

    #[test]
    fn blank_optional_is_none() {
        assert_eq!(Name::parse_optional(None).unwrap(), None);
        assert_eq!(Name::parse_optional(Some("  ")).unwrap(), None);
        assert!(Name::parse_optional(Some("friends")).unwrap().is_some());
        assert!(Name::parse_optional(Some("x \u{0}")).is_err());
    }
}
