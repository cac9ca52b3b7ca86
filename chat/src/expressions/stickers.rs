//! Stickers: a larger image sent with a message (`sticker_ids: [id]`, one per message).

use super::{ImageRef, StoredImage, MANAGE};
use crate::audit::Actor;
use crate::error::{is_unique_violation, Validator};
use crate::permissions;
use crate::{Chat, ChatError, ChatResult, ServerId, Snowflake, UserId};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Stickers one server may hold.
pub const MAX_PER_SERVER: i64 = 30;
/// Largest sticker upload, bytes.
pub const MAX_BYTES: usize = 512 * 1024;
/// Still stickers are scaled to fit this square; animated ones may be at most as large.
pub const MAX_SIDE: u32 = 320;
/// Stickers on one message.
pub const MAX_PER_MESSAGE: usize = 1;

/// A sticker as clients see it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, sqlx::FromRow, PartialEq)]
pub struct Sticker {
    #[schema(value_type = String)]
    pub id: Snowflake,
    pub server_id: ServerId,
    /// 2-30 characters, unique in the server.
    pub name: String,
    /// Up to 100 characters (alt text for screen readers).
    pub description: String,
    pub animated: bool,
    /// `image/png`, `image/gif` or `image/webp`.
    pub content_type: String,
    pub creator_id: Option<UserId>,
    /// The image, relative to the server: `/api/v1/stickers/{id}` (public, cached for a year).
    pub url: String,
    pub created_at: DateTime<Utc>,
}

/// A sticker on a message, as it was when the message was sent.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct StickerItem {
    #[schema(value_type = String)]
    pub id: Snowflake,
    pub name: String,
    pub description: String,
    pub url: String,
}

const COLUMNS: &str = "id, server_id, name, description, animated, content_type, creator_id,
                       '/api/v1/stickers/' || id AS url, created_at";

/// An upload's name and description.
#[derive(Debug, Clone, Default)]
pub struct NewSticker<'a> {
    pub name: &'a str,
    pub description: Option<&'a str>,
}

/// A change to a sticker: each field left out stays as it is.
#[derive(Debug, Clone, Default)]
pub struct StickerUpdate<'a> {
    pub name: Option<&'a str>,
    pub description: Option<&'a str>,
}

fn valid_name(name: &str) -> bool {
    let n = name.chars().count();
    (2..=30).contains(&n) && name.trim() == name && !name.chars().any(char::is_control)
}

fn valid_description(d: &str) -> bool {
    d.chars().count() <= 100 && !d.chars().any(|c| c.is_control() && c != '\n')
}

impl Chat {
    /// The server's stickers, oldest first (any member).
    pub async fn stickers(&self, server_id: ServerId, user_id: UserId) -> ChatResult<Vec<Sticker>> {
        self.require_member(server_id, user_id).await?;
        self.server_stickers(server_id).await
    }

