//! Recording clicks and opens off the request path. A click is answered (302) as soon as
//! its token verifies and its link is known; the hit goes into a queue that one task writes
//! to the database in batches, classifies (see `automated`) and turns into follow-up
//! triggers. On a graceful stop the queue is drained before the process exits, so no hit
//! is lost; only a `kill -9` can lose the hits of the last few milliseconds.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use super::automated::{ALL_AT_ONCE_LINKS, ALL_AT_ONCE_SECS, RecentClicks, looks_automated};
use crate::schedule::{Happened, trigger_many};
use crate::site::SiteHandle;
use crate::store::{DeliveryRef, Hit, Link, Store, StoreError, now};

/// A click (with a link) or an open, as received.
#[derive(Debug, Clone)]
pub struct PendingHit {
    pub delivery_id: i64,
    /// Shared with the link cache: a click costs no copy of the URL and tag.
    pub link: Option<Arc<Link>>,
    pub user_agent: Option<String>,
    pub head: bool,
    pub at: i64,
}

/// The most hits written in one transaction. Batches grow only while hits arrive faster
/// than they are written; larger ones commit less often, and each commit rewrites every
/// index page it touched (2,000 → 20,000 took a click-heavy SQLite from 36,000 to about
/// 75,000 hits/s; BENCHMARKS.md). 20,000 queued hits are a few megabytes.
const MAX_BATCH: usize = 20_000;

enum Msg {
    Hit(PendingHit),
    Drain(oneshot::Sender<()>),
}

/// The queue handlers put hits in; cheap to clone.
#[derive(Clone)]
pub struct HitQueue {
    tx: mpsc::Sender<Msg>,
    links: Arc<std::sync::RwLock<HashMap<i64, Arc<Link>>>>,
    store: Store,
}

impl HitQueue {
    /// Starts the writer task; `on_queued` is called when hits queued follow-ups.
    pub fn start(
        store: Store,
        site: SiteHandle,
        on_queued: impl Fn() + Send + Sync + 'static,
    ) -> HitQueue {
        let (tx, mut rx) = mpsc::channel::<Msg>(65_536);
        let writer_store = store.clone();
        tokio::spawn(async move {
            let mut recent = RecentClicks::default();
            let mut refs = SentRefs::default();
            while let Some(first) = rx.recv().await {
                let mut hits = Vec::new();
                let mut waiting = Vec::new();
                let mut next = Some(first);
                while let Some(m) = next.take() {
                    match m {
                        Msg::Hit(h) => hits.push(h),
                        Msg::Drain(ack) => waiting.push(ack),
                    }
                    if hits.len() < MAX_BATCH {
                        next = rx.try_recv().ok();
                    }
                }
                if !hits.is_empty() {
                    match write(&writer_store, &site, &mut recent, &mut refs, &hits).await {
                        Ok(true) => on_queued(),
                        Ok(false) => {}
                        Err(e) => {
                            tracing::error!(error = %e, hits = hits.len(), "cannot record clicks and opens")
                        }
                    }
                }
                for ack in waiting {
                    let _ = ack.send(());
                }
            }
        });
        HitQueue {
            tx,
            links: Arc::new(std::sync::RwLock::new(HashMap::new())),
            store,
        }
    }

    /// The stored link, from memory after the first time.
    pub async fn link(&self, id: i64) -> Result<Option<Arc<Link>>, StoreError> {
        if let Some(l) = self
            .links
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&id)
        {
            return Ok(Some(Arc::clone(l)));
        }
        let link = self.store.link(id).await?.map(Arc::new);
        if let Some(l) = &link {
            self.links
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .insert(id, Arc::clone(l));
        }
        Ok(link)
    }

    /// Queues a hit (waits only when tens of thousands are already waiting).
    pub async fn push(&self, hit: PendingHit) {
        if self.tx.send(Msg::Hit(hit)).await.is_err() {
            tracing::error!("the hit writer has stopped; a click or open was not recorded");
        }
    }

    /// Returns once every hit queued before the call is written.
    pub async fn drain(&self) {
        let (ack, done) = oneshot::channel();
        if self.tx.send(Msg::Drain(ack)).await.is_ok() {
            let _ = done.await;
        }
    }
}

/// Deliveries already sent, as clicks and opens need them, so that a message clicked again
/// is not looked up again. What they hold never changes once the message is sent (a
/// delivery not yet recorded as sent is looked up each time). At most [`SENT_REFS`] are
/// kept; the writer starts over when that is reached.
#[derive(Default)]
struct SentRefs(HashMap<i64, DeliveryRef>);

/// How many deliveries [`SentRefs`] keeps (a few megabytes).
const SENT_REFS: usize = 50_000;

impl SentRefs {
    /// Moves the sent deliveries of `fresh` in.
    fn keep(&mut self, fresh: &mut HashMap<i64, DeliveryRef>) {
        if self.0.len() + fresh.len() > SENT_REFS {
            self.0.clear();
        }
        let sent: Vec<i64> = fresh
            .values()
            .filter(|d| d.sent_at.is_some())
            .map(|d| d.id)
            .collect();
        for id in sent {
            if let Some(d) = fresh.remove(&id) {
                self.0.insert(id, d);
            }
        }
    }
}

