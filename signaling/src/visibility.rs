//! Who sees which channel, applied to every channel-bearing dispatch.
//!
//! A member sees a channel when its permissions there include VIEW_CHANNEL, and a category
//! when they may view it or any channel inside it (as READY and `GET /servers/{id}/channels`
//! list them). Channel events go only to those members, and a change that reveals or hides
//! channels for someone — an overwrite, a role's permissions, a role given or taken, a channel
//! moved into another category — reaches them as `CHANNEL_CREATE` or `CHANNEL_DELETE` (with the
//! voice states of a voice channel they can now see), so a client's channel list is always
//! exactly what it may see.
//!
//! The comparison is made from the database over all members, not over the users connected to
//! one node: its dispatches name users, and the bus takes them to whichever node holds their
//! sessions.

use crate::bus::BusEvent;
use crate::gateway::events::Event;
use crate::gateway::hub::Target;
use crate::state::AppState;
use confab_chat::model::{Channel, ChannelKind};
use confab_chat::{ChannelId, ServerId, UserId};
use std::collections::{HashMap, HashSet};

/// Who sees one channel.
#[derive(Clone, Debug, PartialEq)]
enum Seen {
    /// Every member of the server.
    All,
    /// These members only.
    Only(HashSet<UserId>),
}

impl Seen {
    fn union(&mut self, other: &Seen) {
        match (&mut *self, other) {
            (Seen::All, _) => {}
            (_, Seen::All) => *self = Seen::All,
            (Seen::Only(a), Seen::Only(b)) => a.extend(b.iter().copied()),
        }
    }
}

/// For each channel of one server, the members who see it.
pub struct ServerVisibility {
    server_id: ServerId,
    channels: HashMap<ChannelId, Channel>,
    seen_by: HashMap<ChannelId, Seen>,
}

/// The server's member ids, read once and only if a comparison needs them.
struct Members<'a> {
    state: &'a AppState,
    server_id: ServerId,
    ids: Option<HashSet<UserId>>,
}

impl Members<'_> {
    async fn get(&mut self) -> &HashSet<UserId> {
        if self.ids.is_none() {
            let ids = self
                .state
                .chat
                .member_ids(self.server_id)
                .await
                .unwrap_or_else(|e| {
                    tracing::error!(error = %e, "reading members for visibility");
                    Vec::new()
                });
            self.ids = Some(ids.into_iter().collect());
        }
        self.ids.as_ref().expect("just filled")
    }
}

fn users(set: impl IntoIterator<Item = UserId>) -> Option<Target> {
    let list: Vec<UserId> = set.into_iter().collect();
    (!list.is_empty()).then_some(Target::Users(list))
}

impl ServerVisibility {
    pub fn server_id(&self) -> ServerId {
        self.server_id
    }

    /// Who sees what in `server_id` now, read from the database (not from a node's cache, which
    /// may not have heard of the change yet). Take it before a change, compare after it.
    pub async fn capture(state: &AppState, server_id: ServerId) -> Self {
        let channels = state.chat.channels_of(server_id).await.unwrap_or_else(|e| {
            tracing::error!(error = %e, "reading channels for visibility");
            Vec::new()
        });
        let mut seen_by: HashMap<ChannelId, Seen> = HashMap::new();
        for c in &channels {
            let seen = match state.chat.channel_viewers(c.id).await {
                Ok(None) => Seen::All,
                Ok(Some(list)) => Seen::Only(list.into_iter().collect()),
                Err(e) => {
                    tracing::error!(error = %e, "computing channel viewers");
                    Seen::Only(HashSet::new())
                }
            };
            seen_by.insert(c.id, seen);
        }
        // A category is listed for whoever sees a channel inside it.
        for c in &channels {
            if let Some(parent) = c.parent_id {
                let inner = seen_by
                    .get(&c.id)
                    .cloned()
                    .unwrap_or(Seen::Only(HashSet::new()));
                seen_by
                    .entry(parent)
                    .or_insert_with(|| Seen::Only(HashSet::new()))
                    .union(&inner);
            }
        }
        Self {
            server_id,
            channels: channels.into_iter().map(|c| (c.id, c)).collect(),
            seen_by,
        }
    }

    /// Publishes `change` (applied by every node: caches, voice re-checks), then tells the
    /// members whose view of the server's channels changed since this capture: `CHANNEL_CREATE`
    /// to those who now see a channel they did not, `CHANNEL_DELETE` to those who no longer see
    /// one, and, for `updated`, `CHANNEL_UPDATE` to those who saw it before and still do.
    pub async fn publish(self, state: &AppState, change: BusEvent, updated: Option<ChannelId>) {
        state.publish(change).await;
        let after = Self::capture(state, self.server_id).await;
        let mut members = Members {
            state,
            server_id: self.server_id,
            ids: None,
        };
        let nobody = Seen::Only(HashSet::new());
        let mut ids: Vec<ChannelId> = self
            .seen_by
            .keys()
            .chain(after.seen_by.keys())
            .copied()
            .collect();
        ids.sort();
        ids.dedup();
        for id in ids {
            let before = self.seen_by.get(&id).unwrap_or(&nobody);
            let now = after.seen_by.get(&id).unwrap_or(&nobody);
            let current = after.channels.get(&id).or_else(|| self.channels.get(&id));
            let Some(channel) = current else { continue };
            let (revealed, hidden, kept) = match (before, now) {
                (Seen::All, Seen::All) => (None, None, Some(Target::Server(self.server_id))),
                (Seen::Only(b), Seen::Only(n)) => (
                    users(n.difference(b).copied()),
                    users(b.difference(n).copied()),
                    users(n.intersection(b).copied()),
                ),
                (Seen::Only(b), Seen::All) if b.is_empty() => {
                    (Some(Target::Server(self.server_id)), None, None)
                }
                (Seen::All, Seen::Only(n)) if n.is_empty() => {
                    (None, Some(Target::Server(self.server_id)), None)
                }
                (Seen::Only(b), Seen::All) => {
                    let all = members.get().await;
                    (
                        users(all.difference(b).copied()),
                        None,
                        users(b.iter().copied()),
                    )
                }
                (Seen::All, Seen::Only(n)) => {
                    let all = members.get().await;
                    (
                        None,
                        users(all.difference(n).copied()),
                        users(n.iter().copied()),
                    )
                }
            };
            if let Some(to) = revealed {
                state.emit(to.clone(), Event::ChannelCreate, channel);
                if matches!(channel.kind, ChannelKind::Voice | ChannelKind::Stage) {
                    // Who is in it now: what READY would have shown them.
                    for v in state.voice.states_for(&[self.server_id]) {
                        if v.channel_id == Some(id) {
                            state.emit(to.clone(), Event::VoiceStateUpdate, &v);
                        }
                    }
                }
            }
            if let Some(to) = hidden {
                state.emit(to, Event::ChannelDelete, channel);
            }
            if updated == Some(id) {
                if let Some(to) = kept {
                    state.emit(to, Event::ChannelUpdate, channel);
                }
            }
        }
    }
}

/// Keeps the voice states of channels in `visible` (a member does not learn who sits in a
/// voice channel hidden from them).
pub fn retain_visible_voice(
    states: &mut Vec<crate::voice::registry::VoiceState>,
    visible: &HashSet<ChannelId>,
) {
    states.retain(|v| v.channel_id.is_some_and(|c| visible.contains(&c)));
}
