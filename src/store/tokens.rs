//! API tokens: stored by their SHA-256 with their scopes; looked up on every API request.

use super::{Store, StoreError, now};

/// A stored token, as `rapport token list` shows it and the API checks it.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ApiToken {
    pub id: i64,
    pub name: String,
    /// Comma-separated scope names.
    pub scopes: String,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

/// How often `last_used_at` is written for a token in use (not on every request).
const LAST_USED_GRANULARITY: i64 = 60;

impl Store {
    /// Stores a new token by its hash; false when the name is taken.
    pub async fn create_api_token(
        &self,
        name: &str,
        sha256: &str,
        scopes: &str,
    ) -> Result<bool, StoreError> {
        let inserted: Option<i64> = sqlx::query_scalar(
            "INSERT INTO api_tokens (name, token_sha256, scopes, created_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (name) DO NOTHING RETURNING id",
        )
        .bind(name)
        .bind(sha256)
        .bind(scopes)
        .bind(now())
        .fetch_optional(&self.pool)
        .await?;
        Ok(inserted.is_some())
    }

    /// Every token, oldest first.
    pub async fn api_tokens(&self) -> Result<Vec<ApiToken>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT id, name, scopes, created_at, last_used_at, revoked_at FROM api_tokens ORDER BY id",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    /// Revokes the token called `name`; false when there is none (or it was revoked).
    pub async fn revoke_api_token(&self, name: &str) -> Result<bool, StoreError> {
        Ok(sqlx::query(
            "UPDATE api_tokens SET revoked_at = $2 WHERE name = $1 AND revoked_at IS NULL",
        )
        .bind(name)
        .bind(now())
        .execute(&self.pool)
        .await?
        .rows_affected()
            == 1)
    }

    /// The live token with this hash, its use noted (at most once a minute).
    pub async fn api_token_in_use(&self, sha256: &str) -> Result<Option<ApiToken>, StoreError> {
        let token: Option<ApiToken> = sqlx::query_as(
            "SELECT id, name, scopes, created_at, last_used_at, revoked_at FROM api_tokens \
             WHERE token_sha256 = $1 AND revoked_at IS NULL",
        )
        .bind(sha256)
        .fetch_optional(&self.pool)
        .await?;
        let at = now();
        if let Some(t) = &token
            && t.last_used_at
                .is_none_or(|u| at - u >= LAST_USED_GRANULARITY)
        {
            sqlx::query("UPDATE api_tokens SET last_used_at = $2 WHERE id = $1")
                .bind(t.id)
                .bind(at)
                .execute(&self.pool)
                .await?;
        }
        Ok(token)
    }
}
