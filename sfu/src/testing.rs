//! Test helpers (feature `testing`): a client-side str0m peer that behaves
//! like Confab's web client (it always offers: one send audio transceiver plus
//! N recvonly listening slots), and an in-memory network that moves datagrams
//! between such peers and a [`SfuCore`] on a virtual clock.
//!
//! The load tester can use [`TestPeer`] over real sockets: feed it with
//! [`TestPeer::handle_datagram`] / [`TestPeer::handle_timeout`] and send what
//! [`TestPeer::poll_transmit`] returns.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use str0m::change::{SdpAnswer, SdpPendingOffer};
use str0m::format::{Codec, FormatParams};
use str0m::media::{
    Direction, Frequency, KeyframeRequestKind, MediaKind, Mid, Rid, Simulcast, SimulcastLayer,
};
use str0m::net::{Protocol, Receive, Transmit};
use str0m::rtp::{Extension, ExtensionMap, ExtensionValues, RtpWrite};
use str0m::{Candidate, Event, Input, Output, Rtc, RtcConfig};

use crate::{
    JoinRequest, ParticipantId, RelayEndpoint, RoomId, SfuConfig, SfuCore, SfuError, SfuEvent,
    UserTag,
};

/// How a [`TestPeer`] negotiates.
#[derive(Debug, Clone, Copy)]
pub struct TestPeerConfig {
    /// Offer a send audio transceiver (false = listen-only).
    pub send: bool,
    /// Offer Opus with an RTX payload type (so it NACKs lost audio).
    pub rtx: bool,
    /// Offer RED (`audio/red`) on Opus. Ignored when `rtx` is set.
    pub red: bool,
    /// Sending video m-lines (VP8): 1 = camera, 2 = camera + screen share.
    pub video_send: usize,
    /// Send the video tracks as simulcast with rids "q", "h", "f".
    pub simulcast: bool,
    /// Recvonly video transceivers (video slots).
    pub video_recv: usize,
    /// A second sending audio m-line after the video ones: the screen
    /// share's sound (declare it with `SfuCore::set_stream_audio_mid`).
    pub screen_audio: bool,
}

/// Frame size the test peer puts in its VP8 keyframes per rid.
pub fn test_layer_size(rid: Option<&str>) -> (u32, u32) {
    match rid {
        Some("q") => (320, 180),
        Some("h") => (640, 360),
        _ => (1280, 720),
    }
}

/// A synthetic VP8 packet (one packet per frame): payload descriptor with a
/// 15-bit picture id and TL0PICIDX, a VP8 frame header (a keyframe carries
/// the size), then `tag` and the frame number for the receiver to check.
pub fn vp8_frame(pid: u16, tl0: u8, keyframe: bool, size: (u32, u32), tag: u8, n: u32) -> Vec<u8> {
    let mut p = vec![
        0x90,
        0xe0,
        0x80 | ((pid >> 8) as u8 & 0x7f),
        pid as u8,
        tl0,
        0x00,
    ];
    if keyframe {
        p.extend_from_slice(&[0x00, 0x00, 0x00, 0x9d, 0x01, 0x2a]);
        p.extend_from_slice(&(size.0 as u16).to_le_bytes());
        p.extend_from_slice(&(size.1 as u16).to_le_bytes());
    } else {
        p.extend_from_slice(&[0x01, 0x00, 0x00]);
    }
    p.push(tag);
    p.extend_from_slice(&n.to_be_bytes());
    p.extend(std::iter::repeat_n(0x55, 100));
    p
}

/// What a [`vp8_frame`] payload says: (picture id, tl0, keyframe, tag, frame number).
pub fn parse_vp8_frame(p: &[u8]) -> Option<(u16, u8, bool, u8, u32)> {
    let pid = (((p.get(2)? & 0x7f) as u16) << 8) | *p.get(3)? as u16;
    let tl0 = *p.get(4)?;
    let key = p.get(6)? & 0x01 == 0;
    let body = if key { 16 } else { 9 };
    let tag = *p.get(body)?;
    let n = u32::from_be_bytes(p.get(body + 1..body + 5)?.try_into().ok()?);
    Some((pid, tl0, key, tag, n))
}

