//! Voice session records: who was in which voice channel, and when. The live state (who is
//! connected now) is the signaling layer's; this is the history.

use crate::audit::Actor;
use crate::model::ChannelKind;
use crate::permissions::{self, Permissions};
use crate::{ChannelId, Chat, ChatError, ChatResult, ServerId, Snowflake, UserId};
use serde_json::json;

/// What a member may do in a voice channel they are allowed into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VoiceAccess {
    pub server_id: ServerId,
    /// The member's permissions in the channel (timeouts applied).
    pub permissions: Permissions,
    /// A stage channel: members join as audience.
    pub stage: bool,
    /// End-to-end encrypted media: participants must declare an identity key.
    pub e2ee: bool,
}

impl Chat {
    /// Checks that a user may connect to a voice or stage channel (VIEW_CHANNEL and CONNECT);
    /// returns the channel's server and the user's permissions there.
    pub async fn voice_access(
        &self,
        channel_id: ChannelId,
        user_id: UserId,
    ) -> ChatResult<VoiceAccess> {
        let (channel, perms) = self.channel_access(channel_id, user_id).await?;
        if !channel.kind.is_voice() {
            return Err(ChatError::field("channel_id", "is not a voice channel"));
        }
        if !permissions::has(perms, permissions::CONNECT) {
            return Err(ChatError::Forbidden("you may not connect to this channel"));
        }
        let server_id = channel.server_id.ok_or(ChatError::NotFound("channel"))?;
        Ok(VoiceAccess {
            server_id,
            permissions: perms,
            stage: channel.kind == ChannelKind::Stage,
            e2ee: channel.e2ee,
        })
    }

    /// Checks a moderator's move of a member out of voice channel `from` (in `server_id`) into
    /// `to`, or a disconnect (`to` None), and records it in the audit log (`member_move`,
    /// `member_disconnect`). The moderator needs MOVE_MEMBERS in `from` and must outrank the
    /// member; for a move, MOVE_MEMBERS and CONNECT in `to`, where the member must be allowed to
    /// connect too. Returns whether `to` is a stage channel.
    pub async fn voice_move(
        &self,
        server_id: ServerId,
        actor: Actor<'_>,
        target: UserId,
        from: ChannelId,
        to: Option<ChannelId>,
    ) -> ChatResult<bool> {
        let (_, t) = self
            .moderator_over(server_id, actor.user_id, target, Permissions::empty(), "")
            .await?;
        if t.is_none() {
            return Err(ChatError::NotFound("member"));
        }
        let (from_channel, perms) = self.channel_access(from, actor.user_id).await?;
        if !permissions::has(perms, permissions::MOVE_MEMBERS) {
            return Err(ChatError::Forbidden(
                "you may not move members out of this channel",
            ));
        }
        let mut stage = false;
        if let Some(to) = to {
            let (channel, perms) =
                self.channel_access(to, actor.user_id)
                    .await
                    .map_err(|e| match e {
                        ChatError::NotFound(_) => ChatError::field("channel_id", "unknown channel"),
                        other => other,
                    })?;
            if !channel.kind.is_voice() || channel.server_id != Some(server_id) {
                return Err(ChatError::field(
                    "channel_id",
                    "must be a voice channel of this server",
                ));
            }
            // The member's client declared (or not) an identity key for the channel it joined;
            // a move cannot carry that over, so e2ee members join such channels themselves.
            if channel.e2ee || from_channel.e2ee {
                return Err(ChatError::field(
                    "channel_id",
                    "members cannot be moved into or out of an end-to-end encrypted channel",
                ));
            }
            if !permissions::has(perms, permissions::MOVE_MEMBERS | permissions::CONNECT) {
                return Err(ChatError::Forbidden(
                    "you need MOVE_MEMBERS and CONNECT in the destination channel",
                ));
            }
            match self.voice_access(to, target).await {
                Ok(a) => stage = a.stage,
                Err(e @ (ChatError::Internal(_) | ChatError::Unavailable)) => return Err(e),
                Err(_) => {
                    return Err(ChatError::Forbidden(
                        "the member may not connect to the destination channel",
                    ))
                }
            }
        }
        let (action, changes) = match to {
            Some(to) => (
                "member_move",
                json!({"channel_id": {"old": from, "new": to}}),
            ),
            None => (
                "member_disconnect",
                json!({"channel_id": {"old": from, "new": null}}),
            ),
        };
        let mut tx = self.pool.begin().await?;
        self.audit(
            &mut tx,
            server_id,
            actor,
            action,
            Some(target.snowflake()),
            changes,
        )
        .await?;
        tx.commit().await?;
        Ok(stage)
    }

