//! The sans-IO heart of the SFU: rooms, participants, their str0m `Rtc`s and
//! forwarding. No sockets, no threads, no clocks: the caller feeds datagrams
//! ([`SfuCore::handle_datagram`]) and time ([`SfuCore::handle_timeout`]) and
//! drains datagrams to send ([`SfuCore::poll_transmit`]) and events
//! ([`SfuCore::poll_event`]). The UDP loop in `runtime.rs` is a thin shell
//! around it; tests drive it with in-process str0m client peers.
//!
//! Shape (as LiveKit's): room → participant → published audio track →
//! down-tracks, one per subscriber slot ([`DownTrack`]).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant, SystemTime};

use smallvec::SmallVec;
use str0m::format::Codec;
use str0m::media::{Direction, MediaKind, Mid, Pt};
use str0m::net::{Protocol, Receive, Transmit};
use str0m::rtp::{Extension, ExtensionMap, RtpPacket, Ssrc};
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc, RtcConfig};

use crate::demux::{self, Kind, Stun};
use crate::downtrack::DownTrack;
use crate::fastpath::{self, FastPeer, Outbox};
use crate::metrics::{DropReason, KeyframeReason, LayerLabel, Metrics};
use crate::selection::{self, Candidate as SpeakerCandidate};
use crate::speaking::SpeakingDetector;
use crate::video::{self, VideoPts, VideoSlot, VideoTrack};
use crate::{
    JoinRequest, SfuConfig, SfuError, SfuEvent, SlotAssignment, VideoSlotAssignment,
    VideoSubscription, VideoTrackKind,
};

/// Opus's RTP clock rate.
const OPUS_CLOCK: u32 = 48_000;
/// Addresses remembered per participant (ICE may try a few before nominating).
const MAX_ADDRS_PER_PEER: usize = 4;

/// Counters kept by the core itself (the `metrics` facade is write-only), for
/// tests and debugging.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CoreStats {
    /// Audio packets forwarded (one packet to one subscriber).
    pub forwarded: u64,
    /// Video packets forwarded (one packet to one subscriber slot).
    pub forwarded_video: u64,
    /// Keyframe requests (PLI) sent to publishers.
    pub keyframe_requests: u64,
    pub dropped_malformed: u64,
    pub dropped_unknown_peer: u64,
    pub dropped_unknown_ufrag: u64,
    pub dropped_muted: u64,
    pub dropped_other: u64,
    pub retransmissions: u64,
    pub nacks_received: u64,
}

struct Room {
    /// Participant ids in join order (slot assignment order).
    members: Vec<u64>,
    /// The publishers listeners hear (see `selection.rs`): at most
    /// `max_audio_slots + 1`, in stable positions.
    selected: Vec<u64>,
    /// The selected publisher listeners outside the selection do not hear.
    dropped: Option<u64>,
}

/// One listening slot of a subscriber.
struct Slot {
    down: DownTrack,
    /// Participant whose audio is forwarded here.
    source: Option<u64>,
}

/// Payload types of one peer's session, as negotiated.
#[derive(Debug, Clone, Copy, Default)]
struct AudioPts {
    opus: Option<Pt>,
    red: Option<Pt>,
}

struct Peer {
    participant: u64,
    user_id: u64,
    room: u64,
    /// Unique per `Rtc`: timer entries of a replaced peer are ignored.
    epoch: u64,
    rtc: Rtc,
    ufrag: String,
    addrs: SmallVec<[SocketAddr; 2]>,
    joined_at: Instant,
    connected: bool,
    server_muted: bool,
    self_muted: bool,
    deaf: bool,
    /// May publish video (signaling's VIDEO permission); when false its video
    /// packets are dropped on arrival.
    video_allowed: bool,
    /// The client's send transceiver (our receiving audio m-line).
    publish_mid: Option<Mid>,
    /// Source SSRC seen on `publish_mid` (cache for the per-packet check).
    in_ssrc: Option<Ssrc>,
    pts: AudioPts,
    speaking: SpeakingDetector,
    /// When this participant last started or stopped speaking.
    active_at: Option<Instant>,
    /// PRIORITY_SPEAKER: preferred for the loudest-speaker slots.
    priority_speaker: bool,
    slots: Vec<Slot>,
    /// Largest `audio_slots` we asked this client for (RenegotiationNeeded).
    reneg_requested: usize,
    last_slots: Option<Vec<SlotAssignment>>,
    /// Deadline of the last timer entry pushed for this peer.
    deadline: Option<Instant>,
    /// Receive times of packets written since the last drain (latency metric).
    pending_latency: Vec<Instant>,
    dirty: bool,
    /// Where this participant's audio goes: (subscriber, slot index). Rebuilt
    /// by `update_room_slots` whenever a mapping in the room changes.
    fanout: SmallVec<[(u64, usize); 8]>,
    /// Egress NACK counts per mid, to turn str0m's totals into a counter.
    nacks_seen: HashMap<Mid, u64>,
    /// Video tracks this participant publishes.
    video_tracks: SmallVec<[VideoTrack; 2]>,
    /// Cache: incoming video SSRC → (track index, layer index).
    video_ssrcs: SmallVec<[(Ssrc, u8, u8); 6]>,
    /// Recvonly video transceivers of the client, in m-line order.
    video_slots: Vec<VideoSlot>,
    /// What this participant wants to see (from signaling).
    video_subs: Vec<VideoSubscription>,
    /// Track kinds declared by the client per mid (overrides m-line order).
    video_kinds: Vec<(Mid, VideoTrackKind)>,
    last_video_slots: Option<Vec<VideoSlotAssignment>>,
    video_pts: VideoPts,
    /// Latest TWCC bandwidth estimate towards this participant (bits/s).
    bwe: Option<u64>,
    /// The mids of the last offer, in m-line order.
    mids: Vec<Mid>,
    /// Audio forwarding fast path (None: `SfuConfig::fast_path` off).
    fast: Option<FastPeer>,
}

impl Peer {
    fn is_publisher(&self) -> bool {
        self.publish_mid.is_some()
    }
}

/// The sans-IO SFU.
pub struct SfuCore {
    local_addr: SocketAddr,
    rtc_config: RtcConfig,
    /// For peers whose offer has video: video codecs, TWCC, rid extensions.
    rtc_config_video: RtcConfig,
    /// Next periodic video pass (layer choice, keyframe retries, pauses).
    video_tick: Option<Instant>,
    max_sdp_bytes: usize,
    max_m_lines: usize,
    max_video_slots: usize,
    max_audio_slots: usize,
    connect_timeout: Duration,
    peers: HashMap<u64, Peer>,
    by_addr: HashMap<SocketAddr, u64>,
    by_ufrag: HashMap<String, u64>,
    rooms: HashMap<u64, Room>,
    timers: BinaryHeap<Reverse<(Instant, u64, u64)>>,
    next_epoch: u64,
    dirty: Vec<u64>,
    transmits: VecDeque<Transmit>,
    events: VecDeque<SfuEvent>,
    scratch: Vec<(u64, Event)>,
    removals: Vec<(u64, String)>,
    last_now: Instant,
    metrics: Metrics,
    stats: CoreStats,
    fast_path: bool,
    /// Datagrams written by the fast path, sent with [`SfuCore::drain_fast`].
    fast_out: Outbox,
    /// Next round of fast-path sender reports.
    fast_sr_at: Option<Instant>,
    /// When the fast path's recent sender reports went out (RTT from receiver reports).
    fast_sr_log: fastpath::SrLog,
}

/// Interval of the fast path's sender reports (str0m's default for audio).
const FAST_SR_INTERVAL: Duration = Duration::from_secs(1);

/// One forwarded packet in this many has its forward latency recorded.
const LATENCY_SAMPLE: u64 = 16;

/// The str0m configuration every participant's `Rtc` starts from.
fn rtc_config(cfg: &SfuConfig, video: bool) -> RtcConfig {
    // Audio needs only the RFC 6464 level (speaking) and mid (BUNDLE demux):
    // no TWCC or abs-send-time, which would cost feedback traffic and CPU.
    // Peers that offer video also get rid/repaired-rid (simulcast), TWCC
    // (bandwidth estimation towards them) and abs-send-time.
    let mut exts = ExtensionMap::empty();
    exts.set(1, Extension::AudioLevel);
    exts.set(4, Extension::RtpMid);
    if video {
        exts.set(2, Extension::AbsoluteSendTime);
        exts.set(3, Extension::TransportSequenceNumber);
        exts.set(10, Extension::RtpStreamId);
        exts.set(11, Extension::RepairedRtpStreamId);
        exts.set(13, Extension::VideoOrientation);
    }
    // One DTLS certificate for every peer, like other SFUs: generating a key pair and a
    // certificate per join would cost the media thread on every join (clients pin the
    // fingerprint from the answer, so sharing it weakens nothing).
    let cert = str0m::crypto::from_feature_flags()
        .dtls_provider
        .generate_certificate();
    let mut rc = RtcConfig::new();
    if cfg.fast_path {
        rc = rc.set_crypto_provider(fastpath::keys::provider());
    }
    if let Some(cert) = cert {
        rc = rc.set_dtls_cert(cert);
    }
    let mut rc = rc
        .set_ice_lite(true)
        .set_rtp_mode(true)
        .clear_codecs()
        .set_extension_map(exts)
        .set_stats_interval(Some(cfg.stats_interval))
        .set_send_buffer_audio(cfg.audio_send_buffer.max(1));
    if video {
        // VP8, H.264 (the usual profiles), VP9 and AV1, each with RTX; str0m
        // adds NACK, PLI, FIR and transport-cc feedback for video.
        rc = rc
            .enable_vp8(true)
            .enable_h264(true)
            .enable_vp9(true)
            .enable_av1(true)
            .set_send_buffer_video(cfg.video_send_buffer.max(1));
        if cfg.video_bwe {
            rc = rc.enable_bwe(Some(str0m::bwe::Bitrate::kbps(
                cfg.video_initial_bitrate_kbps,
            )));
        }
    }
    if cfg.audio_rtx {
        // str0m resends only over RTX (RFC 4588), so answering NACKs for audio
        // needs an RTX payload type on Opus. str0m 0.25's public API cannot put
        // both RTX and RED on one codec, hence RTX excludes RED here.
        rc.codec_config().add_config(
            111.into(),
            Some(112.into()),
            Codec::Opus,
            str0m::media::Frequency::FORTY_EIGHT_KHZ,
            Some(2),
            str0m::format::FormatParams {
                min_p_time: Some(10),
                use_inband_fec: Some(true),
                ..Default::default()
            },
        );
        rc
    } else {
        // RED (`audio/red`, RFC 2198) is supported by str0m 0.25: it is folded
        // onto Opus and passed through untouched in RTP mode.
        rc.enable_opus(true, cfg.enable_red)
    }
}

