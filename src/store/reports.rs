//! Report queries: response rates per campaign, run or segment, and the opt-in funnel per
//! day. The database aggregates; rows are streamed to the caller one by one.

use sqlx::Row;

use super::{AudienceQuery, Store, StoreError};
use crate::profile::Question;

/// How response rates are grouped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupBy {
    Campaign,
    Run,
    Segment,
}

/// Counts for one row of the response-rate report (rates are derived from them).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RateCounts {
    pub campaign: String,
    pub run: String,
    pub segment: String,
    pub recipients: i64,
    pub delivered: i64,
    pub bounced: i64,
    pub unique_opens: i64,
    pub unique_clicks: i64,
    pub unsubscribes: i64,
    pub feedback_yes: i64,
    pub feedback_no: i64,
}

/// One day of the opt-in funnel.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OptinDay {
    /// Days since 1970-01-01 (UTC).
    pub day: i64,
    pub form_views: i64,
    pub submissions: i64,
    pub confirmations: i64,
    /// Profiles created that day.
    pub new_profiles: i64,
    /// Of those, how many have answered every question of the form.
    pub fully_profiled: i64,
    /// Profiles that lapsed that day (the sunset: no click on the re-permission message).
    pub lapsed: i64,
}

/// Per delivery: whether each thing happened (a person's open counts clicks too: images are
/// often blocked, and a click proves the message was read). Automated hits never count.
/// Of a message's "was this useful?" votes, the last one counts (a person who changed
/// their mind; a scanner fetching both links is automated and counts not at all).
/// Events are found through the per-person index (a delivery's events carry its profile);
/// there is no index by delivery, which would cost every click a second random index write.
const PER_DELIVERY: &str = "\
    CASE WHEN d.status = 'sent' THEN 1 ELSE 0 END AS delivered, \
    CASE WHEN EXISTS (SELECT 1 FROM events e WHERE e.profile_id = d.profile_id AND e.kind = 'bounce' AND e.delivery_id = d.id) THEN 1 ELSE 0 END AS bounced, \
    CASE WHEN EXISTS (SELECT 1 FROM events e WHERE e.profile_id = d.profile_id AND e.kind IN ('open', 'click') AND e.delivery_id = d.id AND e.automated = 0) THEN 1 ELSE 0 END AS opened, \
    CASE WHEN EXISTS (SELECT 1 FROM events e WHERE e.profile_id = d.profile_id AND e.kind = 'click' AND e.delivery_id = d.id AND e.automated = 0) THEN 1 ELSE 0 END AS clicked, \
    CASE WHEN EXISTS (SELECT 1 FROM events e WHERE e.profile_id = d.profile_id AND e.kind = 'unsubscribe' AND e.delivery_id = d.id) THEN 1 ELSE 0 END AS unsubscribed, \
    CASE WHEN (SELECT e.value FROM events e WHERE e.profile_id = d.profile_id AND e.kind = 'feedback' AND e.delivery_id = d.id AND e.automated = 0 AND e.value IN ('yes', 'no') ORDER BY e.id DESC LIMIT 1) = 'yes' THEN 1 ELSE 0 END AS said_yes, \
    CASE WHEN (SELECT e.value FROM events e WHERE e.profile_id = d.profile_id AND e.kind = 'feedback' AND e.delivery_id = d.id AND e.automated = 0 AND e.value IN ('yes', 'no') ORDER BY e.id DESC LIMIT 1) = 'no' THEN 1 ELSE 0 END AS said_no";

/// Leaves out the confirmation emails ([`super::CONFIRMATION`]): they are not campaign
/// messages and have no response rate.
const CAMPAIGNS_ONLY: &str = "d.campaign <> '@confirmation'";

const SUMS: &str = "COUNT(*) AS recipients, CAST(SUM(delivered) AS BIGINT) AS delivered, \
    CAST(SUM(bounced) AS BIGINT) AS bounced, CAST(SUM(opened) AS BIGINT) AS opens, \
    CAST(SUM(clicked) AS BIGINT) AS clicks, CAST(SUM(unsubscribed) AS BIGINT) AS unsubscribes, \
    CAST(SUM(said_yes) AS BIGINT) AS yes, CAST(SUM(said_no) AS BIGINT) AS no";

