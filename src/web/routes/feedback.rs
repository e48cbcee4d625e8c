//! `GET|POST /feedback/{token}`: "was this useful?" votes and the comment after them.

use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use serde_json::json;

use super::{PageResult, event_origin};
use crate::web::AppState;
use crate::web::client::user_agent;
use crate::web::extract::{FeedbackLink, FormBody, Verified};
use crate::web::pages;

/// `GET /feedback/{token}?v=yes|no`: records the vote and thanks, with a comment box. A
/// link scanner's fetch (HEAD, its user agent, or within seconds of the send: see
/// `track::automated`) is recorded as automated and never counted.
pub async fn feedback(
    State(state): State<AppState>,
    method: axum::http::Method,
    headers: HeaderMap,
    Verified {
        profile,
        claims,
        token,
        ..
    }: Verified<FeedbackLink>,
    RawQuery(query): RawQuery,
) -> PageResult {
    let site = state.site();
    let vote = query
        .as_deref()
        .and_then(|q| form_urlencoded::parse(q.as_bytes()).find(|(k, _)| k == "v"))
        .map(|(_, v)| v.into_owned());
    let Some(vote) = vote.filter(|v| v == "yes" || v == "no") else {
        return pages::message(
            &site,
            StatusCode::BAD_REQUEST,
            "That answer is not one we know",
            &["This link takes v=yes or v=no. Please use the links in the email."],
            None,
        );
    };
    record(&state, &profile, &claims, &headers, &vote, Some(&method)).await?;
    pages::page(
        &site,
        StatusCode::OK,
        "pages/feedback",
        json!({
            "title": "Thank you",
            "heading": "Thank you for telling us",
            "useful": vote == "yes",
            "action": format!("/feedback/{token}"),
        }),
    )
}

/// `POST /feedback/{token}`: the optional comment after a vote (2,000 characters at most).
pub async fn feedback_comment(
    State(state): State<AppState>,
    headers: HeaderMap,
    Verified {
        profile, claims, ..
    }: Verified<FeedbackLink>,
    FormBody(pairs): FormBody,
) -> PageResult {
    let site = state.site();
    // Kept as written, but without control characters (NUL, ESC, …) other than line breaks.
    let comment: String = pairs
        .iter()
        .find(|(k, _)| k == "comment")
        .map(|(_, v)| v.replace("\r\n", "\n"))
        .unwrap_or_default()
        .chars()
        .filter(|c| *c == '\n' || !c.is_control())
        .collect::<String>()
        .trim()
        .to_string();
    if comment.is_empty() || comment.chars().count() > 2000 {
        return pages::message(
            &site,
            StatusCode::UNPROCESSABLE_ENTITY,
            "Your comment was not saved",
            &["Please write a comment of 1 to 2,000 characters."],
            None,
        );
    }
    record(
        &state,
        &profile,
        &claims,
        &headers,
        &format!("comment: {comment}"),
        None,
    )
    .await?;
    pages::message(
        &site,
        StatusCode::OK,
        "Thank you",
        &["Your comment reached us. A person reads every one."],
        None,
    )
}

/// Records a vote or comment (`value`) for the message the link came from. A vote
/// (`method` given) is classified like a click; a comment is a form a person posted.
async fn record(
    state: &AppState,
    profile: &crate::profile::Profile,
    claims: &crate::track::Claims,
    headers: &HeaderMap,
    value: &str,
    method: Option<&axum::http::Method>,
) -> Result<(), crate::web::AppError> {
    let origin = event_origin(state, &claims.nonce).await?;
    let agent = user_agent(headers);
    let automated = method.is_some_and(|m| {
        crate::track::automated::looks_automated(
            m == axum::http::Method::HEAD,
            agent.as_deref(),
            origin.sent_at.map(|t| crate::store::now() - t),
        )
    });
    state
        .store
        .record_feedback(profile.id, &origin, value, agent.as_deref(), automated)
        .await?;
    Ok(())
}
