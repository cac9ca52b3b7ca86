//! Temporary membership: when a user's last gateway session ends (on this node, and no other
//! node of a cluster reports one), the servers
//! they joined through a temporary invite (and got no role in since) let them go. Someone who
//! joins through such an invite and never opens a gateway session at all is let go by `sweep`
//! once `GRACE` has passed since joining.

use crate::gateway::events::Event;
use crate::gateway::hub::Target;
use crate::state::AppState;
use confab_chat::UserId;
use serde_json::json;
use std::time::Duration;

/// How long a temporary member may stay without any gateway session after joining (time to
/// open the client after accepting the invite).
pub const GRACE: Duration = Duration::from_secs(60);

/// Lets go the temporary members who joined more than `grace` ago and have no gateway session
/// (not even one waiting to RESUME). Runs periodically; returns how many users were let go.
pub async fn sweep(state: &AppState, grace: Duration) -> usize {
    let users = match state.chat.temporary_members_older_than(grace).await {
        Ok(u) => u,
        Err(e) => {
            tracing::error!(error = %e, "finding temporary members");
            return 0;
        }
    };
    let mut n = 0;
    for user_id in users {
        if !state.hub.connected_anywhere(user_id) {
            session_ended(state, user_id).await;
            n += 1;
        }
    }
    n
}

/// Call after a session of `user_id` was closed (not merely detached for RESUME).
pub async fn session_ended(state: &AppState, user_id: UserId) {
    if state.hub.connected_anywhere(user_id) {
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
    for server_id in servers {
        state
            .publish(crate::bus::BusEvent::MemberLeft { server_id, user_id })
            .await;
        state.emit(
            Target::Server(server_id),
            Event::MemberRemove,
            &json!({"server_id": server_id, "user_id": user_id}),
        );
    }
}