fn counts(r: &sqlx::any::AnyRow, segment: &str) -> Result<RateCounts, StoreError> {
    let n =
        |c: &str| -> Result<i64, StoreError> { Ok(r.try_get::<Option<i64>, _>(c)?.unwrap_or(0)) };
    Ok(RateCounts {
        campaign: r.try_get("campaign")?,
        run: r.try_get("run")?,
        segment: segment.to_string(),
        recipients: n("recipients")?,
        delivered: n("delivered")?,
        bounced: n("bounced")?,
        unique_opens: n("opens")?,
        unique_clicks: n("clicks")?,
        unsubscribes: n("unsubscribes")?,
        feedback_yes: n("yes")?,
        feedback_no: n("no")?,
    })
}

impl Store {
    /// Response-rate counts of deliveries created in `[from, to)` (unix seconds), one row per
    /// campaign or per run; for segments use [`Store::response_rates_for_segment`]. The
    /// database does the counting: only the result rows come back.
    pub async fn response_rates(
        &self,
        by: GroupBy,
        from: i64,
        to: i64,
    ) -> Result<Vec<RateCounts>, StoreError> {
        let sql = match by {
            GroupBy::Run => format!(
                "SELECT campaign, run, {SUMS} FROM (SELECT d.campaign AS campaign, r.period_key AS run, r.id AS run_id, \
                 {PER_DELIVERY} FROM deliveries d JOIN campaign_runs r ON r.id = d.run_id \
                 WHERE d.created_at >= $1 AND d.created_at < $2 AND {CAMPAIGNS_ONLY}) x GROUP BY campaign, run, run_id ORDER BY campaign, run_id"
            ),
            _ => format!(
                "SELECT campaign, '' AS run, {SUMS} FROM (SELECT d.campaign AS campaign, {PER_DELIVERY} FROM deliveries d \
                 WHERE d.created_at >= $1 AND d.created_at < $2 AND {CAMPAIGNS_ONLY}) x GROUP BY campaign ORDER BY campaign"
            ),
        };
        let rows = sqlx::query(&sql)
            .bind(from)
            .bind(to)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(|r| counts(r, "")).collect()
    }

    /// Response-rate counts per campaign for the people in one segment (membership as of now,
    /// whatever their status), deliveries created in `[from, to)`.
    pub async fn response_rates_for_segment(
        &self,
        segment: &str,
        q: &AudienceQuery,
        from: i64,
        to: i64,
    ) -> Result<Vec<RateCounts>, StoreError> {
        let n = q.arg_count();
        let sql = format!(
            "SELECT campaign, '' AS run, {SUMS} FROM (SELECT d.campaign AS campaign, {PER_DELIVERY} \
             FROM deliveries d WHERE d.created_at >= ${} AND d.created_at < ${} AND {CAMPAIGNS_ONLY} \
             AND d.profile_id IN (SELECT id FROM profiles WHERE {})) d GROUP BY campaign ORDER BY campaign",
            n + 1,
            n + 2,
            q.sql()
        );
        let rows = q
            .bind_all(sqlx::query(&sql))
            .bind(from)
            .bind(to)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(|r| counts(r, segment)).collect()
    }

