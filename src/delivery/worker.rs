//! The delivery worker: claims due deliveries in batches, renders each for its recipient,
//! sends it through the transport and records the outcome.
//!
//! Crash safety. A claimed delivery is `sending` with a lease (`RAPPORT_DELIVERY_LEASE`,
//! 60 s) that its worker renews while it works; a worker that dies stops renewing, and the
//! delivery is queued again when the lease runs out, so nobody is skipped. The only
//! window in which a message can go out twice is between the SMTP server's 250 reply and
//! the database write that records it. That write starts 1 ms after the reply
//! ([`RECORD_LINGER`]) and records every send that finished meanwhile or while the previous
//! write ran (group commit), so the window is that millisecond plus at most two short
//! transactions (a few milliseconds under full load), and the worker moves on only once
//! its sends are recorded. Status and `unless` are checked again right
//! before each send, with the profile as stored at that moment.
//!
//! Hand-off. A confirmation asked for on this process's form is written already claimed
//! (see `Store::request_opt_in`) and handed straight to this worker ([`Worker::hand_off`]),
//! which sends it without claiming it from the queue: the sign-up stream then costs no
//! claim, no queue scan and no profile read. It keeps the same lease, so if the process
//! dies before recording the send, the confirmation is queued again like any other.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use tokio::sync::Notify;

use super::Transport;
use super::pace::{Pace, Pacer};
use crate::mail::{Mailer, Sending};
use crate::profile::{Profile, Status};
use crate::render::Composed;
use crate::segment::{EVERYONE, EventFacts};
use crate::site::{Site, SiteHandle};
use crate::store::{CONFIRMATION, Claimed, EventSummary, Sent, Store, StoreError, now};

