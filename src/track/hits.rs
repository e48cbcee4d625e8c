//! Recording clicks and opens off the request path. A click is answered (302) as soon as
//! its token verifies and its link is known; the hit goes into a queue that one task writes
//! to the database in batches, classifies (see `automated`) and turns into follow-up
//! triggers. On a graceful stop the queue is drained before the process exits, so no hit
//! is lost; only a `kill -9` can lose the hits of the last few milliseconds.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use super::automated::{ALL_AT_ONCE_LINKS, ALL_AT_ONCE_SECS, looks_automated};
use crate::schedule::{Happened, trigger};
use crate::site::SiteHandle;
use crate::store::{Hit, Link, Store, StoreError, now};

/// A click (with a link) or an open, as received.
#[derive(Debug, Clone)]
pub struct PendingHit {
    pub delivery_id: i64,
    pub link: Option<Link>,
    pub user_agent: Option<String>,
    pub head: bool,
    pub at: i64,
}

enum Msg {
    Hit(PendingHit),
    Drain(oneshot::Sender<()>),
}

/// The queue handlers put hits in; cheap to clone.
#[derive(Clone)]
pub struct HitQueue {
    tx: mpsc::Sender<Msg>,
    links: Arc<std::sync::RwLock<HashMap<i64, Link>>>,
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
            while let Some(first) = rx.recv().await {
                let mut hits = Vec::new();
                let mut waiting = Vec::new();
                let mut next = Some(first);
                while let Some(m) = next.take() {
                    match m {
                        Msg::Hit(h) => hits.push(h),
                        Msg::Drain(ack) => waiting.push(ack),
                    }
                    if hits.len() < 2000 {
                        next = rx.try_recv().ok();
                    }
                }
                if !hits.is_empty() {
                    match write(&writer_store, &site, &hits).await {
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
    pub async fn link(&self, id: i64) -> Result<Option<Link>, StoreError> {
        if let Some(l) = self
            .links
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&id)
        {
            return Ok(Some(l.clone()));
        }
        let link = self.store.link(id).await?;
        if let Some(l) = &link {
            self.links
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .insert(id, l.clone());
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

/// Writes a batch: classifies each hit, stores them in one transaction, flags bursts, and
/// starts follow-ups for people's clicks. True when follow-ups were queued.
async fn write(store: &Store, site: &SiteHandle, hits: &[PendingHit]) -> Result<bool, StoreError> {
    let ids: Vec<i64> = {
        let mut v: Vec<i64> = hits.iter().map(|h| h.delivery_id).collect();
        v.sort_unstable();
        v.dedup();
        v
    };
    let deliveries = store.delivery_refs(&ids).await?;
    let mut rows = Vec::with_capacity(hits.len());
    for h in hits {
        let Some(d) = deliveries.get(&h.delivery_id) else {
            continue;
        };
        let automated =
            looks_automated(h.head, h.user_agent.as_deref(), d.sent_at.map(|s| h.at - s));
        rows.push((h, d, automated));
    }
    let batch: Vec<(Hit<'_>, i64)> = rows
        .iter()
        .map(|(h, d, automated)| {
            let hit = Hit {
                delivery: d,
                link: h.link.as_ref(),
                user_agent: h.user_agent.as_deref(),
                automated: *automated,
            };
            (hit, h.at)
        })
        .collect();
    store.record_hits(&batch).await?;
    let site = site.get();
    let mut queued = false;
    let t = now();
    for (h, d, automated) in rows {
        let Some(link) = &h.link else { continue };
        if automated {
            continue;
        }
        if store
            .links_clicked_since(d.id, t - ALL_AT_ONCE_SECS)
            .await?
            >= ALL_AT_ONCE_LINKS
        {
            store
                .flag_clicks_automated(d.id, t - ALL_AT_ONCE_SECS)
                .await?;
            continue;
        }
        let tag = (!link.tag.is_empty()).then_some(link.tag.as_str());
        let what = Happened::Click {
            tag,
            campaign: Some(d.campaign.as_str()),
        };
        queued |= trigger(store, &site, d.profile_id, what).await? > 0;
    }
    Ok(queued)
}
