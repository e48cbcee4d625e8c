//! Runs and deliveries: the outbox. A run is created once per (campaign, period key); its
//! audience becomes delivery rows (unique per run and profile, so nobody gets a run twice);
//! workers claim due deliveries in batches, send them and record the outcome.

use std::collections::HashMap;

use sqlx::Row;

use super::{AudienceQuery, EventSummary, Store, StoreError, now};
use crate::profile::Profile;

/// Why a run exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunOrigin {
    /// A newsletter's schedule came due.
    Schedule,
    /// `rapport run`.
    Manual,
    /// The standing run of a triggered campaign (welcome, follow-up).
    Event,
}

impl RunOrigin {
    fn as_str(self) -> &'static str {
        match self {
            RunOrigin::Schedule => "schedule",
            RunOrigin::Manual => "manual",
            RunOrigin::Event => "event",
        }
    }
}

/// The period key of the standing run of a triggered campaign.
pub const STANDING: &str = "standing";

/// The system campaign of confirmation emails. Each request on the form queues (or queues
/// again) the person's one delivery in this campaign's standing run, made by a migration;
/// the worker builds a confirmation for it instead of a campaign message. Campaign ids in
/// `campaigns.toml` cannot start with `@`, and the reports leave this campaign out.
pub const CONFIRMATION: &str = "@confirmation";

/// The claim order of messages someone is waiting for (a confirmation, a welcome, a
/// follow-up): ahead of a newsletter run's, whose deliveries keep the default, 1.
const WAITED_FOR: i64 = 0;

/// A delivery a worker has claimed: it holds the lease until it records an outcome.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Claimed {
    pub id: i64,
    pub run_id: i64,
    pub profile_id: i64,
    pub campaign: String,
    /// Including this one.
    pub attempts: i64,
}

/// A send the mail server accepted, to record: the delivery, the message's id and the
/// URLs of the library items the message carried.
#[derive(Debug, Clone)]
pub struct Sent {
    pub delivery: Claimed,
    pub message_id: String,
    pub items: Vec<String>,
}

/// How a run stands.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunProgress {
    pub queued: i64,
    pub sending: i64,
    pub sent: i64,
    pub failed: i64,
    pub skipped: i64,
}

impl RunProgress {
    /// Nothing left to send.
    pub fn finished(&self) -> bool {
        self.queued == 0 && self.sending == 0
    }
}

impl Store {
    /// Creates the run (campaign, key) unless it exists. Returns its id to the one caller
    /// that created it and `None` to everyone else, however many instances race for it.
    pub async fn create_run(
        &self,
        campaign: &str,
        key: &str,
        origin: RunOrigin,
    ) -> Result<Option<i64>, StoreError> {
        Ok(sqlx::query_scalar(
            "INSERT INTO campaign_runs (campaign, period_key, origin, status, created_at) \
             VALUES ($1, $2, $3, 'queuing', $4) ON CONFLICT (campaign, period_key) DO NOTHING RETURNING id",
        )
        .bind(campaign)
        .bind(key)
        .bind(origin.as_str())
        .bind(now())
        .fetch_optional(&self.pool)
        .await?)
    }

