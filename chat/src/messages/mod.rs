//! Messages: send (idempotent by nonce), edit, delete, history.

pub mod bulk;
pub mod mentions;
pub(crate) mod writer;

use crate::accounts::USER_COLUMNS;
use crate::files::{FileUrls, NewAttachment, ATTACHMENTS_JSON};
use crate::model::{ChannelKind, Message, User};
use crate::{permissions, ChannelId, MessageId, RoleId, ServerId, UserId};
use crate::{Chat, ChatError, ChatResult};
use chrono::{DateTime, Utc};

/// Longest message, in characters.
pub const MAX_CONTENT: usize = 4000;
/// Longest client nonce.
pub const MAX_NONCE: usize = 64;
/// Largest history page.
pub const MAX_PAGE: i64 = 100;

#[derive(sqlx::FromRow)]
pub(crate) struct MessageRow {
    pub(crate) id: MessageId,
    channel_id: ChannelId,
    server_id: Option<ServerId>,
    content: String,
    nonce: Option<String>,
    created_at: DateTime<Utc>,
    edited_at: Option<DateTime<Utc>>,
    reply_to: Option<MessageId>,
    mentions: sqlx::types::Json<Vec<UserId>>,
    mention_roles: sqlx::types::Json<Vec<RoleId>>,
    mention_everyone: bool,
    embeds: sqlx::types::Json<Vec<crate::model::Embed>>,
    flags: i32,
    attachments: sqlx::types::Json<Vec<crate::files::AttachmentRow>>,
    stickers: sqlx::types::Json<Vec<crate::expressions::StickerItem>>,
    // Webhook posts (the batched writer's rows never are one, and do not select these).
    #[sqlx(default)]
    webhook_id: Option<crate::Snowflake>,
    #[sqlx(default)]
    author_name: Option<String>,
    #[sqlx(default)]
    author_avatar: Option<String>,
    #[sqlx(flatten)]
    author: AuthorRow,
    /// The channel's kind (threads record activity after a post).
    #[sqlx(default)]
    channel_kind: Option<String>,
}

#[derive(sqlx::FromRow)]
struct AuthorRow {
    #[sqlx(rename = "author_id")]
    id: UserId,
    username: String,
    display_name: Option<String>,
    avatar_url: Option<String>,
    custom_status: Option<String>,
    #[sqlx(rename = "author_created_at")]
    created_at: DateTime<Utc>,
    #[sqlx(rename = "author_bot", default)]
    bot: bool,
}

impl MessageRow {
    /// The message, with signed URLs for its files.
    pub(crate) fn into_message(self, urls: &FileUrls) -> Message {
        let r = self;
        Message {
            id: r.id,
            channel_id: r.channel_id,
            server_id: r.server_id,
            author: User {
                id: r.author.id,
                // A webhook post shows the name and avatar it was posted with.
                display_name: r.author_name.or(r.author.display_name),
                avatar_url: r.author_avatar.or(r.author.avatar_url),
                username: r.author.username,
                custom_status: r.author.custom_status,
                created_at: r.author.created_at,
                bot: r.author.bot,
            },
            in_thread: r
                .channel_kind
                .as_deref()
                .is_some_and(|k| k.ends_with("_thread")),
            webhook_id: r.webhook_id,
            content: r.content,
            nonce: r.nonce,
            created_at: r.created_at,
            edited_at: r.edited_at,
            reply_to: r.reply_to,
            mentions: r.mentions.0,
            mention_roles: r.mention_roles.0,
            mention_everyone: r.mention_everyone,
            embeds: r.embeds.0,
            flags: r.flags,
            stickers: r.stickers.0,
            attachments: r
                .attachments
                .0
                .into_iter()
                .map(|a| urls.attachment(a))
                .collect(),
        }
    }
}

/// Columns of a message row (`m` = message, `c` = its channel, `u` = its author).
pub(crate) const SELECT_MESSAGE_COLUMNS: &str = const_format::concatcp!(
    "m.id, m.channel_id, c.server_id, m.content, m.nonce, m.created_at,
        m.edited_at, m.reply_to, m.mentions, m.mention_roles, m.mention_everyone, m.embeds, m.flags, m.stickers, u.id AS author_id, u.username, u.display_name, u.avatar_url, u.custom_status,
        u.created_at AS author_created_at, u.bot AS author_bot, m.webhook_id, m.author_name, m.author_avatar, c.kind AS channel_kind, ",
    ATTACHMENTS_JSON,
    " AS attachments"
);

