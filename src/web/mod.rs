//! The web side: axum routes for the public pages (opt-in form, confirmation, profile
//! centre), the tracking links, `/admin` and health, the state handlers share, and the
//! HTTP server loop. Start-up (what builds the state and runs the background tasks) is
//! `startup`.

mod admin;
pub mod api;
mod client;
mod error;
mod extract;
pub mod form_body;
mod pages;
mod routes;
mod server;

use std::num::NonZeroU32;
use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use tokio::net::TcpListener;
use tower_http::trace::TraceLayer;

use crate::config::Settings;
use crate::delivery::worker::Worker;
use crate::store::Store;
use crate::track::Signer;

pub use crate::site::{Site, SiteHandle};

pub use admin::AdminKey;
pub use error::AppError;

/// Largest request body accepted (form posts); larger ones get a 413 page.
pub const MAX_BODY: usize = 16 * 1024;

/// What every handler can reach. Cheap to clone (axum clones it for every request): one
/// reference count, whatever the state holds.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl std::ops::Deref for AppState {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// The parts of [`AppState`].
pub struct Shared {
    pub store: Store,
    pub site_handle: SiteHandle,
    pub signer: Signer,
    /// Prefix of links in emails, without a trailing slash.
    pub public_url: String,
    pub settings: Arc<Settings>,
    /// The delivery worker, woken when something is queued.
    pub worker: Worker,
    /// What `/admin` asks for.
    pub admin: admin::AdminKey,
    /// Clicks and opens on their way to the database.
    pub hits: crate::track::HitQueue,
    /// Requests per API token (`RAPPORT_API_RATE`).
    pub api_limiter: Arc<DefaultKeyedRateLimiter<i64>>,
    /// Batches of `POST /api/v1/events` on their way to the database, committed together.
    pub events: api::EventWriter,
    /// Bounces and complaints taken in (their counts go to `/metrics`).
    pub intake: crate::bounce::Intake,
    limiter: Option<Arc<DefaultKeyedRateLimiter<std::net::IpAddr>>>,
}

impl Shared {
    /// The current marketer's files.
    pub fn site(&self) -> Arc<Site> {
        self.site_handle.get()
    }

    /// A request for the confirmation email (the form, the API with double opt-in): stores
    /// it with the confirmation's delivery claimed for this process's worker, when one runs
    /// here, and hands the delivery to it; otherwise the delivery waits in the queue (for
    /// whichever worker runs, or, when a send of this person's confirmation is under way,
    /// until that send is recorded).
    pub async fn request_opt_in(
        &self,
        email: &crate::profile::Email,
        answers: &crate::profile::Answers,
        meta: &crate::store::ConsentMeta,
        per_day: Option<u32>,
    ) -> Result<crate::store::OptIn, crate::store::StoreError> {
        let (outcome, confirmation) = self
            .store
            .request_opt_in(
                email,
                answers,
                meta,
                per_day,
                self.worker.claim_at_request(),
            )
            .await?;
        match (confirmation, &outcome) {
            (Some(d), _) => self.worker.hand_off(d, outcome.profile().clone()),
            (None, crate::store::OptIn::OverDailyLimit(_)) => {}
            (None, _) => self.worker.wake(),
        }
        Ok(outcome)
    }

    /// Replaces the marketer's files (after a successful reload).
    pub fn replace_site(&self, site: Site) {
        self.store
            .set_hook_routes(crate::webhook::routes(&site.project));
        self.site_handle.replace(site)
    }
}

