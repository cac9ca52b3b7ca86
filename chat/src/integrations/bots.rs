//! Bot accounts: users with a token of their own, added to a server with a role of their own.

use super::*;

/// A bot account of a server.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Bot {
    pub user: User,
    pub server_id: ServerId,
    /// The role that holds the permissions it was added with (deleted roles leave null).
    pub role_id: Option<RoleId>,
    pub creator_id: Option<UserId>,
    pub created_at: DateTime<Utc>,
}

/// A bot with its token, as its creator gets it at creation or reset: shown once.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct BotWithToken {
    #[serde(flatten)]
    pub bot: Bot,
    /// Send as `Authorization: Bot <token>` and in IDENTIFY.
    pub token: String,
}

/// What creating a bot made, for the events the caller sends.
pub struct CreatedBot {
    pub bot: BotWithToken,
    pub role: crate::roles::Role,
}

#[derive(sqlx::FromRow)]
struct BotRow {
    server_id: ServerId,
    role_id: Option<RoleId>,
    creator_id: Option<UserId>,
    #[sqlx(rename = "bot_created_at")]
    bot_created_at: DateTime<Utc>,
    #[sqlx(flatten)]
    user: User,
}

impl BotRow {
    fn into_bot(self) -> Bot {
        Bot {
            user: self.user,
            server_id: self.server_id,
            role_id: self.role_id,
            creator_id: self.creator_id,
            created_at: self.bot_created_at,
        }
    }
}

const SELECT_BOT: &str = const_format::concatcp!(
    "SELECT b.server_id, b.role_id, b.creator_id, b.created_at AS bot_created_at, ",
    USER_COLUMNS,
    " FROM bots b JOIN users u ON u.id = b.user_id"
);

/// A bot token: `<bot user id>.<secret>`.
fn bot_token(user_id: UserId) -> String {
    format!("{user_id}.{}", new_token())
}

impl Chat {
    /// Creates a bot in a server (MANAGE_SERVER): a bot user, a member of the server with a
    /// role of its own holding `perms` (only bits the creator holds, unless an administrator),
    /// and a token. Audit-logged as `bot_add`.
    pub async fn create_bot(
        &self,
        server_id: ServerId,
        username: &str,
        perms: Permissions,
        actor: Actor<'_>,
    ) -> ChatResult<CreatedBot> {
        let access = self
            .require_access(
                server_id,
                actor.user_id,
                permissions::MANAGE_SERVER,
                "you need MANAGE_SERVER to add bots",
            )
            .await?;
        let mut v = Validator::default();
        v.check(
            valid_username(username),
            "username",
            "must be 2-32 letters, digits, '_', '.' or '-'",
        );
        v.check(
            permissions::ALL.contains(perms),
            "permissions",
            "names bits that are not permissions",
        );
        v.finish()?;
        let base = access.base();
        if !base.contains(permissions::ADMINISTRATOR) && !base.contains(perms) {
            return Err(ChatError::Forbidden(
                "you cannot give a bot permissions you do not hold",
            ));
        }
        let user_id: UserId = self.next_id();
        let session_id: SessionId = self.next_id();
        let role_id: RoleId = self.next_id();
        let token = bot_token(user_id);
        let mut tx = self.pool.begin().await?;
        let inserted = sqlx::query(
            "INSERT INTO users (id, username, password_hash, bot) VALUES ($1, $2, $3, true)",
        )
        .bind(user_id)
        .bind(username)
        .bind(NO_PASSWORD)
        .execute(&mut *tx)
        .await;
        if let Err(e) = inserted {
            return Err(if is_unique_violation(&e, "users_username_lower_key") {
                ChatError::field("username", "is taken")
            } else {
                e.into()
            });
        }
        sqlx::query(
            "INSERT INTO auth_sessions (id, user_id, user_agent) VALUES ($1, $2, 'bot token')",
        )
        .bind(session_id)
        .bind(user_id)
        .execute(&mut *tx)
        .await?;
        sqlx::query("INSERT INTO members (server_id, user_id) VALUES ($1, $2)")
            .bind(server_id)
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
        // As any new role: position 1, the others move up one.
        sqlx::query(
            "UPDATE roles SET position = position + 1 WHERE server_id = $1 AND position >= 1",
        )
        .bind(server_id)
        .execute(&mut *tx)
        .await?;
        let role: crate::roles::Role = sqlx::query_as(
            "INSERT INTO roles (id, server_id, name, permissions, position)
             VALUES ($1, $2, $3, $4, 1)
             RETURNING id, server_id, name, permissions, position, color, hoist, mentionable",
        )
        .bind(role_id)
        .bind(server_id)
        .bind(username)
        .bind(perms)
        .fetch_one(&mut *tx)
        .await?;
        sqlx::query("INSERT INTO member_roles (server_id, user_id, role_id) VALUES ($1, $2, $3)")
            .bind(server_id)
            .bind(user_id)
            .bind(role_id)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO bots (user_id, server_id, role_id, creator_id, session_id, token_hash)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(user_id)
        .bind(server_id)
        .bind(role_id)
        .bind(actor.user_id)
        .bind(session_id)
        .bind(hash_token(&token))
        .execute(&mut *tx)
        .await?;
        self.audit(
            &mut tx,
            server_id,
            actor,
            "bot_add",
            Some(user_id.snowflake()),
            json!({"username": username, "permissions": perms, "role_id": role_id}),
        )
        .await?;
        tx.commit().await?;
        let bot = self.bot(server_id, user_id).await?;
        Ok(CreatedBot {
            bot: BotWithToken { bot, token },
            role,
        })
    }

