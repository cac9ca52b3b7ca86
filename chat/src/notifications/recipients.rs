//! Who is notified of a new message: the users with a push subscription who may see it and
//! whose settings ask for it (docs/push.md). Presence and focus are the caller's to check.

use super::{Level, LARGE_SERVER_MEMBERS};
use crate::model::Message;
use crate::{ChannelId, Chat, ChatResult, RoleId, ServerId, UserId};
use chrono::{DateTime, Utc};
use std::collections::HashMap;

/// (user, level, muted_until, suppress_everyone) of `server_notification_settings`.
type ServerRow = (UserId, Option<i16>, Option<DateTime<Utc>>, bool);

/// Why a user is notified; the payload's `type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    Dm,
    Mention,
    Reply,
    Message,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Dm => "dm",
            Reason::Mention => "mention",
            Reason::Reply => "reply",
            Reason::Message => "message",
        }
    }
}

/// The settings that apply to one user for one message.
#[derive(Debug, Default, Clone)]
struct Applied {
    server_level: Option<Level>,
    channel_level: Option<Level>,
    muted: bool,
    suppress_everyone: bool,
}

/// The decision for one user, from what applies (pure: unit-tested below).
fn decide(
    applied: &Applied,
    default: Level,
    dm: bool,
    mentioned: bool,
    everyone: bool,
    replied: bool,
) -> Option<Reason> {
    if applied.muted {
        return None;
    }
    let level = applied
        .channel_level
        .or(applied.server_level)
        .unwrap_or(default);
    let mention = mentioned || (everyone && !applied.suppress_everyone);
    match level {
        Level::Nothing => None,
        _ if dm => Some(Reason::Dm),
        _ if mention => Some(Reason::Mention),
        _ if replied => Some(Reason::Reply),
        Level::All => Some(Reason::Message),
        Level::Mentions => None,
    }
}

impl Chat {
    /// The users to notify of a new message, with why. Only users holding a push
    /// subscription are considered, so a large server costs what its subscribers cost.
    pub async fn push_recipients(&self, message: &Message) -> ChatResult<Vec<(UserId, Reason)>> {
        let author = message.author.id;
        let channel_id = message.channel_id;
        let candidates: Vec<UserId> = match message.server_id {
            Some(server_id) => {
                sqlx::query_scalar(
                    "SELECT DISTINCT p.user_id FROM push_subscriptions p
                 JOIN members m ON m.user_id = p.user_id AND m.server_id = $1
                 JOIN users u ON u.id = p.user_id AND NOT u.bot
                 WHERE p.user_id <> $2",
                )
                .bind(server_id)
                .bind(author)
                .fetch_all(&self.pool)
                .await?
            }
            None => {
                sqlx::query_scalar(
                    "SELECT DISTINCT p.user_id FROM push_subscriptions p
                 JOIN dm_recipients d ON d.user_id = p.user_id AND d.channel_id = $1
                 WHERE p.user_id <> $2",
                )
                .bind(channel_id)
                .bind(author)
                .fetch_all(&self.pool)
                .await?
            }
        };
        if candidates.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<i64> = candidates.iter().map(|u| u.get()).collect();
        let mut applied = self
            .applied_settings(message.server_id, channel_id, &ids)
            .await?;
        let replied_to: Option<UserId> = match message.reply_to {
            Some(reply_to) => {
                sqlx::query_scalar("SELECT author_id FROM messages WHERE id = $1")
                    .bind(reply_to)
                    .fetch_optional(&self.pool)
                    .await?
            }
            None => None,
        };
        let (default, roles) = match message.server_id {
            Some(server_id) => (
                self.default_level(server_id).await?,
                self.roles_of(server_id, &ids, &message.mention_roles)
                    .await?,
            ),
            None => (Level::All, HashMap::new()),
        };
        let mut out = Vec::new();
        for user in candidates {
            let a = applied.remove(&user).unwrap_or_default();
            let mentioned = message.mentions.contains(&user) || roles.contains_key(&user);
            let Some(reason) = decide(
                &a,
                default,
                message.server_id.is_none(),
                mentioned,
                message.mention_everyone,
                replied_to == Some(user),
            ) else {
                continue;
            };
            // Overwrites may hide the channel from some members.
            if message.server_id.is_some() && self.channel_access(channel_id, user).await.is_err() {
                continue;
            }
            out.push((user, reason));
        }
        Ok(out)
    }

    async fn default_level(&self, server_id: ServerId) -> ChatResult<Level> {
        let members: i64 = sqlx::query_scalar("SELECT count(*) FROM members WHERE server_id = $1")
            .bind(server_id)
            .fetch_one(&self.pool)
            .await?;
        Ok(if members > LARGE_SERVER_MEMBERS {
            Level::Mentions
        } else {
            Level::All
        })
    }

