//! What api nodes and media nodes say to each other over NATS (JSON).
//!
//! Subjects (`<prefix>` is `--nats-prefix`):
//! - `<prefix>.media.<node>`: commands to one media node. `Join` and `Offer` are requests (NATS
//!   request/reply, answered with a [`Reply`]); the others are published. One api node's
//!   commands reach a media node in the order it sent them (one connection, one subject).
//! - `<prefix>.media.events.<api node>`: what a media node reports about the participants an api
//!   node placed there ([`Event`]).
//! - `<prefix>.media.announce`: every media node, every [`ANNOUNCE_EVERY`], says it is alive,
//!   how loaded it is and whether it drains ([`Announce`]).
//!
//! The SFU's own types stay free of serde and NATS; these mirror them, and the conversions live
//! here.

use super::relay::RelayEndpoint;
use confab_sfu::{
    ParticipantId, RoomId, SfuEvent, SlotAssignment, UserTag, VideoSlotAssignment,
    VideoSubscription, VideoTrackKind,
};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::time::Duration;

/// How often a media node announces itself. Often, because the loss of a node is noticed from
/// missing announcements and its listeners hear nothing until then (a few bytes per node and
/// api node, five times a second).
pub const ANNOUNCE_EVERY: Duration = Duration::from_millis(200);
/// A media node not heard from for this long (six announcements) is gone: its rooms are placed
/// elsewhere and its participants are asked to reconnect.
pub const NODE_LOST_AFTER: Duration = Duration::from_millis(1_200);
/// A media node heard again after this long was cut off from NATS: what it reported meanwhile
/// is lost, so its state is fetched again.
pub const RESYNC_AFTER: Duration = Duration::from_millis(1_000);

/// The SFU switches one participant carries, sent together so a media node applies them at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Flags {
    /// Audio dropped whatever the reason: a moderator's mute, no SPEAK, a stage's audience.
    pub server_mute: bool,
    /// Self-muted or self-deafened: audio dropped too.
    pub self_mute: bool,
    pub deaf: bool,
    pub video_allowed: bool,
    pub camera: bool,
    pub screen: bool,
    pub priority_speaker: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrackKind {
    pub mid: String,
    pub screen: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Subscription {
    pub user: u64,
    pub screen: bool,
    pub width: u32,
    pub height: u32,
}

/// A media node's relay endpoint (see docs/relay.md): where other media nodes send the
/// room's audio, and the key they encrypt it with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Relay {
    pub addr: SocketAddr,
    /// Hex of the 16-byte key.
    pub key: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Command {
    /// A participant joins (or rejoins) `room` with its offer; answered with the SDP answer.
    Join {
        room: u64,
        participant: u64,
        user: u64,
        offer: String,
        /// The api node to report this participant's events to.
        owner: String,
        flags: Flags,
        /// The media nodes the room lives on (this one among them).
        room_nodes: Vec<String>,
        /// Every node is full: take it past `capacity` anyway.
        over_capacity: bool,
    },
    /// A new offer from a participant already here; answered with the SDP answer.
    Offer {
        participant: u64,
        offer: String,
    },
    Leave {
        participant: u64,
    },
    Flags {
        participant: u64,
        flags: Flags,
    },
    VideoSubscriptions {
        participant: u64,
        subs: Vec<Subscription>,
    },
    VideoTrackKinds {
        participant: u64,
        kinds: Vec<TrackKind>,
    },
    /// The mid of the client's screen-share sound (Go Live), or none.
    StreamAudioMid {
        participant: u64,
        mid: Option<String>,
    },
    /// The room's media nodes changed (it spans more nodes, or one was dropped).
    RoomNodes {
        room: u64,
        nodes: Vec<String>,
    },
}

/// The answer to `Join` and `Offer`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Reply {
    Answer(String),
    InvalidSdp(String),
    UnknownParticipant,
    /// The node drains: place the room elsewhere.
    Draining,
    /// The node has `capacity` participants already: place this one elsewhere.
    Full,
    Failed(String),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Slot {
    pub mid: String,
    pub user: Option<u64>,
    /// The slot carries the user's screen-share sound, not their voice.
    #[serde(default)]
    pub stream: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VideoSlot {
    pub mid: String,
    pub user: Option<u64>,
    pub screen: Option<bool>,
}

/// A media node's report about one participant, to the api node that placed it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Event {
    Connected {
        participant: u64,
    },
    Disconnected {
        participant: u64,
        reason: String,
    },
    Speaking {
        room: u64,
        participant: u64,
        user: u64,
        speaking: bool,
    },
    Slots {
        participant: u64,
        slots: Vec<Slot>,
    },
    Renegotiate {
        participant: u64,
        audio_slots: usize,
    },
    VideoSlots {
        participant: u64,
        slots: Vec<VideoSlot>,
    },
    PauseLayers {
        participant: u64,
        screen: bool,
        active_rids: Vec<String>,
    },
    StreamViewers {
        room: u64,
        participant: u64,
        user: u64,
        viewers: usize,
    },
    /// The node drains: the participant must reconnect (it will be placed elsewhere).
    Moved {
        participant: u64,
    },
}

/// "This media node is alive", every `ANNOUNCE_EVERY`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Announce {
    pub node: String,
    /// Random per start: two processes announcing one node name is a configuration error.
    pub instance: String,
    pub participants: usize,
    /// Participants it takes before a room spills over to another node (0 = no limit).
    pub capacity: usize,
    pub draining: bool,
    pub relay: Option<Relay>,
}

