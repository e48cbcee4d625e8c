//! The links every campaign email carries back to us: unsubscribe (a page with one button,
//! and RFC 8058 one-click POSTs from mail clients) and "was this useful? yes / no".

use std::net::SocketAddr;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{ConnectInfo, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::json;

use super::client::{client_ip, user_agent};
use super::extract::{FeedbackLink, FormBody, Token, UnsubscribeLink, Verified};
use super::pages;
use super::{AppError, AppState};
use crate::profile::Status;
use crate::store::{ConsentMeta, now};
use crate::track::Purpose;

type PageResult = Result<Response, AppError>;

/// The campaign, run and message a token's nonce names (see `track::Origin`).
async fn event_origin(
    state: &AppState,
    nonce: &str,
) -> Result<crate::store::EventOrigin, AppError> {
    Ok(match crate::track::origin_of(nonce) {
        crate::track::Origin::Delivery(id) => match state.store.delivery_ref(id).await? {
            Some(d) => crate::store::EventOrigin {
                campaign: Some(d.campaign),
                run_id: Some(d.run_id),
                delivery_id: Some(d.id),
            },
            None => crate::store::EventOrigin::default(),
        },
        crate::track::Origin::Campaign(c) if !c.is_empty() => crate::store::EventOrigin {
            campaign: Some(c.to_string()),
            ..Default::default()
        },
        crate::track::Origin::Campaign(_) => crate::store::EventOrigin::default(),
    })
}

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

/// `GET /feedback/{token}?v=yes|no`: records the vote and thanks, with a comment box.
pub async fn feedback(
    State(state): State<AppState>,
    headers: HeaderMap,
    Verified {
        profile,
        claims,
        token,
        ..
    }: Verified<FeedbackLink>,
    RawQuery(query): RawQuery,
) -> PageResult {
    let site = state.site();
    let vote = query
        .as_deref()
        .and_then(|q| form_urlencoded::parse(q.as_bytes()).find(|(k, _)| k == "v"))
        .map(|(_, v)| v.into_owned());
    let Some(vote) = vote.filter(|v| v == "yes" || v == "no") else {
        return pages::message(
            &site,
            StatusCode::BAD_REQUEST,
            "That answer is not one we know",
            &["This link takes v=yes or v=no. Please use the links in the email."],
            None,
        );
    };
    state
        .store
        .record_feedback(
            profile.id,
            &event_origin(&state, &claims.nonce).await?,
            &vote,
            user_agent(&headers).as_deref(),
        )
        .await?;
    pages::page(
        &site,
        StatusCode::OK,
        "pages/feedback",
        json!({
            "title": "Thank you",
            "heading": "Thank you for telling us",
            "useful": vote == "yes",
            "action": format!("/feedback/{token}"),
        }),
    )
}

/// `POST /feedback/{token}`: the optional comment after a vote (2,000 characters at most).
pub async fn feedback_comment(
    State(state): State<AppState>,
    headers: HeaderMap,
    Verified {
        profile, claims, ..
    }: Verified<FeedbackLink>,
    FormBody(pairs): FormBody,
) -> PageResult {
    let site = state.site();
    // Kept as written, but without control characters (NUL, ESC, …) other than line breaks.
    let comment: String = pairs
        .iter()
        .find(|(k, _)| k == "comment")
        .map(|(_, v)| v.replace("\r\n", "\n"))
        .unwrap_or_default()
        .chars()
        .filter(|c| *c == '\n' || !c.is_control())
        .collect::<String>()
        .trim()
        .to_string();
    if comment.is_empty() || comment.chars().count() > 2000 {
        return pages::message(
            &site,
            StatusCode::UNPROCESSABLE_ENTITY,
            "Your comment was not saved",
            &["Please write a comment of 1 to 2,000 characters."],
            None,
        );
    }
    state
        .store
        .record_feedback(
            profile.id,
            &event_origin(&state, &claims.nonce).await?,
            &format!("comment: {comment}"),
            user_agent(&headers).as_deref(),
        )
        .await?;
    pages::message(
        &site,
        StatusCode::OK,
        "Thank you",
        &["Your comment reached us. A person reads every one."],
        None,
    )
}

/// A transparent 1×1 GIF.
const PIXEL: &[u8] = &[
    0x47, 0x49, 0x46, 0x38, 0x39, 0x61, 0x01, 0x00, 0x01, 0x00, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00,
    0xff, 0xff, 0xff, 0x21, 0xf9, 0x04, 0x01, 0x00, 0x00, 0x00, 0x00, 0x2c, 0x00, 0x00, 0x00, 0x00,
    0x01, 0x00, 0x01, 0x00, 0x00, 0x02, 0x02, 0x44, 0x01, 0x00, 0x3b,
];

/// A hit as received, for the writer.
fn pending(
    delivery_id: i64,
    link: Option<std::sync::Arc<crate::store::Link>>,
    headers: &HeaderMap,
    method: &axum::http::Method,
) -> crate::track::PendingHit {
    crate::track::PendingHit {
        delivery_id,
        link,
        user_agent: user_agent(headers),
        head: method == axum::http::Method::HEAD,
        at: now(),
    }
}

/// `GET /c/{token}`: redirects (302) to the URL stored for that link when the message was
/// rendered, never to one taken from the request, and queues the click (see `track::hits`:
/// recorded in batches, classified, follow-ups started for people).
pub async fn click(
    State(state): State<AppState>,
    method: axum::http::Method,
    headers: HeaderMap,
    Token(token): Token,
) -> PageResult {
    let Ok(claims) = state.signer.verify(Purpose::Click, &token, now()) else {
        return pages::not_found(&state.site());
    };
    let link = match claims.nonce.parse::<i64>() {
        Ok(id) => state.hits.link(id).await?,
        Err(_) => None,
    };
    let Some(link) = link else {
        return pages::not_found(&state.site());
    };
    let location = link.url.clone();
    state
        .hits
        .push(pending(claims.id, Some(link), &headers, &method))
        .await;
    Ok(axum::response::Response::builder()
        .status(StatusCode::FOUND)
        .header(axum::http::header::LOCATION, location)
        .header(axum::http::header::CACHE_CONTROL, "no-store")
        .body(axum::body::Body::empty())
        .expect("valid response"))
}

/// `GET /o/{token}`: a 1×1 GIF that is never cached; queues the open.
pub async fn open(
    State(state): State<AppState>,
    method: axum::http::Method,
    headers: HeaderMap,
    Token(token): Token,
) -> PageResult {
    let Ok(claims) = state.signer.verify(Purpose::Open, &token, now()) else {
        return pages::not_found(&state.site());
    };
    state
        .hits
        .push(pending(claims.id, None, &headers, &method))
        .await;
    Ok(axum::response::Response::builder()
        .status(StatusCode::OK)
        .header(axum::http::header::CONTENT_TYPE, "image/gif")
        .header(
            axum::http::header::CACHE_CONTROL,
            "no-store, no-cache, must-revalidate, max-age=0",
        )
        .header(axum::http::header::PRAGMA, "no-cache")
        .header(axum::http::header::EXPIRES, "0")
        .body(axum::body::Body::from(PIXEL))
        .expect("valid response"))
}
