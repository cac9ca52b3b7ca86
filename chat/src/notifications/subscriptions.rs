//! Web Push subscriptions (one per browser profile) and the deployment's VAPID key.

use crate::{Chat, ChatError, ChatResult, Snowflake, UserId};
use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;

/// Subscriptions one user may hold (browsers and devices).
pub const MAX_PER_USER: i64 = 10;

/// A subscription as its owner sees it.
#[derive(Debug, Clone, Serialize, ToSchema, sqlx::FromRow, PartialEq)]
pub struct PushSubscription {
    #[schema(value_type = String)]
    pub id: Snowflake,
    pub endpoint: String,
    pub created_at: DateTime<Utc>,
}

/// What sending to a subscription needs.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct PushKeys {
    pub id: Snowflake,
    pub user_id: UserId,
    pub endpoint: String,
    /// The browser's P-256 public key, uncompressed (65 bytes).
    pub p256dh: Vec<u8>,
    /// The browser's auth secret (16 bytes).
    pub auth: Vec<u8>,
}

impl Chat {
    /// Adds a subscription, or renews the keys of one with the same endpoint (which then
    /// belongs to this user). The caller has validated the endpoint and key lengths.
    pub async fn add_push_subscription(
        &self,
        user_id: UserId,
        endpoint: &str,
        p256dh: &[u8],
        auth: &[u8],
    ) -> ChatResult<PushSubscription> {
        let mut tx = self.pool.begin().await?;
        // Serialises one user's concurrent subscribes so the limit holds.
        sqlx::query("SELECT id FROM users WHERE id = $1 FOR UPDATE")
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
        let count: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM push_subscriptions WHERE user_id = $1 AND endpoint <> $2",
        )
        .bind(user_id)
        .bind(endpoint)
        .fetch_one(&mut *tx)
        .await?;
        if count >= MAX_PER_USER {
            return Err(ChatError::field(
                "endpoint",
                format!("at most {MAX_PER_USER} push subscriptions per user: remove one first"),
            ));
        }
        let id: Snowflake = self.next_id();
        let sub: PushSubscription = sqlx::query_as(
            "INSERT INTO push_subscriptions (id, user_id, endpoint, p256dh, auth)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (endpoint) DO UPDATE SET user_id = excluded.user_id,
                 p256dh = excluded.p256dh, auth = excluded.auth
             RETURNING id, endpoint, created_at",
        )
        .bind(id)
        .bind(user_id)
        .bind(endpoint)
        .bind(p256dh)
        .bind(auth)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(sub)
    }

    pub async fn push_subscriptions(&self, user_id: UserId) -> ChatResult<Vec<PushSubscription>> {
        Ok(sqlx::query_as(
            "SELECT id, endpoint, created_at FROM push_subscriptions WHERE user_id = $1 ORDER BY id",
        )
        .bind(user_id)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Removes one of the user's subscriptions, by id or by endpoint.
    pub async fn delete_push_subscription(
        &self,
        user_id: UserId,
        id: Option<Snowflake>,
        endpoint: Option<&str>,
    ) -> ChatResult<()> {
        let done = sqlx::query(
            "DELETE FROM push_subscriptions WHERE user_id = $1
                 AND (id = $2 OR endpoint = $3)",
        )
        .bind(user_id)
        .bind(id)
        .bind(endpoint)
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 0 {
            return Err(ChatError::NotFound("push subscription"));
        }
        Ok(())
    }

    /// The push service said the subscription is gone (404/410).
    pub async fn remove_gone_push_subscription(&self, id: Snowflake) -> ChatResult<()> {
        sqlx::query("DELETE FROM push_subscriptions WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The subscriptions of these users, to send to.
    pub async fn push_keys_of(&self, users: &[UserId]) -> ChatResult<Vec<PushKeys>> {
        let ids: Vec<i64> = users.iter().map(|u| u.get()).collect();
        Ok(sqlx::query_as(
            "SELECT id, user_id, endpoint, p256dh, auth FROM push_subscriptions
             WHERE user_id = ANY($1) ORDER BY id",
        )
        .bind(ids)
        .fetch_all(&self.pool)
        .await?)
    }

    /// The deployment's VAPID private key (PKCS#8): the stored one, or `generate()`'s, stored
    /// by whichever node gets there first.
    pub async fn vapid_private_key(
        &self,
        generate: impl FnOnce() -> Vec<u8>,
    ) -> ChatResult<Vec<u8>> {
        sqlx::query(
            "INSERT INTO vapid_keys (id, private_key) VALUES (1, $1) ON CONFLICT (id) DO NOTHING",
        )
        .bind(generate())
        .execute(&self.pool)
        .await?;
        Ok(
            sqlx::query_scalar("SELECT private_key FROM vapid_keys WHERE id = 1")
                .fetch_one(&self.pool)
                .await?,
        )
    }
}
