//! A peer's media connection: its str0m `Rtc`, its UDP socket and how
//! datagrams get from one to the other.
//!
//! **Receiving.** Datagrams are read with `recvmmsg`, [`udp::BATCH`] per
//! system call, into buffers allocated once per connection. Once DTLS has
//! produced keys, each SRTP audio packet is decrypted in place by the fast
//! path ([`crate::rx`]) and measured straight from that buffer; STUN, DTLS
//! and RTCP still go to str0m. A received packet then costs the kernel's
//! copy, one AES-GCM open, a header parse, a compare against the frame it
//! should be (see `measure.rs`), a histogram record, a bitset insert and
//! three relaxed atomic adds — no allocation, no lock, no hash map.
//!
//! **Fewer wake-ups.** Once connected on the fast path the socket is taken
//! off tokio's reactor ([`Media::pace`]) and read every [`DRAIN_EVERY`]
//! instead of on each datagram's arrival: a listener of three speakers gets
//! a packet every ~7 ms, so this reads ~3 per wake-up. Latency is unaffected
//! (arrival is the kernel's receive timestamp); only `latency_app` (the
//! time the tester handled a packet) includes the wait, as documented.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use str0m::change::SdpPendingOffer;
use str0m::media::{Direction, MediaKind, Mid};
use str0m::net::{Protocol, Receive};
use str0m::rtp::{Extension, ExtensionMap};
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc, RtcConfig};
use tokio::net::UdpSocket;

use super::measure::{AudioTimes, Received};
use super::{PeerReport, VoiceShared};
use crate::audio::SAMPLE_RATE;
use crate::rx::rtp::{classify, Kind};
use crate::rx::{keys, FastRx};
use crate::udp::{self, RecvBatch};

/// How often a paced socket is read.
pub(crate) const DRAIN_EVERY: Duration = Duration::from_millis(20);
/// `recvmmsg` calls per wake-up before other work gets a turn.
const MAX_CALLS: usize = 8;

/// The UDP socket of a connection.
pub(crate) enum Sock {
    /// Registered with tokio: the task wakes when a datagram arrives.
    Evented(UdpSocket),
    /// Off the reactor, read on a timer ([`Media::pace`]).
    Polled(std::net::UdpSocket),
    /// Lost while being moved off the reactor (never seen in practice).
    Gone,
}

impl Sock {
    pub(crate) fn try_send_to(&self, buf: &[u8], to: SocketAddr) -> std::io::Result<usize> {
        match self {
            Sock::Evented(s) => s.try_send_to(buf, to),
            Sock::Polled(s) => s.send_to(buf, to),
            Sock::Gone => Err(std::io::ErrorKind::NotConnected.into()),
        }
    }

    fn recv(&self, batch: &mut RecvBatch) -> std::io::Result<usize> {
        use std::os::fd::AsRawFd;
        match self {
            Sock::Evented(s) => batch.recv(s),
            Sock::Polled(s) => batch.recv_fd(s.as_raw_fd()),
            Sock::Gone => Err(std::io::ErrorKind::NotConnected.into()),
        }
    }

    /// Resolves when an evented socket is readable; never for a polled one.
    pub(crate) async fn readable(&self) -> std::io::Result<()> {
        match self {
            Sock::Evented(s) => s.readable().await,
            _ => std::future::pending().await,
        }
    }
}

pub(crate) struct Media {
    pub(crate) rtc: Rtc,
    pub(crate) sock: Sock,
    pub(crate) local: SocketAddr,
    pub(crate) send_mid: Option<Mid>,
    pub(crate) recv_slots: usize,
    pub(crate) pending: Option<SdpPendingOffer>,
    pub(crate) next_timeout: Instant,
    pub(crate) connected: bool,
    pub(super) seq: u64,
    pub(super) ts: u32,
    pub(super) counter: u64,
    /// Kernel arrival time (µs on the shared clock) of the datagram str0m is
    /// handling.
    rx_us: Option<u64>,
    /// Whether the kernel timestamps received datagrams on `sock`.
    kernel_ts: bool,
    pub(crate) rx: RxPath,
    /// `None` only while [`Media::recv_batch`] holds it.
    batch: Option<Box<RecvBatch>>,
}

/// The receive side of a connection that does not need str0m: the fast
/// path and the arrival times the measurements keep.
pub struct RxPath {
    pub fast: FastRx,
    pub(crate) times: AudioTimes,
    /// Where the SFU's RTP comes from (our receiver reports go there).
    remote: Option<SocketAddr>,
}

impl RxPath {
    pub fn new(fast: FastRx) -> Self {
        RxPath {
            fast,
            times: AudioTimes::default(),
            remote: None,
        }
    }

    /// Takes datagram `d` if it is SRTP audio and the fast path is active:
    /// decrypts it in place and records it in `rep`. False when it is for
    /// str0m (anything else, or before the keys are known).
    #[inline]
    pub fn datagram(
        &mut self,
        shared: &VoiceShared,
        rep: &mut PeerReport,
        t_join: Instant,
        d: &mut [u8],
        kernel_us: Option<u64>,
        now: Instant,
    ) -> bool {
        if classify(d) != Kind::Rtp || !self.fast.active() {
            return false;
        }
        let at_us = kernel_us.unwrap_or_else(|| shared.clock.us_of(now));
        let arrival = at_us * (SAMPLE_RATE as u64 / 1000) / 1000;
        let Some(p) = self.fast.open(d, arrival) else {
            rep.srtp_auth_failures += 1;
            return true;
        };
        rep.fast_path_packets += 1;
        {
            let r = Received {
                ssrc: p.ssrc,
                seq: p.seq,
                rtp_ts: p.timestamp,
                payload: p.payload,
                kernel_us,
                at: now,
            };
            rep.on_audio(shared, &mut self.times, t_join, &r);
        }
        true
    }
}

