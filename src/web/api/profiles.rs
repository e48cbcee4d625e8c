//! `/api/v1/profiles/{email}`: read a person (answers, status, current segments),
//! unsubscribe them, erase them.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde_json::{Value, json};

use super::{ApiError, Authorized, JsonBody, ProfilesRead, ProfilesWrite, path_email};
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

/// The body of `PATCH /api/v1/profiles/{email}`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Change {
    /// Answers by question key: text, a number, a list of texts (multiple choice), or `null`
    /// to remove the answer.
    answers: serde_json::Map<String, Value>,
}

/// `PATCH /api/v1/profiles/{email}` (`profiles:write`): changes answers through the same
/// rules as the profile centre (422 naming each field at fault, nothing stored), records a
/// `profile_update` and starts the follow-ups it triggers; the person as now.
pub async fn change(
    _: Authorized<ProfilesWrite>,
    State(state): State<AppState>,
    Path(email): Path<String>,
    JsonBody(change): JsonBody<Change>,
) -> Result<Json<Value>, ApiError> {
    use crate::profile::{Purpose, Question};
    let p = find(&state, &email).await?;
    let site = state.site();
    let mut pairs = Vec::new();
    let mut cleared = Vec::new();
    let mut errors = std::collections::BTreeMap::new();
    for (key, value) in &change.answers {
        let text = |v: &Value| match v {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        };
        match value {
            Value::Null => match Question::from_key(key) {
                Some(q) => cleared.push(q),
                None => {
                    errors.insert(key.clone(), "not a question of the form".to_string());
                }
            },
            Value::Array(items) => {
                for item in items {
                    match text(item) {
                        Some(t) => pairs.push((key.clone(), t)),
                        None => {
                            errors.insert(key.clone(), "a list holds texts only".to_string());
                        }
                    }
                }
            }
            other => match text(other) {
                Some(t) => pairs.push((key.clone(), t)),
                None => {
                    errors.insert(
                        key.clone(),
                        "expected a text, a number, a list of texts or null".to_string(),
                    );
                }
            },
        }
    }
    let sub = site.project.form.parse(&pairs, Purpose::ProfileCentre);
    errors.extend(sub.errors);
    if !errors.is_empty() {
        return Err(ApiError::invalid(
            "some answers cannot be taken; nothing was changed",
            errors,
        ));
    }
    let Some(updated) = state
        .store
        .update_answers(p.id, &sub.answers, &cleared)
        .await?
    else {
        return Err(ApiError::not_found(format!(
            "no profile with the address {email}"
        )));
    };
    crate::schedule::trigger(
        &state.store,
        &site,
        updated.id,
        crate::schedule::Happened::ProfileUpdate,
    )
    .await?;
    state.worker.wake();
    Ok(Json(shown(&state, &updated).await?))
}
