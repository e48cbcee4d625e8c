//! `GET /o/{token}`: the open pixel, never cached; the open is recorded off the request path.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};

use super::{PageResult, pending};
use crate::store::now;
use crate::track::Purpose;
use crate::web::AppState;
use crate::web::extract::Token;
use crate::web::pages;

/// A transparent 1×1 GIF.
const PIXEL: &[u8] = &[
    0x47, 0x49, 0x46, 0x38, 0x39, 0x61, 0x01, 0x00, 0x01, 0x00, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00,
    0xff, 0xff, 0xff, 0x21, 0xf9, 0x04, 0x01, 0x00, 0x00, 0x00, 0x00, 0x2c, 0x00, 0x00, 0x00, 0x00,
    0x01, 0x00, 0x01, 0x00, 0x00, 0x02, 0x02, 0x44, 0x01, 0x00, 0x3b,
];

/// `GET /o/{token}`: a 1×1 GIF that is never cached; queues the open.
pub async fn open(
    State(state): State<AppState>,
    method: axum::http::Method,
    headers: HeaderMap,
    Token(token): Token,
) -> PageResult {
    let Ok(claims) = state.signer.verify(Purpose::Open, &token, now()) else {
        return pages::not_found(&state.site());
    };
    state
        .hits
        .push(pending(claims.id, None, &headers, &method))
        .await;
    Ok(axum::response::Response::builder()
        .status(StatusCode::OK)
        .header(axum::http::header::CONTENT_TYPE, "image/gif")
        .header(
            axum::http::header::CACHE_CONTROL,
            "no-store, no-cache, must-revalidate, max-age=0",
        )
        .header(axum::http::header::PRAGMA, "no-cache")
        .header(axum::http::header::EXPIRES, "0")
        .body(axum::body::Body::from(PIXEL))
        .expect("valid response"))
}
