//! Voice session records: who was in which voice channel, and when. The live state (who is
//! connected now) is the signaling layer's; this is the history.

use crate::model::ChannelKind;
use crate::permissions::{self, Permissions};
use crate::{Chat, ChatError, ChatResult, Snowflake};

impl Chat {
    /// Checks that a user may connect to a voice channel; returns the channel's server and the
    /// user's permissions there.
    pub async fn voice_access(
        &self,
        channel_id: Snowflake,
        user_id: Snowflake,
    ) -> ChatResult<(Snowflake, Permissions)> {
        let (channel, perms) = self.channel_access(channel_id, user_id).await?;
        if channel.kind != ChannelKind::Voice {
            return Err(ChatError::field("channel_id", "is not a voice channel"));
        }
        if !permissions::has(perms, permissions::CONNECT) {
            return Err(ChatError::Forbidden("you may not connect to this channel"));
        }
        let server_id = channel.server_id.ok_or(ChatError::NotFound("channel"))?;
        Ok((server_id, perms))
    }

    pub async fn voice_session_started(
        &self,
        id: Snowflake,
        user_id: Snowflake,
        server_id: Snowflake,
        channel_id: Snowflake,
    ) -> ChatResult<()> {
        sqlx::query("INSERT INTO voice_sessions (id, user_id, server_id, channel_id) VALUES ($1, $2, $3, $4) ON CONFLICT (id) DO NOTHING")
            .bind(id)
            .bind(user_id)
            .bind(server_id)
            .bind(channel_id)
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
    pub async fn close_stale_voice_sessions(&self) -> ChatResult<u64> {
        Ok(sqlx::query("UPDATE voice_sessions SET ended_at = greatest(now(), started_at), end_reason = 'server_restart' WHERE ended_at IS NULL")
            .execute(&self.pool)
            .await?
            .rows_affected())
    }

    /// Voice session rows of a user, newest first (for tests and audits).
    pub async fn voice_history(
        &self,
        user_id: Snowflake,
    ) -> ChatResult<Vec<(Snowflake, Option<Snowflake>, bool, Option<String>)>> {
        Ok(sqlx::query_as(
            "SELECT id, channel_id, ended_at IS NOT NULL, end_reason FROM voice_sessions WHERE user_id = $1 ORDER BY started_at DESC",
        )
        .bind(user_id)
        .fetch_all(&self.pool)
        .await?)
    }
}
