//! `GET /healthz`, and the 404 page of every unknown path.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::PageResult;
use crate::web::AppState;
use crate::web::pages;

/// `GET /healthz`: 200 when the database answers, 503 otherwise.
pub async fn healthz(State(state): State<AppState>) -> Response {
    match state.store.ping().await {
        Ok(()) => (StatusCode::OK, "ok\n").into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "health check: database not answering");
            (StatusCode::SERVICE_UNAVAILABLE, "database unavailable\n").into_response()
        }
    }
}

/// Every unknown path.
pub async fn not_found(State(state): State<AppState>) -> PageResult {
    pages::not_found(&state.site())
}
