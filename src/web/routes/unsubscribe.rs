//! `GET|POST /unsubscribe/{token}`: a page that offers fewer emails, dropping single
//! topics, or unsubscribing from everything, each a button; and the POST those buttons send.
//! A POST without a choice (RFC 8058 one-click from mail clients) unsubscribes from
//! everything.

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
    // The person's topics with their labels, to drop one by one.
    let topics: Vec<_> = profile
        .answers
        .topics
        .iter()
        .flatten()
        .filter_map(|key| site.project.topics.iter().find(|t| &t.key == key))
        .collect();
    pages::page(
        &site,
        StatusCode::OK,
        "pages/unsubscribe",
        json!({
            "title": "Unsubscribe",
            "heading": "Unsubscribe",
            "email": profile.email.as_str(),
            "action": format!("/unsubscribe/{token}"),
            "offer_fewer": profile.status == Status::Subscribed && !profile.answers.quarterly(),
            "topics": topics,
        }),
    )
}

/// What the page's buttons ask for (`choice`) instead of unsubscribing from everything
/// (what any other body, and the one-click POST, asks for).
enum Choice {
    /// `choice=fewer`: the newsletter once a quarter.
    Fewer,
    /// `choice=topics` with the topic keys to drop (`drop=KEY`, repeated).
    Drop(Vec<String>),
}

impl Choice {
    /// The choice a form body's `pairs` make, if any.
    fn of(pairs: &[(String, String)]) -> Option<Choice> {
        let choice = pairs
            .iter()
            .find(|(k, _)| k == "choice")
            .map(|(_, v)| v.as_str());
        match choice {
            Some("fewer") => Some(Choice::Fewer),
            Some("topics") => Some(Choice::Drop(
                pairs
                    .iter()
                    .filter(|(k, _)| k == "drop")
                    .map(|(_, v)| v.clone())
                    .collect(),
            )),
            _ => None,
        }
    }
}

/// "Fewer emails" or dropping topics: the answers change (as in the profile centre) and the
/// person stays subscribed.
async fn change_instead(
    state: &AppState,
    profile: &crate::profile::Profile,
    choice: Choice,
) -> PageResult {
    use crate::profile::{Answers, Question};
    let site = state.site();
    let (answers, cleared, said) = match choice {
        Choice::Fewer => (
            Answers {
                frequency: Some("quarterly".into()),
                ..Answers::default()
            },
            Vec::new(),
            "You will get our newsletter once a quarter at most.".to_string(),
        ),
        Choice::Drop(drop) => {
            let kept: Vec<String> = profile
                .answers
                .topics
                .iter()
                .flatten()
                .filter(|t| !drop.contains(t))
                .cloned()
                .collect();
            let said = if drop.is_empty() {
                "No topic was ticked, so nothing changed.".to_string()
            } else if kept.is_empty() {
                "You chose no topics now; the newsletter brings what is newest.".to_string()
            } else {
                format!("Your topics now: {}.", kept.join(", "))
            };
            if kept.is_empty() {
                (Answers::default(), vec![Question::Topics], said)
            } else {
                let answers = Answers {
                    topics: Some(kept),
                    ..Answers::default()
                };
                (answers, Vec::new(), said)
            }
        }
    };
    state
        .store
        .update_answers(profile.id, &answers, &cleared)
        .await?;
    tracing::info!(
        profile_id = profile.id,
        "email preferences changed instead of unsubscribing"
    );
    pages::message(
        &site,
        StatusCode::OK,
        "Your preferences are saved",
        &[
            &said,
            "You stay subscribed; every email has a link to change this again.",
        ],
        None,
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
    // A body that is not a form (or none) asks for what one-click asks: no more email.
    let pairs = body
        .ok()
        .and_then(|b| crate::web::form_body::decode(&b).ok())
        .unwrap_or_default();
    let one_click = pairs
        .iter()
        .any(|(k, v)| k == "List-Unsubscribe" && v == "One-Click");
    if !one_click && profile.status == Status::Subscribed {
        if let Some(choice) = Choice::of(&pairs) {
            return change_instead(&state, &profile, choice).await;
        }
    }
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
