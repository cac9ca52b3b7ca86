//! Voice states of participants served by other api nodes of a cluster.
//!
//! Each node tells the others every change of its participants' voice states
//! (`BusEvent::VoiceStates`, one state; a state without a channel means "left") and repeats all
//! of them every `REFRESH` (`full`). Every node keeps what the others said, so READY,
//! SERVER_CREATE and a revealed channel list everyone in voice, whichever node serves them. A
//! node whose list is not repeated within `EXPIRY` (it died) is forgotten, and its participants
//! are shown as gone.

use super::registry::VoiceState;
use confab_chat::{ServerId, UserId};
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// How often a node repeats all its voice states.
pub const REFRESH: Duration = Duration::from_secs(10);
/// A node not heard from for this long is gone, and so are its participants.
pub const EXPIRY: Duration = Duration::from_secs(30);

struct NodeStates {
    states: HashMap<UserId, VoiceState>,
    seen: Instant,
}

#[derive(Default)]
pub struct RemoteVoice {
    nodes: HashMap<String, NodeStates>,
}

impl RemoteVoice {
    /// Applies what `node` said: one change, or its full list (`full`).
    pub fn apply(&mut self, node: &str, states: Vec<VoiceState>, full: bool, now: Instant) {
        let entry = self
            .nodes
            .entry(node.to_string())
            .or_insert_with(|| NodeStates {
                states: HashMap::new(),
                seen: now,
            });
        entry.seen = now;
        if full {
            entry.states.clear();
        }
        for s in states {
            if s.channel_id.is_some() {
                entry.states.insert(s.user_id, s);
            } else {
                entry.states.remove(&s.user_id);
            }
        }
    }

    /// Forgets nodes not heard from for `EXPIRY`; returns their participants' last states.
    pub fn expire(&mut self, now: Instant) -> Vec<VoiceState> {
        let gone: Vec<String> = self
            .nodes
            .iter()
            .filter(|(_, n)| now.duration_since(n.seen) >= EXPIRY)
            .map(|(name, _)| name.clone())
            .collect();
        gone.iter()
            .filter_map(|name| self.nodes.remove(name))
            .flat_map(|n| n.states.into_values())
            .collect()
    }

    pub fn states_for(&self, servers: &[ServerId]) -> Vec<VoiceState> {
        self.nodes
            .values()
            .flat_map(|n| n.states.values())
            .filter(|s| servers.contains(&s.server_id))
            .cloned()
            .collect()
    }

    /// Every voice state of the other nodes.
    pub fn all(&self) -> impl Iterator<Item = &VoiceState> {
        self.nodes.values().flat_map(|n| n.states.values())
    }

    /// The user's voice state on another node, if any.
    pub fn of_user(&self, user_id: UserId) -> Option<VoiceState> {
        self.nodes
            .values()
            .find_map(|n| n.states.get(&user_id))
            .cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use confab_chat::{ChannelId, Snowflake};

    fn state(user: i64, channel: Option<i64>) -> VoiceState {
        VoiceState {
            server_id: ServerId::new(Snowflake(1)),
            channel_id: channel.map(|c| ChannelId::new(Snowflake(c))),
            user_id: UserId::new(Snowflake(user)),
            voice_session_id: Snowflake(user * 10),
            self_mute: false,
            self_deaf: false,
            mute: false,
            deaf: false,
            self_video: false,
            self_stream: false,
            suppress: false,
            request_to_speak_timestamp: None,
            speaking: false,
            stream_viewers: 0,
            e2ee: None,
        }
    }

    #[test]
    fn changes_full_lists_and_expiry() {
        let t0 = Instant::now();
        let mut r = RemoteVoice::default();
        let server = [ServerId::new(Snowflake(1))];
        r.apply("b", vec![state(7, Some(5))], false, t0);
        r.apply("c", vec![state(8, Some(5))], false, t0);
        assert_eq!(r.states_for(&server).len(), 2);
        // A left state removes; a full list replaces.
        r.apply("b", vec![state(7, None)], false, t0);
        assert!(r.of_user(UserId::new(Snowflake(7))).is_none());
        r.apply("c", vec![state(9, Some(6))], true, t0 + EXPIRY / 2);
        assert!(r.of_user(UserId::new(Snowflake(8))).is_none());
        assert!(r.of_user(UserId::new(Snowflake(9))).is_some());
        // b was last heard at t0: gone at t0 + EXPIRY; c is kept.
        let gone = r.expire(t0 + EXPIRY);
        assert!(gone.is_empty(), "b had nobody left in voice");
        let gone = r.expire(t0 + EXPIRY / 2 + EXPIRY);
        assert_eq!(gone.len(), 1);
        assert_eq!(gone[0].user_id, UserId::new(Snowflake(9)));
        assert!(r.states_for(&server).is_empty());
    }
}