/// The `a=mid:` values of an offer, in m-line order.
fn offer_mids(sdp: &str) -> Vec<Mid> {
    sdp.lines()
        .filter_map(|l| l.trim_end_matches('\r').strip_prefix("a=mid:"))
        .map(|m| Mid::from(m.trim()))
        .collect()
}

impl SfuCore {
    /// A core announcing `local_addr` (public IP + the socket's port) as its
    /// ICE host candidate.
    pub fn new(config: &SfuConfig, local_addr: SocketAddr, now: Instant) -> Result<Self, SfuError> {
        Candidate::host(local_addr, "udp")
            .map_err(|e| SfuError::InvalidConfig(format!("public address {local_addr}: {e}")))?;
        Ok(SfuCore {
            local_addr,
            rtc_config: rtc_config(config, false),
            rtc_config_video: rtc_config(config, true),
            video_tick: None,
            max_sdp_bytes: config.max_sdp_bytes,
            max_m_lines: config.max_m_lines,
            max_video_slots: config.max_video_slots,
            max_audio_slots: config.max_audio_slots.max(1),
            connect_timeout: config.connect_timeout,
            peers: HashMap::new(),
            by_addr: HashMap::new(),
            by_ufrag: HashMap::new(),
            rooms: HashMap::new(),
            timers: BinaryHeap::new(),
            next_epoch: 1,
            dirty: Vec::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            scratch: Vec::new(),
            removals: Vec::new(),
            last_now: now,
            metrics: Metrics::new(),
            stats: CoreStats::default(),
            fast_path: config.fast_path,
            fast_out: Outbox::default(),
            fast_sr_at: None,
            fast_sr_log: fastpath::SrLog::default(),
        })
    }

