//! What comes back after the send: late bounces and complaints recorded against their
//! delivery, the suppression they lead to, and the per-domain deliverability report.

use super::{Backend, ConsentMeta, Store, StoreError};

/// A report about one delivery, as the bounce intake read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Returned<'a> {
    /// A DSN: permanent (`hard`) or transient, with its status code and the server's words.
    Bounce {
        hard: bool,
        status: &'a str,
        diagnostic: &'a str,
    },
    /// An abuse report (ARF) of this type.
    Complaint { feedback_type: &'a str },
}

/// What recording a report did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    /// No such delivery (erased since, or another installation's database).
    UnknownDelivery,
    /// The same report about the same delivery came before: nothing changed.
    Duplicate,
    /// Recorded; the address still gets mail (a soft bounce under the limit).
    Counted,
    /// Recorded, and the address is now `bounced` (or `complained`): no more mail.
    Suppressed,
}

/// One row of the deliverability report: a receiving domain.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct DomainRow {
    pub domain: String,
    /// Messages handed to the mail server, or refused by it for good, in the period.
    pub sent: i64,
    pub bounced_hard: i64,
    /// Deliveries with a soft bounce and no hard one.
    pub bounced_soft: i64,
    pub complaints: i64,
}

impl DomainRow {
    /// Sent and not bounced for good.
    pub fn delivered(&self) -> i64 {
        self.sent - self.bounced_hard
    }
}

impl Store {
    /// Records a bounce or complaint about delivery `delivery` at `at`, and applies the
    /// policy in the same transaction: a hard bounce marks the address `bounced`; soft
    /// bounces do once `soft_limit` different deliveries bounced softly with nothing opened
    /// or clicked (by a person) since; a complaint marks it `complained` and appends a
    /// `complaint` consent record. A report seen before about the same delivery changes
    /// nothing (mail servers may send a report twice).
    pub async fn record_returned(
        &self,
        delivery: i64,
        returned: &Returned<'_>,
        soft_limit: i64,
        at: i64,
    ) -> Result<Recorded, StoreError> {
        let (kind, tag, value) = match returned {
            Returned::Bounce {
                hard: true,
                status,
                diagnostic,
            } => ("bounce", *status, *diagnostic),
            Returned::Bounce {
                hard: false,
                status,
                diagnostic,
            } => ("soft_bounce", *status, *diagnostic),
            Returned::Complaint { feedback_type } => ("complaint", *feedback_type, ""),
        };
        let mut tx = self.begin().await?;
        // The first statement writes, so that on SQLite the transaction holds the write
        // lock from its start (a read first, then a write, fails at once when another
        // connection wrote in between, whatever the busy timeout). It records the report
        // unless the same kind was recorded for the delivery before.
        let recorded: Option<i64> = sqlx::query_scalar(
            "INSERT INTO events (profile_id, kind, campaign, run_id, delivery_id, tag, value, created_at) \
             SELECT d.profile_id, $2, d.campaign, d.run_id, d.id, $3, $4, $5 FROM deliveries d \
             WHERE d.id = $1 AND NOT EXISTS (SELECT 1 FROM events e WHERE e.profile_id = d.profile_id \
             AND e.kind = $2 AND e.delivery_id = $1) RETURNING profile_id",
        )
        .bind(delivery)
        .bind(kind)
        .bind(tag)
        .bind(value)
        .bind(at)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(profile_id) = recorded else {
            let known: Option<i64> = sqlx::query_scalar("SELECT id FROM deliveries WHERE id = $1")
                .bind(delivery)
                .fetch_optional(&mut *tx)
                .await?;
            return Ok(match known {
                Some(_) => Recorded::Duplicate,
                None => Recorded::UnknownDelivery,
            });
        };
        let hook = |data: serde_json::Value| super::HookNote { profile_id, data };
        let told = match kind {
            "bounce" => Some((
                crate::event::HookEvent::Bounced,
                hook(
                    serde_json::json!({ "status": tag, "reason": value, "when": "reported later" }),
                ),
            )),
            "complaint" => Some((
                crate::event::HookEvent::Complained,
                hook(serde_json::json!({ "feedback_type": tag })),
            )),
            _ => None,
        };
        if let Some((event, note)) = told {
            self.queue_hooks(&mut tx, event, &[note], at).await?;
        }
        let suppress = match kind {
            "bounce" => Some("bounced"),
            "complaint" => Some("complained"),
            _ => {
                // Soft bounces on different deliveries recorded after the person last
                // opened or clicked anything (in the order of recording, not of the clock).
                let n: i64 = sqlx::query_scalar(
                    "SELECT COUNT(DISTINCT delivery_id) FROM events WHERE profile_id = $1 \
                     AND kind = 'soft_bounce' AND id > COALESCE((SELECT MAX(id) \
                     FROM events WHERE profile_id = $1 AND kind IN ('open', 'click') \
                     AND automated = 0), 0)",
                )
                .bind(profile_id)
                .fetch_one(&mut *tx)
                .await?;
                (n >= soft_limit).then_some("bounced")
            }
        };
        let Some(status) = suppress else {
            self.commit(tx).await?;
            return Ok(Recorded::Counted);
        };
        // A bounce leaves unsubscribed and complained people as they are; a complaint
        // outranks every other status.
        let changed: Option<i64> = if status == "complained" {
            sqlx::query_scalar(
                "UPDATE profiles SET status = 'complained', confirm_nonce = NULL, updated_at = $2 \
                 WHERE id = $1 AND status <> 'complained' RETURNING id",
            )
        } else {
            sqlx::query_scalar(
                "UPDATE profiles SET status = 'bounced', confirm_nonce = NULL, updated_at = $2 \
                 WHERE id = $1 AND status IN ('subscribed', 'pending') RETURNING id",
            )
        }
        .bind(profile_id)
        .bind(at)
        .fetch_optional(&mut *tx)
        .await?;
        if kind == "soft_bounce" && changed.is_some() {
            let note = hook(serde_json::json!({
                "status": tag,
                "reason": format!("{soft_limit} soft bounces without an open or click between"),
                "when": "reported later",
            }));
            self.queue_hooks(&mut tx, crate::event::HookEvent::Bounced, &[note], at)
                .await?;
        }
        if status == "complained" && changed.is_some() {
            let meta = ConsentMeta {
                source: format!("abuse report ({tag})"),
                ..ConsentMeta::default()
            };
            super::profiles::insert_consent(&mut *tx, profile_id, "complaint", &meta, at).await?;
        }
        self.commit(tx).await?;
        Ok(Recorded::Suppressed)
    }

