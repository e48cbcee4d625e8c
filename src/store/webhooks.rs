//! The webhook queue (`webhook_deliveries`): rows written in the same transaction as what
//! they tell of, claimed with a lease by the sender (several `serve` processes on one
//! PostgreSQL skip each other's rows), retried until `give_up_at`, then kept as failed.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use serde_json::Value;
use sqlx::Row;

use super::{Store, StoreError, now};
use crate::event::HookEvent;

/// Which endpoints hear of which event types: set from `[[webhook]]` at start and on reload
/// (endpoints whose secret is missing are left out). Empty: nothing is queued.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HookRoutes {
    by_type: HashMap<HookEvent, Vec<String>>,
}

impl HookRoutes {
    /// Adds an endpoint for these event types.
    pub fn add(&mut self, url: &str, events: &[HookEvent]) {
        for e in events {
            let urls = self.by_type.entry(*e).or_default();
            if !urls.iter().any(|u| u == url) {
                urls.push(url.to_string());
            }
        }
    }

    fn targets(&self, e: HookEvent) -> &[String] {
        self.by_type.get(&e).map(Vec::as_slice).unwrap_or_default()
    }
}

/// The routes a store queues by; shared by its clones.
pub(super) type SharedRoutes = Arc<RwLock<Arc<HookRoutes>>>;

/// Something that happened to a person, to be told to the endpoints that listen for it.
#[derive(Debug, Clone, PartialEq)]
pub struct HookNote {
    pub profile_id: i64,
    /// The `data` of the body besides `email` (added when sent).
    pub data: Value,
}

/// A claimed webhook delivery, with its body as it goes out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookClaim {
    pub id: i64,
    pub event_id: String,
    pub endpoint: String,
    /// The JSON body: `{"id", "type", "at", "data"}`.
    pub body: String,
    pub attempts: i64,
    pub give_up_at: i64,
}

/// A webhook delivery that gave up (or is still trying), for `rapport webhooks failed`.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct HookRow {
    pub id: i64,
    pub event_id: String,
    pub endpoint: String,
    pub kind: String,
    pub status: String,
    pub attempts: i64,
    pub last_error: Option<String>,
    pub created_at: i64,
}

/// An endpoint with deliveries that are failing, for `/admin`.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct FailingEndpoint {
    pub endpoint: String,
    /// Given up on.
    pub failed: i64,
    /// Still being retried after at least one failure.
    pub retrying: i64,
    pub last_error: Option<String>,
}

/// How long a webhook is retried before it is kept as failed.
pub const HOOK_RETRY_WINDOW: i64 = 24 * 3_600;

impl Store {
    /// Sets which endpoints hear of what from now on.
    pub fn set_hook_routes(&self, routes: HookRoutes) {
        *self.hooks.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(routes);
    }

