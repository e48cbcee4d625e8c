//! Tracked links, clicks and opens.

use sqlx::Row;

use super::{Store, StoreError};

/// A stored link of a campaign's messages.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Link {
    pub id: i64,
    pub campaign: String,
    pub url: String,
    /// Empty when the link had no `data-tag`.
    pub tag: String,
}

/// What a click or open is about: the delivery it came from.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct DeliveryRef {
    pub id: i64,
    pub profile_id: i64,
    pub run_id: i64,
    pub campaign: String,
    pub sent_at: Option<i64>,
}

/// One click or open to record.
#[derive(Debug, Clone)]
pub struct Hit<'a> {
    pub delivery: &'a DeliveryRef,
    pub link: Option<&'a Link>,
    pub user_agent: Option<&'a str>,
    /// Looks like a link scanner or a mail-privacy proxy: kept, but out of the rates.
    pub automated: bool,
}

impl Store {
    /// The id of (campaign, url, tag), stored on first use with the library item (its id)
    /// the link leads to, if it leads to one.
    pub async fn link_id(
        &self,
        campaign: &str,
        url: &str,
        tag: &str,
        item: Option<&str>,
    ) -> Result<i64, StoreError> {
        let inserted: Option<i64> = sqlx::query_scalar(
            "INSERT INTO links (campaign, url, tag, item) VALUES ($1, $2, $3, $4) ON CONFLICT (campaign, url, tag) DO NOTHING RETURNING id",
        )
        .bind(campaign)
        .bind(url)
        .bind(tag)
        .bind(item)
        .fetch_optional(&self.pool)
        .await?;
        if let Some(id) = inserted {
            return Ok(id);
        }
        Ok(
            sqlx::query_scalar(
                "SELECT id FROM links WHERE campaign = $1 AND url = $2 AND tag = $3",
            )
            .bind(campaign)
            .bind(url)
            .bind(tag)
            .fetch_one(&self.pool)
            .await?,
        )
    }

    /// A stored link.
    pub async fn link(&self, id: i64) -> Result<Option<Link>, StoreError> {
        Ok(
            sqlx::query_as("SELECT id, campaign, url, tag FROM links WHERE id = $1")
                .bind(id)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    /// The delivery a tracking token names.
    pub async fn delivery_ref(&self, id: i64) -> Result<Option<DeliveryRef>, StoreError> {
        Ok(self.delivery_refs(&[id]).await?.remove(&id))
    }

    /// The deliveries behind a batch of hits.
    pub async fn delivery_refs(
        &self,
        ids: &[i64],
    ) -> Result<std::collections::HashMap<i64, DeliveryRef>, StoreError> {
        let mut out = std::collections::HashMap::new();
        for chunk in ids.chunks(super::MAX_PARAMS) {
            let sql = self.positional(format!(
                "SELECT id, profile_id, run_id, campaign, sent_at FROM deliveries WHERE id IN ({})",
                super::params(1, chunk.len())
            ));
            let mut q = sqlx::query_as::<_, DeliveryRef>(&sql);
            for id in chunk {
                q = q.bind(*id);
            }
            for d in q.fetch_all(&self.pool).await? {
                out.insert(d.id, d);
            }
        }
        Ok(out)
    }

    /// Records clicks (with a link) and opens (without), each at its time, in one
    /// transaction.
    pub async fn record_hits(&self, hits: &[(Hit<'_>, i64)]) -> Result<(), StoreError> {
        // In the order of the per-person index (then by delivery): each index page the
        // batch touches is then visited once, not once per row that lands on it.
        let mut hits: Vec<&(Hit<'_>, i64)> = hits.iter().collect();
        hits.sort_by_key(|(h, _)| (h.delivery.profile_id, h.delivery.id));
        let mut tx = self.begin().await?;
        for chunk in hits.chunks(super::rows_per_statement(10)) {
            let sql = self.positional(format!(
                "INSERT INTO events (profile_id, kind, campaign, run_id, delivery_id, link_id, tag, user_agent, automated, created_at) VALUES {}",
                super::value_rows(1, chunk.len(), 10)
            ));
            let mut q = sqlx::query(&sql);
            for (hit, at) in chunk {
                let d = hit.delivery;
                let (kind, link_id, tag) = match hit.link {
                    Some(l) => (
                        "click",
                        Some(l.id),
                        (!l.tag.is_empty()).then_some(l.tag.as_str()),
                    ),
                    None => ("open", None, None),
                };
                q = q
                    .bind(d.profile_id)
                    .bind(kind)
                    .bind(d.campaign.as_str())
                    .bind(d.run_id)
                    .bind(d.id)
                    .bind(link_id)
                    .bind(tag)
                    .bind(hit.user_agent)
                    .bind(i64::from(hit.automated))
                    .bind(*at);
            }
            q.execute(&mut *tx).await?;
        }
        self.commit(tx).await?;
        Ok(())
    }

    /// Flags the clicks of these messages, given as (profile, delivery), since `since` as
    /// automated (a burst: see `track::automated`). Found through the per-person index:
    /// events have no index by delivery (see migration 0006).
    pub async fn flag_clicks_automated(
        &self,
        messages: &[(i64, i64)],
        since: i64,
    ) -> Result<(), StoreError> {
        for chunk in messages.chunks((super::MAX_PARAMS - 1) / 2) {
            let sql = self.positional(format!(
                "UPDATE events SET automated = 1 WHERE profile_id IN ({}) AND kind = 'click' AND created_at >= ${} AND delivery_id IN ({})",
                super::params(1, chunk.len()),
                chunk.len() + 1,
                super::params(chunk.len() + 2, chunk.len())
            ));
            let mut q = sqlx::query(&sql);
            for (profile, _) in chunk {
                q = q.bind(*profile);
            }
            q = q.bind(since);
            for (_, delivery) in chunk {
                q = q.bind(*delivery);
            }
            q.execute(&self.pool).await?;
        }
        Ok(())
    }

    /// For each of these messages, given as (profile, delivery), how many distinct links
    /// were clicked since `since` (to spot a scanner that follows every link of a message
    /// at once), by delivery. Messages without clicks are left out.
    pub async fn links_clicked_since(
        &self,
        messages: &[(i64, i64)],
        since: i64,
    ) -> Result<std::collections::HashMap<i64, i64>, StoreError> {
        let wanted: std::collections::HashSet<i64> = messages.iter().map(|m| m.1).collect();
        let mut profiles: Vec<i64> = messages.iter().map(|m| m.0).collect();
        profiles.sort_unstable();
        profiles.dedup();
        let mut out = std::collections::HashMap::new();
        for chunk in profiles.chunks(super::MAX_PARAMS - 1) {
            let sql = self.positional(format!(
                "SELECT delivery_id, COUNT(DISTINCT link_id) FROM events \
                 WHERE profile_id IN ({}) AND kind = 'click' AND created_at >= ${} GROUP BY delivery_id",
                super::params(1, chunk.len()),
                chunk.len() + 1
            ));
            let mut q = sqlx::query(&sql);
            for id in chunk {
                q = q.bind(*id);
            }
            q = q.bind(since);
            for r in q.fetch_all(&self.pool).await? {
                let delivery: Option<i64> = r.try_get(0)?;
                if let Some(d) = delivery.filter(|d| wanted.contains(d)) {
                    out.insert(d, r.try_get(1)?);
                }
            }
        }
        Ok(out)
    }
}