    /// The server's stickers (no permission check: READY and dispatches).
    pub async fn server_stickers(&self, server_id: ServerId) -> ChatResult<Vec<Sticker>> {
        Ok(sqlx::query_as(q!(
            "SELECT {COLUMNS} FROM server_stickers WHERE server_id = $1 ORDER BY id"
        ))
        .bind(server_id)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Records an uploaded sticker (MANAGE_EXPRESSIONS; at most `MAX_PER_SERVER`, unique
    /// names). Audit-logged as `sticker_create`. On an error the caller deletes the image.
    pub async fn create_sticker(
        &self,
        server_id: ServerId,
        actor: Actor<'_>,
        new: NewSticker<'_>,
        image: &StoredImage,
    ) -> ChatResult<Sticker> {
        self.require_access(
            server_id,
            actor.user_id,
            permissions::MANAGE_EXPRESSIONS,
            MANAGE,
        )
        .await?;
        let mut v = Validator::default();
        v.check(valid_name(new.name), "name", "must be 2-30 characters");
        v.check(
            new.description.is_none_or(valid_description),
            "description",
            "must be at most 100 characters",
        );
        v.finish()?;
        let mut tx = self.pool.begin().await?;
        sqlx::query("SELECT 1 FROM servers WHERE id = $1 FOR UPDATE")
            .bind(server_id)
            .execute(&mut *tx)
            .await?;
        let count: i64 =
            sqlx::query_scalar("SELECT count(*) FROM server_stickers WHERE server_id = $1")
                .bind(server_id)
                .fetch_one(&mut *tx)
                .await?;
        if count >= MAX_PER_SERVER {
            return Err(ChatError::Conflict(format!(
                "a server has at most {MAX_PER_SERVER} stickers"
            )));
        }
        let sticker: Sticker = sqlx::query_as(q!("INSERT INTO server_stickers
                 (id, server_id, name, description, animated, content_type, storage_key, creator_id)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING {COLUMNS}"))
        .bind(self.next_id::<Snowflake>())
        .bind(server_id)
        .bind(new.name)
        .bind(new.description.unwrap_or(""))
        .bind(image.animated)
        .bind(&image.content_type)
        .bind(&image.storage_key)
        .bind(actor.user_id)
        .fetch_one(&mut *tx)
        .await
        .map_err(duplicate_name)?;
        self.audit(
            &mut tx,
            server_id,
            actor,
            "sticker_create",
            Some(sticker.id),
            serde_json::json!({"name": sticker.name, "animated": sticker.animated}),
        )
        .await?;
        tx.commit().await?;
        Ok(sticker)
    }

    /// Renames a sticker or changes its description (MANAGE_EXPRESSIONS); `sticker_update`.
    pub async fn update_sticker(
        &self,
        server_id: ServerId,
        sticker_id: Snowflake,
        actor: Actor<'_>,
        update: StickerUpdate<'_>,
    ) -> ChatResult<Sticker> {
        self.require_access(
            server_id,
            actor.user_id,
            permissions::MANAGE_EXPRESSIONS,
            MANAGE,
        )
        .await?;
        let mut v = Validator::default();
        v.check(
            update.name.is_none_or(valid_name),
            "name",
            "must be 2-30 characters",
        );
        v.check(
            update.description.is_none_or(valid_description),
            "description",
            "must be at most 100 characters",
        );
        v.finish()?;
        let mut tx = self.pool.begin().await?;
        let sticker: Option<Sticker> =
            sqlx::query_as(q!("UPDATE server_stickers SET name = COALESCE($3, name),
                 description = COALESCE($4, description)
             WHERE id = $1 AND server_id = $2 RETURNING {COLUMNS}"))
            .bind(sticker_id)
            .bind(server_id)
            .bind(update.name)
            .bind(update.description)
            .fetch_optional(&mut *tx)
            .await
            .map_err(duplicate_name)?;
        let sticker = sticker.ok_or(ChatError::NotFound("sticker"))?;
        self.audit(
            &mut tx,
            server_id,
            actor,
            "sticker_update",
            Some(sticker.id),
            serde_json::json!({"name": sticker.name, "description": sticker.description}),
        )
        .await?;
        tx.commit().await?;
        Ok(sticker)
    }

    /// Deletes a sticker (MANAGE_EXPRESSIONS); messages keep its name, its image goes.
    /// `sticker_delete`.
    pub async fn delete_sticker(
        &self,
        server_id: ServerId,
        sticker_id: Snowflake,
        actor: Actor<'_>,
    ) -> ChatResult<()> {
        self.delete_expression(super::Kind::Sticker, server_id, sticker_id, actor)
            .await
    }

    /// Where a sticker's image is stored (public, as avatars).
    pub async fn sticker_image(&self, sticker_id: Snowflake) -> ChatResult<ImageRef> {
        self.expression_image(super::Kind::Sticker, sticker_id)
            .await
    }

    /// The stickers a message in `server_id` may carry: at most one, of that server (400
    /// otherwise; DMs have none).
    pub(crate) async fn message_stickers(
        &self,
        server_id: Option<ServerId>,
        ids: &[Snowflake],
    ) -> ChatResult<Vec<StickerItem>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        if ids.len() > MAX_PER_MESSAGE {
            return Err(ChatError::field("sticker_ids", "at most one sticker"));
        }
        let Some(server_id) = server_id else {
            return Err(ChatError::field(
                "sticker_ids",
                "stickers are sent in their server's channels",
            ));
        };
        let found: Option<Sticker> = sqlx::query_as(q!(
            "SELECT {COLUMNS} FROM server_stickers WHERE id = $1 AND server_id = $2"
        ))
        .bind(ids[0])
        .bind(server_id)
        .fetch_optional(&self.pool)
        .await?;
        let s = found
            .ok_or_else(|| ChatError::field("sticker_ids", "is not a sticker of this server"))?;
        Ok(vec![StickerItem {
            id: s.id,
            name: s.name,
            description: s.description,
            url: s.url,
        }])
    }
}

fn duplicate_name(e: sqlx::Error) -> ChatError {
    if is_unique_violation(&e, "server_stickers_server_id_name_key") {
        ChatError::field("name", "this server already has a sticker with that name")
    } else {
        e.into()
    }
}