fn kind(screen: bool) -> VideoTrackKind {
    if screen {
        VideoTrackKind::Screen
    } else {
        VideoTrackKind::Camera
    }
}

impl Subscription {
    pub fn of(s: &VideoSubscription) -> Self {
        Subscription {
            user: s.user_id.get(),
            screen: s.track == VideoTrackKind::Screen,
            width: s.width,
            height: s.height,
        }
    }

    pub fn to_sfu(&self) -> VideoSubscription {
        VideoSubscription {
            user_id: UserTag::new(self.user),
            track: kind(self.screen),
            width: self.width,
            height: self.height,
        }
    }
}

impl TrackKind {
    pub fn of((mid, k): &(String, VideoTrackKind)) -> Self {
        TrackKind {
            mid: mid.clone(),
            screen: *k == VideoTrackKind::Screen,
        }
    }

    pub fn to_sfu(&self) -> (String, VideoTrackKind) {
        (self.mid.clone(), kind(self.screen))
    }
}

impl Relay {
    pub fn of(e: &RelayEndpoint) -> Self {
        Relay {
            addr: e.addr,
            key: e.key.iter().map(|b| format!("{b:02x}")).collect(),
        }
    }

    /// None for a key that is not 32 hex digits.
    pub fn to_sfu(&self) -> Option<RelayEndpoint> {
        let bytes = self.key.as_bytes();
        if bytes.len() != 32 {
            return None;
        }
        let mut key = [0u8; 16];
        for (i, pair) in bytes.chunks(2).enumerate() {
            let s = std::str::from_utf8(pair).ok()?;
            key[i] = u8::from_str_radix(s, 16).ok()?;
        }
        Some(RelayEndpoint {
            addr: self.addr,
            key,
        })
    }
}

impl Event {
    /// The SFU's event as it travels; `Connected` and the rest keep their meaning.
    pub fn of(ev: SfuEvent) -> Self {
        match ev {
            SfuEvent::Connected { participant } => Event::Connected {
                participant: participant.get(),
            },
            SfuEvent::Disconnected {
                participant,
                reason,
            } => Event::Disconnected {
                participant: participant.get(),
                reason,
            },
            SfuEvent::Speaking {
                room,
                participant,
                user_id,
                speaking,
            } => Event::Speaking {
                room: room.get(),
                participant: participant.get(),
                user: user_id.get(),
                speaking,
            },
            SfuEvent::Slots { participant, slots } => Event::Slots {
                participant: participant.get(),
                slots: slots
                    .into_iter()
                    .map(|s| Slot {
                        mid: s.mid,
                        user: s.user_id.map(UserTag::get),
                        stream: s.stream,
                    })
                    .collect(),
            },
            SfuEvent::RenegotiationNeeded {
                participant,
                audio_slots,
            } => Event::Renegotiate {
                participant: participant.get(),
                audio_slots,
            },
            SfuEvent::VideoSlots { participant, slots } => Event::VideoSlots {
                participant: participant.get(),
                slots: slots
                    .into_iter()
                    .map(|s| VideoSlot {
                        mid: s.mid,
                        user: s.user_id.map(UserTag::get),
                        screen: s.track.map(|t| t == VideoTrackKind::Screen),
                    })
                    .collect(),
            },
            SfuEvent::PauseLayers {
                participant,
                track,
                active_rids,
            } => Event::PauseLayers {
                participant: participant.get(),
                screen: track == VideoTrackKind::Screen,
                active_rids,
            },
            SfuEvent::StreamViewers {
                room,
                participant,
                user_id,
                viewers,
            } => Event::StreamViewers {
                room: room.get(),
                participant: participant.get(),
                user: user_id.get(),
                viewers,
            },
        }
    }

