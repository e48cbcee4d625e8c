//! `/api/v1/profiles/{email}`: read a person (answers, status, current segments),
//! unsubscribe them, erase them.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::Value;

use super::{ApiError, ApiPath, Authorized, JsonBody, ProfilesRead, ProfilesWrite, path_email};
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

/// A person as the API shows them.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct PersonView {
    email: String,
    /// pending, subscribed, unsubscribed, bounced or complained.
    status: String,
    answers: crate::profile::Answers,
    /// The segments the person is in now.
    segments: Vec<String>,
}

/// What the API says of a person.
async fn shown(state: &AppState, p: &Profile) -> Result<PersonView, ApiError> {
    let segments = crate::web::segments_of(&state.store, &state.site(), Some(p)).await?;
    Ok(PersonView {
        email: p.email.as_str().to_string(),
        status: p.status.as_str().to_string(),
        answers: p.answers.clone(),
        segments,
    })
}

/// The address in the path.
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
pub struct EmailPath {
    /// The person's address (any case).
    email: String,
}

/// `GET /api/v1/profiles/{email}` (`profiles:read`): a person with answers, status and
/// current segments.
#[utoipa::path(get, path = "/profiles/{email}", tag = "profiles", params(EmailPath),
    security(("token" = ["profiles:read"])),
    responses((status = 200, body = PersonView), (status = 404, body = super::ErrorBody),
        (status = 422, body = super::ErrorBody)))]
pub async fn read(
    _: Authorized<ProfilesRead>,
    State(state): State<AppState>,
    ApiPath(EmailPath { email }): ApiPath<EmailPath>,
) -> Result<Json<PersonView>, ApiError> {
    let p = find(&state, &email).await?;
    Ok(Json(shown(&state, &p).await?))
}

/// `POST /api/v1/profiles/{email}/unsubscribe` (`profiles:write`): an opt-out recorded with
/// the token's name as its source; the person as they are now.
#[utoipa::path(post, path = "/profiles/{email}/unsubscribe", tag = "profiles", params(EmailPath),
    security(("token" = ["profiles:write"])),
    responses((status = 200, body = PersonView), (status = 404, body = super::ErrorBody)))]
pub async fn unsubscribe(
    Authorized(token, _): Authorized<ProfilesWrite>,
    State(state): State<AppState>,
    ApiPath(EmailPath { email }): ApiPath<EmailPath>,
) -> Result<Json<PersonView>, ApiError> {
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
#[utoipa::path(delete, path = "/profiles/{email}", tag = "profiles", params(EmailPath),
    security(("token" = ["profiles:write"])),
    responses((status = 204, description = "erased"), (status = 404, body = super::ErrorBody)))]
pub async fn erase(
    _: Authorized<ProfilesWrite>,
    State(state): State<AppState>,
    ApiPath(EmailPath { email }): ApiPath<EmailPath>,
) -> Result<StatusCode, ApiError> {
    let p = find(&state, &email).await?;
    state.store.erase(&p).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The body of `PATCH /api/v1/profiles/{email}`.
#[derive(Debug, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Change {
    /// Answers by question key: text, a number, a list of texts (multiple choice), or `null`
    /// to remove the answer.
    #[schema(value_type = crate::profile::Answers)]
    answers: serde_json::Map<String, Value>,
}

/// `PATCH /api/v1/profiles/{email}` (`profiles:write`): changes answers through the same
/// rules as the profile centre (422 naming each field at fault, nothing stored), records a
/// `profile_update` and starts the follow-ups it triggers; the person as now.
#[utoipa::path(patch, path = "/profiles/{email}", tag = "profiles", params(EmailPath),
    request_body = Change, security(("token" = ["profiles:write"])),
    responses((status = 200, body = PersonView), (status = 404, body = super::ErrorBody),
        (status = 422, body = super::ErrorBody)))]
