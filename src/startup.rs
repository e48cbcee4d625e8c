//! Start-up: wires the store, the marketer's files, the signer, the mail transport and the
//! background tasks (delivery worker, webhook sender, scheduler, hit writer) into a running server, and
//! stops them in order. `web` is the routes; this is what `serve` and the tests start.

use std::net::SocketAddr;
use std::path::Path;

use tokio::net::TcpListener;

use crate::bounce::Intake;
use crate::config::{Diagnostics, SettingError, Settings};
use crate::delivery::worker::{Worker, WorkerConfig};
use crate::delivery::{Transport, TransportError};
use crate::mail::Mailer;
use crate::site::{Site, SiteHandle};
use crate::store::{Store, StoreError};
use crate::track::Signer;
use crate::web::{AdminKey, AppState};

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
    #[error(transparent)]
    BounceListener(#[from] crate::bounce::ListenError),
}

/// The signer of every link: keyed with `RAPPORT_SECRET`, or the secret kept in the
/// database (generated on first use).
pub async fn signer(settings: &Settings, store: &Store) -> Result<Signer, StoreError> {
    Ok(match &settings.secret {
        Some(s) => Signer::new(s.as_bytes()),
        None => Signer::new(&store.signing_secret().await?),
    })
}

/// A server ready to run: bound to its address, database migrated, files loaded.
pub struct Application {
    listener: TcpListener,
    address: SocketAddr,
    state: AppState,
    /// Where mail goes, for the start-up log line.
    mail: String,
    /// The SMTP listener for bounces and complaints (`RAPPORT_BOUNCE_BIND`).
    bounces: Option<crate::bounce::Listener>,
}

impl Application {
    /// Loads everything and binds `bind` (port 0 picks a free port).
    pub async fn build(
        settings: Settings,
        dir: &Path,
        bind: SocketAddr,
    ) -> Result<Application, StartError> {
        let site = Site::load(dir)?;
        let store = Store::open(&settings.database_url).await?;
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
        store.set_hook_routes(crate::webhook::routes(&site.project));
        for w in &site.project.webhooks {
            match w.secret() {
                Ok(_) => tracing::info!(endpoint = %w.url, "webhooks go to this endpoint"),
                Err(why) => tracing::warn!(endpoint = %w.url,
                    "{why}: this endpoint's deliveries fail, and are retried for 24 hours, until it is"),
            }
        }
        let site_handle = SiteHandle::new(site);
        let signer = signer(&settings, &store).await?;
        let public_url = settings.public_url_for(address);
        let mail = transport.describe();
        let worker = Worker::new(
            store.clone(),
            site_handle.clone(),
            Mailer::new(signer.clone(), public_url.clone())
                .with_bounce_domain(settings.bounce_domain.clone()),
            transport,
            WorkerConfig {
                batch: 200,
                concurrency: settings.smtp_pool,
                rate: settings.send_rate,
                max_attempts: settings.max_attempts,
                lease: settings.delivery_lease.as_secs() as i64,
                confirm_ttl: settings.confirm_ttl.as_secs() as i64,
                domain_rates: settings.domain_rates.clone(),
            },
        );
        let intake = Intake::new(store.clone(), signer.clone(), settings.soft_bounce_limit);
        let bounces = match (settings.bounce_bind, &settings.bounce_domain) {
            (Some(addr), Some(domain)) => {
                Some(crate::bounce::Listener::bind(addr, domain, intake.clone()).await?)
            }
            _ => None,
        };
        let admin = AdminKey::load(settings.admin_token.as_deref(), &store).await?;
        let waker = worker.clone();
        let hits =
            crate::track::HitQueue::start(store.clone(), site_handle.clone(), move || waker.wake());
        let state = AppState::new(
            store,
            site_handle,
            signer,
            public_url,
            settings,
            worker,
            admin,
            hits,
            intake,
        );
        Ok(Application {
            listener,
            address,
            state,
            mail,
            bounces,
        })
    }

    /// The address the server listens on.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// The address the bounce listener listens on, when there is one.
    pub fn bounce_address(&self) -> Option<SocketAddr> {
        self.bounces.as_ref().and_then(|l| l.local_addr().ok())
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
        if let Some(pruning) = self.state.rate_limiter_pruning() {
            tokio::spawn(pruning);
        }
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let worker = self
            .state
            .settings
            .worker
            .then(|| tokio::spawn(self.state.worker.clone().run(stop_rx.clone())));
        let hooks = self.state.settings.worker.then(|| {
            let sender = crate::webhook::Sender::new(
                self.state.store.clone(),
                self.state.site_handle.clone(),
                self.state.settings.webhook_backoff,
                self.state.settings.delivery_lease,
            );
            tokio::spawn(sender.run(stop_rx.clone()))
        });
        let bounces = self.bounces.map(|l| {
            if let Ok(a) = l.local_addr() {
                tracing::info!(address = %a, "listening for bounces and complaints by SMTP");
            }
            tokio::spawn(l.run(stop_rx.clone()))
        });
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
        tracing::info!(address = %self.address, public_url = %self.state.public_url,
            mail = %self.mail, "rapport is serving");
        let served = crate::web::serve(self.listener, self.state.clone(), shutdown).await;
        // Drain: every click and open received is written; the worker finishes the batch it
        // holds and claims nothing new.
        self.state.hits.drain().await;
        let _ = stop_tx.send(true);
        let _ = scheduler.await;
        if let Some(b) = bounces {
            let _ = b.await;
        }
        if let Some(w) = worker {
            let _ = w.await;
        }
        if let Some(h) = hooks {
            let _ = h.await;
        }
        self.state.store.close().await;
        served
    }
}

impl Application {
    /// Re-reads the marketer's files from `dir` on every SIGHUP; a set with problems is
    /// refused (each problem logged) and the running one stays.
    pub fn reload_on_sighup(&self, dir: std::path::PathBuf) {
        let state = self.state.clone();
        tokio::spawn(async move {
            let Ok(mut hup) =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            else {
                return;
            };
            while hup.recv().await.is_some() {
                match Site::load(&dir) {
                    Ok(site) => {
                        let (campaigns, segments, items) = (
                            site.campaigns.len(),
                            site.segments.names().len(),
                            site.library.items().len(),
                        );
                        state.replace_site(site);
                        tracing::info!(
                            campaigns,
                            segments,
                            library_items = items,
                            "reloaded campaigns.toml, segments, templates and the library"
                        );
                    }
                    Err(problems) => {
                        for p in &problems.0 {
                            tracing::error!(problem = %p, "reload rejected; keeping the running files");
                        }
                    }
                }
            }
        });
    }
}

/// Completes on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        _ = term => {},
    }
    tracing::info!("shutting down: finishing requests in flight");
}
