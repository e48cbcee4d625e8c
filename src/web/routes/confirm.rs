//! `GET|POST /confirm/{token}`: the confirmation link of double opt-in, and the button
//! that link scanners are shown instead.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode};
use serde_json::json;

use super::PageResult;
use crate::profile::{FieldErrors, Profile};
use crate::store::{ConsentMeta, now};
use crate::track::Purpose;
use crate::web::client::{client_ip, user_agent};
use crate::web::extract::Token;
use crate::web::pages::{self, StepPage};
use crate::web::{AppError, AppState, Site};

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
    let ua = user_agent(&headers);
    if method != axum::http::Method::HEAD
        && !crate::track::automated::looks_automated(false, ua.as_deref(), None)
    {
        // A person's browser: verified and confirmed in one step (`confirm_now`).
        return confirm_now(&state, &site, peer, &headers, &token, "confirmation-link").await;
    }
    let Some(profile) = confirmable(&state, &token).await? else {
        return pages::not_found(&site);
    };
    tracing::info!(
        profile_id = profile.id,
        "confirmation link fetched by an automated agent; asking for the button"
    );
    pages::page(
        &site,
        StatusCode::OK,
        "pages/confirm",
        json!({
            "title": "Confirm your subscription",
            "heading": "Confirm your subscription",
            "email": profile.email.as_str(),
            "action": format!("/confirm/{token}"),
        }),
    )
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

/// The profile a confirmation token still applies to, without changing anything (for the
/// scanner's page, which shows the address).
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
