//! `GET /` (the opt-in form) and `POST /subscribe`: checks the submission, stores the
//! request with its consent record and queues the confirmation email.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode, header};
use serde_json::json;

use super::PageResult;
use crate::profile::{FieldErrors, Purpose as FormPurpose, Question};
use crate::store::{ConsentMeta, OptIn};
use crate::web::client::{client_ip, user_agent};
use crate::web::extract::FormBody;
use crate::web::pages;
use crate::web::{AppState, Site};

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
/// record and queues the confirmation email. Problems come back next to their fields.
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
    let meta = ConsentMeta {
        source: "form".into(),
        ip: Some(ip.to_string()),
        user_agent: user_agent(&headers),
        form_version: Some(form.version().to_string()),
    };
    // At most a few confirmation emails per address a day, whoever asks: the page says
    // the same either way, so it tells nobody whether the address is known.
    let outcome = state
        .request_opt_in(&email, &sub.answers, &meta, state.settings.confirm_per_day)
        .await?;
    let profile = outcome.profile();
    if let OptIn::OverDailyLimit(_) = outcome {
        tracing::warn!(%ip, profile_id = profile.id, "confirmation emails for this address over the daily limit; nothing sent");
        return check_inbox(&site, email.as_str());
    }
    tracing::info!(
        profile_id = profile.id,
        status = profile.status.as_str(),
        "opt-in requested"
    );
    // The worker sends the confirmation email (and retries it if the mail server is down),
    // so a slow mail server never slows the form.
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
