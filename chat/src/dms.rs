//! Direct messages: 1:1 DMs (one per pair, opened again = the same channel) and group DMs of up
//! to `MAX_GROUP` people. Both are channels without a server; being a recipient is the access
//! rule (see `channel_access`), and a block between two users stops a 1:1 DM from being opened
//! or written to.

use crate::accounts::USER_COLUMNS;
use crate::channels::{ChannelRow, CHANNEL_COLUMNS};
use crate::model::{Channel, ChannelKind, User};
use crate::{ChannelId, Chat, ChatError, ChatResult, MessageId, UserId};
use std::collections::HashMap;

/// Most people in a group DM, its creator included.
pub const MAX_GROUP: usize = 10;
/// Longest group DM name.
pub const MAX_NAME: usize = crate::Name::MAX;

/// What happened to a group DM's recipients, so the caller can tell each side.
#[derive(Debug, Clone)]
pub struct RecipientChange {
    pub channel: Channel,
    pub user: User,
    /// The channel was deleted (its last recipient left).
    pub deleted: bool,
}

impl Chat {
    /// The recipients' ids of a DM (empty for unknown channels).
    pub async fn dm_recipient_ids(&self, channel_id: ChannelId) -> ChatResult<Vec<UserId>> {
        Ok(
            sqlx::query_scalar("SELECT user_id FROM dm_recipients WHERE channel_id = $1")
                .bind(channel_id)
                .fetch_all(&self.pool)
                .await?,
        )
    }

