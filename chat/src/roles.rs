//! Roles (hierarchy by position), member roles and channel permission overwrites. A member
//! manages only roles strictly below their highest role and cannot grant permissions they do
//! not hold; the owner and administrators hold everything.

use crate::audit::Actor;
use crate::error::Validator;
use crate::permissions::{self, Permissions};
use crate::{ChannelId, Chat, ChatError, ChatResult, Name, RoleId, ServerId, Snowflake, UserId};
use serde::Serialize;
use serde_json::json;
use utoipa::ToSchema;

#[derive(Debug, Clone, Serialize, ToSchema, sqlx::FromRow, PartialEq)]
pub struct Role {
    pub id: RoleId,
    pub server_id: ServerId,
    pub name: String,
    /// Permission bits as a decimal string (64-bit; see docs/permissions.md).
    #[schema(value_type = String)]
    pub permissions: Permissions,
    /// Hierarchy: higher is more senior; @everyone is 0.
    pub position: i32,
    pub color: i32,
    pub hoist: bool,
    pub mentionable: bool,
}

#[derive(Debug, Clone, Default)]
pub struct RolePatch {
    pub name: Option<Name>,
    pub permissions: Option<Permissions>,
    pub position: Option<i32>,
    pub color: Option<i32>,
    pub hoist: Option<bool>,
    pub mentionable: Option<bool>,
}

/// One channel overwrite as clients see it.
#[derive(Debug, Clone, Serialize, ToSchema, sqlx::FromRow, PartialEq)]
pub struct PermissionOverwrite {
    /// Role id (the server id for @everyone) or user id.
    #[sqlx(rename = "target_id")]
    pub id: Snowflake,
    /// `"role"` or `"member"`.
    #[serde(rename = "type")]
    pub kind: String,
    #[schema(value_type = String)]
    pub allow: Permissions,
    #[schema(value_type = String)]
    pub deny: Permissions,
}

/// The `name` field error of a role update: a bad name, or any name for @everyone.
pub const EVERYONE_NAME_RULE: &str = "must be 1-100 characters (@everyone cannot be renamed)";

const ROLE_COLUMNS: &str = "id, server_id, name, permissions, position, color, hoist, mentionable";

/// Most roles in one server.
pub const MAX_ROLES: i64 = 250;

impl Chat {
    pub async fn roles(&self, server_id: ServerId, user_id: UserId) -> ChatResult<Vec<Role>> {
        self.server_permissions(server_id, user_id).await?;
        Ok(sqlx::query_as(q!(
            "SELECT {ROLE_COLUMNS} FROM roles WHERE server_id = $1 ORDER BY position, id"
        ))
        .bind(server_id)
        .fetch_all(&self.pool)
        .await?)
    }

    async fn role_row(&self, server_id: ServerId, role_id: RoleId) -> ChatResult<Role> {
        sqlx::query_as(q!(
            "SELECT {ROLE_COLUMNS} FROM roles WHERE id = $1 AND server_id = $2"
        ))
        .bind(role_id)
        .bind(server_id)
        .fetch_optional(&self.pool)
        .await?
        .ok_or(ChatError::NotFound("role"))
    }

    /// A role other than @everyone that the actor (with MANAGE_ROLES) ranks above.
    async fn manageable_role(
        &self,
        server_id: ServerId,
        role_id: RoleId,
        actor: UserId,
    ) -> ChatResult<Role> {
        let access = self
            .require_access(
                server_id,
                actor,
                permissions::MANAGE_ROLES,
                "you may not manage roles",
            )
            .await?;
        if role_id.is_everyone(server_id) {
            return Err(ChatError::field(
                "role_id",
                "@everyone cannot be deleted or assigned",
            ));
        }
        let role = self.role_row(server_id, role_id).await?;
        if !access.outranks_position(role.position) {
            return Err(ChatError::Forbidden(
                "you can only manage roles below your highest role",
            ));
        }
        Ok(role)
    }

