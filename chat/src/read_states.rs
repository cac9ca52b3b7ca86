//! Read states: the last message a user acknowledged in each channel, and how many messages
//! after it mention them (directly, through one of their roles, or @everyone by someone allowed
//! to). Nothing is written when a message is sent; counts are taken on ack and for READY.

use crate::permissions::{self, ChannelOverwrites, MemberContext, Overwrite, Permissions};
use crate::{
    ChannelId, Chat, ChatError, ChatResult, MessageId, RoleId, ServerId, Snowflake, UserId,
};
use serde::Serialize;
use std::collections::{HashMap, HashSet};
use utoipa::ToSchema;

/// Mention counts stop here (a badge shows "100+" at most).
pub const MAX_MENTIONS: i64 = 100;

#[derive(Debug, Clone, Serialize, ToSchema, PartialEq, sqlx::FromRow)]
pub struct ReadState {
    pub channel_id: ChannelId,
    /// The last message acknowledged; null when the channel was never read.
    pub last_message_id: Option<MessageId>,
    /// Messages after it that mention the user (at most 100).
    pub mention_count: i64,
}

/// Mentions of user `$1` in channel `ch` after message `after`, whose roles (as text) are
/// `roles`. The first condition repeats the partial index's predicate so the planner uses it.
const COUNT_MENTIONS: &str = "(SELECT count(*) FROM (SELECT 1 FROM messages m
        WHERE m.channel_id = ch AND m.id > after AND m.author_id <> $1
          AND (m.mention_everyone OR m.mentions <> '[]'::jsonb OR m.mention_roles <> '[]'::jsonb)
          AND (m.mention_everyone OR m.mentions ? $1::text OR m.mention_roles ?| roles)
        LIMIT 100) x)";

impl Chat {
    /// Marks a channel read up to `message_id` (a message of that channel).
    pub async fn ack(
        &self,
        channel_id: ChannelId,
        message_id: MessageId,
        user_id: UserId,
    ) -> ChatResult<ReadState> {
        let (channel, _) = self.channel_access(channel_id, user_id).await?;
        if !channel.kind.is_textual() {
            return Err(ChatError::field(
                "channel_id",
                "only text channels and DMs have messages",
            ));
        }
        let exists: Option<i32> =
            sqlx::query_scalar("SELECT 1 FROM messages WHERE id = $1 AND channel_id = $2")
                .bind(message_id)
                .bind(channel_id)
                .fetch_optional(&self.pool)
                .await?;
        if exists.is_none() {
            return Err(ChatError::NotFound("message"));
        }
        let roles = self.role_texts(channel.server_id, user_id).await?;
        let state: ReadState = sqlx::query_as(q!(
            "INSERT INTO read_states AS rs (user_id, channel_id, last_message_id, mention_count)
             SELECT $1, ch, after, {COUNT_MENTIONS}
             FROM (SELECT $2::bigint AS ch, $3::bigint AS after, $4::text[] AS roles) p
             ON CONFLICT (user_id, channel_id) DO UPDATE
                 SET last_message_id = excluded.last_message_id,
                     mention_count = excluded.mention_count, updated_at = now()
             RETURNING channel_id, last_message_id, mention_count::bigint"
        ))
        .bind(user_id)
        .bind(channel_id)
        .bind(message_id)
        .bind(&roles)
        .fetch_one(&self.pool)
        .await?;
        Ok(state)
    }

