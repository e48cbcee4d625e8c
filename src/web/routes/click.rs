//! `GET /c/{token}`: a tracked link. Redirects to the URL stored when the message was
//! rendered (never one from the request) and records the click off the request path.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};

use super::{PageResult, pending};
use crate::store::now;
use crate::track::Purpose;
use crate::web::AppState;
use crate::web::extract::Token;
use crate::web::pages;

/// `GET /c/{token}`: redirects (302) to the URL stored for that link when the message was
/// rendered, never to one taken from the request, and queues the click (see `track::hits`:
/// recorded in batches, classified, follow-ups started for people).
pub async fn click(
    State(state): State<AppState>,
    method: axum::http::Method,
    headers: HeaderMap,
    Token(token): Token,
) -> PageResult {
    let Ok(claims) = state.signer.verify(Purpose::Click, &token, now()) else {
        return pages::not_found(&state.site());
    };
    let link = match claims.nonce.parse::<i64>() {
        Ok(id) => state.hits.link(id).await?,
        Err(_) => None,
    };
    let Some(link) = link else {
        return pages::not_found(&state.site());
    };
    let location = link.url.clone();
    state
        .hits
        .push(pending(claims.id, Some(link), &headers, &method))
        .await;
    Ok(axum::response::Response::builder()
        .status(StatusCode::FOUND)
        .header(axum::http::header::LOCATION, location)
        .header(axum::http::header::CACHE_CONTROL, "no-store")
        .body(axum::body::Body::empty())
        .expect("valid response"))
}
