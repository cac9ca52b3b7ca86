//! Reactions (unicode emoji, or a custom emoji of the channel's server as `name:id`; one per
//! user and emoji) and pins (at most `MAX_PINS` per channel).

use crate::model::{Message, User};
use crate::{permissions, ChannelId, MessageId, UserId};
use crate::{Chat, ChatError, ChatResult};
use serde::Serialize;
use utoipa::ToSchema;

pub const MAX_PINS: i64 = 50;
/// Distinct emoji on one message.
pub const MAX_EMOJI_PER_MESSAGE: i64 = 20;

#[derive(Debug, Clone, Serialize, ToSchema, PartialEq)]
pub struct ReactionCount {
    pub emoji: String,
    pub count: i64,
    /// Whether the caller reacted with it.
    pub me: bool,
}

/// A reaction emoji: a short string of non-ASCII symbols (unicode emoji, with joiners and
/// variation selectors), never markup or words.
pub fn valid_emoji(e: &str) -> bool {
    let n = e.chars().count();
    (1..=16).contains(&n)
        && e.len() <= 32
        && e.chars()
            .all(|c| !c.is_ascii() && !c.is_control() && !c.is_whitespace())
}

/// The id of a custom emoji written as a reaction, as text (for matching stored `name:id`).
fn custom_id(emoji: &str) -> Option<String> {
    crate::expressions::emojis::parse_reaction(emoji).map(|(_, id)| id.0.to_string())
}

impl Chat {
    async fn reaction_target(
        &self,
        channel_id: ChannelId,
        message_id: MessageId,
        user_id: UserId,
        wanted: permissions::Permissions,
    ) -> ChatResult<Message> {
        let msg = self.message(channel_id, message_id, user_id).await?;
        let (_, perms) = self.channel_access(channel_id, user_id).await?;
        if !permissions::has(perms, wanted) {
            return Err(ChatError::Forbidden("you may not react here"));
        }
        Ok(msg)
    }

    /// Adds the caller's reaction; returns false when it was already there, and the emoji as
    /// stored: a unicode emoji as given, a custom one as `name:id` with its current name. A
    /// custom emoji must be one of the channel's server (400) that the caller may use (403).
    pub async fn add_reaction(
        &self,
        channel_id: ChannelId,
        message_id: MessageId,
        user_id: UserId,
        emoji: &str,
    ) -> ChatResult<(Message, bool, String)> {
        let custom = if valid_emoji(emoji) {
            None
        } else {
            let (_, id) = crate::expressions::emojis::parse_reaction(emoji).ok_or_else(|| {
                ChatError::field(
                    "emoji",
                    "must be a unicode emoji or a custom emoji's name:id",
                )
            })?;
            Some(id)
        };
        let msg = self
            .reaction_target(
                channel_id,
                message_id,
                user_id,
                permissions::ADD_REACTIONS | permissions::READ_MESSAGE_HISTORY,
            )
            .await?;
        let emoji = match custom {
            None => emoji.to_owned(),
            Some(id) => {
                let server_id = msg.server_id.ok_or_else(|| {
                    ChatError::field("emoji", "custom emoji are used in their server's channels")
                })?;
                let e = self.usable_emoji(server_id, user_id, id).await?;
                format!("{}:{}", e.name, e.id)
            }
        };
        let emoji = emoji.as_str();
        let distinct: i64 = sqlx::query_scalar(
            "SELECT count(DISTINCT emoji) FROM reactions WHERE message_id = $1 AND emoji <> $2",
        )
        .bind(message_id)
        .bind(emoji)
        .fetch_one(&self.pool)
        .await?;
        if distinct >= MAX_EMOJI_PER_MESSAGE {
            return Err(ChatError::Conflict(
                "too many different reactions on this message".into(),
            ));
        }
        let added = sqlx::query("INSERT INTO reactions (message_id, user_id, emoji) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING")
            .bind(message_id)
            .bind(user_id)
            .bind(emoji)
            .execute(&self.pool)
            .await?
            .rows_affected()
            == 1;
        Ok((msg, added, emoji.to_owned()))
    }

    /// Removes the caller's reaction; returns the emoji as it was stored, None when there was
    /// none. A custom emoji is matched by its id (it may have been renamed since).
    pub async fn remove_reaction(
        &self,
        channel_id: ChannelId,
        message_id: MessageId,
        user_id: UserId,
        emoji: &str,
    ) -> ChatResult<(Message, Option<String>)> {
        let msg = self.message(channel_id, message_id, user_id).await?;
        let removed: Option<String> = sqlx::query_scalar(
            "DELETE FROM reactions WHERE message_id = $1 AND user_id = $2
                 AND (emoji = $3 OR ($4::text IS NOT NULL AND emoji LIKE '%:' || $4))
             RETURNING emoji",
        )
        .bind(message_id)
        .bind(user_id)
        .bind(emoji)
        .bind(custom_id(emoji))
        .fetch_optional(&self.pool)
        .await?;
        Ok((msg, removed))
    }

