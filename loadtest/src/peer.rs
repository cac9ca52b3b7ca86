//! One simulated voice participant: its own gateway connection (IDENTIFY,
//! op 4, op 12/13 signalling, renegotiation) and a str0m client peer on its
//! own UDP socket, all driven by one task.
//!
//! **Cost on the packet path.** A wake-up drains every readable datagram
//! (up to a batch), feeding each to str0m and polling it; a received RTP
//! packet costs a payload hash, one map lookup, one atomic load, a histogram
//! record and a bitset insert — no allocation of ours, no locks, no logging.
//! (str0m itself allocates the payload `Arc` of each received packet.)

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::json;
use str0m::change::{SdpAnswer, SdpPendingOffer};
use str0m::media::{Direction, MediaKind, Mid};
use str0m::net::{Protocol, Receive};
use str0m::rtp::{Extension, ExtensionMap, ExtensionValues, RtpWrite};
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc, RtcConfig};
use tokio::net::UdpSocket;
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message;

use crate::audio::{Catalog, LoopResolver, FRAME_SAMPLES, SAMPLE_RATE};
use crate::gateway::{self, classify, Frame};
use crate::stats::{Clock, Hist, Jitter, SeenSet};
use crate::timeseries::Series;
use crate::turns::Turns;

/// Datagrams handled per wake-up before other work gets a turn.
const RECV_BATCH: usize = 64;

/// State every peer shares (read-mostly).
pub struct VoiceShared {
    pub clock: Clock,
    pub catalog: Arc<Catalog>,
    /// Measured window, µs on `clock`; `u64::MAX` until set.
    pub win_start: AtomicU64,
    pub win_end: AtomicU64,
    /// Per speaker: packets sent with a send time inside the window.
    pub sent_in_window: Vec<AtomicU64>,
    pub connected: AtomicUsize,
    pub failed: AtomicUsize,
    pub join_timeout: Duration,
    /// Connected peers per room (a speaker's packet is expected by all
    /// the others).
    pub room_connected: Vec<AtomicU64>,
    /// Per-second figures over the window (columns [`COL_EXPECTED`], ...).
    pub series: Series,
    /// Decode every Nth received in-window packet per peer (0 = never).
    pub integrity_every: u64,
    /// Large-channel mode: speakers talk in turn (see `turns.rs`).
    pub turns: Option<Turns>,
    /// Local address the peers' UDP sockets bind to: the source address of
    /// the route to the server (127.0.0.1 for a local server, a veth address
    /// for one in a network namespace).
    pub bind_ip: std::net::IpAddr,
    /// Negotiate RTX for Opus, so str0m NACKs lost audio (it sends NACKs
    /// only for payload types with an RTX PT) and unwraps the resends.
    pub audio_rtx: bool,
}

/// Series columns: packets expected (by send second), first arrivals (by
/// send second), RTP packets received (by arrival second).
pub const SERIES_COLS: [&str; 3] = ["expected", "received", "rx_packets"];
pub const COL_EXPECTED: usize = 0;
pub const COL_RECEIVED: usize = 1;
pub const COL_RX: usize = 2;

impl VoiceShared {
    #[inline]
    fn in_window(&self, us: u64) -> bool {
        us >= self.win_start.load(Ordering::Relaxed) && us < self.win_end.load(Ordering::Relaxed)
    }

    /// Whether every other peer of the room must receive this packet.
    #[inline]
    fn expected(&self, speaker: usize, send_us: u64) -> bool {
        self.in_window(send_us) && self.turns.is_none_or(|t| t.counts(speaker, send_us))
    }
}

#[derive(Clone, Debug)]
pub struct PeerConfig {
    pub room: usize,
    /// Global speaker index when this peer speaks.
    pub speaker: Option<usize>,
    /// Recvonly transceivers in the first offer.
    pub slots: usize,
    pub token: String,
    pub server_id: String,
    pub channel_id: String,
    /// The gateway this peer signals through: with `--nodes`, peers are spread round-robin
    /// over a cluster's api nodes (each reaches whichever media node the answer names).
    pub gateway_url: String,
}

