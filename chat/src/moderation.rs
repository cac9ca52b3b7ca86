//! Moderation: kick, ban (optionally deleting recent messages), unban and timeouts. A
//! moderator acts only on members below their highest role, never on the owner.

use crate::access::MemberAccess;
use crate::audit::Actor;
use crate::permissions::{self, Permissions};
use crate::{Chat, ChatError, ChatResult, ServerId, UserId};
use chrono::{DateTime, Duration, Utc};
use serde::Serialize;
use serde_json::json;
use utoipa::ToSchema;

/// Longest timeout, as Discord.
pub const MAX_TIMEOUT_DAYS: i64 = 28;
/// Longest window of messages deleted with a ban (7 days).
pub const MAX_DELETE_SECONDS: i64 = 7 * 86_400;

#[derive(Debug, Clone, Serialize, ToSchema, sqlx::FromRow)]
pub struct Ban {
    pub user_id: UserId,
    pub reason: Option<String>,
    pub created_at: DateTime<Utc>,
}

impl Chat {
    /// The actor's access with `wanted`, checked to outrank `target` (a member or not).
    pub(crate) async fn moderator_over(
        &self,
        server_id: ServerId,
        actor: UserId,
        target: UserId,
        wanted: Permissions,
        what: &'static str,
    ) -> ChatResult<(MemberAccess, Option<MemberAccess>)> {
        let access = self.require_access(server_id, actor, wanted, what).await?;
        if actor == target {
            return Err(ChatError::field(
                "user_id",
                "you cannot do this to yourself",
            ));
        }
        let target_access = self.member_access(server_id, target).await?;
        if let Some(t) = &target_access {
            if t.context.is_owner {
                return Err(ChatError::Forbidden("the owner cannot be moderated"));
            }
            if !access.outranks_position(t.top_position) {
                return Err(ChatError::Forbidden(
                    "you can only moderate members below your highest role",
                ));
            }
        }
        Ok((access, target_access))
    }