    /// Who reacted with `emoji` (first 100).
    pub async fn reactors(
        &self,
        channel_id: ChannelId,
        message_id: MessageId,
        user_id: UserId,
        emoji: &str,
    ) -> ChatResult<Vec<User>> {
        self.message(channel_id, message_id, user_id).await?;
        Ok(sqlx::query_as(
            "SELECT u.id, u.username, u.display_name, u.avatar_url, u.custom_status, u.created_at
             FROM reactions r JOIN users u ON u.id = r.user_id
             WHERE r.message_id = $1
                 AND (r.emoji = $2 OR ($3::text IS NOT NULL AND r.emoji LIKE '%:' || $3))
             ORDER BY r.created_at LIMIT 100",
        )
        .bind(message_id)
        .bind(emoji)
        .bind(custom_id(emoji))
        .fetch_all(&self.pool)
        .await?)
    }

    /// Reaction counts of a message, as seen by `viewer`.
    pub async fn reaction_counts(
        &self,
        message_id: MessageId,
        viewer: UserId,
    ) -> ChatResult<Vec<ReactionCount>> {
        let rows: Vec<(String, i64, bool)> = sqlx::query_as(
            "SELECT emoji, count(*), bool_or(user_id = $2) FROM reactions WHERE message_id = $1
             GROUP BY emoji ORDER BY min(created_at)",
        )
        .bind(message_id)
        .bind(viewer)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(emoji, count, me)| ReactionCount { emoji, count, me })
            .collect())
    }

    pub async fn pins(&self, channel_id: ChannelId, user_id: UserId) -> ChatResult<Vec<Message>> {
        let (_, perms) = self.channel_access(channel_id, user_id).await?;
        if !permissions::has(perms, permissions::READ_MESSAGE_HISTORY) {
            return Err(ChatError::Forbidden(
                "you may not read this channel's history",
            ));
        }
        let ids: Vec<MessageId> = sqlx::query_scalar(
            "SELECT message_id FROM pins WHERE channel_id = $1 ORDER BY pinned_at DESC",
        )
        .bind(channel_id)
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            out.push(self.message(channel_id, id, user_id).await?);
        }
        Ok(out)
    }

    /// Pins (or unpins) a message (MANAGE_MESSAGES). Returns whether anything changed.
    pub async fn set_pin(
        &self,
        channel_id: ChannelId,
        message_id: MessageId,
        user_id: UserId,
        pin: bool,
    ) -> ChatResult<bool> {
        let (_, perms) = self.channel_access(channel_id, user_id).await?;
        if !permissions::has(perms, permissions::MANAGE_MESSAGES) {
            return Err(ChatError::Forbidden("you may not pin messages here"));
        }
        self.message(channel_id, message_id, user_id).await?;
        if pin {
            let count: i64 = sqlx::query_scalar("SELECT count(*) FROM pins WHERE channel_id = $1")
                .bind(channel_id)
                .fetch_one(&self.pool)
                .await?;
            if count >= MAX_PINS {
                return Err(ChatError::Conflict(format!(
                    "a channel has at most {MAX_PINS} pins"
                )));
            }
            Ok(sqlx::query("INSERT INTO pins (channel_id, message_id, pinned_by) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING")
                .bind(channel_id)
                .bind(message_id)
                .bind(user_id)
                .execute(&self.pool)
                .await?
                .rows_affected()
                == 1)
        } else {
            let n = sqlx::query("DELETE FROM pins WHERE channel_id = $1 AND message_id = $2")
                .bind(channel_id)
                .bind(message_id)
                .execute(&self.pool)
                .await?
                .rows_affected();
            if n == 0 {
                return Err(ChatError::NotFound("pin"));
            }
            Ok(true)
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn emoji_validation() {
        for ok in ["👍", "❤️", "👨‍👩‍👧", "🇫🇷", "✅"] {
            assert!(super::valid_emoji(ok), "{ok}");
        }
        for bad in ["", "a", "<b>", "👍 ", "x👍", ":smile:", "\u{0}"] {
            assert!(!super::valid_emoji(bad), "{bad:?}");
        }
    }
}
