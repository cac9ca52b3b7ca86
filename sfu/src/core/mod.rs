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
use std::time::{Duration, Instant};

use str0m::net::Transmit;
use str0m::{Candidate, Event, RtcConfig};

use crate::fastpath::{self, FastTrack, Lanes, Sealer};
use crate::metrics::{DropReason, Metrics};
use crate::{ParticipantId, RoomId, SfuConfig, SfuError, SfuEvent};

mod drive;
mod forwarding;
mod ingress;
mod peer;
mod relay;
mod session;
mod video_routing;

use peer::{Peer, Room};
use session::rtc_config;

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
    /// Relay datagrams handed to the relay socket (one per packet and peer node).
    pub relay_sent: u64,
    /// Relay datagrams accepted from other media nodes.
    pub relay_received: u64,
    /// Relay datagrams refused on arrival or not sent.
    pub relay_dropped: u64,
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
    /// `SfuConfig::opus_dtx`.
    opus_dtx: bool,
    max_video_slots: usize,
    max_audio_slots: usize,
    connect_timeout: Duration,
    peers: HashMap<ParticipantId, Peer>,
    by_addr: HashMap<SocketAddr, ParticipantId>,
    by_ufrag: HashMap<String, ParticipantId>,
    rooms: HashMap<RoomId, Room>,
    /// (deadline, participant, epoch of its `Rtc`).
    timers: BinaryHeap<Reverse<(Instant, ParticipantId, u64)>>,
    next_epoch: u64,
    dirty: Vec<ParticipantId>,
    transmits: VecDeque<Transmit>,
    events: VecDeque<SfuEvent>,
    scratch: Vec<(ParticipantId, Event)>,
    removals: Vec<(ParticipantId, String)>,
    last_now: Instant,
    metrics: Metrics,
    stats: CoreStats,
    fast_path: bool,
    /// Bandwidth estimation towards video subscribers is on (`SfuConfig::video_bwe`).
    video_bwe: bool,
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
    /// Relay to and from other media nodes hosting the same rooms.
    relay: relay::Relay,
    /// The passive ICE-TCP candidate's address (public IP, TCP port), when ICE-TCP is on.
    tcp_addr: Option<SocketAddr>,
    /// The IPv6 host candidate's address (public IPv6, the IPv6 socket's port), when on.
    local6: Option<SocketAddr>,
}

/// Interval of the fast path's sender reports (str0m's default for audio).
const FAST_SR_INTERVAL: Duration = Duration::from_secs(1);

/// One forwarded packet in this many has its forward latency recorded.
const LATENCY_SAMPLE: u64 = 16;

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
            opus_dtx: config.opus_dtx,
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
            video_bwe: config.video_bwe,
            fast_lanes: Lanes::new(if config.fast_path {
                config.send_lanes()
            } else {
                1
            }),
            fast_sealers: Vec::new(),
            fast_serial: 0,
            fast_sr_at: None,
            fast_sr_log: fastpath::SrLog::default(),
            relay: relay::Relay::new(),
            tcp_addr: None,
            local6: None,
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
    pub fn local_ufrag(&self, participant: ParticipantId) -> Option<&str> {
        self.peers.get(&participant).map(|p| p.link.ufrag.as_str())
    }

    pub fn has_participant(&self, participant: ParticipantId) -> bool {
        self.peers.contains_key(&participant)
    }

    /// Whether the participant's ICE+DTLS is up.
    pub fn is_connected(&self, participant: ParticipantId) -> bool {
        self.peers
            .get(&participant)
            .is_some_and(|p| p.link.connected)
    }

    /// Current (slot mid, source participant) list of a subscriber's voice
    /// slots (a slot carrying a screen share's sound shows as unused here;
    /// see [`SfuCore::stream_slots_of`]).
    pub fn slots_of(&self, participant: ParticipantId) -> Vec<(String, Option<ParticipantId>)> {
        self.peers
            .get(&participant)
            .map(|p| {
                p.listen
                    .slots
                    .iter()
                    .map(|s| {
                        let voice = match s.source {
                            Some(peer::AudioSource::Voice(v)) => Some(v),
                            _ => None,
                        };
                        (s.down.mid.to_string(), voice)
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The listening slots of a subscriber that carry a screen share's sound:
    /// (slot mid, the sharing participant).
    pub fn stream_slots_of(&self, participant: ParticipantId) -> Vec<(String, ParticipantId)> {
        self.peers
            .get(&participant)
            .map(|p| {
                p.listen
                    .slots
                    .iter()
                    .filter_map(|s| match s.source {
                        Some(peer::AudioSource::Stream(v)) => Some((s.down.mid.to_string(), v)),
                        _ => None,
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Outgoing SSRC of a subscriber's slot (tests).
    pub fn slot_ssrc(&self, participant: ParticipantId, mid: &str) -> Option<u32> {
        let p = self.peers.get(&participant)?;
        p.listen.by_mid(mid).map(|s| *s.down.ssrc)
    }

    /// The next packet forwarded on a subscriber's slot gets extended
    /// sequence number `seq` (tests of SRTP rollover).
    #[cfg(any(test, feature = "testing"))]
    pub fn force_next_seq(&mut self, participant: ParticipantId, mid: &str, seq: u64) {
        let now = self.last_now;
        if let Some(s) = self
            .peers
            .get_mut(&participant)
            .and_then(|p| p.listen.slots.iter_mut().find(|s| &*s.down.mid == mid))
        {
            s.down.force_next_seq(seq, now);
        }
    }

    /// Whether the fast path sends on this subscriber's slot.
    pub fn slot_is_fast(&self, participant: ParticipantId, mid: &str) -> bool {
        self.peers.get(&participant).is_some_and(|p| {
            p.fast.as_ref().is_some_and(|f| f.is_active())
                && p.listen.by_mid(mid).is_some_and(|s| s.down.is_fast())
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

    pub(super) fn advance(&mut self, now: Instant) {
        if now > self.last_now {
            self.last_now = now;
        }
    }

    /// Next event for the signaling layer.
    pub fn poll_event(&mut self) -> Option<SfuEvent> {
        self.events.pop_front()
    }

    pub(super) fn update_gauges(&mut self) {
        self.metrics.participants.set(self.peers.len() as f64);
        self.metrics.rooms.set(self.rooms.len() as f64);
        let tracks: usize = self
            .peers
            .values()
            .map(|p| p.audio.is_publisher() as usize + p.video.tracks.len())
            .sum();
        self.metrics.tracks.set(tracks as f64);
    }
}

impl SfuCore {
    /// Offers a passive ICE-TCP candidate at `addr` (public IP, TCP port) in every answer from
    /// now on (`tcp.rs` carries the connections).
    pub fn enable_ice_tcp(&mut self, addr: SocketAddr) {
        self.tcp_addr = Some(addr);
    }

    /// Offers an IPv6 host candidate at `addr` (public IPv6, the IPv6 socket's port) in every
    /// answer from now on; datagrams from IPv6 addresses arrive on that socket.
    pub fn enable_ipv6(&mut self, addr: SocketAddr) {
        self.local6 = Some(addr);
    }
}