    /// The opt-in funnel per UTC day in `[from_day, to_day]`; a profile is fully profiled
    /// when it has answered every one of `questions` (the form's).
    pub async fn optin_days(
        &self,
        from_day: i64,
        to_day: i64,
        questions: &[Question],
    ) -> Result<Vec<OptinDay>, StoreError> {
        let complete: Vec<String> = questions
            .iter()
            .filter(|q| **q != Question::Email)
            .map(|q| match q {
                q if q.kind() == crate::profile::Kind::MultiChoice => {
                    format!("({0} IS NOT NULL AND {0} <> '[]')", q.key())
                }
                other => format!("{} IS NOT NULL", other.key()),
            })
            .collect();
        let complete = if complete.is_empty() {
            "1 = 1".to_string()
        } else {
            complete.join(" AND ")
        };
        let sql = format!(
            "SELECT day, CAST(SUM(views) AS BIGINT) AS views, CAST(SUM(submissions) AS BIGINT) AS submissions, \
             CAST(SUM(confirmations) AS BIGINT) AS confirmations, CAST(SUM(created) AS BIGINT) AS created, \
             CAST(SUM(complete) AS BIGINT) AS complete, CAST(SUM(lapsed) AS BIGINT) AS lapsed FROM ( \
               SELECT day, views, 0 AS submissions, 0 AS confirmations, 0 AS created, 0 AS complete, 0 AS lapsed FROM form_views \
               UNION ALL SELECT created_at / 86400, 0, CASE WHEN action = 'opt_in_requested' THEN 1 ELSE 0 END, \
                 CASE WHEN action = 'opt_in_confirmed' THEN 1 ELSE 0 END, 0, 0, 0 FROM consents \
                 WHERE action IN ('opt_in_requested', 'opt_in_confirmed') \
               UNION ALL SELECT created_at / 86400, 0, 0, 0, 1, CASE WHEN {complete} THEN 1 ELSE 0 END, 0 FROM profiles \
               UNION ALL SELECT created_at / 86400, 0, 0, 0, 0, 0, 1 FROM events WHERE kind = 'lapsed' \
             ) f WHERE day >= $1 AND day <= $2 GROUP BY day ORDER BY day"
        );
        let rows = sqlx::query(&sql)
            .bind(from_day)
            .bind(to_day)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                let n = |c: &str| -> Result<i64, StoreError> {
                    Ok(r.try_get::<Option<i64>, _>(c)?.unwrap_or(0))
                };
                Ok(OptinDay {
                    day: r.try_get("day")?,
                    form_views: n("views")?,
                    submissions: n("submissions")?,
                    confirmations: n("confirmations")?,
                    new_profiles: n("created")?,
                    fully_profiled: n("complete")?,
                    lapsed: n("lapsed")?,
                })
            })
            .collect()
    }
}

/// Totals for `/metrics`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Totals {
    pub opt_in_requests: i64,
    pub confirmations: i64,
    pub sent: i64,
    pub failed: i64,
    pub queued: i64,
    pub clicks: i64,
    pub automated_hits: i64,
    /// Hard bounces reported by DSN after the send (refusals at the send are in `failed`).
    pub late_bounces: i64,
    pub soft_bounces: i64,
    pub complaints: i64,
    /// Profiles per status.
    pub profiles: Vec<(String, i64)>,
}

/// A run for the dashboard: (id, campaign, period key, recipients, sent, failed, created).
pub type RunSummary = (i64, String, String, i64, i64, i64, i64);

impl Store {
    /// How many profiles are in each status, by status name.
    pub async fn profiles_by_status(&self) -> Result<Vec<(String, i64)>, StoreError> {
        Ok(
            sqlx::query_as("SELECT status, COUNT(*) FROM profiles GROUP BY status ORDER BY status")
                .fetch_all(&self.pool)
                .await?,
        )
    }

