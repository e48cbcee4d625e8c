//! Tracking: the signed tokens behind every link, the links each message carries, and how
//! automated hits are told from people.

pub mod automated;
mod hits;
mod token;
mod verp;

pub use hits::{HitQueue, PendingHit};
pub use token::{Claims, MAX_TOKEN_LEN, Purpose, Signer, TokenError};

use crate::render::PersonalLinks;

/// What a message's unsubscribe and feedback links are attributed to: the delivery (sent
/// messages, so that reports can count them per run) or just the campaign (previews).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin<'a> {
    Campaign(&'a str),
    Delivery(i64),
}

impl Origin<'_> {
    /// The token nonce: `d:ID` or `c:CAMPAIGN`.
    pub fn nonce(&self) -> String {
        match self {
            Origin::Campaign(c) => format!("c:{c}"),
            Origin::Delivery(id) => format!("d:{id}"),
        }
    }
}

/// Reads a nonce written by [`Origin::nonce`] (a bare campaign id is read as one).
pub fn origin_of(nonce: &str) -> Origin<'_> {
    if let Some(id) = nonce.strip_prefix("d:").and_then(|d| d.parse().ok()) {
        return Origin::Delivery(id);
    }
    Origin::Campaign(nonce.strip_prefix("c:").unwrap_or(nonce))
}

/// The links every campaign message carries for one recipient: profile centre,
/// unsubscribe (page and `List-Unsubscribe` mailto) and the "was this useful?" votes.
/// Unsubscribe and feedback tokens carry their origin, so that an unsubscribe or a vote
/// counts for the campaign and run it came from.
pub fn personal_links(
    signer: &Signer,
    public_url: &str,
    mailto: &str,
    profile_id: i64,
    origin: Origin<'_>,
) -> PersonalLinks {
    let profile = signer.sign(Purpose::Profile, profile_id, None, "");
    let nonce = origin.nonce();
    let unsubscribe = signer.sign(Purpose::Unsubscribe, profile_id, None, &nonce);
    let feedback = signer.sign(Purpose::Feedback, profile_id, None, &nonce);
    PersonalLinks {
        profile_url: format!("{public_url}/profile/{profile}"),
        unsubscribe_url: format!("{public_url}/unsubscribe/{unsubscribe}"),
        feedback_yes_url: format!("{public_url}/feedback/{feedback}?v=yes"),
        feedback_no_url: format!("{public_url}/feedback/{feedback}?v=no"),
        keep_url: format!("{public_url}/keep/{profile}"),
        unsubscribe_mailto: format!("mailto:{mailto}?subject=unsubscribe%20{unsubscribe}"),
    }
}
