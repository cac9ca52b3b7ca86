//! Threads and forum posts (docs/threads.md).
//!
//! A thread is a channel row (kind `public_thread` or `private_thread`) whose parent is a text
//! or forum channel; `threads` holds its archive state, counts and tags. Access is the parent's
//! (see `thread_permissions`): a private thread exists only for its members and MANAGE_THREADS
//! holders, and posting needs SEND_MESSAGES_IN_THREADS instead of SEND_MESSAGES.

use crate::channels::ChannelRow;
use crate::error::Validator;
use crate::model::{Channel, ChannelKind, ForumTag, Message, ThreadMetadata};
use crate::permissions::{self, Permissions};
use crate::{ChannelId, Chat, ChatError, ChatResult, MessageId, Name, Snowflake, UserId};
use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;

/// Inactivity durations (minutes) a thread may archive itself after: 1 h, 24 h, 3 d, 7 d.
pub const ARCHIVE_DURATIONS: [i32; 4] = [60, 1440, 4320, 10080];
/// Most tags a forum offers.
pub const MAX_FORUM_TAGS: usize = 20;
/// Most tags one forum post carries.
pub const MAX_POST_TAGS: usize = 5;
/// Most threads one listing returns.
pub const MAX_LIST: i64 = 100;
/// Most threads archived per worker pass (the next pass takes the rest).
const ARCHIVE_BATCH: i64 = 500;

/// Every column a thread is shown with: the channel's and `threads`' (t), its member count.
const THREAD_COLUMNS: &str = "c.id, c.server_id, c.kind, c.name, c.position, c.parent_id, c.topic,
    c.owner_id, c.e2ee, t.archived, t.locked, t.auto_archive_minutes, t.archived_at, t.starter_message_id,
    t.message_count, t.last_activity_at, t.applied_tags, t.last_message_id,
    (SELECT count(*) FROM thread_members tm WHERE tm.channel_id = t.channel_id) AS member_count";

#[derive(sqlx::FromRow)]
struct ThreadRow {
    #[sqlx(flatten)]
    channel: ChannelRow,
    archived: bool,
    locked: bool,
    auto_archive_minutes: i32,
    archived_at: Option<DateTime<Utc>>,
    starter_message_id: Option<MessageId>,
    message_count: i32,
    last_activity_at: DateTime<Utc>,
    applied_tags: Vec<i64>,
    last_message_id: Option<MessageId>,
    member_count: i64,
}

impl From<ThreadRow> for Channel {
    fn from(r: ThreadRow) -> Self {
        let mut c: Channel = r.channel.into();
        c.last_message_id = r.last_message_id;
        c.thread_metadata = Some(ThreadMetadata {
            archived: r.archived,
            locked: r.locked,
            auto_archive_duration: r.auto_archive_minutes,
            archive_timestamp: r.archived_at,
            starter_message_id: r.starter_message_id,
            message_count: r.message_count,
            member_count: r.member_count,
            last_activity_at: r.last_activity_at,
            applied_tags: r.applied_tags.into_iter().map(Snowflake).collect(),
        });
        c
    }
}

/// A thread's state as access decisions need it.
#[derive(sqlx::FromRow)]
struct ThreadState {
    private: bool,
    locked: bool,
    member: bool,
}

/// A new thread: standalone in a text channel, or a forum post.
#[derive(Debug, Clone, Default)]
pub struct NewThread {
    pub name: Option<Name>,
    /// A private thread (text channels only).
    pub private: bool,
    pub auto_archive_minutes: Option<i32>,
    /// The first message (required for a forum post).
    pub message: Option<String>,
    /// Forum posts: ids of the forum's tags.
    pub applied_tags: Vec<Snowflake>,
}

/// Changes to a thread (PATCH /channels/{thread_id}).
#[derive(Debug, Clone, Default)]
pub struct ThreadPatch {
    pub name: Option<Name>,
    pub archived: Option<bool>,
    pub locked: Option<bool>,
    pub auto_archive_minutes: Option<i32>,
    pub applied_tags: Option<Vec<Snowflake>>,
}

/// Which threads of a channel to list.
#[derive(Debug, Clone, Default)]
pub struct ThreadQuery {
    /// Only archived (true) or only active (false) threads; both when None.
    pub archived: Option<bool>,
    /// Threads after this one in the listing order (older activity).
    pub before: Option<ChannelId>,
    /// 1-100, default 50.
    pub limit: Option<i64>,
    /// Forum posts carrying this tag.
    pub tag: Option<Snowflake>,
}

