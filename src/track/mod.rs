//! Tracking: the signed tokens behind every link, the links each message carries, and how
//! automated hits are told from people.

pub mod automated;
mod token;

pub use token::{Claims, MAX_TOKEN_LEN, Purpose, Signer, TokenError};

use crate::render::PersonalLinks;

/// The links every campaign message carries for one recipient: profile centre,
/// unsubscribe (page and `List-Unsubscribe` mailto) and the "was this useful?" votes.
/// Unsubscribe and feedback tokens name the campaign in their nonce, so that an
/// unsubscribe or a vote counts for the campaign it came from.
pub fn personal_links(
    signer: &Signer,
    public_url: &str,
    mailto: &str,
    profile_id: i64,
    campaign: &str,
) -> PersonalLinks {
    let profile = signer.sign(Purpose::Profile, profile_id, None, "");
    let unsubscribe = signer.sign(Purpose::Unsubscribe, profile_id, None, campaign);
    let feedback = signer.sign(Purpose::Feedback, profile_id, None, campaign);
    PersonalLinks {
        profile_url: format!("{public_url}/profile/{profile}"),
        unsubscribe_url: format!("{public_url}/unsubscribe/{unsubscribe}"),
        feedback_yes_url: format!("{public_url}/feedback/{feedback}?v=yes"),
        feedback_no_url: format!("{public_url}/feedback/{feedback}?v=no"),
        unsubscribe_mailto: format!("mailto:{mailto}?subject=unsubscribe%20{unsubscribe}"),
    }
}
