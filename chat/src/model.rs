//! The objects clients see. Field names are the wire format (docs/gateway.md, OpenAPI).

use crate::{ChannelId, MessageId, RoleId, ServerId, SessionId, UserId};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, sqlx::FromRow, PartialEq)]
pub struct User {
    pub id: UserId,
    pub username: String,
    pub display_name: Option<String>,
    pub avatar_url: Option<String>,
    pub custom_status: Option<String>,
    pub created_at: DateTime<Utc>,
    /// A bot account or a webhook (docs/bots.md). Queries that do not select it read false.
    #[serde(default)]
    #[sqlx(default)]
    pub bot: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, sqlx::FromRow, PartialEq)]
pub struct Server {
    pub id: ServerId,
    pub name: String,
    pub owner_id: UserId,
    pub created_at: DateTime<Utc>,
    /// The server's uploaded icon (a 256×256 PNG), if any.
    #[serde(default)]
    #[sqlx(default)]
    pub icon_url: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, ToSchema, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum ChannelKind {
    #[default]
    Text,
    Voice,
    /// A voice channel in stage mode: only speakers send audio, everyone else listens.
    Stage,
    Category,
    /// A 1:1 direct message channel (no server).
    Dm,
    /// A group DM of up to 10 people (no server).
    #[serde(rename = "group_dm")]
    GroupDm,
    /// A channel of posts: each post is a thread with a title, a first message and tags.
    Forum,
    /// A thread anyone who sees its parent channel may read and join.
    #[serde(rename = "public_thread")]
    PublicThread,
    /// A thread only its members (and MANAGE_THREADS holders) see.
    #[serde(rename = "private_thread")]
    PrivateThread,
}

impl ChannelKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ChannelKind::Text => "text",
            ChannelKind::Voice => "voice",
            ChannelKind::Stage => "stage",
            ChannelKind::Category => "category",
            ChannelKind::Dm => "dm",
            ChannelKind::GroupDm => "group_dm",
            ChannelKind::Forum => "forum",
            ChannelKind::PublicThread => "public_thread",
            ChannelKind::PrivateThread => "private_thread",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "text" => Some(ChannelKind::Text),
            "voice" => Some(ChannelKind::Voice),
            "stage" => Some(ChannelKind::Stage),
            "category" => Some(ChannelKind::Category),
            "dm" => Some(ChannelKind::Dm),
            "group_dm" => Some(ChannelKind::GroupDm),
            "forum" => Some(ChannelKind::Forum),
            "public_thread" => Some(ChannelKind::PublicThread),
            "private_thread" => Some(ChannelKind::PrivateThread),
            _ => None,
        }
    }

    /// Channels people connect to with voice: voice and stage channels.
    pub fn is_voice(self) -> bool {
        matches!(self, ChannelKind::Voice | ChannelKind::Stage)
    }

    /// DMs and group DMs: channels outside any server.
    pub fn is_private(self) -> bool {
        matches!(self, ChannelKind::Dm | ChannelKind::GroupDm)
    }

    /// Channels that carry messages.
    pub fn is_textual(self) -> bool {
        matches!(
            self,
            ChannelKind::Text
                | ChannelKind::Dm
                | ChannelKind::GroupDm
                | ChannelKind::PublicThread
                | ChannelKind::PrivateThread
        )
    }

    /// Public and private threads.
    pub fn is_thread(self) -> bool {
        matches!(self, ChannelKind::PublicThread | ChannelKind::PrivateThread)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct Channel {
    pub id: ChannelId,
    /// Null for DMs and group DMs.
    pub server_id: Option<ServerId>,
    #[serde(rename = "type")]
    pub kind: ChannelKind,
    /// Empty for a DM and an unnamed group DM.
    pub name: String,
    pub position: i32,
    pub parent_id: Option<ChannelId>,
    pub topic: Option<String>,
    /// Group DMs: who may add and remove recipients.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner_id: Option<UserId>,
    /// Voice channels: media is end-to-end encrypted (docs/e2ee.md); clients must join with
    /// an identity key. Only present (true) on such channels.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub e2ee: bool,
    /// DMs and group DMs: everyone in it, the caller included.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recipients: Option<Vec<User>>,
    /// The newest message's id (READY, DM lists), so clients can tell unread channels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_message_id: Option<MessageId>,
    /// Threads only: archive state, counts and tags (docs/threads.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thread_metadata: Option<ThreadMetadata>,
    /// Forums only: the tags posts may carry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub available_tags: Option<Vec<ForumTag>>,
}

/// What a thread has beyond a channel's fields.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct ThreadMetadata {
    pub archived: bool,
    /// Archived and only MANAGE_THREADS may reopen it.
    pub locked: bool,
    /// Minutes of inactivity before the thread archives itself: 60, 1440, 4320 or 10080.
    pub auto_archive_duration: i32,
    /// When it was last archived or unarchived.
    pub archive_timestamp: Option<DateTime<Utc>>,
    /// The message it was started from (in the parent channel), if any.
    pub starter_message_id: Option<MessageId>,
    /// Messages sent in it (deleted ones included).
    pub message_count: i32,
    pub member_count: i64,
    pub last_activity_at: DateTime<Utc>,
    /// Forum posts: the forum tags it carries (ids, at most 5).
    #[schema(value_type = Vec<String>)]
    pub applied_tags: Vec<crate::Snowflake>,
}