/// What one peer measured.
#[derive(Default)]
pub struct PeerReport {
    pub room: usize,
    pub speaker: Option<usize>,
    pub connected: bool,
    pub error: Option<String>,
    /// op 4 sent → DTLS/SRTP connected.
    pub join_us: Option<u64>,
    /// op 4 sent → first audio packet received.
    pub first_audio_us: Option<u64>,
    /// Send → kernel receive timestamp latency of in-window packets.
    pub latency: Hist,
    /// Send → the tester's processing of the packet (includes its own queueing).
    pub latency_app: Hist,
    /// Per speaker (global index): the counters received in the window.
    pub seen: Vec<(u32, SeenSet)>,
    /// Per received stream (by SSRC): RFC 3550 jitter over the window.
    pub jitter: Vec<(u32, Jitter)>,
    /// Every RTP packet received, and those that arrived inside the window.
    pub rx_total: u64,
    pub rx_in_window: u64,
    pub unknown_payloads: u64,
    pub offers: u32,
    pub voice_errors: Vec<u64>,
    pub slots_events: u32,
    pub sent: u64,
    /// NACKs this peer's str0m sent, per receive mid (the last stats event).
    pub nacks: Vec<(Mid, u64)>,
    /// RTP sequence gaps and packets that filled one later (retransmitted
    /// or reordered), per received SSRC, in the window.
    pub seq: Vec<(u32, SeqTrack)>,
    /// Per received SSRC: which loop of the speaker's frames a packet is from.
    pub loops: Vec<(u32, LoopResolver)>,
    pub integrity: Integrity,
    /// Talking in turn: turn start → first packet of that turn's speaker.
    pub switch: Hist,
    pub last_switch_turn: Option<u64>,
    /// Most distinct speakers received within one second of the window.
    pub max_distinct_speakers: usize,
    /// The second being counted and the speakers seen in it.
    pub distinct: (u64, Vec<u32>),
    /// VOICE_RECONNECTs received (the media node died or drains, in a cluster).
    pub reconnects: u32,
    /// VOICE_RECONNECT → first audio packet on the new connection, per reconnect that got one.
    pub reconnect_us: Vec<u64>,
    /// Around each reconnect: the last audio packet on the old connection → the first on the
    /// new one (the silence a user hears when a media node dies: it includes the time the
    /// cluster takes to notice).
    pub reconnect_gap_us: Vec<u64>,
}

/// Sequence-gap accounting for one received stream: a 128-packet window
/// below the highest sequence number seen; O(1), no allocation.
#[derive(Clone, Copy, Debug, Default)]
pub struct SeqTrack {
    highest: Option<u64>,
    /// Bit i: packet `highest - i` arrived.
    recent: u128,
    /// Packets skipped when a sequence number jumped ahead.
    pub gaps: u64,
    /// Skipped packets that arrived later.
    pub recovered: u64,
}

impl SeqTrack {
    #[inline]
    pub fn update(&mut self, seq: u64) {
        let Some(h) = self.highest else {
            self.highest = Some(seq);
            self.recent = 1;
            return;
        };
        if seq > h {
            let d = seq - h;
            self.gaps += d - 1;
            self.recent = if d >= 128 { 1 } else { (self.recent << d) | 1 };
            self.highest = Some(seq);
        } else {
            let i = h - seq;
            if i < 128 && self.recent & (1u128 << i) == 0 {
                self.recent |= 1u128 << i;
                self.recovered += 1;
            }
        }
    }
}

/// Audio integrity: sampled decodes of received frames.
#[derive(Default)]
pub struct Integrity {
    decoder: Option<opus::Decoder>,
    pub checked: u64,
    pub failed: u64,
    pub min_correlation: Option<f64>,
    pcm: Vec<i16>,
}