    pub fn participant(&self) -> u64 {
        match self {
            Event::Connected { participant }
            | Event::Disconnected { participant, .. }
            | Event::Speaking { participant, .. }
            | Event::Slots { participant, .. }
            | Event::Renegotiate { participant, .. }
            | Event::VideoSlots { participant, .. }
            | Event::PauseLayers { participant, .. }
            | Event::StreamViewers { participant, .. }
            | Event::Moved { participant } => *participant,
        }
    }

    /// Back to what the voice service handles; `Moved` is not an SFU event (None).
    pub fn to_sfu(self) -> Option<SfuEvent> {
        let p = ParticipantId::new(self.participant());
        Some(match self {
            Event::Connected { .. } => SfuEvent::Connected { participant: p },
            Event::Disconnected { reason, .. } => SfuEvent::Disconnected {
                participant: p,
                reason,
            },
            Event::Speaking {
                room,
                user,
                speaking,
                ..
            } => SfuEvent::Speaking {
                room: RoomId::new(room),
                participant: p,
                user_id: UserTag::new(user),
                speaking,
            },
            Event::Slots { slots, .. } => SfuEvent::Slots {
                participant: p,
                slots: slots
                    .into_iter()
                    .map(|s| SlotAssignment {
                        mid: s.mid,
                        user_id: s.user.map(UserTag::new),
                        stream: s.stream,
                    })
                    .collect(),
            },
            Event::Renegotiate { audio_slots, .. } => SfuEvent::RenegotiationNeeded {
                participant: p,
                audio_slots,
            },
            Event::VideoSlots { slots, .. } => SfuEvent::VideoSlots {
                participant: p,
                slots: slots
                    .into_iter()
                    .map(|s| VideoSlotAssignment {
                        mid: s.mid,
                        user_id: s.user.map(UserTag::new),
                        track: s.screen.map(kind),
                    })
                    .collect(),
            },
            Event::PauseLayers {
                screen,
                active_rids,
                ..
            } => SfuEvent::PauseLayers {
                participant: p,
                track: kind(screen),
                active_rids,
            },
            Event::StreamViewers {
                room,
                user,
                viewers,
                ..
            } => SfuEvent::StreamViewers {
                room: RoomId::new(room),
                participant: p,
                user_id: UserTag::new(user),
                viewers,
            },
            Event::Moved { .. } => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relay_keys_round_trip_and_bad_ones_are_refused() {
        let e = RelayEndpoint {
            addr: "10.0.0.1:4000".parse().unwrap(),
            key: [0xab; 16],
        };
        assert_eq!(Relay::of(&e).to_sfu(), Some(e));
        let bad = Relay {
            addr: "10.0.0.1:4000".parse().unwrap(),
            key: "zz".repeat(16),
        };
        assert_eq!(bad.to_sfu(), None);
        let short = Relay {
            key: "ab".into(),
            ..bad
        };
        assert_eq!(short.to_sfu(), None);
    }

    #[test]
    fn events_survive_the_wire() {
        let ev = SfuEvent::VideoSlots {
            participant: ParticipantId::new(9),
            slots: vec![VideoSlotAssignment {
                mid: "4".into(),
                user_id: Some(UserTag::new(3)),
                track: Some(VideoTrackKind::Screen),
            }],
        };
        let json = serde_json::to_string(&Event::of(ev.clone())).unwrap();
        let back: Event = serde_json::from_str(&json).unwrap();
        assert_eq!(back.to_sfu(), Some(ev));
    }
}