const SELECT_MESSAGE: &str = const_format::concatcp!(
    "SELECT ",
    SELECT_MESSAGE_COLUMNS,
    " FROM messages m JOIN channels c ON c.id = m.channel_id JOIN users u ON u.id = m.author_id"
);

/// Which page of history to read.
#[derive(Debug, Clone, Copy, Default)]
pub struct HistoryQuery {
    pub before: Option<MessageId>,
    pub after: Option<MessageId>,
    /// Messages around this id (it included when it exists): half the page at or before it,
    /// the rest after. Not with `before` or `after`.
    pub around: Option<MessageId>,
    pub limit: Option<i64>,
}

pub(crate) fn check_content(content: &str) -> ChatResult<()> {
    // PostgreSQL text cannot hold NUL; the edge refuses it too, this keeps the writer safe.
    if content.contains('\0') {
        return Err(ChatError::field(
            "content",
            "must not contain NUL characters",
        ));
    }
    if content.trim().is_empty() {
        return Err(ChatError::field("content", "must not be empty"));
    }
    if content.chars().count() > MAX_CONTENT {
        return Err(ChatError::field(
            "content",
            "must be at most 4000 characters",
        ));
    }
    Ok(())
}

impl Chat {
    /// Sends a message. With a nonce the call is idempotent: the same user and nonce return the
    /// first message (and `false`) instead of creating another.
    pub async fn send_message(
        &self,
        channel_id: ChannelId,
        author: UserId,
        content: &str,
        nonce: Option<&str>,
        reply_to: Option<MessageId>,
    ) -> ChatResult<(Message, bool)> {
        self.send_message_with_files(channel_id, author, content, nonce, reply_to, &[], &[])
            .await
    }

