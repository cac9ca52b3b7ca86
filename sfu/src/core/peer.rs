//! A room and a participant (`Peer`) of it, with its listening slots.

use super::*;

pub(super) struct Room {
    /// Participant ids in join order (slot assignment order).
    pub(super) members: Vec<u64>,
    /// The publishers listeners hear (see `selection.rs`): at most
    /// `max_audio_slots + 1`, in stable positions.
    pub(super) selected: Vec<u64>,
    /// The selected publisher listeners outside the selection do not hear.
    pub(super) dropped: Option<u64>,
}

/// One listening slot of a subscriber.
pub(super) struct Slot {
    pub(super) down: DownTrack,
    /// Participant whose audio is forwarded here.
    pub(super) source: Option<u64>,
}

/// Payload types of one peer's session, as negotiated.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct AudioPts {
    pub(super) opus: Option<Pt>,
    pub(super) red: Option<Pt>,
}

pub(super) struct Peer {
    pub(super) participant: u64,
    pub(super) user_id: u64,
    pub(super) room: u64,
    /// Unique per `Rtc`: timer entries of a replaced peer are ignored.
    pub(super) epoch: u64,
    pub(super) rtc: Rtc,
    pub(super) ufrag: String,
    pub(super) addrs: SmallVec<[SocketAddr; 2]>,
    pub(super) joined_at: Instant,
    pub(super) connected: bool,
    pub(super) server_muted: bool,
    /// Self-muted or self-deafened: audio is dropped on arrival, as for a
    /// server mute, so a client that keeps sending is not heard.
    pub(super) self_muted: bool,
    pub(super) deaf: bool,
    /// The client says its camera / screen share is on; while off, packets
    /// of that track are dropped on arrival (default on).
    pub(super) camera_on: bool,
    pub(super) screen_on: bool,
    /// May publish video (signaling's VIDEO permission); when false its video
    /// packets are dropped on arrival.
    pub(super) video_allowed: bool,
    /// The client's send transceiver (our receiving audio m-line).
    pub(super) publish_mid: Option<Mid>,
    /// Source SSRC seen on `publish_mid` (cache for the per-packet check).
    pub(super) in_ssrc: Option<Ssrc>,
    pub(super) pts: AudioPts,
    pub(super) speaking: SpeakingDetector,
    /// When this participant last started or stopped speaking.
    pub(super) active_at: Option<Instant>,
    /// PRIORITY_SPEAKER: preferred for the loudest-speaker slots.
    pub(super) priority_speaker: bool,
    pub(super) slots: Vec<Slot>,
    /// Largest `audio_slots` we asked this client for (RenegotiationNeeded).
    pub(super) reneg_requested: usize,
    pub(super) last_slots: Option<Vec<SlotAssignment>>,
    /// Deadline of the last timer entry pushed for this peer.
    pub(super) deadline: Option<Instant>,
    /// Receive times of packets written since the last drain (latency metric).
    pub(super) pending_latency: Vec<Instant>,
    pub(super) dirty: bool,
    /// Where this participant's audio goes: (subscriber, slot index). Rebuilt
    /// by `update_room_slots` whenever a mapping in the room changes.
    pub(super) fanout: SmallVec<[(u64, usize); 8]>,
    /// Egress NACK counts per mid, to turn str0m's totals into a counter.
    pub(super) nacks_seen: HashMap<Mid, u64>,
    /// Video tracks this participant publishes.
    pub(super) video_tracks: SmallVec<[VideoTrack; 2]>,
    /// Cache: incoming video SSRC → (track index, layer index).
    pub(super) video_ssrcs: SmallVec<[(Ssrc, u8, u8); 6]>,
    /// Recvonly video transceivers of the client, in m-line order.
    pub(super) video_slots: Vec<VideoSlot>,
    /// What this participant wants to see (from signaling).
    pub(super) video_subs: Vec<VideoSubscription>,
    /// Track kinds declared by the client per mid (overrides m-line order).
    pub(super) video_kinds: Vec<(Mid, VideoTrackKind)>,
    pub(super) last_video_slots: Option<Vec<VideoSlotAssignment>>,
    pub(super) video_pts: VideoPts,
    /// Latest TWCC bandwidth estimate towards this participant (bits/s).
    pub(super) bwe: Option<u64>,
    /// The mids of the last offer, in m-line order.
    pub(super) mids: Vec<Mid>,
    /// Audio forwarding fast path (None: `SfuConfig::fast_path` off).
    pub(super) fast: Option<FastPeer>,
}

impl Peer {
    pub(super) fn is_publisher(&self) -> bool {
        self.publish_mid.is_some()
    }
}

/// Adds a DownTrack for every slot mid not yet known (the client never
/// removes transceivers, so slots only grow).
pub(super) fn add_slots(peer: &mut Peer, slot_mids: &[Mid]) {
    for &mid in slot_mids {
        if peer.slots.iter().any(|s| s.down.mid == mid) {
            continue;
        }
        let mut api = peer.rtc.direct_api();
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
        peer.slots.push(Slot {
            down: DownTrack::new(mid, ssrc, rtx, OPUS_CLOCK),
            source: None,
        });
    }
}