/// Per-encoding send state of a test peer's video track.
#[derive(Debug, Clone, Default)]
struct VideoSendState {
    seq: u64,
    ts: u32,
    pid: u16,
    tl0: u8,
    frames: u32,
}

impl Default for TestPeerConfig {
    fn default() -> Self {
        TestPeerConfig {
            send: true,
            rtx: false,
            red: false,
            video_send: 0,
            simulcast: false,
            video_recv: 0,
            screen_audio: false,
        }
    }
}

/// One RTP packet a [`TestPeer`] received.
#[derive(Debug, Clone)]
pub struct Received {
    /// The mid of the recvonly transceiver it arrived on.
    pub mid: Option<String>,
    pub ssrc: u32,
    /// Extended sequence number.
    pub seq: u64,
    pub timestamp: u32,
    pub pt: u8,
    pub payload: Arc<[u8]>,
    pub audio_level: Option<i8>,
    pub marker: bool,
    pub at: Instant,
}

/// A client peer (str0m, RTP mode) that offers like the web client.
pub struct TestPeer {
    pub rtc: Rtc,
    pub addr: SocketAddr,
    pub send_mid: Option<Mid>,
    pub recv_mids: Vec<Mid>,
    pub received: Vec<Received>,
    pub connected: bool,
    pub events: Vec<String>,
    /// Sending video m-lines (camera first, then screen).
    pub video_send_mids: Vec<Mid>,
    /// Recvonly video m-lines.
    pub video_recv_mids: Vec<Mid>,
    /// The screen share's sound (`TestPeerConfig::screen_audio`).
    pub screen_audio_mid: Option<Mid>,
    next_stream_seq: u64,
    /// Keyframe requests (PLI/FIR) received: (mid, rid).
    pub keyframe_requests: Vec<(String, Option<String>)>,
    video_state: Vec<((usize, Option<String>), VideoSendState)>,
    config: TestPeerConfig,
    pending: Option<SdpPendingOffer>,
    outbox: VecDeque<Transmit>,
    timeout: Option<Instant>,
    /// Extended sequence number of the next packet `send_audio` writes.
    pub next_seq: u64,
    next_ts: u32,
}

impl TestPeer {
    pub fn new(addr: SocketAddr, now: Instant, config: TestPeerConfig) -> Self {
        let mut exts = ExtensionMap::empty();
        exts.set(1, Extension::AudioLevel);
        exts.set(4, Extension::RtpMid);
        let video = config.video_send > 0 || config.video_recv > 0;
        if video {
            exts.set(2, Extension::AbsoluteSendTime);
            exts.set(3, Extension::TransportSequenceNumber);
            exts.set(10, Extension::RtpStreamId);
            exts.set(11, Extension::RepairedRtpStreamId);
        }
        let mut rc = RtcConfig::new()
            .set_rtp_mode(true)
            .clear_codecs()
            .set_extension_map(exts);
        if config.rtx {
            rc.codec_config().add_config(
                111.into(),
                Some(112.into()),
                Codec::Opus,
                Frequency::FORTY_EIGHT_KHZ,
                Some(2),
                FormatParams {
                    min_p_time: Some(10),
                    use_inband_fec: Some(true),
                    ..Default::default()
                },
            );
        } else {
            rc = rc.enable_opus(true, config.red);
        }
        if video {
            rc = rc.enable_vp8(true);
        }
        let mut rtc = rc.build(now);
        rtc.add_local_candidate(Candidate::host(addr, "udp").expect("host candidate"));
        TestPeer {
            rtc,
            addr,
            send_mid: None,
            recv_mids: Vec::new(),
            received: Vec::new(),
            connected: false,
            events: Vec::new(),
            video_send_mids: Vec::new(),
            video_recv_mids: Vec::new(),
            screen_audio_mid: None,
            next_stream_seq: 5000,
            keyframe_requests: Vec::new(),
            video_state: Vec::new(),
            config,
            pending: None,
            outbox: VecDeque::new(),
            timeout: None,
            next_seq: 1000,
            next_ts: 50_000,
        }
    }

