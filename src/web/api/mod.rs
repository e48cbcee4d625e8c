//! The JSON API under `/api/v1`, for the company's own systems (shop, CRM, support desk).
//! Every request names a token (`Authorization: Bearer TOKEN`, see `access`); the
//! [`Authorized`] extractor checks it, its scope and its rate in one place, and every
//! failure answers `{"error": {"code", "message", "fields"?}}` ([`ApiError`]).

mod body;
mod campaigns;
mod events;
mod parts;
mod profiles;
mod reports;

use std::collections::BTreeMap;
use std::marker::PhantomData;

use axum::Router;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

pub use body::{JsonBody, MAX_JSON};
pub use events::EventWriter;
pub use parts::{ApiPath, ApiQuery};
use serde_json::json;

use super::AppState;
use crate::access::Scope;
use crate::store::{ApiToken, StoreError};

/// The OpenAPI document's frame; the paths and schemas come from the handlers
/// (`#[utoipa::path]`) as they are routed in [`routes`].
#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "rapport API",
        description = "Profiles, events from other systems, campaigns and reports of a rapport installation. Every request sends Authorization: Bearer TOKEN (rapport token create NAME --scopes ...).",
    ),
    servers((url = "/api/v1")),
    modifiers(&BearerToken),
    tags(
        (name = "profiles", description = "People: create with consent, read, change, unsubscribe, erase"),
        (name = "events", description = "What people did elsewhere"),
        (name = "campaigns", description = "Campaigns and manual runs"),
        (name = "reports", description = "Response rates"),
    )
)]
struct ApiDoc;

/// Declares the bearer token the paths' `security(("token" = [...]))` refer to.
struct BearerToken;

impl utoipa::Modify for BearerToken {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        doc.components
            .get_or_insert_with(Default::default)
            .add_security_scheme(
                "token",
                SecurityScheme::Http(
                    HttpBuilder::new()
                        .scheme(HttpAuthScheme::Bearer)
                        .description(Some("a token made with rapport token create; its scopes are listed per operation"))
                        .build(),
                ),
            );
    }
}

/// The `/api/v1` routes (nested there) with `GET /openapi.json` describing them; any other
/// path under it is a JSON 404. A handler is routed only through its `#[utoipa::path]`, so
/// the document cannot leave one out.
pub fn routes() -> Router<AppState> {
    use utoipa::OpenApi;
    use utoipa_axum::router::OpenApiRouter;
    use utoipa_axum::routes;
    let (router, doc) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(profiles::create))
        .routes(routes!(profiles::read, profiles::change, profiles::erase))
        .routes(routes!(profiles::unsubscribe))
        .routes(routes!(events::record))
        .routes(routes!(campaigns::list))
        .routes(routes!(campaigns::run))
        .routes(routes!(reports::response_rates))
        .split_for_parts();
    let doc: axum::body::Bytes = doc
        .to_pretty_json()
        .expect("the OpenAPI document serialises")
        .into();
    router
        .route(
            "/openapi.json",
            get(move || async move { ([(header::CONTENT_TYPE, "application/json")], doc) }),
        )
        .fallback(unknown)
        .method_not_allowed_fallback(wrong_method)
        .layer(axum::extract::DefaultBodyLimit::max(body::MAX_JSON))
}

/// The JSON shape of every error, for the OpenAPI document.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
#[allow(dead_code)] // Describes `ApiError`'s body for the OpenAPI document.
pub struct ErrorBody {
    #[schema(inline)]
    error: ErrorDetail,
}

/// What went wrong.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
#[allow(dead_code)] // Describes `ApiError`'s body for the OpenAPI document.
pub struct ErrorDetail {
    /// unauthorized, forbidden, not_found, invalid, malformed, too_large,
    /// unsupported_media_type, rate_limited or unavailable.
    code: String,
    message: String,
    /// A message per field at fault (`events[3].name`), when fields are.
    fields: Option<BTreeMap<String, String>>,
}

/// A failed API request, as JSON.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    fields: BTreeMap<String, String>,
    retry_after: Option<u64>,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            fields: BTreeMap::new(),
            retry_after: None,
        }
    }

    /// 401: no token, or one that is unknown or revoked.
    pub fn unauthorized(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    /// 404: nothing there.
    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// 422: the request names something invalid; `fields` says what, per field.
    pub fn invalid(message: impl Into<String>, fields: BTreeMap<String, String>) -> ApiError {
        ApiError {
            fields,
            ..ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", message)
        }
    }
}

