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
use crate::fastpath::{self, FastPeer, Lanes, Outbox, Sealer};
use crate::metrics::{DropReason, KeyframeReason, LayerLabel, Metrics};
use crate::selection::{self, Candidate as SpeakerCandidate};
use crate::speaking::SpeakingDetector;
use crate::video::{self, VideoPts, VideoSlot, VideoTrack};
use crate::{
    JoinRequest, SfuConfig, SfuError, SfuEvent, SlotAssignment, VideoSlotAssignment,
    VideoSubscription, VideoTrackKind,
};

mod forwarding;
mod video_routing;

use video_routing::{apply_video, inspect_video};

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
    /// Self-muted or self-deafened: audio is dropped on arrival, as for a
    /// server mute, so a client that keeps sending is not heard.
    self_muted: bool,
    deaf: bool,
    /// The client says its camera / screen share is on; while off, packets
    /// of that track are dropped on arrival (default on).
    camera_on: bool,
    screen_on: bool,
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
    video_start_bitrate_kbps: u64,
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
    /// Datagrams written by the fast path, by send lane: sealed and sent by
    /// [`SfuCore::drain_fast`], or handed to send workers with
    /// [`SfuCore::swap_fast_outbox`].
    fast_lanes: Lanes,
    /// Sealers of [`SfuCore::drain_fast`] (one per lane, created on first use).
    fast_sealers: Vec<Sealer>,
    /// Counts packets forwarded through the fast path: a packet's payload is
    /// queued once per lane, recognised by this number.
    fast_serial: u64,
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
            video_start_bitrate_kbps: config.video_start_bitrate_kbps,
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
            fast_lanes: Lanes::new(if config.fast_path {
                config.send_lanes()
            } else {
                1
            }),
            fast_sealers: Vec::new(),
            fast_serial: 0,
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
        let answer = crate::sdp::tune_video_answer(&answer, self.video_start_bitrate_kbps);
        let mids = offer_mids(&req.offer_sdp);
        let (publish_mid, slot_mids, pts) = inspect_medias(&rtc, &mids)?;
        let vmedias = inspect_video(&rtc, &mids);

        // Rejoin: the old peer goes away quietly; room membership and the
        // moderator/deaf/mute flags carry over.
        let mut flags = (false, false, false);
        let mut video_allowed = true;
        let mut video_on = (true, true);
        let mut priority_speaker = false;
        let mut video_subs = Vec::new();
        let mut video_kinds = Vec::new();
        if let Some(old) = self.peers.get(&req.participant) {
            flags = (old.server_muted, old.self_muted, old.deaf);
            video_allowed = old.video_allowed;
            video_on = (old.camera_on, old.screen_on);
            priority_speaker = old.priority_speaker;
            video_subs = old.video_subs.clone();
            video_kinds = old.video_kinds.clone();
            if old.room != req.room {
                self.remove_peer(req.participant, None);
            } else {
                let mut old = self.peers.remove(&req.participant).expect("checked");
                self.unmap(&old);
                if let Some(f) = &mut old.fast {
                    f.release(&mut self.fast_lanes);
                }
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
            camera_on: video_on.0,
            screen_on: video_on.1,
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
        let answer = crate::sdp::tune_video_answer(&answer, self.video_start_bitrate_kbps);
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

    /// Self-mute (or self-deafen): the SFU drops this participant's audio as
    /// for a server mute, whatever the client sends; clears the speaking state.
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
        if allowed {
            self.restart_viewers(participant, None);
        }
    }

    /// The client's camera / screen share switch (`self_video` / `self_stream`):
    /// a track switched off is dropped on arrival, so a client that keeps
    /// sending it is not seen and costs its viewers nothing.
    pub fn set_self_video(&mut self, now: Instant, participant: u64, camera: bool, screen: bool) {
        self.advance(now);
        let Some(p) = self.peers.get_mut(&participant) else {
            return;
        };
        let turned_on = [
            (camera && !p.camera_on).then_some(VideoTrackKind::Camera),
            (screen && !p.screen_on).then_some(VideoTrackKind::Screen),
        ];
        p.camera_on = camera;
        p.screen_on = screen;
        for kind in turned_on.into_iter().flatten() {
            self.restart_viewers(participant, Some(kind));
        }
    }

    /// Video of `participant` (one track kind, or all) may flow again after
    /// being dropped: viewers held the last frame; their slots are reset so
    /// the target layer is asked for (PLI) and forwarding starts on its keyframe.
    fn restart_viewers(&mut self, participant: u64, kind: Option<VideoTrackKind>) {
        let Some(room) = self.peers.get(&participant).map(|p| p.room) else {
            return;
        };
        let members = self
            .rooms
            .get(&room)
            .map(|r| r.members.clone())
            .unwrap_or_default();
        for m in members {
            if let Some(sub) = self.peers.get_mut(&m) {
                for slot in sub.video_slots.iter_mut().filter(|s| {
                    s.source
                        .is_some_and(|(src, k)| src == participant && kind.is_none_or(|x| x == k))
                }) {
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
                let n = f.sender_reports(downs, OPUS_CLOCK, now, wall, &mut self.fast_lanes);
                self.metrics.bytes_sent.increment(n as u64);
            }
        }
    }

    /// Protects the datagrams the fast path queued and hands them to `send`
    /// (false = not sent), lane after lane. Call after [`Self::poll_transmit`]
    /// returns `None`, like it, after every input. A core whose lanes are
    /// handed to send workers ([`Self::swap_fast_outbox`]) must never call
    /// this: each lane has one sealer, which holds its peers' keys.
    pub fn drain_fast(&mut self, mut send: impl FnMut(SocketAddr, &[u8]) -> bool) {
        self.drain_fast_lanes(0..self.fast_lanes.count(), |sealer| {
            sealer.datagrams().filter(|(d, b)| !send(*d, b)).count() as u64
        });
    }

    /// Like [`Self::drain_fast`] for the given lanes, with the whole sealed
    /// batch of a lane handed to `send` at once (for `sendmmsg`); `send`
    /// returns how many datagrams were not sent.
    pub(crate) fn drain_fast_lanes(
        &mut self,
        lanes: std::ops::Range<usize>,
        mut send: impl FnMut(&Sealer) -> u64,
    ) {
        if self.fast_sealers.len() < self.fast_lanes.count() {
            self.fast_sealers
                .resize_with(self.fast_lanes.count(), Sealer::default);
        }
        for lane in lanes {
            let out = &mut self.fast_lanes.outboxes()[lane];
            if out.is_empty() {
                continue;
            }
            let sealer = &mut self.fast_sealers[lane];
            sealer.seal(out);
            let failed = send(sealer);
            for _ in 0..failed {
                self.count_io_drop(false);
            }
        }
    }

    /// Number of send lanes (`SfuConfig::send_workers`, at least 1).
    pub(crate) fn fast_lane_count(&self) -> usize {
        self.fast_lanes.count()
    }

    /// Whether anything (datagrams or key changes) waits on `lane`.
    pub(crate) fn fast_lane_pending(&self, lane: usize) -> bool {
        !self.fast_lanes.outbox(lane).is_empty()
    }

    /// Datagrams waiting on `lane`.
    pub(crate) fn fast_lane_datagrams(&self, lane: usize) -> usize {
        self.fast_lanes.outbox(lane).datagrams()
    }

    /// Exchanges lane `lane`'s outbox for an empty one (`spare`, cleared by
    /// its sealer): the send worker of that lane seals and sends what was queued.
    pub(crate) fn swap_fast_outbox(&mut self, lane: usize, spare: &mut Outbox) {
        std::mem::swap(&mut self.fast_lanes.outboxes()[lane], spare);
    }

    /// Whether the fast path has datagrams waiting for [`Self::drain_fast`].
    pub fn has_fast_datagrams(&self) -> bool {
        !self.fast_lanes.is_empty()
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
        if let Some(f) = &mut peer.fast {
            f.release(&mut self.fast_lanes);
        }
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
