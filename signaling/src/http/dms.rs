//! `/users/@me/channels` and `/channels/{channel_id}/recipients`: DMs and group DMs. Their
//! messages, typing and reactions use the ordinary `/channels/{channel_id}/…` endpoints.

use crate::auth::AuthUser;
use crate::error::{ApiResult, ErrorBody, Json, Path};
use crate::gateway::events::Event;
use crate::gateway::hub::Target;
use crate::state::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use confab_chat::model::Channel;
use confab_chat::{ChannelId, ChatError, Name, UserId};
use serde::Deserialize;
use serde_json::json;
use utoipa::ToSchema;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewDmBody {
    /// Open (or return) the 1:1 DM with this user.
    pub recipient_id: Option<UserId>,
    /// Create a group DM with these users (at most 9 besides you).
    pub recipient_ids: Option<Vec<UserId>>,
    /// A group DM's name (optional).
    pub name: Option<String>,
}

fn ids(channel: &Channel) -> Vec<UserId> {
    channel.recipients.iter().flatten().map(|u| u.id).collect()
}

/// My DMs and group DMs, most recently active first.
#[utoipa::path(get, path = "/users/@me/channels", tag = "dms", security(("bearer" = [])),
    responses((status = 200, body = [Channel])))]
pub async fn list(State(state): State<AppState>, user: AuthUser) -> ApiResult<Json<Vec<Channel>>> {
    Ok(Json(state.chat.private_channels(user.user_id).await?))
}

/// Open the 1:1 DM with `recipient_id` (200 when it already existed, 201 when created), or
/// create a group DM with `recipient_ids` (201). A block between you refuses with 403 and code
/// 50007.
#[utoipa::path(post, path = "/users/@me/channels", tag = "dms", security(("bearer" = [])), request_body = NewDmBody,
    responses((status = 201, body = Channel), (status = 200, body = Channel), (status = 400, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn create(
    State(state): State<AppState>,
    user: AuthUser,
    Json(body): Json<NewDmBody>,
) -> ApiResult<(StatusCode, Json<Channel>)> {
    let (channel, created) = match (body.recipient_id, body.recipient_ids) {
        (Some(r), None) => state.chat.open_dm(user.user_id, r).await?,
        (None, Some(list)) => (
            state
                .chat
                .create_group_dm(
                    user.user_id,
                    &list,
                    Name::parse_optional(body.name.as_deref())?.as_ref(),
                )
                .await?,
            true,
        ),
        _ => {
            return Err(ChatError::field(
                "recipient_id",
                "give either recipient_id or recipient_ids",
            )
            .into())
        }
    };
    if !created {
        return Ok((StatusCode::OK, Json(channel)));
    }
    state
        .publish(crate::bus::BusEvent::DmRecipientsChanged {
            channel_id: channel.id,
        })
        .await;
    state.emit(Target::Users(ids(&channel)), Event::ChannelCreate, &channel);
    Ok((StatusCode::CREATED, Json(channel)))
}

/// Add someone to a group DM (its owner only; at most 10 people).
#[utoipa::path(put, path = "/channels/{channel_id}/recipients/{user_id}", tag = "dms", security(("bearer" = [])),
    params(("channel_id" = String, Path), ("user_id" = String, Path)),
    responses((status = 204), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn add_recipient(
    State(state): State<AppState>,
    user: AuthUser,
    Path((channel_id, target)): Path<(ChannelId, UserId)>,
) -> ApiResult<StatusCode> {
    let change = state
        .chat
        .add_recipient(channel_id, user.user_id, target)
        .await?;
    state
        .publish(crate::bus::BusEvent::DmRecipientsChanged { channel_id })
        .await;
    let others: Vec<UserId> = ids(&change.channel)
        .into_iter()
        .filter(|u| *u != target)
        .collect();
    state.emit(
        Target::Users(others),
        Event::ChannelRecipientAdd,
        &json!({"channel_id": channel_id, "user": change.user}),
    );
    state.emit(Target::User(target), Event::ChannelCreate, &change.channel);
    Ok(StatusCode::NO_CONTENT)
}

/// Remove someone from a group DM (its owner), or leave it (yourself).
#[utoipa::path(delete, path = "/channels/{channel_id}/recipients/{user_id}", tag = "dms", security(("bearer" = [])),
    params(("channel_id" = String, Path), ("user_id" = String, Path)),
    responses((status = 204), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn remove_recipient(
    State(state): State<AppState>,
    user: AuthUser,
    Path((channel_id, target)): Path<(ChannelId, UserId)>,
) -> ApiResult<StatusCode> {
    let change = state
        .chat
        .remove_recipient(channel_id, user.user_id, target)
        .await?;
    state
        .publish(crate::bus::BusEvent::DmRecipientsChanged { channel_id })
        .await;
    state.emit(
        Target::Users(ids(&change.channel)),
        Event::ChannelRecipientRemove,
        &json!({"channel_id": channel_id, "user": change.user, "owner_id": change.channel.owner_id}),
    );
    state.emit(
        Target::User(target),
        Event::ChannelDelete,
        &json!({"id": channel_id, "type": change.channel.kind}),
    );
    Ok(StatusCode::NO_CONTENT)
}