    /// Sends a message with files already written to the store. Content may be empty when
    /// there are files. When the nonce was used before, the earlier message comes back (with
    /// `false`) and the caller deletes the files it stored for this attempt. `stickers`: at
    /// most one sticker of the channel's server (content may then be empty too).
    #[allow(clippy::too_many_arguments)]
    pub async fn send_message_with_files(
        &self,
        channel_id: ChannelId,
        author: UserId,
        content: &str,
        nonce: Option<&str>,
        reply_to: Option<MessageId>,
        files: &[NewAttachment],
        stickers: &[crate::Snowflake],
    ) -> ChatResult<(Message, bool)> {
        if files.len() > crate::files::MAX_FILES_PER_MESSAGE {
            return Err(ChatError::field("files", "at most 10 files per message"));
        }
        if stickers.len() > crate::expressions::stickers::MAX_PER_MESSAGE {
            return Err(ChatError::field("sticker_ids", "at most one sticker"));
        }
        if (files.is_empty() && stickers.is_empty()) || !content.is_empty() {
            check_content(content)?;
        }
        if let Some(n) = nonce {
            if n.is_empty() || n.chars().count() > MAX_NONCE || n.contains('\0') {
                return Err(ChatError::field("nonce", "must be 1-64 characters"));
            }
        }
        // Safety first: automod sees the message before it can be stored; a server with a
        // verification level takes the exact path, where the gates are checked.
        let server_id = self.channel_server(channel_id).await?;
        let content = self.usable_emoji_text(server_id, author, content).await?;
        let content: &str = &content;
        let parsed = mentions::parse(content);
        let mut gated = false;
        if let Some(server_id) = server_id {
            if !content.is_empty() {
                self.run_automod(server_id, channel_id, author, content, None)
                    .await?;
            }
            gated = self.server_safety(server_id).await?.settings.gates_sends();
        }
        // Fast path for plain messages: one batched statement checks access and inserts.
        if parsed.is_empty()
            && reply_to.is_none()
            && files.is_empty()
            && stickers.is_empty()
            && !gated
        {
            let written = self
                .writer
                .submit(writer::NewMessage {
                    id: self.next_id(),
                    channel_id,
                    author,
                    content: content.to_owned(),
                    nonce: nonce.map(str::to_owned),
                })
                .await?;
            if let Some(m) = written {
                return Ok((m, true));
            }
        }
        // Exact path: permissions with overwrites, replies and mentions resolved, or the reason
        // it cannot be sent (404, 403, or the earlier message with that nonce).
        let (channel, perms) = self.channel_access(channel_id, author).await?;
        if !channel.kind.is_textual() {
            return Err(ChatError::field(
                "channel_id",
                "messages go to text channels",
            ));
        }
        if !permissions::has(perms, permissions::SEND_MESSAGES) {
            return Err(ChatError::Forbidden("you may not send messages here"));
        }
        if !files.is_empty() && !permissions::has(perms, permissions::ATTACH_FILES) {
            return Err(ChatError::Forbidden("you may not attach files here"));
        }
        if channel.kind == ChannelKind::Dm && self.dm_blocked(channel_id, author).await? {
            return Err(ChatError::Blocked("you cannot message this user"));
        }
        if let Some(server_id) = channel.server_id {
            let safety = self.server_safety(server_id).await?;
            self.check_posting_gates(server_id, author, &safety.settings)
                .await?;
        }
        if nonce.is_some() {
            let existing: Option<MessageRow> = sqlx::query_as(q!(
                "{SELECT_MESSAGE} WHERE m.author_id = $1 AND m.nonce = $2"
            ))
            .bind(author)
            .bind(nonce)
            .fetch_optional(&self.pool)
            .await?;
            if let Some(existing) = existing {
                return Ok((existing.into_message(&self.file_urls), false));
            }
        }
        if let Some(r) = reply_to {
            let same: Option<i32> =
                sqlx::query_scalar("SELECT 1 FROM messages WHERE id = $1 AND channel_id = $2")
                    .bind(r)
                    .bind(channel_id)
                    .fetch_optional(&self.pool)
                    .await?;
            if same.is_none() {
                return Err(ChatError::field(
                    "reply_to",
                    "must be a message of this channel",
                ));
            }
        }
        let sticker_items = self.message_stickers(channel.server_id, stickers).await?;
        let resolved = self
            .resolve_mentions(channel_id, channel.server_id, perms, &parsed)
            .await?;
        let mut tx = self.pool.begin().await?;
        let id: Option<MessageId> = sqlx::query_scalar(
            "INSERT INTO messages (id, channel_id, author_id, content, nonce, reply_to, mentions, mention_roles, mention_everyone, stickers)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
             ON CONFLICT (author_id, nonce) WHERE nonce IS NOT NULL DO NOTHING RETURNING id",
        )
        .bind(self.next_id::<MessageId>())
        .bind(channel_id)
        .bind(author)
        .bind(content)
        .bind(nonce)
        .bind(reply_to)
        .bind(sqlx::types::Json(&resolved.users))
        .bind(sqlx::types::Json(&resolved.roles))
        .bind(resolved.everyone)
        .bind(sqlx::types::Json(&sticker_items))
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(id) = id {
            self.insert_attachments(&mut tx, id, channel_id, author, files)
                .await?;
        }
        tx.commit().await?;
        match id {
            Some(id) => Ok((self.message_by_id(id).await?, true)),
            None => Err(ChatError::Conflict("nonce already used; retry".into())),
        }
    }

