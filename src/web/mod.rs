//! The web side: axum routes for the public pages (opt-in form, confirmation, profile
//! centre), health, and the server start-up that ties the store, templates and transport
//! together.

mod admin;
mod client;
mod error;
pub mod form_body;
mod pages;
mod public;
mod server;
mod tracking;

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::path::Path;
use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use tokio::net::TcpListener;
use tower_http::trace::TraceLayer;

use crate::config::{Diagnostics, SettingError, Settings};
use crate::delivery::worker::{Worker, WorkerConfig};
use crate::delivery::{Transport, TransportError};
use crate::store::{Store, StoreError};
use crate::track::Signer;

pub use crate::site::{Site, SiteHandle};

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
    pub transport: Transport,
    /// Prefix of links in emails, without a trailing slash.
    pub public_url: String,
    pub settings: Arc<Settings>,
    /// The delivery worker, woken when something is queued.
    pub worker: Worker,
    /// What `/admin` asks for.
    pub admin: admin::AdminKey,
    /// Clicks and opens on their way to the database.
    pub hits: crate::track::HitQueue,
    limiter: Option<Arc<DefaultKeyedRateLimiter<std::net::IpAddr>>>,
}

impl Shared {
    /// The current marketer's files.
    pub fn site(&self) -> Arc<Site> {
        self.site_handle.get()
    }

    /// Replaces the marketer's files (after a successful reload).
    pub fn replace_site(&self, site: Site) {
        self.site_handle.replace(site)
    }
}

/// Why the server could not start; each says what to fix.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("the project files have problems:\n{0}")]
    Config(#[from] Diagnostics),
    #[error(transparent)]
    Setting(#[from] SettingError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Transport(#[from] TransportError),
    #[error("cannot listen on {0}: {1}")]
    Bind(SocketAddr, std::io::Error),
}

/// A server ready to run: bound to its address, database migrated, files loaded.
pub struct Application {
    listener: TcpListener,
    address: SocketAddr,
    state: AppState,
}

impl Application {
    /// Loads everything and binds `bind` (port 0 picks a free port).
    pub async fn build(
        settings: Settings,
        dir: &Path,
        bind: SocketAddr,
    ) -> Result<Application, StartError> {
        let site = Site::load(dir)?;
        let store = Store::connect(&settings.database_url).await?;
        store.migrate().await?;
        let secret = match &settings.secret {
            Some(s) => s.as_bytes().to_vec(),
            None => store.signing_secret().await?,
        };
        let transport = Transport::from_settings(
            settings.smtp_url.as_deref(),
            &settings.outbox_dir,
            site.project.sender.domain(),
            settings.smtp_pool,
        )?;
        let transport = match &settings.dkim {
            Some((key, selector)) => transport.with_dkim(crate::delivery::dkim_config(
                key,
                selector,
                site.project.sender.domain(),
            )?),
            None => transport,
        };
        let listener = TcpListener::bind(bind)
            .await
            .map_err(|e| StartError::Bind(bind, e))?;
        let address = listener
            .local_addr()
            .map_err(|e| StartError::Bind(bind, e))?;
        let limiter = settings
            .subscribe_per_minute
            .and_then(NonZeroU32::new)
            .map(|n| Arc::new(RateLimiter::keyed(Quota::per_minute(n).allow_burst(n))));
        let site_handle = SiteHandle::new(site);
        let signer = Signer::new(&secret);
        let public_url = settings.public_url_for(address);
        let worker = Worker::new(
            store.clone(),
            site_handle.clone(),
            signer.clone(),
            public_url.clone(),
            transport.clone(),
            WorkerConfig {
                batch: 200,
                concurrency: settings.smtp_pool,
                rate: settings.send_rate,
                max_attempts: settings.max_attempts,
                lease: settings.delivery_lease.as_secs() as i64,
            },
        );
        let admin = admin::AdminKey::load(settings.admin_token.as_deref(), &store).await?;
        let waker = worker.clone();
        let hits =
            crate::track::HitQueue::start(store.clone(), site_handle.clone(), move || waker.wake());
        let state = AppState(Arc::new(Shared {
            admin,
            hits,
            store,
            site_handle,
            signer,
            transport,
            public_url,
            settings: Arc::new(settings),
            worker,
            limiter,
        }));
        Ok(Application {
            listener,
            address,
            state,
        })
    }

    /// The address the server listens on.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// The shared state (for reloads and background workers).
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves the web side, runs the scheduler and the delivery worker until `shutdown`
    /// completes; then finishes in-flight requests and sends, and returns.
    pub async fn run_until(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        if let Some(limiter) = self.state.limiter.clone() {
            // Forget clients that have not posted for a while so the table stays small.
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(std::time::Duration::from_secs(60)).await;
                    limiter.retain_recent();
                }
            });
        }
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let worker = self
            .state
            .settings
            .worker
            .then(|| tokio::spawn(self.state.worker.clone().run(stop_rx.clone())));
        let waker = self.state.worker.clone();
        let scheduler = tokio::spawn(crate::schedule::run(
            self.state.store.clone(),
            self.state.site_handle.clone(),
            self.state.settings.clock.clone(),
            self.state.settings.schedule_grace,
            self.state.settings.schedule_tz,
            move || waker.wake(),
            stop_rx,
        ));
        let app = router(self.state.clone());
        tracing::info!(address = %self.address, public_url = %self.state.public_url,
            mail = %self.state.transport.describe(), "rapport is serving");
        let limits = server::Limits {
            header_timeout: self.state.settings.http_timeout,
            max_connections: self.state.settings.max_connections,
        };
        let served = server::serve(self.listener, app, limits, shutdown).await;
        // Drain: every click and open received is written; the worker finishes the batch it
        // holds and claims nothing new.
        self.state.hits.drain().await;
        let _ = stop_tx.send(true);
        let _ = scheduler.await;
        if let Some(w) = worker {
            let _ = w.await;
        }
        self.state.store.close().await;
        served
    }
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
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            admin::require_token,
        ));
    Router::new()
        .merge(admin)
        .route("/metrics", get(admin::metrics))
        .route("/", get(public::form))
        .route("/subscribe", post(public::subscribe))
        .route(
            "/confirm/{token}",
            get(public::confirm).post(public::confirm_button),
        )
        .route(
            "/profile/{token}",
            get(public::profile).post(public::profile_update),
        )
        .route("/profile/{token}/data", get(public::profile_data))
        .route("/c/{token}", get(tracking::click))
        .route("/o/{token}", get(tracking::open))
        .route(
            "/unsubscribe/{token}",
            get(tracking::unsubscribe_page).post(tracking::unsubscribe),
        )
        .route(
            "/feedback/{token}",
            get(tracking::feedback).post(tracking::feedback_comment),
        )
        .route("/healthz", get(public::healthz))
        .fallback(public::not_found)
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(tower_http::timeout::RequestBodyTimeoutLayer::new(
            state.settings.http_timeout,
        ))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}