impl ApiError {
    /// 503: the database cannot be reached (the cause is logged where it is known).
    fn unavailable() -> ApiError {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "the database cannot be reached now; nothing was changed; try again shortly",
        )
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        tracing::error!(error = %e, "API request failed in the store");
        ApiError::unavailable()
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut error = json!({ "code": self.code, "message": self.message });
        if !self.fields.is_empty() {
            error["fields"] = json!(self.fields);
        }
        let mut r = (self.status, axum::Json(json!({ "error": error }))).into_response();
        if let Some(s) = self.retry_after {
            r.headers_mut().insert(header::RETRY_AFTER, s.into());
        }
        if self.status == StatusCode::UNAUTHORIZED {
            r.headers_mut()
                .insert(header::WWW_AUTHENTICATE, "Bearer".parse().expect("ASCII"));
        }
        r
    }
}

/// Names the scope an endpoint needs (one type per scope, for [`Authorized`]).
pub trait NeedsScope {
    const SCOPE: Scope;
}

macro_rules! scopes {
    ($($name:ident),*) => {$(
        #[doc = concat!("The `", stringify!($name), "` scope, for [`Authorized`].")]
        pub struct $name;
        impl NeedsScope for $name {
            const SCOPE: Scope = Scope::$name;
        }
    )*};
}
scopes!(
    ProfilesRead,
    ProfilesWrite,
    EventsWrite,
    CampaignsRun,
    ReportsRead
);

/// A request made with a live token that holds scope `S`, within the token's rate.
pub struct Authorized<S>(pub ApiToken, PhantomData<S>);

impl<S: NeedsScope> FromRequestParts<AppState> for Authorized<S> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        use axum_extra::headers::authorization::Bearer;
        use axum_extra::headers::{Authorization, HeaderMapExt};
        let Some(Authorization(bearer)) = parts.headers.typed_get::<Authorization<Bearer>>() else {
            return Err(ApiError::unauthorized(
                "send the token as Authorization: Bearer TOKEN (rapport token create makes one)",
            ));
        };
        let hash = crate::access::token_hash(bearer.token());
        let Some(token) = state.store.api_token_in_use(&hash).await? else {
            return Err(ApiError::unauthorized(
                "the token is unknown or revoked (rapport token list shows the live ones)",
            ));
        };
        if !crate::access::allows(&token.scopes, S::SCOPE) {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                format!(
                    "the token {:?} does not have the scope {}; it has {}",
                    token.name,
                    S::SCOPE,
                    token.scopes
                ),
            ));
        }
        if let Err(wait) = state.api_limiter.check_key(&token.id) {
            let secs = wait
                .wait_time_from(governor::clock::Clock::now(
                    &governor::clock::DefaultClock::default(),
                ))
                .as_secs()
                + 1;
            return Err(ApiError {
                retry_after: Some(secs),
                ..ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "rate_limited",
                    format!(
                        "more than {} requests a second with this token; try again in {secs} s",
                        state.settings.api_rate
                    ),
                )
            });
        }
        Ok(Authorized(token, PhantomData))
    }
}

/// An address in a path, parsed as the form parses it; 422 naming `email` otherwise.
fn path_email(raw: &str) -> Result<crate::profile::Email, ApiError> {
    crate::profile::Email::parse(raw).map_err(|e| {
        ApiError::invalid(
            "the address in the path is not valid",
            BTreeMap::from([("email".to_string(), e.to_string())]),
        )
    })
}

/// Any other path under `/api/v1`.
async fn unknown() -> ApiError {
    ApiError::not_found("no such endpoint under /api/v1")
}

/// A known path with a method it does not take: 405 in the API's shape (axum adds the
/// `Allow` header naming the methods it does take).
async fn wrong_method(
    method: axum::http::Method,
    axum::extract::OriginalUri(uri): axum::extract::OriginalUri,
) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!(
            "{} does not take {method}; see /api/v1/openapi.json",
            uri.path()
        ),
    )
}
