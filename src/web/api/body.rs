//! JSON request bodies read strictly, with errors in the API's shape: a content type other
//! than `application/json` is 415, a body over [`MAX_JSON`] 413, JSON that does not parse
//! or does not fit 400 naming the line and column (and the field, for a wrong one).

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{StatusCode, header};
use serde::de::DeserializeOwned;

use super::ApiError;
use crate::web::AppState;

/// The largest JSON body taken (a batch of 1,000 events fits).
pub const MAX_JSON: usize = 1024 * 1024;

/// A JSON body of type `T`.
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        let json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(';').next().unwrap_or("").trim())
            .is_some_and(|v| v.eq_ignore_ascii_case("application/json"));
        if !json {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send the body as JSON with Content-Type: application/json",
            ));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|_| {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                format!("the body is over {MAX_JSON} bytes"),
            )
        })?;
        serde_json::from_slice(&bytes).map(JsonBody).map_err(|e| {
            // serde_json's message ends with its own "at line L column C"; said once, ours.
            let text = e.to_string();
            let at = format!(" at line {} column {}", e.line(), e.column());
            let what = text.strip_suffix(&at).unwrap_or(&text);
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "malformed",
                format!(
                    "the body is not the JSON expected: {what} (line {}, column {})",
                    e.line(),
                    e.column()
                ),
            )
        })
    }
}
