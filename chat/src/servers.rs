//! Servers (guilds): creating, renaming and deleting them, the snapshot clients load, and
//! which servers a user belongs to. Membership is in `members`, invites in `invites`.

use crate::model::{ChannelKind, Server, ServerSnapshot};
use crate::{permissions, ChannelId, ServerId, UserId};
use crate::{Chat, ChatError, ChatResult, Name};

/// Most servers one user may own.
pub const MAX_OWNED_SERVERS: i64 = 100;

impl Chat {
    pub async fn create_server(&self, owner: UserId, name: &Name) -> ChatResult<ServerSnapshot> {
        let owned: i64 = sqlx::query_scalar("SELECT count(*) FROM servers WHERE owner_id = $1")
            .bind(owner)
            .fetch_one(&self.pool)
            .await?;
        if owned >= MAX_OWNED_SERVERS {
            return Err(ChatError::Conflict(format!(
                "you already own {MAX_OWNED_SERVERS} servers"
            )));
        }
        let id: ServerId = self.next_id();
        let mut tx = self.pool.begin().await?;
        let server: Server = sqlx::query_as(
            "INSERT INTO servers (id, name, owner_id) VALUES ($1, $2, $3)
             RETURNING id, name, owner_id, created_at, icon_url",
        )
        .bind(id)
        .bind(name.as_str())
        .bind(owner)
        .fetch_one(&mut *tx)
        .await?;
        // @everyone shares the server's id (`RoleId::everyone`).
        sqlx::query(
            "INSERT INTO roles (id, server_id, name, permissions) VALUES ($1, $1, '@everyone', $2)",
        )
        .bind(id)
        .bind(permissions::EVERYONE_DEFAULT)
        .execute(&mut *tx)
        .await?;
        sqlx::query("INSERT INTO members (server_id, user_id) VALUES ($1, $2)")
            .bind(id)
            .bind(owner)
            .execute(&mut *tx)
            .await?;
        for (pos, (kind, name)) in [
            (ChannelKind::Text, "general"),
            (ChannelKind::Voice, "General"),
        ]
        .into_iter()
        .enumerate()
        {
            sqlx::query("INSERT INTO channels (id, server_id, kind, name, position) VALUES ($1, $2, $3, $4, $5)")
                .bind(self.next_id::<ChannelId>())
                .bind(id)
                .bind(kind.as_str())
                .bind(name)
                .bind(pos as i32)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        let _ = server;
        self.server_snapshot(id).await
    }

    pub async fn server(&self, server_id: ServerId, user_id: UserId) -> ChatResult<Server> {
        self.server_permissions(server_id, user_id).await?;
        self.server_row(server_id).await
    }

    pub(crate) async fn server_row(&self, server_id: ServerId) -> ChatResult<Server> {
        sqlx::query_as("SELECT id, name, owner_id, created_at, icon_url FROM servers WHERE id = $1")
            .bind(server_id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or(ChatError::NotFound("server"))
    }

    /// A server with its channels and members (no permission check: callers have done it).
    pub async fn server_snapshot(&self, server_id: ServerId) -> ChatResult<ServerSnapshot> {
        Ok(ServerSnapshot {
            server: self.server_row(server_id).await?,
            channels: self.channels_of(server_id).await?,
            members: self.members_of(server_id).await?,
            emojis: self.server_emojis(server_id).await?,
            stickers: self.server_stickers(server_id).await?,
        })
    }

    /// A server with its channels and only the members among `user_ids` (a large server's
    /// READY; no permission check).
    pub async fn server_snapshot_of(
        &self,
        server_id: ServerId,
        user_ids: &[UserId],
    ) -> ChatResult<ServerSnapshot> {
        Ok(ServerSnapshot {
            server: self.server_row(server_id).await?,
            channels: self.channels_of(server_id).await?,
            members: self.members_by_ids(server_id, user_ids).await?,
            emojis: self.server_emojis(server_id).await?,
            stickers: self.server_stickers(server_id).await?,
        })
    }

    pub async fn servers_of(&self, user_id: UserId) -> ChatResult<Vec<Server>> {
        Ok(sqlx::query_as(
            "SELECT s.id, s.name, s.owner_id, s.created_at, s.icon_url FROM servers s
             JOIN members m ON m.server_id = s.id WHERE m.user_id = $1 ORDER BY m.joined_at, s.id",
        )
        .bind(user_id)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Ids of the servers a user belongs to (gateway routing).
    pub async fn server_ids_of(&self, user_id: UserId) -> ChatResult<Vec<ServerId>> {
        Ok(
            sqlx::query_scalar("SELECT server_id FROM members WHERE user_id = $1")
                .bind(user_id)
                .fetch_all(&self.pool)
                .await?,
        )
    }

    pub async fn rename_server(
        &self,
        server_id: ServerId,
        user_id: UserId,
        name: &Name,
    ) -> ChatResult<Server> {
        self.require(
            server_id,
            user_id,
            permissions::MANAGE_SERVER,
            "you may not manage this server",
        )
        .await?;
        let before = self.server_row(server_id).await?;
        let mut tx = self.pool.begin().await?;
        let server: Server = sqlx::query_as(
            "UPDATE servers SET name = $2 WHERE id = $1 RETURNING id, name, owner_id, created_at, icon_url",
        )
        .bind(server_id)
        .bind(name.as_str())
        .fetch_optional(&mut *tx)
        .await?
        .ok_or(ChatError::NotFound("server"))?;
        let changes = crate::roles::diff(&serde_json::json!(before), &serde_json::json!(server));
        self.audit(
            &mut tx,
            server_id,
            crate::audit::Actor::new(user_id, None),
            "server_update",
            Some(server_id.snowflake()),
            changes,
        )
        .await?;
        tx.commit().await?;
        Ok(server)
    }

    /// Deletes a server (owner only). Returns the ids of its members, to tell them.
    pub async fn delete_server(
        &self,
        server_id: ServerId,
        user_id: UserId,
    ) -> ChatResult<Vec<UserId>> {
        let server = self.server(server_id, user_id).await?;
        if server.owner_id != user_id {
            return Err(ChatError::Forbidden("only the owner may delete a server"));
        }
        let members: Vec<UserId> =
            sqlx::query_scalar("SELECT user_id FROM members WHERE server_id = $1")
                .bind(server_id)
                .fetch_all(&self.pool)
                .await?;
        sqlx::query("DELETE FROM servers WHERE id = $1")
            .bind(server_id)
            .execute(&self.pool)
            .await?;
        Ok(members)
    }
}
