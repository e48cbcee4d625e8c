//! Public pages: the opt-in form, the confirmation link, the profile centre and health.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::client::{client_ip, user_agent};
use super::extract::{FormBody, ProfileLink, Token, Verified};
use super::pages::{self, StepPage};
use super::{AppError, AppState, Site};
use crate::profile::{FieldErrors, Profile, Purpose as FormPurpose, Question, STEP_FIELD};
use crate::store::{ConsentMeta, OptIn, now};
use crate::track::Purpose;

type PageResult = Result<Response, AppError>;

/// `GET /`: the first step of the form with the consent checkbox.
pub async fn form(State(state): State<AppState>) -> PageResult {
    if let Err(e) = state.store.count_form_view().await {
        tracing::warn!(error = %e, "could not count a form view");
    }
    let site = state.site();
    subscribe_page(&site, StatusCode::OK, &[], &FieldErrors::new())
}

fn subscribe_page(
    site: &Site,
    status: StatusCode,
    sent: &[(String, String)],
    errors: &FieldErrors,
) -> PageResult {
    let form = &site.project.form;
    // The first step, plus any later question the post carried, so that nothing typed is lost.
    let mut first = form.steps().first().cloned().unwrap_or_default();
    for q in Question::ALL {
        if !first.contains(&q) && sent.iter().any(|(k, _)| k == q.key()) {
            first.push(q);
        }
    }
    let sender = site.project.sender.name();
    pages::page(
        site,
        status,
        "pages/subscribe",
        json!({
            "title": format!("Subscribe to {sender}"),
            "heading": format!("Stay in touch with {sender}"),
            "intro": "Tell us a little about your business and we will send you training, tips and news that fit it. Only the email address is required.",
            "action": "/subscribe",
            "fields": pages::fields(form, &first, |q| pages::submitted(sent, q.key()), errors),
            "errors": pages::error_list(errors),
            "consent": {
                "label": format!("Yes, send me the welcome email, the monthly newsletter and occasional follow-ups from {sender}. I can unsubscribe at any time."),
                "checked": pages::submitted(sent, "consent").iter().any(|v| !v.is_empty()),
                "error": errors.get("consent"),
            },
            "button": "Subscribe",
        }),
    )
}

/// `POST /subscribe`: checks the submission, stores a pending profile with its consent
/// record and sends the confirmation email. Problems come back next to their fields.
pub async fn subscribe(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    FormBody(pairs): FormBody,
) -> PageResult {
    let site = state.site();
    let ip = client_ip(peer, &headers, state.settings.trust_proxy);
    if let Some(limiter) = &state.limiter {
        if limiter.check_key(&ip).is_err() {
            let mut resp = pages::message(
                &site,
                StatusCode::TOO_MANY_REQUESTS,
                "Too many sign-ups from your connection",
                &[
                    "We received a lot of sign-ups from your network in the last minute. Please wait a minute and try again.",
                ],
                Some(("/", "Back to the form")),
            )?;
            resp.headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from_static("60"));
            return Ok(resp);
        }
    }
    let form = &site.project.form;
    let sub = form.parse(&pairs, FormPurpose::Subscribe);
    if !sub.errors.is_empty() {
        return subscribe_page(&site, StatusCode::UNPROCESSABLE_ENTITY, &pairs, &sub.errors);
    }
    let Some(email) = sub.email else {
        return subscribe_page(&site, StatusCode::UNPROCESSABLE_ENTITY, &pairs, &sub.errors);
    };
    if sub.honeypot {
        tracing::info!(%ip, "honeypot filled in; submission ignored");
        return check_inbox(&site, email.as_str());
    }
    // At most a few confirmation emails per address a day, whoever asks: the page says
    // the same either way, so it tells nobody whether the address is known.
    if let Some(limit) = state.settings.confirm_per_day {
        let asked = state
            .store
            .opt_in_requests_since(&email, now() - 86_400)
            .await?;
        if asked >= i64::from(limit) {
            tracing::warn!(%ip, asked, "confirmation emails for this address over the daily limit; nothing sent");
            return check_inbox(&site, email.as_str());
        }
    }
    let meta = ConsentMeta {
        source: "form".into(),
        ip: Some(ip.to_string()),
        user_agent: user_agent(&headers),
        form_version: Some(form.version().to_string()),
    };
    let outcome = state
        .store
        .request_opt_in(&email, &sub.answers, &meta)
        .await?;
    let profile = outcome.profile();
    tracing::info!(
        profile_id = profile.id,
        status = profile.status.as_str(),
        "opt-in requested"
    );
    let already = matches!(outcome, OptIn::AlreadySubscribed(_));
    if let Err(e) = send_confirmation(&state, &site, profile, already).await {
        tracing::error!(profile_id = profile.id, error = %e, "confirmation email not sent");
        return pages::message(
            &site,
            StatusCode::SERVICE_UNAVAILABLE,
            "We saved your details but could not send the email",
            &[
                "Your answers are stored. Our mail server did not take the confirmation email just now; please send the form again in a few minutes to get a new one.",
            ],
            Some(("/", "Back to the form")),
        );
    }
    check_inbox(&site, email.as_str())
}

