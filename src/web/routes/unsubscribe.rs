//! `GET|POST /unsubscribe/{token}`: a page with one button, and the POST that unsubscribes
//! (also RFC 8058 one-click from mail clients).

use std::net::SocketAddr;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode};
use serde_json::json;

use super::{PageResult, event_origin};
use crate::profile::Status;
use crate::store::ConsentMeta;
use crate::web::AppState;
use crate::web::client::{client_ip, user_agent};
use crate::web::extract::{UnsubscribeLink, Verified};
use crate::web::pages;

/// `GET /unsubscribe/{token}`: one button, so that link scanners following the link do not
/// unsubscribe anyone.
pub async fn unsubscribe_page(
    State(state): State<AppState>,
    Verified { profile, token, .. }: Verified<UnsubscribeLink>,
) -> PageResult {
    let site = state.site();
    if profile.status == Status::Unsubscribed {
        return pages::message(
            &site,
            StatusCode::OK,
            "You are unsubscribed",
            &[&format!("{} gets no more emails from us.", profile.email)],
            None,
        );
    }
    pages::page(
        &site,
        StatusCode::OK,
        "pages/unsubscribe",
        json!({
            "title": "Unsubscribe",
            "heading": "Unsubscribe",
            "email": profile.email.as_str(),
            "action": format!("/unsubscribe/{token}"),
        }),
    )
}

/// `POST /unsubscribe/{token}`: the page's button, or a mail client's one-click request
/// (body `List-Unsubscribe=One-Click`). Immediate, recorded as consent, idempotent.
pub async fn unsubscribe(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Verified {
        profile, claims, ..
    }: Verified<UnsubscribeLink>,
    body: Result<Bytes, BytesRejection>,
) -> PageResult {
    let site = state.site();
    let one_click = body.as_deref().is_ok_and(|b| {
        form_urlencoded::parse(b).any(|(k, v)| k == "List-Unsubscribe" && v == "One-Click")
    });
    let meta = ConsentMeta {
        source: if one_click {
            "list-unsubscribe-one-click"
        } else {
            "unsubscribe-page"
        }
        .into(),
        ip: Some(client_ip(peer, &headers, state.settings.trust_proxy).to_string()),
        user_agent: user_agent(&headers),
        form_version: None,
    };
    let origin = event_origin(&state, &claims.nonce).await?;
    if state.store.unsubscribe(profile.id, &meta, &origin).await? {
        tracing::info!(profile_id = profile.id, one_click, "unsubscribed");
    }
    pages::message(
        &site,
        StatusCode::OK,
        "You are unsubscribed",
        &[&format!(
            "{} gets no more emails from us. If this was a mistake, subscribe again from the sign-up form.",
            profile.email
        )],
        Some(("/", "Sign-up form")),
    )
}
