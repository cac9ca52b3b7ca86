//! Files attached to messages: their rows, who may attach and read them, quotas, signed
//! download URLs, thumbnails and the deletion queue. The bytes live in the file store
//! (confab-files); this module records what each stored key is.

use crate::model::Message;
use crate::Chat;
use crate::{
    permissions, AttachmentId, ChannelId, ChatError, ChatResult, MessageId, ServerId, UserId,
};
use chrono::Utc;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use utoipa::ToSchema;

/// Most files on one message.
pub const MAX_FILES_PER_MESSAGE: usize = 10;
/// Longest file name kept (longer ones are cut, keeping the extension).
pub const MAX_FILENAME: usize = 255;

/// A file on a message, as clients see it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct Attachment {
    pub id: AttachmentId,
    pub filename: String,
    /// Sniffed from the bytes at upload; `application/octet-stream` for anything not shown
    /// inline.
    pub content_type: String,
    /// Bytes.
    pub size: i64,
    /// Images: displayed width and height (after the EXIF orientation), known at upload so
    /// clients reserve the space before loading.
    pub width: Option<i32>,
    pub height: Option<i32>,
    /// Signed download URL (relative to the server), valid for about a day; fetch the message
    /// again for a fresh one.
    pub url: String,
    /// Signed URL of a smaller JPEG/PNG preview, once made (images only).
    pub thumbnail_url: Option<String>,
}

/// An attachment as stored in a message row's JSON (`attachments` column of message queries).
#[derive(Debug, Deserialize)]
pub(crate) struct AttachmentRow {
    id: AttachmentId,
    filename: String,
    content_type: String,
    size: i64,
    width: Option<i32>,
    height: Option<i32>,
    thumbnail: bool,
}

/// The correlated subquery that lists a message's (alias `m`) attachments as JSON.
pub(crate) const ATTACHMENTS_JSON: &str = "COALESCE((SELECT json_agg(json_build_object(
        'id', a.id, 'filename', a.filename, 'content_type', a.content_type, 'size', a.size,
        'width', a.width, 'height', a.height, 'thumbnail', a.thumbnail_key IS NOT NULL)
        ORDER BY a.position) FROM attachments a WHERE a.message_id = m.id), '[]'::json)";

/// A file already written to the store, to be recorded with its message.
#[derive(Debug, Clone)]
pub struct NewAttachment {
    pub storage_key: String,
    pub filename: String,
    pub content_type: String,
    pub size: i64,
    pub width: Option<i32>,
    pub height: Option<i32>,
}

/// What the download handler needs to serve an attachment.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct StoredAttachment {
    pub id: AttachmentId,
    pub filename: String,
    pub content_type: String,
    pub size: i64,
    pub storage_key: String,
    pub thumbnail_key: Option<String>,
}

/// An image waiting for its thumbnail.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct PendingThumbnail {
    pub id: AttachmentId,
    pub message_id: MessageId,
    pub channel_id: ChannelId,
    pub storage_key: String,
    pub size: i64,
}

/// Bytes stored so far by a user and by a server (for quotas).
#[derive(Debug, Clone, Copy, Default)]
pub struct StorageUsage {
    pub user: i64,
    pub server: i64,
}

/// Which file of an attachment a signed URL is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    Original,
    Thumbnail,
}

/// Signs and checks attachment URLs. Every node of a cluster derives the same key from the
/// shared token secret, so a URL made on one node downloads from any.
pub struct FileUrls {
    key: [u8; 32],
}

/// URLs stay valid 24–25 hours: the expiry is rounded to the hour so the same message
/// serialised twice within an hour gives the same URL (browsers cache it).
const URL_LIFETIME_HOURS: i64 = 24;

impl FileUrls {
    pub const fn new(key: [u8; 32]) -> Self {
        FileUrls { key }
    }

