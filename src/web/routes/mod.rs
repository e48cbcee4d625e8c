//! The routes, one file per endpoint (or per pair of GET and POST on one path), as
//! Zero To Production lays them out. Handlers are a few lines: tokens are checked and form
//! bodies read by the extractors (`web::extract`), pages rendered by `web::pages`.

mod click;
mod confirm;
mod feedback;
mod health;
mod keep;
mod open;
mod profile;
mod subscribe;
mod unsubscribe;

pub use click::click;
pub use confirm::{confirm, confirm_button};
pub use feedback::{feedback, feedback_comment};
pub use health::{healthz, not_found};
pub use keep::keep;
pub use open::open;
pub use profile::{profile, profile_data, profile_update};
pub use subscribe::{form, subscribe};
pub use unsubscribe::{unsubscribe, unsubscribe_page};

use axum::http::HeaderMap;
use axum::response::Response;

use crate::store::now;
use crate::web::client::user_agent;
use crate::web::{AppError, AppState};

/// What a page handler answers.
pub type PageResult = Result<Response, AppError>;

/// The campaign, run and message a token's nonce names (see `track::Origin`).
async fn event_origin(
    state: &AppState,
    nonce: &str,
) -> Result<crate::store::EventOrigin, AppError> {
    Ok(match crate::track::origin_of(nonce) {
        crate::track::Origin::Delivery(id) => match state.store.delivery_ref(id).await? {
            Some(d) => crate::store::EventOrigin {
                campaign: Some(d.campaign),
                run_id: Some(d.run_id),
                delivery_id: Some(d.id),
                sent_at: d.sent_at,
            },
            None => crate::store::EventOrigin::default(),
        },
        crate::track::Origin::Campaign(c) if !c.is_empty() => crate::store::EventOrigin {
            campaign: Some(c.to_string()),
            ..Default::default()
        },
        crate::track::Origin::Campaign(_) => crate::store::EventOrigin::default(),
    })
}

/// A hit as received, for the writer.
fn pending(
    delivery_id: i64,
    link: Option<std::sync::Arc<crate::store::Link>>,
    headers: &HeaderMap,
    method: &axum::http::Method,
) -> crate::track::PendingHit {
    crate::track::PendingHit {
        delivery_id,
        link,
        user_agent: user_agent(headers),
        head: method == axum::http::Method::HEAD,
        at: now(),
    }
}
