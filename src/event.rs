//! What people do, as rapport records it: the kinds of event and the summary segment rules
//! read. Plain data at the bottom of the house, so that the store (which records events)
//! and the segments (which test them) both build on it without depending on each other.

/// The kinds of event rapport records; the name stored in `events.kind` is the snake_case
/// of the variant (`profile_update`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, strum::IntoStaticStr, strum::EnumString)]
#[strum(serialize_all = "snake_case")]
pub enum EventKind {
    /// A campaign message was accepted by the mail server.
    Sent,
    Open,
    Click,
    Unsubscribe,
    Feedback,
    ProfileUpdate,
    /// The mail server refused the address for good, at the send or later (a DSN).
    Bounce,
    /// A DSN reported a transient failure (see `RAPPORT_SOFT_BOUNCE_LIMIT`).
    SoftBounce,
    /// An abuse report (ARF): the person marked the message as spam.
    Complaint,
}

impl EventKind {
    /// The name stored in `events.kind`.
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    /// Parses a stored kind.
    pub fn parse(s: &str) -> Option<EventKind> {
        s.parse().ok()
    }
}

/// The last time a profile did something, per (kind, campaign, tag).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventSummary {
    pub kind: EventKind,
    pub campaign: Option<String>,
    pub tag: Option<String>,
    pub last_at: i64,
}

#[cfg(test)]
mod tests {
    use super::EventKind;

    #[test]
    fn stored_names() {
        assert_eq!(EventKind::ProfileUpdate.as_str(), "profile_update");
        assert_eq!(EventKind::parse("bounce"), Some(EventKind::Bounce));
        assert_eq!(EventKind::parse("Bounce"), None);
    }
}
