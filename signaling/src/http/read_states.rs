//! `POST /channels/{channel_id}/messages/{message_id}/ack`: read states.

use crate::auth::AuthUser;
use crate::error::{ApiResult, ErrorBody, Json, Path};
use crate::gateway::events::Event;
use crate::gateway::hub::Target;
use crate::state::AppState;
use axum::extract::State;
use confab_chat::read_states::ReadState;
use confab_chat::{ChannelId, MessageId};

/// Mark a channel (or DM) read up to this message. Returns the read state, with the mentions
/// still after it; the user's sessions get MESSAGE_ACK.
#[utoipa::path(post, path = "/channels/{channel_id}/messages/{message_id}/ack", tag = "messages", security(("bearer" = [])),
    params(("channel_id" = String, Path), ("message_id" = String, Path)),
    responses((status = 200, body = ReadState), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn ack(
    State(state): State<AppState>,
    user: AuthUser,
    Path((channel_id, message_id)): Path<(ChannelId, MessageId)>,
) -> ApiResult<Json<ReadState>> {
    let rs = state.chat.ack(channel_id, message_id, user.user_id).await?;
    // Every session of the user: the one that read it ignores an ack it already applied.
    state.emit(Target::User(user.user_id), Event::MessageAck, &rs);
    Ok(Json(rs))
}