impl PeerReport {
    /// Talking in turn: slot switch latency and distinct speakers per second.
    fn on_turn_packet(
        &mut self,
        t: &Turns,
        speaker: u32,
        send_us: u64,
        now_us: u64,
        win_start: u64,
    ) {
        let sp = speaker as usize;
        if t.is_talking(sp, send_us) && self.speaker != Some(sp) {
            let turn = t.turn_of(send_us);
            // Only turns that start inside the window, each once.
            if self.last_switch_turn != Some(turn) && t.turn_start(turn) >= win_start {
                self.last_switch_turn = Some(turn);
                self.switch
                    .record_us(now_us.saturating_sub(t.turn_start(turn)));
            }
        }
        let sec = now_us / 1_000_000;
        if self.distinct.0 != sec {
            self.distinct.0 = sec;
            self.distinct.1.clear();
        }
        if !self.distinct.1.contains(&speaker) {
            self.distinct.1.push(speaker);
            self.max_distinct_speakers = self.max_distinct_speakers.max(self.distinct.1.len());
        }
    }

    fn seen_for(&mut self, speaker: u32) -> &mut SeenSet {
        let i = match self.seen.iter().position(|(s, _)| *s == speaker) {
            Some(i) => i,
            None => {
                self.seen.push((speaker, SeenSet::default()));
                self.seen.len() - 1
            }
        };
        &mut self.seen[i].1
    }

    fn jitter_for(&mut self, ssrc: u32) -> &mut Jitter {
        let i = match self.jitter.iter().position(|(s, _)| *s == ssrc) {
            Some(i) => i,
            None => {
                self.jitter.push((ssrc, Jitter::default()));
                self.jitter.len() - 1
            }
        };
        &mut self.jitter[i].1
    }

    fn loops_for(&mut self, ssrc: u32) -> &mut LoopResolver {
        let i = match self.loops.iter().position(|(s, _)| *s == ssrc) {
            Some(i) => i,
            None => {
                self.loops.push((ssrc, LoopResolver::default()));
                self.loops.len() - 1
            }
        };
        &mut self.loops[i].1
    }

    fn seq_for(&mut self, ssrc: u32) -> &mut SeqTrack {
        let i = match self.seq.iter().position(|(s, _)| *s == ssrc) {
            Some(i) => i,
            None => {
                self.seq.push((ssrc, SeqTrack::default()));
                self.seq.len() - 1
            }
        };
        &mut self.seq[i].1
    }

    /// Decodes a received payload of (speaker, counter) and compares it with
    /// the reference decode of the same frame.
    fn check_integrity(&mut self, catalog: &Catalog, speaker: usize, counter: u64, payload: &[u8]) {
        let ig = &mut self.integrity;
        if ig.decoder.is_none() {
            match opus::Decoder::new(SAMPLE_RATE, opus::Channels::Mono) {
                Ok(d) => ig.decoder = Some(d),
                Err(_) => return,
            }
            ig.pcm = vec![0i16; FRAME_SAMPLES * 6];
        }
        let Some(dec) = ig.decoder.as_mut() else {
            return;
        };
        let Some(corr) = catalog.check_decode(dec, &mut ig.pcm, speaker, counter, payload) else {
            return;
        };
        ig.checked += 1;
        if !corr.ok {
            ig.failed += 1;
        }
        if let Some(c) = corr.correlation {
            ig.min_correlation = Some(ig.min_correlation.map_or(c, |m: f64| m.min(c)));
        }
    }
}

