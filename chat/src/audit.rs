//! The audit log: administrative actions, written in the same transaction as the change so a
//! failed change leaves no entry.

use crate::{permissions, ServerId, UserId};
use crate::{Chat, ChatError, ChatResult, Snowflake};
use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;

#[derive(Debug, Clone, Serialize, ToSchema, sqlx::FromRow)]
pub struct AuditEntry {
    pub id: Snowflake,
    pub server_id: ServerId,
    pub actor_id: Option<UserId>,
    /// e.g. `"invite_create"`, `"role_update"`, `"member_ban_add"`.
    pub action: String,
    // What the action was done to: a user, role, channel, … as `action` says.
    pub target_id: Option<Snowflake>,
    /// Changed fields: `{"field": {"old": .., "new": ..}}` or the created object.
    #[schema(value_type = Object)]
    pub changes: serde_json::Value,
    pub reason: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// Who did what, for an entry.
#[derive(Debug, Clone, Copy)]
pub struct Actor<'a> {
    pub user_id: UserId,
    pub reason: Option<&'a str>,
}

impl<'a> Actor<'a> {
    pub fn new(user_id: UserId, reason: Option<&'a str>) -> Self {
        Self { user_id, reason }
    }
}

#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    pub actor_id: Option<UserId>,
    pub action: Option<String>,
    pub before: Option<Snowflake>,
    pub limit: Option<i64>,
}

impl Chat {
    pub(crate) async fn audit(
        &self,
        tx: &mut sqlx::PgConnection,
        server_id: ServerId,
        actor: Actor<'_>,
        action: &str,
        target_id: Option<Snowflake>,
        changes: serde_json::Value,
    ) -> ChatResult<()> {
        let reason = actor
            .reason
            .map(|r| r.chars().take(512).collect::<String>());
        sqlx::query(
            "INSERT INTO audit_log (id, server_id, actor_id, action, target_id, changes, reason)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(self.next_id::<Snowflake>())
        .bind(server_id)
        .bind(actor.user_id)
        .bind(action)
        .bind(target_id)
        .bind(changes)
        .bind(reason)
        .execute(&mut *tx)
        .await?;
        Ok(())
    }

    /// Entries newest first (VIEW_AUDIT_LOG), filterable by actor and action.
    pub async fn audit_log(
        &self,
        server_id: ServerId,
        user_id: UserId,
        q: AuditQuery,
    ) -> ChatResult<Vec<AuditEntry>> {
        self.require(
            server_id,
            user_id,
            permissions::VIEW_AUDIT_LOG,
            "you may not view the audit log",
        )
        .await?;
        let limit = q.limit.unwrap_or(50);
        if !(1..=100).contains(&limit) {
            return Err(ChatError::field("limit", "must be 1-100"));
        }
        Ok(sqlx::query_as(
            "SELECT id, server_id, actor_id, action, target_id, changes, reason, created_at
             FROM audit_log
             WHERE server_id = $1
               AND ($2::bigint IS NULL OR actor_id = $2)
               AND ($3::text IS NULL OR action = $3)
               AND ($4::bigint IS NULL OR id < $4)
             ORDER BY id DESC LIMIT $5",
        )
        .bind(server_id)
        .bind(q.actor_id)
        .bind(q.action)
        .bind(q.before)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?)
    }
}
