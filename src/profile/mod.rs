//! Who a subscriber is: the parsed email address, the built-in questions, the answers and
//! the progressive form that asks for them a few at a time.

mod email;
mod form;
mod question;

pub use email::{DEMO_DOMAIN, Email, EmailError};
pub use form::{
    CONSENT_FIELD, Choice, FORM_ERROR_KEY, FieldErrors, Form, FormError, HONEYPOT_FIELD, Purpose,
    STEP_FIELD, Submission, label_for,
};
pub use question::{
    Answers, ENGAGEMENTS, FREQUENCIES, Kind, QUARTERLY_GAP_DAYS, Question, ROLES, Value,
};

/// Where a profile is in its life: only `Subscribed` profiles receive campaigns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Pending,
    Subscribed,
    Unsubscribed,
    Bounced,
    Complained,
    /// Silent too long: sent the sunset's re-permission message and did not click it
    /// within [`LAPSE_DAYS`]. Kept, not mailed; the form or the profile centre brings
    /// them back.
    Lapsed,
}

/// Days a person has to click the sunset's re-permission message before they lapse.
pub const LAPSE_DAYS: i64 = 14;

impl Status {
    /// The name stored in the database and shown in exports.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Subscribed => "subscribed",
            Status::Unsubscribed => "unsubscribed",
            Status::Bounced => "bounced",
            Status::Complained => "complained",
            Status::Lapsed => "lapsed",
        }
    }

    /// Parses a stored status name.
    pub fn parse(s: &str) -> Option<Status> {
        [
            Status::Pending,
            Status::Subscribed,
            Status::Unsubscribed,
            Status::Bounced,
            Status::Complained,
            Status::Lapsed,
        ]
        .into_iter()
        .find(|st| st.as_str() == s)
    }
}

/// A stored profile: identity, status and answers.
#[derive(Debug, Clone)]
pub struct Profile {
    pub id: i64,
    pub email: Email,
    pub status: Status,
    pub answers: Answers,
    /// Binds confirmation links to the current subscription request; cleared on unsubscribe
    /// so that an old confirmation link cannot subscribe someone again.
    pub confirm_nonce: Option<String>,
    /// Set while answers sent on the public form for this known address wait for the
    /// confirmation link of that request (see [`Profile::confirmation_nonce`]).
    pub pending_nonce: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

impl Profile {
    /// The nonce a confirmation link for the latest request carries: the request's, and
    /// when answers of that request wait, theirs too (`REQUEST.PENDING`), so that following
    /// the link applies them and an older link does not.
    pub fn confirmation_nonce(&self) -> String {
        let request = self.confirm_nonce.as_deref().unwrap_or("");
        match &self.pending_nonce {
            Some(p) => format!("{request}.{p}"),
            None => request.to_string(),
        }
    }
}

/// A confirmation link's nonce as (request, waiting answers); see
/// [`Profile::confirmation_nonce`].
pub fn split_confirmation_nonce(nonce: &str) -> (&str, Option<&str>) {
    match nonce.split_once('.') {
        Some((request, pending)) => (request, Some(pending)),
        None => (nonce, None),
    }
}