/// Why a campaign message could not be built for a delivery.
#[derive(Debug, thiserror::Error)]
enum TrackedError {
    #[error(transparent)]
    Mail(#[from] crate::mail::MailError),
    #[error("storing a link: {0}")]
    Store(#[from] StoreError),
    #[error("the link {0} changed between two renders of one message")]
    Unstable(String),
}

/// Limits of one worker.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Deliveries claimed per batch.
    pub batch: i64,
    /// Messages in flight at once (the SMTP pool size).
    pub concurrency: usize,
    /// Messages per second at most.
    pub rate: Option<u32>,
    /// Attempts before a transient failure becomes final.
    pub max_attempts: i64,
    /// Seconds a claim lasts unless renewed; renewed every third of it while the batch runs.
    pub lease: i64,
    /// Seconds a confirmation link stays valid from the moment its email is built.
    pub confirm_ttl: i64,
    /// Messages per second per receiving domain (see `delivery::pace`).
    pub domain_rates: Option<crate::config::DomainRates>,
}

/// Stored link ids by [`link_key`].
type LinkIds = HashMap<String, i64>;

/// The key of a stored link (campaign, URL, tag) in [`LinkIds`]: one string, so that a
/// lookup builds one string, not three.
fn link_key(campaign: &str, url: &str, tag: &str) -> String {
    format!("{campaign}\n{url}\n{tag}")
}

/// A send to record, and who waits for it to be recorded.
type SentRecord = (Sent, tokio::sync::oneshot::Sender<Result<(), String>>);

/// How long the recorder waits after a send is accepted for more to record with it.
///
/// Without it, the sends that finished during the previous write made groups of about five
/// under full load, and each group is four round trips to SQLite's thread (begin, update,
/// insert, commit), each a thread wake-up on both sides. Waiting 1 ms makes groups of a
/// hundred or more: 336–383 → 298–307 µs of `serve` CPU per message, and the ratio to raw
/// lettre 0.34–0.35 → 0.40–0.42, on a machine where thread wake-ups are dear
/// (BENCHMARKS.md, fourth round). It lengthens the window between
/// the SMTP server's 250 and the write that records it by at most this much, and delays no
/// message: the send has already happened.
const RECORD_LINGER: Duration = Duration::from_millis(1);

/// How long a woken worker waits before claiming, so that messages queued one by one (a
/// confirmation per form submission, a welcome per confirmation) are claimed in batches.
/// Woken for each of them at once, the worker claimed batches of one or two under a stream
/// of sign-ups: five queries and a commit per message on top of the request's own. In one
/// side-by-side pair on a noisy machine it took `POST /subscribe` from 775 to 970 requests/s
/// on SQLite and from 282 to 439 on PostgreSQL (BENCHMARKS.md, eighth round, which also
/// records the spread). It delays a confirmation or a welcome by at most this much.
const WAKE_LINGER: Duration = Duration::from_millis(20);

/// Confirmations claimed at the request, waiting for this process's worker (see
/// [`Worker::hand_off`]). Beyond this many the request leaves the delivery to the queue.
const HANDED_CAPACITY: usize = 10_000;

/// A delivery claimed elsewhere in this process, with its person as the claim left them
/// and when it was handed over.
type Handed = (Claimed, Profile, Instant);

/// A group for one write or one batch: `first`, and after `linger` whatever else `rx`
/// holds, up to `cap` in all.
async fn gather<T>(
    rx: &mut tokio::sync::mpsc::Receiver<T>,
    first: T,
    linger: Duration,
    cap: usize,
) -> Vec<T> {
    tokio::time::sleep(linger).await;
    let mut group = vec![first];
    while group.len() < cap {
        match rx.try_recv() {
            Ok(x) => group.push(x),
            Err(_) => break,
        }
    }
    group
}

/// Records accepted sends shortly after they are accepted, grouping those that arrive
/// within [`RECORD_LINGER`] of the first, or while the previous write is running, into one
/// transaction (group commit).
fn start_recorder(store: Store) -> tokio::sync::mpsc::Sender<SentRecord> {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<SentRecord>(4096);
    tokio::spawn(async move {
        while let Some(first) = rx.recv().await {
            let batch = gather(&mut rx, first, RECORD_LINGER, 1000).await;
            let (rows, acks): (Vec<Sent>, Vec<_>) = batch.into_iter().unzip();
            let result = store
                .deliveries_sent(&rows)
                .await
                .map_err(|e| e.to_string());
            for ack in acks {
                let _ = ack.send(result.clone());
            }
        }
    });
    tx
}

/// Sends what is due. Cheap to clone; clones share the wake-up signal and the throttle.
#[derive(Clone)]
pub struct Worker {
    store: Store,
    site: SiteHandle,
    mailer: Mailer,
    transport: Transport,
    config: WorkerConfig,
    wake: Arc<Notify>,
    throttle: Option<Arc<DefaultDirectRateLimiter>>,
    /// Lanes per receiving domain, when `RAPPORT_DOMAIN_RATES` is set.
    pacer: Option<Arc<Pacer>>,
    recorder: tokio::sync::mpsc::Sender<SentRecord>,
    /// Stored link ids, so each link is looked up once per process.
    links: Arc<std::sync::Mutex<LinkIds>>,
    /// Deliveries claimed at the request, for [`Worker::run`] to send.
    handed: tokio::sync::mpsc::Sender<Handed>,
    /// Their receiving end, until `run` takes it.
    handed_rx: Arc<std::sync::Mutex<Option<tokio::sync::mpsc::Receiver<Handed>>>>,
    /// Whether `run` is taking handed deliveries (otherwise requests leave them queued).
    taking: Arc<AtomicBool>,
}

/// What a batch knows about its recipients' history: their behaviour, for segments, and
/// the library items they were sent.
struct Batch<'a> {
    events: &'a HashMap<i64, Vec<EventSummary>>,
    sent_items: &'a HashMap<i64, Vec<String>>,
}

/// What happened to one delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Sent,
    Retry,
    Failed,
    Skipped,
    /// Put back in the queue for its domain's next send slot (no attempt counted).
    Postponed,
}

impl Worker {
    /// A worker over these parts.
    pub fn new(
        store: Store,
        site: SiteHandle,
        mailer: Mailer,
        transport: Transport,
        config: WorkerConfig,
    ) -> Worker {
        let throttle = config
            .rate
            .and_then(NonZeroU32::new)
            .map(|r| Arc::new(RateLimiter::direct(Quota::per_second(r))));
        let recorder = start_recorder(store.clone());
        let pacer = config.domain_rates.clone().map(|r| Arc::new(Pacer::new(r)));
        let (handed, handed_rx) = tokio::sync::mpsc::channel(HANDED_CAPACITY);
        Worker {
            handed,
            handed_rx: Arc::new(std::sync::Mutex::new(Some(handed_rx))),
            taking: Arc::new(AtomicBool::new(false)),
            pacer,
            store,
            site,
            mailer,
            transport,
            config,
            wake: Arc::new(Notify::new()),
            throttle,
            recorder,
            links: Arc::new(std::sync::Mutex::new(HashMap::new())),
        }
    }