    /// Creates an offer with the send transceiver (first time, if configured)
    /// and recvonly transceivers up to `recv_slots` in total.
    pub fn offer(&mut self, recv_slots: usize) -> String {
        let mut api = self.rtc.sdp_api();
        if self.config.send && self.send_mid.is_none() {
            self.send_mid =
                Some(api.add_media(MediaKind::Audio, Direction::SendOnly, None, None, None));
        }
        while self.recv_mids.len() < recv_slots {
            let mid = api.add_media(MediaKind::Audio, Direction::RecvOnly, None, None, None);
            self.recv_mids.push(mid);
        }
        while self.video_send_mids.len() < self.config.video_send {
            let simulcast = self.config.simulcast.then(|| {
                let mut s = Simulcast::new();
                for rid in ["q", "h", "f"] {
                    s.add_send_layer(SimulcastLayer::new(rid));
                }
                s
            });
            let mid = api.add_media(MediaKind::Video, Direction::SendOnly, None, None, simulcast);
            self.video_send_mids.push(mid);
        }
        while self.video_recv_mids.len() < self.config.video_recv {
            let mid = api.add_media(MediaKind::Video, Direction::RecvOnly, None, None, None);
            self.video_recv_mids.push(mid);
        }
        if self.config.screen_audio && self.screen_audio_mid.is_none() {
            self.screen_audio_mid =
                Some(api.add_media(MediaKind::Audio, Direction::SendOnly, None, None, None));
        }
        let (offer, pending) = api.apply().expect("the offer has changes");
        self.pending = Some(pending);
        offer.to_sdp_string()
    }

    pub fn accept_answer(&mut self, answer: &str) -> Result<(), String> {
        let answer = SdpAnswer::from_sdp_string(answer).map_err(|e| e.to_string())?;
        let pending = self.pending.take().ok_or("no pending offer")?;
        self.rtc
            .sdp_api()
            .accept_answer(pending, answer)
            .map_err(|e| e.to_string())?;
        self.pump();
        Ok(())
    }

