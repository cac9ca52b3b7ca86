//! Reactions, pins and invite management.

use crate::auth::AuthUser;
use crate::error::{ApiResult, ErrorBody, Json, Path};
use crate::gateway::events::Event;
use crate::state::AppState;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use confab_chat::model::{Invite, Message, User};
use confab_chat::{ChannelId, MessageId, ServerId};
use serde_json::json;

/// React with a unicode emoji, or a custom emoji of the channel's server as `name:id`
/// (ADD_REACTIONS; a role-restricted emoji needs one of its roles). The dispatch carries the
/// emoji as stored (`name:id` with its current name for a custom one).
#[utoipa::path(put, path = "/channels/{channel_id}/messages/{message_id}/reactions/{emoji}", tag = "messages", security(("bearer" = [])),
    params(("channel_id" = String, Path), ("message_id" = String, Path), ("emoji" = String, Path, description = "URL-encoded unicode emoji, or `name:id` of a custom emoji")),
    responses((status = 204), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn add(
    State(state): State<AppState>,
    user: AuthUser,
    Path((channel_id, message_id, emoji)): Path<(ChannelId, MessageId, String)>,
) -> ApiResult<StatusCode> {
    let (m, added, emoji) = state
        .chat
        .add_reaction(channel_id, message_id, user.user_id, &emoji)
        .await?;
    if added {
        let target = state.channel_target(m.server_id, channel_id, None).await;
        state.emit(target, Event::MessageReactionAdd, &json!({"channel_id": channel_id, "message_id": message_id, "server_id": m.server_id, "user_id": user.user_id, "emoji": emoji}));
    }
    Ok(StatusCode::NO_CONTENT)
}

/// Remove my reaction.
#[utoipa::path(delete, path = "/channels/{channel_id}/messages/{message_id}/reactions/{emoji}", tag = "messages", security(("bearer" = [])),
    params(("channel_id" = String, Path), ("message_id" = String, Path), ("emoji" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn remove(
    State(state): State<AppState>,
    user: AuthUser,
    Path((channel_id, message_id, emoji)): Path<(ChannelId, MessageId, String)>,
) -> ApiResult<StatusCode> {
    let (m, removed) = state
        .chat
        .remove_reaction(channel_id, message_id, user.user_id, &emoji)
        .await?;
    if let Some(emoji) = removed {
        let target = state.channel_target(m.server_id, channel_id, None).await;
        state.emit(target, Event::MessageReactionRemove, &json!({"channel_id": channel_id, "message_id": message_id, "server_id": m.server_id, "user_id": user.user_id, "emoji": emoji}));
    }
    Ok(StatusCode::NO_CONTENT)
}

/// Who reacted with this emoji.
#[utoipa::path(get, path = "/channels/{channel_id}/messages/{message_id}/reactions/{emoji}", tag = "messages", security(("bearer" = [])),
    params(("channel_id" = String, Path), ("message_id" = String, Path), ("emoji" = String, Path)),
    responses((status = 200, body = [User]), (status = 404, body = ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    user: AuthUser,
    Path((channel_id, message_id, emoji)): Path<(ChannelId, MessageId, String)>,
) -> ApiResult<Json<Vec<User>>> {
    Ok(Json(
        state
            .chat
            .reactors(channel_id, message_id, user.user_id, &emoji)
            .await?,
    ))
}

/// Pinned messages, newest pin first.
#[utoipa::path(get, path = "/channels/{channel_id}/pins", tag = "messages", security(("bearer" = [])), params(("channel_id" = String, Path)),
    responses((status = 200, body = [Message]), (status = 404, body = ErrorBody)))]
pub async fn pins(
    State(state): State<AppState>,
    user: AuthUser,
    Path(channel_id): Path<ChannelId>,
) -> ApiResult<Json<Vec<Message>>> {
    Ok(Json(state.chat.pins(channel_id, user.user_id).await?))
}

async fn set_pin(
    state: AppState,
    user: AuthUser,
    channel_id: ChannelId,
    message_id: MessageId,
    pin: bool,
) -> ApiResult<StatusCode> {
    if state
        .chat
        .set_pin(channel_id, message_id, user.user_id, pin)
        .await?
    {
        let (channel, _) = state.chat.channel_access(channel_id, user.user_id).await?;
        let target = state
            .channel_target(channel.server_id, channel_id, None)
            .await;
        state.emit(
            target,
            Event::ChannelPinsUpdate,
            &json!({"channel_id": channel_id, "server_id": channel.server_id}),
        );
    }
    Ok(StatusCode::NO_CONTENT)
}

/// Pin a message (MANAGE_MESSAGES; at most 50 per channel).
#[utoipa::path(put, path = "/channels/{channel_id}/pins/{message_id}", tag = "messages", security(("bearer" = [])),
    params(("channel_id" = String, Path), ("message_id" = String, Path)),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn pin(
    State(state): State<AppState>,
    user: AuthUser,
    Path((channel_id, message_id)): Path<(ChannelId, MessageId)>,
) -> ApiResult<StatusCode> {
    set_pin(state, user, channel_id, message_id, true).await
}

/// Unpin a message.
#[utoipa::path(delete, path = "/channels/{channel_id}/pins/{message_id}", tag = "messages", security(("bearer" = [])),
    params(("channel_id" = String, Path), ("message_id" = String, Path)),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn unpin(
    State(state): State<AppState>,
    user: AuthUser,
    Path((channel_id, message_id)): Path<(ChannelId, MessageId)>,
) -> ApiResult<StatusCode> {
    set_pin(state, user, channel_id, message_id, false).await
}

/// The server's invites (MANAGE_SERVER).
#[utoipa::path(get, path = "/servers/{server_id}/invites", tag = "invites", security(("bearer" = [])), params(("server_id" = String, Path)),
    responses((status = 200, body = [Invite]), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn invites(
    State(state): State<AppState>,
    user: AuthUser,
    Path(server_id): Path<ServerId>,
) -> ApiResult<Json<Vec<Invite>>> {
    Ok(Json(state.chat.invites(server_id, user.user_id).await?))
}

/// Revoke an invite (its creator, or MANAGE_SERVER).
#[utoipa::path(delete, path = "/invites/{code}", tag = "invites", security(("bearer" = [])), params(("code" = String, Path)),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn revoke(
    State(state): State<AppState>,
    user: AuthUser,
    Path(code): Path<String>,
    headers: HeaderMap,
) -> ApiResult<StatusCode> {
    let reason = super::moderation::reason(&headers);
    state
        .chat
        .revoke_invite(&code, user.user_id, reason.as_deref())
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