pub(crate) struct Media {
    pub(crate) rtc: Rtc,
    pub(crate) sock: UdpSocket,
    pub(crate) local: SocketAddr,
    pub(crate) send_mid: Option<Mid>,
    pub(crate) recv_slots: usize,
    pub(crate) pending: Option<SdpPendingOffer>,
    pub(crate) next_timeout: Instant,
    pub(crate) connected: bool,
    seq: u64,
    ts: u32,
    counter: u64,
    /// Kernel arrival time (µs on the shared clock) of the datagram being handled.
    rx_us: Option<u64>,
    /// Whether the kernel timestamps received datagrams on `sock`.
    kernel_ts: bool,
    /// When the server asked this peer to reconnect (VOICE_RECONNECT), until its first audio
    /// packet on the new connection.
    reconnect_from: Option<Instant>,
    /// The last audio packet received (on this connection, or on the one it replaced while
    /// none arrived here yet).
    last_audio: Option<Instant>,
    /// `last_audio` of the connection this one replaced, until this one's first packet.
    gap_from: Option<Instant>,
}

pub(crate) fn build_rtc(local: SocketAddr, now: Instant, audio_rtx: bool) -> anyhow::Result<Rtc> {
    let mut exts = ExtensionMap::empty();
    exts.set(1, Extension::AudioLevel);
    exts.set(4, Extension::RtpMid);
    let mut cfg = RtcConfig::new()
        .set_rtp_mode(true)
        .clear_codecs()
        .set_extension_map(exts)
        .set_stats_interval(Some(Duration::from_secs(1)));
    if audio_rtx {
        // Opus 111 with RTX 112, as the SFU offers it with `audio_rtx`.
        cfg.codec_config().add_config(
            111.into(),
            Some(112.into()),
            str0m::format::Codec::Opus,
            str0m::media::Frequency::FORTY_EIGHT_KHZ,
            Some(2),
            str0m::format::FormatParams {
                min_p_time: Some(10),
                use_inband_fec: Some(true),
                ..Default::default()
            },
        );
    } else {
        cfg = cfg.enable_opus(true, false);
    }
    let mut rtc = cfg.build(now);
    rtc.add_local_candidate(Candidate::host(local, "udp")?);
    Ok(rtc)
}

impl Media {
    /// A str0m client on a fresh UDP socket at `shared.bind_ip`.
    pub(crate) async fn bind(shared: &VoiceShared, now: Instant) -> anyhow::Result<Media> {
        let sock = UdpSocket::bind(SocketAddr::new(shared.bind_ip, 0)).await?;
        let local = sock.local_addr()?;
        let kernel_ts = crate::udp::enable_timestamps(&sock);
        Ok(Media {
            rtc: build_rtc(local, now, shared.audio_rtx)?,
            sock,
            local,
            send_mid: None,
            recv_slots: 0,
            pending: None,
            next_timeout: now + Duration::from_secs(3600),
            connected: false,
            seq: rand::random_range(1..20_000u64),
            ts: rand::random::<u32>(),
            counter: 0,
            rx_us: None,
            kernel_ts,
            reconnect_from: None,
            last_audio: None,
            gap_from: None,
        })
    }

