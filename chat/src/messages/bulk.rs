//! Bulk delete for moderators: 2-100 messages of one channel in one statement, audit-logged in
//! the same transaction.

use crate::audit::Actor;
use crate::{permissions, ChannelId, MessageId};
use crate::{Chat, ChatError, ChatResult, ServerId};

/// Fewest and most messages in one bulk delete.
pub const MIN_BULK: usize = 2;
pub const MAX_BULK: usize = 100;

impl Chat {
    /// Deletes those of `ids` that belong to the channel (MANAGE_MESSAGES there). Returns the
    /// channel's server and the ids actually deleted; ids of other channels are left alone.
    pub async fn bulk_delete(
        &self,
        channel_id: ChannelId,
        ids: &[MessageId],
        actor: Actor<'_>,
    ) -> ChatResult<(ServerId, Vec<MessageId>)> {
        let mut distinct: Vec<i64> = ids.iter().map(|i| i.get()).collect();
        distinct.sort_unstable();
        distinct.dedup();
        if distinct.len() != ids.len() {
            return Err(ChatError::field("messages", "must not repeat an id"));
        }
        if !(MIN_BULK..=MAX_BULK).contains(&distinct.len()) {
            return Err(ChatError::field("messages", "must hold 2-100 message ids"));
        }
        let (channel, perms) = self.channel_access(channel_id, actor.user_id).await?;
        // DMs have no moderators.
        let server_id = match channel.server_id {
            Some(s) if permissions::has(perms, permissions::MANAGE_MESSAGES) => s,
            _ => return Err(ChatError::Forbidden("you may not manage messages here")),
        };
        let mut tx = self.pool.begin().await?;
        let mut deleted: Vec<MessageId> = sqlx::query_scalar(
            "DELETE FROM messages WHERE channel_id = $1 AND id = ANY($2) RETURNING id",
        )
        .bind(channel_id)
        .bind(&distinct)
        .fetch_all(&mut *tx)
        .await?;
        deleted.sort_unstable();
        self.audit(
            &mut tx,
            server_id,
            actor,
            "message_bulk_delete",
            Some(channel_id.snowflake()),
            serde_json::json!({"count": deleted.len(), "ids": deleted}),
        )
        .await?;
        tx.commit().await?;
        Ok((server_id, deleted))
    }
}
