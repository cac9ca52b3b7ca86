//! Link previews' storage (docs/link-previews.md): the cache by URL (what a page said and its
//! image) and the embeds of each message. Fetching is `confab-previews`' job and the worker
//! that runs it is in signaling; this module only keeps and hands out what they found.

use crate::model::{Embed, EmbedImage, Message};
use crate::{ChannelId, Chat, ChatError, ChatResult, MessageId, UserId};
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use uuid::Uuid;

/// `flags` bit: the author removed the message's previews; none are made for it any more.
pub const SUPPRESS_EMBEDS: i32 = 1 << 2;
/// Flags a client may set (the others are the server's).
pub const CLIENT_FLAGS: i32 = SUPPRESS_EMBEDS;
/// Where a preview image is served, followed by its key.
pub const IMAGE_PATH: &str = "/api/v1/link-previews/images/";

/// What the cache knows of a URL.
#[derive(Debug, Clone, PartialEq)]
pub struct CachedPreview {
    /// `None`: fetched, nothing to show (or the fetch failed).
    pub embed: Option<Embed>,
    pub fetched_at: DateTime<Utc>,
}

/// A preview to cache, as the fetcher found it.
#[derive(Debug, Clone, Default)]
pub struct NewPreview<'a> {
    pub title: Option<&'a str>,
    pub description: Option<&'a str>,
    pub site_name: Option<&'a str>,
    pub image: Option<NewPreviewImage<'a>>,
}

/// A preview image whose type was sniffed from `bytes` (png, jpeg, gif or webp).
#[derive(Debug, Clone)]
pub struct NewPreviewImage<'a> {
    pub content_type: &'a str,
    pub width: u32,
    pub height: u32,
    pub bytes: &'a [u8],
}

/// A cached image, to serve.
#[derive(Debug, Clone)]
pub struct PreviewImage {
    pub content_type: String,
    pub bytes: Vec<u8>,
}

fn url_hash(url: &str) -> Vec<u8> {
    Sha256::digest(url.as_bytes()).to_vec()
}

fn image_url(key: Uuid) -> String {
    format!("{IMAGE_PATH}{}", key.simple())
}