    fn hook_routes(&self) -> Arc<HookRoutes> {
        self.hooks.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Whether any endpoint listens for `event` (callers with notes to build skip the work
    /// when none does).
    pub fn listens(&self, event: HookEvent) -> bool {
        !self.hook_routes().targets(event).is_empty()
    }

    /// Queues `event` about each of `notes`, which happened at `at`, for every endpoint
    /// that listens, inside the caller's transaction (`conn`), due at once. Nothing when
    /// nobody listens.
    pub(super) async fn queue_hooks(
        &self,
        conn: &mut sqlx::AnyConnection,
        event: HookEvent,
        notes: &[HookNote],
        at: i64,
    ) -> Result<(), StoreError> {
        let routes = self.hook_routes();
        let targets = routes.targets(event);
        if targets.is_empty() || notes.is_empty() {
            return Ok(());
        }
        let created = now();
        let rows: Vec<(String, &str, &HookNote)> = notes
            .iter()
            .flat_map(|n| {
                let id = uuid::Uuid::new_v4().to_string();
                targets.iter().map(move |t| (id.clone(), t.as_str(), n))
            })
            .collect();
        for chunk in rows.chunks(super::rows_per_statement(9)) {
            let sql = self.positional(format!(
                "INSERT INTO webhook_deliveries (event_id, endpoint, kind, profile_id, data, \
                 happened_at, status, next_attempt_at, give_up_at, created_at) VALUES {}",
                super::shaped_rows(1, chunk.len(), "?, ?, ?, ?, ?, ?, 'queued', ?, ?, ?")
            ));
            let mut q = sqlx::query(&sql);
            for (id, endpoint, note) in chunk {
                q = q
                    .bind(id.as_str())
                    .bind(*endpoint)
                    .bind(event.as_str())
                    .bind(note.profile_id)
                    .bind(note.data.to_string())
                    .bind(at)
                    .bind(created)
                    .bind(created + HOOK_RETRY_WINDOW)
                    .bind(created);
            }
            q.execute(&mut *conn).await?;
        }
        Ok(())
    }

    /// [`Store::queue_hooks`] in a transaction of its own (for what is recorded in
    /// batches elsewhere: people's clicks).
    pub async fn queue_hooks_now(
        &self,
        event: HookEvent,
        notes: &[HookNote],
        at: i64,
    ) -> Result<(), StoreError> {
        if !self.listens(event) || notes.is_empty() {
            return Ok(());
        }
        let mut tx = self.begin().await?;
        self.queue_hooks(&mut tx, event, notes, at).await?;
        self.commit(tx).await?;
        Ok(())
    }

    /// Claims up to `limit` due webhook deliveries for `lease` seconds, each with its body
    /// completed with the person's current address.
    pub async fn claim_hooks(&self, limit: i64, lease: i64) -> Result<Vec<HookClaim>, StoreError> {
        let at = now();
        let lock = self.skip_locked();
        let sql = self.positional(format!(
            "UPDATE webhook_deliveries SET status = 'sending', attempts = attempts + 1, lease_until = $1 \
             WHERE id IN (SELECT id FROM webhook_deliveries WHERE status = 'queued' AND next_attempt_at <= $2 \
             ORDER BY next_attempt_at, id LIMIT $3{lock}) \
             RETURNING id, event_id, endpoint, kind, profile_id, data, happened_at, attempts, give_up_at"
        ));
        let rows = sqlx::query(&sql)
            .bind(at + lease)
            .bind(at)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        let ids: Vec<i64> = rows
            .iter()
            .filter_map(|r| r.try_get::<Option<i64>, _>("profile_id").ok().flatten())
            .collect();
        let people = self.profiles_by_ids(&ids).await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let profile: Option<i64> = r.try_get("profile_id")?;
            let data: String = r.try_get("data")?;
            let mut data: Value = serde_json::from_str(&data).map_err(|e| {
                StoreError::Corrupt(format!("webhook_deliveries.data {data:?}: {e}"))
            })?;
            if let Value::Object(m) = &mut data {
                let email = profile
                    .and_then(|p| people.get(&p))
                    .map(|p| p.email.as_str());
                m.insert("email".into(), email.map_or(Value::Null, Value::from));
            }
            let at: i64 = r.try_get("happened_at")?;
            let at = chrono::DateTime::from_timestamp(at, 0)
                .unwrap_or_default()
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
            let event_id: String = r.try_get("event_id")?;
            let kind: String = r.try_get("kind")?;
            let body = serde_json::json!({ "id": event_id, "type": kind, "at": at, "data": data });
            out.push(HookClaim {
                id: r.try_get("id")?,
                event_id,
                endpoint: r.try_get("endpoint")?,
                body: body.to_string(),
                attempts: r.try_get("attempts")?,
                give_up_at: r.try_get("give_up_at")?,
            });
        }
        out.sort_by_key(|c| c.id);
        Ok(out)
    }

    /// Extends the claim on webhook deliveries still being sent.
    pub async fn renew_hook_lease(&self, ids: &[i64], lease: i64) -> Result<(), StoreError> {
        self.renew_claims("webhook_deliveries", ids, lease).await
    }

    /// Records that the endpoint took these deliveries (a 2xx answer).
    pub async fn hooks_sent(&self, ids: &[i64]) -> Result<(), StoreError> {
        if ids.is_empty() {
            return Ok(());
        }
        let sql = self.positional(format!(
            "UPDATE webhook_deliveries SET status = 'sent', sent_at = $1, lease_until = NULL, \
             last_error = NULL WHERE id IN ({})",
            super::params(2, ids.len())
        ));
        let mut q = sqlx::query(&sql).bind(now());
        for id in ids {
            q = q.bind(*id);
        }
        q.execute(&self.pool).await?;
        Ok(())
    }

    /// Records a failed attempt: tried again at `retry_at`, or kept as failed when that is
    /// `None` (past the retry window).
    pub async fn hook_failed(
        &self,
        id: i64,
        error: &str,
        retry_at: Option<i64>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE webhook_deliveries SET status = $2, next_attempt_at = COALESCE($3, next_attempt_at), \
             lease_until = NULL, last_error = $4 WHERE id = $1",
        )
        .bind(id)
        .bind(if retry_at.is_some() { "queued" } else { "failed" })
        .bind(retry_at)
        .bind(error)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Puts webhook deliveries whose lease ran out (their sender died) back in the queue.
    pub async fn reclaim_expired_hooks(&self) -> Result<u64, StoreError> {
        self.reclaim_claims("webhook_deliveries").await
    }

    /// The deliveries kept as failed, newest first.
    pub async fn failed_hooks(&self) -> Result<Vec<HookRow>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT id, event_id, endpoint, kind, status, attempts, last_error, created_at \
             FROM webhook_deliveries WHERE status = 'failed' ORDER BY id DESC",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    /// Queues a failed delivery again now, with a new retry window; false when `id` is not
    /// a failed delivery.
    pub async fn retry_hook(&self, id: i64) -> Result<bool, StoreError> {
        let at = now();
        Ok(sqlx::query(
            "UPDATE webhook_deliveries SET status = 'queued', next_attempt_at = $2, \
             give_up_at = $3 WHERE id = $1 AND status = 'failed'",
        )
        .bind(id)
        .bind(at)
        .bind(at + HOOK_RETRY_WINDOW)
        .execute(&self.pool)
        .await?
        .rows_affected()
            == 1)
    }

    /// Endpoints with failed deliveries or deliveries being retried, worst first.
    pub async fn failing_endpoints(&self) -> Result<Vec<FailingEndpoint>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT endpoint, \
               SUM(CASE WHEN status = 'failed' THEN 1 ELSE 0 END) AS failed, \
               SUM(CASE WHEN status <> 'failed' THEN 1 ELSE 0 END) AS retrying, \
               (SELECT l.last_error FROM webhook_deliveries l WHERE l.endpoint = w.endpoint \
                AND l.last_error IS NOT NULL ORDER BY l.id DESC LIMIT 1) AS last_error \
             FROM webhook_deliveries w \
             WHERE status = 'failed' OR (status IN ('queued', 'sending') AND last_error IS NOT NULL) \
             GROUP BY endpoint ORDER BY 2 DESC, 3 DESC, endpoint",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    /// How many webhook deliveries are in each status (for `/metrics`).
    pub async fn hook_counts(&self) -> Result<Vec<(String, i64)>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT status, COUNT(*) FROM webhook_deliveries GROUP BY status ORDER BY status",
        )
        .fetch_all(&self.pool)
        .await?)
    }
}
