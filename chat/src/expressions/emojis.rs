//! Custom emoji: `<:name:id>` (or `<a:name:id>` when animated) in messages, `name:id` in
//! reactions.

use super::{ImageRef, StoredImage, MANAGE};
use crate::audit::Actor;
use crate::error::{is_unique_violation, Validator};
use crate::permissions;
use crate::{Chat, ChatError, ChatResult, RoleId, ServerId, Snowflake, UserId};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Still emoji one server may hold; as many animated ones again.
pub const MAX_STATIC_PER_SERVER: i64 = 50;
pub const MAX_ANIMATED_PER_SERVER: i64 = 50;
/// Largest emoji upload, bytes.
pub const MAX_BYTES: usize = 256 * 1024;
/// Still emoji are scaled to fit this square; animated ones may be at most `MAX_ANIMATED_SIDE`.
pub const MAX_SIDE: u32 = 128;
pub const MAX_ANIMATED_SIDE: u32 = 256;

/// A custom emoji as clients see it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct Emoji {
    #[schema(value_type = String)]
    pub id: Snowflake,
    pub server_id: ServerId,
    /// 2-32 of `A-Z a-z 0-9 _`, unique in the server.
    pub name: String,
    pub animated: bool,
    /// Roles allowed to use it; empty = every member.
    pub roles: Vec<RoleId>,
    pub creator_id: Option<UserId>,
    /// The image, relative to the server: `/api/v1/emojis/{id}` (public, cached for a year).
    pub url: String,
    pub created_at: DateTime<Utc>,
}

#[derive(sqlx::FromRow)]
struct EmojiRow {
    id: Snowflake,
    server_id: ServerId,
    name: String,
    animated: bool,
    roles: Vec<i64>,
    creator_id: Option<UserId>,
    created_at: DateTime<Utc>,
}

impl From<EmojiRow> for Emoji {
    fn from(r: EmojiRow) -> Self {
        Emoji {
            url: format!("/api/v1/emojis/{}", r.id),
            id: r.id,
            server_id: r.server_id,
            name: r.name,
            animated: r.animated,
            roles: r
                .roles
                .into_iter()
                .map(|id| RoleId::new(Snowflake(id)))
                .collect(),
            creator_id: r.creator_id,
            created_at: r.created_at,
        }
    }
}

const COLUMNS: &str = "id, server_id, name, animated, roles, creator_id, created_at";

/// An upload's name and role restriction.
#[derive(Debug, Clone, Default)]
pub struct NewEmoji<'a> {
    pub name: &'a str,
    pub roles: &'a [RoleId],
}

/// A change to an emoji: each field left out stays as it is.
#[derive(Debug, Clone, Default)]
pub struct EmojiUpdate<'a> {
    pub name: Option<&'a str>,
    pub roles: Option<&'a [RoleId]>,
}

/// Whether `name` may name an emoji: 2-32 ASCII letters, digits or underscores.
pub fn valid_name(name: &str) -> bool {
    (2..=32).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// A custom emoji as written in a reaction: `name:id`, also `<:name:id>`, `<a:name:id>` or
/// `a:name:id`. Returns the name and id; None when it is not one.
pub fn parse_reaction(s: &str) -> Option<(&str, Snowflake)> {
    let s = s
        .strip_prefix('<')
        .and_then(|s| s.strip_suffix('>'))
        .unwrap_or(s);
    let s = s.strip_prefix("a:").unwrap_or(s);
    let s = s.strip_prefix(':').unwrap_or(s);
    let (name, id) = s.split_once(':')?;
    if !valid_name(name) || id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let id: i64 = id.parse().ok()?;
    Some((name, Snowflake(id)))
}

/// A custom emoji written in message text: `<:name:id>` or `<a:name:id>`.
static IN_TEXT: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
    regex::Regex::new(r"<(a?):([A-Za-z0-9_]{2,32}):([0-9]{1,19})>").expect("a valid pattern")
});

