//! Loading what decides permissions (a member's roles, a channel's overwrites) and computing
//! them with `permissions::{base, in_channel}`. Every service asks here.

use crate::model::Channel;
use crate::permissions::{self, ChannelOverwrites, MemberContext, Overwrite, Permissions};
use crate::{ChannelId, Chat, ChatError, ChatResult, RoleId, ServerId, Snowflake, UserId};
use chrono::{DateTime, Utc};

/// A member as permissions see them.
#[derive(Debug, Clone)]
pub struct MemberAccess {
    pub context: MemberContext,
    pub role_ids: Vec<RoleId>,
    /// Position of the member's highest role (0 = only @everyone); the owner ranks above all.
    pub top_position: i32,
    pub owner_id: UserId,
}

impl MemberAccess {
    pub fn base(&self) -> Permissions {
        permissions::base(&self.context)
    }

    /// Whether this member outranks a role at `position` (may manage it / members below it).
    pub fn outranks_position(&self, position: i32) -> bool {
        self.context.is_owner || self.top_position > position
    }
}

#[derive(sqlx::FromRow)]
struct MemberRow {
    owner_id: UserId,
    everyone: Option<Permissions>,
    timeout_until: Option<DateTime<Utc>>,
    role_ids: Vec<i64>,
    role_perms: Vec<Permissions>,
    role_positions: Vec<i32>,
}

impl Chat {
    /// The member's permission context, or None when they are not a member.
    pub async fn member_access(
        &self,
        server_id: ServerId,
        user_id: UserId,
    ) -> ChatResult<Option<MemberAccess>> {
        let started = std::time::Instant::now();
        let row: Option<MemberRow> = sqlx::query_as(
            "SELECT s.owner_id, ev.permissions AS everyone, m.timeout_until,
                    coalesce(array_agg(r.id) FILTER (WHERE r.id IS NOT NULL), '{}') AS role_ids,
                    coalesce(array_agg(r.permissions) FILTER (WHERE r.id IS NOT NULL), '{}') AS role_perms,
                    coalesce(array_agg(r.position) FILTER (WHERE r.id IS NOT NULL), '{}') AS role_positions
             FROM members m
             JOIN servers s ON s.id = m.server_id
             LEFT JOIN roles ev ON ev.id = s.id
             LEFT JOIN member_roles mr ON mr.server_id = m.server_id AND mr.user_id = m.user_id
             LEFT JOIN roles r ON r.id = mr.role_id
             WHERE m.server_id = $1 AND m.user_id = $2
             GROUP BY s.owner_id, ev.permissions, m.timeout_until",
        )
        .bind(server_id)
        .bind(user_id)
        .fetch_optional(&self.pool)
        .await?;
        crate::record_query("member_access", started);
        Ok(row.map(|r| {
            let is_owner = r.owner_id == user_id;
            MemberAccess {
                context: MemberContext {
                    is_owner,
                    everyone: r.everyone.unwrap_or(permissions::EVERYONE_DEFAULT),
                    roles: r.role_perms,
                    timed_out: r.timeout_until.is_some_and(|t| t > Utc::now()),
                },
                top_position: r.role_positions.iter().copied().max().unwrap_or(0),
                role_ids: r
                    .role_ids
                    .into_iter()
                    .map(|id| RoleId::new(Snowflake(id)))
                    .collect(),
                owner_id: r.owner_id,
            }
        }))
    }

    /// The member's permissions in a server; NotFound for non-members.
    pub async fn server_permissions(
        &self,
        server_id: ServerId,
        user_id: UserId,
    ) -> ChatResult<Permissions> {
        let access = self
            .member_access(server_id, user_id)
            .await?
            .ok_or(ChatError::NotFound("server"))?;
        Ok(access.base())
    }

    /// Requires a server permission; returns the member's access.
    pub(crate) async fn require_access(
        &self,
        server_id: ServerId,
        user_id: UserId,
        wanted: Permissions,
        what: &'static str,
    ) -> ChatResult<MemberAccess> {
        let access = self
            .member_access(server_id, user_id)
            .await?
            .ok_or(ChatError::NotFound("server"))?;
        if permissions::has(access.base(), wanted) {
            Ok(access)
        } else {
            Err(ChatError::Forbidden(what))
        }
    }

