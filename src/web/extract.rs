//! The extractors every public handler shares, so that a token is checked and a form body
//! read in one place each:
//!
//! - [`Token`]: the `{token}` path segment, as text (a segment that is not even text
//!   becomes an empty token, which fails verification like any other: 404, not 400);
//! - [`Verified`]: the person a signed personal link names, for one purpose (profile
//!   centre, unsubscribe, feedback). A tampered, foreign or expired token, or the link of an
//!   erased person, is refused with the 404 page before the handler runs;
//! - [`FormBody`]: a form post's fields, read strictly (`form_body`); too large, too slow,
//!   not a form or not UTF-8 is refused with a page that says which.

use std::marker::PhantomData;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::{StatusCode, header, request::Parts};
use axum::response::{IntoResponse, Response};

use super::{AppState, form_body, pages};
use crate::profile::Profile;
use crate::store::now;
use crate::track::{Claims, Purpose};

/// The `{token}` of a link.
pub struct Token(pub String);

impl<S: Send + Sync> FromRequestParts<S> for Token {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let token = Path::<String>::from_request_parts(parts, state)
            .await
            .map(|p| p.0)
            .unwrap_or_default();
        Ok(Token(token))
    }
}

/// Why an extractor refused a request: the page to answer with (404 for a refused link,
/// 413/408/415/400 for a form body), rendered with the marketer's templates. The one
/// rejection type of this module.
pub struct Refused(Box<Response>);

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        *self.0
    }
}

impl From<Response> for Refused {
    fn from(r: Response) -> Refused {
        Refused(Box::new(r))
    }
}

/// What a personal link may do; each marker names one [`Purpose`].
pub trait LinkPurpose: Send + Sync + 'static {
    const PURPOSE: Purpose;
}

/// A profile-centre link (`/profile/{token}`).
pub struct ProfileLink;
/// An unsubscribe link (`/unsubscribe/{token}`).
pub struct UnsubscribeLink;
/// A feedback link (`/feedback/{token}`).
pub struct FeedbackLink;

impl LinkPurpose for ProfileLink {
    const PURPOSE: Purpose = Purpose::Profile;
}
impl LinkPurpose for UnsubscribeLink {
    const PURPOSE: Purpose = Purpose::Unsubscribe;
}
impl LinkPurpose for FeedbackLink {
    const PURPOSE: Purpose = Purpose::Feedback;
}

/// The person a valid link of purpose `P` names, with what the token says and the token
/// itself (pages link back to it).
pub struct Verified<P> {
    pub profile: Profile,
    pub claims: Claims,
    pub token: String,
    purpose: PhantomData<P>,
}

/// The 404 page, as a rejection (or the error page if even that cannot be rendered).
fn not_found(state: &AppState) -> Refused {
    pages::not_found(&state.site())
        .unwrap_or_else(IntoResponse::into_response)
        .into()
}

impl<P: LinkPurpose> FromRequestParts<AppState> for Verified<P> {
    type Rejection = Refused;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let Ok(Token(token)) = Token::from_request_parts(parts, state).await;
        let claims = match state.signer.verify(P::PURPOSE, &token, now()) {
            Ok(c) => c,
            Err(e) => {
                tracing::debug!(reason = %e, "link refused");
                return Err(not_found(state));
            }
        };
        match state.store.linked_profile(claims.id).await {
            Ok(Some(profile)) => Ok(Verified {
                profile,
                claims,
                token,
                purpose: PhantomData,
            }),
            Ok(None) => Err(not_found(state)),
            Err(e) => Err(super::AppError::from(e).into_response().into()),
        }
    }
}

/// A form post's (name, value) pairs, in order.
pub struct FormBody(pub Vec<(String, String)>);

impl FromRequest<AppState> for FormBody {
    type Rejection = Refused;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let content_type = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let body = Bytes::from_request(req, state).await;
        read_form(state, &content_type, body).map(FormBody)
    }
}

/// The page a refused form body gets.
fn refuse(state: &AppState, status: StatusCode, heading: &str, text: &str) -> Refused {
    pages::message(
        &state.site(),
        status,
        heading,
        &[text],
        Some(("/", "Back to the form")),
    )
    .unwrap_or_else(IntoResponse::into_response)
    .into()
}

fn read_form(
    state: &AppState,
    content_type: &str,
    body: Result<Bytes, BytesRejection>,
) -> Result<Vec<(String, String)>, Refused> {
    let body = match body {
        Ok(b) => b,
        Err(r) if r.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            return Err(refuse(
                state,
                StatusCode::PAYLOAD_TOO_LARGE,
                "That was more than this form can take",
                "The form sent over 16 KiB. Please shorten your answers and send it again.",
            ));
        }
        Err(r) if timed_out(&r) => {
            return Err(refuse(
                state,
                StatusCode::REQUEST_TIMEOUT,
                "The form took too long to arrive",
                "Part of the form did not reach us in time. Please send it again.",
            ));
        }
        Err(r) => {
            return Err(refuse(
                state,
                StatusCode::BAD_REQUEST,
                "The form could not be read",
                &r.body_text(),
            ));
        }
    };
    if !form_body::is_form(content_type) {
        return Err(refuse(
            state,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "The form could not be read",
            "This address takes an HTML form post (application/x-www-form-urlencoded).",
        ));
    }
    form_body::decode(&body).map_err(|e| {
        refuse(
            state,
            StatusCode::BAD_REQUEST,
            "The form could not be read",
            &e,
        )
    })
}

/// Whether reading a body failed because the client stopped sending (the body time-out).
fn timed_out(r: &BytesRejection) -> bool {
    let mut e: Option<&(dyn std::error::Error + 'static)> = Some(r);
    while let Some(err) = e {
        if err.is::<tower_http::timeout::TimeoutError>() {
            return true;
        }
        e = err.source();
    }
    false
}
