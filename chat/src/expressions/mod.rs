//! Expressions: a server's custom emoji and stickers (docs/emoji.md). Members with
//! MANAGE_EXPRESSIONS upload, rename, restrict and delete them; any member lists them and uses
//! them in the server's channels (a role-restricted emoji only with one of its roles). The
//! images live in the file store; the signaling crate checks and stores the bytes, this module
//! records what each key is and decides who may do what.

pub mod emojis;
pub mod stickers;

use crate::access::MemberAccess;
use crate::permissions::{self, Permissions};
use crate::{Chat, ChatResult, ServerId, UserId};

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

    async fn require_member(&self, server_id: ServerId, user_id: UserId) -> ChatResult<()> {
        self.require(server_id, user_id, Permissions::empty(), "")
            .await
            .map(|_| ())
    }
}