    /// A datagram from the SFU.
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddr, buf: &[u8]) {
        if let Ok(r) = Receive::new(Protocol::Udp, from, self.addr, buf) {
            let _ = self.rtc.handle_input(Input::Receive(now, r));
        }
        self.pump();
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        let _ = self.rtc.handle_input(Input::Timeout(now));
        self.pump();
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timeout
    }

    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.outbox.pop_front()
    }

    /// Sends one 20 ms Opus packet with `payload` and RFC 6464 `level` (0 loud .. 127 silent).
    pub fn send_audio(&mut self, now: Instant, payload: &[u8], level: u8) {
        self.send_audio_marked(now, payload, level, false);
    }

    /// Like [`Self::send_audio`], with the RTP marker bit (talkspurt start).
    pub fn send_audio_marked(&mut self, now: Instant, payload: &[u8], level: u8, marker: bool) {
        let mid = self.send_mid.expect("a sending peer");
        let mut api = self.rtc.direct_api();
        let Some(tx) = api.stream_tx_by_mid(mid, None) else {
            return;
        };
        let ext = ExtensionValues {
            audio_level: Some(-(level.min(127) as i8)),
            voice_activity: Some(level < 127),
            ..Default::default()
        };
        tx.write_rtp(
            RtpWrite::new(
                111.into(),
                self.next_seq.into(),
                self.next_ts,
                now,
                payload.to_vec(),
            )
            .marker(marker)
            .ext_vals(ext)
            .nackable(true),
        );
        self.next_seq += 1;
        self.next_ts = self.next_ts.wrapping_add(960);
        self.handle_timeout(now);
    }

    /// Sends one 20 ms Opus packet of the screen share's sound.
    pub fn send_screen_audio(&mut self, now: Instant, payload: &[u8]) {
        let mid = self.screen_audio_mid.expect("a peer with screen audio");
        let mut api = self.rtc.direct_api();
        let Some(tx) = api.stream_tx_by_mid(mid, None) else {
            return;
        };
        let seq = self.next_stream_seq;
        tx.write_rtp(RtpWrite::new(
            111.into(),
            seq.into(),
            (seq as u32).wrapping_mul(960),
            now,
            payload.to_vec(),
        ));
        self.next_stream_seq += 1;
        self.handle_timeout(now);
    }

    /// Sends one RTP packet with an explicit payload type (e.g. RED) and no level.
    pub fn send_raw(&mut self, now: Instant, pt: str0m::media::Pt, payload: &[u8]) {
        let mid = self.send_mid.expect("a sending peer");
        let mut api = self.rtc.direct_api();
        let Some(tx) = api.stream_tx_by_mid(mid, None) else {
            return;
        };
        tx.write_rtp(RtpWrite::new(
            pt,
            self.next_seq.into(),
            self.next_ts,
            now,
            payload.to_vec(),
        ));
        self.next_seq += 1;
        self.next_ts = self.next_ts.wrapping_add(960);
        self.handle_timeout(now);
    }

    /// Sends one video frame (one VP8 packet) on video track `track` (0 =
    /// camera, 1 = screen) and simulcast encoding `rid` (None without
    /// simulcast). The payload is [`vp8_frame`] with `tag` = the track index
    /// times 16 plus the rid's index in q, h, f.
    pub fn send_video(&mut self, now: Instant, track: usize, rid: Option<&str>, keyframe: bool) {
        self.send_video_frame(now, track, rid, keyframe, 1);
    }

    /// Like [`TestPeer::send_video`], but the frame is `packets` RTP packets: with more than
    /// one, each ~1,100 bytes (the first a [`vp8_frame`] padded, the others continuation
    /// packets without the VP8 start bit), the marker on the last — a layer with a real
    /// bitrate for bandwidth estimation.
    pub fn send_video_frame(
        &mut self,
        now: Instant,
        track: usize,
        rid: Option<&str>,
        keyframe: bool,
        packets: usize,
    ) {
        let mid = self.video_send_mids[track];
        let key = (track, rid.map(str::to_string));
        let idx = match self.video_state.iter().position(|(k, _)| *k == key) {
            Some(i) => i,
            None => {
                let n = self.video_state.len() as u64;
                self.video_state.push((
                    key,
                    VideoSendState {
                        seq: 5_000 + 3_000 * n,
                        ts: 100_000 * (n as u32 + 1),
                        pid: 1_000 * (n as u16 + 1),
                        tl0: 10 * (n as u8 + 1),
                        frames: 0,
                    },
                ));
                self.video_state.len() - 1
            }
        };
        let pt = self
            .rtc
            .codec_config()
            .params()
            .iter()
            .find(|p| p.spec().codec == Codec::Vp8)
            .map(|p| p.pt())
            .expect("VP8 negotiated");
        let st = &mut self.video_state[idx].1;
        let rid_index = match rid {
            Some("q") => 0,
            Some("h") => 1,
            Some("f") => 2,
            _ => 3,
        };
        let payload = vp8_frame(
            st.pid,
            st.tl0,
            keyframe,
            test_layer_size(rid),
            (track as u8) * 16 + rid_index,
            st.frames,
        );
        let packets = packets.max(1);
        let (seq, ts) = (st.seq, st.ts);
        let descriptor = [0x80, 0xe0, payload[2], payload[3], payload[4], 0x00];
        st.seq += packets as u64;
        st.ts = st.ts.wrapping_add(3_000);
        st.pid = (st.pid + 1) & 0x7fff;
        st.tl0 = st.tl0.wrapping_add(1);
        st.frames += 1;
        let mut api = self.rtc.direct_api();
        let Some(tx) = api.stream_tx_by_mid(mid, rid.map(Rid::from)) else {
            self.events
                .push(format!("no send stream for {mid} {rid:?}"));
            return;
        };
        const SIZE: usize = 1_100;
        for i in 0..packets {
            let mut body = if i == 0 {
                payload.clone()
            } else {
                descriptor.to_vec()
            };
            if packets > 1 {
                body.resize(SIZE, 0x55);
            }
            tx.write_rtp(
                RtpWrite::new(pt, (seq + i as u64).into(), ts, now, body)
                    .marker(i + 1 == packets)
                    .nackable(true),
            );
        }
        self.handle_timeout(now);
    }

    /// Sends a PLI for what arrives on the recvonly video transceiver `mid`.
    pub fn request_keyframe(&mut self, now: Instant, mid: &str) {
        let mut api = self.rtc.direct_api();
        if let Some(rx) = api.stream_rx_by_mid(Mid::from(mid), None) {
            rx.request_keyframe(KeyframeRequestKind::Pli);
        }
        self.handle_timeout(now);
    }

    /// Packets received on the recvonly transceiver `mid`.
    pub fn received_on(&self, mid: &str) -> Vec<&Received> {
        self.received
            .iter()
            .filter(|r| r.mid.as_deref() == Some(mid))
            .collect()
    }

    fn pump(&mut self) {
        loop {
            match self.rtc.poll_output() {
                Ok(Output::Timeout(t)) => {
                    self.timeout = Some(t);
                    break;
                }
                Ok(Output::Transmit(t)) => self.outbox.push_back(t),
                Ok(Output::Event(e)) => match e {
                    Event::Connected => self.connected = true,
                    Event::KeyframeRequest(r) => self
                        .keyframe_requests
                        .push((r.mid.to_string(), r.rid.map(|r| r.to_string()))),
                    Event::RtpPacket(p) => {
                        let mid = self
                            .rtc
                            .direct_api()
                            .stream_rx(&p.header.ssrc)
                            .map(|s| s.mid().to_string());
                        self.received.push(Received {
                            mid,
                            ssrc: *p.header.ssrc,
                            seq: *p.seq_no,
                            timestamp: p.header.timestamp,
                            pt: *p.header.payload_type,
                            payload: p.payload.clone(),
                            audio_level: p.header.ext_vals.audio_level,
                            marker: p.header.marker,
                            at: p.timestamp,
                        });
                    }
                    other => self.events.push(format!("{other:?}")),
                },
                Err(e) => {
                    self.events.push(format!("error: {e}"));
                    self.timeout = None;
                    break;
                }
            }
        }
    }
}

