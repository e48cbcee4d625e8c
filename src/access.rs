//! Who may call the API: the scopes a token can carry, new tokens, and how they are kept
//! (only their SHA-256 is stored; the token is shown once, at creation).

use sha2::{Digest, Sha256};

/// What a token allows; named as `rapport token create --scopes` takes them.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, strum::IntoStaticStr, strum::EnumString, strum::EnumIter,
)]
pub enum Scope {
    #[strum(serialize = "profiles:read")]
    ProfilesRead,
    #[strum(serialize = "profiles:write")]
    ProfilesWrite,
    #[strum(serialize = "events:write")]
    EventsWrite,
    #[strum(serialize = "campaigns:run")]
    CampaignsRun,
    #[strum(serialize = "reports:read")]
    ReportsRead,
}

impl Scope {
    /// The name in `--scopes` and in `rapport token list`.
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A scope list that could not be read; names the culprit and the scopes there are.
#[derive(Debug, thiserror::Error)]
#[error("unknown scope {0:?}; the scopes are {all}", all = all_scopes())]
pub struct ScopeError(pub String);

fn all_scopes() -> String {
    use strum::IntoEnumIterator;
    Scope::iter()
        .map(Scope::as_str)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Reads `profiles:read,reports:read` (spaces allowed), without repeats, in a fixed order.
pub fn parse_scopes(s: &str) -> Result<Vec<Scope>, ScopeError> {
    use strum::IntoEnumIterator;
    let mut given = Vec::new();
    for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        given.push(
            item.parse::<Scope>()
                .map_err(|_| ScopeError(item.to_string()))?,
        );
    }
    if given.is_empty() {
        return Err(ScopeError(String::new()));
    }
    Ok(Scope::iter().filter(|s| given.contains(s)).collect())
}

/// Whether a stored scope list (comma-separated) holds `scope`.
pub fn allows(stored: &str, scope: Scope) -> bool {
    stored.split(',').any(|s| s.trim() == scope.as_str())
}

/// A new token (`rpt_` and 64 hex digits of randomness) and the hash to store.
pub fn new_token() -> (String, String) {
    let token = format!("rpt_{}", hex::encode(rand::random::<[u8; 32]>()));
    let hash = token_hash(&token);
    (token, hash)
}

/// The SHA-256 of a token, in hex: what the database keeps and looks tokens up by.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.trim().as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_read_and_check() {
        assert_eq!(
            parse_scopes(" reports:read, profiles:read,reports:read").unwrap(),
            [Scope::ProfilesRead, Scope::ReportsRead]
        );
        let e = parse_scopes("profiles:read,admin").unwrap_err();
        assert!(e.to_string().contains("\"admin\""), "{e}");
        assert!(e.to_string().contains("campaigns:run"), "{e}");
        assert!(parse_scopes(" , ").is_err());
        assert!(allows("profiles:read,reports:read", Scope::ReportsRead));
        assert!(!allows("profiles:read", Scope::ProfilesWrite));
        let (t, h) = new_token();
        assert!(t.starts_with("rpt_") && t.len() == 68);
        assert_eq!(token_hash(&t), h);
        assert_ne!(new_token().0, t);
    }
}
