//! `/servers/{server_id}/voice-states/...`: stage speakers and raised hands (docs/gateway.md,
//! "Stage channels"). Joining and leaving voice stays on the gateway (op 4).

use crate::auth::AuthUser;
use crate::bus::BusEvent;
use crate::error::{ApiResult, ErrorBody, Json, Path};
use crate::state::AppState;
use crate::voice::stage::StageChange;
use axum::extract::State;
use axum::http::StatusCode;
use confab_chat::{ChannelId, ServerId, UserId};
use serde::Deserialize;
use utoipa::ToSchema;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MyVoiceStateBody {
    /// The stage channel you are connected to.
    #[schema(value_type = String)]
    pub channel_id: ChannelId,
    /// true: step down to the audience; false: become a speaker (needs MUTE_MEMBERS).
    pub suppress: Option<bool>,
    /// true raises your hand (asks to speak), false lowers it.
    pub request_to_speak: Option<bool>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VoiceStateBody {
    /// The stage channel the member is connected to.
    #[schema(value_type = String)]
    pub channel_id: ChannelId,
    /// false invites the member to speak, true moves them to the audience.
    pub suppress: bool,
}

/// Your stage state: raise or lower your hand, step down, or (with MUTE_MEMBERS) step up.
#[utoipa::path(patch, path = "/servers/{server_id}/voice-states/@me", tag = "voice", security(("bearer" = [])),
    params(("server_id" = String, Path)), request_body = MyVoiceStateBody,
    responses((status = 204), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn update_mine(
    State(state): State<AppState>,
    user: AuthUser,
    Path(server_id): Path<ServerId>,
    Json(body): Json<MyVoiceStateBody>,
) -> ApiResult<StatusCode> {
    let change = StageChange {
        channel_id: body.channel_id,
        suppress: body.suppress,
        request_to_speak: body.request_to_speak,
    };
    let user_id = state
        .voice
        .check_stage(server_id, user.user_id, None, change)
        .await?;
    state
        .publish(BusEvent::VoiceStage {
            server_id,
            user_id,
            change,
        })
        .await;
    Ok(StatusCode::NO_CONTENT)
}

/// A member's stage state (MUTE_MEMBERS in the channel): invite to speak or move to the audience.
#[utoipa::path(patch, path = "/servers/{server_id}/voice-states/{user_id}", tag = "voice", security(("bearer" = [])),
    params(("server_id" = String, Path), ("user_id" = String, Path)), request_body = VoiceStateBody,
    responses((status = 204), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn update_member(
    State(state): State<AppState>,
    user: AuthUser,
    Path((server_id, target)): Path<(ServerId, UserId)>,
    Json(body): Json<VoiceStateBody>,
) -> ApiResult<StatusCode> {
    let change = StageChange {
        channel_id: body.channel_id,
        suppress: Some(body.suppress),
        request_to_speak: None,
    };
    let user_id = state
        .voice
        .check_stage(server_id, user.user_id, Some(target), change)
        .await?;
    state
        .publish(BusEvent::VoiceStage {
            server_id,
            user_id,
            change,
        })
        .await;
    Ok(StatusCode::NO_CONTENT)
}
