//! One simulated video participant: a publisher sending simulcast VP8 on
//! rids q/h/f, or a viewer with recvonly video slots reporting its tile
//! size (op 15). Each has its own gateway connection and str0m peer on its
//! own UDP socket, driven by one task, as in the voice scenario (`peer.rs`):
//! the gateway session, UDP receive and sequence accounting are shared.
//!
//! **Cost on the packet path (viewer).** A received RTP packet costs a
//! descriptor parse, a scan of the viewer's (few) streams and a counter
//! update: no allocation of ours, no locks, no logging.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::{json, Value};
use str0m::change::{SdpAnswer, SdpPendingOffer};
use str0m::format::Codec;
use str0m::media::{Direction, MediaKind, Mid, Pt, Rid, Simulcast, SimulcastLayer};
use str0m::net::{Protocol, Receive};
use str0m::rtp::{Extension, ExtensionMap, RtpWrite};
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc, RtcConfig};
use tokio::net::UdpSocket;
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message;

use crate::gateway::{self, classify, Frame};
use crate::peer::SeqTrack;
use crate::stats::Clock;
use crate::vp8;

/// Datagrams handled per wake-up before other work gets a turn.
const RECV_BATCH: usize = 64;
/// A gap between two complete frames longer than this is a freeze (the
/// viewer would see the picture stop).
pub const FREEZE_GAP: Duration = Duration::from_millis(200);

/// State every peer shares (read-mostly).
pub struct VideoShared {
    pub clock: Clock,
    pub gateway_url: String,
    /// Measured window, µs on `clock`; `u64::MAX` until set.
    pub win_start: AtomicU64,
    pub win_end: AtomicU64,
    pub connected: AtomicUsize,
    pub failed: AtomicUsize,
    pub join_timeout: Duration,
    pub fps: u32,
    /// A publisher sends a keyframe on every layer at least this often.
    pub keyframe_interval: Duration,
    /// What publishers send and viewers watch: "camera", or "screen" (Go Live).
    pub track: &'static str,
}

impl VideoShared {
    #[inline]
    fn in_window(&self, us: u64) -> bool {
        us >= self.win_start.load(Ordering::Relaxed) && us < self.win_end.load(Ordering::Relaxed)
    }
}

#[derive(Clone, Debug)]
pub enum Role {
    Publisher,
    /// Shows every publisher (user ids) in a tile of this size.
    Viewer {
        tile: (u32, u32),
        publishers: Vec<String>,
    },
}

#[derive(Clone, Debug)]
pub struct VideoPeerConfig {
    pub role: Role,
    pub token: String,
    pub server_id: String,
    pub channel_id: String,
}

/// What a viewer measured on one received stream (one video slot).
#[derive(Clone, Debug, Default)]
pub struct StreamStats {
    pub ssrc: u32,
    /// Layer (index in [`vp8::layers`]) of the last keyframe received.
    pub layer: Option<usize>,
    /// In the window: complete frames (marker bit), keyframes, frames per
    /// layer, layer changes, payload bytes, packets.
    pub frames: u64,
    pub keyframes: u64,
    pub frames_per_layer: [u64; 3],
    pub switches: u64,
    pub bytes: u64,
    pub packets: u64,
    pub seq: SeqTrack,
    /// Sum of the gaps between complete frames longer than [`FREEZE_GAP`].
    pub freeze_us: u64,
    last_frame_us: Option<u64>,
    /// Frame bytes before the first keyframe told the layer (not counted).
    pub undecodable_frames: u64,
}

/// What one peer measured.
#[derive(Default)]
pub struct VideoPeerReport {
    pub publisher: bool,
    pub tile: (u32, u32),
    pub connected: bool,
    pub error: Option<String>,
    /// op 4 sent → DTLS/SRTP connected.
    pub join_us: Option<u64>,
    /// op 4 sent → first complete video frame (viewers).
    pub first_frame_us: Option<u64>,
    pub voice_errors: Vec<u64>,
    // Publisher, in the window:
    pub frames_sent: u64,
    pub keyframes_sent: u64,
    pub packets_sent: u64,
    pub bytes_sent: u64,
    /// PLI/FIR received from the SFU (whole run and in the window).
    pub keyframe_requests: u64,
    pub keyframe_requests_in_window: u64,
    pub layers_reports: u64,
    /// The rids the publisher was sending at the end.
    pub active_rids: Vec<&'static str>,
    // Viewer:
    pub slots_events: u64,
    /// Slots the SFU assigned a publisher in its last VOICE_VIDEO_SLOTS.
    pub slots_assigned: usize,
    pub streams: Vec<StreamStats>,
}

