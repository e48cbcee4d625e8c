//! Data rights: everything held about a person, and erasure on request.

use sha2::{Digest, Sha256};
use sqlx::Row;

use super::{Store, StoreError, now};
use crate::profile::{Email, Profile};

/// Everything stored about one person.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PersonalData {
    pub profile: serde_json::Value,
    pub consents: Vec<serde_json::Value>,
    pub events: Vec<serde_json::Value>,
}

fn suppression_key(email: &Email) -> String {
    hex::encode(Sha256::digest(email.key().as_bytes()))
}

impl Store {
    /// The profile, its consent records and its events, for a "download my data" request.
    pub async fn personal_data(&self, p: &Profile) -> Result<PersonalData, StoreError> {
        let mut profile = p.answers.to_json();
        profile["email"] = p.email.as_str().into();
        profile["status"] = p.status.as_str().into();
        profile["created_at"] = p.created_at.into();
        profile["updated_at"] = p.updated_at.into();
        let consents = sqlx::query("SELECT action, source, ip, user_agent, form_version, created_at FROM consents WHERE profile_id = $1 ORDER BY id")
            .bind(p.id)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|r| {
                Ok(serde_json::json!({
                    "action": r.try_get::<String, _>(0)?, "source": r.try_get::<String, _>(1)?,
                    "ip": r.try_get::<Option<String>, _>(2)?, "user_agent": r.try_get::<Option<String>, _>(3)?,
                    "form_version": r.try_get::<Option<String>, _>(4)?, "at": r.try_get::<i64, _>(5)?,
                }))
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        let events = sqlx::query("SELECT kind, campaign, tag, value, user_agent, automated, created_at FROM events WHERE profile_id = $1 ORDER BY id")
            .bind(p.id)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|r| {
                Ok(serde_json::json!({
                    "kind": r.try_get::<String, _>(0)?, "campaign": r.try_get::<Option<String>, _>(1)?,
                    "tag": r.try_get::<Option<String>, _>(2)?, "value": r.try_get::<Option<String>, _>(3)?,
                    "user_agent": r.try_get::<Option<String>, _>(4)?, "automated": r.try_get::<i64, _>(5)? != 0,
                    "at": r.try_get::<i64, _>(6)?,
                }))
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        Ok(PersonalData {
            profile,
            consents,
            events,
        })
    }

    /// Erases a person: the address and every answer are removed from the profile (which
    /// stays, anonymous and unsubscribed, so that campaign counts do not change), consent
    /// records are deleted, user agents and comments are removed from events, and a hash of
    /// the address is kept so that an import cannot bring it back by accident.
    pub async fn erase(&self, p: &Profile) -> Result<(), StoreError> {
        let at = now();
        let anonymous = format!("erased-{}@erased.invalid", p.id);
        let mut tx = self.begin().await?;
        sqlx::query(&format!(
            "UPDATE profiles SET email = $2, email_key = $2, status = 'unsubscribed', {}, \
             confirm_nonce = NULL, source = 'erased', updated_at = $3 WHERE id = $1",
            *super::profiles::NO_ANSWERS
        ))
        .bind(p.id)
        .bind(&anonymous)
        .bind(at)
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM consents WHERE profile_id = $1")
            .bind(p.id)
            .execute(&mut *tx)
            .await?;
        // Comments and the properties other systems reported are the person's words and data.
        sqlx::query("UPDATE events SET user_agent = NULL, value = CASE WHEN (kind = 'feedback' AND value LIKE 'comment:%') OR kind = 'external' THEN NULL ELSE value END WHERE profile_id = $1")
            .bind(p.id)
            .execute(&mut *tx)
            .await?;
        // Webhooks not yet sent would carry the address (their bodies are completed when sent).
        sqlx::query("DELETE FROM webhook_deliveries WHERE profile_id = $1")
            .bind(p.id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("INSERT INTO suppressions (email_sha256, created_at) VALUES ($1, $2) ON CONFLICT (email_sha256) DO NOTHING")
            .bind(suppression_key(&p.email))
            .bind(at)
            .execute(&mut *tx)
            .await?;
        self.commit(tx).await?;
        Ok(())
    }

    /// How many addresses were erased on request.
    pub async fn suppression_count(&self) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar("SELECT COUNT(*) FROM suppressions")
            .fetch_one(&self.pool)
            .await?)
    }

    /// Whether the address was erased on request (imports skip it).
    pub async fn is_suppressed(&self, email: &Email) -> Result<bool, StoreError> {
        let n: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM suppressions WHERE email_sha256 = $1")
                .bind(suppression_key(email))
                .fetch_one(&self.pool)
                .await?;
        Ok(n > 0)
    }
}
