//! Event queries: what people did, summarised for segment rules.

use sqlx::Row;

use super::{Store, StoreError};
pub use crate::event::{EventKind, EventSummary};

/// Which campaign, run and message an event belongs to (all optional).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventOrigin {
    pub campaign: Option<String>,
    pub run_id: Option<i64>,
    pub delivery_id: Option<i64>,
    /// When that message was sent (not stored with the event: it tells a link scanner's
    /// hit, which comes within seconds of the send, from a person's).
    pub sent_at: Option<i64>,
}

/// The `GROUP BY` of an event summary over `events`: per (kind, campaign, tag), and external
/// events also per time (see [`EventSummary`]). Shared by the one-profile and the batch query.
pub(super) const SUMMARY_GROUPS: &str =
    "kind, campaign, tag, CASE WHEN kind = 'external' THEN created_at END";

/// One event another system reported (`POST /api/v1/events`), checked and ready to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reported {
    /// The person's address key (`Email::key`).
    pub email_key: String,
    /// A declared event name.
    pub name: String,
    /// When it happened (Unix seconds).
    pub at: i64,
    /// The properties as compact JSON text.
    pub properties: Option<String>,
}

impl Store {
    /// Records reported events (kind `external`, the name as tag, the properties as value)
    /// for the profiles their addresses name, all or none, in one transaction that starts
    /// with its write; an address with no profile (or one erased meanwhile) records
    /// nothing. Returns (profile id, name) of each event recorded.
    pub async fn record_external(
        &self,
        events: &[Reported],
    ) -> Result<Vec<(i64, String)>, StoreError> {
        let mut groups = self.record_external_groups(&[events]).await?;
        Ok(groups.pop().unwrap_or_default())
    }

    /// [`Store::record_external`] for several batches in one transaction (one commit, one
    /// set of WAL pages, for what concurrent requests sent): the recorded events per batch.
    pub async fn record_external_groups(
        &self,
        groups: &[&[Reported]],
    ) -> Result<Vec<Vec<(i64, String)>>, StoreError> {
        let mut tx = self.begin().await?;
        let mut out = Vec::with_capacity(groups.len());
        for events in groups {
            out.push(self.insert_external(&mut tx, events).await?);
        }
        self.commit(tx).await?;
        Ok(out)
    }

    async fn insert_external(
        &self,
        tx: &mut sqlx::AnyConnection,
        events: &[Reported],
    ) -> Result<Vec<(i64, String)>, StoreError> {
        let mut recorded = Vec::with_capacity(events.len());
        for chunk in events.chunks(super::rows_per_statement(4)) {
            // VALUES names its columns column1, column2, … on both databases.
            let rows = super::shaped_rows(1, chunk.len(), "?, ?, ?, ?");
            let sql = self.positional(format!(
                "INSERT INTO events (profile_id, kind, tag, value, automated, created_at) \
                 SELECT p.id, 'external', v.column2, v.column3, 0, v.column4 \
                 FROM (VALUES {rows}) AS v JOIN profiles p ON p.email_key = v.column1 \
                 RETURNING profile_id, tag"
            ));
            let mut q = sqlx::query(&sql);
            for e in chunk {
                q = q
                    .bind(&e.email_key)
                    .bind(&e.name)
                    .bind(&e.properties)
                    .bind(e.at);
            }
            for r in q.fetch_all(&mut *tx).await? {
                recorded.push((r.try_get("profile_id")?, r.try_get("tag")?));
            }
        }
        Ok(recorded)
    }

    /// The behaviour of one profile as of `now`, for segment rules (`unless`, content
    /// selection, previews).
    pub async fn event_facts(
        &self,
        profile_id: i64,
        now: i64,
    ) -> Result<crate::segment::EventFacts, StoreError> {
        Ok(crate::segment::EventFacts {
            events: self.event_summary(profile_id).await?,
            now,
        })
    }

    /// The behaviour of one profile, for segment rules.
    pub async fn event_summary(&self, profile_id: i64) -> Result<Vec<EventSummary>, StoreError> {
        let sql = format!(
            "SELECT kind, campaign, tag, MAX(created_at) AS last_at, COUNT(*) AS n FROM events \
             WHERE profile_id = $1 AND automated = 0 GROUP BY {}",
            SUMMARY_GROUPS
        );
        let rows = sqlx::query(&sql)
            .bind(profile_id)
            .fetch_all(&self.pool)
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let kind: String = r.try_get("kind")?;
            let Some(kind) = EventKind::parse(&kind) else {
                continue;
            };
            out.push(EventSummary {
                kind,
                campaign: r.try_get("campaign")?,
                tag: r.try_get("tag")?,
                last_at: r.try_get("last_at")?,
                count: r.try_get("n")?,
            });
        }
        Ok(out)
    }

    /// Records a "was this useful?" vote (`yes` / `no`) or a comment for a campaign;
    /// `automated` for a link scanner's fetch of a vote link (kept, never counted).
    pub async fn record_feedback(
        &self,
        profile_id: i64,
        origin: &EventOrigin,
        value: &str,
        user_agent: Option<&str>,
        automated: bool,
    ) -> Result<(), StoreError> {
        let at = super::now();
        let mut tx = self.begin().await?;
        sqlx::query(
            "INSERT INTO events (profile_id, kind, campaign, run_id, delivery_id, value, user_agent, created_at, automated) \
             VALUES ($1, 'feedback', $2, $6, $7, $3, $4, $5, $8)",
        )
            .bind(profile_id)
            .bind(origin.campaign.as_deref())
            .bind(value)
            .bind(user_agent)
            .bind(at)
            .bind(origin.run_id)
            .bind(origin.delivery_id)
            .bind(i64::from(automated))
            .execute(&mut *tx)
            .await?;
        if !automated {
            let (vote, comment) = match value.strip_prefix("comment:").map(str::trim_start) {
                Some(c) => (None, Some(c)),
                None => (Some(value), None),
            };
            let note = super::HookNote {
                profile_id,
                data: serde_json::json!({ "campaign": origin.campaign, "vote": vote, "comment": comment }),
            };
            self.queue_hooks(&mut tx, crate::event::HookEvent::Feedback, &[note], at)
                .await?;
        }
        self.commit(tx).await?;
        Ok(())
    }

    /// The feedback a profile gave: (campaign, value), oldest first.
    pub async fn feedback_of(
        &self,
        profile_id: i64,
    ) -> Result<Vec<(Option<String>, Option<String>)>, StoreError> {
        let rows = sqlx::query("SELECT campaign, value FROM events WHERE profile_id = $1 AND kind = 'feedback' ORDER BY id")
            .bind(profile_id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect()
    }

    /// Records one event (tests and the demo use it; sending and tracking record their own).
    pub async fn record_event(
        &self,
        profile_id: i64,
        kind: EventKind,
        campaign: Option<&str>,
        tag: Option<&str>,
        at: i64,
    ) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO events (profile_id, kind, campaign, tag, created_at) VALUES ($1, $2, $3, $4, $5)")
            .bind(profile_id)
            .bind(kind.as_str())
            .bind(campaign)
            .bind(tag)
            .bind(at)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
