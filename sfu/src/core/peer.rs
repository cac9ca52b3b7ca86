//! A room and its participants. A `Peer` is split by role, each struct
//! owning its fields and the methods on them: `Link` (ICE/transport: the
//! str0m `Rtc`), `AudioPublish`, `Listening` (audio slots), `VideoPublish`,
//! `VideoWatching` (video slots) and the fast path's `FastPeer`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Instant;

use smallvec::SmallVec;
use str0m::media::{Mid, Pt};
use str0m::rtp::Ssrc;
use str0m::Rtc;

use crate::downtrack::DownTrack;
use crate::fastpath::FastPeer;
use crate::speaking::SpeakingDetector;
use crate::video::{VideoPts, VideoSlot, VideoTrack};
use crate::{
    ParticipantId, RoomId, SlotAssignment, UserTag, VideoSlotAssignment, VideoSubscription,
    VideoTrackKind,
};

use super::OPUS_CLOCK;

pub(super) struct Room {
    /// Participant ids in join order (slot assignment order).
    pub(super) members: Vec<ParticipantId>,
    /// The publishers listeners hear (see `selection.rs`): at most
    /// `max_audio_slots + 1`, in stable positions.
    pub(super) selected: Vec<ParticipantId>,
    /// The selected publisher listeners outside the selection do not hear.
    pub(super) dropped: Option<ParticipantId>,
    /// Publishers of other media nodes relayed here (`core/relay.rs`), in
    /// order of arrival; candidates for the selection like the local ones.
    pub(super) remotes: Vec<ParticipantId>,
}

/// What a listening slot carries: a participant's voice (its microphone,
/// chosen by the loudest-speaker selection) or the sound of a screen share
/// the subscriber watches (Go Live: forwarded only to those watching).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum AudioSource {
    Voice(ParticipantId),
    Stream(ParticipantId),
}

/// One listening slot of a subscriber.
pub(super) struct Slot {
    pub(super) down: DownTrack,
    /// Whose audio is forwarded here.
    pub(super) source: Option<AudioSource>,
}

/// Payload types of one peer's session, as negotiated.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct AudioPts {
    pub(super) opus: Option<Pt>,
    pub(super) red: Option<Pt>,
}

impl AudioPts {
    /// Some(true) for RED, Some(false) for Opus, None for any other payload type.
    pub(super) fn classify(&self, pt: Pt) -> Option<bool> {
        if self.red == Some(pt) {
            Some(true)
        } else if self.opus == Some(pt) {
            Some(false)
        } else {
            None
        }
    }
}

/// One participant: who it is, and one struct per role, each owning its
/// state (LiveKit's participant → published tracks → down-tracks).
pub(super) struct Peer {
    pub(super) participant: ParticipantId,
    pub(super) user_id: UserTag,
    pub(super) room: RoomId,
    /// Its str0m session: ICE, DTLS, SDP, timers.
    pub(super) link: Link,
    /// Its microphone: mute flags, speaking, the down-tracks it feeds.
    pub(super) audio: AudioPublish,
    /// Its listening slots: the down-tracks it hears others on.
    pub(super) listen: Listening,
    /// Its camera and screen share.
    pub(super) video: VideoPublish,
    /// Its video slots and what it wants to see.
    pub(super) watch: VideoWatching,
    /// Audio forwarding fast path towards it (None: `SfuConfig::fast_path` off).
    pub(super) fast: Option<FastPeer>,
}

/// ICE/transport: the participant's `Rtc`, how datagrams reach it, and what
/// its last offer negotiated.
pub(super) struct Link {
    /// Unique per `Rtc`: timer entries of a replaced peer are ignored.
    pub(super) epoch: u64,
    pub(super) rtc: Rtc,
    pub(super) ufrag: String,
    pub(super) addrs: SmallVec<[SocketAddr; 2]>,
    pub(super) joined_at: Instant,
    pub(super) connected: bool,
    /// Deadline of the last timer entry pushed for this peer.
    pub(super) deadline: Option<Instant>,
    /// Written to since the last drain (queued in `SfuCore::dirty`).
    pub(super) dirty: bool,
    /// Receive times of packets written since the last drain (latency metric).
    pub(super) pending_latency: Vec<Instant>,
    /// Egress NACK counts per mid, to turn str0m's totals into a counter.
    pub(super) nacks_seen: HashMap<Mid, u64>,
    /// The mids of the last offer, in m-line order.
    pub(super) mids: Vec<Mid>,
    pub(super) audio_pts: AudioPts,
    pub(super) video_pts: VideoPts,
}