    fn check_grant(actor_base: Permissions, wanted: Permissions) -> ChatResult<()> {
        if !permissions::ALL.contains(wanted) {
            return Err(ChatError::field(
                "permissions",
                "contains unknown permission bits",
            ));
        }
        if !actor_base.contains(permissions::ADMINISTRATOR) && !actor_base.contains(wanted) {
            return Err(ChatError::Forbidden(
                "you cannot grant permissions you do not have",
            ));
        }
        Ok(())
    }

    /// Creates a role just above @everyone (MANAGE_ROLES).
    pub async fn create_role(
        &self,
        server_id: ServerId,
        actor: Actor<'_>,
        name: &Name,
        patch: RolePatch,
    ) -> ChatResult<Role> {
        let access = self
            .require_access(
                server_id,
                actor.user_id,
                permissions::MANAGE_ROLES,
                "you may not manage roles",
            )
            .await?;
        let perms = patch.permissions.unwrap_or_default();
        let mut v = Validator::default();
        if let Some(c) = patch.color {
            v.check(
                (0..=0xFF_FFFF).contains(&c),
                "color",
                "must be an RGB value 0-16777215",
            );
        }
        v.finish()?;
        Self::check_grant(access.base(), perms)?;
        let mut tx = self.pool.begin().await?;
        let count: i64 = sqlx::query_scalar("SELECT count(*) FROM roles WHERE server_id = $1")
            .bind(server_id)
            .fetch_one(&mut *tx)
            .await?;
        if count >= MAX_ROLES {
            return Err(ChatError::Conflict(format!(
                "a server has at most {MAX_ROLES} roles"
            )));
        }
        // New roles go to position 1; the others move up one.
        sqlx::query(
            "UPDATE roles SET position = position + 1 WHERE server_id = $1 AND position >= 1",
        )
        .bind(server_id)
        .execute(&mut *tx)
        .await?;
        let role: Role = sqlx::query_as(q!(
            "INSERT INTO roles (id, server_id, name, permissions, position, color, hoist, mentionable)
             VALUES ($1, $2, $3, $4, 1, $5, $6, $7) RETURNING {ROLE_COLUMNS}"
        ))
        .bind(self.next_id::<RoleId>())
        .bind(server_id)
        .bind(name.as_str())
        .bind(perms)
        .bind(patch.color.unwrap_or(0))
        .bind(patch.hoist.unwrap_or(false))
        .bind(patch.mentionable.unwrap_or(false))
        .fetch_one(&mut *tx)
        .await?;
        self.audit(
            &mut tx,
            server_id,
            actor,
            "role_create",
            Some(role.id.snowflake()),
            json!(role),
        )
        .await?;
        tx.commit().await?;
        Ok(role)
    }

    pub async fn update_role(
        &self,
        server_id: ServerId,
        role_id: RoleId,
        actor: Actor<'_>,
        patch: RolePatch,
    ) -> ChatResult<Role> {
        let access = self
            .require_access(
                server_id,
                actor.user_id,
                permissions::MANAGE_ROLES,
                "you may not manage roles",
            )
            .await?;
        let before = self.role_row(server_id, role_id).await?;
        let is_everyone = role_id.is_everyone(server_id);
        if !is_everyone && !access.outranks_position(before.position) {
            return Err(ChatError::Forbidden(
                "you can only manage roles below your highest role",
            ));
        }
        let mut v = Validator::default();
        if patch.name.is_some() {
            v.check(!is_everyone, "name", EVERYONE_NAME_RULE);
        }
        if let Some(c) = patch.color {
            v.check(
                (0..=0xFF_FFFF).contains(&c),
                "color",
                "must be an RGB value 0-16777215",
            );
        }
        if let Some(p) = patch.position {
            v.check(
                !is_everyone && p >= 1,
                "position",
                "must be 1 or more (@everyone stays at 0)",
            );
            if !access.context.is_owner && p >= access.top_position {
                return Err(ChatError::Forbidden(
                    "you can only move roles below your highest role",
                ));
            }
        }
        v.finish()?;
        if let Some(p) = patch.permissions {
            Self::check_grant(access.base(), p)?;
        }
        let mut tx = self.pool.begin().await?;
        let role: Role = sqlx::query_as(q!(
            "UPDATE roles SET name = coalesce($3, name), permissions = coalesce($4, permissions),
                 position = coalesce($5, position), color = coalesce($6, color),
                 hoist = coalesce($7, hoist), mentionable = coalesce($8, mentionable)
             WHERE id = $1 AND server_id = $2 RETURNING {ROLE_COLUMNS}"
        ))
        .bind(role_id)
        .bind(server_id)
        .bind(patch.name.as_ref().map(Name::as_str))
        .bind(patch.permissions)
        .bind(patch.position)
        .bind(patch.color)
        .bind(patch.hoist)
        .bind(patch.mentionable)
        .fetch_one(&mut *tx)
        .await?;
        let changes = diff(&json!(before), &json!(role));
        self.audit(
            &mut tx,
            server_id,
            actor,
            "role_update",
            Some(role_id.snowflake()),
            changes,
        )
        .await?;
        tx.commit().await?;
        Ok(role)
    }