impl Chat {
    /// The cached preview of `url`, if one was stored within `max_age` (or, for a URL with
    /// nothing to show, within `negative_max_age`).
    pub async fn cached_link_preview(
        &self,
        url: &str,
        max_age: std::time::Duration,
        negative_max_age: std::time::Duration,
    ) -> ChatResult<Option<CachedPreview>> {
        let row: Option<(Option<sqlx::types::Json<Embed>>, DateTime<Utc>)> = sqlx::query_as(
            "SELECT embed, fetched_at FROM link_previews WHERE url_hash = $1
                AND fetched_at > now() - make_interval(secs => CASE WHEN embed IS NULL THEN $3 ELSE $2 END)",
        )
        .bind(url_hash(url))
        .bind(max_age.as_secs_f64())
        .bind(negative_max_age.as_secs_f64())
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|(embed, fetched_at)| CachedPreview {
            embed: embed.map(|e| e.0),
            fetched_at,
        }))
    }

    /// Caches what a fetch of `url` found (`None`: nothing to show) and returns the embed to
    /// put under messages. A URL fetched again keeps its image key, so messages that already
    /// show the image keep working.
    pub async fn store_link_preview(
        &self,
        url: &str,
        preview: Option<NewPreview<'_>>,
    ) -> ChatResult<Option<Embed>> {
        let hash = url_hash(url);
        let Some(p) = preview else {
            sqlx::query(
                "INSERT INTO link_previews (url_hash, url, embed) VALUES ($1, $2, NULL)
                 ON CONFLICT (url_hash) DO UPDATE SET embed = NULL, fetched_at = now(),
                     image_key = NULL, image_type = NULL, image = NULL",
            )
            .bind(&hash)
            .bind(url)
            .execute(&self.pool)
            .await?;
            return Ok(None);
        };
        let mut tx = self.pool.begin().await?;
        // The key an earlier fetch gave the image, else a new random one.
        let existing: Option<Option<Uuid>> = sqlx::query_scalar(
            "SELECT image_key FROM link_previews WHERE url_hash = $1 FOR UPDATE",
        )
        .bind(&hash)
        .fetch_optional(&mut *tx)
        .await?;
        let key = p
            .image
            .as_ref()
            .map(|_| existing.flatten().unwrap_or_else(Uuid::new_v4));
        let embed = Embed {
            kind: "link".into(),
            url: url.to_owned(),
            title: p.title.map(str::to_owned),
            description: p.description.map(str::to_owned),
            site_name: p.site_name.map(str::to_owned),
            image: p.image.as_ref().zip(key).map(|(img, key)| EmbedImage {
                url: image_url(key),
                width: img.width,
                height: img.height,
            }),
        };
        sqlx::query(
            "INSERT INTO link_previews (url_hash, url, embed, image_key, image_type, image)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (url_hash) DO UPDATE SET embed = $3, fetched_at = now(),
                 image_key = $4, image_type = $5, image = $6",
        )
        .bind(&hash)
        .bind(url)
        .bind(sqlx::types::Json(&embed))
        .bind(key)
        .bind(p.image.as_ref().map(|i| i.content_type))
        .bind(p.image.as_ref().map(|i| i.bytes))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Some(embed))
    }

    /// A cached preview image by its key (the capability in its URL).
    pub async fn link_preview_image(&self, key: Uuid) -> ChatResult<PreviewImage> {
        let row: Option<(String, Vec<u8>)> = sqlx::query_as(
            "SELECT image_type, image FROM link_previews WHERE image_key = $1 AND image IS NOT NULL",
        )
        .bind(key)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|(content_type, bytes)| PreviewImage {
            content_type,
            bytes,
        })
        .ok_or(ChatError::NotFound("image"))
    }

    /// Sets a message's embeds, if its content is still `content` (an edit since the fetch
    /// began makes these stale) and its previews were not removed. Returns the message when
    /// something changed.
    pub async fn set_message_embeds(
        &self,
        message_id: MessageId,
        content: &str,
        embeds: &[Embed],
    ) -> ChatResult<Option<Message>> {
        let updated: Option<MessageId> = sqlx::query_scalar(
            "UPDATE messages SET embeds = $3 WHERE id = $1 AND content = $2
                AND flags & $4 = 0 AND embeds <> $3 RETURNING id",
        )
        .bind(message_id)
        .bind(content)
        .bind(sqlx::types::Json(embeds))
        .bind(SUPPRESS_EMBEDS)
        .fetch_optional(&self.pool)
        .await?;
        match updated {
            Some(id) => Ok(Some(self.message_by_id(id).await?)),
            None => Ok(None),
        }
    }

    /// Sets the client flags of the caller's own message. Setting SUPPRESS_EMBEDS removes its
    /// embeds; clearing it lets previews be made again.
    pub async fn set_message_flags(
        &self,
        channel_id: ChannelId,
        message_id: MessageId,
        user_id: UserId,
        flags: i32,
    ) -> ChatResult<Message> {
        if flags & !CLIENT_FLAGS != 0 || flags < 0 {
            return Err(ChatError::field(
                "flags",
                "only SUPPRESS_EMBEDS (4) may be set",
            ));
        }
        let msg = self.message(channel_id, message_id, user_id).await?;
        if msg.author.id != user_id {
            return Err(ChatError::Forbidden(
                "you may only change your own messages",
            ));
        }
        sqlx::query(
            "UPDATE messages SET flags = (flags & ~$3) | $2,
                 embeds = CASE WHEN $2 & $4 <> 0 THEN '[]'::jsonb ELSE embeds END
             WHERE id = $1",
        )
        .bind(message_id)
        .bind(flags)
        .bind(CLIENT_FLAGS)
        .bind(SUPPRESS_EMBEDS)
        .execute(&self.pool)
        .await?;
        self.message_by_id(message_id).await
    }

    /// Forgets cache entries older than `max_age` that have no image. Entries with an image
    /// stay: messages may still show it, and finding which would need an index on every
    /// message's embeds. Returns how many went.
    pub async fn sweep_link_previews(&self, max_age: std::time::Duration) -> ChatResult<u64> {
        let done = sqlx::query(
            "DELETE FROM link_previews WHERE image_key IS NULL
                AND fetched_at < now() - make_interval(secs => $1)",
        )
        .bind(max_age.as_secs_f64())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_urls_carry_the_key_only() {
        let key = Uuid::parse_str("67e55044-10b1-426f-9247-bb680e5fe0c8").unwrap();
        assert_eq!(
            image_url(key),
            "/api/v1/link-previews/images/67e5504410b1426f9247bb680e5fe0c8"
        );
        assert_eq!(url_hash("https://a.example/").len(), 32);
    }
}