/// Decides whether a datagram is delivered: `(peer index, to_sfu, bytes) -> deliver`.
pub type Filter = Box<dyn FnMut(usize, bool, &[u8]) -> bool>;

/// A link of `bps` with a drop-tail queue of at most `queue` (a home connection's downlink).
#[derive(Debug, Clone)]
pub struct Bottleneck {
    pub bps: u64,
    pub queue: Duration,
    free_at: Option<Instant>,
}

impl Bottleneck {
    pub fn new(bps: u64, queue: Duration) -> Self {
        Bottleneck {
            bps,
            queue,
            free_at: None,
        }
    }

    /// When a datagram of `len` bytes sent at `now` has left the link, or None when the
    /// queue is full.
    fn enqueue(&mut self, now: Instant, len: usize) -> Option<Instant> {
        let start = self.free_at.map_or(now, |t| t.max(now));
        if start.saturating_duration_since(now) > self.queue {
            return None;
        }
        let done = start + Duration::from_nanos(len as u64 * 8 * 1_000_000_000 / self.bps.max(1));
        self.free_at = Some(done);
        Some(done)
    }
}

/// The user tag [`Net::join`] gives a participant: its id + 1000.
pub fn tag_of(participant: ParticipantId) -> UserTag {
    UserTag::new(participant.get() + 1000)
}

/// An in-memory network: a [`SfuCore`] and client peers on a virtual clock.
pub struct Net {
    pub sfu: SfuCore,
    pub peers: Vec<TestPeer>,
    /// Participant id of each peer (same index as `peers`).
    pub ids: Vec<ParticipantId>,
    pub now: Instant,
    /// Every event the SFU emitted, in order.
    pub events: Vec<SfuEvent>,
    pub filter: Option<Filter>,
    /// One-way delay of every datagram (both directions); zero delivers at once.
    pub delay: Duration,
    /// Bottlenecks on the way from the SFU to a peer (by peer index).
    pub downlinks: HashMap<usize, Bottleneck>,
    /// Clock step of [`Net::advance`] (5 ms; bandwidth estimation wants finer arrival times).
    pub step: Duration,
    /// Datagrams on their way: (arrival, peer index, to the SFU, bytes).
    in_flight: VecDeque<(Instant, usize, bool, Vec<u8>)>,
    /// Relay datagrams the SFU sent to other media nodes, not yet taken
    /// (by [`Cluster`] or the test): (destination, bytes).
    pub relay_out: Vec<(SocketAddr, Vec<u8>)>,
}