    pub(crate) async fn require(
        &self,
        server_id: ServerId,
        user_id: UserId,
        wanted: Permissions,
        what: &'static str,
    ) -> ChatResult<Permissions> {
        Ok(self
            .require_access(server_id, user_id, wanted, what)
            .await?
            .base())
    }

    /// The overwrites of a channel that apply to a member (the category's when synced).
    pub(crate) async fn overwrites_for(
        &self,
        channel: &Channel,
        synced: bool,
        access: &MemberAccess,
        user_id: UserId,
    ) -> ChatResult<ChannelOverwrites> {
        let source = match (synced, channel.parent_id) {
            (true, Some(parent)) => parent,
            _ => channel.id,
        };
        let everyone = channel.server_id.map(RoleId::everyone);
        // An overwrite's target is a role or a member, as its kind says.
        let rows: Vec<(Snowflake, String, Permissions, Permissions)> = sqlx::query_as(
            "SELECT target_id, kind, allow, deny FROM channel_overwrites WHERE channel_id = $1",
        )
        .bind(source)
        .fetch_all(&self.pool)
        .await?;
        let mut o = ChannelOverwrites::default();
        for (target, kind, allow, deny) in rows {
            let ow = Overwrite { allow, deny };
            match kind.as_str() {
                "role" if Some(RoleId::new(target)) == everyone => o.everyone = Some(ow),
                "role" if access.role_ids.contains(&RoleId::new(target)) => o.roles.push(ow),
                "member" if UserId::new(target) == user_id => o.member = Some(ow),
                _ => {}
            }
        }
        Ok(o)
    }
}

impl Chat {
    /// Who may see a channel: `None` when every member of its server may (no overwrites and
    /// @everyone has VIEW_CHANNEL), else the members who may. Used to route channel events.
    pub async fn channel_viewers(&self, channel_id: ChannelId) -> ChatResult<Option<Vec<UserId>>> {
        // (server, parent, permissions_synced, @everyone's permissions, kind); no server = a DM.
        type ChannelRow = (
            Option<ServerId>,
            Option<ChannelId>,
            bool,
            Option<Permissions>,
            String,
        );
        let row: Option<ChannelRow> = sqlx::query_as(
            "SELECT c.server_id, c.parent_id, c.permissions_synced, r.permissions, c.kind
             FROM channels c LEFT JOIN roles r ON r.id = c.server_id WHERE c.id = $1",
        )
        .bind(channel_id)
        .fetch_optional(&self.pool)
        .await?;
        let Some((server_id, parent, synced, everyone, kind)) = row else {
            return Ok(Some(Vec::new()));
        };
        if let (Some(parent), "public_thread" | "private_thread") = (parent, kind.as_str()) {
            // A public thread is seen by whoever sees its parent; a private one by those of
            // them who are in it or hold MANAGE_THREADS.
            if kind == "public_thread" {
                return Box::pin(self.channel_viewers(parent)).await;
            }
            let members: std::collections::HashSet<UserId> = self
                .thread_member_ids(channel_id)
                .await?
                .into_iter()
                .collect();
            let perms = Box::pin(self.channel_member_permissions(parent)).await?;
            return Ok(Some(
                perms
                    .into_iter()
                    .filter(|(u, p)| {
                        permissions::has(*p, permissions::VIEW_CHANNEL)
                            && (members.contains(u)
                                || permissions::has(*p, permissions::MANAGE_THREADS))
                    })
                    .map(|(u, _)| u)
                    .collect(),
            ));
        }
        let Some(server_id) = server_id else {
            // A DM: exactly its recipients.
            return Ok(Some(self.dm_recipient_ids(channel_id).await?));
        };
        let everyone = everyone.unwrap_or(permissions::EVERYONE_DEFAULT);
        let source = match (synced, parent) {
            (true, Some(p)) => p,
            _ => channel_id,
        };
        let overwrites: Vec<(Snowflake, String, Permissions, Permissions)> = sqlx::query_as(
            "SELECT target_id, kind, allow, deny FROM channel_overwrites WHERE channel_id = $1",
        )
        .bind(source)
        .fetch_all(&self.pool)
        .await?;
        if overwrites.is_empty() && permissions::has(everyone, permissions::VIEW_CHANNEL) {
            return Ok(None);
        }
        Ok(Some(
            self.member_permissions_with(server_id, everyone, &overwrites)
                .await?
                .into_iter()
                .filter(|(_, p)| permissions::has(*p, permissions::VIEW_CHANNEL))
                .map(|(u, _)| u)
                .collect(),
        ))
    }

