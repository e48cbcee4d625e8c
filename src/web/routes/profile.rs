//! `GET|POST /profile/{token}` and `/profile/{token}/data`: the profile centre, where a
//! person answers the next questions, changes or removes answers, and downloads their data.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;

use super::PageResult;
use crate::profile::{FieldErrors, Profile, Purpose as FormPurpose, Question, STEP_FIELD};
use crate::web::extract::{FormBody, ProfileLink, Verified};
use crate::web::pages::{self, StepPage};
use crate::web::{AppState, Site};

/// `GET /profile/{token}[?step=N]`: the next unanswered step, or step N to change answers.
pub async fn profile(
    State(state): State<AppState>,
    Verified { profile, token, .. }: Verified<ProfileLink>,
    RawQuery(query): RawQuery,
) -> PageResult {
    let site = state.site();
    let form = &site.project.form;
    let asked = query
        .as_deref()
        .and_then(|q| form_urlencoded::parse(q.as_bytes()).find(|(k, _)| k == STEP_FIELD))
        .and_then(|(_, v)| v.trim().parse::<usize>().ok())
        .and_then(|n| n.checked_sub(1))
        .filter(|&i| !pages::centre_questions(form, i).is_empty());
    let next = next_in_centre(&site, &profile, None);
    let step = asked.or(next);
    let (heading, intro) = match step {
        Some(_) => (
            "Your profile",
            "Answer what you like; every question is optional and you can change your answers at any time.",
        ),
        None => (
            "Thank you",
            "You have answered every question. Here is what you have told us; pick a step above to change it.",
        ),
    };
    StepPage {
        heading,
        intro,
        profile: &profile,
        token: &token,
        step,
        submitted: None,
        errors: &FieldErrors::new(),
    }
    .render(&site, StatusCode::OK)
}

/// The next step the profile centre asks: the first with an unanswered question after
/// `after` (so that a skipped step is not asked again at once), else the first overall.
fn next_in_centre(site: &Site, profile: &Profile, after: Option<usize>) -> Option<usize> {
    let form = &site.project.form;
    let open = |i: usize| {
        pages::centre_questions(form, i)
            .iter()
            .any(|q| !profile.answers.is_answered(*q))
    };
    let n = form.steps().len();
    match after {
        Some(a) => (a + 1..n).find(|&i| open(i)),
        None => (0..n).find(|&i| open(i)),
    }
}

/// `POST /profile/{token}`: saves the answers given and shows the next unanswered step.
pub async fn profile_update(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Verified { profile, token, .. }: Verified<ProfileLink>,
    FormBody(pairs): FormBody,
) -> PageResult {
    let site = state.site();
    let form = &site.project.form;
    let mut sub = form.parse(&pairs, FormPurpose::ProfileCentre);
    let sent_step = sub
        .step
        .and_then(|n| n.checked_sub(1))
        .filter(|&i| i < form.steps().len());
    if let Some(email) = &sub.email {
        if !email.same_mailbox(&profile.email) {
            sub.errors.insert(
                Question::Email.key().into(),
                "The address cannot be changed here. Subscribe with the new address, then unsubscribe this one.".into(),
            );
        }
    }
    if !sub.errors.is_empty() {
        // Show the step that holds the first field at fault, with what was typed.
        let step = sent_step.or_else(|| {
            let first = sub.errors.keys().find_map(|k| Question::from_key(k));
            first.and_then(|q| form.steps().iter().position(|s| s.contains(&q)))
        });
        let step = step
            .filter(|&i| !pages::centre_questions(form, i).is_empty())
            .or(next_in_centre(&site, &profile, None));
        return StepPage {
            heading: "Please check your answers",
            intro: "Some answers need a change before we can save them.",
            profile: &profile,
            token: &token,
            step,
            submitted: Some(&pairs),
            errors: &sub.errors,
        }
        .render(&site, StatusCode::UNPROCESSABLE_ENTITY);
    }
    // The step's answers the person removed: a field sent empty (a blanked name, the empty
    // option of a list), or boxes of which none is ticked (browsers then send nothing).
    let cleared: Vec<Question> = sent_step
        .map(|i| pages::centre_questions(form, i))
        .unwrap_or_default()
        .into_iter()
        .filter(|q| profile.answers.is_answered(*q) && !sub.answers.is_answered(*q))
        .filter(|q| {
            let sent: Vec<&str> = pairs
                .iter()
                .filter(|(k, _)| k == q.key())
                .map(|(_, v)| v.trim())
                .collect();
            match q.kind() {
                crate::profile::Kind::MultiChoice => sent.iter().all(|v| v.is_empty()),
                _ => !sent.is_empty() && sent.iter().all(|v| v.is_empty()),
            }
        })
        .collect();
    if profile.status == crate::profile::Status::Lapsed {
        // Saving from their own link after the sunset: they want our emails again, and
        // the consent record keeps the proof as every opt-in does.
        let meta = crate::store::ConsentMeta {
            source: "profile-centre".into(),
            ip: Some(
                crate::web::client::client_ip(peer, &headers, state.settings.trust_proxy)
                    .to_string(),
            ),
            user_agent: crate::web::client::user_agent(&headers),
            form_version: Some(form.version().to_string()),
        };
        if state.store.resume(profile.id, &meta).await? {
            tracing::info!(profile_id = profile.id, "lapsed profile resumed");
        }
    }
    let Some(updated) = state
        .store
        .update_answers(profile.id, &sub.answers, &cleared)
        .await?
    else {
        return pages::not_found(&site);
    };
    tracing::info!(
        profile_id = updated.id,
        cleared = cleared.len(),
        "profile updated"
    );
    let answered = sub.answers != crate::profile::Answers::default() || !cleared.is_empty();
    if answered
        && crate::schedule::trigger(
            &state.store,
            &site,
            updated.id,
            crate::schedule::Happened::ProfileUpdate,
        )
        .await?
            > 0
    {
        state.worker.wake();
    }
    let step = next_in_centre(&site, &updated, sent_step);
    let (heading, intro) = match step {
        Some(_) => (
            "Saved. One more step?",
            "Thank you. A few more questions; every one is optional.",
        ),
        None => (
            "Thank you",
            "Your answers are saved. Here is what you have told us; pick a step above to change it.",
        ),
    };
    StepPage {
        heading,
        intro,
        profile: &updated,
        token: &token,
        step,
        submitted: None,
        errors: &FieldErrors::new(),
    }
    .render(&site, StatusCode::OK)
}

/// `GET /profile/{token}/data`: everything held about the person, as a JSON download.
pub async fn profile_data(
    State(state): State<AppState>,
    Verified { profile, .. }: Verified<ProfileLink>,
) -> PageResult {
    let data = state.store.personal_data(&profile).await?;
    let body = serde_json::to_vec_pretty(&data).expect("JSON values serialise");
    Ok((
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "application/json; charset=utf-8"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"my-data.json\"",
            ),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body,
    )
        .into_response())
}