    /// The run of `campaign` with period key `key`: (id, recipients).
    pub async fn run_with_key(
        &self,
        campaign: &str,
        key: &str,
    ) -> Result<Option<(i64, i64)>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT id, recipients FROM campaign_runs WHERE campaign = $1 AND period_key = $2",
        )
        .bind(campaign)
        .bind(key)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// When rapport first saw `schedule` for `campaign`, recording `at` if it never had.
    /// The scheduler starts no occurrence from before this moment (no "missed" run on a
    /// new install, a fresh database or a changed schedule).
    pub async fn schedule_first_seen(
        &self,
        campaign: &str,
        schedule: &str,
        at: i64,
    ) -> Result<i64, StoreError> {
        let select =
            "SELECT first_seen_at FROM schedules_seen WHERE campaign = $1 AND schedule = $2";
        let seen: Option<i64> = sqlx::query_scalar(select)
            .bind(campaign)
            .bind(schedule)
            .fetch_optional(&self.pool)
            .await?;
        if let Some(seen) = seen {
            return Ok(seen);
        }
        sqlx::query(
            "INSERT INTO schedules_seen (campaign, schedule, first_seen_at) VALUES ($1, $2, $3) \
             ON CONFLICT (campaign, schedule) DO NOTHING",
        )
        .bind(campaign)
        .bind(schedule)
        .bind(at)
        .execute(&self.pool)
        .await?;
        Ok(sqlx::query_scalar(select)
            .bind(campaign)
            .bind(schedule)
            .fetch_one(&self.pool)
            .await?)
    }

    /// The standing run of a triggered campaign, created on first use.
    pub async fn standing_run(&self, campaign: &str) -> Result<i64, StoreError> {
        if let Some(id) = self
            .create_run(campaign, STANDING, RunOrigin::Event)
            .await?
        {
            return Ok(id);
        }
        Ok(sqlx::query_scalar(
            "SELECT id FROM campaign_runs WHERE campaign = $1 AND period_key = $2",
        )
        .bind(campaign)
        .bind(STANDING)
        .fetch_one(&self.pool)
        .await?)
    }

    /// Runs whose audience was not (completely) queued, e.g. after a crash: (id, campaign).
    pub async fn runs_still_queuing(&self) -> Result<Vec<(i64, String)>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT id, campaign FROM campaign_runs WHERE status = 'queuing' AND period_key <> $1",
        )
        .bind(STANDING)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Queues a delivery for every subscribed profile in the audience, due `at`, in one
    /// statement; then marks the run queued. Idempotent: profiles already queued in the
    /// run are skipped. A reader who chose `quarterly` and was sent a newsletter (a
    /// message of a scheduled or manual run) after `quarterly_since` is left out. Returns
    /// the run's number of recipients.
    pub async fn queue_audience(
        &self,
        run_id: i64,
        campaign: &str,
        q: &AudienceQuery,
        at: i64,
        quarterly_since: i64,
    ) -> Result<i64, StoreError> {
        let n = q.arg_count();
        let sql = self.positional(format!(
            "INSERT INTO deliveries (run_id, profile_id, campaign, status, attempts, next_attempt_at, created_at) \
             SELECT ${}, id, ${}, 'queued', 0, ${}, ${} FROM profiles WHERE status = 'subscribed' AND {} \
             AND NOT (COALESCE(frequency, '') = 'quarterly' AND EXISTS (SELECT 1 FROM deliveries d \
               JOIN campaign_runs r ON r.id = d.run_id WHERE d.profile_id = profiles.id \
               AND d.status = 'sent' AND d.sent_at > ${} AND r.period_key <> '{STANDING}')) \
             ON CONFLICT (run_id, profile_id) DO NOTHING",
            n + 1,
            n + 2,
            n + 3,
            n + 3,
            q.sql(),
            n + 4,
        ));
        let mut tx = self.begin().await?;
        q.bind_all(sqlx::query(&sql))
            .bind(run_id)
            .bind(campaign)
            .bind(at)
            .bind(quarterly_since)
            .execute(&mut *tx)
            .await?;
        let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM deliveries WHERE run_id = $1")
            .bind(run_id)
            .fetch_one(&mut *tx)
            .await?;
        sqlx::query("UPDATE campaign_runs SET status = 'queued', recipients = $2, queued_at = $3 WHERE id = $1")
            .bind(run_id)
            .bind(count)
            .bind(now())
            .execute(&mut *tx)
            .await?;
        self.commit(tx).await?;
        Ok(count)
    }

    /// Queues one delivery of a (standing) run for each profile that has none yet, due `at`,
    /// ahead of newsletter runs, in one transaction (a batch of clicks starting a follow-up for many people at once).
    /// Returns how many were queued.
    pub async fn queue_deliveries(
        &self,
        run_id: i64,
        campaign: &str,
        profile_ids: &[i64],
        at: i64,
    ) -> Result<u64, StoreError> {
        let mut tx = self.begin().await?;
        let mut queued = 0;
        let created = now();
        for chunk in profile_ids.chunks(super::rows_per_statement(5)) {
            let rows = super::shaped_rows(1, chunk.len(), "?, ?, ?, 'queued', 0, ?, ?, ?");
            let sql = self.positional(format!(
                "INSERT INTO deliveries (run_id, profile_id, campaign, status, attempts, next_attempt_at, created_at, priority) \
                 VALUES {rows} ON CONFLICT (run_id, profile_id) DO NOTHING"
            ));
            let mut q = sqlx::query(&sql);
            for id in chunk {
                q = q
                    .bind(run_id)
                    .bind(*id)
                    .bind(campaign)
                    .bind(at)
                    .bind(created)
                    .bind(WAITED_FOR);
            }
            queued += q.execute(&mut *tx).await?.rows_affected();
        }
        if queued > 0 {
            sqlx::query("UPDATE campaign_runs SET recipients = recipients + $1 WHERE id = $2")
                .bind(queued as i64)
                .bind(run_id)
                .execute(&mut *tx)
                .await?;
        }
        self.commit(tx).await?;
        Ok(queued)
    }

    /// Claims up to `limit` due deliveries for `lease` seconds. On PostgreSQL concurrent
    /// workers skip each other's rows (`FOR UPDATE SKIP LOCKED`); SQLite has one writer.
    pub async fn claim_deliveries(
        &self,
        limit: i64,
        lease: i64,
    ) -> Result<Vec<Claimed>, StoreError> {
        let at = now();
        let lock = self.skip_locked();
        let sql = self.positional(format!(
            "UPDATE deliveries SET status = 'sending', attempts = attempts + 1, lease_until = $1 \
             WHERE id IN (SELECT id FROM deliveries WHERE status = 'queued' AND next_attempt_at <= $2 \
             ORDER BY priority, next_attempt_at, id LIMIT $3{lock}) \
             RETURNING id, run_id, profile_id, campaign, attempts"
        ));
        let mut out: Vec<Claimed> = sqlx::query_as(&sql)
            .bind(at + lease)
            .bind(at)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        out.sort_by_key(|c| c.id);
        Ok(out)
    }

    /// Extends the claim on deliveries still being sent.
    pub async fn renew_lease(&self, ids: &[i64], lease: i64) -> Result<(), StoreError> {
        self.renew_claims("deliveries", ids, lease).await
    }

    /// Extends the claim on rows of a queue (`deliveries`, `webhook_deliveries`) that are
    /// still `sending` by `lease` seconds from now.
    pub(super) async fn renew_claims(
        &self,
        table: &'static str,
        ids: &[i64],
        lease: i64,
    ) -> Result<(), StoreError> {
        if ids.is_empty() {
            return Ok(());
        }
        let sql = self.positional(format!(
            "UPDATE {table} SET lease_until = $1 WHERE status = 'sending' AND id IN ({})",
            super::params(2, ids.len())
        ));
        let mut q = sqlx::query(&sql).bind(now() + lease);
        for id in ids {
            q = q.bind(*id);
        }
        q.execute(&self.pool).await?;
        Ok(())
    }

    /// Puts rows of a queue whose lease ran out (their worker died) back in it.
    pub(super) async fn reclaim_claims(&self, table: &'static str) -> Result<u64, StoreError> {
        Ok(sqlx::query(&format!(
            "UPDATE {table} SET status = 'queued', lease_until = NULL WHERE status = 'sending' AND lease_until < $1"
        ))
        .bind(now())
        .execute(&self.pool)
        .await?
        .rows_affected())
    }

    /// Puts deliveries whose lease ran out (their worker died) back in the queue.
    pub async fn reclaim_expired(&self) -> Result<u64, StoreError> {
        self.reclaim_claims("deliveries").await
    }

    /// Records sends the mail server accepted, with their `sent` events and the library
    /// items their messages carried, in one
    /// transaction; a confirmation asked for again while it was being sent is queued again
    /// (see `request_opt_in`) (the worker groups the sends that finish while the previous write runs).
    pub async fn deliveries_sent(&self, sent: &[Sent]) -> Result<(), StoreError> {
        if sent.is_empty() {
            return Ok(());
        }
        let at = now();
        let mut tx = self.begin().await?;
        // One UPDATE per hundred: `UPDATE ... FROM (VALUES ...)` reads the same on SQLite
        // (3.33+) and PostgreSQL, whose VALUES columns are both named column1, column2.
        // The library items the message carried go on the same row (see `library`).
        for chunk in sent.chunks(super::rows_per_statement(3)) {
            let sql = self.positional(format!(
                "UPDATE deliveries SET status = CASE WHEN again_at IS NULL THEN 'sent' ELSE 'queued' END, \
                 next_attempt_at = COALESCE(again_at, next_attempt_at), \
                 attempts = CASE WHEN again_at IS NULL THEN attempts ELSE 0 END, again_at = NULL, \
                 message_id = v.column2, library_urls = v.column3, sent_at = $1, lease_until = NULL, \
                 last_error = NULL FROM (VALUES {}) AS v WHERE deliveries.id = v.column1",
                super::value_rows(2, chunk.len(), 3)
            ));
            let mut q = sqlx::query(&sql).bind(at);
            for s in chunk {
                q = q
                    .bind(s.delivery.id)
                    .bind(s.message_id.as_str())
                    .bind(super::library::urls(&s.items));
            }
            q.execute(&mut *tx).await?;
        }
        // A confirmation is not a campaign message: no `sent` event (segments, reports).
        let campaign_sends: Vec<&Claimed> = sent
            .iter()
            .map(|s| &s.delivery)
            .filter(|d| d.campaign != CONFIRMATION)
            .collect();
        for chunk in campaign_sends.chunks(super::rows_per_statement(5)) {
            let sql = self.positional(format!(
                "INSERT INTO events (profile_id, kind, campaign, run_id, delivery_id, created_at) VALUES {}",
                super::shaped_rows(1, chunk.len(), "?, 'sent', ?, ?, ?, ?")
            ));
            let mut q = sqlx::query(&sql);
            for d in chunk {
                q = q
                    .bind(d.profile_id)
                    .bind(d.campaign.as_str())
                    .bind(d.run_id)
                    .bind(d.id)
                    .bind(at);
            }
            q.execute(&mut *tx).await?;
        }
        self.commit(tx).await?;
        Ok(())
    }

    /// A transient failure: try again at `next_at`.
    pub async fn delivery_retry(
        &self,
        id: i64,
        error: &str,
        next_at: i64,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE deliveries SET status = 'queued', next_attempt_at = $2, last_error = $3, lease_until = NULL WHERE id = $1")
            .bind(id)
            .bind(next_at)
            .bind(error)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Back in the queue until `at`, for `why`, without counting the attempt (its receiving domain's
    /// next send slot is later; see `delivery::pace`).
    pub async fn delivery_postpone(&self, id: i64, at: i64, why: &str) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE deliveries SET status = 'queued', next_attempt_at = $2, lease_until = NULL, \
             last_error = $3, attempts = CASE WHEN attempts > 0 THEN attempts - 1 ELSE 0 END \
             WHERE id = $1",
        )
        .bind(id)
        .bind(at)
        .bind(why)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// A final outcome without a send: `failed` (with `bounce`, the address is marked
    /// bounced and gets nothing more) or `skipped` (unsubscribed meanwhile, `unless`).
    pub async fn delivery_closed(
        &self,
        d: &Claimed,
        status: &str,
        error: &str,
        bounce: bool,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        sqlx::query(
            "UPDATE deliveries SET status = $2, last_error = $3, lease_until = NULL WHERE id = $1",
        )
        .bind(d.id)
        .bind(status)
        .bind(error)
        .execute(&mut *tx)
        .await?;
        if bounce {
            sqlx::query("UPDATE profiles SET status = 'bounced', confirm_nonce = NULL, updated_at = $2 WHERE id = $1 AND status = 'subscribed'")
                .bind(d.profile_id)
                .bind(now())
                .execute(&mut *tx)
                .await?;
            sqlx::query("INSERT INTO events (profile_id, kind, campaign, run_id, delivery_id, value, created_at) VALUES ($1, 'bounce', $2, $3, $4, $5, $6)")
                .bind(d.profile_id)
                .bind(&d.campaign)
                .bind(d.run_id)
                .bind(d.id)
                .bind(error)
                .bind(now())
                .execute(&mut *tx)
                .await?;
            let note = super::HookNote {
                profile_id: d.profile_id,
                data: serde_json::json!({ "campaign": d.campaign, "reason": error, "when": "at the send" }),
            };
            let at = now();
            self.queue_hooks(&mut tx, crate::event::HookEvent::Bounced, &[note], at)
                .await?;
        }
        self.commit(tx).await?;
        Ok(())
    }

    /// Delivery counts of a run by status.
    pub async fn run_progress(&self, run_id: i64) -> Result<RunProgress, StoreError> {
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT status, COUNT(*) FROM deliveries WHERE run_id = $1 GROUP BY status",
        )
        .bind(run_id)
        .fetch_all(&self.pool)
        .await?;
        let mut p = RunProgress::default();
        for (status, n) in rows {
            match status.as_str() {
                "queued" => p.queued = n,
                "sending" => p.sending = n,
                "sent" => p.sent = n,
                "failed" => p.failed = n,
                _ => p.skipped += n,
            }
        }
        Ok(p)
    }

    /// The runs of a campaign: (id, period key, recipients).
    pub async fn runs_of(&self, campaign: &str) -> Result<Vec<(i64, String, i64)>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT id, period_key, recipients FROM campaign_runs WHERE campaign = $1 ORDER BY id",
        )
        .bind(campaign)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Profiles by id (for a claimed batch).
    pub async fn profiles_by_ids(&self, ids: &[i64]) -> Result<HashMap<i64, Profile>, StoreError> {
        if ids.is_empty() {
            return Ok(HashMap::new());
        }
        let sql = self.positional(format!(
            concat!(
                "SELECT ",
                profile_columns!(),
                " FROM profiles WHERE id IN ({})"
            ),
            super::params(1, ids.len())
        ));
        let mut q = sqlx::query(&sql);
        for id in ids {
            q = q.bind(*id);
        }
        let rows = q.fetch_all(&self.pool).await?;
        rows.iter()
            .map(|r| super::profiles::profile_from_row(r).map(|p| (p.id, p)))
            .collect()
    }

    /// The behaviour of several profiles at once (for a claimed batch).
    pub async fn event_summaries(
        &self,
        ids: &[i64],
    ) -> Result<HashMap<i64, Vec<EventSummary>>, StoreError> {
        let mut out: HashMap<i64, Vec<EventSummary>> = HashMap::new();
        if ids.is_empty() {
            return Ok(out);
        }
        let sql = self.positional(format!(
            "SELECT profile_id, kind, campaign, tag, MAX(created_at) AS last_at, COUNT(*) AS n \
             FROM events WHERE profile_id IN ({}) AND automated = 0 GROUP BY profile_id, {}",
            super::params(1, ids.len()),
            super::events::SUMMARY_GROUPS
        ));
        let mut q = sqlx::query(&sql);
        for id in ids {
            q = q.bind(*id);
        }
        for r in q.fetch_all(&self.pool).await? {
            let kind: String = r.try_get("kind")?;
            let Some(kind) = super::EventKind::parse(&kind) else {
                continue;
            };
            out.entry(r.try_get("profile_id")?)
                .or_default()
                .push(EventSummary {
                    kind,
                    campaign: r.try_get("campaign")?,
                    tag: r.try_get("tag")?,
                    last_at: r.try_get("last_at")?,
                    count: r.try_get("n")?,
                });
        }
        Ok(out)
    }
}