    /// A key derived from the server's token secret (domain-separated, so a URL signature can
    /// never be mistaken for a token's or the other way round).
    pub fn from_secret(secret: &[u8]) -> Self {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret).expect("HMAC takes any key");
        mac.update(b"confab attachment urls v1");
        FileUrls {
            key: mac.finalize().into_bytes().into(),
        }
    }

    /// The MAC over what a URL grants: this file variant until `expires`.
    fn mac(&self, id: AttachmentId, variant: Variant, expires: i64) -> Hmac<Sha256> {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.key).expect("HMAC takes any key");
        let v = match variant {
            Variant::Original => "o",
            Variant::Thumbnail => "t",
        };
        mac.update(format!("{id}:{v}:{expires}").as_bytes());
        mac
    }

    fn signature(&self, id: AttachmentId, variant: Variant, expires: i64) -> String {
        hex::encode(&self.mac(id, variant, expires).finalize().into_bytes()[..16])
    }

    /// The signed URL of an attachment's file.
    pub fn url(&self, id: AttachmentId, filename: &str, variant: Variant) -> String {
        let expires = (Utc::now().timestamp() / 3600 + URL_LIFETIME_HOURS + 1) * 3600;
        let sig = self.signature(id, variant, expires);
        let name = url_path_segment(filename);
        match variant {
            Variant::Original => format!("/api/v1/attachments/{id}/{name}?ex={expires}&sig={sig}"),
            Variant::Thumbnail => {
                format!("/api/v1/attachments/{id}/thumbnail/{name}?ex={expires}&sig={sig}")
            }
        }
    }

    /// Whether `sig` is this server's signature for the file, not expired at `now` (seconds).
    pub fn verify(
        &self,
        id: AttachmentId,
        variant: Variant,
        expires: i64,
        sig: &str,
        now: i64,
    ) -> bool {
        if expires < now {
            return false;
        }
        let Ok(given) = hex::decode(sig) else {
            return false;
        };
        // Constant-time comparison of the truncated tag.
        given.len() == 16
            && self
                .mac(id, variant, expires)
                .verify_truncated_left(&given)
                .is_ok()
    }

    pub(crate) fn attachment(&self, r: AttachmentRow) -> Attachment {
        Attachment {
            url: self.url(r.id, &r.filename, Variant::Original),
            thumbnail_url: r
                .thumbnail
                .then(|| self.url(r.id, &r.filename, Variant::Thumbnail)),
            id: r.id,
            filename: r.filename,
            content_type: r.content_type,
            size: r.size,
            width: r.width,
            height: r.height,
        }
    }
}

/// Percent-encodes a file name for one URL path segment.
fn url_path_segment(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A safe display name for an uploaded file: no path, no control characters, at most
/// [`MAX_FILENAME`] bytes keeping the extension; `file` when nothing is left.
pub fn clean_filename(raw: &str) -> String {
    let base = raw.rsplit(['/', '\\']).next().unwrap_or("");
    let cleaned: String = base
        .chars()
        .filter(|c| !c.is_control() && !matches!(c, '"' | '\u{202e}' | '\u{202d}'))
        .collect();
    let cleaned = cleaned.trim().trim_start_matches('.').to_string();
    if cleaned.is_empty() {
        return "file".into();
    }
    if cleaned.len() <= MAX_FILENAME {
        return cleaned;
    }
    let (stem, ext) = match cleaned.rfind('.') {
        Some(i) if cleaned.len() - i <= 16 => (&cleaned[..i], &cleaned[i..]),
        _ => (&cleaned[..], ""),
    };
    let mut cut = MAX_FILENAME - ext.len();
    while !stem.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}{ext}", &stem[..cut])
}

impl Chat {
    /// Whether `user` may attach files in `channel_id` (SEND_MESSAGES and ATTACH_FILES, with
    /// overwrites; DMs: a recipient not blocked). Returns the channel's server (none for DMs).
    /// Checked before any byte is stored.
    pub async fn check_attach(
        &self,
        channel_id: ChannelId,
        user: UserId,
    ) -> ChatResult<Option<ServerId>> {
        let (channel, perms) = self.channel_access(channel_id, user).await?;
        if !channel.kind.is_textual() {
            return Err(ChatError::field(
                "channel_id",
                "messages go to text channels",
            ));
        }
        if !permissions::has(perms, permissions::SEND_MESSAGES) {
            return Err(ChatError::Forbidden("you may not send messages here"));
        }
        if !permissions::has(perms, permissions::ATTACH_FILES) {
            return Err(ChatError::Forbidden("you may not attach files here"));
        }
        Ok(channel.server_id)
    }

    /// Bytes of attachments stored by `user`, and in `server`.
    pub async fn storage_usage(
        &self,
        user: UserId,
        server: Option<ServerId>,
    ) -> ChatResult<StorageUsage> {
        let (user_bytes, server_bytes): (i64, i64) = sqlx::query_as(
            "SELECT COALESCE((SELECT sum(size) FROM attachments WHERE uploader_id = $1), 0)::bigint,
                    COALESCE((SELECT sum(size) FROM attachments WHERE server_id = $2), 0)::bigint",
        )
        .bind(user)
        .bind(server)
        .fetch_one(&self.pool)
        .await?;
        Ok(StorageUsage {
            user: user_bytes,
            server: server_bytes,
        })
    }