/// Per-layer send state of a publisher.
struct SendLayer {
    seq: u64,
    pid: u16,
    tl0: u8,
    active: bool,
    force_key: bool,
    last_key: Option<Instant>,
}

struct Media {
    rtc: Rtc,
    sock: UdpSocket,
    local: SocketAddr,
    pending: Option<SdpPendingOffer>,
    next_timeout: Instant,
    connected: bool,
    /// Publisher: the sending video mid and the VP8 payload type.
    send_mid: Option<Mid>,
    vp8_pt: Option<Pt>,
    layers: Vec<SendLayer>,
    ts: u32,
    /// Kernel arrival time (µs on the shared clock) of the datagram being handled.
    rx_us: Option<u64>,
}

fn build_rtc(local: SocketAddr, now: Instant) -> anyhow::Result<Rtc> {
    // What a browser negotiates for simulcast video: mid, rid and
    // repaired-rid (the SFU maps layers by them), abs-send-time and TWCC.
    let mut exts = ExtensionMap::empty();
    exts.set(2, Extension::AbsoluteSendTime);
    exts.set(3, Extension::TransportSequenceNumber);
    exts.set(4, Extension::RtpMid);
    exts.set(10, Extension::RtpStreamId);
    exts.set(11, Extension::RepairedRtpStreamId);
    let mut rtc = RtcConfig::new()
        .set_rtp_mode(true)
        .clear_codecs()
        .enable_opus(true, false)
        .enable_vp8(true)
        .set_extension_map(exts)
        .set_stats_interval(Some(Duration::from_secs(1)))
        .build(now);
    rtc.add_local_candidate(Candidate::host(local, "udp")?);
    Ok(rtc)
}

impl Media {
    /// The offer: one recvonly audio transceiver (the SFU wants Opus on
    /// every peer; nobody sends audio here, so no renegotiation follows),
    /// then one sendonly simulcast camera (publisher) or `slots` recvonly
    /// video transceivers (viewer).
    fn offer(&mut self, publisher: bool, slots: usize) -> anyhow::Result<String> {
        let mut api = self.rtc.sdp_api();
        api.add_media(MediaKind::Audio, Direction::RecvOnly, None, None, None);
        if publisher {
            let mut sim = Simulcast::new();
            for l in vp8::layers() {
                sim.add_send_layer(SimulcastLayer::new(l.rid));
            }
            self.send_mid =
                Some(api.add_media(MediaKind::Video, Direction::SendOnly, None, None, Some(sim)));
        }
        for _ in 0..slots {
            api.add_media(MediaKind::Video, Direction::RecvOnly, None, None, None);
        }
        let (offer, pending) = api
            .apply()
            .ok_or_else(|| anyhow::anyhow!("nothing to offer"))?;
        self.pending = Some(pending);
        Ok(offer.to_sdp_string())
    }
}

