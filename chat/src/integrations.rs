//! Integrations (docs/bots.md): incoming webhooks that post into a channel, bot accounts that
//! use the REST API and the gateway with a token of their own, the slash commands bots register
//! and the interactions that invoke them.
//!
//! Secrets (webhook and bot tokens, interaction tokens) are random, shown once, and kept only as
//! SHA-256 hashes: a database dump lets nobody post or act as a bot.

use crate::accounts::{hash_token, new_token, valid_username, NO_PASSWORD, USER_COLUMNS};
use crate::audit::Actor;
use crate::error::{is_unique_violation, Validator};
use crate::messages::check_content;
use crate::model::{ChannelKind, Message, User};
use crate::permissions::{self, Permissions};
use crate::{ChannelId, Chat, ChatError, ChatResult, MessageId, RoleId, ServerId, SessionId};
use crate::{Snowflake, UserId};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;

/// Longest webhook or bot display name (a user's display name limit).
pub const MAX_NAME: usize = 64;
/// Slash commands per server.
pub const MAX_COMMANDS_PER_SERVER: i64 = 100;
/// Options per command.
pub const MAX_OPTIONS: usize = 25;
/// Time a bot has for its first answer to an interaction.
pub const FIRST_RESPONSE: std::time::Duration = std::time::Duration::from_secs(3);
/// Time a bot has for the follow-up after a deferred answer.
pub const FOLLOW_UP: std::time::Duration = std::time::Duration::from_secs(15 * 60);

fn check_name(v: &mut Validator, field: &str, name: &str) {
    v.check(
        !name.trim().is_empty()
            && name.chars().count() <= MAX_NAME
            && !name.chars().any(char::is_control),
        field,
        "must be 1-64 characters",
    );
}

fn check_avatar(v: &mut Validator, url: Option<&str>) {
    v.check(
        url.is_none_or(|u| {
            u.len() <= 2048 && (u.starts_with("https://") || u.starts_with("http://"))
        }),
        "avatar_url",
        "must be an http(s) URL of at most 2048 characters",
    );
}

// ---------------------------------------------------------------------------------------------
// Webhooks

/// An incoming webhook. Its `id` is also the author id of what it posts.
#[derive(Debug, Clone, Serialize, ToSchema, sqlx::FromRow)]
pub struct Webhook {
    #[schema(value_type = String)]
    pub id: Snowflake,
    pub server_id: ServerId,
    pub channel_id: ChannelId,
    pub name: String,
    pub creator_id: Option<UserId>,
    pub created_at: DateTime<Utc>,
}

/// A webhook as its creator gets it, once: with the secret token.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CreatedWebhook {
    #[serde(flatten)]
    pub webhook: Webhook,
    /// The secret: post to `/api/v1/webhooks/{id}/{token}`. Not shown again.
    pub token: String,
}

const WEBHOOK_COLUMNS: &str = "id, server_id, channel_id, name, creator_id, created_at";

/// A post through a webhook.
pub struct WebhookPost<'a> {
    pub content: &'a str,
    /// Shown instead of the webhook's name for this message.
    pub username: Option<&'a str>,
    pub avatar_url: Option<&'a str>,
}

impl Chat {
    /// The caller's permissions in a server text channel, requiring MANAGE_WEBHOOKS there.
    async fn webhook_channel(
        &self,
        channel_id: ChannelId,
        user_id: UserId,
    ) -> ChatResult<ServerId> {
        let (channel, perms) = self.channel_access(channel_id, user_id).await?;
        if !permissions::has(perms, permissions::MANAGE_WEBHOOKS) {
            return Err(ChatError::Forbidden(
                "you need MANAGE_WEBHOOKS in this channel",
            ));
        }
        match (channel.server_id, channel.kind) {
            (Some(server_id), ChannelKind::Text) => Ok(server_id),
            _ => Err(ChatError::field(
                "channel_id",
                "webhooks post into server text channels",
            )),
        }
    }