impl Net {
    pub fn new(config: &crate::SfuConfig) -> Self {
        let now = Instant::now();
        let addr = SocketAddr::new(config.public_ip, 3478);
        Net {
            sfu: SfuCore::new(config, addr, now).expect("core"),
            peers: Vec::new(),
            ids: Vec::new(),
            now,
            events: Vec::new(),
            filter: None,
            delay: Duration::ZERO,
            step: Duration::from_millis(5),
            downlinks: HashMap::new(),
            in_flight: VecDeque::new(),
            relay_out: Vec::new(),
        }
    }

    /// Creates a client, offers with `slots` recvonly transceivers and joins.
    /// Returns its index.
    pub fn join(
        &mut self,
        room: RoomId,
        participant: ParticipantId,
        slots: usize,
        config: TestPeerConfig,
    ) -> Result<usize, SfuError> {
        let idx = self.peers.len();
        let addr: SocketAddr = format!("10.0.{}.{}:{}", idx / 200, idx % 200 + 1, 40_000 + idx)
            .parse()
            .expect("addr");
        let mut peer = TestPeer::new(addr, self.now, config);
        let offer = peer.offer(slots);
        let answer = self.sfu.join(
            self.now,
            JoinRequest {
                room,
                participant,
                user_id: tag_of(participant),
                offer_sdp: offer,
            },
        )?;
        peer.accept_answer(&answer).map_err(SfuError::InvalidSdp)?;
        self.peers.push(peer);
        self.ids.push(participant);
        self.collect_events();
        Ok(idx)
    }

    /// The peer offers again with `slots` recvonly transceivers in total.
    pub fn renegotiate(&mut self, idx: usize, slots: usize) -> Result<(), SfuError> {
        let offer = self.peers[idx].offer(slots);
        let answer = self.sfu.renegotiate(self.now, self.ids[idx], &offer)?;
        self.peers[idx]
            .accept_answer(&answer)
            .map_err(SfuError::InvalidSdp)?;
        self.collect_events();
        Ok(())
    }

    fn collect_events(&mut self) {
        while let Some(e) = self.sfu.poll_event() {
            self.events.push(e);
        }
    }

    /// Hands a datagram between peer `i` and the SFU to the receiver, now or
    /// (with a [`Self::delay`]) when it arrives.
    fn deliver(&mut self, i: usize, to_sfu: bool, bytes: &[u8]) {
        let link = (!to_sfu).then(|| self.downlinks.get_mut(&i)).flatten();
        if let Some(link) = link {
            let Some(leaves) = link.enqueue(self.now, bytes.len()) else {
                return; // the bottleneck's queue is full: dropped
            };
            self.in_flight
                .push_back((leaves + self.delay, i, to_sfu, bytes.to_vec()));
        } else if !self.delay.is_zero() {
            let at = self.now + self.delay;
            self.in_flight.push_back((at, i, to_sfu, bytes.to_vec()));
        } else if to_sfu {
            self.sfu
                .handle_datagram(self.now, self.peers[i].addr, bytes);
        } else {
            let sfu_addr = self.sfu.local_addr();
            self.peers[i].handle_datagram(self.now, sfu_addr, bytes);
        }
    }