    /// Which of these users hold one of the mentioned roles.
    async fn roles_of(
        &self,
        server_id: ServerId,
        users: &[i64],
        mentioned: &[RoleId],
    ) -> ChatResult<HashMap<UserId, ()>> {
        if mentioned.is_empty() {
            return Ok(HashMap::new());
        }
        let roles: Vec<i64> = mentioned.iter().map(|r| r.get()).collect();
        let rows: Vec<UserId> = sqlx::query_scalar(
            "SELECT DISTINCT user_id FROM member_roles
             WHERE server_id = $1 AND user_id = ANY($2) AND role_id = ANY($3)",
        )
        .bind(server_id)
        .bind(users)
        .bind(roles)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(|u| (u, ())).collect())
    }

    async fn applied_settings(
        &self,
        server_id: Option<ServerId>,
        channel_id: ChannelId,
        users: &[i64],
    ) -> ChatResult<HashMap<UserId, Applied>> {
        let now = Utc::now();
        let mut out: HashMap<UserId, Applied> = HashMap::new();
        if let Some(server_id) = server_id {
            let rows: Vec<ServerRow> = sqlx::query_as(
                "SELECT user_id, level, muted_until, suppress_everyone
                 FROM server_notification_settings WHERE server_id = $1 AND user_id = ANY($2)",
            )
            .bind(server_id)
            .bind(users)
            .fetch_all(&self.pool)
            .await?;
            for (user, level, muted_until, suppress) in rows {
                let a = out.entry(user).or_default();
                a.server_level = Level::from_db(level);
                a.muted |= muted_until.is_some_and(|t| t > now);
                a.suppress_everyone = suppress;
            }
        }
        let rows: Vec<(UserId, Option<i16>, Option<DateTime<Utc>>)> = sqlx::query_as(
            "SELECT user_id, level, muted_until
             FROM channel_notification_settings WHERE channel_id = $1 AND user_id = ANY($2)",
        )
        .bind(channel_id)
        .bind(users)
        .fetch_all(&self.pool)
        .await?;
        for (user, level, muted_until) in rows {
            let a = out.entry(user).or_default();
            a.channel_level = Level::from_db(level);
            a.muted |= muted_until.is_some_and(|t| t > now);
        }
        Ok(out)
    }
}

impl Chat {
    /// A channel's name and its server's, for a notification's title (None for DMs).
    pub async fn push_place(
        &self,
        channel_id: ChannelId,
    ) -> ChatResult<(Option<String>, Option<String>)> {
        let row: Option<(Option<String>, Option<String>)> = sqlx::query_as(
            "SELECT c.name, s.name FROM channels c LEFT JOIN servers s ON s.id = c.server_id
             WHERE c.id = $1",
        )
        .bind(channel_id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.unwrap_or((None, None)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(server: Option<Level>, channel: Option<Level>) -> Applied {
        Applied {
            server_level: server,
            channel_level: channel,
            ..Applied::default()
        }
    }

    #[test]
    fn channel_overrides_server_and_mentions_pass_mentions_level() {
        let none = Applied::default();
        // Defaults: small server "all", large "mentions".
        assert_eq!(
            decide(&none, Level::All, false, false, false, false),
            Some(Reason::Message)
        );
        assert_eq!(
            decide(&none, Level::Mentions, false, false, false, false),
            None
        );
        assert_eq!(
            decide(&none, Level::Mentions, false, true, false, false),
            Some(Reason::Mention)
        );
        assert_eq!(
            decide(&none, Level::Mentions, false, false, false, true),
            Some(Reason::Reply)
        );
        // The channel's level wins over the server's, either way.
        let quiet_channel = with(Some(Level::All), Some(Level::Nothing));
        assert_eq!(
            decide(&quiet_channel, Level::All, false, true, false, false),
            None
        );
        let loud_channel = with(Some(Level::Nothing), Some(Level::All));
        assert_eq!(
            decide(&loud_channel, Level::All, false, false, false, false),
            Some(Reason::Message)
        );
        // DMs notify unless set to nothing.
        assert_eq!(
            decide(&none, Level::All, true, false, false, false),
            Some(Reason::Dm)
        );
        assert_eq!(
            decide(
                &with(None, Some(Level::Nothing)),
                Level::All,
                true,
                false,
                false,
                false
            ),
            None
        );
    }

    #[test]
    fn mute_and_suppressed_everyone() {
        let muted = Applied {
            muted: true,
            ..Applied::default()
        };
        assert_eq!(decide(&muted, Level::All, false, true, false, false), None);
        let suppress = Applied {
            suppress_everyone: true,
            server_level: Some(Level::Mentions),
            ..Applied::default()
        };
        assert_eq!(
            decide(&suppress, Level::All, false, false, true, false),
            None
        );
        assert_eq!(
            decide(
                &Applied::default(),
                Level::Mentions,
                false,
                false,
                true,
                false
            ),
            Some(Reason::Mention)
        );
    }
}