    /// Sent, bounced and complained messages per receiving domain, for messages sent in
    /// `[from, to)` (unix seconds), busiest domain first.
    pub async fn deliverability(&self, from: i64, to: i64) -> Result<Vec<DomainRow>, StoreError> {
        let domain = match self.backend() {
            Backend::Sqlite => "substr(p.email_key, instr(p.email_key, '@') + 1)",
            Backend::Postgres => "split_part(p.email_key, '@', 2)",
        };
        let sql = format!(
            "WITH returned AS ( \
               SELECT delivery_id, \
                 MAX(CASE WHEN kind = 'bounce' THEN 1 ELSE 0 END) AS hard, \
                 MAX(CASE WHEN kind = 'soft_bounce' THEN 1 ELSE 0 END) AS soft, \
                 MAX(CASE WHEN kind = 'complaint' THEN 1 ELSE 0 END) AS complaint \
               FROM events WHERE kind IN ('bounce', 'soft_bounce', 'complaint') \
               AND delivery_id IS NOT NULL GROUP BY delivery_id) \
             SELECT {domain} AS domain, CAST(COUNT(*) AS BIGINT) AS sent, \
               CAST(COALESCE(SUM(r.hard), 0) AS BIGINT) AS bounced_hard, \
               CAST(COALESCE(SUM(CASE WHEN r.soft = 1 AND r.hard = 0 THEN 1 ELSE 0 END), 0) AS BIGINT) AS bounced_soft, \
               CAST(COALESCE(SUM(r.complaint), 0) AS BIGINT) AS complaints \
             FROM deliveries d JOIN profiles p ON p.id = d.profile_id \
             LEFT JOIN returned r ON r.delivery_id = d.id \
             WHERE (d.status = 'sent' OR (d.status = 'failed' AND r.hard = 1)) \
               AND COALESCE(d.sent_at, d.next_attempt_at) >= $1 \
               AND COALESCE(d.sent_at, d.next_attempt_at) < $2 \
             GROUP BY {domain} ORDER BY sent DESC, domain"
        );
        Ok(sqlx::query_as(&sql)
            .bind(from)
            .bind(to)
            .fetch_all(&self.pool)
            .await?)
    }
}