    /// Records files with a new message, in one transaction. The caller has stored the bytes.
    pub(crate) async fn insert_attachments(
        &self,
        tx: &mut sqlx::PgConnection,
        message_id: MessageId,
        channel_id: ChannelId,
        uploader: UserId,
        files: &[NewAttachment],
    ) -> ChatResult<()> {
        for (position, f) in files.iter().enumerate() {
            sqlx::query(
                "INSERT INTO attachments (id, message_id, channel_id, server_id, uploader_id,
                     filename, content_type, size, storage_key, width, height, position)
                 SELECT $1, $2, $3, c.server_id, $4, $5, $6, $7, $8, $9, $10, $11
                 FROM channels c WHERE c.id = $3",
            )
            .bind(self.next_id::<AttachmentId>())
            .bind(message_id)
            .bind(channel_id)
            .bind(uploader)
            .bind(&f.filename)
            .bind(&f.content_type)
            .bind(f.size)
            .bind(&f.storage_key)
            .bind(f.width)
            .bind(f.height)
            .bind(position as i16)
            .execute(&mut *tx)
            .await?;
        }
        Ok(())
    }

    /// The attachment behind a download URL whose signature was checked. Gone with its
    /// message.
    pub async fn stored_attachment(&self, id: AttachmentId) -> ChatResult<StoredAttachment> {
        sqlx::query_as(
            "SELECT id, filename, content_type, size, storage_key, thumbnail_key
             FROM attachments WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?
        .ok_or(ChatError::NotFound("attachment"))
    }

    /// Claims up to `limit` images still without a thumbnail (oldest first) for this node's
    /// thumbnail worker. Nodes of a cluster never take the same one; one left by a node that
    /// died is taken again after a minute.
    pub async fn claim_thumbnails(&self, limit: i64) -> ChatResult<Vec<PendingThumbnail>> {
        Ok(sqlx::query_as(
            "UPDATE attachments SET thumbnail_claimed_at = now() WHERE id IN (
                 SELECT id FROM attachments
                 WHERE thumbnail_key IS NULL AND content_type LIKE 'image/%'
                   AND (thumbnail_claimed_at IS NULL
                        OR thumbnail_claimed_at < now() - interval '1 minute')
                 ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED)
             RETURNING id, message_id, channel_id, storage_key, size",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Records a made thumbnail (and the image's decoded size); returns the message to
    /// re-dispatch, or `None` when the attachment is gone (the thumbnail is queued for
    /// deletion then).
    pub async fn set_thumbnail(
        &self,
        id: AttachmentId,
        thumbnail_key: &str,
        width: i32,
        height: i32,
    ) -> ChatResult<Option<Message>> {
        let message: Option<MessageId> = sqlx::query_scalar(
            "UPDATE attachments SET thumbnail_key = $2, width = $3, height = $4
             WHERE id = $1 AND thumbnail_key IS NULL RETURNING message_id",
        )
        .bind(id)
        .bind(thumbnail_key)
        .bind(width)
        .bind(height)
        .fetch_optional(&self.pool)
        .await?;
        match message {
            Some(m) => Ok(Some(self.message_by_id(m).await?)),
            None => {
                self.queue_file_deletions(&[thumbnail_key.to_owned()])
                    .await?;
                Ok(None)
            }
        }
    }

    /// Marks an image whose thumbnail cannot be made (undecodable, too large) so the worker
    /// does not try again: it keeps showing as the original or a download.
    pub async fn thumbnail_failed(&self, id: AttachmentId) -> ChatResult<()> {
        sqlx::query(
            "UPDATE attachments SET thumbnail_key = '' WHERE id = $1 AND thumbnail_key IS NULL",
        )
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Queues store keys no row refers to any more (an upload that failed half way, a replaced
    /// avatar): the sweeper deletes them.
    pub async fn queue_file_deletions(&self, keys: &[String]) -> ChatResult<()> {
        if keys.is_empty() {
            return Ok(());
        }
        sqlx::query(
            "INSERT INTO file_deletions (storage_key) SELECT k FROM unnest($1::text[]) k
             WHERE k <> '' ON CONFLICT DO NOTHING",
        )
        .bind(keys)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Keys waiting to be deleted from the store.
    pub async fn file_deletions(&self, limit: i64) -> ChatResult<Vec<String>> {
        Ok(
            sqlx::query_scalar(
                "SELECT storage_key FROM file_deletions ORDER BY queued_at LIMIT $1",
            )
            .bind(limit)
            .fetch_all(&self.pool)
            .await?,
        )
    }

    /// Forgets keys whose objects were deleted.
    pub async fn forget_file_deletions(&self, keys: &[String]) -> ChatResult<()> {
        sqlx::query("DELETE FROM file_deletions WHERE storage_key = ANY($1)")
            .bind(keys)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

impl Chat {
    /// Sets (or with `None` removes) a user's uploaded avatar: `(store key, URL)`. Returns the
    /// updated user and the key of the avatar it replaced, for deletion.
    pub async fn set_avatar(
        &self,
        user: UserId,
        avatar: Option<(&str, &str)>,
    ) -> ChatResult<(crate::model::User, Option<String>)> {
        let mut tx = self.pool.begin().await?;
        let old: Option<Option<String>> =
            sqlx::query_scalar("SELECT avatar_key FROM users WHERE id = $1 FOR UPDATE")
                .bind(user)
                .fetch_optional(&mut *tx)
                .await?;
        let old = old.ok_or(ChatError::NotFound("user"))?;
        let updated: crate::model::User = sqlx::query_as(
            "UPDATE users SET avatar_key = $2, avatar_url = $3 WHERE id = $1
             RETURNING id, username, display_name, avatar_url, custom_status, created_at",
        )
        .bind(user)
        .bind(avatar.map(|a| a.0))
        .bind(avatar.map(|a| a.1))
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok((updated, old))
    }

    /// Sets (or removes) a server's uploaded icon; needs MANAGE_SERVER. Returns the server and
    /// the key of the icon it replaced.
    pub async fn set_server_icon(
        &self,
        server: ServerId,
        by: UserId,
        icon: Option<(&str, &str)>,
    ) -> ChatResult<(crate::model::Server, Option<String>)> {
        let perms = self.server_permissions(server, by).await?;
        if !permissions::has(perms, permissions::MANAGE_SERVER) {
            return Err(ChatError::Forbidden("you may not manage this server"));
        }
        let mut tx = self.pool.begin().await?;
        let old: Option<Option<String>> =
            sqlx::query_scalar("SELECT icon_key FROM servers WHERE id = $1 FOR UPDATE")
                .bind(server)
                .fetch_optional(&mut *tx)
                .await?;
        let old = old.ok_or(ChatError::NotFound("server"))?;
        let updated: crate::model::Server = sqlx::query_as(
            "UPDATE servers SET icon_key = $2, icon_url = $3 WHERE id = $1
             RETURNING id, name, owner_id, created_at, icon_url",
        )
        .bind(server)
        .bind(icon.map(|a| a.0))
        .bind(icon.map(|a| a.1))
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok((updated, old))
    }

    /// The store key of a server's uploaded icon.
    pub async fn icon_key(&self, server: ServerId) -> ChatResult<Option<String>> {
        Ok(
            sqlx::query_scalar("SELECT icon_key FROM servers WHERE id = $1")
                .bind(server)
                .fetch_optional(&self.pool)
                .await?
                .flatten(),
        )
    }

    /// The store key of a user's uploaded avatar.
    pub async fn avatar_key(&self, user: UserId) -> ChatResult<Option<String>> {
        Ok(
            sqlx::query_scalar("SELECT avatar_key FROM users WHERE id = $1")
                .bind(user)
                .fetch_optional(&self.pool)
                .await?
                .flatten(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Snowflake;

    #[test]
    fn signed_urls_verify_only_for_their_file_variant_and_time() {
        let urls = FileUrls::from_secret(b"secret");
        let id = AttachmentId::new(Snowflake(42));
        let url = urls.url(id, "cat picture.png", Variant::Original);
        assert!(
            url.starts_with("/api/v1/attachments/42/cat%20picture.png?ex="),
            "{url}"
        );
        let query = url.split_once('?').unwrap().1;
        let ex: i64 = query.split('&').next().unwrap()[3..].parse().unwrap();
        let sig = query.split("&sig=").nth(1).unwrap();
        let now = Utc::now().timestamp();
        assert!(ex - now > 23 * 3600);
        assert!(urls.verify(id, Variant::Original, ex, sig, now));
        assert!(!urls.verify(id, Variant::Thumbnail, ex, sig, now));
        assert!(!urls.verify(
            AttachmentId::new(Snowflake(43)),
            Variant::Original,
            ex,
            sig,
            now
        ));
        assert!(!urls.verify(id, Variant::Original, ex + 3600, sig, now));
        assert!(
            !urls.verify(id, Variant::Original, ex, sig, ex + 1),
            "expired"
        );
        assert!(
            !urls.verify(id, Variant::Original, ex, &sig[..16], now),
            "truncated"
        );
        assert!(!urls.verify(id, Variant::Original, ex, "zz", now));
        let other = FileUrls::from_secret(b"another secret");
        assert!(!other.verify(id, Variant::Original, ex, sig, now));
    }

    #[test]
    fn file_names_lose_paths_and_control_characters() {
        assert_eq!(clean_filename("../../etc/passwd"), "passwd");
        assert_eq!(clean_filename("C:\\Users\\me\\photo.jpg"), "photo.jpg");
        assert_eq!(clean_filename("a\u{202e}gpj.exe"), "agpj.exe");
        assert_eq!(clean_filename("bad\"name\n.txt"), "badname.txt");
        assert_eq!(clean_filename(".hidden"), "hidden");
        assert_eq!(clean_filename(""), "file");
        assert_eq!(clean_filename("///"), "file");
        let long = format!("{}.png", "é".repeat(300));
        let cut = clean_filename(&long);
        assert!(cut.len() <= MAX_FILENAME && cut.ends_with(".png"), "{cut}");
    }
}
