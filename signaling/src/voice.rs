//! Voice: the bridge between gateway voice ops and the SFU. (Media integration arrives with
//! the SFU; until then joins are refused with a clear error.)

use crate::gateway::hub::Session;
use crate::gateway::protocol::VoiceStateReq;
use crate::state::AppState;
use confab_chat::Snowflake;
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum VoiceError {
    #[error("invalid SDP: {0}")]
    InvalidSdp(String),
    #[error("you may not join that channel")]
    Forbidden,
    #[error("not in a voice channel")]
    NotJoined,
    #[error("media server unavailable")]
    Unavailable,
}

impl VoiceError {
    pub fn code(&self) -> u32 {
        match self {
            VoiceError::InvalidSdp(_) => 4400,
            VoiceError::Forbidden => 4403,
            VoiceError::NotJoined => 4404,
            VoiceError::Unavailable => 4500,
        }
    }
}

#[derive(Default)]
pub struct VoiceService {}

impl VoiceService {
    pub async fn state_update(
        &self,
        _state: &AppState,
        _session: &Arc<Session>,
        _req: VoiceStateReq,
    ) -> Result<(), VoiceError> {
        Err(VoiceError::Unavailable)
    }

    pub async fn offer(
        &self,
        _state: &AppState,
        _session: &Arc<Session>,
        _sdp: String,
    ) -> Result<(String, String), VoiceError> {
        Err(VoiceError::NotJoined)
    }

    pub fn session_resumed(&self, _state: &AppState, _session: &Arc<Session>) {}

    pub async fn session_closed(&self, _state: &AppState, _session_id: &str) {}

    pub fn session_dropped(&self, _state: &AppState, _session_id: &str) {}

    pub fn states_for(&self, _servers: &[Snowflake]) -> Vec<serde_json::Value> {
        Vec::new()
    }

    pub async fn server_deleted(&self, _state: &AppState, _server_id: Snowflake) {}

    pub async fn member_left(&self, _state: &AppState, _server_id: Snowflake, _user_id: Snowflake) {
    }

    pub async fn channel_deleted(&self, _state: &AppState, _channel_id: Snowflake) {}

    pub fn moderate(
        &self,
        _state: &AppState,
        _server_id: Snowflake,
        _user_id: Snowflake,
        _mute: bool,
        _deaf: bool,
    ) {
    }

    pub fn is_running(&self) -> bool {
        true
    }
}
