//! A request's path parameters and query string, read with errors in the API's shape:
//! axum's own extractors answer a bad one (`%FF` in an address, a parameter given twice)
//! in plain text, which a client parsing `{"error": ...}` cannot read.

use axum::extract::FromRequestParts;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::http::StatusCode;

use super::ApiError;

/// The path parameters, as `axum::extract::Path` reads them.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct ApiPath<T>(pub T);

/// The query string, as `axum::extract::Query` reads it.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct ApiQuery<T>(pub T);

impl From<PathRejection> for ApiError {
    fn from(e: PathRejection) -> ApiError {
        unreadable("path", e.body_text())
    }
}

impl From<QueryRejection> for ApiError {
    fn from(e: QueryRejection) -> ApiError {
        unreadable("query", e.body_text())
    }
}

/// 400: the `part` of the request cannot be read, and why.
fn unreadable(part: &str, why: String) -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        "malformed",
        format!("the {part} cannot be read: {why}"),
    )
}
