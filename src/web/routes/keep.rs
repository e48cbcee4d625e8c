//! `GET /keep/{token}`: where the sunset's re-permission message (`{{keep_url}}`) leads.
//! The link is tracked like every other, so the click that keeps the person is recorded
//! (a link scanner's is not a person's and does not count); this page only says so.

use axum::extract::State;
use axum::http::StatusCode;

use super::PageResult;
use crate::profile::Status;
use crate::web::AppState;
use crate::web::extract::{ProfileLink, Verified};
use crate::web::pages;

/// `GET /keep/{token}`: thanks, with the way back for someone who already lapsed.
pub async fn keep(
    State(state): State<AppState>,
    Verified { profile, token, .. }: Verified<ProfileLink>,
) -> PageResult {
    let site = state.site();
    let centre = format!("/profile/{token}");
    if profile.status == Status::Lapsed {
        return pages::message(
            &site,
            StatusCode::OK,
            "Welcome back",
            &[
                "We had stopped writing to you after a long silence.",
                "Save your preferences in your profile to hear from us again.",
            ],
            Some((&centre, "Your profile")),
        );
    }
    pages::message(
        &site,
        StatusCode::OK,
        "Thank you: you stay subscribed",
        &[&format!(
            "{} keeps getting our emails. Choose topics and how often in your profile.",
            profile.email
        )],
        Some((&centre, "Your profile")),
    )
}
