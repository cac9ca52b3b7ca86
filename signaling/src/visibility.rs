//! Who sees which channel, applied to every channel-bearing dispatch.
//!
//! A member sees a channel when its permissions there include VIEW_CHANNEL, and a category
//! when they may view it or any channel inside it (as READY and `GET /servers/{id}/channels`
//! list them). Channel events go only to those members, and a change that reveals or hides
//! channels for someone — an overwrite, a role's permissions, a role given or taken, a channel
//! moved into another category — reaches them as `CHANNEL_CREATE` or `CHANNEL_DELETE`, so a
//! client's channel list is always exactly what it may see.
//!
//! Only users with a gateway session on this node matter here (`Hub::users_in`): the others
//! get READY afresh when they connect.

use crate::gateway::hub::Target;
use crate::state::AppState;
use confab_chat::model::Channel;
use confab_chat::Snowflake;
use std::collections::{HashMap, HashSet};

/// For each channel of one server, the connected members who see it.
pub struct ServerVisibility {
    server_id: Snowflake,
    channels: HashMap<Snowflake, Channel>,
    seen_by: HashMap<Snowflake, HashSet<Snowflake>>,
}

impl ServerVisibility {
    /// Who sees what in `server_id` now. Take it before a change, compare after it.
    pub async fn capture(state: &AppState, server_id: Snowflake) -> Self {
        let channels = state.chat.channels_of(server_id).await.unwrap_or_else(|e| {
            tracing::error!(error = %e, "reading channels for visibility");
            Vec::new()
        });
        let online: HashSet<Snowflake> = state.hub.users_in(server_id).into_iter().collect();
        let mut seen_by: HashMap<Snowflake, HashSet<Snowflake>> = HashMap::new();
        for c in &channels {
            let viewers = match state.viewers.get(&state.chat, c.id).await {
                None => online.clone(),
                Some(list) => list
                    .iter()
                    .copied()
                    .filter(|u| online.contains(u))
                    .collect(),
            };
            seen_by.insert(c.id, viewers);
        }
        // A category is listed for whoever sees a channel inside it.
        for c in &channels {
            if let Some(parent) = c.parent_id {
                let inner = seen_by.get(&c.id).cloned().unwrap_or_default();
                seen_by.entry(parent).or_default().extend(inner);
            }
        }
        Self {
            server_id,
            channels: channels.into_iter().map(|c| (c.id, c)).collect(),
            seen_by,
        }
    }

    pub fn server_id(&self) -> Snowflake {
        self.server_id
    }

    /// After a change: `CHANNEL_CREATE` to members who now see a channel they did not,
    /// `CHANNEL_DELETE` to those who no longer see one, and, for `updated`, `CHANNEL_UPDATE`
    /// to those who saw it before and still do. Call with a fresh viewer cache (invalidated
    /// after the change).
    pub async fn publish_changes(self, state: &AppState, updated: Option<Snowflake>) {
        let after = Self::capture(state, self.server_id).await;
        let empty = HashSet::new();
        let mut ids: Vec<Snowflake> = self
            .seen_by
            .keys()
            .chain(after.seen_by.keys())
            .copied()
            .collect();
        ids.sort();
        ids.dedup();
        for id in ids {
            let before = self.seen_by.get(&id).unwrap_or(&empty);
            let now = after.seen_by.get(&id).unwrap_or(&empty);
            let revealed: Vec<Snowflake> = now.difference(before).copied().collect();
            let hidden: Vec<Snowflake> = before.difference(now).copied().collect();
            let current = after.channels.get(&id).or_else(|| self.channels.get(&id));
            let Some(channel) = current else { continue };
            if !revealed.is_empty() {
                state.emit(Target::Users(revealed), "CHANNEL_CREATE", channel);
            }
            if !hidden.is_empty() {
                state.emit(Target::Users(hidden), "CHANNEL_DELETE", channel);
            }
            if updated == Some(id) {
                let kept: Vec<Snowflake> = now.intersection(before).copied().collect();
                if !kept.is_empty() {
                    state.emit(Target::Users(kept), "CHANNEL_UPDATE", channel);
                }
            }
        }
    }
}

/// Keeps the voice states of channels in `visible` (a member does not learn who sits in a
/// voice channel hidden from them).
pub fn retain_visible_voice(
    states: &mut Vec<crate::voice::registry::VoiceState>,
    visible: &HashSet<Snowflake>,
) {
    states.retain(|v| v.channel_id.is_some_and(|c| visible.contains(&c)));
}