    /// Counters for monitoring.
    pub async fn totals(&self) -> Result<Totals, StoreError> {
        let one = |sql: &'static str| async move {
            sqlx::query_scalar::<_, i64>(sql)
                .fetch_one(&self.pool)
                .await
        };
        let profiles = self.profiles_by_status().await?;
        Ok(Totals {
            opt_in_requests: one("SELECT COUNT(*) FROM consents WHERE action = 'opt_in_requested'")
                .await?,
            confirmations: one("SELECT COUNT(*) FROM consents WHERE action = 'opt_in_confirmed'")
                .await?,
            sent: one("SELECT COUNT(*) FROM events WHERE kind = 'sent'").await?,
            failed: one("SELECT COUNT(*) FROM deliveries WHERE status = 'failed'").await?,
            queued: one("SELECT (SELECT COUNT(*) FROM deliveries WHERE status = 'queued') + (SELECT COUNT(*) FROM deliveries WHERE status = 'sending')")
                .await?,
            clicks: one("SELECT COUNT(*) FROM events WHERE kind = 'click' AND automated = 0")
                .await?,
            automated_hits: one(
                "SELECT COUNT(*) FROM events WHERE kind IN ('click', 'open') AND automated = 1",
            )
            .await?,
            late_bounces: one("SELECT COUNT(*) FROM events WHERE kind = 'bounce' AND tag IS NOT NULL")
                .await?,
            soft_bounces: one("SELECT COUNT(*) FROM events WHERE kind = 'soft_bounce'").await?,
            complaints: one("SELECT COUNT(*) FROM events WHERE kind = 'complaint'").await?,
            profiles,
        })
    }

    /// The latest runs with their progress, newest first.
    pub async fn recent_runs(&self, limit: i64) -> Result<Vec<RunSummary>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT r.id, r.campaign, r.period_key, r.recipients, \
             CAST(COALESCE(SUM(CASE WHEN d.status = 'sent' THEN 1 ELSE 0 END), 0) AS BIGINT), \
             CAST(COALESCE(SUM(CASE WHEN d.status = 'failed' THEN 1 ELSE 0 END), 0) AS BIGINT), r.created_at \
             FROM campaign_runs r LEFT JOIN deliveries d ON d.run_id = r.id WHERE r.campaign <> $2 \
             GROUP BY r.id, r.campaign, r.period_key, r.recipients, r.created_at ORDER BY r.id DESC LIMIT $1",
        )
        .bind(limit)
        .bind(super::CONFIRMATION)
        .fetch_all(&self.pool)
        .await?)
    }

    /// The hash of the admin token, if one was generated.
    pub async fn admin_token_hash(&self) -> Result<Option<String>, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT value FROM settings WHERE key = 'admin_token_sha256'")
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    /// Stores the hash of a generated admin token unless one exists; true when this call
    /// stored it (the token is then shown once).
    pub async fn set_admin_token_hash(&self, hash: &str) -> Result<bool, StoreError> {
        Ok(sqlx::query("INSERT INTO settings (key, value) VALUES ('admin_token_sha256', $1) ON CONFLICT (key) DO NOTHING")
            .bind(hash)
            .execute(&self.pool)
            .await?
            .rows_affected()
            == 1)
    }
}

/// One click for the clicks export.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClickRow {
    pub at: i64,
    pub email: Option<String>,
    pub campaign: String,
    pub run: String,
    pub url: String,
    pub tag: String,
    pub automated: bool,
}

impl Store {
    /// Every click in `[from, to)`, oldest first, streamed: who clicked which link of which
    /// run, when (erased profiles show no address). By time, not by row id: the click
    /// writer inserts a batch in index order, not arrival order (the kind-and-time index
    /// gives this order without sorting).
    pub fn clicks(
        &self,
        from: i64,
        to: i64,
    ) -> impl futures_util::Stream<Item = Result<ClickRow, StoreError>> + '_ {
        use futures_util::StreamExt;
        sqlx::query(
            "SELECT e.created_at, p.email, COALESCE(e.campaign, ''), COALESCE(r.period_key, ''), COALESCE(l.url, ''), \
             COALESCE(l.tag, ''), e.automated FROM events e \
             LEFT JOIN profiles p ON p.id = e.profile_id LEFT JOIN links l ON l.id = e.link_id \
             LEFT JOIN campaign_runs r ON r.id = e.run_id \
             WHERE e.kind = 'click' AND e.delivery_id IS NOT NULL AND e.created_at >= $1 AND e.created_at < $2 ORDER BY e.created_at, e.id",
        )
        .bind(from)
        .bind(to)
        .fetch(&self.pool)
        .map(|row| {
            let r = row?;
            Ok(ClickRow {
                at: r.try_get(0)?,
                email: r.try_get(1)?,
                campaign: r.try_get(2)?,
                run: r.try_get(3)?,
                url: r.try_get(4)?,
                tag: r.try_get(5)?,
                automated: r.try_get::<i64, _>(6)? != 0,
            })
        })
    }
}

/// One counted "was this useful?" vote for the feedback export: the last vote a person
/// (not a link scanner) gave on a message, with the last comment written on it.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct FeedbackRow {
    pub at: i64,
    pub campaign: String,
    pub run: String,
    pub vote: String,
    /// Empty when none was written (or the person was erased).
    pub comment: String,
    /// `None` once the person is erased.
    pub email: Option<String>,
    pub industry: Option<String>,
    pub employees: Option<i64>,
    pub engagement: Option<String>,
}