impl Link {
    pub(super) fn new(rtc: Rtc, epoch: u64, ufrag: String, now: Instant, mids: Vec<Mid>) -> Self {
        Link {
            epoch,
            rtc,
            ufrag,
            addrs: SmallVec::new(),
            joined_at: now,
            connected: false,
            deadline: None,
            dirty: false,
            pending_latency: Vec::new(),
            nacks_seen: HashMap::new(),
            mids,
            audio_pts: AudioPts::default(),
            video_pts: SmallVec::new(),
        }
    }

    /// Marks the `Rtc` as written to; true the first time since the last
    /// drain (the caller then queues the peer for `SfuCore::flush`).
    pub(super) fn mark_dirty(&mut self) -> bool {
        !std::mem::replace(&mut self.dirty, true)
    }
}

/// The participant's published audio track.
#[derive(Default)]
pub(super) struct AudioPublish {
    /// The client's send transceiver (our receiving audio m-line).
    pub(super) mid: Option<Mid>,
    /// Source SSRC seen on `mid` (cache for the per-packet check).
    pub(super) in_ssrc: Option<Ssrc>,
    pub(super) server_muted: bool,
    /// Self-muted or self-deafened: audio is dropped on arrival, as for a
    /// server mute, so a client that keeps sending is not heard.
    pub(super) self_muted: bool,
    pub(super) speaking: SpeakingDetector,
    /// When this participant last started or stopped speaking.
    pub(super) active_at: Option<Instant>,
    /// PRIORITY_SPEAKER: preferred for the loudest-speaker slots.
    pub(super) priority_speaker: bool,
    /// Where this participant's audio goes: (subscriber, slot index). Rebuilt
    /// by `assign_audio_slots` whenever a mapping in the room changes.
    pub(super) fanout: SmallVec<[(ParticipantId, usize); 8]>,
    /// Consecutive packets relayed to other media nodes (saturating; 0
    /// after one that was not): the first ones after a pause say so.
    pub(super) relay_run: u8,
}

impl AudioPublish {
    pub(super) fn is_publisher(&self) -> bool {
        self.mid.is_some()
    }

    /// Muted by a moderator or by itself: its packets are dropped on arrival.
    pub(super) fn is_muted(&self) -> bool {
        self.server_muted || self.self_muted
    }
}

/// The participant's listening slots (subscriber side of audio).
#[derive(Default)]
pub(super) struct Listening {
    pub(super) slots: Vec<Slot>,
    /// Deafened: nothing is forwarded to it.
    pub(super) deaf: bool,
    /// Largest `audio_slots` we asked this client for (RenegotiationNeeded).
    pub(super) reneg_requested: usize,
    pub(super) last_slots: Option<Vec<SlotAssignment>>,
}

impl Listening {
    pub(super) fn downs(&self) -> impl Iterator<Item = &DownTrack> + Clone {
        self.slots.iter().map(|s| &s.down)
    }

    pub(super) fn downs_mut(&mut self) -> impl Iterator<Item = &mut DownTrack> {
        self.slots.iter_mut().map(|s| &mut s.down)
    }

    pub(super) fn by_mid(&self, mid: &str) -> Option<&Slot> {
        self.slots.iter().find(|s| &*s.down.mid == mid)
    }

    /// Every slot restarts with continuous numbering (deaf or mute toggled,
    /// connection up): no gap the client would take for loss.
    pub(super) fn resync_all(&mut self) {
        for s in &mut self.slots {
            s.down.resync();
        }
    }