    pub async fn kick(
        &self,
        server_id: ServerId,
        target: UserId,
        actor: Actor<'_>,
    ) -> ChatResult<()> {
        let (_, t) = self
            .moderator_over(
                server_id,
                actor.user_id,
                target,
                permissions::KICK_MEMBERS,
                "you may not kick members",
            )
            .await?;
        if t.is_none() {
            return Err(ChatError::NotFound("member"));
        }
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM members WHERE server_id = $1 AND user_id = $2")
            .bind(server_id)
            .bind(target)
            .execute(&mut *tx)
            .await?;
        self.audit(
            &mut tx,
            server_id,
            actor,
            "member_kick",
            Some(target.snowflake()),
            json!({}),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Bans a user (member or not); with `delete_message_seconds`, deletes their messages of that
    /// recent window in this server. Returns whether they were a member.
    pub async fn ban(
        &self,
        server_id: ServerId,
        target: UserId,
        delete_message_seconds: i64,
        actor: Actor<'_>,
    ) -> ChatResult<bool> {
        let (_, t) = self
            .moderator_over(
                server_id,
                actor.user_id,
                target,
                permissions::BAN_MEMBERS,
                "you may not ban members",
            )
            .await?;
        if !(0..=MAX_DELETE_SECONDS).contains(&delete_message_seconds) {
            return Err(ChatError::field(
                "delete_message_seconds",
                "must be 0-604800",
            ));
        }
        self.user(target).await?;
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO bans (server_id, user_id, actor_id, reason) VALUES ($1, $2, $3, $4)
             ON CONFLICT (server_id, user_id) DO UPDATE SET reason = $4, actor_id = $3",
        )
        .bind(server_id)
        .bind(target)
        .bind(actor.user_id)
        .bind(actor.reason)
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM members WHERE server_id = $1 AND user_id = $2")
            .bind(server_id)
            .bind(target)
            .execute(&mut *tx)
            .await?;
        let mut deleted = 0;
        if delete_message_seconds > 0 {
            deleted = sqlx::query(
                "DELETE FROM messages m USING channels c
                 WHERE c.id = m.channel_id AND c.server_id = $1 AND m.author_id = $2
                   AND m.created_at > now() - make_interval(secs => $3)",
            )
            .bind(server_id)
            .bind(target)
            .bind(delete_message_seconds as f64)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        }
        self.audit(
            &mut tx,
            server_id,
            actor,
            "member_ban_add",
            Some(target.snowflake()),
            json!({"delete_message_seconds": delete_message_seconds, "messages_deleted": deleted}),
        )
        .await?;
        tx.commit().await?;
        Ok(t.is_some())
    }

    pub async fn unban(
        &self,
        server_id: ServerId,
        target: UserId,
        actor: Actor<'_>,
    ) -> ChatResult<()> {
        self.require(
            server_id,
            actor.user_id,
            permissions::BAN_MEMBERS,
            "you may not ban members",
        )
        .await?;
        let mut tx = self.pool.begin().await?;
        let gone = sqlx::query("DELETE FROM bans WHERE server_id = $1 AND user_id = $2")
            .bind(server_id)
            .bind(target)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if gone == 0 {
            return Err(ChatError::NotFound("ban"));
        }
        self.audit(
            &mut tx,
            server_id,
            actor,
            "member_ban_remove",
            Some(target.snowflake()),
            json!({}),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn bans(&self, server_id: ServerId, user_id: UserId) -> ChatResult<Vec<Ban>> {
        self.require(
            server_id,
            user_id,
            permissions::BAN_MEMBERS,
            "you may not view bans",
        )
        .await?;
        Ok(sqlx::query_as("SELECT user_id, reason, created_at FROM bans WHERE server_id = $1 ORDER BY created_at DESC LIMIT 1000")
            .bind(server_id)
            .fetch_all(&self.pool)
            .await?)
    }

    pub async fn is_banned(&self, server_id: ServerId, user_id: UserId) -> ChatResult<bool> {
        Ok(
            sqlx::query_scalar::<_, i32>(
                "SELECT 1 FROM bans WHERE server_id = $1 AND user_id = $2",
            )
            .bind(server_id)
            .bind(user_id)
            .fetch_optional(&self.pool)
            .await?
            .is_some(),
        )
    }

    /// Times a member out until `until` (None lifts it). MODERATE_MEMBERS; administrators cannot
    /// be timed out.
    pub async fn timeout(
        &self,
        server_id: ServerId,
        target: UserId,
        until: Option<DateTime<Utc>>,
        actor: Actor<'_>,
    ) -> ChatResult<Option<DateTime<Utc>>> {
        let (_, t) = self
            .moderator_over(
                server_id,
                actor.user_id,
                target,
                permissions::MODERATE_MEMBERS,
                "you may not time members out",
            )
            .await?;
        let t = t.ok_or(ChatError::NotFound("member"))?;
        if let Some(u) = until {
            if u > Utc::now() + Duration::days(MAX_TIMEOUT_DAYS) {
                return Err(ChatError::field(
                    "timeout_until",
                    "must be at most 28 days ahead",
                ));
            }
            if t.base().contains(permissions::ADMINISTRATOR) {
                return Err(ChatError::Forbidden("administrators cannot be timed out"));
            }
        }
        let mut tx = self.pool.begin().await?;
        sqlx::query("UPDATE members SET timeout_until = $3 WHERE server_id = $1 AND user_id = $2")
            .bind(server_id)
            .bind(target)
            .bind(until)
            .execute(&mut *tx)
            .await?;
        self.audit(
            &mut tx,
            server_id,
            actor,
            "member_timeout",
            Some(target.snowflake()),
            json!({"timeout_until": until}),
        )
        .await?;
        tx.commit().await?;
        Ok(until)
    }
}