impl Chat {
    /// Custom emoji in a message's text that its author may not use there — another server's
    /// (or any, in a DM), or one restricted to roles they lack — become plain `:name:`, as
    /// Discord shows them, so clients never draw what the server would refuse in a reaction.
    /// Text without custom emoji costs no query.
    pub(crate) async fn usable_emoji_text<'a>(
        &self,
        server_id: Option<ServerId>,
        author: UserId,
        content: &'a str,
    ) -> ChatResult<std::borrow::Cow<'a, str>> {
        if !content.contains("<:") && !content.contains("<a:") {
            return Ok(content.into());
        }
        let ids: Vec<i64> = IN_TEXT
            .captures_iter(content)
            .filter_map(|c| c[3].parse().ok())
            .collect();
        if ids.is_empty() {
            return Ok(content.into());
        }
        let mut usable = std::collections::HashSet::new();
        if let Some(server_id) = server_id {
            let rows: Vec<(i64, Vec<i64>)> = sqlx::query_as(
                "SELECT id, roles FROM server_emojis WHERE server_id = $1 AND id = ANY($2)",
            )
            .bind(server_id)
            .bind(&ids)
            .fetch_all(&self.pool)
            .await?;
            let mut access = None;
            for (id, roles) in rows {
                if roles.is_empty() {
                    usable.insert(id);
                    continue;
                }
                if access.is_none() {
                    access = Some(self.member_access(server_id, author).await?);
                }
                if let Some(Some(a)) = &access {
                    if permissions::has(a.base(), permissions::ADMINISTRATOR)
                        || a.role_ids.iter().any(|r| roles.contains(&r.get()))
                    {
                        usable.insert(id);
                    }
                }
            }
        }
        Ok(
            IN_TEXT.replace_all(content, |c: &regex::Captures| match c[3].parse::<i64>() {
                Ok(id) if usable.contains(&id) => c[0].to_owned(),
                _ => format!(":{}:", &c[2]),
            }),
        )
    }

    /// Role ids that are roles of this server other than @everyone (else a 400).
    async fn server_roles(&self, server_id: ServerId, roles: &[RoleId]) -> ChatResult<Vec<i64>> {
        let mut ids: Vec<i64> = roles.iter().map(|r| r.get()).collect();
        ids.sort_unstable();
        ids.dedup();
        let known: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM roles WHERE server_id = $1 AND id = ANY($2) AND id <> $1",
        )
        .bind(server_id)
        .bind(&ids)
        .fetch_one(&self.pool)
        .await?;
        if known != ids.len() as i64 {
            return Err(ChatError::field(
                "roles",
                "must be roles of this server (not @everyone)",
            ));
        }
        Ok(ids)
    }

    /// The server's emoji, oldest first (any member).
    pub async fn emojis(&self, server_id: ServerId, user_id: UserId) -> ChatResult<Vec<Emoji>> {
        self.require_member(server_id, user_id).await?;
        self.server_emojis(server_id).await
    }

    /// The server's emoji (no permission check: READY and dispatches, whose audience is the
    /// server's members).
    pub async fn server_emojis(&self, server_id: ServerId) -> ChatResult<Vec<Emoji>> {
        let rows: Vec<EmojiRow> = sqlx::query_as(q!(
            "SELECT {COLUMNS} FROM server_emojis WHERE server_id = $1 ORDER BY id"
        ))
        .bind(server_id)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(Emoji::from).collect())
    }

    /// Records an uploaded emoji (MANAGE_EXPRESSIONS): a unique name, at most
    /// `MAX_STATIC_PER_SERVER` still and `MAX_ANIMATED_PER_SERVER` animated ones. Audit-logged
    /// as `emoji_create`. On an error the caller deletes the stored image.
    pub async fn create_emoji(
        &self,
        server_id: ServerId,
        actor: Actor<'_>,
        new: NewEmoji<'_>,
        image: &StoredImage,
    ) -> ChatResult<Emoji> {
        self.require_access(
            server_id,
            actor.user_id,
            permissions::MANAGE_EXPRESSIONS,
            MANAGE,
        )
        .await?;
        let mut v = Validator::default();
        v.check(
            valid_name(new.name),
            "name",
            "must be 2-32 letters, digits or underscores",
        );
        v.check(new.roles.len() <= 20, "roles", "at most 20 roles");
        v.finish()?;
        let roles = self.server_roles(server_id, new.roles).await?;
        let mut tx = self.pool.begin().await?;
        // Serialises uploads to one server so two at once cannot both take the last place.
        sqlx::query("SELECT 1 FROM servers WHERE id = $1 FOR UPDATE")
            .bind(server_id)
            .execute(&mut *tx)
            .await?;
        let count: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM server_emojis WHERE server_id = $1 AND animated = $2",
        )
        .bind(server_id)
        .bind(image.animated)
        .fetch_one(&mut *tx)
        .await?;
        let (max, kind) = if image.animated {
            (MAX_ANIMATED_PER_SERVER, "animated")
        } else {
            (MAX_STATIC_PER_SERVER, "still")
        };
        if count >= max {
            return Err(ChatError::Conflict(format!(
                "a server has at most {max} {kind} emoji"
            )));
        }
        let row: Result<EmojiRow, sqlx::Error> = sqlx::query_as(q!("INSERT INTO server_emojis
                 (id, server_id, name, animated, content_type, storage_key, roles, creator_id)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING {COLUMNS}"))
        .bind(self.next_id::<Snowflake>())
        .bind(server_id)
        .bind(new.name)
        .bind(image.animated)
        .bind(&image.content_type)
        .bind(&image.storage_key)
        .bind(&roles)
        .bind(actor.user_id)
        .fetch_one(&mut *tx)
        .await;
        let emoji = Emoji::from(row.map_err(duplicate_name)?);
        self.audit(
            &mut tx,
            server_id,
            actor,
            "emoji_create",
            Some(emoji.id),
            serde_json::json!({"name": emoji.name, "animated": emoji.animated, "roles": emoji.roles}),
        )
        .await?;
        tx.commit().await?;
        Ok(emoji)
    }

    /// Renames an emoji or changes its roles (MANAGE_EXPRESSIONS); `emoji_update`.
    pub async fn update_emoji(
        &self,
        server_id: ServerId,
        emoji_id: Snowflake,
        actor: Actor<'_>,
        update: EmojiUpdate<'_>,
    ) -> ChatResult<Emoji> {
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
            "must be 2-32 letters, digits or underscores",
        );
        if let Some(roles) = update.roles {
            v.check(roles.len() <= 20, "roles", "at most 20 roles");
        }
        v.finish()?;
        let roles = match update.roles {
            Some(r) => Some(self.server_roles(server_id, r).await?),
            None => None,
        };
        let mut tx = self.pool.begin().await?;
        let row: Result<Option<EmojiRow>, sqlx::Error> = sqlx::query_as(q!(
            "UPDATE server_emojis SET name = COALESCE($3, name), roles = COALESCE($4, roles)
             WHERE id = $1 AND server_id = $2 RETURNING {COLUMNS}"
        ))
        .bind(emoji_id)
        .bind(server_id)
        .bind(update.name)
        .bind(roles)
        .fetch_optional(&mut *tx)
        .await;
        let emoji = Emoji::from(
            row.map_err(duplicate_name)?
                .ok_or(ChatError::NotFound("emoji"))?,
        );
        self.audit(
            &mut tx,
            server_id,
            actor,
            "emoji_update",
            Some(emoji.id),
            serde_json::json!({"name": emoji.name, "roles": emoji.roles}),
        )
        .await?;
        tx.commit().await?;
        Ok(emoji)
    }

    /// Deletes an emoji (MANAGE_EXPRESSIONS); its image is queued for deletion from the
    /// store. Reactions made with it stay (they show their name). `emoji_delete`.
    pub async fn delete_emoji(
        &self,
        server_id: ServerId,
        emoji_id: Snowflake,
        actor: Actor<'_>,
    ) -> ChatResult<()> {
        self.delete_expression(super::Kind::Emoji, server_id, emoji_id, actor)
            .await
    }

    /// Where an emoji's image is stored (public, as avatars: the id is the key).
    pub async fn emoji_image(&self, emoji_id: Snowflake) -> ChatResult<ImageRef> {
        self.expression_image(super::Kind::Emoji, emoji_id).await
    }

    /// Checks `user_id` may use custom emoji `emoji_id` in server `server_id`: it is one of
    /// that server's (else 400) and, when restricted, they hold one of its roles (the owner and
    /// administrators always may; else 403). Returns the emoji.
    pub async fn usable_emoji(
        &self,
        server_id: ServerId,
        user_id: UserId,
        emoji_id: Snowflake,
    ) -> ChatResult<Emoji> {
        let row: Option<EmojiRow> = sqlx::query_as(q!(
            "SELECT {COLUMNS} FROM server_emojis WHERE id = $1 AND server_id = $2"
        ))
        .bind(emoji_id)
        .bind(server_id)
        .fetch_optional(&self.pool)
        .await?;
        let emoji = Emoji::from(
            row.ok_or_else(|| ChatError::field("emoji", "is not an emoji of this server"))?,
        );
        if emoji.roles.is_empty() {
            return Ok(emoji);
        }
        let access = self
            .member_access(server_id, user_id)
            .await?
            .ok_or(ChatError::NotFound("server"))?;
        if permissions::has(access.base(), permissions::ADMINISTRATOR)
            || access.role_ids.iter().any(|r| emoji.roles.contains(r))
        {
            Ok(emoji)
        } else {
            Err(ChatError::Forbidden(
                "this emoji is only for members with certain roles",
            ))
        }
    }
}

fn duplicate_name(e: sqlx::Error) -> ChatError {
    if is_unique_violation(&e, "server_emojis_server_id_name_key") {
        ChatError::field("name", "this server already has an emoji with that name")
    } else {
        e.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_word_characters() {
        for ok in ["ok", "party_parrot", "A1", &"x".repeat(32)] {
            assert!(valid_name(ok), "{ok}");
        }
        for bad in [
            "a",
            "",
            "has space",
            "dash-y",
            "émoji",
            &"x".repeat(33),
            "a:b",
        ] {
            assert!(!valid_name(bad), "{bad}");
        }
    }

    #[test]
    fn reactions_name_a_custom_emoji_in_several_spellings() {
        let want = Some(("wave", Snowflake(42)));
        assert_eq!(parse_reaction("wave:42"), want);
        assert_eq!(parse_reaction("<:wave:42>"), want);
        assert_eq!(parse_reaction("<a:wave:42>"), want);
        assert_eq!(parse_reaction("a:wave:42"), want);
        for bad in [
            "👍",
            "wave",
            "wave:",
            ":42",
            "wave:4x2",
            "w:42",
            "wave:99999999999999999999",
        ] {
            assert_eq!(parse_reaction(bad), None, "{bad}");
        }
    }
}
