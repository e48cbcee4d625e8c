//! A parsed, normalised email address: the identity of a profile.

use std::fmt;

/// An address that passed parsing: trimmed, domain lower-cased, no whitespace, control or
/// invisible characters, a dotted domain. The local part keeps the case it was typed in
/// (it is what mail is sent to); the identity of the person is [`Email::key`], so
/// `Ann@Example.COM` and `ann@example.com` are one profile. `==` compares the spelling.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Email(String);

/// Characters that show as nothing, turn the text around, or stand for bytes that were not
/// text (U+FFFD): an address holding one looks like another person's address, or like no
/// address at all. Unicode's format characters (general category Cf), variation selectors
/// and the replacement character.
fn invisible(c: char) -> bool {
    matches!(c,
        '\u{AD}' | '\u{600}'..='\u{605}' | '\u{61C}' | '\u{6DD}' | '\u{70F}' | '\u{890}'..='\u{891}'
        | '\u{8E2}' | '\u{180E}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}'
        | '\u{2060}'..='\u{2064}' | '\u{2066}'..='\u{206F}' | '\u{FE00}'..='\u{FE0F}' | '\u{FEFF}'
        | '\u{FFF9}'..='\u{FFFD}' | '\u{110BD}' | '\u{110CD}' | '\u{13430}'..='\u{1343F}'
        | '\u{1BCA0}'..='\u{1BCA3}' | '\u{1D173}'..='\u{1D17A}' | '\u{E0001}' | '\u{E0020}'..='\u{E007F}'
        | '\u{E0100}'..='\u{E01EF}')
}

/// Why a string is not an acceptable address; the text is shown next to the form field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EmailError {
    #[error("Please enter your email address.")]
    Empty,
    #[error("That address is too long (254 characters at most).")]
    TooLong,
    #[error("An email address looks like name@example.com; this one has no \"@\".")]
    MissingAt,
    #[error("An email address looks like name@example.com; this one has {0}.")]
    Malformed(&'static str),
}

impl Email {
    /// Parses and normalises user input.
    pub fn parse(input: &str) -> Result<Self, EmailError> {
        let s = input.trim();
        if s.is_empty() {
            return Err(EmailError::Empty);
        }
        if s.len() > 254 {
            return Err(EmailError::TooLong);
        }
        let Some((local, domain)) = s.rsplit_once('@') else {
            return Err(EmailError::MissingAt);
        };
        if local.is_empty() {
            return Err(EmailError::Malformed("nothing before the \"@\""));
        }
        if local.len() > 64 {
            return Err(EmailError::Malformed("a name part over 64 characters"));
        }
        if s.chars()
            .any(|c| c.is_whitespace() || c.is_control() || invisible(c))
        {
            return Err(EmailError::Malformed(
                "spaces or invisible characters in it",
            ));
        }
        if local.contains(['@', '"', '(', ')', ',', ':', ';', '<', '>', '[', ']', '\\']) {
            return Err(EmailError::Malformed(
                "characters that are not allowed before the \"@\"",
            ));
        }
        if local.starts_with('.') || local.ends_with('.') || local.contains("..") {
            return Err(EmailError::Malformed("a misplaced dot before the \"@\""));
        }
        let domain = domain.to_lowercase();
        if !domain.contains('.') {
            return Err(EmailError::Malformed(
                "a domain without a dot after the \"@\"",
            ));
        }
        let label_ok = |l: &str| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_alphanumeric() || c == '-')
        };
        if !domain.split('.').all(label_ok) {
            return Err(EmailError::Malformed("an invalid domain after the \"@\""));
        }
        // lettre must accept it too, or we could store an address we cannot mail.
        let normalised = format!("{local}@{domain}");
        if normalised.parse::<lettre::Address>().is_err() {
            return Err(EmailError::Malformed(
                "characters that mail servers do not accept",
            ));
        }
        Ok(Email(normalised))
    }

    /// The normalised address.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The identity of the mailbox: the whole address lower-cased. One profile exists per
    /// key (`Ann@Example.com` and `ann@example.com` are one person), every lookup and
    /// comparison of people goes through it, and the suppression list hashes it.
    pub fn key(&self) -> String {
        self.0.to_lowercase()
    }

    /// Whether two addresses are the same mailbox (see [`Email::key`]).
    pub fn same_mailbox(&self, other: &Email) -> bool {
        self.key() == other.key()
    }

    /// The domain part (after the `@`).
    pub fn domain(&self) -> &str {
        self.0.rsplit_once('@').map(|(_, d)| d).unwrap_or_default()
    }

    /// Whether this is a `rapport demo` address (under [`DEMO_DOMAIN`]): never mailed.
    pub fn is_demo(&self) -> bool {
        self.domain().eq_ignore_ascii_case(DEMO_DOMAIN)
    }
}

/// The domain of every `rapport demo` profile (`.example` is reserved: RFC 2606). The
/// delivery worker sends nothing to it, whatever is queued.
pub const DEMO_DOMAIN: &str = "demo.example";

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for Email {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_case_of_domain_and_trims() {
        let e = Email::parse("  Ann.Lee@Example.COM \n").unwrap();
        assert_eq!(e.as_str(), "Ann.Lee@example.com");
        assert_eq!(e.domain(), "example.com");
    }

    #[test]
    fn rejects_bad_addresses() {
        for bad in [
            "",
            "   ",
            "plainaddress",
            "@example.com",
            "ann@",
            "ann@localhost",
            "ann lee@example.com",
            "ann@exa mple.com",
            "ann@example..com",
            "ann@-example.com",
            "ann\r\n@example.com",
            "a\"b@example.com",
            ".ann@example.com",
            "ann..lee@example.com",
            "a\u{200b}10@example.com",
            "a\u{202e}30@example.com",
            "\u{feff}ann@example.com",
            "ann@exa\u{200d}mple.com",
            "\u{fffd}\u{fffd}@example.com",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad:?} should be rejected");
        }
        let long = format!("{}@example.com", "a".repeat(250));
        assert_eq!(Email::parse(&long), Err(EmailError::TooLong));
    }

    #[test]
    fn accepts_common_addresses() {
        for good in [
            "a@b.co",
            "first.last+tag@sub.example.org",
            "o'neil@example.ie",
            "jos\u{e9}@example.fr",
        ] {
            assert!(Email::parse(good).is_ok(), "{good:?} should be accepted");
        }
    }
}
