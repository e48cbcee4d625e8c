//! What people do, as rapport records it: the kinds of event and the summary segment rules
//! read. Plain data at the bottom of the house, so that the store (which records events)
//! and the segments (which test them) both build on it without depending on each other.

/// The kinds of event rapport records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    /// A campaign message was accepted by the mail server.
    Sent,
    Open,
    Click,
    Unsubscribe,
    Feedback,
    ProfileUpdate,
    /// The mail server refused the address for good.
    Bounce,
}

impl EventKind {
    /// The name stored in `events.kind`.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Sent => "sent",
            EventKind::Open => "open",
            EventKind::Click => "click",
            EventKind::Unsubscribe => "unsubscribe",
            EventKind::Feedback => "feedback",
            EventKind::ProfileUpdate => "profile_update",
            EventKind::Bounce => "bounce",
        }
    }

    /// Parses a stored kind.
    pub fn parse(s: &str) -> Option<EventKind> {
        use EventKind::*;
        [
            Sent,
            Open,
            Click,
            Unsubscribe,
            Feedback,
            ProfileUpdate,
            Bounce,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
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