    /// Drains up to [`RECV_BATCH`] readable datagrams into str0m, handling
    /// what each produces. Call when the socket is readable.
    pub(crate) fn recv_batch(
        &mut self,
        shared: &VoiceShared,
        rep: &mut PeerReport,
        t_join: Instant,
        buf: &mut [u8],
    ) -> std::io::Result<()> {
        // realtime − monotonic, per batch (follows NTP slewing).
        let offset_us = if self.kernel_ts {
            (crate::udp::realtime_ns() / 1000) as i64 - shared.clock.now_us() as i64
        } else {
            0
        };
        for _ in 0..RECV_BATCH {
            match crate::udp::try_recv(&self.sock, buf) {
                Ok((n, from, stamp)) => {
                    let now = Instant::now();
                    self.rx_us = stamp.map(|ns| ((ns / 1000) as i64 - offset_us).max(0) as u64);
                    if let Ok(rcv) = Receive::new(Protocol::Udp, from, self.local, &buf[..n]) {
                        let _ = self.rtc.handle_input(Input::Receive(now, rcv));
                    }
                    drive(self, shared, rep, t_join);
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// A new offer with the send transceiver (first time) and at least
    /// `slots` recvonly transceivers.
    pub(crate) fn offer(&mut self, speaker: bool, slots: usize) -> anyhow::Result<String> {
        let mut api = self.rtc.sdp_api();
        if speaker && self.send_mid.is_none() {
            self.send_mid =
                Some(api.add_media(MediaKind::Audio, Direction::SendOnly, None, None, None));
        }
        while self.recv_slots < slots {
            api.add_media(MediaKind::Audio, Direction::RecvOnly, None, None, None);
            self.recv_slots += 1;
        }
        let (offer, pending) = api
            .apply()
            .ok_or_else(|| anyhow::anyhow!("nothing to offer"))?;
        self.pending = Some(pending);
        Ok(offer.to_sdp_string())
    }
}

pub(crate) fn drive(
    media: &mut Media,
    shared: &VoiceShared,
    rep: &mut PeerReport,
    t_join: Instant,
) {
    loop {
        match media.rtc.poll_output() {
            Ok(Output::Timeout(t)) => {
                media.next_timeout = t;
                return;
            }
            Ok(Output::Transmit(t)) => {
                let _ = media.sock.try_send_to(&t.contents, t.destination);
            }
            Ok(Output::Event(e)) => match e {
                Event::RtpPacket(p) => {
                    rep.rx_total += 1;
                    let app_us = shared.clock.us_of(p.timestamp);
                    let now_us = media.rx_us.unwrap_or(app_us);
                    if rep.first_audio_us.is_none() {
                        rep.first_audio_us =
                            Some(p.timestamp.duration_since(t_join).as_micros() as u64);
                    }
                    if let Some(t0) = media.reconnect_from.take() {
                        rep.reconnect_us
                            .push(p.timestamp.saturating_duration_since(t0).as_micros() as u64);
                        if let Some(g) = media.gap_from.take() {
                            rep.reconnect_gap_us
                                .push(p.timestamp.saturating_duration_since(g).as_micros() as u64);
                        }
                    }
                    media.last_audio = Some(p.timestamp);
                    if shared.in_window(now_us) {
                        rep.rx_in_window += 1;
                        shared.series.add(now_us, COL_RX, 1);
                        rep.seq_for(*p.header.ssrc).update(*p.seq_no);
                    }
                    let origin = shared
                        .catalog
                        .lookup(&p.payload)
                        .map(|o| rep.loops_for(*p.header.ssrc).resolve(o, p.header.timestamp));
                    if let (Some(o), Some(t)) = (&origin, shared.turns) {
                        if shared.in_window(o.send_us) {
                            rep.on_turn_packet(
                                &t,
                                o.speaker,
                                o.send_us,
                                now_us,
                                shared.win_start.load(Ordering::Relaxed),
                            );
                        }
                    }
                    match origin {
                        Some(o) if shared.expected(o.speaker as usize, o.send_us) => {
                            let lat = now_us.saturating_sub(o.send_us);
                            rep.latency.record_us(lat);
                            rep.latency_app.record_us(app_us.saturating_sub(o.send_us));
                            if rep.seen_for(o.speaker).insert(o.counter) {
                                shared.series.add(o.send_us, COL_RECEIVED, 1);
                                shared.series.latency(o.send_us, lat);
                                let every = shared.integrity_every;
                                if every > 0 && rep.rx_in_window.is_multiple_of(every) {
                                    rep.check_integrity(
                                        &shared.catalog,
                                        o.speaker as usize,
                                        o.counter,
                                        &p.payload,
                                    );
                                }
                            }
                            let arrival = now_us * (SAMPLE_RATE as u64 / 1000) / 1000;
                            rep.jitter_for(*p.header.ssrc)
                                .update(arrival, p.header.timestamp);
                        }
                        Some(_) => {}
                        None => rep.unknown_payloads += 1,
                    }
                }
                Event::MediaIngressStats(st) => {
                    match rep.nacks.iter_mut().find(|(m, _)| *m == st.mid) {
                        Some(slot) => slot.1 = st.nacks,
                        None => rep.nacks.push((st.mid, st.nacks)),
                    }
                }
                Event::Connected if !media.connected => {
                    media.connected = true;
                    rep.join_us
                        .get_or_insert(t_join.elapsed().as_micros() as u64);
                }
                Event::IceConnectionStateChange(IceConnectionState::Disconnected)
                    if rep.error.is_none() =>
                {
                    rep.error = Some("ICE disconnected".into());
                }
                _ => {}
            },
            Err(e) => {
                if rep.error.is_none() {
                    rep.error = Some(format!("str0m: {e}"));
                }
                media.next_timeout = Instant::now() + Duration::from_secs(3600);
                return;
            }
        }
    }
}

pub(crate) fn send_packet(
    media: &mut Media,
    shared: &VoiceShared,
    sp: usize,
    rep: &mut PeerReport,
) {
    let Some(mid) = media.send_mid else { return };
    let now = Instant::now();
    let counter = media.counter;
    let send_us = shared.clock.us_of(now);
    let frame = shared.catalog.frame(sp, counter);
    let payload = frame.payload.clone();
    let mut level = frame.level;
    if let Some(t) = shared.turns {
        if t.is_talking(sp, send_us) {
            level = level.min(crate::turns::TALK_LEVEL);
        } else {
            // Silence: a browser's DTX sends a packet every 400 ms at the lowest level.
            if !Turns::sends_in_silence(counter) {
                media.ts = media.ts.wrapping_add(960);
                media.counter += 1;
                return;
            }
            level = 127;
        }
    }
    let mut api = media.rtc.direct_api();
    let Some(tx) = api.stream_tx_by_mid(mid, None) else {
        return;
    };
    shared.catalog.mark_sent(sp, counter, send_us);
    if shared.expected(sp, send_us) {
        shared.sent_in_window[sp].fetch_add(1, Ordering::Relaxed);
        let others = shared.room_connected[rep.room]
            .load(Ordering::Relaxed)
            .saturating_sub(1);
        shared.series.add(send_us, COL_EXPECTED, others);
    }
    let ext = ExtensionValues {
        audio_level: Some(-(level.min(127) as i8)),
        voice_activity: Some(level < 50),
        ..Default::default()
    };
    tx.write_rtp(
        RtpWrite::new(111.into(), media.seq.into(), media.ts, now, payload)
            .ext_vals(ext)
            .nackable(shared.audio_rtx),
    );
    media.seq += 1;
    media.ts = media.ts.wrapping_add(960);
    media.counter += 1;
    rep.sent += 1;
    let _ = media.rtc.handle_input(Input::Timeout(now));
}

#[derive(Deserialize)]
struct Answer {
    sdp: String,
}
#[derive(Deserialize)]
struct VoiceErr {
    code: u64,
    #[serde(default)]
    message: String,
}
#[derive(Deserialize)]
struct Renegotiate {
    audio_slots: usize,
}

/// Runs one participant until `stop` flips. Never panics on server input.
pub async fn run(
    cfg: PeerConfig,
    shared: Arc<VoiceShared>,
    mut stop: watch::Receiver<bool>,
) -> PeerReport {
    let mut rep = PeerReport {
        room: cfg.room,
        speaker: cfg.speaker,
        ..Default::default()
    };
    if let Err(e) = run_inner(&cfg, &shared, &mut stop, &mut rep).await {
        if rep.error.is_none() {
            rep.error = Some(format!("{e:#}"));
        }
    }
    if !rep.connected {
        shared.failed.fetch_add(1, Ordering::Relaxed);
    }
    rep
}

async fn run_inner(
    cfg: &PeerConfig,
    shared: &Arc<VoiceShared>,
    stop: &mut watch::Receiver<bool>,
    rep: &mut PeerReport,
) -> anyhow::Result<()> {
    // Bounded: a gateway that accepts but never answers must not keep this peer from stopping.
    let mut sess = tokio::select! {
        r = tokio::time::timeout(shared.join_timeout, gateway::connect(&cfg.gateway_url, &cfg.token)) => {
            r.map_err(|_| anyhow::anyhow!("gateway not ready after {:?}", shared.join_timeout))??
        }
        _ = stop.changed() => return Ok(()),
    };
    let t_join = Instant::now();
    let op4 = json!({"op": 4, "d": {"server_id": cfg.server_id, "channel_id": cfg.channel_id,
        "self_mute": false, "self_deaf": false}});
    sess.ws.send(Message::text(op4.to_string())).await?;
    let mut media = Media::bind(shared, t_join).await?;
    let sdp = media.offer(cfg.speaker.is_some(), cfg.slots)?;
    rep.offers += 1;
    sess.ws
        .send(Message::text(
            json!({"op": 12, "d": {"sdp": sdp}}).to_string(),
        ))
        .await?;
    let mut wanted_slots = cfg.slots;

    let hb_period = sess.heartbeat;
    let mut hb = tokio::time::interval_at(tokio::time::Instant::now() + hb_period / 2, hb_period);
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let timer = tokio::time::sleep_until(media.next_timeout.into());
    tokio::pin!(timer);
    let join_deadline = tokio::time::sleep(shared.join_timeout);
    tokio::pin!(join_deadline);
    let mut buf = vec![0u8; 2048];
    let speaker = cfg.speaker;

    loop {
        if media.connected && !rep.connected {
            rep.connected = true;
            shared.connected.fetch_add(1, Ordering::Relaxed);
            shared.room_connected[cfg.room].fetch_add(1, Ordering::Relaxed);
            // Start the 20 ms clock now, not with the ticks missed while joining.
            tick.reset();
        }
        let deadline: tokio::time::Instant = media.next_timeout.into();
        if timer.deadline() != deadline {
            timer.as_mut().reset(deadline);
        }
        tokio::select! {
            biased;
            _ = stop.changed() => break,
            r = media.sock.readable() => {
                r?;
                media.recv_batch(shared, rep, t_join, &mut buf)?;
            }
            _ = tick.tick(), if speaker.is_some() && media.connected => {
                send_packet(&mut media, shared, speaker.unwrap_or(0), rep);
                drive(&mut media, shared, rep, t_join);
            }
            _ = &mut timer => {
                let _ = media.rtc.handle_input(Input::Timeout(Instant::now()));
                drive(&mut media, shared, rep, t_join);
            }
            msg = sess.ws.next() => {
                let text = match msg {
                    Some(Ok(Message::Text(t))) => t,
                    Some(Ok(Message::Close(c))) => anyhow::bail!("gateway closed: {c:?}"),
                    Some(Ok(_)) => continue,
                    Some(Err(e)) => return Err(e.into()),
                    None => anyhow::bail!("gateway closed"),
                };
                match classify(text.as_str()) {
                    Some(Frame::Dispatch { seq, t, d }) => {
                        sess.last_seq = seq;
                        match t {
                            "VOICE_RENEGOTIATE" => {
                                if let Ok(r) = serde_json::from_str::<Renegotiate>(d) {
                                    wanted_slots = wanted_slots.max(r.audio_slots);
                                }
                            }
                            "VOICE_SLOTS" => rep.slots_events += 1,
                            "VOICE_RECONNECT" => {
                                // The media node died or drains: a fresh connection and offer,
                                // placed on a live node; the voice session stays.
                                rep.reconnects += 1;
                                if rep.error.as_deref() == Some("ICE disconnected") {
                                    rep.error = None;
                                }
                                let slots = media.recv_slots.max(wanted_slots);
                                let last_audio = media.last_audio;
                                media = Media::bind(shared, Instant::now()).await?;
                                // The new connection gets the join timeout of its own (the
                                // first one's ran out long ago).
                                join_deadline
                                    .as_mut()
                                    .reset(tokio::time::Instant::now() + shared.join_timeout);
                                media.reconnect_from = Some(Instant::now());
                                media.gap_from = last_audio;
                                let sdp = media.offer(speaker.is_some(), slots)?;
                                rep.offers += 1;
                                sess.ws
                                    .send(Message::text(json!({"op": 12, "d": {"sdp": sdp}}).to_string()))
                                    .await?;
                            }
                            _ => {}
                        }
                    }
                    Some(Frame::Op { op: 13, d }) => {
                        let a: Answer = serde_json::from_str(d)?;
                        let answer = SdpAnswer::from_sdp_string(&a.sdp)
                            .map_err(|e| anyhow::anyhow!("bad answer: {e}"))?;
                        let pending = media.pending.take()
                            .ok_or_else(|| anyhow::anyhow!("answer without a pending offer"))?;
                        media.rtc.sdp_api().accept_answer(pending, answer)
                            .map_err(|e| anyhow::anyhow!("accept answer: {e}"))?;
                        drive(&mut media, shared, rep, t_join);
                    }
                    Some(Frame::Op { op: 14, d }) => {
                        let e: VoiceErr = serde_json::from_str(d)
                            .unwrap_or(VoiceErr { code: 0, message: d.to_string() });
                        rep.voice_errors.push(e.code);
                        if !media.connected {
                            anyhow::bail!("voice error {}: {}", e.code, e.message);
                        }
                        media.pending = None;
                    }
                    Some(Frame::Op { op: 7 | 9, .. }) => anyhow::bail!("gateway asked to reconnect"),
                    _ => {}
                }
                // Renegotiate when asked and no offer is outstanding.
                if media.pending.is_none() && media.recv_slots < wanted_slots {
                    let sdp = media.offer(speaker.is_some(), wanted_slots)?;
                    rep.offers += 1;
                    sess.ws
                        .send(Message::text(json!({"op": 12, "d": {"sdp": sdp}}).to_string()))
                        .await?;
                }
            }
            _ = hb.tick() => {
                sess.ws.send(gateway::heartbeat_frame(sess.last_seq)).await?;
            }
            _ = &mut join_deadline, if !media.connected => {
                anyhow::bail!("not connected after {:?}", shared.join_timeout);
            }
        }
    }
    // Leave politely: op 4 with no channel, then a normal close.
    let leave = json!({"op": 4, "d": {"server_id": cfg.server_id, "channel_id": null,
        "self_mute": false, "self_deaf": false}});
    let _ = tokio::time::timeout(Duration::from_millis(500), async {
        let _ = sess.ws.send(Message::text(leave.to_string())).await;
        let _ = sess.ws.close(None).await;
    })
    .await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offer(audio_rtx: bool) -> String {
        let local: SocketAddr = "127.0.0.1:40000".parse().unwrap();
        let mut rtc = build_rtc(local, Instant::now(), audio_rtx).unwrap();
        let mut api = rtc.sdp_api();
        api.add_media(MediaKind::Audio, Direction::RecvOnly, None, None, None);
        api.apply().unwrap().0.to_sdp_string()
    }

    /// With `--audio-rtx` the peers offer Opus with an RTX payload type (str0m
    /// then NACKs gaps), without it plain Opus as before.
    #[test]
    fn audio_rtx_is_offered_only_when_asked() {
        let with = offer(true);
        assert!(with.contains("a=rtpmap:111 opus/48000/2"), "{with}");
        assert!(with.contains("a=rtpmap:112 rtx/48000"), "{with}");
        assert!(with.contains("a=fmtp:112 apt=111"), "{with}");
        let without = offer(false);
        assert!(without.contains("a=rtpmap:111 opus/48000/2"), "{without}");
        assert!(!without.contains("rtx/48000"), "{without}");
    }
}