    /// Wakes the worker now (something was queued) instead of at its next poll.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Runs until `stop` turns true: then finishes the batches in flight and returns.
    ///
    /// Two claim loops run side by side, so that while one waits for the last sends of its
    /// batch, claims the next and loads its profiles, the other keeps the SMTP connections
    /// busy (one loop left them idle between batches).
    ///
    /// A third loop sends what requests of this process claimed for it (see
    /// [`Worker::hand_off`]).
    pub async fn run(self, stop: tokio::sync::watch::Receiver<bool>) {
        let handed = self
            .handed_rx
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        let handed_loop = async {
            if let Some(rx) = handed {
                self.handed_loop(rx, stop.clone()).await;
            }
        };
        tokio::join!(
            self.claim_loop(stop.clone(), true),
            self.claim_loop(stop.clone(), false),
            handed_loop
        );
        tracing::info!("delivery worker stopped");
    }

    /// The lease to claim a confirmation with at the request, when this worker is running
    /// to take it (see [`Worker::hand_off`]); `None`: leave it to the queue.
    pub fn claim_at_request(&self) -> Option<i64> {
        self.taking
            .load(Ordering::Acquire)
            .then_some(self.config.lease)
    }

    /// Takes a delivery claimed at the request (with [`Worker::claim_at_request`]'s lease)
    /// to send it without a claim from the queue. Should the worker be stopping or too far
    /// behind, the delivery goes back to the queue instead.
    pub fn hand_off(&self, d: Claimed, profile: Profile) {
        if let Err(e) = self.handed.try_send((d, profile, Instant::now())) {
            let (d, _, _) = e.into_inner();
            let store = self.store.clone();
            let wake = self.wake.clone();
            tokio::spawn(async move {
                let why = "handed to a worker that was busy or stopping; queued";
                match store.delivery_postpone(d.id, now(), why).await {
                    Ok(()) => wake.notify_one(),
                    Err(e) => {
                        tracing::error!(delivery = d.id, error = %e, "cannot queue a handed delivery; its lease will")
                    }
                }
            });
        }
    }

    /// Sends handed deliveries in groups (those handed within [`WAKE_LINGER`] of the
    /// first) until `stop`; then stops taking them and sends what was handed meanwhile.
    async fn handed_loop(
        &self,
        mut rx: tokio::sync::mpsc::Receiver<Handed>,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) {
        self.taking.store(true, Ordering::Release);
        loop {
            if *stop.borrow() {
                break;
            }
            let first = tokio::select! {
                d = rx.recv() => d,
                _ = stop.changed() => None,
            };
            let Some(first) = first else { break };
            let group = gather(&mut rx, first, WAKE_LINGER, self.config.batch as usize).await;
            self.send_handed(group).await;
        }
        self.taking.store(false, Ordering::Release);
        rx.close();
        let mut rest = Vec::new();
        while let Some(d) = rx.recv().await {
            rest.push(d);
        }
        if !rest.is_empty() {
            self.send_handed(rest).await;
        }
    }

    /// Delivers a group of handed deliveries with the people they were handed with.
    ///
    /// One that waited longer than a third of its lease (a mail server so slow that the
    /// groups before it took that long) is left alone: its lease may run out before the
    /// group's first renewal, and then the queue has it, so sending it here as well could
    /// send it twice. The queue sends it once its lease has run out.
    async fn send_handed(&self, group: Vec<Handed>) {
        let fresh_for = Duration::from_secs((self.config.lease / 3).max(1) as u64);
        let (fresh, stale): (Vec<Handed>, Vec<Handed>) = group
            .into_iter()
            .partition(|(_, _, at)| at.elapsed() < fresh_for);
        if !stale.is_empty() {
            tracing::warn!(
                deliveries = stale.len(),
                "handed confirmations waited too long for the worker; the queue sends them when their lease runs out"
            );
        }
        let (batch, people): (Vec<Claimed>, Vec<Profile>) =
            fresh.into_iter().map(|(d, p, _)| (d, p)).unzip();
        if batch.is_empty() {
            return;
        }
        let profiles = people.into_iter().map(|p| (p.id, p)).collect();
        if let Err(e) = self.deliver_batch(batch, profiles).await {
            tracing::error!(error = %e, "sending handed deliveries failed; their leases will queue them again");
        }
    }