    async fn bot(&self, server_id: ServerId, user_id: UserId) -> ChatResult<Bot> {
        let row: Option<BotRow> =
            sqlx::query_as(q!("{SELECT_BOT} WHERE b.user_id = $1 AND b.server_id = $2"))
                .bind(user_id)
                .bind(server_id)
                .fetch_optional(&self.pool)
                .await?;
        row.map(BotRow::into_bot).ok_or(ChatError::NotFound("bot"))
    }

    /// A server's bots (MANAGE_SERVER).
    pub async fn bots(&self, server_id: ServerId, user_id: UserId) -> ChatResult<Vec<Bot>> {
        self.require(
            server_id,
            user_id,
            permissions::MANAGE_SERVER,
            "you need MANAGE_SERVER to manage bots",
        )
        .await?;
        let rows: Vec<BotRow> =
            // A removed (kicked or banned) bot is gone from the list: it cannot come back.
            sqlx::query_as(q!("{SELECT_BOT} JOIN members m ON m.server_id = b.server_id AND m.user_id = b.user_id
                 WHERE b.server_id = $1 ORDER BY b.user_id"))
                .bind(server_id)
                .fetch_all(&self.pool)
                .await?;
        Ok(rows.into_iter().map(BotRow::into_bot).collect())
    }

    /// Replaces a bot's token (MANAGE_SERVER). Returns the new token and the login session of
    /// the old one, which the caller ends (that closes the bot's gateway connections).
    pub async fn reset_bot_token(
        &self,
        server_id: ServerId,
        bot_id: UserId,
        actor: Actor<'_>,
    ) -> ChatResult<(BotWithToken, crate::accounts::RevokedSessions)> {
        self.require(
            server_id,
            actor.user_id,
            permissions::MANAGE_SERVER,
            "you need MANAGE_SERVER to manage bots",
        )
        .await?;
        let session_id: SessionId = self.next_id();
        let token = bot_token(bot_id);
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO auth_sessions (id, user_id, user_agent) VALUES ($1, $2, 'bot token')",
        )
        .bind(session_id)
        .bind(bot_id)
        .execute(&mut *tx)
        .await
        .map_err(|e| match e {
            // No such user at all.
            sqlx::Error::Database(ref d) if d.code().as_deref() == Some("23503") => {
                ChatError::NotFound("bot")
            }
            e => e.into(),
        })?;
        let old: Option<SessionId> = sqlx::query_scalar(
            "UPDATE bots b SET session_id = $3, token_hash = $4
             FROM bots old WHERE old.user_id = b.user_id
               AND b.user_id = $1 AND b.server_id = $2
             RETURNING old.session_id",
        )
        .bind(bot_id)
        .bind(server_id)
        .bind(session_id)
        .bind(hash_token(&token))
        .fetch_optional(&mut *tx)
        .await?;
        let old = old.ok_or(ChatError::NotFound("bot"))?;
        sqlx::query("UPDATE auth_sessions SET revoked_at = now() WHERE id = $1")
            .bind(old)
            .execute(&mut *tx)
            .await?;
        self.audit(
            &mut tx,
            server_id,
            actor,
            "bot_token_reset",
            Some(bot_id.snowflake()),
            json!({}),
        )
        .await?;
        tx.commit().await?;
        let bot = self.bot(server_id, bot_id).await?;
        Ok((
            BotWithToken { bot, token },
            crate::accounts::RevokedSessions {
                user_id: bot_id,
                session_ids: vec![old],
            },
        ))
    }

    /// The bot and login session a bot token names, if it is current.
    pub async fn authenticate_bot(&self, token: &str) -> ChatResult<(UserId, SessionId)> {
        let refused = || ChatError::Unauthorized("invalid bot token");
        let (id, _) = token.split_once('.').ok_or_else(refused)?;
        let user_id: UserId = id.parse().map_err(|_| refused())?;
        if token.len() > 128 {
            return Err(refused());
        }
        let session: Option<SessionId> = sqlx::query_scalar(
            "SELECT b.session_id FROM bots b
             JOIN auth_sessions s ON s.id = b.session_id AND s.revoked_at IS NULL
             WHERE b.user_id = $1 AND b.token_hash = $2",
        )
        .bind(user_id)
        .bind(hash_token(token))
        .fetch_optional(&self.pool)
        .await?;
        Ok((user_id, session.ok_or_else(refused)?))
    }

    /// The bot whose own role this is, while that bot is still a member: such a role is
    /// managed by its bot (given to nobody else, not deleted while the bot stays).
    pub(crate) async fn bot_of_role(&self, role_id: RoleId) -> ChatResult<Option<UserId>> {
        Ok(sqlx::query_scalar(
            "SELECT b.user_id FROM bots b
             JOIN members m ON m.server_id = b.server_id AND m.user_id = b.user_id
             WHERE b.role_id = $1",
        )
        .bind(role_id)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Whether a user is a bot account.
    pub async fn is_bot(&self, user_id: UserId) -> ChatResult<bool> {
        Ok(
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM bots WHERE user_id = $1)")
                .bind(user_id)
                .fetch_one(&self.pool)
                .await?,
        )
    }
}