impl AppState {
    /// The state handlers share: the store, the marketer's files, the signer, the worker
    /// to wake and the hit queue, with the settings they run by.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        store: Store,
        site_handle: SiteHandle,
        signer: Signer,
        public_url: String,
        settings: Settings,
        worker: Worker,
        admin: AdminKey,
        hits: crate::track::HitQueue,
        intake: crate::bounce::Intake,
    ) -> AppState {
        let limiter = settings
            .subscribe_per_minute
            .and_then(NonZeroU32::new)
            .map(|n| Arc::new(RateLimiter::keyed(Quota::per_minute(n).allow_burst(n))));
        // RAPPORT_API_RATE is read as at least 1.
        let per_second = NonZeroU32::new(settings.api_rate).expect("not zero");
        let burst = per_second.saturating_mul(NonZeroU32::new(4).expect("not zero"));
        let api_limiter = Arc::new(RateLimiter::keyed(
            Quota::per_second(per_second).allow_burst(burst),
        ));
        let events = api::EventWriter::start(store.clone());
        AppState(Arc::new(Shared {
            events,
            api_limiter,
            admin,
            hits,
            intake,
            store,
            site_handle,
            signer,
            public_url,
            settings: Arc::new(settings),
            worker,
            limiter,
        }))
    }

    /// Forgets clients of the opt-in rate limit that have not posted for a while, every
    /// minute, so that its table stays small: a background task of `serve` (none when the
    /// limit is off). It holds the limiter only, not the state.
    pub fn rate_limiter_pruning(
        &self,
    ) -> Option<impl std::future::Future<Output = ()> + Send + 'static> {
        let limiter = self.limiter.clone()?;
        Some(async move {
            loop {
                tokio::time::sleep(std::time::Duration::from_secs(60)).await;
                limiter.retain_recent();
            }
        })
    }
}

/// Serves `router(state)` on `listener` until `shutdown`, within the limits the settings
/// give (see `server`).
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let limits = server::Limits {
        header_timeout: state.settings.http_timeout,
        max_connections: state.settings.max_connections,
    };
    server::serve(listener, router(state), limits, shutdown).await
}

/// The segments a person is in now (none once erased: `None`): for `/admin`'s comments and
/// the API's profiles.
pub(crate) async fn segments_of(
    store: &crate::store::Store,
    site: &Site,
    profile: Option<&crate::profile::Profile>,
) -> Result<Vec<String>, crate::store::StoreError> {
    let Some(profile) = profile else {
        return Ok(Vec::new());
    };
    let facts = store.event_facts(profile.id, crate::store::now()).await?;
    Ok(site
        .segments
        .iter()
        .filter(|s| s.matches(profile, &facts))
        .map(|s| s.name.clone())
        .collect())
}

/// All routes.
pub fn router(state: AppState) -> Router {
    let admin = Router::new()
        .route("/admin", get(admin::dashboard))
        .route(
            "/admin/reports/response-rates.csv",
            get(admin::response_rates_csv),
        )
        .route("/admin/reports/optin.csv", get(admin::optin_csv))
        .route("/admin/reports/clicks.csv", get(admin::clicks_csv))
        .route("/admin/reports/feedback.csv", get(admin::feedback_csv))
        .route("/admin/reports/links.csv", get(admin::links_csv))
        .route(
            "/admin/reports/deliverability.csv",
            get(admin::deliverability_csv),
        )
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            admin::require_token,
        ));
    Router::new()
        .merge(admin)
        .nest("/api/v1", api::routes())
        .route("/metrics", get(admin::metrics))
        .route("/", get(routes::form))
        .route("/subscribe", post(routes::subscribe))
        .route(
            "/confirm/{token}",
            get(routes::confirm).post(routes::confirm_button),
        )
        .route(
            "/profile/{token}",
            get(routes::profile).post(routes::profile_update),
        )
        .route("/profile/{token}/data", get(routes::profile_data))
        .route("/keep/{token}", get(routes::keep))
        .route("/c/{token}", get(routes::click))
        .route("/o/{token}", get(routes::open))
        .route(
            "/unsubscribe/{token}",
            get(routes::unsubscribe_page).post(routes::unsubscribe),
        )
        .route(
            "/feedback/{token}",
            get(routes::feedback).post(routes::feedback_comment),
        )
        .route("/healthz", get(routes::healthz))
        .fallback(routes::not_found)
        .layer(axum::middleware::map_response(close_after_unread_body))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(tower_http::timeout::RequestBodyTimeoutLayer::new(
            state.settings.http_timeout,
        ))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

/// A request refused for its size (413) or for a body that came too slowly (408) leaves its
/// body unread, and hyper then closes the connection after the answer. The answer says so
/// (`Connection: close`): a client that pooled the connection would otherwise send its next
/// request on it and see that request cut off.
async fn close_after_unread_body(
    mut response: axum::response::Response,
) -> axum::response::Response {
    use axum::http::{HeaderValue, StatusCode, header};
    if matches!(
        response.status(),
        StatusCode::PAYLOAD_TOO_LARGE | StatusCode::REQUEST_TIMEOUT
    ) {
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}