    /// The announced candidate address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    pub fn stats(&self) -> &CoreStats {
        &self.stats
    }

    pub fn participant_count(&self) -> usize {
        self.peers.len()
    }

    pub fn room_count(&self) -> usize {
        self.rooms.len()
    }

    /// The local ICE ufrag of a participant's session (as in its answer).
    pub fn local_ufrag(&self, participant: u64) -> Option<&str> {
        self.peers.get(&participant).map(|p| p.ufrag.as_str())
    }

    pub fn has_participant(&self, participant: u64) -> bool {
        self.peers.contains_key(&participant)
    }

    /// Whether the participant's ICE+DTLS is up.
    pub fn is_connected(&self, participant: u64) -> bool {
        self.peers.get(&participant).is_some_and(|p| p.connected)
    }

    /// Current (slot mid, source participant) list of a subscriber.
    pub fn slots_of(&self, participant: u64) -> Vec<(String, Option<u64>)> {
        self.peers
            .get(&participant)
            .map(|p| {
                p.slots
                    .iter()
                    .map(|s| (s.down.mid.to_string(), s.source))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Outgoing SSRC of a subscriber's slot (tests).
    pub fn slot_ssrc(&self, participant: u64, mid: &str) -> Option<u32> {
        let p = self.peers.get(&participant)?;
        p.slots
            .iter()
            .find(|s| &*s.down.mid == mid)
            .map(|s| *s.down.ssrc)
    }

    /// The next packet forwarded on a subscriber's slot gets extended
    /// sequence number `seq` (tests of SRTP rollover).
    #[cfg(any(test, feature = "testing"))]
    pub fn force_next_seq(&mut self, participant: u64, mid: &str, seq: u64) {
        let now = self.last_now;
        if let Some(s) = self
            .peers
            .get_mut(&participant)
            .and_then(|p| p.slots.iter_mut().find(|s| &*s.down.mid == mid))
        {
            s.down.force_next_seq(seq, now);
        }
    }

    /// Whether the fast path sends on this subscriber's slot.
    pub fn slot_is_fast(&self, participant: u64, mid: &str) -> bool {
        self.peers.get(&participant).is_some_and(|p| {
            p.fast.as_ref().is_some_and(|f| f.is_active())
                && p.slots
                    .iter()
                    .any(|s| &*s.down.mid == mid && s.down.fast_owned)
        })
    }

    fn drop_packet(&mut self, reason: DropReason) {
        self.metrics.dropped(reason).increment(1);
        match reason {
            DropReason::Malformed | DropReason::Oversize => self.stats.dropped_malformed += 1,
            DropReason::UnknownPeer => self.stats.dropped_unknown_peer += 1,
            DropReason::UnknownUfrag => self.stats.dropped_unknown_ufrag += 1,
            DropReason::Muted => self.stats.dropped_muted += 1,
            _ => self.stats.dropped_other += 1,
        }
    }

    /// Counts a datagram the shell could not receive whole or send.
    pub fn count_io_drop(&mut self, oversize: bool) {
        self.drop_packet(if oversize {
            DropReason::Oversize
        } else {
            DropReason::SendError
        });
    }

    // ------------------------------------------------------------------
    // Signaling commands
    // ------------------------------------------------------------------

    /// A participant joins (or rejoins: same id replaces the old peer without
    /// others seeing a leave). Returns the SDP answer.
    pub fn join(&mut self, now: Instant, req: JoinRequest) -> Result<String, SfuError> {
        self.advance(now);
        let offer = crate::sdp::check_offer(&req.offer_sdp, self.max_sdp_bytes, self.max_m_lines)?;
        let has_video = req.offer_sdp.lines().any(|l| l.starts_with("m=video "));
        let rc = if has_video {
            self.rtc_config_video.clone()
        } else {
            self.rtc_config.clone()
        };
        let (mut rtc, fast) = if self.fast_path {
            let (rtc, sink) = fastpath::keys::build_with_sink(rc, now);
            (rtc, sink.map(FastPeer::new))
        } else {
            (rc.build(now), None)
        };
        let ufrag = loop {
            let creds = rtc.direct_api().local_ice_credentials();
            if !self.by_ufrag.contains_key(&creds.ufrag) {
                break creds.ufrag;
            }
            rtc.direct_api()
                .set_local_ice_credentials(str0m::IceCreds::new());
        };
        let candidate = Candidate::host(self.local_addr, "udp")
            .map_err(|e| SfuError::InvalidConfig(e.to_string()))?;
        rtc.add_local_candidate(candidate);
        let answer = accept_offer(&mut rtc, offer)?;
        let mids = offer_mids(&req.offer_sdp);
        let (publish_mid, slot_mids, pts) = inspect_medias(&rtc, &mids)?;
        let vmedias = inspect_video(&rtc, &mids);

        // Rejoin: the old peer goes away quietly; room membership and the
        // moderator/deaf/mute flags carry over.
        let mut flags = (false, false, false);
        let mut video_allowed = true;
        let mut priority_speaker = false;
        let mut video_subs = Vec::new();
        let mut video_kinds = Vec::new();
        if let Some(old) = self.peers.get(&req.participant) {
            flags = (old.server_muted, old.self_muted, old.deaf);
            video_allowed = old.video_allowed;
            priority_speaker = old.priority_speaker;
            video_subs = old.video_subs.clone();
            video_kinds = old.video_kinds.clone();
            if old.room != req.room {
                self.remove_peer(req.participant, None);
            } else {
                let mut old = self.peers.remove(&req.participant).expect("checked");
                self.unmap(&old);
                old.rtc.disconnect();
                if old.speaking.reset() {
                    self.events.push_back(SfuEvent::Speaking {
                        room: old.room,
                        participant: old.participant,
                        user_id: old.user_id,
                        speaking: false,
                    });
                }
            }
        }

        let epoch = self.next_epoch;
        self.next_epoch += 1;
        let mut peer = Peer {
            participant: req.participant,
            user_id: req.user_id,
            room: req.room,
            epoch,
            rtc,
            ufrag: ufrag.clone(),
            addrs: SmallVec::new(),
            joined_at: now,
            connected: false,
            server_muted: flags.0,
            self_muted: flags.1,
            deaf: flags.2,
            video_allowed,
            publish_mid,
            in_ssrc: None,
            pts,
            speaking: SpeakingDetector::default(),
            active_at: None,
            priority_speaker,
            slots: Vec::new(),
            reneg_requested: 0,
            last_slots: None,
            deadline: None,
            pending_latency: Vec::new(),
            dirty: false,
            fanout: SmallVec::new(),
            nacks_seen: HashMap::new(),
            video_tracks: SmallVec::new(),
            video_ssrcs: SmallVec::new(),
            video_slots: Vec::new(),
            video_subs,
            video_kinds,
            last_video_slots: None,
            video_pts: SmallVec::new(),
            bwe: None,
            mids: mids.clone(),
            fast,
        };
        add_slots(&mut peer, &slot_mids);
        apply_video(&mut peer, vmedias, self.max_video_slots);
        self.by_ufrag.insert(ufrag, req.participant);
        self.peers.insert(req.participant, peer);
        let room = self.rooms.entry(req.room).or_insert_with(|| Room {
            members: Vec::new(),
            selected: Vec::new(),
            dropped: None,
        });
        if !room.members.contains(&req.participant) {
            room.members.push(req.participant);
        }
        // Sources that were on other subscribers' slots from this participant
        // now come with a new SSRC; DownTrack re-anchors on SSRC change.
        self.update_room_slots(req.room);
        self.drive(req.participant, now);
        self.process_scratch(now);
        self.update_gauges();
        Ok(answer)
    }

    /// The client offers again (more listening slots, ICE restart, …).
    pub fn renegotiate(
        &mut self,
        now: Instant,
        participant: u64,
        offer_sdp: &str,
    ) -> Result<String, SfuError> {
        self.advance(now);
        let offer = crate::sdp::check_offer(offer_sdp, self.max_sdp_bytes, self.max_m_lines)?;
        let peer = self
            .peers
            .get_mut(&participant)
            .ok_or(SfuError::UnknownParticipant)?;
        if let Some(f) = &peer.fast {
            f.before_offer(&mut peer.rtc, peer.slots.iter().map(|s| &s.down));
        }
        let answer = match accept_offer(&mut peer.rtc, offer) {
            Ok(a) => a,
            Err(e) => {
                if let Some(f) = &mut peer.fast {
                    f.reclaim(&mut peer.rtc, peer.slots.iter_mut().map(|s| &mut s.down));
                }
                if !peer.rtc.is_alive() {
                    self.remove_peer(participant, Some("renegotiation failed".into()));
                }
                return Err(e);
            }
        };
        let mids = offer_mids(offer_sdp);
        let (publish_mid, slot_mids, pts) = inspect_medias(&peer.rtc, &mids)?;
        if publish_mid != peer.publish_mid {
            peer.in_ssrc = None;
        }
        peer.publish_mid = publish_mid;
        peer.pts = pts;
        add_slots(peer, &slot_mids);
        if let Some(f) = &mut peer.fast {
            f.reclaim(&mut peer.rtc, peer.slots.iter_mut().map(|s| &mut s.down));
        }
        let vmedias = inspect_video(&peer.rtc, &mids);
        apply_video(peer, vmedias, self.max_video_slots);
        peer.mids = mids;
        // If this offer still has too few slots, ask again.
        peer.reneg_requested = peer.slots.len();
        // An ICE restart may give us new local credentials: keep the ufrag map right.
        let ufrag = peer.rtc.direct_api().local_ice_credentials().ufrag;
        if ufrag != peer.ufrag {
            let old = std::mem::replace(&mut peer.ufrag, ufrag.clone());
            self.by_ufrag.remove(&old);
            self.by_ufrag.insert(ufrag, participant);
        }
        let room = peer.room;
        self.update_room_slots(room);
        self.drive(participant, now);
        self.process_scratch(now);
        self.update_gauges();
        Ok(answer)
    }

    /// The participant leaves (explicitly; no `Disconnected` event).
    pub fn leave(&mut self, now: Instant, participant: u64) {
        self.advance(now);
        self.remove_peer(participant, None);
    }

    /// Moderator mute: the SFU drops this participant's audio.
    pub fn set_server_mute(&mut self, participant: u64, muted: bool) {
        self.set_flag(participant, |p| &mut p.server_muted, muted);
    }

    /// Self-mute (client side); clears the speaking state.
    pub fn set_self_mute(&mut self, participant: u64, muted: bool) {
        self.set_flag(participant, |p| &mut p.self_muted, muted);
    }

    /// PRIORITY_SPEAKER: preferred for the loudest-speaker slots.
    pub fn set_priority_speaker(&mut self, participant: u64, priority: bool) {
        let Some(p) = self.peers.get_mut(&participant) else {
            return;
        };
        if p.priority_speaker != priority {
            p.priority_speaker = priority;
            let room = p.room;
            self.reselect_speakers(room);
        }
    }

    /// Deafen: nothing is forwarded to this participant.
    pub fn set_deaf(&mut self, participant: u64, deaf: bool) {
        let Some(p) = self.peers.get_mut(&participant) else {
            return;
        };
        if p.deaf != deaf {
            p.deaf = deaf;
            // Resume with continuous numbering instead of a gap the client
            // would take for loss (and NACK).
            for s in &mut p.slots {
                s.down.resync();
            }
        }
    }

    /// Whether this participant may publish video. A participant that may
    /// not has its video dropped on arrival (it is never forwarded); allowed
    /// again, its viewers restart on a fresh keyframe.
    pub fn set_video_allowed(&mut self, now: Instant, participant: u64, allowed: bool) {
        self.advance(now);
        let Some(p) = self.peers.get_mut(&participant) else {
            return;
        };
        if p.video_allowed == allowed {
            return;
        }
        p.video_allowed = allowed;
        let room = p.room;
        if !allowed {
            return;
        }
        // Viewers held the last frame; reset their slots so the new target
        // layer is asked for (PLI) and forwarding starts on its keyframe.
        let members = self
            .rooms
            .get(&room)
            .map(|r| r.members.clone())
            .unwrap_or_default();
        for m in members {
            if let Some(sub) = self.peers.get_mut(&m) {
                for slot in sub
                    .video_slots
                    .iter_mut()
                    .filter(|s| s.source.is_some_and(|(src, _)| src == participant))
                {
                    slot.reset();
                }
            }
        }
        self.update_room_video(room);
    }

    fn set_flag(&mut self, participant: u64, field: fn(&mut Peer) -> &mut bool, value: bool) {
        let Some(p) = self.peers.get_mut(&participant) else {
            return;
        };
        let f = field(p);
        if *f == value {
            return;
        }
        *f = value;
        let (room, user_id) = (p.room, p.user_id);
        if value && p.speaking.reset() {
            p.active_at = Some(self.last_now);
            self.events.push_back(SfuEvent::Speaking {
                room,
                participant,
                user_id,
                speaking: false,
            });
            self.reselect_speakers(room);
        }
        // Subscribers of this source resume without a sequence gap.
        if let Some(r) = self.rooms.get(&room) {
            for m in &r.members {
                if let Some(sub) = self.peers.get_mut(m) {
                    for s in sub
                        .slots
                        .iter_mut()
                        .filter(|s| s.source == Some(participant))
                    {
                        s.down.resync();
                    }
                }
            }
        }
    }

    /// Closes every peer (DTLS close_notify is queued for sending).
    pub fn shutdown(&mut self, now: Instant) {
        self.advance(now);
        let ids: Vec<u64> = self.peers.keys().copied().collect();
        for id in ids {
            if let Some(p) = self.peers.get_mut(&id) {
                let _ = p.rtc.close();
            }
            self.drive(id, now);
            self.scratch.clear();
            self.remove_peer(id, None);
        }
    }

    // ------------------------------------------------------------------
    // Network and time input
    // ------------------------------------------------------------------

    fn advance(&mut self, now: Instant) {
        if now > self.last_now {
            self.last_now = now;
        }
    }

    /// One datagram arrived on the shared socket from `from`.
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddr, buf: &[u8]) {
        self.advance(now);
        self.metrics.bytes_received.increment(buf.len() as u64);
        let Some(kind) = demux::classify(buf) else {
            self.drop_packet(DropReason::Malformed);
            return;
        };
        // A binding request routed by ufrag: its source address is learned
        // only if str0m answers it (i.e. MESSAGE-INTEGRITY checked out), so a
        // forged request cannot steal or add an address mapping.
        let mut verify_addr = false;
        let participant = match kind {
            Kind::Stun => {
                self.metrics.received_stun.increment(1);
                match demux::stun_ufrag(buf) {
                    Stun::BindingRequest { local_ufrag } => match self.by_ufrag.get(local_ufrag) {
                        Some(&p) => {
                            verify_addr = self.by_addr.get(&from) != Some(&p);
                            p
                        }
                        None => {
                            self.drop_packet(DropReason::UnknownUfrag);
                            return;
                        }
                    },
                    Stun::Other => match self.by_addr.get(&from) {
                        Some(&p) => p,
                        None => {
                            self.drop_packet(DropReason::UnknownPeer);
                            return;
                        }
                    },
                    Stun::Malformed => {
                        self.drop_packet(DropReason::Malformed);
                        return;
                    }
                }
            }
            _ => {
                match kind {
                    Kind::Dtls => self.metrics.received_dtls.increment(1),
                    Kind::Rtcp => self.metrics.received_rtcp.increment(1),
                    _ => {}
                }
                match self.by_addr.get(&from) {
                    Some(&p) => p,
                    None => {
                        self.drop_packet(DropReason::UnknownPeer);
                        return;
                    }
                }
            }
        };
        let Ok(receive) = Receive::new(Protocol::Udp, from, self.local_addr, buf) else {
            self.drop_packet(DropReason::Malformed);
            return;
        };
        let Some(peer) = self.peers.get_mut(&participant) else {
            self.drop_packet(DropReason::UnknownPeer);
            return;
        };
        // Receiver reports and NACKs about the SSRCs the fast path owns (str0m no longer knows
        // them and would drop them): read before str0m gets the same datagram.
        if kind == Kind::Rtcp {
            if let Some(f) = &mut peer.fast {
                let downs = peer.slots.iter().map(|s| &s.down);
                self.stats.nacks_received += f.on_rtcp(
                    buf,
                    now,
                    downs,
                    &self.fast_sr_log,
                    OPUS_CLOCK,
                    &self.metrics,
                );
            }
        }
        if let Err(e) = peer.rtc.handle_input(Input::Receive(now, receive)) {
            tracing::debug!(participant, error = %e, "str0m rejected a datagram");
            self.drop_packet(DropReason::RtcError);
        }
        let queued = self.transmits.len();
        self.drain(participant, now);
        if verify_addr
            && self
                .transmits
                .iter()
                .skip(queued)
                .any(|t| t.destination == from)
        {
            self.learn_addr(participant, from);
        }
        self.process_scratch(now);
    }

    fn learn_addr(&mut self, participant: u64, from: SocketAddr) {
        match self.by_addr.get(&from) {
            Some(&p) if p == participant => return,
            Some(&other) => {
                // The address moved to another peer (NAT rebinding, rejoin).
                if let Some(o) = self.peers.get_mut(&other) {
                    o.addrs.retain(|a| *a != from);
                }
            }
            None => {}
        }
        let Some(peer) = self.peers.get_mut(&participant) else {
            return;
        };
        if peer.addrs.len() >= MAX_ADDRS_PER_PEER {
            let old = peer.addrs.remove(0);
            self.by_addr.remove(&old);
        }
        peer.addrs.push(from);
        self.by_addr.insert(from, participant);
    }

    /// Drives every peer whose timer is due.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.advance(now);
        while let Some(Reverse((at, participant, epoch))) = self.timers.peek().copied() {
            if at > now {
                break;
            }
            self.timers.pop();
            let Some(peer) = self.peers.get_mut(&participant) else {
                continue;
            };
            if peer.epoch != epoch || peer.deadline != Some(at) {
                continue; // stale entry
            }
            peer.deadline = None;
            if !peer.connected && now >= peer.joined_at + self.connect_timeout {
                self.metrics.connect_failures.increment(1);
                self.removals
                    .push((participant, "ICE/DTLS connect timeout".into()));
                continue;
            }
            if let Some(speaking) = peer.speaking.on_timeout(now) {
                peer.active_at = Some(now);
                let room = peer.room;
                self.events.push_back(SfuEvent::Speaking {
                    room,
                    participant,
                    user_id: peer.user_id,
                    speaking,
                });
                self.reselect_speakers(room);
            }
            self.drive(participant, now);
        }
        if self.video_tick.is_some_and(|t| t <= now) {
            self.video_tick = None;
            self.video_pass(now);
        }
        if self.fast_path && self.fast_sr_at.is_none_or(|t| t <= now) {
            self.fast_sr_at = Some(now + FAST_SR_INTERVAL);
            self.fast_sender_reports(now);
        }
        self.process_scratch(now);
    }

    /// Sender reports for every SSRC the fast path sends on.
    fn fast_sender_reports(&mut self, now: Instant) {
        let wall = SystemTime::now();
        self.fast_sr_log.push(wall, now);
        for peer in self.peers.values_mut() {
            if let Some(f) = &mut peer.fast {
                let downs = peer.slots.iter().map(|s| &s.down);
                let n = f.sender_reports(downs, OPUS_CLOCK, now, wall, &mut self.fast_out);
                self.metrics.bytes_sent.increment(n as u64);
            }
        }
    }

    /// Hands the datagrams the fast path wrote to `send` (false = not sent).
    /// Call after [`Self::poll_transmit`] returns `None`, like it, after
    /// every input.
    pub fn drain_fast(&mut self, send: impl FnMut(SocketAddr, &[u8]) -> bool) {
        let failed = self.fast_out.drain(send);
        for _ in 0..failed {
            self.count_io_drop(false);
        }
    }

    /// Whether the fast path has datagrams waiting for [`Self::drain_fast`].
    pub fn has_fast_datagrams(&self) -> bool {
        !self.fast_out.is_empty()
    }

    /// The earliest time [`Self::handle_timeout`] must be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let t = self.timers.peek().map(|Reverse((at, _, _))| *at);
        [self.video_tick, self.fast_sr_at]
            .into_iter()
            .fold(t, |acc, x| match (acc, x) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            })
    }

    /// Drains subscribers written to since the last flush: one str0m poll per
    /// subscriber for all its pending packets.
    pub fn flush(&mut self, now: Instant) {
        self.advance(now);
        while !self.dirty.is_empty() {
            let dirty = std::mem::take(&mut self.dirty);
            for &p in &dirty {
                self.drive(p, now);
            }
            self.dirty = dirty;
            self.dirty.clear();
            self.process_scratch(now);
        }
    }

    /// Next datagram to send (flushes pending forwards first).
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        if !self.dirty.is_empty() {
            self.flush(self.last_now);
        }
        self.transmits.pop_front()
    }

    /// Next event for the signaling layer.
    pub fn poll_event(&mut self) -> Option<SfuEvent> {
        self.events.pop_front()
    }

    // ------------------------------------------------------------------
    // Driving str0m
    // ------------------------------------------------------------------

    /// Gives the peer's `Rtc` the time and drains its output.
    fn drive(&mut self, participant: u64, now: Instant) {
        let Some(peer) = self.peers.get_mut(&participant) else {
            return;
        };
        if let Err(e) = peer.rtc.handle_input(Input::Timeout(now)) {
            tracing::debug!(participant, error = %e, "str0m timeout handling failed");
        }
        self.drain(participant, now);
    }

    /// Polls the peer's `Rtc` until it returns a timeout. Transmits are queued,
    /// events go to `scratch` (handled by `process_scratch`, which may touch
    /// other peers).
    fn drain(&mut self, participant: u64, now: Instant) {
        let Some(peer) = self.peers.get_mut(&participant) else {
            return;
        };
        peer.dirty = false;
        for t in peer.pending_latency.drain(..) {
            self.metrics
                .forward_latency_seconds
                .record(now.saturating_duration_since(t).as_secs_f64());
        }
        let rtc_deadline = loop {
            match peer.rtc.poll_output() {
                Ok(Output::Timeout(t)) => break Some(t),
                Ok(Output::Transmit(t)) => {
                    self.metrics.bytes_sent.increment(t.contents.len() as u64);
                    if let Some(f) = &mut peer.fast {
                        f.note_transmit(&t);
                    }
                    if demux::classify(&t.contents) == Some(Kind::Rtp) {
                        if let Some(ssrc) = demux::rtp_ssrc(&t.contents) {
                            let rtx = |d: &DownTrack| d.rtx.is_some_and(|r| *r == ssrc);
                            if peer.slots.iter().any(|s| rtx(&s.down))
                                || peer.video_slots.iter().any(|s| rtx(&s.down))
                            {
                                self.metrics.retransmissions.increment(1);
                                self.stats.retransmissions += 1;
                            }
                        }
                    }
                    self.transmits.push_back(t);
                }
                Ok(Output::Event(e)) => self.scratch.push((participant, e)),
                Err(e) => {
                    tracing::debug!(participant, error = %e, "str0m poll failed");
                    self.removals
                        .push((participant, format!("media error: {e}")));
                    break None;
                }
            }
        };
        if !peer.rtc.is_alive() {
            self.removals
                .push((participant, "connection closed".into()));
            return;
        }
        // One timer per peer: str0m's own, the connect deadline, speaking release.
        let mut deadline = rtc_deadline;
        let mut earliest = |t: Option<Instant>| {
            if let Some(t) = t {
                deadline = Some(deadline.map_or(t, |d| d.min(t)));
            }
        };
        if !peer.connected {
            earliest(Some(peer.joined_at + self.connect_timeout));
        }
        earliest(peer.speaking.deadline());
        if let Some(d) = deadline {
            if peer.deadline != Some(d) {
                peer.deadline = Some(d);
                self.timers.push(Reverse((d, participant, peer.epoch)));
            }
        }
    }

    /// Handles the str0m events collected by `drain`, then pending removals.
    fn process_scratch(&mut self, now: Instant) {
        loop {
            let mut scratch = std::mem::take(&mut self.scratch);
            for (participant, event) in scratch.drain(..) {
                self.handle_event(participant, event, now);
            }
            if self.scratch.is_empty() {
                self.scratch = scratch; // keep the allocation
            }
            let removals = std::mem::take(&mut self.removals);
            if removals.is_empty() && self.scratch.is_empty() {
                break;
            }
            for (participant, reason) in removals {
                self.remove_peer(participant, Some(reason));
            }
        }
    }

    fn handle_event(&mut self, participant: u64, event: Event, now: Instant) {
        match event {
            Event::RtpPacket(pkt) => self.on_rtp(participant, pkt),
            Event::KeyframeRequest(req) => self.on_keyframe_request(participant, req.mid, now),
            Event::EgressBitrateEstimate(str0m::bwe::BweKind::Twcc { estimate, .. }) => {
                if let Some(peer) = self.peers.get_mut(&participant) {
                    peer.bwe = Some(estimate.as_u64());
                }
            }
            Event::Connected => {
                let Some(peer) = self.peers.get_mut(&participant) else {
                    return;
                };
                if !peer.connected {
                    peer.connected = true;
                    self.metrics
                        .ice_connect_seconds
                        .record(now.saturating_duration_since(peer.joined_at).as_secs_f64());
                    self.events.push_back(SfuEvent::Connected { participant });
                    // Start forwarding to it with fresh anchors.
                    for s in &mut peer.slots {
                        s.down.resync();
                    }
                    for s in &mut peer.video_slots {
                        s.reset();
                    }
                    if let Some(f) = &mut peer.fast {
                        f.try_activate(&mut peer.rtc, peer.slots.iter_mut().map(|s| &mut s.down));
                    }
                    let room = peer.room;
                    self.update_room_video(room);
                }
            }
            // Before the first connection the connect timeout decides.
            Event::IceConnectionStateChange(IceConnectionState::Disconnected)
                if self.peers.get(&participant).is_some_and(|p| p.connected) =>
            {
                self.removals.push((participant, "ICE disconnected".into()));
            }
            Event::Closed => {
                self.removals.push((participant, "closed by peer".into()));
            }
            Event::MediaIngressStats(s) => {
                if let Some(loss) = s.loss {
                    self.metrics.receive_loss_ratio.record(loss as f64);
                }
                self.metrics
                    .jitter_seconds
                    .record(s.jitter as f64 / OPUS_CLOCK as f64);
            }
            Event::MediaEgressStats(s) => {
                if let Some(peer) = self.peers.get_mut(&participant) {
                    let seen = peer.nacks_seen.entry(s.mid).or_insert(0);
                    if s.nacks > *seen {
                        let delta = s.nacks - *seen;
                        self.metrics.nacks_received.increment(delta);
                        self.stats.nacks_received += delta;
                    }
                    *seen = s.nacks;
                }
                // RTT, loss and jitter from the subscriber's RTCP receiver reports (PeerStats'
                // RTT comes from TWCC, which audio peers do not negotiate). The fast path
                // records the same for the SSRCs it owns (`fastpath/feedback.rs`).
                if let Some(rtt) = s.rtt {
                    self.metrics.rtt_seconds.record(rtt.as_secs_f64());
                }
                if let Some(loss) = s.loss {
                    self.metrics.subscriber_loss_ratio.record(loss as f64);
                }
                // `remote` keeps the last report; only a fresh one (with `loss`) is a sample.
                if let Some(remote) = s.remote.as_ref().filter(|_| s.loss.is_some()) {
                    let audio = self
                        .peers
                        .get(&participant)
                        .is_some_and(|p| p.slots.iter().any(|sl| sl.down.mid == s.mid));
                    let clock = if audio {
                        OPUS_CLOCK
                    } else {
                        video::VIDEO_CLOCK
                    };
                    self.metrics
                        .subscriber_jitter_seconds
                        .record(remote.jitter as f64 / clock as f64);
                }
            }
            _ => {}
        }
    }

    /// Forwards one packet from `participant` to every subscriber slot bound to it.
    fn on_rtp(&mut self, participant: u64, pkt: RtpPacket) {
        let Some(src) = self.peers.get_mut(&participant) else {
            return;
        };
        // Only audio on the publish m-line and video on published video
        // tracks is forwarded.
        if src.in_ssrc != Some(pkt.header.ssrc) {
            if let Some(&(_, t, l)) = src
                .video_ssrcs
                .iter()
                .find(|(s, _, _)| *s == pkt.header.ssrc)
            {
                return self.on_video_rtp(participant, pkt, t as usize, l as usize);
            }
            let (mid, rid) = src
                .rtc
                .direct_api()
                .stream_rx(&pkt.header.ssrc)
                .map(|s| (Some(s.mid()), s.rid()))
                .unwrap_or((None, None));
            if mid.is_some() && mid != src.publish_mid {
                let found = src.video_tracks.iter().enumerate().find_map(|(t, tr)| {
                    (Some(tr.mid) == mid)
                        .then(|| tr.layer_by_rid(rid).map(|l| (t, l)))
                        .flatten()
                });
                if let Some((t, l)) = found {
                    if src.video_ssrcs.len() >= 16 {
                        src.video_ssrcs.remove(0);
                    }
                    src.video_ssrcs.push((pkt.header.ssrc, t as u8, l as u8));
                    return self.on_video_rtp(participant, pkt, t, l);
                }
            }
            if mid.is_none() || mid != src.publish_mid {
                self.drop_packet(DropReason::UnsupportedPt);
                return;
            }
            src.in_ssrc = Some(pkt.header.ssrc);
        }
        self.metrics.received_audio.increment(1);
        if src.server_muted {
            self.drop_packet(DropReason::Muted);
            return;
        }
        let is_red = src.pts.red == Some(pkt.header.payload_type);
        if !is_red && src.pts.opus != Some(pkt.header.payload_type) {
            self.drop_packet(DropReason::UnsupportedPt);
            return;
        }
        let mut speaking_changed = None;
        if !src.self_muted {
            if let Some(level) = pkt.header.ext_vals.audio_level {
                if let Some(speaking) = src.speaking.on_level(pkt.timestamp, level.unsigned_abs()) {
                    src.active_at = Some(pkt.timestamp);
                    speaking_changed = Some(src.room);
                    self.events.push_back(SfuEvent::Speaking {
                        room: src.room,
                        participant,
                        user_id: src.user_id,
                        speaking,
                    });
                    // The release timer must be armed.
                    if speaking && !src.dirty {
                        src.dirty = true;
                        self.dirty.push(participant);
                    }
                }
            }
        }
        // Re-select before forwarding, so a speaker that just took a slot is
        // heard from this packet on.
        if let Some(room) = speaking_changed {
            self.reselect_speakers(room);
        }
        // Fan out over the precomputed (subscriber, slot) list: no scan of
        // the room or of the subscribers' slots per packet.
        let fanout = self.peers.get(&participant).map_or(0, |p| p.fanout.len());
        for k in 0..fanout {
            let Some((sub_id, idx)) = self
                .peers
                .get(&participant)
                .and_then(|p| p.fanout.get(k).copied())
            else {
                break;
            };
            let Some(sub) = self.peers.get_mut(&sub_id) else {
                continue;
            };
            if sub.deaf || !sub.connected {
                continue;
            }
            if let Some(f) = sub.fast.as_mut().filter(|f| f.pending()) {
                f.try_activate(&mut sub.rtc, sub.slots.iter_mut().map(|s| &mut s.down));
            }
            let Some(slot) = sub
                .slots
                .get_mut(idx)
                .filter(|s| s.source == Some(participant))
            else {
                continue;
            };
            let pt = if is_red { sub.pts.red } else { sub.pts.opus };
            let Some(pt) = pt else {
                self.metrics.dropped(DropReason::UnsupportedPt).increment(1);
                self.stats.dropped_other += 1;
                continue;
            };
            let fast = sub
                .fast
                .as_ref()
                .filter(|f| slot.down.fast_owned && f.is_active());
            if let Some(f) = fast {
                match fastpath::forward(f, &mut slot.down, &pkt, pt, &mut self.fast_out) {
                    Ok(n) => {
                        self.metrics.forwarded_audio.increment(1);
                        self.metrics.bytes_sent.increment(n as u64);
                        self.stats.forwarded += 1;
                        // Written and protected already: the forward latency ends here.
                        if self.stats.forwarded.is_multiple_of(LATENCY_SAMPLE) {
                            let d = self.last_now.saturating_duration_since(pkt.timestamp);
                            self.metrics.forward_latency_seconds.record(d.as_secs_f64());
                        }
                    }
                    Err(reason) => {
                        self.metrics.dropped(reason).increment(1);
                        self.stats.dropped_other += 1;
                    }
                }
                continue;
            }
            match slot.down.forward(&mut sub.rtc, &pkt, pt) {
                Ok(()) => {
                    self.metrics.forwarded_audio.increment(1);
                    self.stats.forwarded += 1;
                    // Forward latency is sampled (1 in LATENCY_SAMPLE forwarded packets):
                    // the exporter keeps every sample until a scrape, which at tens of
                    // thousands of packets per second costs more than the figure is worth.
                    if self.stats.forwarded.is_multiple_of(LATENCY_SAMPLE) {
                        sub.pending_latency.push(pkt.timestamp);
                    }
                    if !sub.dirty {
                        sub.dirty = true;
                        self.dirty.push(sub_id);
                    }
                }
                Err(reason) => {
                    self.metrics.dropped(reason).increment(1);
                    self.stats.dropped_other += 1;
                }
            }
        }
    }

    // ------------------------------------------------------------------
    // Rooms and slots
    // ------------------------------------------------------------------

    fn unmap(&mut self, peer: &Peer) {
        for a in &peer.addrs {
            if self.by_addr.get(a) == Some(&peer.participant) {
                self.by_addr.remove(a);
            }
        }
        if self.by_ufrag.get(&peer.ufrag) == Some(&peer.participant) {
            self.by_ufrag.remove(&peer.ufrag);
        }
    }

    /// Removes a participant; `reason` = Some → emits `Disconnected`.
    fn remove_peer(&mut self, participant: u64, reason: Option<String>) {
        let Some(mut peer) = self.peers.remove(&participant) else {
            return;
        };
        self.unmap(&peer);
        peer.rtc.disconnect();
        if peer.speaking.reset() {
            self.events.push_back(SfuEvent::Speaking {
                room: peer.room,
                participant,
                user_id: peer.user_id,
                speaking: false,
            });
        }
        if let Some(reason) = reason {
            tracing::info!(participant, %reason, "participant disconnected");
            self.events.push_back(SfuEvent::Disconnected {
                participant,
                reason,
            });
        }
        let room_id = peer.room;
        if let Some(room) = self.rooms.get_mut(&room_id) {
            room.members.retain(|m| *m != participant);
            if room.members.is_empty() {
                self.rooms.remove(&room_id);
            } else {
                self.update_room_slots(room_id);
            }
        }
        self.update_gauges();
    }

    /// Recomputes every member's slot mapping after a change in the room.
    /// Assignment is stable: a source keeps its slot while it publishes; a
    /// freed slot is reused by the next new publisher (first free in m-line order).
    fn update_room_slots(&mut self, room_id: u64) {
        self.assign_audio_slots(room_id);
        self.update_room_video(room_id);
    }

    /// The room's publishers as speaker-selection candidates, in join order.
    fn speaker_candidates(&self, members: &[u64]) -> Vec<SpeakerCandidate> {
        members
            .iter()
            .filter_map(|m| self.peers.get(m))
            .filter(|p| p.is_publisher())
            .map(|p| SpeakerCandidate {
                participant: p.participant,
                speaking: p.speaking.is_speaking(),
                priority: p.priority_speaker,
                active_at: p.active_at,
            })
            .collect()
    }

    /// Re-runs the loudest-speaker selection after a speaking (or priority)
    /// change and moves listeners' slots only if the selection changed.
    fn reselect_speakers(&mut self, room_id: u64) {
        let Some(room) = self.rooms.get(&room_id) else {
            return;
        };
        let candidates = self.speaker_candidates(&room.members);
        let size = self.max_audio_slots + 1;
        let Some(room) = self.rooms.get_mut(&room_id) else {
            return;
        };
        let changed = selection::reselect(&mut room.selected, &candidates, size);
        // With a full selection, who listeners outside it do without can
        // change without the selection changing (someone went quiet).
        let dropped = (room.selected.len() >= size)
            .then(|| selection::least_relevant(&room.selected, &candidates))
            .flatten();
        if changed || dropped != room.dropped {
            self.assign_audio_slots(room_id);
        }
    }

    /// Recomputes every member's audio slot mapping: each hears the first
    /// `max_audio_slots` selected publishers other than itself.
    fn assign_audio_slots(&mut self, room_id: u64) {
        let Some(room) = self.rooms.get(&room_id) else {
            return;
        };
        let members = room.members.clone();
        let candidates = self.speaker_candidates(&members);
        let publishers: Vec<(u64, u64)> = members
            .iter()
            .filter_map(|m| self.peers.get(m))
            .filter(|p| p.is_publisher())
            .map(|p| (p.participant, p.user_id))
            .collect();
        let k = self.max_audio_slots;
        let selected = match self.rooms.get_mut(&room_id) {
            Some(room) => {
                selection::reselect(&mut room.selected, &candidates, k + 1);
                room.selected.clone()
            }
            None => return,
        };
        // Who a listener outside a full selection does without.
        let dropped = (selected.len() > k)
            .then(|| selection::least_relevant(&selected, &candidates))
            .flatten();
        if let Some(room) = self.rooms.get_mut(&room_id) {
            room.dropped = dropped;
        }
        for &m in &members {
            let Some(peer) = self.peers.get_mut(&m) else {
                continue;
            };
            let skip = if selected.contains(&m) {
                Some(m)
            } else {
                dropped
            };
            let wanted: SmallVec<[u64; 8]> = selected
                .iter()
                .copied()
                .filter(|p| Some(*p) != skip && *p != m)
                .take(k)
                .collect();
            for slot in &mut peer.slots {
                if let Some(s) = slot.source {
                    if !wanted.contains(&s) {
                        slot.source = None;
                        slot.down.resync();
                    }
                }
            }
            for &w in &wanted {
                if peer.slots.iter().any(|s| s.source == Some(w)) {
                    continue;
                }
                if let Some(free) = peer.slots.iter_mut().find(|s| s.source.is_none()) {
                    free.source = Some(w);
                    free.down.resync();
                }
            }
            let needed = wanted.len();
            if needed > peer.slots.len() && needed > peer.reneg_requested {
                peer.reneg_requested = needed;
                self.events.push_back(SfuEvent::RenegotiationNeeded {
                    participant: m,
                    audio_slots: needed,
                });
            }
            let assignment: Vec<SlotAssignment> = peer
                .slots
                .iter()
                .map(|s| SlotAssignment {
                    mid: s.down.mid.to_string(),
                    user_id: s
                        .source
                        .and_then(|src| publishers.iter().find(|(p, _)| *p == src))
                        .map(|(_, u)| *u),
                })
                .collect();
            if peer.last_slots.as_ref() != Some(&assignment) {
                peer.last_slots = Some(assignment.clone());
                self.events.push_back(SfuEvent::Slots {
                    participant: m,
                    slots: assignment,
                });
            }
        }
        // Rebuild every member's fan-out list from the slot mappings.
        for &m in &members {
            if let Some(p) = self.peers.get_mut(&m) {
                p.fanout.clear();
            }
        }
        for &m in &members {
            let Some(sub) = self.peers.get(&m) else {
                continue;
            };
            let entries: SmallVec<[(u64, usize); 8]> = sub
                .slots
                .iter()
                .enumerate()
                .filter_map(|(i, s)| s.source.map(|src| (src, i)))
                .collect();
            for (src, i) in entries {
                if let Some(p) = self.peers.get_mut(&src) {
                    p.fanout.push((m, i));
                }
            }
        }
    }

    // ------------------------------------------------------------------
    // Video
    // ------------------------------------------------------------------

    /// Forwards one packet of layer `li` of video track `ti` of `participant`
    /// to the subscriber slots watching that track at that layer. A slot
    /// moves to its target layer only on a keyframe of that layer.
    fn on_video_rtp(&mut self, participant: u64, pkt: RtpPacket, ti: usize, li: usize) {
        self.metrics.received_video.increment(1);
        let now = pkt.timestamp;
        let Some(src) = self.peers.get_mut(&participant) else {
            return;
        };
        if !src.video_allowed {
            self.drop_packet(DropReason::Muted);
            return;
        }
        let Some(spec) = src
            .video_pts
            .iter()
            .find(|(p, _)| *p == pkt.header.payload_type)
            .map(|(_, s)| *s)
        else {
            self.drop_packet(DropReason::UnsupportedPt);
            return;
        };
        let Some(track) = src.video_tracks.get_mut(ti) else {
            return;
        };
        let kind = track.kind;
        let label = LayerLabel::of(li, track.layers.len());
        let Some(layer) = track.layers.get_mut(li) else {
            return;
        };
        let is_keyframe = video::starts_keyframe(spec.codec, &pkt.payload);
        layer.ssrc = Some(pkt.header.ssrc);
        layer.on_packet(now, pkt.payload.len());
        let bytes = pkt.payload.len() as u64;
        self.metrics.video_received_bytes(label).increment(bytes);
        if is_keyframe {
            layer.keyframe_wanted = false;
            if spec.codec == Codec::Vp8 {
                if let Some(size) = video::vp8_keyframe_size(&pkt.payload) {
                    layer.size = Some(size);
                }
            }
        }
        let fanout = track.fanout.clone();
        for (sub_id, idx) in fanout {
            let Some(sub) = self.peers.get_mut(&sub_id) else {
                continue;
            };
            if !sub.connected {
                continue;
            }
            let Some(slot) = sub
                .video_slots
                .get_mut(idx)
                .filter(|s| s.source == Some((participant, kind)))
            else {
                continue;
            };
            if slot.current != Some(li) {
                if slot.target != Some(li) || !is_keyframe {
                    continue;
                }
                // Switch (or start) on this keyframe; numbering continues.
                match slot.current {
                    Some(c) if li > c => self.metrics.layer_switch_up.increment(1),
                    Some(_) => self.metrics.layer_switch_down.increment(1),
                    None => {}
                }
                slot.current = Some(li);
                slot.down.resync();
                slot.vp8.reanchor();
            }
            let Some(pt) = video::pt_for(&sub.video_pts, spec) else {
                self.metrics.dropped(DropReason::UnsupportedPt).increment(1);
                self.stats.dropped_other += 1;
                continue;
            };
            let patch = if spec.codec == Codec::Vp8 {
                slot.vp8.patch(&pkt.payload)
            } else {
                None
            };
            match slot.down.forward_video(&mut sub.rtc, &pkt, pt, patch) {
                Ok(()) => {
                    self.metrics.forwarded_video.increment(1);
                    self.metrics.video_forwarded_bytes(label).increment(bytes);
                    self.stats.forwarded_video += 1;
                    if !sub.dirty {
                        sub.dirty = true;
                        self.dirty.push(sub_id);
                    }
                }
                Err(reason) => {
                    self.metrics.dropped(reason).increment(1);
                    self.stats.dropped_other += 1;
                }
            }
        }
    }

    /// A subscriber asked for a keyframe (PLI/FIR) on one of its video slots:
    /// passed on to the publisher, throttled per track.
    fn on_keyframe_request(&mut self, participant: u64, mid: Mid, now: Instant) {
        let Some(sub) = self.peers.get(&participant) else {
            return;
        };
        let Some(slot) = sub.video_slots.iter().find(|s| s.down.mid == mid) else {
            return;
        };
        let (Some((publisher, kind)), Some(layer)) = (slot.source, slot.current.or(slot.target))
        else {
            return;
        };
        if let Some(l) = self
            .peers
            .get_mut(&publisher)
            .and_then(|p| p.video_tracks.iter_mut().find(|t| t.kind == kind))
            .and_then(|t| t.layers.get_mut(layer))
        {
            l.want_keyframe(KeyframeReason::SubscriberPli);
        }
        self.send_keyframe_requests(publisher, now);
    }

    /// Sends the wanted keyframe requests of a publisher's tracks, at most one
    /// round per track per [`video::KEYFRAME_REQUEST_INTERVAL`]; the rest wait
    /// for the next video pass.
    fn send_keyframe_requests(&mut self, publisher: u64, now: Instant) {
        let Some(p) = self.peers.get_mut(&publisher) else {
            return;
        };
        if !p.connected {
            return;
        }
        let mut sent = 0u64;
        for t in &mut p.video_tracks {
            if !t
                .layers
                .iter()
                .any(|l| l.keyframe_wanted && l.ssrc.is_some())
            {
                continue;
            }
            if t.last_keyframe_request.is_some_and(|at| {
                now.saturating_duration_since(at) < video::KEYFRAME_REQUEST_INTERVAL
            }) {
                continue;
            }
            t.last_keyframe_request = Some(now);
            for l in &mut t.layers {
                let Some(ssrc) = l.ssrc.filter(|_| l.keyframe_wanted) else {
                    continue;
                };
                l.keyframe_wanted = false;
                if let Some(rx) = p.rtc.direct_api().stream_rx(&ssrc) {
                    rx.request_keyframe(str0m::media::KeyframeRequestKind::Pli);
                    self.metrics
                        .keyframe_requests(l.keyframe_reason)
                        .increment(1);
                    sent += 1;
                }
            }
        }
        if sent > 0 {
            self.stats.keyframe_requests += sent;
            if !p.dirty {
                p.dirty = true;
                self.dirty.push(publisher);
            }
        }
    }

    /// Recomputes the video slot mapping of every member of a room from the
    /// subscriptions, then layers, keyframe requests and pause reports.
    /// Assignment is stable: a watched track keeps its slot; a new one takes
    /// the first free slot in m-line order; subscriptions beyond the slots
    /// are not shown.
    fn update_room_video(&mut self, room_id: u64) {
        let now = self.last_now;
        let Some(room) = self.rooms.get(&room_id) else {
            return;
        };
        let members = room.members.clone();
        type Pub = (u64, u64, SmallVec<[VideoTrackKind; 2]>);
        let pubs: Vec<Pub> = members
            .iter()
            .filter_map(|m| self.peers.get(m))
            .filter(|p| !p.video_tracks.is_empty())
            .map(|p| {
                let kinds = p.video_tracks.iter().map(|t| t.kind).collect();
                (p.participant, p.user_id, kinds)
            })
            .collect();
        let mut any_video = !pubs.is_empty();
        for &m in &members {
            let Some(peer) = self.peers.get_mut(&m) else {
                continue;
            };
            any_video |= !peer.video_slots.is_empty();
            type Want = ((u64, VideoTrackKind), (u32, u32));
            let wanted: SmallVec<[Want; 9]> = peer
                .video_subs
                .iter()
                .filter_map(|s| {
                    pubs.iter()
                        .find(|(p, u, kinds)| {
                            *u == s.user_id && *p != m && kinds.contains(&s.track)
                        })
                        .map(|(p, _, _)| ((*p, s.track), (s.width, s.height)))
                })
                .collect();
            for slot in &mut peer.video_slots {
                if let Some(src) = slot.source {
                    match wanted.iter().find(|(w, _)| *w == src) {
                        Some((_, size)) => slot.want = *size,
                        None => {
                            slot.source = None;
                            slot.reset();
                        }
                    }
                }
            }
            for (w, size) in &wanted {
                if peer.video_slots.iter().any(|s| s.source == Some(*w)) {
                    continue;
                }
                if let Some(free) = peer.video_slots.iter_mut().find(|s| s.source.is_none()) {
                    free.source = Some(*w);
                    free.want = *size;
                    free.reset();
                }
            }
            let assignment: Vec<VideoSlotAssignment> = peer
                .video_slots
                .iter()
                .map(|s| VideoSlotAssignment {
                    mid: s.down.mid.to_string(),
                    user_id: s
                        .source
                        .and_then(|(p, _)| pubs.iter().find(|x| x.0 == p))
                        .map(|x| x.1),
                    track: s.source.map(|(_, k)| k),
                })
                .collect();
            if peer.last_video_slots.as_ref() != Some(&assignment) {
                let quiet = assignment.is_empty() && peer.last_video_slots.is_none();
                peer.last_video_slots = Some(assignment.clone());
                if !quiet {
                    self.emit_video_slots(m, assignment);
                }
            }
        }
        // Rebuild the publishers' fan-out lists from the slot mappings.
        for &m in &members {
            if let Some(p) = self.peers.get_mut(&m) {
                for t in &mut p.video_tracks {
                    t.fanout.clear();
                }
            }
        }
        for &m in &members {
            let Some(sub) = self.peers.get(&m) else {
                continue;
            };
            let entries: SmallVec<[((u64, VideoTrackKind), usize); 9]> = sub
                .video_slots
                .iter()
                .enumerate()
                .filter_map(|(i, s)| s.source.map(|src| (src, i)))
                .collect();
            for ((p, k), i) in entries {
                if let Some(t) = self
                    .peers
                    .get_mut(&p)
                    .and_then(|pp| pp.video_tracks.iter_mut().find(|t| t.kind == k))
                {
                    t.fanout.push((m, i));
                }
            }
        }
        self.allocate_video(&members, now, false);
        if any_video && self.video_tick.is_none() {
            self.video_tick = Some(now + video::VIDEO_TICK);
        }
    }

    /// Chooses each watched slot's target layer from its shown size and the
    /// subscriber's bandwidth estimate (screen shares first, then larger
    /// views), asks for keyframes where a slot must switch, and reports which
    /// layers are needed. `retry`: also re-ask for keyframes for slots still
    /// waiting since the last request a second ago or more.
    fn allocate_video(&mut self, members: &[u64], now: Instant, retry: bool) {
        let mut wanted: SmallVec<[(u64, VideoTrackKind, usize, KeyframeReason); 8]> =
            SmallVec::new();
        for &m in members {
            let Some(sub) = self.peers.get(&m) else {
                continue;
            };
            type Req = (usize, u64, VideoTrackKind, (u32, u32));
            let mut reqs: SmallVec<[Req; 9]> = sub
                .video_slots
                .iter()
                .enumerate()
                .filter_map(|(i, s)| s.source.map(|(p, k)| (i, p, k, s.want)))
                .collect();
            if reqs.is_empty() {
                continue;
            }
            reqs.sort_by_key(|r| {
                (
                    r.2 != VideoTrackKind::Screen,
                    Reverse(r.3 .0 as u64 * r.3 .1 as u64),
                )
            });
            let mut budget = sub.bwe;
            // (slot index, layer, layers of the track, last keyframe request ≥ 1 s ago)
            type Decision = (usize, Option<usize>, usize, bool);
            let mut decisions: SmallVec<[Decision; 9]> = SmallVec::new();
            for (idx, p, k, want) in reqs {
                let Some(track) = self
                    .peers
                    .get(&p)
                    .and_then(|pp| pp.video_tracks.iter().find(|t| t.kind == k))
                else {
                    decisions.push((idx, None, 0, false));
                    continue;
                };
                let layer = track.pick_layer(want, budget, now);
                if let Some(b) = budget.as_mut() {
                    *b = b.saturating_sub(track.layers[layer].bitrate);
                }
                let stale = track
                    .last_keyframe_request
                    .is_none_or(|t| now.saturating_duration_since(t) >= Duration::from_secs(1));
                decisions.push((idx, Some(layer), track.layers.len(), stale));
            }
            let Some(sub) = self.peers.get_mut(&m) else {
                continue;
            };
            for (idx, layer, n_layers, stale) in decisions {
                let slot = &mut sub.video_slots[idx];
                if slot.current.is_some_and(|c| c >= n_layers) {
                    slot.current = None;
                }
                let changed = slot.target != layer;
                slot.target = layer;
                if let (Some(l), Some((p, k))) = (layer, slot.source) {
                    if slot.current != Some(l) && (changed || (retry && stale)) {
                        let reason = match (changed, slot.current) {
                            (false, _) => KeyframeReason::Retry,
                            (true, None) => KeyframeReason::Subscribe,
                            (true, Some(_)) => KeyframeReason::Switch,
                        };
                        wanted.push((p, k, l, reason));
                    }
                }
            }
        }
        let mut publishers: SmallVec<[u64; 8]> = SmallVec::new();
        for (p, k, l, reason) in wanted {
            if let Some(layer) = self
                .peers
                .get_mut(&p)
                .and_then(|pp| pp.video_tracks.iter_mut().find(|t| t.kind == k))
                .and_then(|t| t.layers.get_mut(l))
            {
                layer.want_keyframe(reason);
            }
            if !publishers.contains(&p) {
                publishers.push(p);
            }
        }
        for p in publishers {
            self.send_keyframe_requests(p, now);
        }
        self.report_pauses(members);
    }

    /// Emits `PauseLayers` for every published track in `members` whose set
    /// of needed layers changed.
    fn report_pauses(&mut self, members: &[u64]) {
        let mut used: SmallVec<[(u64, VideoTrackKind, usize); 16]> = SmallVec::new();
        for &m in members {
            let Some(sub) = self.peers.get(&m) else {
                continue;
            };
            for s in &sub.video_slots {
                if let Some((p, k)) = s.source {
                    for l in [s.target, s.current].into_iter().flatten() {
                        used.push((p, k, l));
                    }
                    // The layer that fits the view is needed even while a live
                    // fallback is sent: a publisher that paused it must resume
                    // it, or the slot would stay on the fallback for good.
                    if let Some(t) = self
                        .peers
                        .get(&p)
                        .and_then(|pp| pp.video_tracks.iter().find(|t| t.kind == k))
                    {
                        used.push((p, k, t.fitting_layer(s.want)));
                    }
                }
            }
        }
        let mut reports = Vec::new();
        for &m in members {
            let Some(p) = self.peers.get_mut(&m) else {
                continue;
            };
            for t in &mut p.video_tracks {
                let active: Vec<String> = t
                    .layers
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| used.contains(&(m, t.kind, *i)))
                    .map(|(_, l)| l.rid_str())
                    .collect();
                if t.reported_active.as_ref() != Some(&active) {
                    t.reported_active = Some(active.clone());
                    reports.push((m, t.kind, active));
                }
            }
        }
        for (participant, track, active_rids) in reports {
            self.emit_pause_layers(participant, track, active_rids);
        }
    }

    /// Periodic pass: layer choice (sizes, liveness and bandwidth change),
    /// keyframe retries, pause reports.
    fn video_pass(&mut self, now: Instant) {
        let rooms: Vec<Vec<u64>> = self.rooms.values().map(|r| r.members.clone()).collect();
        let mut any = false;
        for members in rooms {
            let video = members.iter().any(|m| {
                self.peers
                    .get(m)
                    .is_some_and(|p| !p.video_tracks.is_empty() || !p.video_slots.is_empty())
            });
            if video {
                any = true;
                self.allocate_video(&members, now, true);
                for m in &members {
                    self.send_keyframe_requests(*m, now);
                }
            }
        }
        self.video_tick = any.then(|| now + video::VIDEO_TICK);
    }

    #[cfg(any(test, feature = "video"))]
    fn emit_video_slots(&mut self, participant: u64, slots: Vec<VideoSlotAssignment>) {
        self.events
            .push_back(SfuEvent::VideoSlots { participant, slots });
    }

    #[cfg(not(any(test, feature = "video")))]
    fn emit_video_slots(&mut self, _participant: u64, _slots: Vec<VideoSlotAssignment>) {}

    #[cfg(any(test, feature = "video"))]
    fn emit_pause_layers(
        &mut self,
        participant: u64,
        track: VideoTrackKind,
        active_rids: Vec<String>,
    ) {
        self.events.push_back(SfuEvent::PauseLayers {
            participant,
            track,
            active_rids,
        });
    }

    #[cfg(not(any(test, feature = "video")))]
    fn emit_pause_layers(&mut self, _: u64, _: VideoTrackKind, _: Vec<String>) {}

    /// What `participant` wants to see (replaces the previous list).
    pub fn set_video_subscriptions(
        &mut self,
        now: Instant,
        participant: u64,
        subs: Vec<VideoSubscription>,
    ) {
        self.advance(now);
        let Some(p) = self.peers.get_mut(&participant) else {
            return;
        };
        p.video_subs = subs;
        p.video_subs.truncate(64);
        let room = p.room;
        self.update_room_video(room);
    }

    /// Declares which of the client's sending video m-lines (by mid) is the
    /// camera and which the screen share, overriding the m-line order rule.
    pub fn set_video_track_kinds(
        &mut self,
        now: Instant,
        participant: u64,
        kinds: Vec<(String, VideoTrackKind)>,
    ) {
        self.advance(now);
        let Some(p) = self.peers.get_mut(&participant) else {
            return;
        };
        p.video_kinds = kinds
            .into_iter()
            .take(8)
            .map(|(m, k)| (Mid::from(m.as_str()), k))
            .collect();
        let mids = p.mids.clone();
        let v = inspect_video(&p.rtc, &mids);
        apply_video(p, v, self.max_video_slots);
        let room = p.room;
        self.update_room_video(room);
        self.update_gauges();
    }

    /// Video slot mapping of a subscriber: (mid, (publisher participant, track)).
    pub fn video_slots_of(&self, participant: u64) -> Vec<(String, Option<(u64, VideoTrackKind)>)> {
        self.peers
            .get(&participant)
            .map(|p| {
                p.video_slots
                    .iter()
                    .map(|s| (s.down.mid.to_string(), s.source))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The rid being forwarded on a subscriber's video slot (`""` without
    /// simulcast), or None when nothing is forwarded there yet.
    pub fn video_layer_of(&self, participant: u64, mid: &str) -> Option<String> {
        let p = self.peers.get(&participant)?;
        let s = p.video_slots.iter().find(|s| &*s.down.mid == mid)?;
        let (publisher, kind) = s.source?;
        let t = self
            .peers
            .get(&publisher)?
            .video_tracks
            .iter()
            .find(|t| t.kind == kind)?;
        Some(t.layers.get(s.current?)?.rid_str())
    }

    /// The kinds of the video tracks a participant publishes, with their rids.
    pub fn video_tracks_of(&self, participant: u64) -> Vec<(VideoTrackKind, Vec<String>)> {
        self.peers
            .get(&participant)
            .map(|p| {
                p.video_tracks
                    .iter()
                    .map(|t| (t.kind, t.layers.iter().map(|l| l.rid_str()).collect()))
                    .collect()
            })
            .unwrap_or_default()
    }

    fn update_gauges(&mut self) {
        self.metrics.participants.set(self.peers.len() as f64);
        self.metrics.rooms.set(self.rooms.len() as f64);
        let tracks: usize = self
            .peers
            .values()
            .map(|p| p.is_publisher() as usize + p.video_tracks.len())
            .sum();
        self.metrics.tracks.set(tracks as f64);
    }
}

/// Applies an offer, never letting a str0m panic on hostile input escape.
fn accept_offer(rtc: &mut Rtc, offer: str0m::change::SdpOffer) -> Result<String, SfuError> {
    let result = catch_unwind(AssertUnwindSafe(|| rtc.sdp_api().accept_offer(offer)));
    match result {
        Ok(Ok(answer)) => Ok(answer.to_sdp_string()),
        Ok(Err(e)) => Err(SfuError::InvalidSdp(format!("offer rejected: {e}"))),
        Err(_) => {
            rtc.disconnect();
            Err(SfuError::InvalidSdp(
                "offer rejected (internal error)".into(),
            ))
        }
    }
}

/// Finds the publish m-line (the client's first sending audio transceiver),
/// the listening slots (audio m-lines the client only receives on, in order)
/// and the negotiated payload types.
fn inspect_medias(rtc: &Rtc, mids: &[Mid]) -> Result<(Option<Mid>, Vec<Mid>, AudioPts), SfuError> {
    let mut publish = None;
    let mut slots = Vec::new();
    let mut remote_pts: SmallVec<[Pt; 8]> = SmallVec::new();
    for &mid in mids {
        let Some(media) = rtc.media(mid) else {
            continue;
        };
        if media.kind() != MediaKind::Audio || media.disabled() {
            continue;
        }
        remote_pts.extend(media.remote_pts().iter().copied());
        match media.direction() {
            Direction::RecvOnly | Direction::SendRecv if publish.is_none() => publish = Some(mid),
            Direction::SendOnly => slots.push(mid),
            _ => {}
        }
    }
    let opus = rtc
        .codec_config()
        .params()
        .iter()
        .find(|p| p.spec().codec == Codec::Opus && remote_pts.contains(&p.pt()));
    let Some(opus) = opus else {
        return Err(SfuError::InvalidSdp(
            "no audio m-line with Opus was accepted".into(),
        ));
    };
    // str0m folds RED onto the Opus params; after negotiation `red()` is set
    // only if the client offered RED too (and it is not in `remote_pts`).
    let pts = AudioPts {
        opus: Some(opus.pt()),
        red: opus.red(),
    };
    Ok((publish, slots, pts))
}

/// Adds a DownTrack for every slot mid not yet known (the client never
/// removes transceivers, so slots only grow).
fn add_slots(peer: &mut Peer, slot_mids: &[Mid]) {
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

/// The video m-lines of a negotiated session.
struct VideoMedias {
    /// Client-sending video m-lines, in order: (mid, carries media, rids).
    /// `inactive` ones are listed (they hold a place in the camera/screen
    /// order) with `false`.
    send: Vec<(Mid, bool, Vec<str0m::media::Rid>)>,
    /// Client-receiving (recvonly) video m-lines: the video slots.
    recv: Vec<Mid>,
    pts: VideoPts,
}

fn inspect_video(rtc: &Rtc, mids: &[Mid]) -> VideoMedias {
    let mut out = VideoMedias {
        send: Vec::new(),
        recv: Vec::new(),
        pts: SmallVec::new(),
    };
    let mut remote_pts: SmallVec<[Pt; 16]> = SmallVec::new();
    for &mid in mids {
        let Some(media) = rtc.media(mid) else {
            continue;
        };
        if media.kind() != MediaKind::Video || media.disabled() {
            continue;
        }
        remote_pts.extend(media.remote_pts().iter().copied());
        // Directions are ours: the client's sendonly is our recvonly.
        match media.direction() {
            Direction::RecvOnly | Direction::SendRecv => {
                let rids = match media.rids_rx() {
                    str0m::media::Rids::Specific(r) => r.clone(),
                    _ => Vec::new(),
                };
                out.send.push((mid, true, rids));
            }
            Direction::Inactive => out.send.push((mid, false, Vec::new())),
            Direction::SendOnly => out.recv.push(mid),
        }
    }
    for p in rtc.codec_config().params() {
        if p.spec().codec.is_video() && remote_pts.contains(&p.pt()) {
            out.pts.push((p.pt(), p.spec()));
        }
    }
    out
}

/// Applies the negotiated video m-lines to a peer: published tracks (kept
/// with their state when unchanged) and video slots (which only grow).
fn apply_video(peer: &mut Peer, v: VideoMedias, max_slots: usize) {
    peer.video_pts = v.pts;
    let mut tracks: SmallVec<[VideoTrack; 2]> = SmallVec::new();
    for (order, (mid, active, rids)) in v.send.iter().enumerate() {
        let by_order = match order {
            0 => Some(VideoTrackKind::Camera),
            1 => Some(VideoTrackKind::Screen),
            _ => None,
        };
        let declared = peer
            .video_kinds
            .iter()
            .find(|(m, _)| m == mid)
            .map(|(_, k)| *k);
        let Some(kind) = declared.or(by_order) else {
            continue;
        };
        if !active || tracks.iter().any(|t| t.kind == kind) {
            continue;
        }
        let rid_list: Vec<Option<str0m::media::Rid>> = rids.iter().map(|r| Some(*r)).collect();
        let kept = peer.video_tracks.iter().position(|t| {
            t.mid == *mid && t.kind == kind && {
                let want: &[Option<str0m::media::Rid>] = if rid_list.is_empty() {
                    &[None]
                } else {
                    &rid_list
                };
                t.layers.len() == want.len() && t.layers.iter().all(|l| want.contains(&l.rid))
            }
        });
        match kept {
            Some(i) => tracks.push(peer.video_tracks.swap_remove(i)),
            None => tracks.push(VideoTrack::new(kind, *mid, rids)),
        }
    }
    peer.video_tracks = tracks;
    peer.video_ssrcs.clear();
    for mid in v.recv {
        if peer.video_slots.len() >= max_slots {
            break;
        }
        if peer.video_slots.iter().any(|s| s.down.mid == mid) {
            continue;
        }
        let mut api = peer.rtc.direct_api();
        let (ssrc, rtx) = match api.stream_tx_by_mid(mid, None) {
            Some(tx) => (tx.ssrc(), tx.rtx()),
            None => {
                let ssrc = api.new_ssrc();
                let rtx = api.new_ssrc();
                api.declare_stream_tx(ssrc, Some(rtx), mid, None);
                (ssrc, Some(rtx))
            }
        };
        peer.video_slots.push(VideoSlot::new(DownTrack::new(
            mid,
            ssrc,
            rtx,
            video::VIDEO_CLOCK,
        )));
    }
}