/// Writes a batch: classifies each hit, stores them in one transaction, flags bursts, and
/// starts follow-ups for people's clicks. True when follow-ups were queued.
async fn write(
    store: &Store,
    site: &SiteHandle,
    recent: &mut RecentClicks,
    refs: &mut SentRefs,
    hits: &[PendingHit],
) -> Result<bool, StoreError> {
    let missing: Vec<i64> = {
        let mut v: Vec<i64> = hits
            .iter()
            .map(|h| h.delivery_id)
            .filter(|id| !refs.0.contains_key(id))
            .collect();
        v.sort_unstable();
        v.dedup();
        v
    };
    let mut fresh = store.delivery_refs(&missing).await?;
    refs.keep(&mut fresh);
    let rows: Vec<(&PendingHit, &DeliveryRef, bool)> = hits
        .iter()
        .filter_map(|h| {
            let d = refs
                .0
                .get(&h.delivery_id)
                .or_else(|| fresh.get(&h.delivery_id))?;
            let automated =
                looks_automated(h.head, h.user_agent.as_deref(), d.sent_at.map(|s| h.at - s))
                    || (h.link.is_some() && recent.in_burst(d.id, h.at));
            Some((h, d, automated))
        })
        .collect();
    let batch: Vec<(Hit<'_>, i64)> = rows
        .iter()
        .map(|(h, d, automated)| {
            let hit = Hit {
                delivery: d,
                link: h.link.as_deref(),
                user_agent: h.user_agent.as_deref(),
                automated: *automated,
            };
            (hit, h.at)
        })
        .collect();
    store.record_hits(&batch).await?;
    // People's clicks: a message with several different links clicked at once is a
    // scanner after all (the whole burst is flagged); the rest start follow-ups. Only a
    // click on a link not seen lately can make a burst, so only those are counted.
    let mut new_links: Vec<(i64, i64)> = rows
        .iter()
        .filter(|(_, _, automated)| !automated)
        .filter_map(|(h, d, _)| {
            let link = h.link.as_ref()?;
            recent
                .note(d.id, link.id, h.at)
                .then_some((d.profile_id, d.id))
        })
        .collect();
    new_links.sort_unstable();
    new_links.dedup();
    let t = now();
    let mut bursts = std::collections::HashSet::new();
    if !new_links.is_empty() {
        let since = t - ALL_AT_ONCE_SECS;
        let counts = store.links_clicked_since(&new_links, since).await?;
        bursts.extend(
            counts
                .into_iter()
                .filter(|(_, n)| *n >= ALL_AT_ONCE_LINKS)
                .map(|(id, _)| id),
        );
        if !bursts.is_empty() {
            let flagged: Vec<(i64, i64)> = new_links
                .iter()
                .copied()
                .filter(|(_, d)| bursts.contains(d))
                .collect();
            store.flag_clicks_automated(&flagged, since).await?;
            for (_, id) in flagged {
                recent.burst(id, t);
            }
        }
    }
    recent.prune(t);
    let happened: Vec<(i64, Happened<'_>)> = rows
        .iter()
        .filter(|(_, d, automated)| !automated && !bursts.contains(&d.id))
        .filter_map(|(h, d, _)| {
            let link = h.link.as_ref()?;
            let what = Happened::Click {
                tag: (!link.tag.is_empty()).then_some(link.tag.as_str()),
                campaign: Some(d.campaign.as_str()),
            };
            Some((d.profile_id, what))
        })
        .collect();
    // People's clicks are told to the webhooks that listen for them (when any does).
    let clicked = crate::event::HookEvent::Clicked;
    let clicks: Vec<crate::store::HookNote> = rows
        .iter()
        .filter(|_| store.listens(clicked))
        .filter(|(_, d, automated)| !automated && !bursts.contains(&d.id))
        .filter_map(|(h, d, _)| {
            let link = h.link.as_ref()?;
            Some(crate::store::HookNote {
                profile_id: d.profile_id,
                data: serde_json::json!({
                    "campaign": d.campaign,
                    "url": link.url,
                    "tag": (!link.tag.is_empty()).then_some(link.tag.as_str()),
                }),
            })
        })
        .collect();
    store.queue_hooks_now(clicked, &clicks, t).await?;
    Ok(trigger_many(store, &site.get(), &happened).await? > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delivery(id: i64, sent_at: Option<i64>) -> DeliveryRef {
        DeliveryRef {
            id,
            profile_id: id,
            run_id: 1,
            campaign: "newsletter".into(),
            sent_at,
        }
    }

    #[test]
    fn only_sent_deliveries_are_kept_and_the_cache_stays_bounded() {
        let mut refs = SentRefs::default();
        let mut fresh: HashMap<i64, DeliveryRef> =
            [(1, delivery(1, Some(10))), (2, delivery(2, None))].into();
        refs.keep(&mut fresh);
        assert!(refs.0.contains_key(&1), "sent: kept");
        assert!(
            !refs.0.contains_key(&2),
            "not sent yet: looked up again next time"
        );
        assert!(fresh.contains_key(&2) && !fresh.contains_key(&1));

        let mut many: HashMap<i64, DeliveryRef> = (10..10 + SENT_REFS as i64)
            .map(|id| (id, delivery(id, Some(10))))
            .collect();
        refs.keep(&mut many);
        assert_eq!(refs.0.len(), SENT_REFS, "started over, then filled");
        assert!(!refs.0.contains_key(&1));
    }
}