    /// Claims and delivers batches until `stop`; `reclaims` also puts deliveries whose
    /// worker died back in the queue.
    async fn claim_loop(&self, mut stop: tokio::sync::watch::Receiver<bool>, reclaims: bool) {
        let mut last_reclaim = 0;
        loop {
            if *stop.borrow() {
                break;
            }
            if reclaims && now() - last_reclaim >= (self.config.lease / 2).clamp(1, 30) {
                last_reclaim = now();
                match self.store.reclaim_expired().await {
                    Ok(0) => {}
                    Ok(n) => {
                        tracing::warn!(deliveries = n, "reclaimed deliveries whose worker stopped")
                    }
                    Err(e) => tracing::error!(error = %e, "cannot reclaim expired deliveries"),
                }
            }
            let sent = match self.run_once().await {
                Ok(n) => n,
                Err(e) => {
                    tracing::error!(error = %e, "delivery batch failed; retrying shortly");
                    0
                }
            };
            // A full batch: claim the next at once. Otherwise the queue is drained: wait
            // for a wake-up (something was queued) or the next poll, and after a wake-up
            // let [`WAKE_LINGER`] pass so that what is queued meanwhile is claimed with it.
            if sent < self.config.batch as usize {
                let woken = tokio::select! {
                    _ = self.wake.notified() => true,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => false,
                    _ = stop.changed() => false,
                };
                if woken {
                    tokio::time::sleep(WAKE_LINGER).await;
                }
            }
        }
    }

    /// Claims one batch and delivers it; returns how many deliveries it handled.
    pub async fn run_once(&self) -> Result<usize, StoreError> {
        // Under a throttle, a batch should take about twenty seconds at most.
        let limit = match self.config.rate {
            Some(r) => (i64::from(r) * 20).clamp(1, self.config.batch),
            None => self.config.batch,
        };
        let batch = self
            .store
            .claim_deliveries(limit, self.config.lease)
            .await?;
        if batch.is_empty() {
            return Ok(0);
        }
        let ids: Vec<i64> = batch.iter().map(|d| d.profile_id).collect();
        let profiles = self.store.profiles_by_ids(&ids).await?;
        self.deliver_batch(batch, profiles).await
    }