    /// Moves datagrams until nobody has anything to send (datagrams still
    /// delayed stay on their way).
    pub fn exchange(&mut self) {
        let sfu_addr = self.sfu.local_addr();
        for _ in 0..10_000 {
            let mut moved = false;
            // Due datagrams in the order they were sent (a bottleneck delays some, so the
            // queue is not sorted by arrival).
            let now = self.now;
            type InFlight = VecDeque<(Instant, usize, bool, Vec<u8>)>;
            let due: InFlight = if self.in_flight.iter().any(|(at, ..)| *at <= now) {
                let (due, later): (InFlight, InFlight) = std::mem::take(&mut self.in_flight)
                    .into_iter()
                    .partition(|(at, ..)| *at <= now);
                self.in_flight = later;
                due
            } else {
                VecDeque::new()
            };
            for (_, i, to_sfu, bytes) in due {
                moved = true;
                if to_sfu {
                    self.sfu
                        .handle_datagram(self.now, self.peers[i].addr, &bytes);
                } else {
                    self.peers[i].handle_datagram(self.now, sfu_addr, &bytes);
                }
            }
            for i in 0..self.peers.len() {
                while let Some(t) = self.peers[i].poll_transmit() {
                    moved = true;
                    if self.filter.as_mut().is_none_or(|f| f(i, true, &t.contents)) {
                        self.deliver(i, true, &t.contents);
                    }
                }
            }
            while let Some(t) = self.sfu.poll_transmit() {
                moved = true;
                let Some(i) = self.peers.iter().position(|p| p.addr == t.destination) else {
                    continue;
                };
                if self
                    .filter
                    .as_mut()
                    .is_none_or(|f| f(i, false, &t.contents))
                {
                    self.deliver(i, false, &t.contents);
                }
            }
            let mut fast = Vec::new();
            self.sfu.drain_fast(|dest, bytes| {
                fast.push((dest, bytes.to_vec()));
                true
            });
            for (dest, bytes) in fast {
                moved = true;
                let Some(i) = self.peers.iter().position(|p| p.addr == dest) else {
                    continue;
                };
                if self.filter.as_mut().is_none_or(|f| f(i, false, &bytes)) {
                    self.deliver(i, false, &bytes);
                }
            }
            self.sfu.drain_relay(|dest, bytes| {
                self.relay_out.push((dest, bytes.to_vec()));
                true
            });
            self.collect_events();
            if !moved {
                return;
            }
        }
        panic!("network did not settle");
    }

    /// Advances the virtual clock by `d` in [`Net::step`]s, running timers and
    /// exchanging datagrams at every step.
    pub fn advance(&mut self, d: Duration) {
        let end = self.now + d;
        while self.now < end {
            self.now = (self.now + self.step).min(end);
            self.tick();
        }
    }

    fn tick(&mut self) {
        let now = self.now;
        for p in &mut self.peers {
            if p.poll_timeout().is_some_and(|t| t <= now) {
                p.handle_timeout(now);
            }
        }
        self.sfu.handle_timeout(now);
        self.exchange();
    }

    /// Peer `idx` sends one video frame (see [`TestPeer::send_video`]), which is then delivered.
    pub fn send_video(&mut self, idx: usize, track: usize, rid: Option<&str>, keyframe: bool) {
        self.peers[idx].send_video(self.now, track, rid, keyframe);
        self.exchange();
    }

    /// Peer `idx` sends one video frame of `packets` packets (see
    /// [`TestPeer::send_video_frame`]), which is then delivered.
    pub fn send_video_frame(
        &mut self,
        idx: usize,
        track: usize,
        rid: Option<&str>,
        keyframe: bool,
        packets: usize,
    ) {
        self.peers[idx].send_video_frame(self.now, track, rid, keyframe, packets);
        self.exchange();
    }

    /// Peer `idx` sends one audio packet, which is then delivered.
    pub fn send_audio(&mut self, idx: usize, payload: &[u8], level: u8) {
        self.peers[idx].send_audio(self.now, payload, level);
        self.exchange();
    }

    /// Sets the clock to `now` (not earlier than it is), runs due timers and
    /// exchanges datagrams.
    pub fn step_to(&mut self, now: Instant) {
        if now > self.now {
            self.now = now;
        }
        self.tick();
    }

    /// Runs until every peer is connected (panics after 5 virtual seconds).
    pub fn connect_all(&mut self) {
        for _ in 0..1000 {
            let live = |i: usize| self.sfu.has_participant(self.ids[i]);
            if (0..self.peers.len())
                .filter(|&i| live(i))
                .all(|i| self.peers[i].connected && self.sfu.is_connected(self.ids[i]))
            {
                return;
            }
            self.advance(Duration::from_millis(5));
        }
        panic!("peers did not connect");
    }
}

