//! One simulated voice participant: its own gateway connection (IDENTIFY,
//! op 4, op 12/13 signalling, renegotiation) and a str0m client peer on its
//! own UDP socket, all driven by one task.
//!
//! The media connection and its receive path are in `media.rs`, what is
//! recorded per received packet in `measure.rs`.

mod measure;
mod media;

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::json;
use str0m::change::SdpAnswer;
use str0m::media::Mid;
use str0m::rtp::{ExtensionValues, RtpWrite};
use str0m::Input;
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message;

use crate::audio::{Catalog, LoopResolver};
use crate::gateway::{self, classify, Frame};
use crate::stats::{Clock, Hist, Jitter, SeenSet};
use crate::timeseries::Series;
use crate::turns::Turns;

pub use media::RxPath;
pub(crate) use media::{drive, Media};

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
    /// End-to-end encrypted channels: frames are SFrame-encrypted (see `e2ee.rs`).
    pub e2ee: bool,
}

/// Series columns: packets expected (by send second), first arrivals (by
/// send second), RTP packets received (by arrival second).
pub const SERIES_COLS: [&str; 3] = ["expected", "received", "rx_packets"];
pub const COL_EXPECTED: usize = 0;
pub const COL_RECEIVED: usize = 1;
pub const COL_RX: usize = 2;