    pub async fn voice_session_started(
        &self,
        id: Snowflake,
        user_id: UserId,
        server_id: ServerId,
        channel_id: ChannelId,
    ) -> ChatResult<()> {
        sqlx::query("INSERT INTO voice_sessions (id, user_id, server_id, channel_id, node) VALUES ($1, $2, $3, $4, $5) ON CONFLICT (id) DO NOTHING")
            .bind(id)
            .bind(user_id)
            .bind(server_id)
            .bind(channel_id)
            .bind(&*self.node)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn voice_session_ended(&self, id: Snowflake, reason: &str) -> ChatResult<()> {
        sqlx::query("UPDATE voice_sessions SET ended_at = now(), end_reason = $2 WHERE id = $1 AND ended_at IS NULL")
            .bind(id)
            .bind(reason)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Closes sessions left open by a previous run (nobody is connected after a restart).
    /// With `only_gone_nodes` (a cluster), only those of nodes that no longer hold a snowflake
    /// worker lease: the others are live on running nodes.
    pub async fn close_stale_voice_sessions(&self, only_gone_nodes: bool) -> ChatResult<u64> {
        let sql = if only_gone_nodes {
            "UPDATE voice_sessions SET ended_at = greatest(now(), started_at), end_reason = 'server_restart'
             WHERE ended_at IS NULL AND (node IS NULL OR node NOT IN
               (SELECT holder FROM snowflake_workers WHERE expires_at > now()))"
        } else {
            "UPDATE voice_sessions SET ended_at = greatest(now(), started_at), end_reason = 'server_restart' WHERE ended_at IS NULL"
        };
        Ok(sqlx::query(sql).execute(&self.pool).await?.rows_affected())
    }

    /// Voice session rows of a user, newest first (for tests and audits).
    pub async fn voice_history(
        &self,
        user_id: UserId,
    ) -> ChatResult<Vec<(Snowflake, Option<ChannelId>, bool, Option<String>)>> {
        Ok(sqlx::query_as(
            "SELECT id, channel_id, ended_at IS NOT NULL, end_reason FROM voice_sessions WHERE user_id = $1 ORDER BY started_at DESC",
        )
        .bind(user_id)
        .fetch_all(&self.pool)
        .await?)
    }
}

/// Where a voice channel lives in a cluster: its media nodes, and the version every change
/// must name (compare-and-set).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    pub nodes: Vec<String>,
    pub version: i64,
}

impl Chat {
    /// The media nodes `channel_id` is placed on, if it was ever placed.
    pub async fn voice_placement(&self, channel_id: ChannelId) -> ChatResult<Option<Placement>> {
        let row: Option<(Vec<String>, i64)> =
            sqlx::query_as("SELECT nodes, version FROM voice_placements WHERE channel_id = $1")
                .bind(channel_id)
                .fetch_optional(&self.pool)
                .await?;
        Ok(row.map(|(nodes, version)| Placement { nodes, version }))
    }

    /// Places `channel_id` on `nodes` if its placement is still `expected` (None: never
    /// placed). False when another api node changed it first: read it again.
    pub async fn set_voice_placement(
        &self,
        channel_id: ChannelId,
        expected: Option<i64>,
        nodes: &[String],
    ) -> ChatResult<bool> {
        let done = match expected {
            None => sqlx::query(
                "INSERT INTO voice_placements (channel_id, nodes) VALUES ($1, $2) ON CONFLICT (channel_id) DO NOTHING",
            )
            .bind(channel_id)
            .bind(nodes)
            .execute(&self.pool)
            .await?,
            Some(v) => sqlx::query(
                "UPDATE voice_placements SET nodes = $2, version = version + 1, updated_at = now() WHERE channel_id = $1 AND version = $3",
            )
            .bind(channel_id)
            .bind(nodes)
            .bind(v)
            .execute(&self.pool)
            .await?,
        };
        Ok(done.rows_affected() == 1)
    }
}