    /// Creates a webhook in a text channel (MANAGE_WEBHOOKS there); audit-logged.
    pub async fn create_webhook(
        &self,
        channel_id: ChannelId,
        name: &str,
        actor: Actor<'_>,
    ) -> ChatResult<CreatedWebhook> {
        let mut v = Validator::default();
        check_name(&mut v, "name", name);
        v.finish()?;
        let name = name.trim();
        let server_id = self.webhook_channel(channel_id, actor.user_id).await?;
        let id: Snowflake = self.next_id();
        let token = new_token();
        let mut tx = self.pool.begin().await?;
        // The author row of its posts; the fresh id keeps its username unique.
        sqlx::query(
            "INSERT INTO users (id, username, password_hash, display_name, bot)
             VALUES ($1, $2, $3, $4, true)",
        )
        .bind(id)
        .bind(format!("webhook-{id}"))
        .bind(NO_PASSWORD)
        .bind(name)
        .execute(&mut *tx)
        .await?;
        let webhook: Webhook = sqlx::query_as(q!("INSERT INTO webhooks
                 (id, server_id, channel_id, name, token_hash, creator_id)
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING {WEBHOOK_COLUMNS}"))
        .bind(id)
        .bind(server_id)
        .bind(channel_id)
        .bind(name)
        .bind(hash_token(&token))
        .bind(actor.user_id)
        .fetch_one(&mut *tx)
        .await?;
        self.audit(
            &mut tx,
            server_id,
            actor,
            "webhook_create",
            Some(id),
            json!({"name": name, "channel_id": channel_id}),
        )
        .await?;
        tx.commit().await?;
        Ok(CreatedWebhook { webhook, token })
    }

    /// A channel's webhooks, oldest first (MANAGE_WEBHOOKS there). Tokens are never listed.
    pub async fn channel_webhooks(
        &self,
        channel_id: ChannelId,
        user_id: UserId,
    ) -> ChatResult<Vec<Webhook>> {
        self.webhook_channel(channel_id, user_id).await?;
        Ok(sqlx::query_as(q!(
            "SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE channel_id = $1 ORDER BY id"
        ))
        .bind(channel_id)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Deletes a webhook (MANAGE_WEBHOOKS in its channel); what it posted stays. Audit-logged.
    pub async fn delete_webhook(&self, webhook_id: Snowflake, actor: Actor<'_>) -> ChatResult<()> {
        let channel_id: Option<ChannelId> =
            sqlx::query_scalar("SELECT channel_id FROM webhooks WHERE id = $1")
                .bind(webhook_id)
                .fetch_optional(&self.pool)
                .await?;
        let channel_id = channel_id.ok_or(ChatError::NotFound("webhook"))?;
        // Someone who cannot see the channel learns nothing about its webhooks: 404.
        let server_id = self
            .webhook_channel(channel_id, actor.user_id)
            .await
            .map_err(|e| match e {
                ChatError::NotFound(_) => ChatError::NotFound("webhook"),
                e => e,
            })?;
        let mut tx = self.pool.begin().await?;
        let name: Option<String> =
            sqlx::query_scalar("DELETE FROM webhooks WHERE id = $1 RETURNING name")
                .bind(webhook_id)
                .fetch_optional(&mut *tx)
                .await?;
        let name = name.ok_or(ChatError::NotFound("webhook"))?;
        self.audit(
            &mut tx,
            server_id,
            actor,
            "webhook_delete",
            Some(webhook_id),
            json!({"name": name, "channel_id": channel_id}),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Posts through a webhook: the token is its permission (no user, no roles). Unknown id:
    /// NotFound; wrong token: Unauthorized. Webhook posts mention nobody.
    pub async fn execute_webhook(
        &self,
        webhook_id: Snowflake,
        token: &str,
        post: WebhookPost<'_>,
    ) -> ChatResult<Message> {
        let row: Option<(ChannelId, Vec<u8>)> =
            sqlx::query_as("SELECT channel_id, token_hash FROM webhooks WHERE id = $1")
                .bind(webhook_id)
                .fetch_optional(&self.pool)
                .await?;
        let (channel_id, stored) = row.ok_or(ChatError::NotFound("webhook"))?;
        // Both sides are SHA-256 digests of random tokens: comparing them leaks nothing useful.
        if token.len() > 128 || hash_token(token) != stored {
            return Err(ChatError::Unauthorized("invalid webhook token"));
        }
        let mut v = Validator::default();
        if let Err(ChatError::Validation(errors)) = check_content(post.content) {
            for (field, messages) in errors {
                for m in messages {
                    v.check(false, &field, &m);
                }
            }
        }
        if let Some(u) = post.username {
            check_name(&mut v, "username", u);
        }
        check_avatar(&mut v, post.avatar_url);
        v.finish()?;
        let id: MessageId = self.next_id();
        sqlx::query(
            "INSERT INTO messages (id, channel_id, author_id, content, webhook_id, author_name, author_avatar)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(id)
        .bind(channel_id)
        .bind(webhook_id)
        .bind(post.content)
        .bind(webhook_id)
        .bind(post.username.map(str::trim))
        .bind(post.avatar_url)
        .execute(&self.pool)
        .await?;
        self.message_by_id(id).await
    }
}

// ---------------------------------------------------------------------------------------------
// Bots

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
            sqlx::query_as(q!("{SELECT_BOT} WHERE b.server_id = $1 ORDER BY b.user_id"))
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

// ---------------------------------------------------------------------------------------------
// Slash commands

/// The type of a command option's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum OptionKind {
    String,
    Integer,
    Boolean,
    /// A member of the server (the value is a user id).
    User,
    /// A channel of the server (the value is a channel id).
    Channel,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CommandOption {
    /// 1-32 lowercase letters, digits, '_' or '-'.
    pub name: String,
    /// 1-100 characters.
    pub description: String,
    #[serde(rename = "type")]
    pub kind: OptionKind,
    #[serde(default)]
    pub required: bool,
}

/// A slash command a bot registered in a server.
#[derive(Debug, Clone, Serialize, ToSchema, sqlx::FromRow)]
pub struct Command {
    #[schema(value_type = String)]
    pub id: Snowflake,
    pub bot_id: UserId,
    pub server_id: ServerId,
    pub name: String,
    pub description: String,
    #[schema(value_type = Vec<CommandOption>)]
    pub options: sqlx::types::Json<Vec<CommandOption>>,
}

/// A command as a bot registers it.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewCommand {
    pub name: String,
    pub description: String,
    #[serde(default)]
    pub options: Vec<CommandOption>,
}

const COMMAND_COLUMNS: &str = "id, bot_id, server_id, name, description, options";

fn valid_command_name(name: &str) -> bool {
    (1..=32).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

fn check_command(c: &NewCommand) -> ChatResult<()> {
    let mut v = Validator::default();
    v.check(
        valid_command_name(&c.name),
        "name",
        "must be 1-32 lowercase letters, digits, '_' or '-'",
    );
    let desc = |d: &str| (1..=100).contains(&d.chars().count()) && !d.chars().any(char::is_control);
    v.check(
        desc(&c.description),
        "description",
        "must be 1-100 characters",
    );
    v.check(
        c.options.len() <= MAX_OPTIONS,
        "options",
        "at most 25 options",
    );
    for o in &c.options {
        v.check(
            valid_command_name(&o.name),
            "options",
            "each option name must be 1-32 lowercase letters, digits, '_' or '-'",
        );
        v.check(
            desc(&o.description),
            "options",
            "each option description must be 1-100 characters",
        );
    }
    let mut names: Vec<&str> = c.options.iter().map(|o| o.name.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    v.check(
        names.len() == c.options.len(),
        "options",
        "option names must differ",
    );
    // Required options first, as Discord asks: the composer fills them in order.
    let first_optional = c.options.iter().position(|o| !o.required);
    v.check(
        first_optional.is_none_or(|i| c.options[i..].iter().all(|o| !o.required)),
        "options",
        "required options come before optional ones",
    );
    v.finish()
}

impl Chat {
    /// The bot's server, or Forbidden for a user that is not a bot.
    async fn bot_server(&self, bot_id: UserId) -> ChatResult<ServerId> {
        sqlx::query_scalar("SELECT server_id FROM bots WHERE user_id = $1")
            .bind(bot_id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or(ChatError::Forbidden("only bots register commands"))
    }

    /// Registers (or replaces, by name) a command of the calling bot in its server.
    pub async fn upsert_command(
        &self,
        bot_id: UserId,
        server_id: ServerId,
        c: &NewCommand,
    ) -> ChatResult<(Command, bool)> {
        if self.bot_server(bot_id).await? != server_id {
            return Err(ChatError::NotFound("server"));
        }
        check_command(c)?;
        let mut tx = self.pool.begin().await?;
        sqlx::query("SELECT 1 FROM servers WHERE id = $1 FOR UPDATE")
            .bind(server_id)
            .execute(&mut *tx)
            .await?;
        let existing: Option<(Snowflake, UserId)> = sqlx::query_as(
            "SELECT id, bot_id FROM app_commands WHERE server_id = $1 AND name = $2",
        )
        .bind(server_id)
        .bind(&c.name)
        .fetch_optional(&mut *tx)
        .await?;
        let command: Command = match existing {
            Some((_, owner)) if owner != bot_id => {
                return Err(ChatError::Conflict(
                    "another bot has a command of that name here".into(),
                ))
            }
            Some((id, _)) => {
                sqlx::query_as(q!("UPDATE app_commands SET description = $2, options = $3
                     WHERE id = $1 RETURNING {COMMAND_COLUMNS}"))
                .bind(id)
                .bind(&c.description)
                .bind(sqlx::types::Json(&c.options))
                .fetch_one(&mut *tx)
                .await?
            }
            None => {
                let count: i64 =
                    sqlx::query_scalar("SELECT count(*) FROM app_commands WHERE server_id = $1")
                        .bind(server_id)
                        .fetch_one(&mut *tx)
                        .await?;
                if count >= MAX_COMMANDS_PER_SERVER {
                    return Err(ChatError::Conflict(format!(
                        "a server has at most {MAX_COMMANDS_PER_SERVER} commands"
                    )));
                }
                sqlx::query_as(q!("INSERT INTO app_commands
                         (id, bot_id, server_id, name, description, options)
                     VALUES ($1, $2, $3, $4, $5, $6) RETURNING {COMMAND_COLUMNS}"))
                .bind(self.next_id::<Snowflake>())
                .bind(bot_id)
                .bind(server_id)
                .bind(&c.name)
                .bind(&c.description)
                .bind(sqlx::types::Json(&c.options))
                .fetch_one(&mut *tx)
                .await?
            }
        };
        tx.commit().await?;
        Ok((command, existing.is_none()))
    }

    /// Deletes one of the calling bot's commands.
    pub async fn delete_command(
        &self,
        bot_id: UserId,
        server_id: ServerId,
        command_id: Snowflake,
    ) -> ChatResult<()> {
        let done = sqlx::query(
            "DELETE FROM app_commands WHERE id = $1 AND server_id = $2 AND bot_id = $3",
        )
        .bind(command_id)
        .bind(server_id)
        .bind(bot_id)
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 0 {
            return Err(ChatError::NotFound("command"));
        }
        Ok(())
    }

    /// A server's commands, by name (any member).
    pub async fn commands(&self, server_id: ServerId, user_id: UserId) -> ChatResult<Vec<Command>> {
        self.server_permissions(server_id, user_id).await?;
        Ok(sqlx::query_as(q!(
            "SELECT {COMMAND_COLUMNS} FROM app_commands WHERE server_id = $1 ORDER BY name"
        ))
        .bind(server_id)
        .fetch_all(&self.pool)
        .await?)
    }
}

// ---------------------------------------------------------------------------------------------
// Interactions

/// One option value as the member gave it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct OptionValue {
    pub name: String,
    #[schema(value_type = Object)]
    pub value: serde_json::Value,
}

/// What a bot receives in `INTERACTION_CREATE`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Interaction {
    #[schema(value_type = String)]
    pub id: Snowflake,
    /// Answer with `POST /interactions/{id}/{token}/callback`. Valid 15 minutes.
    pub token: String,
    #[serde(rename = "type")]
    /// 2: an application command (as Discord).
    pub kind: u8,
    pub server_id: ServerId,
    pub channel_id: ChannelId,
    /// The member who used the command.
    pub user: User,
    pub data: InteractionData,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct InteractionData {
    #[schema(value_type = String)]
    pub id: Snowflake,
    pub name: String,
    pub options: Vec<OptionValue>,
}

/// How a bot answered, and what the caller then shows.
pub enum Answered {
    /// A message in the channel.
    Message(Box<Message>),
    /// "Thinking…": a follow-up comes later.
    Deferred,
}

/// One step of answering an interaction.
pub enum AnswerStep<'a> {
    /// The first answer, as a message.
    Message(&'a str),
    /// The first answer: "thinking", a follow-up comes.
    Defer,
    /// The message after deferring.
    FollowUp(&'a str),
}

/// An interaction the deadline found unanswered.
pub struct Expired {
    pub id: Snowflake,
    pub server_id: ServerId,
    pub channel_id: ChannelId,
    pub user_id: UserId,
    pub command: String,
    pub deferred: bool,
}

fn check_option_value(
    o: &CommandOption,
    value: &serde_json::Value,
    v: &mut Validator,
) -> Option<(Option<UserId>, Option<ChannelId>)> {
    let field = format!("options.{}", o.name);
    let id = |s: Option<&str>| s.and_then(|s| s.parse::<Snowflake>().ok());
    match o.kind {
        OptionKind::String => {
            let ok = value
                .as_str()
                .is_some_and(|s| (1..=1000).contains(&s.chars().count()) && !s.contains('\0'));
            v.check(ok, &field, "must be text of 1-1000 characters");
            ok.then_some((None, None))
        }
        OptionKind::Integer => {
            let ok = value.is_i64();
            v.check(ok, &field, "must be an integer");
            ok.then_some((None, None))
        }
        OptionKind::Boolean => {
            let ok = value.is_boolean();
            v.check(ok, &field, "must be true or false");
            ok.then_some((None, None))
        }
        OptionKind::User => {
            let u = id(value.as_str());
            v.check(u.is_some(), &field, "must be a user id");
            u.map(|u| (Some(UserId::new(u)), None))
        }
        OptionKind::Channel => {
            let c = id(value.as_str());
            v.check(c.is_some(), &field, "must be a channel id");
            c.map(|c| (None, Some(ChannelId::new(c))))
        }
    }
}

impl Chat {
    /// A member uses a command in a channel where they may send messages: the options are
    /// checked against the command, and the interaction is stored as pending. The caller sends
    /// it to the bot and starts the deadline.
    pub async fn create_interaction(
        &self,
        channel_id: ChannelId,
        user_id: UserId,
        command_id: Snowflake,
        options: Vec<OptionValue>,
    ) -> ChatResult<Interaction> {
        let (channel, perms) = self.channel_access(channel_id, user_id).await?;
        let Some(server_id) = channel.server_id else {
            return Err(ChatError::field(
                "channel_id",
                "commands are used in server text channels",
            ));
        };
        if channel.kind != ChannelKind::Text {
            return Err(ChatError::field(
                "channel_id",
                "commands are used in server text channels",
            ));
        }
        if !permissions::has(perms, permissions::SEND_MESSAGES) {
            return Err(ChatError::Forbidden("you may not send messages here"));
        }
        let command: Command = sqlx::query_as(q!(
            "SELECT {COMMAND_COLUMNS} FROM app_commands WHERE id = $1 AND server_id = $2"
        ))
        .bind(command_id)
        .bind(server_id)
        .fetch_optional(&self.pool)
        .await?
        .ok_or(ChatError::NotFound("command"))?;
        let mut v = Validator::default();
        let mut users = Vec::new();
        let mut channels = Vec::new();
        for given in &options {
            match command.options.0.iter().find(|o| o.name == given.name) {
                None => {
                    v.check(
                        false,
                        "options",
                        "names an option the command does not have",
                    );
                }
                Some(o) => {
                    if let Some((u, c)) = check_option_value(o, &given.value, &mut v) {
                        users.extend(u);
                        channels.extend(c);
                    }
                }
            }
        }
        for o in command.options.0.iter().filter(|o| o.required) {
            v.check(
                options.iter().any(|g| g.name == o.name),
                &format!("options.{}", o.name),
                "is required",
            );
        }
        let mut names: Vec<&str> = options.iter().map(|o| o.name.as_str()).collect();
        names.sort_unstable();
        let before = names.len();
        names.dedup();
        v.check(names.len() == before, "options", "each option at most once");
        v.finish()?;
        // Users and channels must be of this server: a command is no way to learn about others.
        for u in users {
            if self.member_access(server_id, u).await?.is_none() {
                return Err(ChatError::field(
                    "options",
                    "names a user who is not a member",
                ));
            }
        }
        for c in channels {
            let in_server: bool = sqlx::query_scalar(
                "SELECT EXISTS (SELECT 1 FROM channels WHERE id = $1 AND server_id = $2)",
            )
            .bind(c)
            .bind(server_id)
            .fetch_one(&self.pool)
            .await?;
            if !in_server || self.channel_access(c, user_id).await.is_err() {
                return Err(ChatError::field(
                    "options",
                    "names a channel you cannot see",
                ));
            }
        }
        // The bot must still be in the server to be asked.
        if self
            .member_access(server_id, command.bot_id)
            .await?
            .is_none()
        {
            return Err(ChatError::NotFound("command"));
        }
        let id: Snowflake = self.next_id();
        let token = new_token();
        sqlx::query(
            "INSERT INTO interactions (id, token_hash, command_id, bot_id, server_id, channel_id, user_id)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(id)
        .bind(hash_token(&token))
        .bind(command.id)
        .bind(command.bot_id)
        .bind(server_id)
        .bind(channel_id)
        .bind(user_id)
        .execute(&self.pool)
        .await?;
        let user = self.user(user_id).await?;
        Ok(Interaction {
            id,
            token,
            kind: 2,
            server_id,
            channel_id,
            user,
            data: InteractionData {
                id: command.id,
                name: command.name,
                options,
            },
        })
    }

    /// The calling bot answers an interaction: only the interaction's bot, with its token,
    /// once per step and within its deadline (3 s for the first answer, 15 min for the
    /// follow-up after deferring).
    pub async fn answer_interaction(
        &self,
        bot_id: UserId,
        id: Snowflake,
        token: &str,
        step: AnswerStep<'_>,
    ) -> ChatResult<Answered> {
        let (from, to, window, content) = match step {
            AnswerStep::Message(c) => ("pending", "answered", FIRST_RESPONSE, Some(c)),
            AnswerStep::Defer => ("pending", "deferred", FIRST_RESPONSE, None),
            AnswerStep::FollowUp(c) => ("deferred", "answered", FOLLOW_UP, Some(c)),
        };
        if let Some(c) = content {
            check_content(c)?;
        }
        // One compare-and-set decides between this answer and the deadline.
        let row: Option<ChannelId> = sqlx::query_scalar(
            "UPDATE interactions SET state = $5
             WHERE id = $1 AND token_hash = $2 AND bot_id = $3 AND state = $4
               AND created_at > now() - make_interval(secs => $6)
             RETURNING channel_id",
        )
        .bind(id)
        .bind(hash_token(token))
        .bind(bot_id)
        .bind(from)
        .bind(to)
        .bind(window.as_secs_f64())
        .fetch_optional(&self.pool)
        .await?;
        let Some(channel_id) = row else {
            let known: Option<String> = sqlx::query_scalar(
                "SELECT state FROM interactions WHERE id = $1 AND token_hash = $2 AND bot_id = $3",
            )
            .bind(id)
            .bind(hash_token(token))
            .bind(bot_id)
            .fetch_optional(&self.pool)
            .await?;
            return Err(match known.as_deref() {
                None => ChatError::NotFound("interaction"),
                Some("answered") => {
                    ChatError::Conflict("this interaction was already answered".into())
                }
                Some("deferred") if from == "pending" => {
                    ChatError::Conflict("this interaction was deferred: send the follow-up".into())
                }
                Some("pending") => ChatError::Conflict(
                    "this interaction was not deferred: answer it with the callback".into(),
                ),
                Some(_) => {
                    ChatError::Conflict("the interaction's response deadline has passed".into())
                }
            });
        };
        let Some(content) = content else {
            return Ok(Answered::Deferred);
        };
        // The answer is the bot's message in the channel; answering needs no SEND_MESSAGES
        // (the member who used the command had it), as on Discord.
        let message_id: MessageId = self.next_id();
        sqlx::query(
            "INSERT INTO messages (id, channel_id, author_id, content) VALUES ($1, $2, $3, $4)",
        )
        .bind(message_id)
        .bind(channel_id)
        .bind(bot_id)
        .bind(content)
        .execute(&self.pool)
        .await?;
        Ok(Answered::Message(Box::new(
            self.message_by_id(message_id).await?,
        )))
    }

    /// The bot a command belongs to.
    pub async fn command_bot(&self, command_id: Snowflake) -> ChatResult<Option<UserId>> {
        Ok(
            sqlx::query_scalar("SELECT bot_id FROM app_commands WHERE id = $1")
                .bind(command_id)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    /// Marks the interaction failed if it is still in `state` ("pending" after the first
    /// deadline, "deferred" after the follow-up one); returns it if so.
    pub async fn expire_interaction(
        &self,
        id: Snowflake,
        state: &str,
    ) -> ChatResult<Option<Expired>> {
        #[derive(sqlx::FromRow)]
        struct Row {
            server_id: ServerId,
            channel_id: ChannelId,
            user_id: UserId,
            command: Option<String>,
        }
        let row: Option<Row> = sqlx::query_as(
            "UPDATE interactions i SET state = 'failed'
             WHERE i.id = $1 AND i.state = $2
             RETURNING i.server_id, i.channel_id, i.user_id,
                       (SELECT name FROM app_commands c WHERE c.id = i.command_id) AS command",
        )
        .bind(id)
        .bind(state)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|r| Expired {
            id,
            server_id: r.server_id,
            channel_id: r.channel_id,
            user_id: r.user_id,
            command: r.command.unwrap_or_default(),
            deferred: state == "deferred",
        }))
    }

    /// Forgets interactions older than a day (their tokens can no longer be used anyway).
    pub async fn prune_interactions(&self) -> ChatResult<u64> {
        Ok(
            sqlx::query("DELETE FROM interactions WHERE created_at < now() - interval '1 day'")
                .execute(&self.pool)
                .await?
                .rows_affected(),
        )
    }
}
