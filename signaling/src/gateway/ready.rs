//! READY, the first dispatch after IDENTIFY: everything a client needs to draw the app.

use super::presence::Status;
use crate::state::AppState;
use confab_chat::{ChannelId, ServerId, UserId};
use serde_json::json;
use std::collections::HashSet;

/// READY's payload, and what the new session's routing is built from.
pub struct Ready {
    pub payload: serde_json::Value,
    pub server_ids: Vec<ServerId>,
    pub friend_ids: Vec<UserId>,
    /// The channels the user may see and the users whose presence READY reports, for
    /// [`Ready::refresh_live_state`].
    visible: HashSet<ChannelId>,
    presence_ids: Vec<UserId>,
}

impl Ready {
    /// Takes the voice states and presences again, once the session receives dispatches.
    /// READY is built before the session exists, so a change in between would reach neither
    /// READY nor the session: the client would not see someone in a call (and in an
    /// end-to-end encrypted call would drop that person's media keys), or would show someone
    /// offline who just came online. Taken after, a change is in READY, or arrives as a
    /// dispatch, or both (voice state and presence updates are idempotent).
    pub fn refresh_live_state(&mut self, state: &AppState) {
        let mut voice_states = state.voice.states_for(&self.server_ids);
        crate::visibility::retain_visible_voice(&mut voice_states, &self.visible);
        self.payload["voice_states"] = json!(voice_states);
        self.payload["presences"] = json!(presences(state, &self.presence_ids));
    }

    /// Reads the user's servers again once the session is routed. A kick or a join while READY
    /// was being built would otherwise leave the session routed to a server the user left (its
    /// events still reaching them until they reconnect) or not routed to one they joined.
    /// Rare, so READY is then simply built again.
    pub async fn recheck_membership(
        &mut self,
        state: &AppState,
        user_id: UserId,
    ) -> anyhow::Result<()> {
        let mut now = state.chat.server_ids_of(user_id).await?;
        let mut had = self.server_ids.clone();
        now.sort_unstable();
        had.sort_unstable();
        if now == had {
            return Ok(());
        }
        for &sid in had.iter().filter(|s| now.binary_search(s).is_err()) {
            state.hub.remove_member(sid, user_id);
        }
        for &sid in now.iter().filter(|s| had.binary_search(s).is_err()) {
            state.hub.add_member(sid, user_id);
        }
        *self = ready_payload(state, user_id).await?;
        Ok(())
    }
}

/// The presences of `ids` that are not offline.
fn presences(state: &AppState, ids: &[UserId]) -> Vec<serde_json::Value> {
    ids.iter()
        .filter_map(|&id| {
            let st = state.hub.presence_of(id);
            (st != Status::Offline).then(|| json!({"user_id": id, "status": st}))
        })
        .collect()
}

/// A server as READY carries it: a large one (more members than `large_threshold`) with only
/// some of its members, and the count of all.
#[derive(serde::Serialize)]
struct ReadyServer {
    #[serde(flatten)]
    snap: confab_chat::model::ServerSnapshot,
    large: bool,
    member_count: i64,
}

/// READY: the user, their servers with channels and members, presences, voice states and DMs.
/// A large server's `members` are only the user's own member object and members in its voice
/// channels, at most `large_threshold` in all; clients fetch the rest with
/// `GET /servers/{id}/members`. The bound matters: without it every READY in a call of
/// thousands would carry thousands of members, and a stream of joins would cost the square of
/// its size (each joiner's READY larger than the last).
pub async fn ready_payload(state: &AppState, user_id: UserId) -> anyhow::Result<Ready> {
    let user = state.chat.user(user_id).await?;
    let servers = state.chat.servers_of(user_id).await?;
    let server_ids: Vec<ServerId> = servers.iter().map(|s| s.id).collect();
    let counts = state.chat.member_counts(&server_ids).await?;
    let mut voice_states = state.voice.states_for(&server_ids);
    let mut snapshots = Vec::with_capacity(servers.len());
    let mut presence_ids = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let visible = state.chat.viewable_channels(user_id).await?;
    // Nobody learns who sits in a voice channel they may not see.
    crate::visibility::retain_visible_voice(&mut voice_states, &visible);
    for s in &servers {
        let member_count = counts.get(&s.id).copied().unwrap_or(0);
        let large = member_count > state.config.large_threshold as i64;
        state.hub.set_large(s.id, large);
        let mut snap = if large {
            let mut ids = vec![user_id];
            ids.extend(
                voice_states
                    .iter()
                    .filter(|v| v.server_id == s.id && v.user_id != user_id)
                    .map(|v| v.user_id)
                    .take(state.config.large_threshold.saturating_sub(1)),
            );
            state.chat.server_snapshot_of(s.id, &ids).await?
        } else {
            state.chat.server_snapshot(s.id).await?
        };
        confab_chat::channels::retain_visible(&mut snap.channels, &visible);
        state
            .chat
            .fill_last_message_ids(&visible, &mut snap.channels)
            .await?;
        state.chat.fill_forum_tags(&mut snap.channels).await?;
        for m in &snap.members {
            if seen.insert(m.user.id) {
                presence_ids.push(m.user.id);
            }
        }
        snapshots.push(ReadyServer {
            snap,
            large,
            member_count,
        });
    }
    // Friends see each other's presence even without a common server.
    let friend_ids = state.chat.friend_ids(user_id).await?;
    for f in &friend_ids {
        if seen.insert(*f) {
            presence_ids.push(*f);
        }
    }
    let presences = presences(state, &presence_ids);
    let private_channels = state.chat.private_channels(user_id).await?;
    let read_states = state.chat.read_states_in(user_id, &visible).await?;
    let relationships = state.chat.relationships(user_id).await?;
    Ok(Ready {
        payload: json!({
            "v": 1,
            "user": user,
            "servers": snapshots,
            "presences": presences,
            "voice_states": voice_states,
            "private_channels": private_channels,
            "read_states": read_states,
            "relationships": relationships,
        }),
        server_ids,
        friend_ids,
        visible,
        presence_ids,
    })
}