    /// Delivers claimed deliveries to these people (by profile id); returns how many it
    /// handled.
    async fn deliver_batch(
        &self,
        batch: Vec<Claimed>,
        profiles: HashMap<i64, Profile>,
    ) -> Result<usize, StoreError> {
        // Keep the claim while the batch is being sent, however long the server takes.
        let renew = {
            let store = self.store.clone();
            let ids: Vec<i64> = batch.iter().map(|d| d.id).collect();
            let lease = self.config.lease;
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_secs((lease / 3).max(1) as u64)).await;
                    if let Err(e) = store.renew_lease(&ids, lease).await {
                        tracing::warn!(error = %e, "cannot renew delivery lease");
                    }
                }
            })
        };
        let site = self.site.get();
        let ids: Vec<i64> = batch.iter().map(|d| d.profile_id).collect();
        // Behaviour is what segments test: confirmations have none to test, so a batch of
        // confirmations only (a stream of sign-ups) skips the query.
        let events = if batch.iter().any(|d| d.campaign != CONFIRMATION) {
            self.store.event_summaries(&ids).await?
        } else {
            HashMap::new()
        };
        // The library items each person was sent, where a campaign of the batch has a library.
        let with_library = batch
            .iter()
            .any(|d| site.campaign(&d.campaign).is_some_and(|c| c.library > 0));
        let sent_items = if with_library {
            self.store.library_sent(&ids).await?
        } else {
            HashMap::new()
        };
        let n = batch.len();
        // Each delivery is its own task, so rendering spreads over every core; more are in
        // flight than there are SMTP connections, so rendering and recording overlap with
        // sending (the transport's pool bounds the connections).
        let profiles = Arc::new(profiles);
        let events = Arc::new(events);
        let sent_items = Arc::new(sent_items);
        let slots = Arc::new(tokio::sync::Semaphore::new(self.config.concurrency * 4));
        let mut tasks = tokio::task::JoinSet::new();
        let mut first_error = None;
        for d in batch {
            let permit = slots.clone().acquire_owned().await.expect("never closed");
            // Collect what has finished, so a big batch holds no more than is in flight.
            while let Some(joined) = tasks.try_join_next() {
                first_error = first_error.or(task_error(joined));
            }
            let (worker, site, profiles, events, sent_items) = (
                self.clone(),
                site.clone(),
                profiles.clone(),
                events.clone(),
                sent_items.clone(),
            );
            tasks.spawn(async move {
                let _permit = permit;
                let history = Batch {
                    events: &events,
                    sent_items: &sent_items,
                };
                // Boxed: the delivery's future is large (rendering, composing, sending, recording,
                // about 13 KB), and tokio moves a task's future by value as it spawns it, stores
                // it and hands its output back; a box is moved instead.
                Box::pin(worker.deliver(&site, &d, profiles.get(&d.profile_id), &history)).await
            });
        }
        while let Some(joined) = tasks.join_next().await {
            first_error = first_error.or(task_error(joined));
        }
        renew.abort();
        match first_error {
            Some(e) => Err(e),
            None => Ok(n),
        }
    }

    /// Renders the message with tracked links and the open pixel: each link becomes
    /// `/c/TOKEN` (the delivery and the stored link, signed), so a click can only ever
    /// redirect to a URL stored here.
    async fn tracked_message(
        &self,
        site: &Site,
        campaign: &crate::campaign::Campaign,
        person: &crate::render::Personal<'_>,
        d: &Claimed,
    ) -> Result<crate::render::Composed, TrackedError> {
        /// The seam of a send: a link whose stored id this process knows becomes its
        /// tracked URL; any other is listed, to be stored before the message is rendered
        /// again (the store is async, the seam is not). So only the first messages of a
        /// campaign in a process are rendered twice.
        struct Tracker<'a> {
            worker: &'a Worker,
            campaign: &'a str,
            delivery: i64,
            unknown: Vec<(String, String)>,
        }
        impl crate::render::LinkSeam for Tracker<'_> {
            fn track(&mut self, url: &str, tag: Option<&str>) -> String {
                let tag = tag.unwrap_or("");
                let known = self
                    .worker
                    .links
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .get(&link_key(self.campaign, url, tag))
                    .copied();
                match known {
                    Some(id) => self.worker.mailer.click_url(self.delivery, id),
                    None => {
                        self.unknown.push((url.to_string(), tag.to_string()));
                        url.to_string()
                    }
                }
            }
        }
        let render = || {
            let mut seam = Tracker {
                worker: self,
                campaign: &campaign.id,
                delivery: d.id,
                unknown: Vec::new(),
            };
            self.mailer
                .render(site, campaign, person, &mut seam)
                .map(|r| (r, seam.unknown))
        };
        let (mut r, unknown) = render()?;
        if !unknown.is_empty() {
            for (url, tag) in &unknown {
                let item = site.library.by_url(url).map(|i| i.id.as_str());
                let id = self.store.link_id(&campaign.id, url, tag, item).await?;
                self.links
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(link_key(&campaign.id, url, tag), id);
            }
            let (again, still) = render()?;
            if let Some((url, _)) = still.first() {
                return Err(TrackedError::Unstable(url.clone()));
            }
            r = again;
        }
        Ok(self.mailer.finish(
            site,
            campaign,
            person,
            r,
            Sending::Delivery(d.id),
            self.transport.eight_bit(),
        )?)
    }

    /// Builds the message of one delivery, checks it may still go, sends it and records
    /// the outcome.
    async fn deliver(
        &self,
        site: &Site,
        d: &Claimed,
        profile: Option<&Profile>,
        history: &Batch<'_>,
    ) -> Result<Outcome, StoreError> {
        let Some(profile) = profile else {
            return self.skip(d, "the profile no longer exists".into()).await;
        };
        if profile.email.is_demo() {
            return self
                .skip(
                    d,
                    "a rapport demo profile: demo data is never mailed".into(),
                )
                .await;
        }
        // Paced before the message is built: a delivery put back for a later slot would
        // otherwise be rendered now for nothing, and again when its slot comes.
        if let Some(postponed) = self.pace(d, profile).await? {
            return Ok(postponed);
        }
        let composed = if d.campaign == CONFIRMATION {
            self.confirmation(site, d, profile)
                .await?
                .map(|c| (c, Vec::new()))
        } else {
            self.campaign_message(site, d, profile, history).await?
        };
        match composed {
            Ok((composed, items)) => self.send(d, profile, composed, items).await,
            Err(closed) => Ok(closed),
        }
    }

    /// Takes `d`'s send slot in its receiving domain's lane (see `delivery::pace`): waits
    /// for a near one; puts the delivery back in the queue for a far one (`Postponed`).
    async fn pace(&self, d: &Claimed, profile: &Profile) -> Result<Option<Outcome>, StoreError> {
        let Some(pacer) = &self.pacer else {
            return Ok(None);
        };
        let domain = profile.email.domain();
        match pacer.pace(domain, Instant::now()) {
            Pace::Now => Ok(None),
            Pace::Wait(wait) => {
                tokio::time::sleep(wait).await;
                Ok(None)
            }
            Pace::Later(wait) => {
                let at = now() + wait.as_secs() as i64 + 1;
                let why =
                    format!("waiting for the next send slot of {domain} (RAPPORT_DOMAIN_RATES)");
                self.store.delivery_postpone(d.id, at, &why).await?;
                Ok(Some(Outcome::Postponed))
            }
        }
    }

    /// Closes `d` as skipped, for `why`.
    async fn skip(&self, d: &Claimed, why: String) -> Result<Outcome, StoreError> {
        tracing::info!(delivery = d.id, campaign = %d.campaign, reason = %why, "delivery skipped");
        self.store
            .delivery_closed(d, "skipped", &why, false)
            .await
            .map(|_| Outcome::Skipped)
    }

    /// Closes `d` as failed: its message cannot be built.
    async fn unbuildable(&self, d: &Claimed, why: String) -> Result<Outcome, StoreError> {
        tracing::error!(delivery = d.id, error = %why, "cannot render; run rapport check");
        self.store
            .delivery_closed(d, "failed", &why, false)
            .await
            .map(|_| Outcome::Failed)
    }

    /// The confirmation email of a request on the form (the system campaign
    /// [`CONFIRMATION`]), as the person stands now (see `Mailer::confirmation`). Its link
    /// is valid for `confirm_ttl` from now.
    async fn confirmation(
        &self,
        site: &Site,
        d: &Claimed,
        profile: &Profile,
    ) -> Result<Result<Composed, Outcome>, StoreError> {
        match self.mailer.confirmation(
            site,
            profile,
            Sending::Delivery(d.id),
            self.config.confirm_ttl,
            now(),
            self.transport.eight_bit(),
        ) {
            Ok(c) => Ok(Ok(c)),
            Err(e) => self.unbuildable(d, e.to_string()).await.map(Err),
        }
    }

    /// A campaign message for `profile`, with the URLs of the library items it carries,
    /// unless they no longer get it (status, audience, `unless`) or it cannot be built: then
    /// the delivery is closed, and the outcome is returned instead.
    async fn campaign_message(
        &self,
        site: &Site,
        d: &Claimed,
        profile: &Profile,
        history: &Batch<'_>,
    ) -> Result<Result<(Composed, Vec<String>), Outcome>, StoreError> {
        let skip = |why: String| async move { self.skip(d, why).await.map(Err) };
        if profile.status != Status::Subscribed {
            return skip(format!("the profile is {}", profile.status.as_str())).await;
        }
        let Some(campaign) = site.campaign(&d.campaign) else {
            let why = format!("campaign \"{}\" is no longer in campaigns.toml", d.campaign);
            tracing::error!(delivery = d.id, "{why}");
            return self
                .store
                .delivery_closed(d, "failed", &why, false)
                .await
                .map(|_| Err(Outcome::Failed));
        };
        let t = now();
        let facts = EventFacts {
            events: history.events.get(&profile.id).cloned().unwrap_or_default(),
            now: t,
        };
        let sent = history
            .sent_items
            .get(&profile.id)
            .map(Vec::as_slice)
            .unwrap_or_default();
        let person = self.mailer.person(
            site,
            campaign,
            profile,
            &facts,
            crate::track::Origin::Delivery(d.id),
            t,
            sent,
        );
        let member = |segment: &str| person.segments.get(segment).copied().unwrap_or(false);
        if campaign.audience != EVERYONE
            && site.segments.get(&campaign.audience).is_some()
            && !member(&campaign.audience)
        {
            return skip(format!(
                "no longer in the audience \"{}\"",
                campaign.audience
            ))
            .await;
        }
        if let Some(unless) = campaign.unless.as_deref().filter(|u| member(u)) {
            return skip(format!("in the unless segment \"{unless}\"")).await;
        }
        let items = person.library.iter().map(|i| i.url.clone()).collect();
        match self.tracked_message(site, campaign, &person, d).await {
            Ok(c) => Ok(Ok((c, items))),
            Err(e) => self.unbuildable(d, e.to_string()).await.map(Err),
        }
    }

    /// Sends a built message (within the throttle) and records what the server said.
    async fn send(
        &self,
        d: &Claimed,
        profile: &Profile,
        composed: Composed,
        items: Vec<String>,
    ) -> Result<Outcome, StoreError> {
        let domain = profile.email.domain();
        if let Some(t) = &self.throttle {
            t.until_ready().await;
        }
        let sent = self.transport.send(composed.message).await;
        if let Some(pacer) = &self.pacer {
            match &sent {
                Ok(()) => pacer.accepted(domain),
                Err(e) if !e.permanent => pacer.deferred(domain, Instant::now()),
                Err(_) => {}
            }
        }
        match sent {
            Ok(()) => {
                let (ack, recorded) = tokio::sync::oneshot::channel();
                let sent = Sent {
                    delivery: d.clone(),
                    message_id: composed.message_id,
                    items,
                };
                let queued = self.recorder.send((sent, ack)).await;
                match (queued, recorded.await) {
                    (Ok(()), Ok(Ok(()))) => Ok(Outcome::Sent),
                    (_, Ok(Err(e))) => {
                        Err(StoreError::Corrupt(format!("recording a send failed: {e}")))
                    }
                    _ => Err(StoreError::Corrupt("the send recorder stopped".into())),
                }
            }
            Err(e) if e.permanent => {
                tracing::warn!(delivery = d.id, profile = profile.id, error = %e, "refused for good: address marked bounced");
                self.store
                    .delivery_closed(d, "failed", &e.message, true)
                    .await?;
                Ok(Outcome::Failed)
            }
            Err(e) if d.attempts >= self.config.max_attempts => {
                tracing::warn!(delivery = d.id, attempts = d.attempts, error = %e, "giving up after repeated failures");
                self.store
                    .delivery_closed(d, "failed", &e.message, false)
                    .await?;
                Ok(Outcome::Failed)
            }
            Err(e) => {
                let wait = backoff(d.attempts);
                tracing::info!(delivery = d.id, attempts = d.attempts, retry_in = wait, error = %e, "transient failure; will retry");
                self.store
                    .delivery_retry(d.id, &e.message, now() + wait)
                    .await?;
                Ok(Outcome::Retry)
            }
        }
    }
}