impl VoiceShared {
    /// Shared state for driving a receive path without a run (tests and
    /// benches): one room, `catalog`'s speakers, the measured window `window`
    /// in µs of a fresh clock, everyone talking.
    pub fn standalone(catalog: Catalog, window: (u64, u64), integrity_every: u64) -> Self {
        let speakers = catalog.speakers.len();
        let secs = (window.1.saturating_sub(window.0) / 1_000_000 + 1).min(3600) as usize;
        let series = Series::new(secs, &SERIES_COLS);
        series.set_start(window.0);
        VoiceShared {
            clock: Clock::new(),
            catalog: Arc::new(catalog),
            win_start: AtomicU64::new(window.0),
            win_end: AtomicU64::new(window.1),
            sent_in_window: (0..speakers).map(|_| AtomicU64::new(0)).collect(),
            connected: AtomicUsize::new(0),
            failed: AtomicUsize::new(0),
            join_timeout: Duration::from_secs(10),
            room_connected: vec![AtomicU64::new(0)],
            series,
            integrity_every,
            turns: None,
            bind_ip: std::net::Ipv4Addr::LOCALHOST.into(),
            audio_rtx: false,
            e2ee: false,
        }
    }

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
    pub user_id: String,
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
    /// Packets identified by their payload hash rather than by their
    /// stream's prediction (see `measure.rs`).
    pub hash_lookups: u64,
    /// RTP packets decrypted by the fast path (`crate::rx`), and those it
    /// dropped because they did not authenticate.
    pub fast_path_packets: u64,
    pub srtp_auth_failures: u64,
    /// Times str0m's own timeout was handled (ICE, DTLS, RTCP, stats).
    pub str0m_timeouts: u64,
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
    /// `--e2ee`: the keys of the others and the frames decrypted with them, and what this
    /// peer's key exchange did.
    pub e2ee_rx: Option<crate::e2ee::FrameReceiver>,
    pub e2ee_keys: crate::e2ee::KeyStats,
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

/// Sends this speaker's next frame; in an e2ee channel encrypted with `e2ee`'s current key
/// (none yet: the frame is dropped, as the browser's transform drops it, and not counted).
pub(crate) fn send_packet(
    media: &mut Media,
    shared: &VoiceShared,
    sp: usize,
    rep: &mut PeerReport,
    e2ee: Option<&mut crate::e2ee::FrameSender>,
) {
    let Some(mid) = media.send_mid else { return };
    let now = Instant::now();
    let counter = media.counter;
    let send_us = shared.clock.us_of(now);
    let frame = shared.catalog.frame(sp, counter);
    let payload: std::sync::Arc<[u8]> = match (shared.e2ee, e2ee) {
        (false, _) => frame.payload.clone(),
        (true, Some(tx)) => tx.encrypt(&frame.payload),
        (true, None) => {
            media.ts = media.ts.wrapping_add(960);
            media.counter += 1;
            return;
        }
    };
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

/// Lets str0m handle its timeout if it is due (paced peers, see the loop).
fn str0m_timeout_if_due(
    media: &mut Media,
    shared: &VoiceShared,
    rep: &mut PeerReport,
    t_join: Instant,
) {
    let now = Instant::now();
    if now >= media.next_timeout {
        rep.str0m_timeouts += 1;
        let _ = media.rtc.handle_input(Input::Timeout(now));
        drive(media, shared, rep, t_join);
    }
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
    // READY's voice states are the e2ee peers' first view of who is in the call.
    let connect = async {
        if shared.e2ee {
            gateway::connect_keeping_ready(&cfg.gateway_url, &cfg.token).await
        } else {
            Ok((
                gateway::connect(&cfg.gateway_url, &cfg.token).await?,
                String::new(),
            ))
        }
    };
    let (mut sess, ready) = tokio::select! {
        r = tokio::time::timeout(shared.join_timeout, connect) => {
            r.map_err(|_| anyhow::anyhow!("gateway not ready after {:?}", shared.join_timeout))??
        }
        _ = stop.changed() => return Ok(()),
    };
    let t_join = Instant::now();
    let mut op4 = json!({"op": 4, "d": {"server_id": cfg.server_id, "channel_id": cfg.channel_id,
        "self_mute": false, "self_deaf": false}});
    let mut keys = None;
    if shared.e2ee {
        let mut agent = crate::e2ee::KeyAgent::new(cfg.user_id.clone(), cfg.channel_id.clone())?;
        let mut rx = crate::e2ee::FrameReceiver::default();
        if let Ok(ready) = serde_json::from_str::<serde_json::Value>(&ready) {
            agent.on_ready(&ready, t_join, &mut rx);
        }
        op4["d"]["e2ee"] = agent.declaration();
        rep.e2ee_rx = Some(rx);
        keys = Some(agent);
    }
    drop(ready);
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
    // Reads a paced socket (see `media.rs`); speakers read on their send tick.
    let mut drain = tokio::time::interval(media::DRAIN_EVERY);
    drain.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let speaker = cfg.speaker;
    // The e2ee key timers (rotation, key switch); far away when there are none.
    let far = || tokio::time::Instant::now() + Duration::from_secs(3600);
    let key_timer = tokio::time::sleep_until(far());
    tokio::pin!(key_timer);

    loop {
        if media.connected && !rep.connected {
            rep.connected = true;
            shared.connected.fetch_add(1, Ordering::Relaxed);
            shared.room_connected[cfg.room].fetch_add(1, Ordering::Relaxed);
            // Start the 20 ms clock now, not with the ticks missed while joining.
            tick.reset();
        }
        if media.can_pace() {
            media.pace()?;
            drain.reset();
        }
        let deadline: tokio::time::Instant = media.next_timeout.into();
        if timer.deadline() != deadline {
            timer.as_mut().reset(deadline);
        }
        let key_deadline = keys
            .as_ref()
            .and_then(|k| k.next_deadline())
            .map_or_else(far, tokio::time::Instant::from);
        if key_timer.deadline() != key_deadline {
            key_timer.as_mut().reset(key_deadline);
        }
        tokio::select! {
            biased;
            _ = stop.changed() => break,
            r = media.sock.readable() => {
                r?;
                media.recv_batch(shared, rep, t_join)?;
            }
            _ = drain.tick(), if media.is_paced() && speaker.is_none() => {
                media.recv_batch(shared, rep, t_join)?;
                str0m_timeout_if_due(&mut media, shared, rep, t_join);
            }
            _ = tick.tick(), if speaker.is_some() && media.connected => {
                if media.is_paced() {
                    media.recv_batch(shared, rep, t_join)?;
                    str0m_timeout_if_due(&mut media, shared, rep, t_join);
                }
                let tx = keys.as_mut().and_then(|k| k.sender.as_mut());
                send_packet(&mut media, shared, speaker.unwrap_or(0), rep, tx);
                drive(&mut media, shared, rep, t_join);
            }
            // A paced peer serves str0m's timeouts on its reads instead (at most
            // 20 ms late, which ICE keepalives and RTCP intervals do not notice):
            // no wake-up of their own.
            _ = &mut key_timer, if keys.is_some() => {
                if let (Some(k), Some(rx)) = (keys.as_mut(), rep.e2ee_rx.as_mut()) {
                    let frames = k.poll(Instant::now(), rx)?;
                    // Kept current here, so a peer that ends on an error still reports it.
                    rep.e2ee_keys = k.stats;
                    for f in frames {
                        sess.ws.send(Message::text(f)).await?;
                    }
                }
            }
            _ = &mut timer, if !media.is_paced() => {
                rep.str0m_timeouts += 1;
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
                            "VOICE_STATE_UPDATE" if keys.is_some() => {
                                if let (Some(k), Some(rx), Ok(st)) =
                                    (keys.as_mut(), rep.e2ee_rx.as_mut(), serde_json::from_str(d))
                                {
                                    k.on_voice_state(&st, Instant::now(), rx);
                                    rep.e2ee_keys = k.stats;
                                }
                            }
                            "VOICE_E2EE_KEY" => {
                                if let (Some(k), Some(rx), Ok(v)) =
                                    (keys.as_mut(), rep.e2ee_rx.as_mut(), serde_json::from_str(d))
                                {
                                    k.on_key(&v, Instant::now(), rx);
                                    rep.e2ee_keys = k.stats;
                                }
                            }
                            "VOICE_RECONNECT" => {
                                // The media node died or drains: a fresh connection and offer,
                                // placed on a live node; the voice session stays.
                                rep.reconnects += 1;
                                if rep.error.as_deref() == Some("ICE disconnected") {
                                    rep.error = None;
                                }
                                let slots = media.recv_slots.max(wanted_slots);
                                let last_audio = media.rx.times.last_audio;
                                media = Media::bind(shared, Instant::now()).await?;
                                // The new connection gets the join timeout of its own (the
                                // first one's ran out long ago).
                                join_deadline
                                    .as_mut()
                                    .reset(tokio::time::Instant::now() + shared.join_timeout);
                                media.rx.times.reconnect_from = Some(Instant::now());
                                media.rx.times.gap_from = last_audio;
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
    use std::net::SocketAddr;
    use str0m::media::{Direction, MediaKind};

    fn offer(audio_rtx: bool) -> String {
        let local: SocketAddr = "127.0.0.1:40000".parse().unwrap();
        let (mut rtc, _) = media::build_rtc(local, Instant::now(), audio_rtx).unwrap();
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