/// A member of a thread.
#[derive(Debug, Clone, Serialize, ToSchema, sqlx::FromRow)]
pub struct ThreadMember {
    /// The thread.
    pub id: ChannelId,
    pub user_id: UserId,
    pub join_timestamp: DateTime<Utc>,
}

/// What a message posted in a thread changed.
#[derive(Debug, Clone)]
pub struct ThreadActivity {
    pub thread: Channel,
    /// The thread was archived and this message reopened it.
    pub unarchived: bool,
    /// Who joined the thread by posting in it or being mentioned there.
    pub added: Vec<UserId>,
}

/// A tag of a forum as given to `set_forum_tags`: an existing one (id) or a new one.
#[derive(Debug, Clone)]
pub struct TagInput {
    pub id: Option<Snowflake>,
    pub name: String,
}

fn check_duration(v: &mut Validator, minutes: Option<i32>) {
    if let Some(m) = minutes {
        v.check(
            ARCHIVE_DURATIONS.contains(&m),
            "auto_archive_duration",
            "must be 60, 1440, 4320 or 10080 (minutes)",
        );
    }
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.code().as_deref() == Some("23505"))
}

impl Chat {
    /// A thread's permissions from its parent's: hidden (NotFound) for a private thread the
    /// user is not in without MANAGE_THREADS; SEND_MESSAGES means SEND_MESSAGES_IN_THREADS
    /// there, and a locked thread takes messages only from MANAGE_THREADS holders.
    pub(crate) async fn thread_permissions(
        &self,
        thread_id: ChannelId,
        parent_perms: Permissions,
        user_id: UserId,
    ) -> ChatResult<Permissions> {
        let state: Option<ThreadState> = sqlx::query_as(
            "SELECT private, locked, EXISTS (SELECT 1 FROM thread_members m
                 WHERE m.channel_id = t.channel_id AND m.user_id = $2) AS member
             FROM threads t WHERE channel_id = $1",
        )
        .bind(thread_id)
        .bind(user_id)
        .fetch_optional(&self.pool)
        .await?;
        let state = state.ok_or(ChatError::NotFound("channel"))?;
        let manage = permissions::has(parent_perms, permissions::MANAGE_THREADS);
        if state.private && !state.member && !manage {
            return Err(ChatError::NotFound("channel"));
        }
        let mut perms = parent_perms;
        perms.remove(permissions::SEND_MESSAGES);
        if permissions::has(parent_perms, permissions::SEND_MESSAGES_IN_THREADS)
            && (!state.locked || manage)
        {
            perms |= permissions::SEND_MESSAGES;
        }
        Ok(perms)
    }

    /// A thread with its metadata (no permission check: callers have done it).
    pub async fn thread_by_id(&self, thread_id: ChannelId) -> ChatResult<Channel> {
        let row: Option<ThreadRow> = sqlx::query_as(q!(
            "SELECT {THREAD_COLUMNS} FROM threads t JOIN channels c ON c.id = t.channel_id
             WHERE t.channel_id = $1"
        ))
        .bind(thread_id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.ok_or(ChatError::NotFound("channel"))?.into())
    }

    /// Fills what a channel shows beyond its row: a thread's metadata, a forum's tags.
    pub async fn with_details(&self, channel: Channel) -> ChatResult<Channel> {
        if channel.kind.is_thread() {
            return self.thread_by_id(channel.id).await;
        }
        let mut channel = channel;
        if channel.kind == ChannelKind::Forum {
            channel.available_tags = Some(self.forum_tags(channel.id).await?);
        }
        Ok(channel)
    }

    /// Sets `available_tags` on the forums among `channels`.
    pub async fn fill_forum_tags(&self, channels: &mut [Channel]) -> ChatResult<()> {
        for c in channels.iter_mut() {
            if c.kind == ChannelKind::Forum {
                c.available_tags = Some(self.forum_tags(c.id).await?);
            }
        }
        Ok(())
    }

    pub async fn forum_tags(&self, forum_id: ChannelId) -> ChatResult<Vec<ForumTag>> {
        Ok(sqlx::query_as(
            "SELECT id, name FROM forum_tags WHERE channel_id = $1 ORDER BY position, id",
        )
        .bind(forum_id)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Replaces a forum's tags (MANAGE_CHANNELS): tags given with an id keep it (and their
    /// place on posts), new ones get one, missing ones are removed from the forum and its posts.
    pub async fn set_forum_tags(
        &self,
        forum_id: ChannelId,
        user_id: UserId,
        tags: Vec<TagInput>,
    ) -> ChatResult<Channel> {
        let (forum, perms) = self.channel_access(forum_id, user_id).await?;
        if !permissions::has(perms, permissions::MANAGE_CHANNELS) {
            return Err(ChatError::Forbidden("you may not manage channels"));
        }
        let mut v = Validator::default();
        v.check(
            forum.kind == ChannelKind::Forum,
            "available_tags",
            "only forum channels have tags",
        );
        v.check(
            tags.len() <= MAX_FORUM_TAGS,
            "available_tags",
            "at most 20 tags",
        );
        let mut names = std::collections::HashSet::new();
        for t in &tags {
            let name = t.name.trim();
            v.check(
                (1..=20).contains(&name.chars().count()),
                "available_tags",
                "each tag name must be 1-20 characters",
            );
            v.check(
                names.insert(name.to_lowercase()),
                "available_tags",
                "tag names must be unique",
            );
        }
        v.finish()?;
        let existing: Vec<i64> =
            sqlx::query_scalar("SELECT id FROM forum_tags WHERE channel_id = $1")
                .bind(forum_id)
                .fetch_all(&self.pool)
                .await?;
        let mut tx = self.pool.begin().await?;
        let kept: Vec<i64> = tags.iter().filter_map(|t| t.id.map(|i| i.0)).collect();
        if kept.iter().any(|id| !existing.contains(id)) {
            return Err(ChatError::field(
                "available_tags",
                "an id is not a tag of this forum",
            ));
        }
        sqlx::query("DELETE FROM forum_tags WHERE channel_id = $1 AND NOT (id = ANY($2))")
            .bind(forum_id)
            .bind(&kept)
            .execute(&mut *tx)
            .await?;
        // Posts lose the removed tags.
        sqlx::query(
            "UPDATE threads SET applied_tags = ARRAY(SELECT x FROM unnest(applied_tags) x
                 WHERE x = ANY($2)) WHERE parent_id = $1",
        )
        .bind(forum_id)
        .bind(&kept)
        .execute(&mut *tx)
        .await?;
        // Names may swap between tags: clear them first so the unique index holds.
        sqlx::query("UPDATE forum_tags SET name = '#' || id::text WHERE channel_id = $1")
            .bind(forum_id)
            .execute(&mut *tx)
            .await?;
        for (position, t) in tags.iter().enumerate() {
            let id = t.id.unwrap_or_else(|| self.ids.next());
            sqlx::query(
                "INSERT INTO forum_tags (id, channel_id, name, position) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (id) DO UPDATE SET name = excluded.name, position = excluded.position",
            )
            .bind(id)
            .bind(forum_id)
            .bind(t.name.trim())
            .bind(position as i32)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        self.with_details(forum).await
    }

    /// Starts a public thread from a message of a text channel (CREATE_PUBLIC_THREADS); its
    /// creator is its first member. A message has at most one thread (409).
    pub async fn create_thread_from_message(
        &self,
        channel_id: ChannelId,
        message_id: MessageId,
        user_id: UserId,
        name: Name,
        auto_archive_minutes: Option<i32>,
    ) -> ChatResult<Channel> {
        let (parent, perms) = self.channel_access(channel_id, user_id).await?;
        if parent.kind != ChannelKind::Text {
            return Err(ChatError::field(
                "channel_id",
                "threads start from messages of text channels",
            ));
        }
        if !permissions::has(perms, permissions::CREATE_PUBLIC_THREADS) {
            return Err(ChatError::Forbidden("you may not create threads here"));
        }
        let mut v = Validator::default();
        check_duration(&mut v, auto_archive_minutes);
        v.finish()?;
        let exists: Option<i32> =
            sqlx::query_scalar("SELECT 1 FROM messages WHERE id = $1 AND channel_id = $2")
                .bind(message_id)
                .bind(channel_id)
                .fetch_optional(&self.pool)
                .await?;
        if exists.is_none() {
            return Err(ChatError::NotFound("message"));
        }
        self.insert_thread(
            &parent,
            user_id,
            &name,
            false,
            Some(message_id),
            auto_archive_minutes,
            &[],
        )
        .await
    }

    #[allow(clippy::too_many_arguments)]
    async fn insert_thread(
        &self,
        parent: &Channel,
        user_id: UserId,
        name: &Name,
        private: bool,
        starter: Option<MessageId>,
        auto_archive_minutes: Option<i32>,
        tags: &[Snowflake],
    ) -> ChatResult<Channel> {
        let id: ChannelId = self.next_id();
        let kind = if private {
            ChannelKind::PrivateThread
        } else {
            ChannelKind::PublicThread
        };
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO channels (id, server_id, kind, name, position, parent_id, owner_id)
             VALUES ($1, $2, $3, $4, 0, $5, $6)",
        )
        .bind(id)
        .bind(parent.server_id)
        .bind(kind.as_str())
        .bind(name.as_str())
        .bind(parent.id)
        .bind(user_id)
        .execute(&mut *tx)
        .await?;
        let tags: Vec<i64> = tags.iter().map(|t| t.0).collect();
        let inserted = sqlx::query(
            "INSERT INTO threads (channel_id, parent_id, private, starter_message_id,
                                  auto_archive_minutes, applied_tags)
             VALUES ($1, $2, $3, $4, coalesce($5, 1440), $6)",
        )
        .bind(id)
        .bind(parent.id)
        .bind(private)
        .bind(starter)
        .bind(auto_archive_minutes)
        .bind(&tags)
        .execute(&mut *tx)
        .await;
        match inserted {
            Err(e) if is_unique_violation(&e) => {
                return Err(ChatError::Conflict(
                    "this message already has a thread".into(),
                ))
            }
            r => r?,
        };
        sqlx::query("INSERT INTO thread_members (channel_id, user_id) VALUES ($1, $2)")
            .bind(id)
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        self.thread_by_id(id).await
    }

    /// A standalone thread in a text channel (CREATE_PUBLIC_THREADS or CREATE_PRIVATE_THREADS),
    /// or a post in a forum (SEND_MESSAGES there; a title, a first message, up to 5 of the
    /// forum's tags). Returns the thread and its first message, if any.
    pub async fn create_thread(
        &self,
        channel_id: ChannelId,
        user_id: UserId,
        new: NewThread,
    ) -> ChatResult<(Channel, Option<Message>)> {
        let (parent, perms) = self.channel_access(channel_id, user_id).await?;
        let mut v = Validator::default();
        check_duration(&mut v, new.auto_archive_minutes);
        v.check(new.name.is_some(), "name", "required");
        match parent.kind {
            ChannelKind::Text => {
                let wanted = if new.private {
                    permissions::CREATE_PRIVATE_THREADS
                } else {
                    permissions::CREATE_PUBLIC_THREADS
                };
                if !permissions::has(perms, wanted) {
                    return Err(ChatError::Forbidden("you may not create threads here"));
                }
                v.check(
                    new.applied_tags.is_empty(),
                    "applied_tags",
                    "only forum posts have tags",
                );
            }
            ChannelKind::Forum => {
                if !permissions::has(perms, permissions::SEND_MESSAGES) {
                    return Err(ChatError::Forbidden("you may not post in this forum"));
                }
                v.check(!new.private, "type", "forum posts are public");
                v.check(
                    new.message.as_deref().is_some_and(|m| !m.trim().is_empty()),
                    "message",
                    "a forum post needs a first message",
                );
                v.check(
                    new.applied_tags.len() <= MAX_POST_TAGS,
                    "applied_tags",
                    "at most 5 tags",
                );
                let known: Vec<i64> =
                    sqlx::query_scalar("SELECT id FROM forum_tags WHERE channel_id = $1")
                        .bind(channel_id)
                        .fetch_all(&self.pool)
                        .await?;
                v.check(
                    new.applied_tags.iter().all(|t| known.contains(&t.0)),
                    "applied_tags",
                    "each tag must be one of the forum's",
                );
            }
            _ => {
                return Err(ChatError::field(
                    "channel_id",
                    "threads live in text and forum channels",
                ))
            }
        }
        if let Some(m) = &new.message {
            crate::messages::check_content(m)?;
        }
        v.finish()?;
        let name = new.name.expect("validated");
        let mut tags = new.applied_tags.clone();
        tags.sort();
        tags.dedup();
        let thread = self
            .insert_thread(
                &parent,
                user_id,
                &name,
                new.private,
                None,
                new.auto_archive_minutes,
                &tags,
            )
            .await?;
        let Some(content) = new.message.filter(|m| !m.trim().is_empty()) else {
            return Ok((thread, None));
        };
        // Through the one send path (automod, mentions, gates); a refused first message takes
        // the thread with it.
        match self
            .send_message(thread.id, user_id, &content, None, None)
            .await
        {
            Ok((message, _)) => {
                let activity = self.thread_posted(&message).await?;
                let thread = activity.map(|a| a.thread).unwrap_or(thread);
                Ok((thread, Some(message)))
            }
            Err(e) => {
                sqlx::query("DELETE FROM channels WHERE id = $1")
                    .bind(thread.id)
                    .execute(&self.pool)
                    .await?;
                Err(e)
            }
        }
    }

    /// Records a message posted in a thread: counts, activity, reopening an archived (not
    /// locked) thread, and membership for its author and whoever it mentions. None (without a
    /// query) when the message's channel is not a thread.
    pub async fn thread_posted(&self, message: &Message) -> ChatResult<Option<ThreadActivity>> {
        if !message.in_thread {
            return Ok(None);
        }
        let was_archived: Option<bool> = sqlx::query_scalar(
            "WITH old AS (SELECT channel_id, archived FROM threads WHERE channel_id = $1 FOR UPDATE)
             UPDATE threads t SET message_count = t.message_count + 1,
                 last_message_id = greatest(t.last_message_id, $2),
                 last_activity_at = now(),
                 archived = t.archived AND t.locked,
                 archived_at = CASE WHEN t.archived AND NOT t.locked THEN now() ELSE t.archived_at END
             FROM old WHERE t.channel_id = old.channel_id
             RETURNING old.archived",
        )
        .bind(message.channel_id)
        .bind(message.id)
        .fetch_optional(&self.pool)
        .await?;
        let Some(was_archived) = was_archived else {
            return Ok(None);
        };
        let mut joining = vec![message.author.id.get()];
        joining.extend(message.mentions.iter().map(|u| u.get()));
        let added: Vec<UserId> = sqlx::query_scalar(
            "INSERT INTO thread_members (channel_id, user_id)
             SELECT $1, m.user_id FROM members m
             WHERE m.server_id = $2 AND m.user_id = ANY($3)
             ON CONFLICT DO NOTHING RETURNING user_id",
        )
        .bind(message.channel_id)
        .bind(message.server_id)
        .bind(&joining)
        .fetch_all(&self.pool)
        .await?;
        let thread = self.thread_by_id(message.channel_id).await?;
        let unarchived =
            was_archived && !thread.thread_metadata.as_ref().is_some_and(|m| m.archived);
        Ok(Some(ThreadActivity {
            thread,
            unarchived,
            added,
        }))
    }

    /// The threads of a text or forum channel the user may see, most recent activity first.
    pub async fn threads(
        &self,
        channel_id: ChannelId,
        user_id: UserId,
        q: ThreadQuery,
    ) -> ChatResult<Vec<Channel>> {
        let (parent, perms) = self.channel_access(channel_id, user_id).await?;
        if !matches!(parent.kind, ChannelKind::Text | ChannelKind::Forum) {
            return Err(ChatError::field(
                "channel_id",
                "threads live in text and forum channels",
            ));
        }
        let limit = q.limit.unwrap_or(50);
        if !(1..=MAX_LIST).contains(&limit) {
            return Err(ChatError::field("limit", "must be 1-100"));
        }
        let manage = permissions::has(perms, permissions::MANAGE_THREADS);
        let started = std::time::Instant::now();
        // Each branch reads one of the two (parent, [archived,] activity, id) indexes in order.
        let rows: Vec<ThreadRow> = sqlx::query_as(q!(
            "SELECT {THREAD_COLUMNS} FROM threads t JOIN channels c ON c.id = t.channel_id
             WHERE t.parent_id = $1
               AND ($2::boolean IS NULL OR t.archived = $2)
               AND ($3::bigint IS NULL OR (t.last_activity_at, t.channel_id) <
                    (SELECT b.last_activity_at, b.channel_id FROM threads b
                     WHERE b.channel_id = $3 AND b.parent_id = $1))
               AND ($4::bigint IS NULL OR t.applied_tags @> ARRAY[$4::bigint])
               AND (NOT t.private OR $5 OR EXISTS (SELECT 1 FROM thread_members m
                    WHERE m.channel_id = t.channel_id AND m.user_id = $6))
             ORDER BY t.last_activity_at DESC, t.channel_id DESC
             LIMIT $7"
        ))
        .bind(channel_id)
        .bind(q.archived)
        .bind(q.before)
        .bind(q.tag)
        .bind(manage)
        .bind(user_id)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        crate::record_query("threads", started);
        Ok(rows.into_iter().map(Channel::from).collect())
    }

    /// Joins a thread the user can see. Returns the thread and whether they were not in it.
    pub async fn join_thread(
        &self,
        thread_id: ChannelId,
        user_id: UserId,
    ) -> ChatResult<(Channel, bool)> {
        let (thread, _) = self.thread_access(thread_id, user_id).await?;
        self.set_thread_member(thread.id, user_id, true).await
    }

    /// Leaves a thread. Returns the thread and whether they were in it.
    pub async fn leave_thread(
        &self,
        thread_id: ChannelId,
        user_id: UserId,
    ) -> ChatResult<(Channel, bool)> {
        let (thread, _) = self.thread_access(thread_id, user_id).await?;
        self.set_thread_member(thread.id, user_id, false).await
    }

    /// Adds `target` to a thread, as Discord does: whoever may post in it may add a member of
    /// the server who can see its channel. Returns the thread and whether they were not in it.
    pub async fn add_thread_member(
        &self,
        thread_id: ChannelId,
        actor: UserId,
        target: UserId,
    ) -> ChatResult<(Channel, bool)> {
        let (thread, perms) = self.thread_access(thread_id, actor).await?;
        if !permissions::has(perms, permissions::SEND_MESSAGES) {
            return Err(ChatError::Forbidden(
                "you may not add members to this thread",
            ));
        }
        let parent = thread.parent_id.ok_or(ChatError::NotFound("channel"))?;
        if self.channel_access(parent, target).await.is_err() {
            return Err(ChatError::field(
                "user_id",
                "is not a member who can see this thread's channel",
            ));
        }
        self.set_thread_member(thread.id, target, true).await
    }

    /// Removes `target` from a thread: MANAGE_THREADS, or the creator of a private thread
    /// (Discord's rule). Returns the thread and whether they were in it.
    pub async fn remove_thread_member(
        &self,
        thread_id: ChannelId,
        actor: UserId,
        target: UserId,
    ) -> ChatResult<(Channel, bool)> {
        let (thread, perms) = self.thread_access(thread_id, actor).await?;
        let creator = thread.kind == ChannelKind::PrivateThread && thread.owner_id == Some(actor);
        if !permissions::has(perms, permissions::MANAGE_THREADS) && !creator {
            return Err(ChatError::Forbidden(
                "you may not remove members from this thread",
            ));
        }
        self.set_thread_member(thread.id, target, false).await
    }

    /// Puts `user_id` in a thread (`member`) or takes them out, after the caller's checks.
    /// Returns the thread and whether anything changed.
    async fn set_thread_member(
        &self,
        thread_id: ChannelId,
        user_id: UserId,
        member: bool,
    ) -> ChatResult<(Channel, bool)> {
        let sql = if member {
            "INSERT INTO thread_members (channel_id, user_id) VALUES ($1, $2) ON CONFLICT DO NOTHING"
        } else {
            "DELETE FROM thread_members WHERE channel_id = $1 AND user_id = $2"
        };
        let changed = sqlx::query(sql)
            .bind(thread_id)
            .bind(user_id)
            .execute(&self.pool)
            .await?
            .rows_affected()
            > 0;
        Ok((self.thread_by_id(thread_id).await?, changed))
    }

    /// A thread's members (at most 1000, earliest first).
    pub async fn thread_members(
        &self,
        thread_id: ChannelId,
        user_id: UserId,
    ) -> ChatResult<Vec<ThreadMember>> {
        self.thread_access(thread_id, user_id).await?;
        Ok(sqlx::query_as(
            "SELECT channel_id AS id, user_id, joined_at AS join_timestamp FROM thread_members
             WHERE channel_id = $1 ORDER BY joined_at, user_id LIMIT 1000",
        )
        .bind(thread_id)
        .fetch_all(&self.pool)
        .await?)
    }

    /// The ids of a thread's members (for routing its events).
    pub async fn thread_member_ids(&self, thread_id: ChannelId) -> ChatResult<Vec<UserId>> {
        Ok(
            sqlx::query_scalar("SELECT user_id FROM thread_members WHERE channel_id = $1")
                .bind(thread_id)
                .fetch_all(&self.pool)
                .await?,
        )
    }

    /// `channel_access` for a thread; a 400 for other channels.
    async fn thread_access(
        &self,
        thread_id: ChannelId,
        user_id: UserId,
    ) -> ChatResult<(Channel, Permissions)> {
        let (channel, perms) = self.channel_access(thread_id, user_id).await?;
        if !channel.kind.is_thread() {
            return Err(ChatError::field("channel_id", "not a thread"));
        }
        Ok((channel, perms))
    }

    /// Renames, archives, locks or re-tags a thread. Its creator may rename, archive, reopen
    /// (unless locked) and re-tag it; MANAGE_THREADS may do all of that and lock it.
    pub async fn update_thread(
        &self,
        thread_id: ChannelId,
        user_id: UserId,
        patch: ThreadPatch,
    ) -> ChatResult<Channel> {
        let (channel, perms) = self.thread_access(thread_id, user_id).await?;
        let current = self.thread_by_id(thread_id).await?;
        let meta = current.thread_metadata.clone().expect("a thread");
        let manage = permissions::has(perms, permissions::MANAGE_THREADS);
        let owner = channel.owner_id == Some(user_id);
        if !(manage || owner) {
            return Err(ChatError::Forbidden("you may not manage this thread"));
        }
        if patch.locked.is_some_and(|l| l != meta.locked) && !manage {
            return Err(ChatError::Forbidden("only MANAGE_THREADS may lock threads"));
        }
        if meta.locked && patch.archived == Some(false) && !manage {
            return Err(ChatError::Forbidden(
                "only MANAGE_THREADS may reopen a locked thread",
            ));
        }
        let mut v = Validator::default();
        check_duration(&mut v, patch.auto_archive_minutes);
        if let Some(tags) = &patch.applied_tags {
            let known: Vec<i64> =
                sqlx::query_scalar("SELECT id FROM forum_tags WHERE channel_id = $1")
                    .bind(channel.parent_id)
                    .fetch_all(&self.pool)
                    .await?;
            v.check(
                tags.len() <= MAX_POST_TAGS,
                "applied_tags",
                "at most 5 tags",
            );
            v.check(
                tags.iter().all(|t| known.contains(&t.0)),
                "applied_tags",
                "each tag must be one of the forum's",
            );
        }
        v.finish()?;
        let tags: Option<Vec<i64>> = patch.applied_tags.map(|t| {
            let mut t: Vec<i64> = t.iter().map(|s| s.0).collect();
            t.sort();
            t.dedup();
            t
        });
        let mut tx = self.pool.begin().await?;
        if let Some(name) = &patch.name {
            sqlx::query("UPDATE channels SET name = $2 WHERE id = $1")
                .bind(thread_id)
                .bind(name.as_str())
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query(
            "UPDATE threads SET
                 archived = coalesce($2, archived),
                 archived_at = CASE WHEN $2 IS NOT NULL AND $2 <> archived THEN now() ELSE archived_at END,
                 -- Reopening counts as activity, or the worker would archive it again at once.
                 last_activity_at = CASE WHEN $2 = false AND archived THEN now() ELSE last_activity_at END,
                 locked = coalesce($3, locked),
                 auto_archive_minutes = coalesce($4, auto_archive_minutes),
                 applied_tags = coalesce($5, applied_tags)
             WHERE channel_id = $1",
        )
        .bind(thread_id)
        .bind(patch.archived)
        .bind(patch.locked)
        .bind(patch.auto_archive_minutes)
        .bind(tags)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        self.thread_by_id(thread_id).await
    }

    /// Archives threads idle for longer than their auto-archive duration (at most 500 per
    /// call) and returns them.
    pub async fn archive_idle_threads(&self) -> ChatResult<Vec<Channel>> {
        let ids: Vec<ChannelId> = sqlx::query_scalar(
            "UPDATE threads SET archived = true, archived_at = now()
             WHERE channel_id IN (SELECT channel_id FROM threads
                 WHERE NOT archived
                   AND last_activity_at < now() - make_interval(mins => auto_archive_minutes)
                 ORDER BY last_activity_at LIMIT $1 FOR UPDATE SKIP LOCKED)
             RETURNING channel_id",
        )
        .bind(ARCHIVE_BATCH)
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            out.push(self.thread_by_id(id).await?);
        }
        Ok(out)
    }
}
