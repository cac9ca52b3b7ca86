//! Who receives a voice channel's events (VOICE_STATE_UPDATE, VOICE_SPEAKING): the members who
//! may view the channel, as for any channel event — a member does not learn who sits or talks
//! in a voice channel hidden from them.
//!
//! Most voice events are raised where nothing may wait (the SFU event pump, teardown on a
//! closed gateway), so the audience of each voice channel with participants is kept here,
//! computed when someone joins it and again whenever the server's permissions or membership
//! change (`refresh_server`). Events are then emitted in the order they happen, with no
//! lookup between.

use super::registry::Participant;
use super::VoiceService;
use crate::gateway::hub::Target;
use confab_chat::{ChannelId, ServerId};
use std::collections::HashMap;

/// Per voice channel: its server and the recipients of its events.
#[derive(Default)]
pub struct Audiences(HashMap<ChannelId, (ServerId, Target)>);

impl VoiceService {
    /// The recipients of events about `p`: the viewers of its channel, and `p`'s own sessions
    /// (it learns its own state even if it just lost sight of the channel). A channel whose
    /// audience was never computed reaches only `p`: nobody learns what they may not see.
    pub(crate) fn audience(&self, p: &Participant) -> Target {
        let known = self
            .audiences
            .lock()
            .0
            .get(&p.channel_id)
            .map(|(_, t)| t.clone());
        match known {
            Some(Target::Users(mut users)) => {
                if !users.contains(&p.user_id) {
                    users.push(p.user_id);
                }
                Target::Users(users)
            }
            Some(t) => t,
            None => Target::User(p.user_id),
        }
    }

    /// Whether two channels' events go to the same members.
    pub(crate) fn same_audience(&self, a: ChannelId, b: ChannelId) -> bool {
        let audiences = self.audiences.lock();
        match (audiences.0.get(&a), audiences.0.get(&b)) {
            (Some((_, x)), Some((_, y))) => x == y,
            _ => false,
        }
    }

    /// Computes the audience of one voice channel (before its first event).
    pub(crate) async fn refresh_audience(&self, server_id: ServerId, channel_id: ChannelId) {
        let target = self
            .viewers
            .target(&self.chat, Some(server_id), channel_id, None)
            .await;
        self.audiences
            .lock()
            .0
            .insert(channel_id, (server_id, target));
    }

    /// Computes again the audience of every voice channel of `server_id` that has
    /// participants, and forgets those that have none. Run after the viewer cache was
    /// invalidated for a change of permissions, roles, overwrites or membership.
    pub async fn refresh_server_audiences(&self, server_id: ServerId) {
        let mut channels: Vec<ChannelId> = self
            .registry
            .lock()
            .in_server(server_id)
            .into_iter()
            .map(|(_, _, channel_id)| channel_id)
            .collect();
        channels.sort();
        channels.dedup();
        self.audiences
            .lock()
            .0
            .retain(|c, (s, _)| *s != server_id || channels.contains(c));
        for channel_id in channels {
            self.refresh_audience(server_id, channel_id).await;
        }
    }

    /// Forgets the audiences of a deleted server's channels.
    pub(crate) fn forget_server_audiences(&self, server_id: ServerId) {
        self.audiences.lock().0.retain(|_, (s, _)| *s != server_id);
    }
}