impl Store {
    /// The counted votes cast in `[from, to)`, oldest first, streamed: per message, the
    /// last vote by a person, with the last comment on that message and who gave it.
    pub fn feedback(
        &self,
        from: i64,
        to: i64,
    ) -> impl futures_util::Stream<Item = Result<FeedbackRow, StoreError>> + '_ {
        use futures_util::TryStreamExt;
        sqlx::query_as(
            "SELECT v.created_at AS at, COALESCE(v.campaign, '') AS campaign, COALESCE(r.period_key, '') AS run, \
             v.value AS vote, COALESCE((SELECT SUBSTR(c.value, 10) FROM events c WHERE c.profile_id = v.profile_id \
             AND c.kind = 'feedback' AND c.delivery_id = v.delivery_id AND c.value LIKE 'comment: %' \
             ORDER BY c.id DESC LIMIT 1), '') AS comment, p.email AS email, p.industry AS industry, \
             p.employees AS employees, p.engagement AS engagement FROM events v \
             LEFT JOIN campaign_runs r ON r.id = v.run_id LEFT JOIN profiles p ON p.id = v.profile_id \
             WHERE v.kind = 'feedback' AND v.value IN ('yes', 'no') AND v.automated = 0 \
             AND v.delivery_id IS NOT NULL AND v.created_at >= $1 AND v.created_at < $2 \
             AND NOT EXISTS (SELECT 1 FROM events w WHERE w.profile_id = v.profile_id AND w.kind = 'feedback' \
             AND w.delivery_id = v.delivery_id AND w.automated = 0 AND w.value IN ('yes', 'no') AND w.id > v.id) \
             ORDER BY v.created_at, v.id",
        )
        .bind(from)
        .bind(to)
        .fetch(&self.pool)
        .map_err(StoreError::from)
    }
}

/// One link of one run for the links export.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct LinkRow {
    pub campaign: String,
    pub run: String,
    pub url: String,
    pub tag: String,
    /// The library item the link leads to (its file name without `.md`), or empty.
    pub item: String,
    /// Messages of the run in which a person (not a link scanner) clicked the link.
    pub unique_clicks: i64,
    /// Messages of the run accepted by the mail server.
    pub delivered: i64,
}

impl Store {
    /// Per run created in `[from, to)` and link clicked in it (by anyone, so that a link
    /// only scanners followed shows with 0), how many of the run's messages a person clicked
    /// it in; by campaign and run, most clicked first.
    pub async fn link_clicks(&self, from: i64, to: i64) -> Result<Vec<LinkRow>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT r.campaign AS campaign, r.period_key AS run, l.url AS url, l.tag AS tag, \
             COALESCE(l.item, '') AS item, \
             CAST(COUNT(DISTINCT CASE WHEN e.automated = 0 THEN e.delivery_id END) AS BIGINT) AS unique_clicks, \
             CAST((SELECT COUNT(*) FROM deliveries d WHERE d.run_id = r.id AND d.status = 'sent') AS BIGINT) AS delivered \
             FROM events e JOIN links l ON l.id = e.link_id JOIN campaign_runs r ON r.id = e.run_id \
             WHERE e.kind = 'click' AND r.created_at >= $1 AND r.created_at < $2 \
             GROUP BY r.id, r.campaign, r.period_key, l.id, l.url, l.tag, l.item \
             ORDER BY r.campaign, r.id, unique_clicks DESC, l.url, l.tag",
        )
        .bind(from)
        .bind(to)
        .fetch_all(&self.pool)
        .await?)
    }
}

/// A comment written after a "was this useful?" vote, for `/admin`.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct CommentRow {
    pub at: i64,
    pub campaign: String,
    pub comment: String,
    pub profile_id: i64,
}

impl Store {
    /// The latest `limit` comments, newest first (an erased person's are gone).
    pub async fn latest_comments(&self, limit: i64) -> Result<Vec<CommentRow>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT created_at AS at, COALESCE(campaign, '') AS campaign, SUBSTR(value, 10) AS comment, \
             profile_id FROM events WHERE kind = 'feedback' AND value LIKE 'comment: %' \
             ORDER BY created_at DESC, id DESC LIMIT $1",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await?)
    }
}
