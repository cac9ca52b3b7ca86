//! Expressions: a server's custom emoji and stickers (docs/emoji.md). Members with
//! MANAGE_EXPRESSIONS upload, rename, restrict and delete them; any member lists them and uses
//! them in the server's channels (a role-restricted emoji only with one of its roles). The
//! images live in the file store; the signaling crate checks and stores the bytes, this module
//! records what each key is and decides who may do what.

pub mod emojis;
pub mod stickers;

use crate::access::MemberAccess;
use crate::audit::Actor;
use crate::permissions::{self, Permissions};
use crate::{Chat, ChatError, ChatResult, ServerId, Snowflake, UserId};

pub use emojis::{Emoji, EmojiUpdate, NewEmoji};
pub use stickers::{NewSticker, Sticker, StickerItem, StickerUpdate};

/// An image already checked and written to the file store.
#[derive(Debug, Clone)]
pub struct StoredImage {
    pub storage_key: String,
    /// `image/png`, `image/gif` or `image/webp`.
    pub content_type: String,
    pub animated: bool,
}

/// Where a stored emoji or sticker image is, for the public image routes.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ImageRef {
    pub storage_key: String,
    pub content_type: String,
}

const MANAGE: &str = "you need MANAGE_EXPRESSIONS to manage emoji and stickers";

/// The two kinds of expression, one table each; what their delete and image lookups differ in.
#[derive(Clone, Copy)]
enum Kind {
    Emoji,
    Sticker,
}

impl Kind {
    fn noun(self) -> &'static str {
        match self {
            Kind::Emoji => "emoji",
            Kind::Sticker => "sticker",
        }
    }

    fn delete_sql(self) -> &'static str {
        match self {
            Kind::Emoji => {
                "DELETE FROM server_emojis WHERE id = $1 AND server_id = $2 RETURNING name"
            }
            Kind::Sticker => {
                "DELETE FROM server_stickers WHERE id = $1 AND server_id = $2 RETURNING name"
            }
        }
    }

    fn image_sql(self) -> &'static str {
        match self {
            Kind::Emoji => "SELECT storage_key, content_type FROM server_emojis WHERE id = $1",
            Kind::Sticker => "SELECT storage_key, content_type FROM server_stickers WHERE id = $1",
        }
    }

    fn audit_delete(self) -> &'static str {
        match self {
            Kind::Emoji => "emoji_delete",
            Kind::Sticker => "sticker_delete",
        }
    }
}

impl Chat {
    /// Checks the caller may manage the server's emoji and stickers (404 for non-members).
    /// Upload handlers call it before decoding anything.
    pub async fn require_manage_expressions(
        &self,
        server_id: ServerId,
        user_id: UserId,
    ) -> ChatResult<MemberAccess> {
        self.require_access(server_id, user_id, permissions::MANAGE_EXPRESSIONS, MANAGE)
            .await
    }

    /// Deletes an emoji or sticker (MANAGE_EXPRESSIONS), audit-logged as `<kind>_delete`;
    /// its image is queued for deletion from the store by the table's trigger.
    async fn delete_expression(
        &self,
        kind: Kind,
        server_id: ServerId,
        id: Snowflake,
        actor: Actor<'_>,
    ) -> ChatResult<()> {
        self.require_manage_expressions(server_id, actor.user_id)
            .await?;
        let mut tx = self.pool.begin().await?;
        let name: Option<String> = sqlx::query_scalar(kind.delete_sql())
            .bind(id)
            .bind(server_id)
            .fetch_optional(&mut *tx)
            .await?;
        let name = name.ok_or(ChatError::NotFound(kind.noun()))?;
        self.audit(
            &mut tx,
            server_id,
            actor,
            kind.audit_delete(),
            Some(id),
            serde_json::json!({"name": name}),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Where an emoji's or sticker's image is stored (public, as avatars: the id is the key).
    async fn expression_image(&self, kind: Kind, id: Snowflake) -> ChatResult<ImageRef> {
        let row: Option<ImageRef> = sqlx::query_as(kind.image_sql())
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.ok_or(ChatError::NotFound(kind.noun()))
    }

    async fn require_member(&self, server_id: ServerId, user_id: UserId) -> ChatResult<()> {
        self.require(server_id, user_id, Permissions::empty(), "")
            .await
            .map(|_| ())
    }
}