fn drive(media: &mut Media, shared: &VideoShared, rep: &mut VideoPeerReport, t_join: Instant) {
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
                    let now_us = media
                        .rx_us
                        .unwrap_or_else(|| shared.clock.us_of(p.timestamp));
                    on_video_packet(shared, rep, &p, now_us, t_join);
                }
                Event::KeyframeRequest(req) => {
                    rep.keyframe_requests += 1;
                    if shared.in_window(shared.clock.now_us()) {
                        rep.keyframe_requests_in_window += 1;
                    }
                    for (l, spec) in media.layers.iter_mut().zip(vp8::layers().iter()) {
                        if req.rid.is_none_or(|r| &*r == spec.rid) {
                            l.force_key = true;
                        }
                    }
                }
                Event::Connected if !media.connected => {
                    media.connected = true;
                    rep.join_us = Some(t_join.elapsed().as_micros() as u64);
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

fn on_video_packet(
    shared: &VideoShared,
    rep: &mut VideoPeerReport,
    p: &str0m::rtp::RtpPacket,
    now_us: u64,
    t_join: Instant,
) {
    let ssrc = *p.header.ssrc;
    let i = match rep.streams.iter().position(|s| s.ssrc == ssrc) {
        Some(i) => i,
        None => {
            rep.streams.push(StreamStats {
                ssrc,
                ..Default::default()
            });
            rep.streams.len() - 1
        }
    };
    let st = &mut rep.streams[i];
    let parsed = vp8::parse(&p.payload);
    if let Some(v) = parsed.filter(|v| v.keyframe) {
        if let Some(layer) = v.size.and_then(vp8::layer_of_size) {
            let in_window = shared.in_window(now_us);
            if st.layer.is_some_and(|l| l != layer) && in_window {
                st.switches += 1;
            }
            st.layer = Some(layer);
            if in_window {
                st.keyframes += 1;
            }
        }
    }
    if !shared.in_window(now_us) {
        if p.header.marker && rep.first_frame_us.is_none() {
            rep.first_frame_us = Some(p.timestamp.duration_since(t_join).as_micros() as u64);
        }
        return;
    }
    st.packets += 1;
    st.bytes += p.payload.len() as u64;
    st.seq.update(*p.seq_no);
    if p.header.marker {
        if rep.first_frame_us.is_none() {
            rep.first_frame_us = Some(p.timestamp.duration_since(t_join).as_micros() as u64);
        }
        match st.layer {
            Some(l) => {
                st.frames += 1;
                st.frames_per_layer[l] += 1;
            }
            None => st.undecodable_frames += 1,
        }
        if let Some(last) = st.last_frame_us {
            let gap = now_us.saturating_sub(last);
            if gap > FREEZE_GAP.as_micros() as u64 {
                st.freeze_us += gap;
            }
        }
        st.last_frame_us = Some(now_us);
    }
}

/// Sends one frame on every active layer (and a keyframe where one is due).
fn send_frame(media: &mut Media, shared: &VideoShared, rep: &mut VideoPeerReport) {
    let (Some(mid), Some(pt)) = (media.send_mid, media.vp8_pt) else {
        return;
    };
    let now = Instant::now();
    let in_window = shared.in_window(shared.clock.us_of(now));
    let ts = media.ts;
    media.ts = media.ts.wrapping_add(90_000 / shared.fps.max(1));
    for (l, spec) in media.layers.iter_mut().zip(vp8::layers().iter()) {
        if !l.active {
            continue;
        }
        let key = l.force_key
            || l.last_key
                .is_none_or(|t| now.saturating_duration_since(t) >= shared.keyframe_interval);
        if key {
            l.force_key = false;
            l.last_key = Some(now);
        }
        let len = vp8::frame_bytes(spec, shared.fps, key);
        let mut api = media.rtc.direct_api();
        let Some(tx) = api.stream_tx_by_mid(mid, Some(Rid::from(spec.rid))) else {
            continue;
        };
        let (mut packets, mut bytes) = (0u64, 0u64);
        let mut seq = l.seq;
        vp8::packetize(
            len,
            key,
            (spec.width, spec.height),
            l.pid,
            l.tl0,
            |p, marker| {
                bytes += p.len() as u64;
                packets += 1;
                tx.write_rtp(
                    RtpWrite::new(pt, seq.into(), ts, now, p)
                        .marker(marker)
                        .nackable(true),
                );
                seq += 1;
            },
        );
        l.seq = seq;
        l.pid = (l.pid + 1) & 0x7fff;
        l.tl0 = l.tl0.wrapping_add(1);
        if in_window {
            rep.frames_sent += 1;
            rep.keyframes_sent += u64::from(key);
            rep.packets_sent += packets;
            rep.bytes_sent += bytes;
        }
    }
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
struct VideoLayers {
    #[serde(default)]
    track: String,
    active_rids: Vec<String>,
}
#[derive(Deserialize)]
struct VideoSlots {
    slots: Vec<VideoSlot>,
}
#[derive(Deserialize)]
struct VideoSlot {
    user_id: Option<String>,
}

/// Runs one participant until `stop` flips. Never panics on server input.
pub async fn run(
    cfg: VideoPeerConfig,
    shared: Arc<VideoShared>,
    mut stop: watch::Receiver<bool>,
) -> VideoPeerReport {
    let mut rep = VideoPeerReport {
        publisher: matches!(cfg.role, Role::Publisher),
        tile: match &cfg.role {
            Role::Viewer { tile, .. } => *tile,
            Role::Publisher => (0, 0),
        },
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

/// op 15: every publisher's `track` in a tile of the viewer's size.
fn subscribe_frame(tile: (u32, u32), publishers: &[String], track: &str) -> Value {
    let tiles: Vec<Value> = publishers
        .iter()
        .map(|u| json!({"user_id": u, "track": track, "width": tile.0, "height": tile.1}))
        .collect();
    json!({"op": 15, "d": {"tiles": tiles}})
}

async fn run_inner(
    cfg: &VideoPeerConfig,
    shared: &Arc<VideoShared>,
    stop: &mut watch::Receiver<bool>,
    rep: &mut VideoPeerReport,
) -> anyhow::Result<()> {
    let publisher = matches!(cfg.role, Role::Publisher);
    let mut sess = gateway::connect(&shared.gateway_url, &cfg.token).await?;
    let sock = UdpSocket::bind("127.0.0.1:0").await?;
    let local = sock.local_addr()?;
    let kernel_ts = crate::udp::enable_timestamps(&sock);
    let t_join = Instant::now();
    let op4 = json!({"op": 4, "d": {"server_id": cfg.server_id, "channel_id": cfg.channel_id,
        "self_mute": false, "self_deaf": false,
        "self_video": publisher && shared.track == "camera",
        "self_stream": publisher && shared.track == "screen"}});
    sess.ws.send(Message::text(op4.to_string())).await?;
    let mut media = Media {
        rtc: build_rtc(local, t_join)?,
        sock,
        local,
        pending: None,
        next_timeout: t_join + Duration::from_secs(3600),
        connected: false,
        send_mid: None,
        vp8_pt: None,
        layers: (0..vp8::layers().len() as u64)
            .map(|i| SendLayer {
                // Each layer is its own stream (SSRC) with its own random
                // start. Below 2^16: str0m derives the SRTP rollover
                // counter from the extended number, and a receiver
                // expects it to start at 0.
                seq: rand::random_range(1..20_000u64) + i,
                pid: rand::random_range(0..0x7fffu16),
                tl0: rand::random::<u8>(),
                active: true,
                force_key: false,
                last_key: None,
            })
            .collect(),
        ts: rand::random::<u32>(),
        rx_us: None,
    };
    let slots = match &cfg.role {
        Role::Publisher => 0,
        Role::Viewer { publishers, .. } => publishers.len().clamp(1, 9),
    };
    let sdp = media.offer(publisher, slots)?;
    let mut op12 = json!({"op": 12, "d": {"sdp": sdp}});
    if let Some(mid) = media.send_mid {
        op12["d"]["video_tracks"] = json!({ mid.to_string(): shared.track });
    }
    sess.ws.send(Message::text(op12.to_string())).await?;

    let hb_period = sess.heartbeat;
    let mut hb = tokio::time::interval_at(tokio::time::Instant::now() + hb_period / 2, hb_period);
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / shared.fps.max(1) as f64));
    // A late frame is dropped, as an encoder under load does, not bunched.
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let timer = tokio::time::sleep_until(media.next_timeout.into());
    tokio::pin!(timer);
    let join_deadline = tokio::time::sleep(shared.join_timeout);
    tokio::pin!(join_deadline);
    let mut buf = vec![0u8; 2048];

    loop {
        if media.connected && !rep.connected {
            rep.connected = true;
            shared.connected.fetch_add(1, Ordering::Relaxed);
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
                let offset_us = if kernel_ts {
                    (crate::udp::realtime_ns() / 1000) as i64 - shared.clock.now_us() as i64
                } else {
                    0
                };
                for _ in 0..RECV_BATCH {
                    match crate::udp::try_recv(&media.sock, &mut buf) {
                        Ok((n, from, stamp)) => {
                            let now = Instant::now();
                            media.rx_us = stamp.map(|ns| ((ns / 1000) as i64 - offset_us).max(0) as u64);
                            let arrived = stamp.map_or(now, |ns| arrival_instant(now, ns));
                            if let Ok(rcv) = Receive::new(Protocol::Udp, from, media.local, &buf[..n]) {
                                let _ = media.rtc.handle_input(Input::Receive(arrived, rcv));
                            }
                            drive(&mut media, shared, rep, t_join);
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                        Err(e) => return Err(e.into()),
                    }
                }
            }
            _ = tick.tick(), if publisher && media.connected => {
                send_frame(&mut media, shared, rep);
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
                            "VOICE_VIDEO_LAYERS" => {
                                if let Ok(v) = serde_json::from_str::<VideoLayers>(d) {
                                    if v.track.is_empty() || v.track == shared.track {
                                        rep.layers_reports += 1;
                                        set_active(&mut media, &v.active_rids);
                                    }
                                }
                            }
                            "VOICE_VIDEO_SLOTS" => {
                                rep.slots_events += 1;
                                if let Ok(v) = serde_json::from_str::<VideoSlots>(d) {
                                    rep.slots_assigned =
                                        v.slots.iter().filter(|s| s.user_id.is_some()).count();
                                }
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
                        media.vp8_pt = media
                            .rtc
                            .codec_config()
                            .params()
                            .iter()
                            .find(|p| p.spec().codec == Codec::Vp8)
                            .map(|p| p.pt());
                        if let Role::Viewer { tile, publishers } = &cfg.role {
                            let f = subscribe_frame(*tile, &publishers[..publishers.len().min(9)], shared.track);
                            sess.ws.send(Message::text(f.to_string())).await?;
                        }
                        drive(&mut media, shared, rep, t_join);
                    }
                    Some(Frame::Op { op: 14, d }) => {
                        let e: VoiceErr = serde_json::from_str(d)
                            .unwrap_or(VoiceErr { code: 0, message: d.to_string() });
                        rep.voice_errors.push(e.code);
                        if !media.connected {
                            anyhow::bail!("voice error {}: {}", e.code, e.message);
                        }
                    }
                    Some(Frame::Op { op: 7 | 9, .. }) => anyhow::bail!("gateway asked to reconnect"),
                    _ => {}
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
    rep.active_rids = media
        .layers
        .iter()
        .zip(vp8::layers().iter())
        .filter(|(l, _)| l.active)
        .map(|(_, s)| s.rid)
        .collect();
    let leave = json!({"op": 4, "d": {"server_id": cfg.server_id, "channel_id": null,
        "self_mute": false, "self_deaf": false}});
    let _ = tokio::time::timeout(Duration::from_millis(500), async {
        let _ = sess.ws.send(Message::text(leave.to_string())).await;
        let _ = sess.ws.close(None).await;
    })
    .await;
    Ok(())
}

/// VOICE_VIDEO_LAYERS: send only the listed rids; a layer that resumes
/// starts with a keyframe (an encoder restarting a stream does).
fn set_active(media: &mut Media, rids: &[String]) {
    for (l, spec) in media.layers.iter_mut().zip(vp8::layers().iter()) {
        let on = rids.iter().any(|r| r == spec.rid);
        if on && !l.active {
            l.force_key = true;
        }
        l.active = on;
    }
}

/// The instant a datagram the kernel stamped at `stamp_ns` (CLOCK_REALTIME) arrived, given
/// that it is `now`. str0m reports receive times to the SFU in its transport-wide feedback,
/// which drives the SFU's bandwidth estimate: with the time this tester got round to the
/// packet instead, a busy tester's backlog reads as a congested link and holds every viewer
/// on a low layer. An implausible stamp (in the future, or over a second old) gives `now`.
fn arrival_instant(now: Instant, stamp_ns: u64) -> Instant {
    let age = crate::udp::realtime_ns().saturating_sub(stamp_ns);
    if age > 1_000_000_000 {
        return now;
    }
    now.checked_sub(Duration::from_nanos(age)).unwrap_or(now)
}

#[cfg(test)]
mod arrival_tests {
    use super::*;

    #[test]
    fn a_kernel_stamp_moves_the_arrival_back_by_its_age() {
        let now = Instant::now();
        let stamp = crate::udp::realtime_ns() - 30_000_000; // 30 ms ago
        let got = now - arrival_instant(now, stamp);
        assert!(
            got >= Duration::from_millis(30) && got < Duration::from_millis(40),
            "{got:?}"
        );
        // A stamp from the future or from long ago is not trusted.
        assert_eq!(
            arrival_instant(now, crate::udp::realtime_ns() + 5_000_000_000),
            now
        );
        assert_eq!(arrival_instant(now, 1), now);
    }
}