/// A relay datagram moved by a [`Cluster`]: (from node, to node, bytes).
pub type RelayFilter = Box<dyn FnMut(usize, usize, &[u8]) -> bool>;

/// Several media nodes, each a [`Net`] with relaying on, on one virtual
/// clock: relay datagrams are moved between them by destination address.
pub struct Cluster {
    pub nodes: Vec<Net>,
    /// Decides whether a relay datagram is delivered.
    pub relay_filter: Option<RelayFilter>,
    /// Every relay datagram moved: (from node, to node, length).
    pub relayed: Vec<(usize, usize, usize)>,
}

impl Cluster {
    /// `n` nodes with `config`; node `i`'s relay endpoint is
    /// `10.255.0.(i+1):4000` with key `[i+1; 16]`.
    pub fn new(n: usize, config: &SfuConfig) -> Self {
        let mut nodes: Vec<Net> = (0..n).map(|_| Net::new(config)).collect();
        let now = nodes
            .iter()
            .map(|n| n.now)
            .max()
            .expect("one node at least");
        for (i, node) in nodes.iter_mut().enumerate() {
            node.now = now;
            node.sfu.enable_relay(Self::endpoint_of(i));
        }
        Cluster {
            nodes,
            relay_filter: None,
            relayed: Vec::new(),
        }
    }

    /// The relay endpoint of node `i`.
    pub fn endpoint_of(i: usize) -> RelayEndpoint {
        RelayEndpoint {
            addr: SocketAddr::from(([10, 255, 0, i as u8 + 1], 4000)),
            key: [i as u8 + 1; 16],
        }
    }

    /// `room` lives on `nodes`: each of them gets the others as relay peers.
    pub fn span(&mut self, room: RoomId, nodes: &[usize]) {
        for &i in nodes {
            let peers = nodes
                .iter()
                .filter(|&&j| j != i)
                .map(|&j| Self::endpoint_of(j))
                .collect();
            self.nodes[i].sfu.set_relay_peers(room, peers);
            self.nodes[i].collect_events();
        }
    }

    /// Moves datagrams until no node has anything to send.
    pub fn exchange(&mut self) {
        for _ in 0..1000 {
            let mut moved = false;
            for i in 0..self.nodes.len() {
                self.nodes[i].exchange();
                let out = std::mem::take(&mut self.nodes[i].relay_out);
                for (dest, bytes) in out {
                    moved = true;
                    let Some(j) =
                        (0..self.nodes.len()).find(|&j| Self::endpoint_of(j).addr == dest)
                    else {
                        continue;
                    };
                    self.relayed.push((i, j, bytes.len()));
                    if self.relay_filter.as_mut().is_none_or(|f| f(i, j, &bytes)) {
                        let from = Self::endpoint_of(i).addr;
                        let now = self.nodes[j].now;
                        self.nodes[j].sfu.handle_relay_datagram(now, from, &bytes);
                    }
                }
            }
            if !moved {
                return;
            }
        }
        panic!("relay did not settle");
    }

    /// Advances every node's clock by `d` in 5 ms steps.
    pub fn advance(&mut self, d: Duration) {
        let end = self.nodes[0].now + d;
        while self.nodes[0].now < end {
            let t = (self.nodes[0].now + Duration::from_millis(5)).min(end);
            for n in &mut self.nodes {
                n.step_to(t);
            }
            self.exchange();
        }
    }

    /// Peer `idx` of node `node` sends one audio packet, which is then delivered.
    pub fn send_audio(&mut self, node: usize, idx: usize, payload: &[u8], level: u8) {
        let now = self.nodes[node].now;
        self.nodes[node].peers[idx].send_audio(now, payload, level);
        self.exchange();
    }

    /// Runs until every peer of every node is connected.
    pub fn connect_all(&mut self) {
        for _ in 0..1000 {
            let all = self.nodes.iter().all(|n| {
                (0..n.peers.len())
                    .filter(|&i| n.sfu.has_participant(n.ids[i]))
                    .all(|i| n.peers[i].connected && n.sfu.is_connected(n.ids[i]))
            });
            if all {
                return;
            }
            self.advance(Duration::from_millis(5));
        }
        panic!("peers did not connect");
    }
}