/// A str0m client peer's `Rtc`, and the slot its DTLS keys will land in.
pub(crate) fn build_rtc(
    local: SocketAddr,
    now: Instant,
    audio_rtx: bool,
) -> anyhow::Result<(Rtc, Option<Arc<keys::KeySlot>>)> {
    let mut exts = ExtensionMap::empty();
    exts.set(1, Extension::AudioLevel);
    exts.set(4, Extension::RtpMid);
    let mut cfg = RtcConfig::new()
        .set_crypto_provider(keys::provider())
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
    let (mut rtc, slot) = keys::build(cfg, now);
    rtc.add_local_candidate(Candidate::host(local, "udp")?);
    Ok((rtc, slot))
}

impl Media {
    /// A str0m client on a fresh UDP socket at `shared.bind_ip`.
    pub(crate) async fn bind(shared: &VoiceShared, now: Instant) -> anyhow::Result<Media> {
        let sock = UdpSocket::bind(SocketAddr::new(shared.bind_ip, 0)).await?;
        let local = sock.local_addr()?;
        let kernel_ts = udp::enable_timestamps(&sock);
        let (rtc, slot) = build_rtc(local, now, shared.audio_rtx)?;
        Ok(Media {
            rtc,
            sock: Sock::Evented(sock),
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
            // With RTX str0m must see the packets: it NACKs the gaps and
            // unwraps the resends.
            rx: RxPath::new(FastRx::new(slot, !shared.audio_rtx)),
            batch: Some(Box::default()),
        })
    }

    /// Whether the socket may be read on a timer from now on: connected,
    /// with received audio on the fast path.
    pub(crate) fn can_pace(&mut self) -> bool {
        self.connected && matches!(self.sock, Sock::Evented(_)) && self.rx.fast.active()
    }

    /// Takes the socket off tokio's reactor: from now on it is read by
    /// calling [`Self::recv_batch`] every [`DRAIN_EVERY`].
    pub(crate) fn pace(&mut self) -> anyhow::Result<()> {
        if let Sock::Evented(s) = std::mem::replace(&mut self.sock, Sock::Gone) {
            self.sock = Sock::Polled(s.into_std()?);
        }
        Ok(())
    }

    pub(crate) fn is_paced(&self) -> bool {
        matches!(self.sock, Sock::Polled(_))
    }

    /// Reads every queued datagram (up to [`MAX_CALLS`] batches): SRTP audio
    /// through the fast path when it is active, the rest through str0m.
    pub(crate) fn recv_batch(
        &mut self,
        shared: &VoiceShared,
        rep: &mut PeerReport,
        t_join: Instant,
    ) -> std::io::Result<()> {
        // realtime − monotonic, per wake-up (follows NTP slewing).
        let offset_us = if self.kernel_ts {
            (udp::realtime_ns() / 1000) as i64 - shared.clock.now_us() as i64
        } else {
            0
        };
        // Out of `self` while its datagrams are handled (they borrow it).
        let mut batch = self.batch.take().unwrap_or_default();
        let mut result = Ok(());
        for _ in 0..MAX_CALLS {
            let n = match self.sock.recv(&mut batch) {
                Ok(n) => n,
                Err(e) => {
                    result = Err(e);
                    break;
                }
            };
            let now = Instant::now();
            for i in 0..n {
                let (d, from, stamp) = batch.get(i);
                let (Some(from), false) = (from, d.is_empty()) else {
                    continue;
                };
                let kernel_us = stamp.map(|ns| ((ns / 1000) as i64 - offset_us).max(0) as u64);
                if self.rx.datagram(shared, rep, t_join, d, kernel_us, now) {
                    self.rx.remote = Some(from);
                } else {
                    self.via_str0m(shared, rep, t_join, d, from, kernel_us, now);
                }
            }
            if let (Some(to), Some(rr)) = (self.rx.remote, self.rx.fast.poll_report(now)) {
                let _ = self.sock.try_send_to(rr, to);
            }
            if n < udp::BATCH {
                break;
            }
        }
        self.batch = Some(batch);
        result
    }

    /// A datagram the fast path did not take.
    #[allow(clippy::too_many_arguments)]
    fn via_str0m(
        &mut self,
        shared: &VoiceShared,
        rep: &mut PeerReport,
        t_join: Instant,
        d: &mut [u8],
        from: SocketAddr,
        kernel_us: Option<u64>,
        now: Instant,
    ) {
        if classify(d) == Kind::Rtcp {
            self.rx.fast.on_rtcp(d, now);
        }
        self.rx_us = kernel_us;
        if let Ok(rcv) = Receive::new(Protocol::Udp, from, self.local, d) {
            let _ = self.rtc.handle_input(Input::Receive(now, rcv));
        }
        drive(self, shared, rep, t_join);
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

/// Polls str0m until it has nothing more to say, sending what it transmits
/// and recording what it received (the packets the fast path did not take).
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
                    let r = Received {
                        ssrc: *p.header.ssrc,
                        seq: *p.seq_no,
                        rtp_ts: p.header.timestamp,
                        payload: &p.payload,
                        kernel_us: media.rx_us,
                        at: p.timestamp,
                    };
                    rep.on_audio(shared, &mut media.rx.times, t_join, &r);
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
