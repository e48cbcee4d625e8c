//! What people do, as rapport records it: the kinds of event and the summary segment rules
//! read. Plain data at the bottom of the house, so that the store (which records events)
//! and the segments (which test them) both build on it without depending on each other.

/// The kinds of event rapport records; the name stored in `events.kind` is the snake_case
/// of the variant (`profile_update`).
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    strum::IntoStaticStr,
    strum::EnumString,
    strum::VariantNames,
)]
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
    /// Something the person did elsewhere, reported by another system through
    /// `POST /api/v1/events`: the tag holds the declared name (`course_completed`), the
    /// value the properties as JSON.
    External,
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

/// What a webhook can be told about (`[[webhook]] events = [...]`): the `type` of its body.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    strum::IntoStaticStr,
    strum::EnumString,
    strum::VariantNames,
)]
#[strum(serialize_all = "snake_case")]
pub enum HookEvent {
    /// A person confirmed, or was added as subscribed through the API (imports are bulk
    /// and not told).
    Subscribed,
    Unsubscribed,
    /// A person changed answers in the profile centre or through the API.
    ProfileUpdated,
    /// A human click on a tracked link (never a link scanner's).
    Clicked,
    /// A hard bounce, at the send or reported later.
    Bounced,
    Complained,
    /// A "was this useful?" vote or comment.
    Feedback,
}

impl HookEvent {
    /// The `type` in a webhook body.
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    /// Every type, for messages.
    pub fn names() -> &'static [&'static str] {
        <HookEvent as strum::VariantNames>::VARIANTS
    }
}

/// The last time a profile did something, per (kind, campaign, tag), and how often.
/// External events are summarised per second (`count` of them at `last_at`), so that
/// "at least N times within D days" can be answered from the summary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventSummary {
    pub kind: EventKind,
    pub campaign: Option<String>,
    pub tag: Option<String>,
    pub last_at: i64,
    pub count: i64,
}

/// The event names rapport records itself, which `[events] names` may not reuse.
pub fn built_in() -> &'static [&'static str] {
    <EventKind as strum::VariantNames>::VARIANTS
}

#[cfg(test)]
mod tests {
    use super::EventKind;

    #[test]
    fn stored_names() {
        assert_eq!(EventKind::ProfileUpdate.as_str(), "profile_update");
        assert_eq!(EventKind::parse("bounce"), Some(EventKind::Bounce));
        assert_eq!(EventKind::parse("Bounce"), None);
        assert!(super::built_in().contains(&"soft_bounce"));
        assert!(super::built_in().contains(&"external"));
    }
}
