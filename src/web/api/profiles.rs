//! `/api/v1/profiles/{email}`: read a person (answers, status, current segments),
//! unsubscribe them, erase them.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde_json::{Value, json};

use super::{ApiError, Authorized, ProfilesRead, ProfilesWrite, path_email};
use crate::profile::Profile;
use crate::web::AppState;

async fn find(state: &AppState, raw: &str) -> Result<Profile, ApiError> {
    let email = path_email(raw)?;
    state
        .store
        .profile_by_email(&email)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no profile with the address {email}")))
}

/// What the API says of a person.
async fn shown(state: &AppState, p: &Profile) -> Result<Value, ApiError> {
    let segments = crate::web::segments_of(&state.store, &state.site(), Some(p)).await?;
    Ok(json!({
        "email": p.email.as_str(),
        "status": p.status.as_str(),
        "answers": p.answers.to_json(),
        "segments": segments,
    }))
}

/// `GET /api/v1/profiles/{email}` (`profiles:read`).
pub async fn read(
    _: Authorized<ProfilesRead>,
    State(state): State<AppState>,
    Path(email): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let p = find(&state, &email).await?;
    Ok(Json(shown(&state, &p).await?))
}

/// `POST /api/v1/profiles/{email}/unsubscribe` (`profiles:write`): an opt-out recorded with
/// the token's name as its source; the person as they are now.
pub async fn unsubscribe(
    Authorized(token, _): Authorized<ProfilesWrite>,
    State(state): State<AppState>,
    Path(email): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let p = find(&state, &email).await?;
    let meta = crate::store::ConsentMeta {
        source: format!("api:{}", token.name),
        ..Default::default()
    };
    state
        .store
        .unsubscribe(p.id, &meta, &crate::store::EventOrigin::default())
        .await?;
    let p = find(&state, &email).await?;
    Ok(Json(shown(&state, &p).await?))
}

/// `DELETE /api/v1/profiles/{email}` (`profiles:write`): erased as `rapport profile erase`
/// erases (address and answers gone, aggregates kept, the address suppressed); 204.
pub async fn erase(
    _: Authorized<ProfilesWrite>,
    State(state): State<AppState>,
    Path(email): Path<String>,
) -> Result<StatusCode, ApiError> {
    let p = find(&state, &email).await?;
    state.store.erase(&p).await?;
    Ok(StatusCode::NO_CONTENT)
}