/// The error a finished delivery task ended with, if any.
fn task_error(
    joined: Result<Result<Outcome, StoreError>, tokio::task::JoinError>,
) -> Option<StoreError> {
    match joined {
        Ok(Ok(_)) => None,
        Ok(Err(e)) => Some(e),
        Err(e) => Some(StoreError::Corrupt(format!("a delivery task failed: {e}"))),
    }
}

/// Seconds to wait after the `attempts`-th failure: 30 s doubling up to 6 h, ±20 % jitter
/// so that a failing server is not hit by every retry at once.
pub fn backoff(attempts: i64) -> i64 {
    let base = 30i64
        .saturating_mul(1 << attempts.clamp(1, 10).saturating_sub(1))
        .min(6 * 3600);
    let jitter = rand::random_range(-0.2..=0.2);
    ((base as f64) * (1.0 + jitter)).round().max(1.0) as i64
}

#[cfg(test)]
mod tests {
    use super::backoff;

    #[test]
    fn backoff_grows_and_is_capped() {
        let first = backoff(1);
        assert!((24..=36).contains(&first), "{first}");
        let fourth = backoff(4);
        assert!((192..=288).contains(&fourth), "{fourth}");
        let late = backoff(40);
        assert!(late <= 6 * 3600 * 12 / 10, "{late}");
    }
}