    /// Who parsed mentions reach, where the message is and with its author's permissions there:
    /// members of the server (or the DM's recipients); a role when it is mentionable, or any role
    /// when the author may mention everyone, as on Discord; @everyone/@here only with
    /// MENTION_EVERYONE. The one place both sending and editing resolve mentions.
    async fn resolve_mentions(
        &self,
        channel_id: ChannelId,
        server_id: Option<ServerId>,
        perms: permissions::Permissions,
        parsed: &mentions::Parsed,
    ) -> ChatResult<mentions::Parsed> {
        let users: Vec<UserId> = if parsed.users.is_empty() {
            Vec::new()
        } else {
            // Members of the server, or the recipients of a DM.
            sqlx::query_scalar(
                "SELECT user_id FROM members WHERE server_id = $1 AND user_id = ANY($2)
                 UNION SELECT user_id FROM dm_recipients WHERE $1::bigint IS NULL
                     AND channel_id = $3 AND user_id = ANY($2)",
            )
            .bind(server_id)
            .bind(parsed.users.iter().map(|u| u.get()).collect::<Vec<i64>>())
            .bind(channel_id)
            .fetch_all(&self.pool)
            .await?
        };
        // As on Discord: a role pings its members when it is mentionable, or when the author
        // may mention everyone (then any role); @everyone/@here need MENTION_EVERYONE.
        let may_mention_all = permissions::has(perms, permissions::MENTION_EVERYONE);
        let roles: Vec<RoleId> = if parsed.roles.is_empty() {
            Vec::new()
        } else {
            sqlx::query_scalar(
                "SELECT id FROM roles WHERE server_id = $1 AND id = ANY($2) AND id <> $1
                     AND (mentionable OR $3)",
            )
            .bind(server_id)
            .bind(parsed.roles.iter().map(|r| r.get()).collect::<Vec<i64>>())
            .bind(may_mention_all)
            .fetch_all(&self.pool)
            .await?
        };
        let everyone = parsed.everyone && may_mention_all;
        Ok(mentions::Parsed {
            users,
            roles,
            everyone,
        })
    }

