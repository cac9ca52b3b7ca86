//! Incoming webhooks: a channel's secret URL that posts under its own name.

use super::*;

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
