//! Failures that are ours, not the visitor's: logged in full, answered with a plain page
//! that does not depend on the template engine (which may be what failed).

use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};

use crate::render::RenderError;
use crate::store::StoreError;

/// An internal failure while handling a request.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Render(#[from] RenderError),
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        tracing::error!(error = %self, "request failed");
        let status = match &self {
            AppError::Store(_) => StatusCode::SERVICE_UNAVAILABLE,
            AppError::Render(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let body = "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
            <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
            <title>Something went wrong</title></head><body style=\"font-family:system-ui,sans-serif;\
            max-width:34rem;margin:3rem auto;padding:0 1rem\"><h1>Something went wrong on our side</h1>\
            <p>Nothing you sent was lost because of it. Please try again in a minute.</p></body></html>";
        (status, Html(body)).into_response()
    }
}
