//! Text, voice and category channels of a server.

use crate::audit::Actor;
use crate::error::Validator;
use crate::model::{Channel, ChannelKind};
use crate::permissions::{self, Permissions};
use crate::{ChannelId, Chat, ChatError, ChatResult, Name, ServerId, UserId};

/// Keeps the channels a user may see: those with VIEW_CHANNEL, and the categories
/// that are viewable themselves or hold a viewable channel (its heading). Nothing
/// of a hidden channel, not even its name, reaches the client.
pub fn retain_visible(channels: &mut Vec<Channel>, visible: &std::collections::HashSet<ChannelId>) {
    let parents: std::collections::HashSet<ChannelId> = channels
        .iter()
        .filter(|c| visible.contains(&c.id))
        .filter_map(|c| c.parent_id)
        .collect();
    channels.retain(|c| visible.contains(&c.id) || parents.contains(&c.id));
}

/// Most channels in one server.
pub const MAX_CHANNELS: i64 = 500;

#[derive(sqlx::FromRow)]
pub(crate) struct ChannelRow {
    id: ChannelId,
    server_id: Option<ServerId>,
    kind: String,
    name: Option<String>,
    position: i32,
    parent_id: Option<ChannelId>,
    topic: Option<String>,
    owner_id: Option<UserId>,
    e2ee: bool,
}