    /// Every member's permissions in a server channel (not a thread); empty for a DM.
    pub async fn channel_member_permissions(
        &self,
        channel_id: ChannelId,
    ) -> ChatResult<Vec<(UserId, Permissions)>> {
        // (server, parent, permissions_synced, @everyone's permissions).
        type Row = (
            Option<ServerId>,
            Option<ChannelId>,
            bool,
            Option<Permissions>,
        );
        let row: Option<Row> = sqlx::query_as(
            "SELECT c.server_id, c.parent_id, c.permissions_synced, r.permissions
                 FROM channels c LEFT JOIN roles r ON r.id = c.server_id WHERE c.id = $1",
        )
        .bind(channel_id)
        .fetch_optional(&self.pool)
        .await?;
        let Some((Some(server_id), parent, synced, everyone)) = row else {
            return Ok(Vec::new());
        };
        let everyone = everyone.unwrap_or(permissions::EVERYONE_DEFAULT);
        let source = match (synced, parent) {
            (true, Some(p)) => p,
            _ => channel_id,
        };
        let overwrites: Vec<(Snowflake, String, Permissions, Permissions)> = sqlx::query_as(
            "SELECT target_id, kind, allow, deny FROM channel_overwrites WHERE channel_id = $1",
        )
        .bind(source)
        .fetch_all(&self.pool)
        .await?;
        self.member_permissions_with(server_id, everyone, &overwrites)
            .await
    }

    /// Every member's permissions under `overwrites` (one channel's).
    async fn member_permissions_with(
        &self,
        server_id: ServerId,
        everyone: Permissions,
        overwrites: &[(Snowflake, String, Permissions, Permissions)],
    ) -> ChatResult<Vec<(UserId, Permissions)>> {
        let members: Vec<(UserId, UserId, Vec<i64>, Vec<Permissions>)> = sqlx::query_as(
            "SELECT m.user_id, s.owner_id,
                    coalesce(array_agg(r.id) FILTER (WHERE r.id IS NOT NULL), '{}'),
                    coalesce(array_agg(r.permissions) FILTER (WHERE r.id IS NOT NULL), '{}')
             FROM members m JOIN servers s ON s.id = m.server_id
             LEFT JOIN member_roles mr ON mr.server_id = m.server_id AND mr.user_id = m.user_id
             LEFT JOIN roles r ON r.id = mr.role_id
             WHERE m.server_id = $1 GROUP BY m.user_id, s.owner_id",
        )
        .bind(server_id)
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::new();
        for (user_id, owner_id, role_ids, role_perms) in members {
            let ctx = MemberContext {
                is_owner: user_id == owner_id,
                everyone,
                roles: role_perms,
                timed_out: false,
            };
            let mut o = ChannelOverwrites::default();
            for (target, kind, allow, deny) in overwrites {
                let ow = Overwrite {
                    allow: *allow,
                    deny: *deny,
                };
                match kind.as_str() {
                    "role" if RoleId::new(*target).is_everyone(server_id) => o.everyone = Some(ow),
                    "role" if role_ids.contains(&target.get()) => o.roles.push(ow),
                    "member" if UserId::new(*target) == user_id => o.member = Some(ow),
                    _ => {}
                }
            }
            out.push((user_id, permissions::in_channel(&ctx, &o)));
        }
        Ok(out)
    }
}
