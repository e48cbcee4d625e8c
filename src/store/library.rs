//! What the library and the sunset remember: the items each person was sent, who has been
//! silent too long, and who lapsed.

use std::collections::HashMap;

use sqlx::Row;

use super::{Store, StoreError};

/// How a delivery's row holds the library items its message carried (recorded with the
/// send, in `Store::deliveries_sent`, as an item counts as sent to a person once its message
/// is accepted): their URLs, one per line; none for a message without items.
pub(super) fn urls(items: &[String]) -> Option<String> {
    (!items.is_empty()).then(|| items.join("\n"))
}

impl Store {
    /// The URLs of the library items each of these people was sent, oldest first.
    pub async fn library_sent(&self, ids: &[i64]) -> Result<HashMap<i64, Vec<String>>, StoreError> {
        let mut out: HashMap<i64, Vec<String>> = HashMap::new();
        for chunk in ids.chunks(super::rows_per_statement(1)) {
            let sql = self.positional(format!(
                "SELECT profile_id, library_urls FROM deliveries WHERE profile_id IN ({}) \
                 AND library_urls IS NOT NULL ORDER BY sent_at, id",
                super::params(1, chunk.len())
            ));
            let mut q = sqlx::query(&sql);
            for id in chunk {
                q = q.bind(*id);
            }
            for row in q.fetch_all(&self.pool).await? {
                let urls: String = row.try_get(1)?;
                out.entry(row.try_get(0)?)
                    .or_default()
                    .extend(urls.lines().map(str::to_string));
            }
        }
        Ok(out)
    }

    /// The sunset's candidates at `cutoff` (unix seconds): subscribed since before it, sent
    /// some campaign message, with no human open or click after it, and never sent
    /// `campaign` (the re-permission message). Demo profiles are never mailed.
    pub async fn silent_since(&self, cutoff: i64, campaign: &str) -> Result<Vec<i64>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT p.id FROM profiles p WHERE p.status = 'subscribed' \
             AND COALESCE(p.confirmed_at, p.created_at) <= $1 AND p.email_key NOT LIKE $3 \
             AND EXISTS (SELECT 1 FROM deliveries d WHERE d.profile_id = p.id AND d.status = 'sent' AND d.campaign <> $4) \
             AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.profile_id = p.id AND d.campaign = $2) \
             AND NOT EXISTS (SELECT 1 FROM events e WHERE e.profile_id = p.id AND e.kind IN ('open', 'click') \
                 AND e.automated = 0 AND e.created_at > $1) \
             ORDER BY p.id",
        )
        .bind(cutoff)
        .bind(campaign)
        .bind(format!("%@{}", crate::profile::DEMO_DOMAIN))
        .bind(super::CONFIRMATION)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Makes `lapsed` everyone still subscribed who was sent `campaign` (the re-permission
    /// message) at or before `sent_before`, has not confirmed since, and never clicked it
    /// (automated hits do not count). Returns their ids.
    pub async fn lapse(&self, campaign: &str, sent_before: i64) -> Result<Vec<i64>, StoreError> {
        let at = super::now();
        let mut tx = self.begin().await?;
        let ids: Vec<i64> = sqlx::query_scalar(
            "UPDATE profiles SET status = 'lapsed', updated_at = $3 WHERE status = 'subscribed' AND id IN ( \
               SELECT d.profile_id FROM deliveries d JOIN profiles p ON p.id = d.profile_id \
               WHERE d.campaign = $1 AND d.status = 'sent' AND d.sent_at <= $2 \
                 AND d.sent_at >= COALESCE(p.confirmed_at, 0) \
                 AND NOT EXISTS (SELECT 1 FROM events e WHERE e.profile_id = d.profile_id AND e.kind = 'click' \
                   AND e.campaign = $1 AND e.automated = 0 AND e.created_at >= d.sent_at)) \
             RETURNING id",
        )
        .bind(campaign)
        .bind(sent_before)
        .bind(at)
        .fetch_all(&mut *tx)
        .await?;
        // A `lapsed` event per person: the opt-in export counts them by day.
        for chunk in ids.chunks(super::rows_per_statement(3)) {
            let sql = self.positional(format!(
                "INSERT INTO events (profile_id, kind, campaign, created_at) VALUES {}",
                super::shaped_rows(1, chunk.len(), "?, 'lapsed', ?, ?")
            ));
            let mut q = sqlx::query(&sql);
            for id in chunk {
                q = q.bind(*id).bind(campaign).bind(at);
            }
            q.execute(&mut *tx).await?;
        }
        self.commit(tx).await?;
        Ok(ids)
    }

    /// Brings a `lapsed` person back (they saved their preferences from their own link):
    /// subscribed again, with a consent record. False when they were not lapsed.
    pub async fn resume(&self, id: i64, meta: &super::ConsentMeta) -> Result<bool, StoreError> {
        let at = super::now();
        let mut tx = self.begin().await?;
        let changed: Option<i64> = sqlx::query_scalar(
            "UPDATE profiles SET status = 'subscribed', confirmed_at = $2, updated_at = $2 \
             WHERE id = $1 AND status = 'lapsed' RETURNING id",
        )
        .bind(id)
        .bind(at)
        .fetch_optional(&mut *tx)
        .await?;
        if changed.is_some() {
            super::profiles::insert_consent(&mut *tx, id, "opt_in_confirmed", meta, at).await?;
        }
        self.commit(tx).await?;
        Ok(changed.is_some())
    }
}