    pub(crate) async fn message_by_id(&self, id: MessageId) -> ChatResult<Message> {
        let row: Option<MessageRow> = sqlx::query_as(q!("{SELECT_MESSAGE} WHERE m.id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| r.into_message(&self.file_urls))
            .ok_or(ChatError::NotFound("message"))
    }

    pub async fn message(
        &self,
        channel_id: ChannelId,
        message_id: MessageId,
        user_id: UserId,
    ) -> ChatResult<Message> {
        let (_, perms) = self.channel_access(channel_id, user_id).await?;
        if !permissions::has(perms, permissions::READ_MESSAGE_HISTORY) {
            return Err(ChatError::Forbidden(
                "you may not read this channel's history",
            ));
        }
        let msg = self.message_by_id(message_id).await?;
        if msg.channel_id != channel_id {
            return Err(ChatError::NotFound("message"));
        }
        Ok(msg)
    }

    /// A page of history, newest first. `after` pages forward (oldest of the newer ones first
    /// in the query, returned newest first like every page).
    pub async fn history(
        &self,
        channel_id: ChannelId,
        user_id: UserId,
        q: HistoryQuery,
    ) -> ChatResult<Vec<Message>> {
        let (_, perms) = self.channel_access(channel_id, user_id).await?;
        if !permissions::has(perms, permissions::READ_MESSAGE_HISTORY) {
            return Err(ChatError::Forbidden(
                "you may not read this channel's history",
            ));
        }
        let limit = q.limit.unwrap_or(50);
        if !(1..=MAX_PAGE).contains(&limit) {
            return Err(ChatError::field("limit", "must be 1-100"));
        }
        if q.around.is_some() && (q.before.is_some() || q.after.is_some()) {
            return Err(ChatError::field(
                "around",
                "cannot be combined with before or after",
            ));
        }
        let started = std::time::Instant::now();
        if let Some(around) = q.around {
            // The older half with the message itself (rounded up), then the newer half.
            let older_n = (limit + 1) / 2;
            let mut rows: Vec<MessageRow> = sqlx::query_as(q!(
                "{SELECT_MESSAGE} WHERE m.channel_id = $1 AND m.id <= $2 ORDER BY m.id DESC LIMIT $3"
            ))
            .bind(channel_id)
            .bind(around)
            .bind(older_n)
            .fetch_all(&self.pool)
            .await?;
            let mut newer: Vec<MessageRow> = sqlx::query_as(q!(
                "{SELECT_MESSAGE} WHERE m.channel_id = $1 AND m.id > $2 ORDER BY m.id ASC LIMIT $3"
            ))
            .bind(channel_id)
            .bind(around)
            .bind(limit - older_n)
            .fetch_all(&self.pool)
            .await?;
            newer.reverse();
            newer.append(&mut rows);
            crate::record_query("history", started);
            return Ok(newer
                .into_iter()
                .map(|r| r.into_message(&self.file_urls))
                .collect());
        }
        let rows: Vec<MessageRow> = match (q.before, q.after) {
            (_, Some(after)) => {
                let mut rows: Vec<MessageRow> =
                    sqlx::query_as(q!("{SELECT_MESSAGE} WHERE m.channel_id = $1 AND m.id > $2
                       AND ($3::bigint IS NULL OR m.id < $3) ORDER BY m.id ASC LIMIT $4"))
                    .bind(channel_id)
                    .bind(after)
                    .bind(q.before)
                    .bind(limit)
                    .fetch_all(&self.pool)
                    .await?;
                rows.reverse();
                rows
            }
            (before, None) => {
                sqlx::query_as(q!(
                    "{SELECT_MESSAGE} WHERE m.channel_id = $1 AND ($2::bigint IS NULL OR m.id < $2)
                     ORDER BY m.id DESC LIMIT $3"
                ))
                .bind(channel_id)
                .bind(before)
                .bind(limit)
                .fetch_all(&self.pool)
                .await?
            }
        };
        crate::record_query("history", started);
        Ok(rows
            .into_iter()
            .map(|r| r.into_message(&self.file_urls))
            .collect())
    }

    /// Edits the caller's own message.
    pub async fn edit_message(
        &self,
        channel_id: ChannelId,
        message_id: MessageId,
        user_id: UserId,
        content: &str,
    ) -> ChatResult<Message> {
        let msg = self.message(channel_id, message_id, user_id).await?;
        if msg.author.id != user_id {
            return Err(ChatError::Forbidden("you may only edit your own messages"));
        }
        check_content(content)?;
        let content = self
            .usable_emoji_text(msg.server_id, user_id, content)
            .await?;
        let content: &str = &content;
        // An edit cannot slip past automod: the new content is checked as a send would be.
        if let Some(server_id) = msg.server_id {
            self.run_automod(server_id, channel_id, user_id, content, Some(message_id))
                .await?;
        }
        // Mentions follow the new content (who is highlighted, who counts it as unread).
        let parsed = mentions::parse(content);
        let resolved = if parsed.is_empty() {
            parsed
        } else {
            let (channel, perms) = self.channel_access(channel_id, user_id).await?;
            self.resolve_mentions(channel_id, channel.server_id, perms, &parsed)
                .await?
        };
        sqlx::query(
            "UPDATE messages SET content = $2, edited_at = now(), mentions = $3,
                 mention_roles = $4, mention_everyone = $5 WHERE id = $1",
        )
        .bind(message_id)
        .bind(content)
        .bind(sqlx::types::Json(&resolved.users))
        .bind(sqlx::types::Json(&resolved.roles))
        .bind(resolved.everyone)
        .execute(&self.pool)
        .await?;
        self.message_by_id(message_id).await
    }

    /// Deletes a message: the author's own, or anyone's with MANAGE_MESSAGES.
    pub async fn delete_message(
        &self,
        channel_id: ChannelId,
        message_id: MessageId,
        user_id: UserId,
    ) -> ChatResult<Message> {
        let (_, perms) = self.channel_access(channel_id, user_id).await?;
        let msg = self.message(channel_id, message_id, user_id).await?;
        if msg.author.id != user_id && !permissions::has(perms, permissions::MANAGE_MESSAGES) {
            return Err(ChatError::Forbidden(
                "you may only delete your own messages",
            ));
        }
        sqlx::query("DELETE FROM messages WHERE id = $1")
            .bind(message_id)
            .execute(&self.pool)
            .await?;
        Ok(msg)
    }

    /// Checks that the user may type in a channel; returns its server (None for a DM).
    pub async fn can_type(
        &self,
        channel_id: ChannelId,
        user_id: UserId,
    ) -> ChatResult<Option<ServerId>> {
        let (channel, perms) = self.channel_access(channel_id, user_id).await?;
        if !channel.kind.is_textual() || !permissions::has(perms, permissions::SEND_MESSAGES) {
            return Err(ChatError::Forbidden("you may not send messages here"));
        }
        Ok(channel.server_id)
    }
}

#[allow(dead_code)]
const _: &str = USER_COLUMNS;
