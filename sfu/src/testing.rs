//! Test helpers (feature `testing`): a client-side str0m peer that behaves
//! like Confab's web client (it always offers: one send audio transceiver plus
//! N recvonly listening slots), and an in-memory network that moves datagrams
//! between such peers and a [`SfuCore`] on a virtual clock.
//!
//! The load tester can use [`TestPeer`] over real sockets: feed it with
//! [`TestPeer::handle_datagram`] / [`TestPeer::handle_timeout`] and send what
//! [`TestPeer::poll_transmit`] returns.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use str0m::change::{SdpAnswer, SdpPendingOffer};
use str0m::format::{Codec, FormatParams};
use str0m::media::{Direction, Frequency, MediaKind, Mid};
use str0m::net::{Protocol, Receive, Transmit};
use str0m::rtp::{Extension, ExtensionMap, ExtensionValues, RtpWrite};
use str0m::{Candidate, Event, Input, Output, Rtc, RtcConfig};

use crate::{JoinRequest, SfuCore, SfuError, SfuEvent};

/// How a [`TestPeer`] negotiates.
#[derive(Debug, Clone, Copy)]
pub struct TestPeerConfig {
    /// Offer a send audio transceiver (false = listen-only).
    pub send: bool,
    /// Offer Opus with an RTX payload type (so it NACKs lost audio).
    pub rtx: bool,
    /// Offer RED (`audio/red`) on Opus. Ignored when `rtx` is set.
    pub red: bool,
}

impl Default for TestPeerConfig {
    fn default() -> Self {
        TestPeerConfig {
            send: true,
            rtx: false,
            red: false,
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
            .ext_vals(ext)
            .nackable(true),
        );
        self.next_seq += 1;
        self.next_ts = self.next_ts.wrapping_add(960);
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

/// An in-memory network: a [`SfuCore`] and client peers on a virtual clock.
pub struct Net {
    pub sfu: SfuCore,
    pub peers: Vec<TestPeer>,
    /// Participant id of each peer (same index as `peers`).
    pub ids: Vec<u64>,
    pub now: Instant,
    /// Every event the SFU emitted, in order.
    pub events: Vec<SfuEvent>,
    pub filter: Option<Filter>,
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
        }
    }

    /// Creates a client, offers with `slots` recvonly transceivers and joins.
    /// Returns its index.
    pub fn join(
        &mut self,
        room: u64,
        participant: u64,
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
                user_id: participant + 1000,
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

    /// Moves datagrams until nobody has anything to send.
    pub fn exchange(&mut self) {
        let sfu_addr = self.sfu.local_addr();
        for _ in 0..10_000 {
            let mut moved = false;
            for i in 0..self.peers.len() {
                while let Some(t) = self.peers[i].poll_transmit() {
                    moved = true;
                    let deliver = self.filter.as_mut().is_none_or(|f| f(i, true, &t.contents));
                    if deliver {
                        self.sfu
                            .handle_datagram(self.now, self.peers[i].addr, &t.contents);
                    }
                }
            }
            while let Some(t) = self.sfu.poll_transmit() {
                moved = true;
                let Some(i) = self.peers.iter().position(|p| p.addr == t.destination) else {
                    continue;
                };
                let deliver = self
                    .filter
                    .as_mut()
                    .is_none_or(|f| f(i, false, &t.contents));
                if deliver {
                    self.peers[i].handle_datagram(self.now, sfu_addr, &t.contents);
                }
            }
            self.collect_events();
            if !moved {
                return;
            }
        }
        panic!("network did not settle");
    }

    /// Advances the virtual clock by `d` in 5 ms steps, running timers and
    /// exchanging datagrams at every step.
    pub fn advance(&mut self, d: Duration) {
        let end = self.now + d;
        while self.now < end {
            self.now = (self.now + Duration::from_millis(5)).min(end);
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

    /// Peer `idx` sends one audio packet, which is then delivered.
    pub fn send_audio(&mut self, idx: usize, payload: &[u8], level: u8) {
        self.peers[idx].send_audio(self.now, payload, level);
        self.exchange();
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