    /// The user's DMs and group DMs with their recipients and newest message, newest first.
    pub async fn private_channels(&self, user_id: UserId) -> ChatResult<Vec<Channel>> {
        let rows: Vec<ChannelRow> = sqlx::query_as(q!("SELECT {CHANNEL_COLUMNS} FROM channels
             WHERE id IN (SELECT channel_id FROM dm_recipients WHERE user_id = $1)"))
        .bind(user_id)
        .fetch_all(&self.pool)
        .await?;
        let mut channels: Vec<Channel> = rows.into_iter().map(Channel::from).collect();
        self.fill_private(&mut channels).await?;
        // Newest activity first: the last message, or the DM's creation for one without any
        // (both are snowflakes, which order by time).
        channels.sort_by_key(|c| {
            std::cmp::Reverse(
                c.last_message_id
                    .map_or(c.id.snowflake(), MessageId::snowflake),
            )
        });
        Ok(channels)
    }

    /// Adds recipients and the newest message id to DM channels (two queries for any number).
    async fn fill_private(&self, channels: &mut [Channel]) -> ChatResult<()> {
        let ids: Vec<i64> = channels.iter().map(|c| c.id.get()).collect();
        #[derive(sqlx::FromRow)]
        struct Row {
            channel_id: ChannelId,
            #[sqlx(flatten)]
            user: User,
        }
        let rows: Vec<Row> = sqlx::query_as(q!("SELECT d.channel_id, {USER_COLUMNS}
             FROM dm_recipients d JOIN users u ON u.id = d.user_id
             WHERE d.channel_id = ANY($1) ORDER BY d.added_at, u.id"))
        .bind(&ids)
        .fetch_all(&self.pool)
        .await?;
        let mut by_channel: HashMap<ChannelId, Vec<User>> = HashMap::new();
        for r in rows {
            by_channel.entry(r.channel_id).or_default().push(r.user);
        }
        let last = self.last_message_ids(&ids).await?;
        for c in channels.iter_mut() {
            c.recipients = Some(by_channel.remove(&c.id).unwrap_or_default());
            c.last_message_id = last.get(&c.id).copied();
        }
        Ok(())
    }

    /// The newest message id of each channel that has one (an index-only lookup per channel).
    pub async fn last_message_ids(
        &self,
        channel_ids: &[i64],
    ) -> ChatResult<HashMap<ChannelId, MessageId>> {
        // The row bounds mean `channel_id = c.id` (ids are positive) but only the (channel_id,
        // id) index can serve them. With a plain equality the planner walks the primary key
        // backwards instead, through every newer message of other channels: 460 ms instead of
        // 1.3 ms for 51 channels, one of them quiet, over 500k messages.
        let rows: Vec<(ChannelId, MessageId)> = sqlx::query_as(
            "SELECT c.id, m.id FROM unnest($1::bigint[]) AS c(id)
             CROSS JOIN LATERAL (SELECT id FROM messages
                 WHERE (channel_id, id) > (c.id, 0) AND (channel_id, id) < (c.id, 9223372036854775807)
                 ORDER BY channel_id DESC, id DESC LIMIT 1) m",
        )
        .bind(channel_ids)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().collect())
    }

    /// A DM the user is in, with its recipients.
    pub async fn private_channel(
        &self,
        channel_id: ChannelId,
        user_id: UserId,
    ) -> ChatResult<Channel> {
        let (channel, _) = self.channel_access(channel_id, user_id).await?;
        if !channel.kind.is_private() {
            return Err(ChatError::NotFound("channel"));
        }
        let mut list = [channel];
        self.fill_private(&mut list).await?;
        let [channel] = list;
        Ok(channel)
    }

    /// Opens the 1:1 DM with `recipient`, creating it the first time. Returns it and whether it
    /// was created. A block either way refuses (`ChatError::Blocked`).
    pub async fn open_dm(&self, user_id: UserId, recipient: UserId) -> ChatResult<(Channel, bool)> {
        if recipient == user_id {
            return Err(ChatError::field(
                "recipient_id",
                "you cannot open a DM with yourself",
            ));
        }
        self.live_user(recipient).await?;
        if self.blocked_between(user_id, recipient).await? {
            return Err(ChatError::Blocked("you cannot message this user"));
        }
        let (low, high) = if user_id < recipient {
            (user_id, recipient)
        } else {
            (recipient, user_id)
        };
        let existing: Option<ChannelId> = sqlx::query_scalar(
            "SELECT channel_id FROM dm_pairs WHERE low_id = $1 AND high_id = $2",
        )
        .bind(low)
        .bind(high)
        .fetch_optional(&self.pool)
        .await?;
        if let Some(id) = existing {
            return Ok((self.private_channel(id, user_id).await?, false));
        }
        let id: ChannelId = self.next_id();
        let mut tx = self.pool.begin().await?;
        sqlx::query("INSERT INTO channels (id, kind) VALUES ($1, 'dm')")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        // A concurrent open of the same pair wins the key; this one then returns theirs.
        let won = sqlx::query(
            "INSERT INTO dm_pairs (low_id, high_id, channel_id) VALUES ($1, $2, $3)
             ON CONFLICT (low_id, high_id) DO NOTHING",
        )
        .bind(low)
        .bind(high)
        .bind(id)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if !won {
            tx.rollback().await?;
            let id: ChannelId = sqlx::query_scalar(
                "SELECT channel_id FROM dm_pairs WHERE low_id = $1 AND high_id = $2",
            )
            .bind(low)
            .bind(high)
            .fetch_one(&self.pool)
            .await?;
            return Ok((self.private_channel(id, user_id).await?, false));
        }
        sqlx::query(
            "INSERT INTO dm_recipients (channel_id, user_id) SELECT $1, unnest($2::bigint[])",
        )
        .bind(id)
        .bind([user_id.get(), recipient.get()])
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok((self.private_channel(id, user_id).await?, true))
    }

    /// Creates a group DM of the creator and `recipients` (at most `MAX_GROUP` people in all).
    pub async fn create_group_dm(
        &self,
        user_id: UserId,
        recipients: &[UserId],
        name: Option<&crate::Name>,
    ) -> ChatResult<Channel> {
        let mut people = vec![user_id];
        for r in recipients {
            if !people.contains(r) {
                people.push(*r);
            }
        }
        if people.len() < 2 {
            return Err(ChatError::field(
                "recipient_ids",
                "name at least one other user",
            ));
        }
        if people.len() > MAX_GROUP {
            return Err(ChatError::field(
                "recipient_ids",
                format!("a group DM has at most {MAX_GROUP} people"),
            ));
        }
        let ids: Vec<i64> = people.iter().map(|p| p.get()).collect();
        let known: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM users WHERE id = ANY($1) AND deleted_at IS NULL",
        )
        .bind(&ids)
        .fetch_one(&self.pool)
        .await?;
        if known != people.len() as i64 {
            return Err(ChatError::NotFound("user"));
        }
        if self.blocks_with_any(user_id, &ids).await? {
            return Err(ChatError::Blocked("you cannot message one of these users"));
        }
        let id: ChannelId = self.next_id();
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO channels (id, kind, name, owner_id) VALUES ($1, 'group_dm', $2, $3)",
        )
        .bind(id)
        .bind(name.map(crate::Name::as_str))
        .bind(user_id)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO dm_recipients (channel_id, user_id) SELECT $1, unnest($2::bigint[])",
        )
        .bind(id)
        .bind(&ids)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        self.private_channel(id, user_id).await
    }

    /// Whether `user_id` and any of `others` blocked one another.
    async fn blocks_with_any(&self, user_id: UserId, others: &[i64]) -> ChatResult<bool> {
        Ok(sqlx::query_scalar::<_, i32>(
            "SELECT 1 FROM relationships WHERE kind = 'blocked'
               AND ((user_id = $1 AND other_id = ANY($2)) OR (other_id = $1 AND user_id = ANY($2)))
             LIMIT 1",
        )
        .bind(user_id)
        .bind(others)
        .fetch_optional(&self.pool)
        .await?
        .is_some())
    }

