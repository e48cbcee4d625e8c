//! Writes for `rapport demo`: past runs and events at chosen times.

use super::{Store, StoreError};

/// One event with every field given (demo data only; the product records its own).
#[derive(Debug, Clone, Default)]
pub struct NewEvent<'a> {
    pub profile_id: i64,
    pub kind: &'a str,
    pub campaign: Option<&'a str>,
    pub run_id: Option<i64>,
    pub delivery_id: Option<i64>,
    pub link_id: Option<i64>,
    pub tag: Option<&'a str>,
    pub value: Option<&'a str>,
    pub user_agent: Option<&'a str>,
    pub automated: bool,
    pub at: i64,
}

impl Store {
    /// How many profiles did not come from `rapport demo`.
    pub async fn real_profile_count(&self) -> Result<i64, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT COUNT(*) FROM profiles WHERE source <> 'demo'")
                .fetch_one(&self.pool)
                .await?,
        )
    }

    /// A past run of `campaign` at `at`, delivered to `profiles`: returns (delivery, profile).
    pub async fn demo_run(
        &self,
        campaign: &str,
        key: &str,
        at: i64,
        profiles: &[i64],
    ) -> Result<(i64, Vec<(i64, i64)>), StoreError> {
        let mut tx = self.begin().await?;
        let run_id: i64 = sqlx::query_scalar(
            "INSERT INTO campaign_runs (campaign, period_key, origin, status, recipients, created_at, queued_at) \
             VALUES ($1, $2, 'schedule', 'queued', $3, $4, $4) RETURNING id",
        )
        .bind(campaign)
        .bind(key)
        .bind(profiles.len() as i64)
        .bind(at)
        .fetch_one(&mut *tx)
        .await?;
        let mut out = Vec::with_capacity(profiles.len());
        for p in profiles {
            let id: i64 = sqlx::query_scalar(
                "INSERT INTO deliveries (run_id, profile_id, campaign, status, attempts, next_attempt_at, sent_at, message_id, created_at) \
                 VALUES ($1, $2, $3, 'sent', 1, $4, $4, 'demo', $4) RETURNING id",
            )
            .bind(run_id)
            .bind(*p)
            .bind(campaign)
            .bind(at)
            .fetch_one(&mut *tx)
            .await?;
            out.push((id, *p));
        }
        self.commit(tx).await?;
        Ok((run_id, out))
    }

    /// Inserts events as given, in one transaction.
    pub async fn demo_events(&self, events: &[NewEvent<'_>]) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        for e in events {
            sqlx::query(
                "INSERT INTO events (profile_id, kind, campaign, run_id, delivery_id, link_id, tag, value, user_agent, automated, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
            )
            .bind(e.profile_id)
            .bind(e.kind)
            .bind(e.campaign)
            .bind(e.run_id)
            .bind(e.delivery_id)
            .bind(e.link_id)
            .bind(e.tag)
            .bind(e.value)
            .bind(e.user_agent)
            .bind(i64::from(e.automated))
            .bind(e.at)
            .execute(&mut *tx)
            .await?;
            if e.kind == "unsubscribe" {
                sqlx::query("UPDATE profiles SET status = 'unsubscribed', confirm_nonce = NULL, unsubscribed_at = $2 WHERE id = $1")
                    .bind(e.profile_id)
                    .bind(e.at)
                    .execute(&mut *tx)
                    .await?;
            }
        }
        self.commit(tx).await?;
        Ok(())
    }

    /// Form views and opt-in consents for past days (the funnel).
    pub async fn demo_funnel(
        &self,
        day: i64,
        views: i64,
        profiles: &[i64],
        confirmed: &[i64],
    ) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        sqlx::query("INSERT INTO form_views (day, views) VALUES ($1, $2) ON CONFLICT (day) DO UPDATE SET views = form_views.views + $2")
            .bind(day)
            .bind(views)
            .execute(&mut *tx)
            .await?;
        for (action, ids) in [
            ("opt_in_requested", profiles),
            ("opt_in_confirmed", confirmed),
        ] {
            for id in ids {
                sqlx::query("INSERT INTO consents (profile_id, action, source, form_version, created_at) VALUES ($1, $2, 'demo', 'demo', $3)")
                    .bind(*id)
                    .bind(action)
                    .bind(day * 86_400 + 36_000)
                    .execute(&mut *tx)
                    .await?;
            }
        }
        self.commit(tx).await?;
        Ok(())
    }
}