/// A tag of a forum channel.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, sqlx::FromRow)]
pub struct ForumTag {
    #[schema(value_type = String)]
    pub id: crate::Snowflake,
    /// 1-20 characters, unique in the forum.
    pub name: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct Member {
    pub server_id: ServerId,
    pub user: User,
    pub joined_at: DateTime<Utc>,
    pub nickname: Option<String>,
    pub mute: bool,
    pub deaf: bool,
    /// Timed out until then (can read, not send, react, speak or join voice).
    pub timeout_until: Option<DateTime<Utc>>,
    /// Role ids besides @everyone.
    pub roles: Vec<RoleId>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct Invite {
    pub code: String,
    pub server_id: ServerId,
    pub inviter_id: UserId,
    /// 0 = unlimited.
    pub max_uses: i32,
    pub uses: i32,
    /// Seconds; 0 = never expires.
    pub max_age: i32,
    pub expires_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    /// Members who join through it are removed when they go offline, unless given a role.
    pub temporary: bool,
    /// A preview of the server (on `GET /invites/{code}`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server: Option<Server>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct Message {
    pub id: MessageId,
    pub channel_id: ChannelId,
    /// Null in DMs.
    pub server_id: Option<ServerId>,
    /// Posted in a thread (server-side only: tells the send path to record thread activity).
    #[serde(skip)]
    #[schema(ignore)]
    pub in_thread: bool,
    pub author: User,
    pub content: String,
    pub nonce: Option<String>,
    pub created_at: DateTime<Utc>,
    pub edited_at: Option<DateTime<Utc>>,
    /// The message this one replies to (same channel).
    pub reply_to: Option<MessageId>,
    /// Members mentioned with `<@id>`.
    pub mentions: Vec<UserId>,
    /// Roles mentioned with `<@&id>`.
    pub mention_roles: Vec<RoleId>,
    /// `@everyone`/`@here` by someone with MENTION_EVERYONE.
    pub mention_everyone: bool,
    /// Files sent with the message, in upload order.
    #[serde(default)]
    pub attachments: Vec<crate::files::Attachment>,
    /// Link previews, filled in after the message is stored (a MESSAGE_UPDATE brings them).
    #[serde(default)]
    pub embeds: Vec<Embed>,
    /// Bit flags: 4 = SUPPRESS_EMBEDS (the author removed the previews).
    #[serde(default)]
    pub flags: i32,
    /// The incoming webhook that posted it (its `author` then carries the name it posted
    /// under), else null (docs/bots.md).
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub webhook_id: Option<crate::Snowflake>,
    /// The sticker sent with the message (at most one), as it was then (docs/emoji.md).
    #[serde(default)]
    pub stickers: Vec<crate::expressions::StickerItem>,
}

/// A link preview under a message, shaped like Discord's embeds (docs/link-previews.md).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct Embed {
    /// Always `"link"`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The link as written in the message.
    pub url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub site_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<EmbedImage>,
}

/// A preview's image, served by Confab (never the third-party URL: it would leak viewers'
/// addresses and the page's CSP forbids it).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct EmbedImage {
    /// `/api/v1/link-previews/images/{key}`, relative to the server.
    pub url: String,
    pub width: u32,
    pub height: u32,
}

/// A server with what a client needs to draw it (READY, SERVER_CREATE).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ServerSnapshot {
    #[serde(flatten)]
    pub server: Server,
    pub channels: Vec<Channel>,
    pub members: Vec<Member>,
    /// The server's custom emoji and stickers (docs/emoji.md).
    #[serde(default)]
    pub emojis: Vec<crate::expressions::Emoji>,
    #[serde(default)]
    pub stickers: Vec<crate::expressions::Sticker>,
}

/// One device's login (a refresh-token family).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AuthSession {
    pub id: SessionId,
    pub created_at: DateTime<Utc>,
    pub last_used_at: DateTime<Utc>,
    pub user_agent: Option<String>,
    pub ip: Option<String>,
    /// True for the session making the request.
    pub current: bool,
}
