//! Notification settings and Web Push subscriptions (docs/push.md).
//!
//! A user's settings decide which new messages reach their browsers as push notifications:
//! per server and per channel (a channel's level overrides its server's), a mute until a
//! time, and whether `@everyone`/`@here` count as mentions. [`recipients`] applies them to a
//! message; the signaling crate encrypts and sends.

pub mod recipients;
pub mod subscriptions;

use crate::{ChannelId, Chat, ChatError, ChatResult, ServerId, UserId};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Servers with more members than this default to "mentions"; smaller ones to "all".
pub const LARGE_SERVER_MEMBERS: i64 = 100;

/// Which messages notify.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    All,
    Mentions,
    Nothing,
}

impl Level {
    fn to_db(self) -> i16 {
        match self {
            Level::All => 0,
            Level::Mentions => 1,
            Level::Nothing => 2,
        }
    }

    fn from_db(v: Option<i16>) -> Option<Level> {
        match v? {
            0 => Some(Level::All),
            1 => Some(Level::Mentions),
            2 => Some(Level::Nothing),
            _ => None,
        }
    }
}

/// A user's settings for one server.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct ServerSettings {
    pub server_id: ServerId,
    /// Null: the default (`mentions` in servers of more than 100 members, else `all`).
    pub level: Option<Level>,
    /// No notifications from this server until then (null: not muted).
    pub muted_until: Option<DateTime<Utc>>,
    /// `@everyone` and `@here` do not count as mentions of this user.
    pub suppress_everyone: bool,
}

/// A user's settings for one channel or DM.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct ChannelSettings {
    pub channel_id: ChannelId,
    /// Null: the server's level (a DM: `all`).
    pub level: Option<Level>,
    pub muted_until: Option<DateTime<Utc>>,
}

/// Everything a user set (servers and channels left at their defaults are absent).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct NotificationSettings {
    pub servers: Vec<ServerSettings>,
    pub channels: Vec<ChannelSettings>,
}

/// `PUT /users/@me/servers/{server_id}/notification-settings`: the whole setting.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ServerSettingsBody {
    #[serde(default)]
    pub level: Option<Level>,
    #[serde(default)]
    pub muted_until: Option<DateTime<Utc>>,
    #[serde(default)]
    pub suppress_everyone: bool,
}

/// `PUT /users/@me/channels/{channel_id}/notification-settings`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChannelSettingsBody {
    #[serde(default)]
    pub level: Option<Level>,
    #[serde(default)]
    pub muted_until: Option<DateTime<Utc>>,
}

/// A mute further ahead than this is refused (a typo, not a wish).
const MAX_MUTE_DAYS: i64 = 3660;

fn check_mute(until: Option<DateTime<Utc>>) -> ChatResult<()> {
    if until.is_some_and(|t| t > Utc::now() + chrono::Duration::days(MAX_MUTE_DAYS)) {
        return Err(ChatError::field(
            "muted_until",
            "at most ten years ahead (mute forever: level \"nothing\")",
        ));
    }
    Ok(())
}

type ServerRow = (ServerId, Option<i16>, Option<DateTime<Utc>>, bool);
type ChannelRow = (ChannelId, Option<i16>, Option<DateTime<Utc>>);

impl Chat {
    /// The user's notification settings.
    pub async fn notification_settings(&self, user_id: UserId) -> ChatResult<NotificationSettings> {
        let servers: Vec<ServerRow> = sqlx::query_as(
            "SELECT server_id, level, muted_until, suppress_everyone
             FROM server_notification_settings WHERE user_id = $1 ORDER BY server_id",
        )
        .bind(user_id)
        .fetch_all(&self.pool)
        .await?;
        let channels: Vec<ChannelRow> = sqlx::query_as(
            "SELECT channel_id, level, muted_until
             FROM channel_notification_settings WHERE user_id = $1 ORDER BY channel_id",
        )
        .bind(user_id)
        .fetch_all(&self.pool)
        .await?;
        Ok(NotificationSettings {
            servers: servers
                .into_iter()
                .map(
                    |(server_id, level, muted_until, suppress_everyone)| ServerSettings {
                        server_id,
                        level: Level::from_db(level),
                        muted_until,
                        suppress_everyone,
                    },
                )
                .collect(),
            channels: channels
                .into_iter()
                .map(|(channel_id, level, muted_until)| ChannelSettings {
                    channel_id,
                    level: Level::from_db(level),
                    muted_until,
                })
                .collect(),
        })
    }

    /// Sets the user's settings for a server they are a member of (NotFound otherwise).
    pub async fn put_server_notification_settings(
        &self,
        user_id: UserId,
        server_id: ServerId,
        body: ServerSettingsBody,
    ) -> ChatResult<ServerSettings> {
        check_mute(body.muted_until)?;
        self.member_access(server_id, user_id)
            .await?
            .ok_or(ChatError::NotFound("server"))?;
        sqlx::query(
            "INSERT INTO server_notification_settings
                 (user_id, server_id, level, muted_until, suppress_everyone)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (user_id, server_id) DO UPDATE SET level = excluded.level,
                 muted_until = excluded.muted_until, suppress_everyone = excluded.suppress_everyone",
        )
        .bind(user_id)
        .bind(server_id)
        .bind(body.level.map(Level::to_db))
        .bind(body.muted_until)
        .bind(body.suppress_everyone)
        .execute(&self.pool)
        .await?;
        Ok(ServerSettings {
            server_id,
            level: body.level,
            muted_until: body.muted_until,
            suppress_everyone: body.suppress_everyone,
        })
    }

    /// Sets the user's settings for a channel they can view, or a DM of theirs.
    pub async fn put_channel_notification_settings(
        &self,
        user_id: UserId,
        channel_id: ChannelId,
        body: ChannelSettingsBody,
    ) -> ChatResult<ChannelSettings> {
        check_mute(body.muted_until)?;
        self.channel_access(channel_id, user_id).await?;
        sqlx::query(
            "INSERT INTO channel_notification_settings (user_id, channel_id, level, muted_until)
             VALUES ($1, $2, $3, $4)
             ON CONFLICT (user_id, channel_id) DO UPDATE SET level = excluded.level,
                 muted_until = excluded.muted_until",
        )
        .bind(user_id)
        .bind(channel_id)
        .bind(body.level.map(Level::to_db))
        .bind(body.muted_until)
        .execute(&self.pool)
        .await?;
        Ok(ChannelSettings {
            channel_id,
            level: body.level,
            muted_until: body.muted_until,
        })
    }
}