impl From<ChannelRow> for Channel {
    fn from(r: ChannelRow) -> Self {
        Channel {
            id: r.id,
            server_id: r.server_id,
            // The column's CHECK constraint allows only these three.
            kind: ChannelKind::parse(&r.kind).unwrap_or(ChannelKind::Text),
            name: r.name.unwrap_or_default(),
            position: r.position,
            parent_id: r.parent_id,
            topic: r.topic,
            owner_id: r.owner_id,
            e2ee: r.e2ee,
            recipients: None,
            last_message_id: None,
            thread_metadata: None,
            available_tags: None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct NewChannel {
    pub name: Name,
    pub kind: ChannelKind,
    pub parent_id: Option<ChannelId>,
    pub topic: Option<String>,
    pub position: Option<i32>,
}

#[derive(Debug, Clone, Default)]
pub struct ChannelPatch {
    pub name: Option<Name>,
    pub position: Option<i32>,
    /// `Some(None)` moves the channel out of its category.
    pub parent_id: Option<Option<ChannelId>>,
    pub topic: Option<Option<String>>,
    /// Voice channels: end-to-end encrypted media (docs/e2ee.md).
    pub e2ee: Option<bool>,
}

pub(crate) const CHANNEL_COLUMNS: &str =
    "id, server_id, kind, name, position, parent_id, topic, owner_id, e2ee";

impl Chat {
    /// A channel and the caller's permissions in it; NotFound when the caller is not a member of
    /// its server (never reveal that it exists).
    pub async fn channel_access(
        &self,
        channel_id: ChannelId,
        user_id: UserId,
    ) -> ChatResult<(Channel, Permissions)> {
        #[derive(sqlx::FromRow)]
        struct Row {
            #[sqlx(flatten)]
            channel: ChannelRow,
            permissions_synced: bool,
            recipient: bool,
        }
        let started = std::time::Instant::now();
        // One round trip decides DMs too: `recipient` says whether the caller is in it.
        let row: Option<Row> = sqlx::query_as(
            "SELECT id, server_id, kind, name, position, parent_id, topic, owner_id, e2ee, permissions_synced,
                    (server_id IS NULL AND EXISTS (SELECT 1 FROM dm_recipients d
                        WHERE d.channel_id = channels.id AND d.user_id = $2)) AS recipient
             FROM channels WHERE id = $1",
        )
        .bind(channel_id)
        .bind(user_id)
        .fetch_optional(&self.pool)
        .await?;
        crate::record_query("channel_access", started);
        let row = row.ok_or(ChatError::NotFound("channel"))?;
        let synced = row.permissions_synced;
        let recipient = row.recipient;
        let channel: Channel = row.channel.into();
        if channel.kind.is_thread() {
            // A thread is seen and used with its parent channel's permissions.
            let parent = channel.parent_id.ok_or(ChatError::NotFound("channel"))?;
            let (_, parent_perms) = Box::pin(self.channel_access(parent, user_id)).await?;
            let perms = self
                .thread_permissions(channel.id, parent_perms, user_id)
                .await?;
            return Ok((channel, perms));
        }
        let Some(server_id) = channel.server_id else {
            // A DM exists only for its recipients.
            return if recipient {
                Ok((channel, permissions::DM))
            } else {
                Err(ChatError::NotFound("channel"))
            };
        };
        // Not a member: the channel "does not exist" for them.
        let access = self
            .member_access(server_id, user_id)
            .await?
            .ok_or(ChatError::NotFound("channel"))?;
        let perms = if access.base().contains(permissions::ADMINISTRATOR) {
            permissions::ALL
        } else {
            let o = self
                .overwrites_for(&channel, synced, &access, user_id)
                .await?;
            permissions::in_channel(&access.context, &o)
        };
        if !permissions::has(perms, permissions::VIEW_CHANNEL) {
            return Err(ChatError::NotFound("channel"));
        }
        Ok((channel, perms))
    }

    pub async fn channels(&self, server_id: ServerId, user_id: UserId) -> ChatResult<Vec<Channel>> {
        self.server_permissions(server_id, user_id).await?;
        let mut channels = self.channels_of(server_id).await?;
        let visible = self.viewable_channels(user_id).await?;
        retain_visible(&mut channels, &visible);
        self.fill_last_message_ids(&visible, &mut channels).await?;
        self.fill_forum_tags(&mut channels).await?;
        Ok(channels)
    }

    async fn check_parent(
        &self,
        server_id: ServerId,
        parent: Option<ChannelId>,
        v: &mut Validator,
    ) -> ChatResult<()> {
        if let Some(parent) = parent {
            let kind: Option<String> =
                sqlx::query_scalar("SELECT kind FROM channels WHERE id = $1 AND server_id = $2")
                    .bind(parent)
                    .bind(server_id)
                    .fetch_optional(&self.pool)
                    .await?;
            v.check(
                kind.as_deref() == Some("category"),
                "parent_id",
                "must be a category of this server",
            );
        }
        Ok(())
    }

    pub async fn create_channel(
        &self,
        server_id: ServerId,
        user_id: UserId,
        new: NewChannel,
    ) -> ChatResult<Channel> {
        self.require(
            server_id,
            user_id,
            permissions::MANAGE_CHANNELS,
            "you may not manage channels",
        )
        .await?;
        let mut v = Validator::default();
        if let Some(t) = &new.topic {
            v.check(
                t.chars().count() <= 1024,
                "topic",
                "must be at most 1024 characters",
            );
        }
        v.check(
            !new.kind.is_private() && !new.kind.is_thread(),
            "type",
            "must be \"text\", \"voice\", \"stage\", \"category\" or \"forum\" (threads: POST /channels/{id}/threads)",
        );
        if new.kind == ChannelKind::Category {
            v.check(
                new.parent_id.is_none(),
                "parent_id",
                "a category cannot have a parent",
            );
        }
        self.check_parent(server_id, new.parent_id, &mut v).await?;
        v.finish()?;
        let count: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM channels WHERE server_id = $1
             AND kind NOT IN ('public_thread', 'private_thread')",
        )
        .bind(server_id)
        .fetch_one(&self.pool)
        .await?;
        if count >= MAX_CHANNELS {
            return Err(ChatError::Conflict(format!(
                "a server has at most {MAX_CHANNELS} channels"
            )));
        }
        let position = match new.position {
            Some(p) => p.clamp(0, 10_000),
            None => sqlx::query_scalar::<_, Option<i32>>(
                "SELECT max(position) + 1 FROM channels WHERE server_id = $1",
            )
            .bind(server_id)
            .fetch_one(&self.pool)
            .await?
            .unwrap_or(0),
        };
        let row: ChannelRow = sqlx::query_as(q!(
            "INSERT INTO channels (id, server_id, kind, name, position, parent_id, topic)
             VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING {CHANNEL_COLUMNS}"
        ))
        .bind(self.next_id::<ChannelId>())
        .bind(server_id)
        .bind(new.kind.as_str())
        .bind(new.name.as_str())
        .bind(position)
        .bind(new.parent_id)
        .bind(new.topic.filter(|t| !t.trim().is_empty()))
        .fetch_one(&self.pool)
        .await?;
        Ok(row.into())
    }

    pub async fn update_channel(
        &self,
        channel_id: ChannelId,
        user_id: UserId,
        patch: ChannelPatch,
    ) -> ChatResult<Channel> {
        let (channel, perms) = self.channel_access(channel_id, user_id).await?;
        if channel.kind.is_thread() {
            // Threads change through `update_thread` (the handler routes them there).
            return Err(ChatError::field(
                "channel_id",
                "a thread has no position, parent or topic",
            ));
        }
        let server_id = match channel.server_id {
            Some(s) if permissions::has(perms, permissions::MANAGE_CHANNELS) => s,
            _ => return Err(ChatError::Forbidden("you may not manage channels")),
        };
        let mut v = Validator::default();
        if let Some(p) = patch.position {
            v.check((0..=10_000).contains(&p), "position", "must be 0-10000");
        }
        if let Some(Some(t)) = &patch.topic {
            v.check(
                t.chars().count() <= 1024,
                "topic",
                "must be at most 1024 characters",
            );
        }
        if let Some(parent) = patch.parent_id {
            if channel.kind == ChannelKind::Category {
                v.check(
                    parent.is_none(),
                    "parent_id",
                    "a category cannot have a parent",
                );
            }
            v.check(
                parent != Some(channel.id),
                "parent_id",
                "a channel cannot be its own parent",
            );
            self.check_parent(server_id, parent, &mut v).await?;
        }
        if patch.e2ee.is_some() {
            v.check(
                channel.kind == ChannelKind::Voice,
                "e2ee",
                "only voice channels can be end-to-end encrypted",
            );
        }
        v.finish()?;
        // Turning it on or off is a security setting: it goes to the audit log, in the same
        // transaction as the change.
        let mut tx = self.pool.begin().await?;
        let row: ChannelRow = sqlx::query_as(q!("UPDATE channels SET
               name = coalesce($2, name),
               position = coalesce($3, position),
               parent_id = CASE WHEN $4 THEN $5 ELSE parent_id END,
               topic = CASE WHEN $6 THEN $7 ELSE topic END,
               e2ee = coalesce($8, e2ee)
             WHERE id = $1 RETURNING {CHANNEL_COLUMNS}"))
        .bind(channel_id)
        .bind(patch.name.as_ref().map(Name::as_str))
        .bind(patch.position)
        .bind(patch.parent_id.is_some())
        .bind(patch.parent_id.flatten())
        .bind(patch.topic.is_some())
        .bind(patch.topic.flatten().filter(|t| !t.trim().is_empty()))
        .bind(patch.e2ee)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or(ChatError::NotFound("channel"))?;
        if row.e2ee != channel.e2ee {
            self.audit(
                &mut tx,
                server_id,
                Actor::new(user_id, None),
                "channel_update",
                Some(channel_id.snowflake()),
                serde_json::json!({"e2ee": {"old": channel.e2ee, "new": row.e2ee}}),
            )
            .await?;
        }
        tx.commit().await?;
        Ok(row.into())
    }

    pub async fn delete_channel(
        &self,
        channel_id: ChannelId,
        user_id: UserId,
    ) -> ChatResult<Channel> {
        let (channel, perms) = self.channel_access(channel_id, user_id).await?;
        if channel.kind.is_thread() {
            if !permissions::has(perms, permissions::MANAGE_THREADS) {
                return Err(ChatError::Forbidden("you may not manage threads"));
            }
        } else if !permissions::has(perms, permissions::MANAGE_CHANNELS) {
            return Err(ChatError::Forbidden("you may not manage channels"));
        }
        // A channel's threads go with it.
        sqlx::query(
            "DELETE FROM channels WHERE id = $1
             OR id IN (SELECT channel_id FROM threads WHERE parent_id = $1)",
        )
        .bind(channel_id)
        .execute(&self.pool)
        .await?;
        Ok(channel)
    }

    /// A server's channels in display order, threads aside (no permission check: callers have
    /// done it).
    pub async fn channels_of(&self, server_id: ServerId) -> ChatResult<Vec<Channel>> {
        let rows: Vec<ChannelRow> = sqlx::query_as(q!(
            "SELECT {CHANNEL_COLUMNS} FROM channels WHERE server_id = $1
             AND kind NOT IN ('public_thread', 'private_thread') ORDER BY position, id"
        ))
        .bind(server_id)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(Channel::from).collect())
    }
}