    /// Adds a DownTrack for every slot mid not yet known (the client never
    /// removes transceivers, so slots only grow).
    pub(super) fn add_slots(&mut self, rtc: &mut Rtc, slot_mids: &[Mid]) {
        for &mid in slot_mids {
            if self.slots.iter().any(|s| s.down.mid == mid) {
                continue;
            }
            let mut api = rtc.direct_api();
            let (ssrc, rtx) = match api.stream_tx_by_mid(mid, None) {
                Some(tx) => (tx.ssrc(), tx.rtx()),
                None => {
                    // str0m declares send streams for sending m-lines when it
                    // accepts the offer; this is only a fallback.
                    let ssrc = api.new_ssrc();
                    api.declare_stream_tx(ssrc, None, mid, None);
                    (ssrc, None)
                }
            };
            self.slots.push(Slot {
                down: DownTrack::new(mid, ssrc, rtx, OPUS_CLOCK),
                source: None,
            });
        }
    }
}

/// The participant's published video tracks (camera, screen share).
pub(super) struct VideoPublish {
    pub(super) tracks: SmallVec<[VideoTrack; 2]>,
    /// Cache: incoming video SSRC → (track index, layer index).
    pub(super) ssrcs: SmallVec<[(Ssrc, u8, u8); 6]>,
    /// The client says its camera / screen share is on; while off, packets
    /// of that track are dropped on arrival (default on).
    pub(super) camera_on: bool,
    pub(super) screen_on: bool,
    /// May publish video (signaling's VIDEO permission); when false its video
    /// packets are dropped on arrival.
    pub(super) allowed: bool,
    /// Track kinds declared by the client per mid (overrides m-line order).
    pub(super) kinds: Vec<(Mid, VideoTrackKind)>,
    /// The screen share's sound (tab or system audio), if the client sends one.
    pub(super) stream_audio: StreamAudio,
    /// Subscribers with the screen share on a video slot, as last reported
    /// (`SfuEvent::StreamViewers`).
    pub(super) screen_viewers: Option<usize>,
}

/// The sound of a participant's screen share: a second sending audio m-line,
/// declared by the client. Forwarded on the listening slots of those who
/// watch the share, outside the loudest-speaker selection.
#[derive(Default)]
pub(super) struct StreamAudio {
    pub(super) mid: Option<Mid>,
    /// Source SSRC seen on `mid` (cache for the per-packet check).
    pub(super) in_ssrc: Option<Ssrc>,
    /// (subscriber, slot index), rebuilt with the audio slot mappings.
    pub(super) fanout: SmallVec<[(ParticipantId, usize); 8]>,
}

impl Default for VideoPublish {
    fn default() -> Self {
        VideoPublish {
            tracks: SmallVec::new(),
            ssrcs: SmallVec::new(),
            camera_on: true,
            screen_on: true,
            allowed: true,
            kinds: Vec::new(),
            stream_audio: StreamAudio::default(),
            screen_viewers: None,
        }
    }
}

impl VideoPublish {
    /// Whether the client has this track switched on.
    pub(super) fn is_on(&self, kind: VideoTrackKind) -> bool {
        match kind {
            VideoTrackKind::Camera => self.camera_on,
            VideoTrackKind::Screen => self.screen_on,
        }
    }

    pub(super) fn track(&self, kind: VideoTrackKind) -> Option<&VideoTrack> {
        self.tracks.iter().find(|t| t.kind == kind)
    }

    pub(super) fn track_mut(&mut self, kind: VideoTrackKind) -> Option<&mut VideoTrack> {
        self.tracks.iter_mut().find(|t| t.kind == kind)
    }
}

/// The participant's video slots (subscriber side of video).
#[derive(Default)]
pub(super) struct VideoWatching {
    /// Recvonly video transceivers of the client, in m-line order.
    pub(super) slots: Vec<VideoSlot>,
    /// What this participant wants to see (from signaling).
    pub(super) subs: Vec<VideoSubscription>,
    pub(super) last_slots: Option<Vec<VideoSlotAssignment>>,
    /// Latest TWCC bandwidth estimate towards this participant (bits/s).
    pub(super) bwe: Option<u64>,
    /// (minimum, wanted) bits/s last told to the estimator: what the chosen layers
    /// send (plus one layer up while a view is held below its layer) and what the
    /// views would take without a budget.
    pub(super) bwe_told: (u64, u64),
}

impl VideoWatching {
    pub(super) fn by_mid(&self, mid: &str) -> Option<&VideoSlot> {
        self.slots.iter().find(|s| &*s.down.mid == mid)
    }
}
