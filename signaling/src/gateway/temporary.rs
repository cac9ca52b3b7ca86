//! Temporary membership: when a user's last gateway session on this node ends, the servers
//! they joined through a temporary invite (and got no role in since) let them go.

use crate::gateway::hub::Target;
use crate::state::AppState;
use confab_chat::Snowflake;
use serde_json::json;

/// Call after a session of `user_id` was closed (not merely detached for RESUME).
pub async fn session_ended(state: &AppState, user_id: Snowflake) {
    if !state.hub.sessions_of(user_id).is_empty() {
        return;
    }
    let servers = match state.chat.end_temporary_memberships(user_id).await {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "ending temporary memberships");
            return;
        }
    };
    if servers.is_empty() {
        return;
    }
    state.viewers.invalidate();
    for server_id in servers {
        state.voice.member_left(state, server_id, user_id).await;
        state.hub.remove_member(server_id, user_id);
        state.emit(
            Target::Server(server_id),
            "MEMBER_REMOVE",
            &json!({"server_id": server_id, "user_id": user_id}),
        );
    }
}
