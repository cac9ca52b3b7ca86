//! `GET /voice/ice-servers`: the TURN servers and short-lived credentials a voice client puts in
//! its `RTCPeerConnection` (`crate::turn`), fetched before each join.

use crate::auth::AuthUser;
use crate::error::{ApiResult, ErrorBody, Json};
use crate::state::AppState;
use crate::turn::IceServers;
use axum::extract::State;
use std::time::SystemTime;

/// ICE servers for voice: the configured TURN server with credentials for you, valid until
/// `expires_at` (an empty list when this server has no TURN: direct UDP only).
#[utoipa::path(get, path = "/voice/ice-servers", tag = "voice", security(("bearer" = [])),
    responses((status = 200, body = IceServers), (status = 401, body = ErrorBody)))]
pub async fn get(State(state): State<AppState>, user: AuthUser) -> ApiResult<Json<IceServers>> {
    Ok(Json(match &state.config.turn {
        Some(turn) => turn.credentials(user.user_id, SystemTime::now()),
        None => IceServers::none(),
    }))
}