fn check_inbox(site: &Site, email: &str) -> PageResult {
    pages::message(
        site,
        StatusCode::OK,
        "Check your inbox",
        &[
            &format!(
                "We sent an email to {email}. Click the link in it to confirm your subscription."
            ),
            "Nothing there in a few minutes? Look in your spam folder, or send the form again.",
        ],
        None,
    )
}

/// A failure to build or send the confirmation email.
#[derive(Debug, thiserror::Error)]
enum ConfirmMailError {
    #[error(transparent)]
    Mail(#[from] crate::mail::MailError),
    #[error(transparent)]
    Send(#[from] crate::delivery::SendError),
}

async fn send_confirmation(
    state: &AppState,
    site: &Site,
    profile: &Profile,
    already: bool,
) -> Result<(), ConfirmMailError> {
    let ttl = state.settings.confirm_ttl.as_secs() as i64;
    let composed = state.mailer.confirmation(
        site,
        profile,
        already,
        ttl,
        now(),
        state.transport.eight_bit(),
    )?;
    state.transport.send(composed.message).await?;
    tracing::info!(profile_id = profile.id, message_id = %composed.message_id, "confirmation email sent");
    Ok(())
}

/// `GET /confirm/{token}`: a person's browser subscribes (idempotent) and is asked the
/// next questions. Link scanners fetch every link of a message as it arrives: a `HEAD`, or
/// a `GET` that `track::automated` calls automated, gets a page with one button (the
/// `POST` below) and changes nothing.
pub async fn confirm(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    method: axum::http::Method,
    headers: HeaderMap,
    Token(token): Token,
) -> PageResult {
    let site = state.site();
    let Some(profile) = confirmable(&state, &token).await? else {
        return pages::not_found(&site);
    };
    let ua = user_agent(&headers);
    if method == axum::http::Method::HEAD
        || crate::track::automated::looks_automated(false, ua.as_deref(), None)
    {
        tracing::info!(
            profile_id = profile.id,
            "confirmation link fetched by an automated agent; asking for the button"
        );
        return pages::page(
            &site,
            StatusCode::OK,
            "pages/confirm",
            json!({
                "title": "Confirm your subscription",
                "heading": "Confirm your subscription",
                "email": profile.email.as_str(),
                "action": format!("/confirm/{token}"),
            }),
        );
    }
    confirm_now(&state, &site, peer, &headers, &token, "confirmation-link").await
}

/// `POST /confirm/{token}`: the button of the page automated agents get.
pub async fn confirm_button(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Token(token): Token,
) -> PageResult {
    let site = state.site();
    confirm_now(&state, &site, peer, &headers, &token, "confirmation-button").await
}

/// The pending profile a confirmation token still applies to, without changing anything.
async fn confirmable(state: &AppState, token: &str) -> Result<Option<Profile>, AppError> {
    let claims = match state.signer.verify(Purpose::Confirm, token, now()) {
        Ok(c) => c,
        Err(e) => {
            tracing::info!(reason = %e, "confirmation link refused");
            return Ok(None);
        }
    };
    Ok(state.store.linked_profile(claims.id).await?.filter(|p| {
        let (request, _) = crate::profile::split_confirmation_nonce(&claims.nonce);
        p.confirm_nonce.as_deref() == Some(request)
    }))
}

/// Subscribes the person a confirmation token names; `source` goes into the consent record
/// (`confirmation-link`: a browser followed the link; `confirmation-button`: the button).
async fn confirm_now(
    state: &AppState,
    site: &Site,
    peer: SocketAddr,
    headers: &HeaderMap,
    token: &str,
    source: &str,
) -> PageResult {
    let claims = match state.signer.verify(Purpose::Confirm, token, now()) {
        Ok(c) => c,
        Err(e) => {
            tracing::info!(reason = %e, "confirmation link refused");
            return pages::not_found(site);
        }
    };
    let meta = ConsentMeta {
        source: source.into(),
        ip: Some(client_ip(peer, headers, state.settings.trust_proxy).to_string()),
        user_agent: user_agent(headers),
        form_version: Some(site.project.form.version().to_string()),
    };
    let Some(done) = state.store.confirm(claims.id, &claims.nonce, &meta).await? else {
        tracing::info!(
            profile_id = claims.id,
            "confirmation link no longer applies"
        );
        return pages::not_found(site);
    };
    if done.newly_confirmed {
        tracing::info!(profile_id = done.profile.id, "subscription confirmed");
        let queued = crate::schedule::trigger(
            &state.store,
            site,
            done.profile.id,
            crate::schedule::Happened::Confirmed,
        )
        .await?;
        if queued > 0 {
            state.worker.wake();
        }
    }
    let centre = state
        .signer
        .sign(Purpose::Profile, done.profile.id, None, "");
    let step = site.project.form.next_step(&done.profile.answers);
    let (heading, intro) = match step {
        Some(_) => (
            "You are subscribed. One more step?",
            "Tell us a little more so that we send only what is useful to your business. Every question is optional.",
        ),
        None => (
            "You are subscribed",
            "Thank you. Here is what you have told us; you can change it at any time.",
        ),
    };
    StepPage {
        heading,
        intro,
        profile: &done.profile,
        token: &centre,
        step,
        submitted: None,
        errors: &FieldErrors::new(),
    }
    .render(site, StatusCode::OK)
}

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