    /// The user's role ids in a server, as text (how mentions store them).
    async fn role_texts(
        &self,
        server_id: Option<ServerId>,
        user_id: UserId,
    ) -> ChatResult<Vec<String>> {
        let Some(server_id) = server_id else {
            return Ok(Vec::new());
        };
        Ok(sqlx::query_scalar(
            "SELECT role_id::text FROM member_roles WHERE server_id = $1 AND user_id = $2",
        )
        .bind(server_id)
        .bind(user_id)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Sets `last_message_id` on the text channels among `channels` that are in `visible`
    /// (what `viewable_channels` returned): clients compare it with their read state to show
    /// unread channels, and a hidden channel's activity is nobody else's business.
    pub async fn fill_last_message_ids(
        &self,
        visible: &HashSet<ChannelId>,
        channels: &mut [crate::model::Channel],
    ) -> ChatResult<()> {
        let ids: Vec<i64> = channels
            .iter()
            .filter(|c| c.kind.is_textual() && visible.contains(&c.id))
            .map(|c| c.id.get())
            .collect();
        let last = self.last_message_ids(&ids).await?;
        for c in channels.iter_mut() {
            c.last_message_id = last.get(&c.id).copied();
        }
        Ok(())
    }

    /// Read states of every text channel the user can view, every thread they are in and every
    /// DM they are in (READY).
    pub async fn read_states(&self, user_id: UserId) -> ChatResult<Vec<ReadState>> {
        let visible = self.viewable_channels(user_id).await?;
        self.read_states_in(user_id, &visible).await
    }

    /// `read_states` with the viewable channels already known.
    pub async fn read_states_in(
        &self,
        user_id: UserId,
        visible: &HashSet<ChannelId>,
    ) -> ChatResult<Vec<ReadState>> {
        let rows: Vec<ReadState> = sqlx::query_as(q!("WITH mine AS (
                 SELECT c.id, c.server_id FROM channels c
                 JOIN members mb ON mb.server_id = c.server_id AND mb.user_id = $1
                 WHERE c.kind = 'text'
                 UNION ALL
                 -- Threads count for their members only, as on Discord.
                 SELECT c.id, c.server_id FROM thread_members tm
                 JOIN channels c ON c.id = tm.channel_id WHERE tm.user_id = $1
                 UNION ALL
                 SELECT d.channel_id, NULL FROM dm_recipients d WHERE d.user_id = $1
             ), my_roles AS (
                 SELECT server_id, array_agg(role_id::text) AS roles FROM member_roles
                 WHERE user_id = $1 GROUP BY server_id
             )
             SELECT channel_id, last_message_id, {COUNT_MENTIONS} AS mention_count
             FROM (SELECT mine.id AS ch, mine.id AS channel_id, rs.last_message_id,
                          coalesce(rs.last_message_id, 0) AS after,
                          coalesce(r.roles, '{{}}'::text[]) AS roles
                   FROM mine
                   LEFT JOIN read_states rs ON rs.user_id = $1 AND rs.channel_id = mine.id
                   LEFT JOIN my_roles r ON r.server_id = mine.server_id) p"))
        .bind(user_id)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .filter(|r| visible.contains(&r.channel_id))
            .collect())
    }

    /// Every channel the user may view: server channels by exact permissions (roles and
    /// overwrites, three queries for all servers) and their DMs.
    pub async fn viewable_channels(&self, user_id: UserId) -> ChatResult<HashSet<ChannelId>> {
        #[derive(sqlx::FromRow)]
        struct ServerRow {
            server_id: ServerId,
            owner_id: UserId,
            everyone: Option<Permissions>,
            timeout_until: Option<chrono::DateTime<chrono::Utc>>,
            role_ids: Vec<i64>,
            role_perms: Vec<Permissions>,
        }
        let servers: Vec<ServerRow> = sqlx::query_as(
            "SELECT m.server_id, s.owner_id, ev.permissions AS everyone, m.timeout_until,
                    coalesce(array_agg(r.id) FILTER (WHERE r.id IS NOT NULL), '{}') AS role_ids,
                    coalesce(array_agg(r.permissions) FILTER (WHERE r.id IS NOT NULL), '{}') AS role_perms
             FROM members m
             JOIN servers s ON s.id = m.server_id
             LEFT JOIN roles ev ON ev.id = s.id
             LEFT JOIN member_roles mr ON mr.server_id = m.server_id AND mr.user_id = m.user_id
             LEFT JOIN roles r ON r.id = mr.role_id
             WHERE m.user_id = $1
             GROUP BY m.server_id, s.owner_id, ev.permissions, m.timeout_until",
        )
        .bind(user_id)
        .fetch_all(&self.pool)
        .await?;
        let channels: Vec<(ChannelId, ServerId, Option<ChannelId>, bool)> = sqlx::query_as(
            "SELECT c.id, c.server_id, c.parent_id, c.permissions_synced FROM channels c
             JOIN members mb ON mb.server_id = c.server_id AND mb.user_id = $1
             WHERE c.kind NOT IN ('public_thread', 'private_thread')",
        )
        .bind(user_id)
        .fetch_all(&self.pool)
        .await?;
        let overwrites: Vec<(ChannelId, Snowflake, String, Permissions, Permissions)> = sqlx::query_as(
            "SELECT o.channel_id, o.target_id, o.kind, o.allow, o.deny FROM channel_overwrites o
             JOIN channels c ON c.id = o.channel_id
             JOIN members mb ON mb.server_id = c.server_id AND mb.user_id = $1",
        )
        .bind(user_id)
        .fetch_all(&self.pool)
        .await?;
        type Row = (Snowflake, String, Permissions, Permissions);
        let mut by_channel: HashMap<ChannelId, Vec<Row>> = HashMap::new();
        for (ch, target, kind, allow, deny) in overwrites {
            by_channel
                .entry(ch)
                .or_default()
                .push((target, kind, allow, deny));
        }
        let servers: HashMap<ServerId, ServerRow> =
            servers.into_iter().map(|s| (s.server_id, s)).collect();
        let mut out = HashSet::new();
        // Visible channels: whether the user holds MANAGE_THREADS there.
        let mut manage_threads: HashMap<ChannelId, bool> = HashMap::new();
        for (id, server_id, parent, synced) in channels {
            let Some(s) = servers.get(&server_id) else {
                continue;
            };
            let ctx = MemberContext {
                is_owner: s.owner_id == user_id,
                everyone: s.everyone.unwrap_or(permissions::EVERYONE_DEFAULT),
                roles: s.role_perms.clone(),
                timed_out: s.timeout_until.is_some_and(|t| t > chrono::Utc::now()),
            };
            let source = match (synced, parent) {
                (true, Some(p)) => p,
                _ => id,
            };
            let mut o = ChannelOverwrites::default();
            for (target, kind, allow, deny) in by_channel.get(&source).into_iter().flatten() {
                let ow = Overwrite {
                    allow: *allow,
                    deny: *deny,
                };
                match kind.as_str() {
                    "role" if RoleId::new(*target).is_everyone(server_id) => o.everyone = Some(ow),
                    "role" if s.role_ids.contains(&target.get()) => o.roles.push(ow),
                    "member" if UserId::new(*target) == user_id => o.member = Some(ow),
                    _ => {}
                }
            }
            let perms = permissions::in_channel(&ctx, &o);
            if permissions::has(perms, permissions::VIEW_CHANNEL) {
                out.insert(id);
                manage_threads.insert(id, permissions::has(perms, permissions::MANAGE_THREADS));
            }
        }
        // Threads of visible channels: the active ones and those the user is in, private ones
        // only for their members and MANAGE_THREADS holders. Archived threads the user never
        // joined are left out (a busy channel may hold thousands); opening one checks access
        // on its own.
        let threads: Vec<(ChannelId, ChannelId, bool, bool)> = sqlx::query_as(
            "SELECT t.channel_id, t.parent_id, t.private, tm.user_id IS NOT NULL
             FROM threads t
             JOIN channels c ON c.id = t.channel_id
             JOIN members mb ON mb.server_id = c.server_id AND mb.user_id = $1
             LEFT JOIN thread_members tm ON tm.channel_id = t.channel_id AND tm.user_id = $1
             WHERE NOT t.archived OR tm.user_id IS NOT NULL",
        )
        .bind(user_id)
        .fetch_all(&self.pool)
        .await?;
        for (id, parent, private, member) in threads {
            if let Some(manage) = manage_threads.get(&parent) {
                if !private || member || *manage {
                    out.insert(id);
                }
            }
        }
        let dms: Vec<ChannelId> =
            sqlx::query_scalar("SELECT channel_id FROM dm_recipients WHERE user_id = $1")
                .bind(user_id)
                .fetch_all(&self.pool)
                .await?;
        out.extend(dms);
        Ok(out)
    }
}
