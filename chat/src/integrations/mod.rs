//! Integrations (docs/bots.md): incoming webhooks that post into a channel, bot accounts that
//! use the REST API and the gateway with a token of their own, the slash commands bots register
//! and the interactions that invoke them.
//!
//! Secrets (webhook and bot tokens, interaction tokens) are random, shown once, and kept only as
//! SHA-256 hashes: a database dump lets nobody post or act as a bot.

use crate::accounts::{hash_token, new_token, valid_username, NO_PASSWORD, USER_COLUMNS};
use crate::audit::Actor;
use crate::error::{is_unique_violation, Validator};
use crate::messages::check_content;
use crate::model::{ChannelKind, Message, User};
use crate::permissions::{self, Permissions};
use crate::{ChannelId, Chat, ChatError, ChatResult, MessageId, RoleId, ServerId, SessionId};
use crate::{Snowflake, UserId};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;

mod bots;
mod commands;
mod interactions;
mod webhooks;

pub use bots::*;
pub use commands::*;
pub use interactions::*;
pub use webhooks::*;

/// Longest webhook or bot display name (a user's display name limit).
pub const MAX_NAME: usize = 64;
/// Slash commands per server.
pub const MAX_COMMANDS_PER_SERVER: i64 = 100;
/// Options per command.
pub const MAX_OPTIONS: usize = 25;
/// Time a bot has for its first answer to an interaction.
pub const FIRST_RESPONSE: std::time::Duration = std::time::Duration::from_secs(3);
/// Time a bot has for the follow-up after a deferred answer.
pub const FOLLOW_UP: std::time::Duration = std::time::Duration::from_secs(15 * 60);

fn check_name(v: &mut Validator, field: &str, name: &str) {
    v.check(
        !name.trim().is_empty()
            && name.chars().count() <= MAX_NAME
            && !name.chars().any(char::is_control),
        field,
        "must be 1-64 characters",
    );
}

fn check_avatar(v: &mut Validator, url: Option<&str>) {
    v.check(
        url.is_none_or(|u| {
            u.len() <= 2048 && (u.starts_with("https://") || u.starts_with("http://"))
        }),
        "avatar_url",
        "must be an http(s) URL of at most 2048 characters",
    );
}