    /// The group DM's owner adds someone.
    pub async fn add_recipient(
        &self,
        channel_id: ChannelId,
        actor: UserId,
        user: UserId,
    ) -> ChatResult<RecipientChange> {
        self.owned_group(channel_id, actor).await?;
        let added_user = self.user(user).await?;
        self.live_user(user).await?;
        if self.blocks_with_any(actor, &[user.get()]).await? {
            return Err(ChatError::Blocked("you cannot message this user"));
        }
        let mut tx = self.pool.begin().await?;
        // Lock the channel so two concurrent adds cannot both pass the size check.
        sqlx::query("SELECT 1 FROM channels WHERE id = $1 FOR UPDATE")
            .bind(channel_id)
            .execute(&mut *tx)
            .await?;
        let count: i64 =
            sqlx::query_scalar("SELECT count(*) FROM dm_recipients WHERE channel_id = $1")
                .bind(channel_id)
                .fetch_one(&mut *tx)
                .await?;
        if count >= MAX_GROUP as i64 {
            return Err(ChatError::Conflict(format!(
                "a group DM has at most {MAX_GROUP} people"
            )));
        }
        sqlx::query(
            "INSERT INTO dm_recipients (channel_id, user_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        )
        .bind(channel_id)
        .bind(user)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(RecipientChange {
            channel: self.private_channel(channel_id, actor).await?,
            user: added_user,
            deleted: false,
        })
    }

    /// Removes someone from a group DM: the owner removes anyone, everyone may leave. When the
    /// owner leaves, the longest-standing recipient becomes the owner; the last one out deletes it.
    pub async fn remove_recipient(
        &self,
        channel_id: ChannelId,
        actor: UserId,
        user: UserId,
    ) -> ChatResult<RecipientChange> {
        let (channel, _) = self.channel_access(channel_id, actor).await?;
        if channel.kind != ChannelKind::GroupDm {
            return Err(ChatError::field(
                "channel_id",
                "only group DMs have recipients to add or remove",
            ));
        }
        if user != actor && channel.owner_id != Some(actor) {
            return Err(ChatError::Forbidden(
                "only the group's owner may remove others",
            ));
        }
        let removed_user = self.user(user).await?;
        let mut list = [channel];
        self.fill_private(&mut list).await?;
        let [mut channel] = list;
        let mut tx = self.pool.begin().await?;
        let gone = sqlx::query("DELETE FROM dm_recipients WHERE channel_id = $1 AND user_id = $2")
            .bind(channel_id)
            .bind(user)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if gone == 0 {
            return Err(ChatError::NotFound("user"));
        }
        let next: Option<UserId> = sqlx::query_scalar(
            "SELECT user_id FROM dm_recipients WHERE channel_id = $1 ORDER BY added_at, user_id LIMIT 1",
        )
        .bind(channel_id)
        .fetch_optional(&mut *tx)
        .await?;
        let deleted = next.is_none();
        if deleted {
            sqlx::query("DELETE FROM channels WHERE id = $1")
                .bind(channel_id)
                .execute(&mut *tx)
                .await?;
        } else if channel.owner_id == Some(user) {
            sqlx::query("UPDATE channels SET owner_id = $2 WHERE id = $1")
                .bind(channel_id)
                .bind(next)
                .execute(&mut *tx)
                .await?;
            channel.owner_id = next;
        }
        tx.commit().await?;
        if let Some(r) = channel.recipients.as_mut() {
            r.retain(|u| u.id != user);
        }
        Ok(RecipientChange {
            channel,
            user: removed_user,
            deleted,
        })
    }

    async fn owned_group(&self, channel_id: ChannelId, actor: UserId) -> ChatResult<()> {
        let (channel, _) = self.channel_access(channel_id, actor).await?;
        if channel.kind != ChannelKind::GroupDm {
            return Err(ChatError::field(
                "channel_id",
                "only group DMs have recipients to add or remove",
            ));
        }
        if channel.owner_id != Some(actor) {
            return Err(ChatError::Forbidden(
                "only the group's owner may add people",
            ));
        }
        Ok(())
    }

    /// Whether the author and another recipient of the DM blocked one another.
    pub(crate) async fn dm_blocked(
        &self,
        channel_id: ChannelId,
        author: UserId,
    ) -> ChatResult<bool> {
        Ok(sqlx::query_scalar::<_, i32>(
            "SELECT 1 FROM dm_recipients d JOIN relationships r ON r.kind = 'blocked'
               AND ((r.user_id = d.user_id AND r.other_id = $2) OR (r.user_id = $2 AND r.other_id = d.user_id))
             WHERE d.channel_id = $1 AND d.user_id <> $2 LIMIT 1",
        )
        .bind(channel_id)
        .bind(author)
        .fetch_optional(&self.pool)
        .await?
        .is_some())
    }
}