    pub async fn delete_role(
        &self,
        server_id: ServerId,
        role_id: RoleId,
        actor: Actor<'_>,
    ) -> ChatResult<Role> {
        let role = self
            .manageable_role(server_id, role_id, actor.user_id)
            .await?;
        if self.bot_of_role(role_id).await?.is_some() {
            return Err(ChatError::Forbidden(
                "this role belongs to a bot: remove the bot first",
            ));
        }
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM roles WHERE id = $1")
            .bind(role_id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM channel_overwrites WHERE target_id = $1 AND kind = 'role'")
            .bind(role_id)
            .execute(&mut *tx)
            .await?;
        self.audit(
            &mut tx,
            server_id,
            actor,
            "role_delete",
            Some(role_id.snowflake()),
            json!(role),
        )
        .await?;
        tx.commit().await?;
        Ok(role)
    }

    /// Gives (`add`) or takes a role from a member (MANAGE_ROLES, role below the actor's).
    pub async fn set_member_role(
        &self,
        server_id: ServerId,
        target: UserId,
        role_id: RoleId,
        add: bool,
        actor: Actor<'_>,
    ) -> ChatResult<Vec<RoleId>> {
        self.manageable_role(server_id, role_id, actor.user_id)
            .await?;
        if self.member_access(server_id, target).await?.is_none() {
            return Err(ChatError::NotFound("member"));
        }
        if add
            && self
                .bot_of_role(role_id)
                .await?
                .is_some_and(|bot| bot != target)
        {
            return Err(ChatError::Forbidden(
                "this role belongs to a bot and cannot be given to others",
            ));
        }
        let mut tx = self.pool.begin().await?;
        let changed = if add {
            sqlx::query("INSERT INTO member_roles (server_id, user_id, role_id) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING")
        } else {
            sqlx::query("DELETE FROM member_roles WHERE server_id = $1 AND user_id = $2 AND role_id = $3")
        }
        .bind(server_id)
        .bind(target)
        .bind(role_id)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            > 0;
        if changed {
            let key = if add { "$add" } else { "$remove" };
            self.audit(
                &mut tx,
                server_id,
                actor,
                "member_role_update",
                Some(target.snowflake()),
                json!({ key: [role_id] }),
            )
            .await?;
        }
        tx.commit().await?;
        self.member_role_ids(server_id, target).await
    }

    pub async fn member_role_ids(
        &self,
        server_id: ServerId,
        user_id: UserId,
    ) -> ChatResult<Vec<RoleId>> {
        Ok(sqlx::query_scalar("SELECT role_id FROM member_roles WHERE server_id = $1 AND user_id = $2 ORDER BY role_id")
            .bind(server_id)
            .bind(user_id)
            .fetch_all(&self.pool)
            .await?)
    }

    pub async fn overwrites(
        &self,
        channel_id: ChannelId,
        user_id: UserId,
    ) -> ChatResult<Vec<PermissionOverwrite>> {
        self.channel_access(channel_id, user_id).await?;
        Ok(sqlx::query_as("SELECT target_id, kind, allow, deny FROM channel_overwrites WHERE channel_id = $1 ORDER BY target_id")
            .bind(channel_id)
            .fetch_all(&self.pool)
            .await?)
    }

    /// Sets a channel overwrite (MANAGE_ROLES in the channel; only bits the actor holds there).
    pub async fn put_overwrite(
        &self,
        channel_id: ChannelId,
        target: Snowflake,
        kind: &str,
        allow: Permissions,
        deny: Permissions,
        actor: Actor<'_>,
    ) -> ChatResult<PermissionOverwrite> {
        let (channel, perms) = self.channel_access(channel_id, actor.user_id).await?;
        // DMs have no roles to overwrite.
        let server_id = match channel.server_id {
            Some(s) if permissions::has(perms, permissions::MANAGE_ROLES) => s,
            _ => {
                return Err(ChatError::Forbidden(
                    "you may not manage permissions of this channel",
                ))
            }
        };
        let mut v = Validator::default();
        v.check(
            kind == "role" || kind == "member",
            "type",
            "must be \"role\" or \"member\"",
        );
        v.check(
            !allow.intersects(deny),
            "allow",
            "a bit cannot be both allowed and denied",
        );
        v.finish()?;
        Self::check_grant(perms, allow | deny)?;
        match kind {
            "role" => {
                self.role_row(server_id, RoleId::new(target)).await?;
            }
            _ => {
                if self
                    .member_access(server_id, UserId::new(target))
                    .await?
                    .is_none()
                {
                    return Err(ChatError::NotFound("member"));
                }
            }
        }
        let mut tx = self.pool.begin().await?;
        let ow: PermissionOverwrite = sqlx::query_as(
            "INSERT INTO channel_overwrites (channel_id, target_id, kind, allow, deny) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (channel_id, target_id) DO UPDATE SET kind = $3, allow = $4, deny = $5
             RETURNING target_id, kind, allow, deny",
        )
        .bind(channel_id)
        .bind(target)
        .bind(kind)
        .bind(allow)
        .bind(deny)
        .fetch_one(&mut *tx)
        .await?;
        // A channel with its own overwrites no longer follows its category.
        sqlx::query("UPDATE channels SET permissions_synced = false WHERE id = $1")
            .bind(channel_id)
            .execute(&mut *tx)
            .await?;
        self.audit(
            &mut tx,
            server_id,
            actor,
            "channel_overwrite_update",
            Some(channel_id.snowflake()),
            json!(ow),
        )
        .await?;
        tx.commit().await?;
        Ok(ow)
    }

    pub async fn delete_overwrite(
        &self,
        channel_id: ChannelId,
        target: Snowflake,
        actor: Actor<'_>,
    ) -> ChatResult<()> {
        let (channel, perms) = self.channel_access(channel_id, actor.user_id).await?;
        // DMs have no roles to overwrite.
        let server_id = match channel.server_id {
            Some(s) if permissions::has(perms, permissions::MANAGE_ROLES) => s,
            _ => {
                return Err(ChatError::Forbidden(
                    "you may not manage permissions of this channel",
                ))
            }
        };
        let mut tx = self.pool.begin().await?;
        let gone =
            sqlx::query("DELETE FROM channel_overwrites WHERE channel_id = $1 AND target_id = $2")
                .bind(channel_id)
                .bind(target)
                .execute(&mut *tx)
                .await?
                .rows_affected();
        if gone == 0 {
            return Err(ChatError::NotFound("overwrite"));
        }
        self.audit(
            &mut tx,
            server_id,
            actor,
            "channel_overwrite_delete",
            Some(channel_id.snowflake()),
            json!({"id": target}),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }
}

/// `{"field": {"old": a, "new": b}}` for the fields that differ.
pub(crate) fn diff(before: &serde_json::Value, after: &serde_json::Value) -> serde_json::Value {
    let mut out = serde_json::Map::new();
    if let (Some(b), Some(a)) = (before.as_object(), after.as_object()) {
        for (k, new) in a {
            let old = b.get(k).cloned().unwrap_or(serde_json::Value::Null);
            if &old != new {
                out.insert(k.clone(), json!({"old": old, "new": new}));
            }
        }
    }
    serde_json::Value::Object(out)
}
