//! Tenant IDs, validated with Mimir's rules.

/// Longest tenant ID accepted, in bytes.
pub const MAX_TENANT_ID_LENGTH: usize = 150;

/// The tenant used when tenancy is not required and no header was sent.
pub const DEFAULT_NO_AUTH_TENANT: &str = "anonymous";

/// A validated tenant ID: safe to use in file names, cache keys and logs.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TenantId(String);

/// Why a tenant ID was refused; the messages are Mimir's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TenantIdError {
    #[error("tenant ID is empty")]
    Empty,
    #[error("tenant ID is too long: max {MAX_TENANT_ID_LENGTH} characters")]
    TooLong,
    #[error("tenant ID '{id}' contains unsupported character '{character}'")]
    UnsupportedCharacter { id: String, character: char },
    #[error("tenant ID is '.' or '..'")]
    DotOrDotDot,
}

impl TenantId {
    /// Validates `id`: at most 150 bytes of `[a-zA-Z0-9!._*'()-]`, not `.` or `..`.
    pub fn new(id: &str) -> Result<Self, TenantIdError> {
        if id.is_empty() {
            return Err(TenantIdError::Empty);
        }
        if id.len() > MAX_TENANT_ID_LENGTH {
            return Err(TenantIdError::TooLong);
        }
        if let Some(character) = id.chars().find(|c| !is_supported(*c)) {
            return Err(TenantIdError::UnsupportedCharacter {
                id: id.to_owned(),
                character,
            });
        }
        if id == "." || id == ".." {
            return Err(TenantIdError::DotOrDotDot);
        }
        Ok(TenantId(id.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for TenantId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn is_supported(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '!' | '-' | '_' | '.' | '*' | '\'' | '(' | ')')
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn accepts_mimir_examples() {
        for id in ["anonymous", "team-a", "a.b_c!*'()", "1", &"x".repeat(150)] {
            assert_eq!(TenantId::new(id).map(|t| t.to_string()), Ok(id.to_owned()));
        }
    }

    #[test]
    fn rejects_with_mimirs_messages() {
        assert_eq!(
            TenantId::new(".").unwrap_err().to_string(),
            "tenant ID is '.' or '..'"
        );
        assert_eq!(TenantId::new("..").unwrap_err(), TenantIdError::DotOrDotDot);
        assert_eq!(
            TenantId::new(&"x".repeat(151)).unwrap_err().to_string(),
            "tenant ID is too long: max 150 characters"
        );
        assert_eq!(
            TenantId::new("a/b").unwrap_err().to_string(),
            "tenant ID 'a/b' contains unsupported character '/'"
        );
        assert_eq!(
            TenantId::new("a|b").unwrap_err(),
            TenantIdError::UnsupportedCharacter {
                id: "a|b".into(),
                character: '|'
            }
        );
        assert_eq!(TenantId::new(""), Err(TenantIdError::Empty));
        assert!(TenantId::new("tenant:sub").is_err());
        assert!(TenantId::new("é").is_err());
    }

    proptest! {
        #[test]
        fn valid_ids_are_path_safe(id in "[a-zA-Z0-9!._*'()-]{1,150}") {
            match TenantId::new(&id) {
                Ok(t) => {
                    prop_assert!(!t.as_str().contains('/'));
                    prop_assert!(t.as_str() != "." && t.as_str() != "..");
                }
                Err(e) => prop_assert_eq!(e, TenantIdError::DotOrDotDot),
            }
        }

        #[test]
        fn any_other_character_is_refused(prefix in "[a-z]{0,5}", c in any::<char>(), suffix in "[a-z]{0,5}") {
            prop_assume!(!is_supported(c));
            let id = format!("{prefix}{c}{suffix}");
            let is_unsupported = matches!(TenantId::new(&id), Err(TenantIdError::UnsupportedCharacter { .. }));
            let is_too_long = matches!(TenantId::new(&id), Err(TenantIdError::TooLong));
            prop_assert!(is_unsupported || is_too_long);
        }
    }
}