pub async fn change(
    _: Authorized<ProfilesWrite>,
    State(state): State<AppState>,
    ApiPath(EmailPath { email }): ApiPath<EmailPath>,
    JsonBody(change): JsonBody<Change>,
) -> Result<Json<PersonView>, ApiError> {
    use crate::profile::{Purpose, Question};
    let p = find(&state, &email).await?;
    let site = state.site();
    let mut pairs = Vec::new();
    let mut cleared = Vec::new();
    let mut errors = std::collections::BTreeMap::new();
    for (key, value) in &change.answers {
        match value {
            Value::Null => match Question::from_key(key) {
                Some(q) => cleared.push(q),
                None => {
                    errors.insert(key.clone(), "not a question of the form".to_string());
                }
            },
            v => match answer_pairs(key, v) {
                Ok(p) => pairs.extend(p),
                Err(e) => {
                    errors.insert(key.clone(), e.to_string());
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

/// `POST /api/v1/profiles` (`profiles:write`): `{"email", answers by question key,
/// "consent": {"source", "ip"?}, "double_opt_in"?}`, checked by the form's own rules; the
/// answers may also come as `"answers": {...}`, the shape `PATCH` takes.
///
/// With double opt-in (the default) it is exactly a form submission: a new address becomes
/// a pending profile and gets the confirmation email (201); a known one gets the email the
/// form would send, its answers waiting for the confirmation link (200). With
/// `"double_opt_in": false` (the caller collected consent itself), a new address is
/// subscribed at once with an `opt_in` consent record naming the caller and the source, and
/// its welcome starts (201); a known address keeps its status, and the answers only fill its
/// gaps (200).
#[utoipa::path(post, path = "/profiles", tag = "profiles", request_body = NewProfile,
    security(("token" = ["profiles:write"])),
    responses((status = 201, description = "created", body = PersonView),
        (status = 200, description = "a known address", body = PersonView),
        (status = 422, body = super::ErrorBody)))]
pub async fn create(
    Authorized(token, _): Authorized<ProfilesWrite>,
    State(state): State<AppState>,
    JsonBody(body): JsonBody<serde_json::Map<String, Value>>,
) -> Result<(StatusCode, Json<PersonView>), ApiError> {
    use crate::profile::Purpose;
    let mut errors = std::collections::BTreeMap::new();
    let mut pairs = vec![("consent".to_string(), "on".to_string())];
    let mut consent = None;
    let mut double_opt_in = true;
    // Answers beside the other fields, or in an object of their own (as PATCH takes and
    // GET shows them); both read by one rule below.
    let mut answers: Vec<(&String, &Value)> = Vec::new();
    for (key, value) in &body {
        match (key.as_str(), value) {
            ("consent", Value::Object(c)) => consent = Some(c.clone()),
            ("consent", _) => {
                errors.insert(
                    key.clone(),
                    "expected {\"source\": \"...\", \"ip\"?: \"...\"}".into(),
                );
            }
            ("double_opt_in", Value::Bool(b)) => double_opt_in = *b,
            ("double_opt_in", _) => {
                errors.insert(key.clone(), "expected true or false".into());
            }
            ("answers", Value::Object(nested)) => answers.extend(nested),
            ("answers", _) => {
                errors.insert(
                    key.clone(),
                    "expected an object of answers by question key, {\"topics\": [\"training\"]}"
                        .into(),
                );
            }
            (_, v) => answers.push((key, v)),
        }
    }
    for (key, v) in answers {
        match answer_pairs(key, v) {
            Ok(p) => pairs.extend(p),
            Err(e) => {
                errors.insert(key.clone(), e.into());
            }
        }
    }
    let source = consent
        .as_ref()
        .and_then(|c| c.get("source"))
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty() && s.len() <= 100);
    if source.is_none() && !errors.contains_key("consent") {
        errors.insert(
            "consent".into(),
            "required: where and how the person gave consent, {\"source\": \"checkout\"} (at most 100 characters)".into(),
        );
    }
    let site = state.site();
    let form = &site.project.form;
    let sub = form.parse(&pairs, Purpose::Subscribe);
    errors.extend(sub.errors);
    let (Some(email), Some(source), true) = (sub.email, source, errors.is_empty()) else {
        return Err(ApiError::invalid(
            "the profile cannot be taken; nothing was stored",
            errors,
        ));
    };
    let meta = crate::store::ConsentMeta {
        source: format!("api:{}:{source}", token.name),
        ip: consent
            .as_ref()
            .and_then(|c| c.get("ip"))
            .and_then(Value::as_str)
            .map(str::to_string),
        user_agent: None,
        form_version: Some(form.version().to_string()),
    };
    let (created, profile) = if double_opt_in {
        let outcome = state
            .request_opt_in(&email, &sub.answers, &meta, None)
            .await?;
        let created = matches!(outcome, crate::store::OptIn::New(_));
        (created, outcome.profile().clone())
    } else {
        match state
            .store
            .subscribe_with_consent(&email, &sub.answers, &meta)
            .await?
        {
            Some(p) => {
                crate::schedule::trigger(
                    &state.store,
                    &site,
                    p.id,
                    crate::schedule::Happened::Confirmed,
                )
                .await?;
                (true, p)
            }
            None => {
                let known = find(&state, email.as_str()).await?;
                // Only the gaps: what the person already answered stays theirs.
                let mut gaps = sub.answers.clone();
                gaps.update_from(&known.answers);
                let updated = state
                    .store
                    .update_answers(known.id, &gaps, &[])
                    .await?
                    .unwrap_or(known);
                (false, updated)
            }
        }
    };
    state.worker.wake();
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(shown(&state, &profile).await?)))
}

/// The body of `POST /api/v1/profiles`: the address, answers by question key beside it,
/// where consent was given, and whether to ask for confirmation. Read field by field
/// through the form's rules (so each mistake is named), not by this type.
#[derive(Debug, serde::Deserialize, utoipa::ToSchema)]
#[allow(dead_code)] // Describes the body for the OpenAPI document.
pub struct NewProfile {
    email: String,
    #[schema(inline)]
    consent: Consent,
    /// `true` (default): a confirmation email first; `false`: you collected consent.
    double_opt_in: Option<bool>,
    #[schema(inline)]
    #[serde(flatten)]
    answers: crate::profile::Answers,
    /// The same answers may come in an object of their own instead, as `PATCH` takes them
    /// (a key given both ways is refused as sent twice).
    #[serde(rename = "answers")]
    answers_object: Option<crate::profile::Answers>,
}

/// Where and how the person gave consent.
#[derive(Debug, serde::Deserialize, utoipa::ToSchema)]
#[allow(dead_code)] // Describes the body for the OpenAPI document.
pub struct Consent {
    /// Where consent was given (`checkout`), at most 100 characters.
    source: String,
    /// The person's IP address then, when known.
    ip: Option<String>,
}

/// The form pairs of one answer given as JSON: text, a number, or a list of texts.
fn answer_pairs(key: &str, v: &Value) -> Result<Vec<(String, String)>, &'static str> {
    let text = |v: &Value| match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    };
    match v {
        Value::Array(items) => items
            .iter()
            .map(|i| text(i).map(|t| (key.to_string(), t)))
            .collect::<Option<Vec<_>>>()
            .ok_or("a list holds texts only"),
        other => text(other)
            .map(|t| vec![(key.to_string(), t)])
            .ok_or("expected a text, a number or a list of texts"),
    }
}
