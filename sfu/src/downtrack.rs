//! One forwarded stream to one subscriber (LiveKit's down-track): the
//! slot's outgoing SSRC, the sequence-number / timestamp rewriting that keeps
//! it continuous while the source on the slot changes, and its write path.
//!
//! [`DownTrack::write_audio`] picks the send path per packet: the audio fast
//! path when it owns this stream (rewritten here, protected and sent by the
//! fast path's lanes; this track keeps the counts its sender reports are
//! made of), else str0m's send stream. Video always goes through str0m
//! ([`DownTrack::write_video`]). The forwarding loop is then a fan-out over
//! down-tracks.

use std::cell::OnceCell;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use str0m::media::{Mid, Pt};
use str0m::rtp::{ExtensionValues, RtpPacket, RtpWrite, Ssrc, Vp8Patch};
use str0m::Rtc;

use crate::fastpath::{rtcp, FastPeer, FastTrack, Lanes, RtpOut, SendStats};
use crate::metrics::DropReason;

/// Where a down-track writes: its subscriber's str0m session and, when the
/// subscriber has one, its fast path with the send lanes.
pub(crate) struct Egress<'a> {
    pub rtc: &'a mut Rtc,
    pub fast: Option<&'a mut FastPeer>,
    pub lanes: &'a mut Lanes,
    /// Identifies the packet among those forwarded (see [`RtpOut::serial`]).
    pub serial: u64,
}

/// An audio packet to forward: from a local publisher (str0m's
/// `RtpPacket`) or relayed from another media node. Only what forwarding
/// reads; the payload is borrowed, and turned into the `Arc` str0m's send
/// path wants only if a subscriber takes that path (once per packet).
pub(crate) struct AudioPacket<'a> {
    pub ssrc: Ssrc,
    /// Extended sequence number.
    pub seq: u64,
    pub rtp_time: u32,
    /// When it arrived at this node.
    pub arrived: Instant,
    pub marker: bool,
    pub audio_level: Option<i8>,
    pub voice_activity: Option<bool>,
    pub payload: &'a [u8],
    shared: OnceCell<Arc<[u8]>>,
}

impl<'a> AudioPacket<'a> {
    /// A publisher's packet as str0m delivered it (its payload is shared as is).
    pub fn from_rtp(pkt: &'a RtpPacket) -> Self {
        AudioPacket {
            ssrc: pkt.header.ssrc,
            seq: *pkt.seq_no,
            rtp_time: pkt.header.timestamp,
            arrived: pkt.timestamp,
            marker: pkt.header.marker,
            audio_level: pkt.header.ext_vals.audio_level,
            voice_activity: pkt.header.ext_vals.voice_activity,
            payload: &pkt.payload,
            shared: OnceCell::from(pkt.payload.clone()),
        }
    }

    /// A packet whose payload lives in a borrowed buffer (relayed).
    #[allow(clippy::too_many_arguments)]
    pub fn borrowed(
        ssrc: Ssrc,
        seq: u64,
        rtp_time: u32,
        arrived: Instant,
        marker: bool,
        audio_level: Option<i8>,
        voice_activity: Option<bool>,
        payload: &'a [u8],
    ) -> Self {
        AudioPacket {
            ssrc,
            seq,
            rtp_time,
            arrived,
            marker,
            audio_level,
            voice_activity,
            payload,
            shared: OnceCell::new(),
        }
    }

    /// The payload as str0m's send path takes it.
    fn shared(&self) -> Arc<[u8]> {
        self.shared.get_or_init(|| Arc::from(self.payload)).clone()
    }
}

/// How a packet left a down-track.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Sent {
    /// Queued on a fast-path send lane, protected: the datagram's size.
    Fast(usize),
    /// Written to str0m: it goes out when the subscriber's `Rtc` is drained.
    Rtc,
}

/// Outgoing sequence numbers start below this so the SRTP rollover counter
/// starts at 0 without out-of-band signalling (str0m requires it).
const INITIAL_SEQ_MAX: u64 = 1 << 14;

/// Offset-based rewriting state of one down-track.
///
/// Sequence numbers are handled as str0m's 64-bit extended numbers, so a
/// source's 16-bit wrap (65535 → 0) and our own outgoing wrap are both plain
/// additions; str0m derives the SRTP rollover counter from the extended value.
#[derive(Debug)]
pub(crate) struct DownTrack {
    /// The subscriber's recvonly transceiver this slot is.
    pub mid: Mid,
    /// Our SSRC on that mid (str0m's send stream, announced in the answer).
    pub ssrc: Ssrc,
    /// RTX SSRC when the subscriber negotiated audio RTX (NACK answers).
    pub rtx: Option<Ssrc>,
    clock_rate: u32,
    /// SSRC of the source stream we are anchored to.
    src_ssrc: Option<Ssrc>,
    /// Must re-anchor on the next packet (source switched, mute/deaf toggled).
    resync: bool,
    anchor_in_seq: u64,
    anchor_out_seq: u64,
    ts_offset: u32,
    last_out_seq: Option<u64>,
    last_out_ts: u32,
    last_out_at: Option<Instant>,
    /// The fast path sends on `ssrc` (str0m no longer knows it).
    fast_owned: bool,
    /// What the fast path sent on `ssrc` (for its sender reports).
    sent: SendStats,
}

impl DownTrack {
    pub fn new(mid: Mid, ssrc: Ssrc, rtx: Option<Ssrc>, clock_rate: u32) -> Self {
        DownTrack {
            mid,
            ssrc,
            rtx,
            clock_rate,
            src_ssrc: None,
            resync: true,
            anchor_in_seq: 0,
            anchor_out_seq: 0,
            ts_offset: 0,
            last_out_seq: None,
            last_out_ts: 0,
            last_out_at: None,
            fast_owned: false,
            sent: SendStats::default(),
        }
    }

    /// The next packet re-anchors the rewriting: its sequence number follows
    /// the last one sent and its timestamp advances by the wall-clock gap.
    pub fn resync(&mut self) {
        self.resync = true;
    }

    /// The next packet sent gets extended sequence number `seq` (tests: SRTP
    /// rollover without sending 65,536 packets first).
    #[cfg(any(test, feature = "testing"))]
    pub fn force_next_seq(&mut self, seq: u64, at: Instant) {
        self.last_out_seq = Some(seq.saturating_sub(1));
        self.last_out_at = Some(at);
        self.resync = true;
    }

    /// Maps a source packet to the outgoing (extended seq, timestamp), or
    /// `None` for a packet older than the current anchor (it would collide with
    /// numbers already used for the previous source).
    pub fn rewrite(
        &mut self,
        src: Ssrc,
        in_seq: u64,
        in_ts: u32,
        at: Instant,
    ) -> Option<(u64, u32)> {
        if self.resync || self.src_ssrc != Some(src) {
            let (out_seq, out_ts) = match (self.last_out_seq, self.last_out_at) {
                (Some(seq), Some(last_at)) => {
                    let gap = at.saturating_duration_since(last_at);
                    let samples = (gap.as_micros() * self.clock_rate as u128 / 1_000_000)
                        .clamp(1, u32::MAX as u128 / 2) as u32;
                    (seq + 1, self.last_out_ts.wrapping_add(samples))
                }
                _ => (
                    rand::random_range(0..INITIAL_SEQ_MAX),
                    rand::random::<u32>(),
                ),
            };
            self.src_ssrc = Some(src);
            self.resync = false;
            self.anchor_in_seq = in_seq;
            self.anchor_out_seq = out_seq;
            self.ts_offset = out_ts.wrapping_sub(in_ts);
        }
        if in_seq < self.anchor_in_seq {
            return None;
        }
        let out_seq = self.anchor_out_seq + (in_seq - self.anchor_in_seq);
        let out_ts = in_ts.wrapping_add(self.ts_offset);
        if self.last_out_seq.is_none_or(|last| out_seq > last) {
            self.last_out_seq = Some(out_seq);
            self.last_out_ts = out_ts;
            self.last_out_at = Some(at);
        }
        Some((out_seq, out_ts))
    }

    /// Rewrites an audio packet for this track and writes it with payload
    /// type `pt` (the subscriber's number for the packet's codec): through
    /// the fast path when it owns this track and is active, else to str0m.
    pub fn write_audio(
        &mut self,
        out: Egress<'_>,
        pkt: &AudioPacket<'_>,
        pt: Pt,
    ) -> Result<Sent, DropReason> {
        match out.fast.filter(|f| self.fast_owned && f.is_active()) {
            Some(fast) => self
                .write_fast(fast, out.lanes, out.serial, pkt, pt)
                .map(Sent::Fast),
            None => self.write_rtc(out.rtc, pkt, pt).map(|()| Sent::Rtc),
        }
    }

    /// The fast path: the payload is copied once per send lane (not per
    /// subscriber) and protected there.
    fn write_fast(
        &mut self,
        fast: &mut FastPeer,
        lanes: &mut Lanes,
        serial: u64,
        pkt: &AudioPacket<'_>,
        pt: Pt,
    ) -> Result<usize, DropReason> {
        fast.check(pkt.payload.len())?;
        let (seq, ts) = self
            .rewrite(pkt.ssrc, pkt.seq, pkt.rtp_time, pkt.arrived)
            .ok_or(DropReason::Stale)?;
        let n = fast.write_rtp(
            RtpOut {
                pt,
                marker: pkt.marker,
                seq,
                timestamp: ts,
                ssrc: self.ssrc,
                mid: &self.mid,
                audio_level: pkt.audio_level,
                voice_activity: pkt.voice_activity,
                payload: pkt.payload,
                serial,
            },
            lanes,
        )?;
        self.sent.on_sent(pkt.payload.len(), ts, pkt.arrived);
        Ok(n)
    }

    /// str0m's send stream. The payload bytes are shared, never copied or
    /// changed (Opus, RED, FEC and DTX pass through untouched).
    fn write_rtc(
        &mut self,
        rtc: &mut Rtc,
        pkt: &AudioPacket<'_>,
        pt: Pt,
    ) -> Result<(), DropReason> {
        let (seq, ts) = self
            .rewrite(pkt.ssrc, pkt.seq, pkt.rtp_time, pkt.arrived)
            .ok_or(DropReason::Stale)?;
        let mut api = rtc.direct_api();
        let tx = api.stream_tx(&self.ssrc).ok_or(DropReason::NoStream)?;
        let ext = ExtensionValues {
            audio_level: pkt.audio_level,
            voice_activity: pkt.voice_activity,
            ..Default::default()
        };
        tx.write_rtp(
            RtpWrite::new(pt, seq.into(), ts, pkt.arrived, pkt.shared())
                .marker(pkt.marker)
                .ext_vals(ext)
                .nackable(true),
        );
        Ok(())
    }
}

impl DownTrack {
    /// Rewrites a video packet and writes it to str0m's send stream; `vp8`
    /// rewrites the VP8 picture id / TL0PICIDX (applied by str0m while
    /// serializing, so the shared payload is still not copied here).
    pub fn write_video(
        &mut self,
        rtc: &mut Rtc,
        pkt: &RtpPacket,
        pt: Pt,
        vp8: Option<Vp8Patch>,
    ) -> Result<(), DropReason> {
        let (seq, ts) = self
            .rewrite(
                pkt.header.ssrc,
                *pkt.seq_no,
                pkt.header.timestamp,
                pkt.timestamp,
            )
            .ok_or(DropReason::Stale)?;
        let mut api = rtc.direct_api();
        let tx = api.stream_tx(&self.ssrc).ok_or(DropReason::NoStream)?;
        let ext = ExtensionValues {
            video_orientation: pkt.header.ext_vals.video_orientation,
            ..Default::default()
        };
        let mut w = RtpWrite::new(pt, seq.into(), ts, pkt.timestamp, pkt.payload.clone())
            .marker(pkt.header.marker)
            .ext_vals(ext)
            .nackable(true);
        if let Some(p) = vp8 {
            w = w.vp8_patch(p);
        }
        tx.write_rtp(w);
        Ok(())
    }
}

impl FastTrack for DownTrack {
    fn mid(&self) -> Mid {
        self.mid
    }

    fn ssrc(&self) -> Ssrc {
        self.ssrc
    }

    fn has_rtx(&self) -> bool {
        self.rtx.is_some()
    }

    fn is_fast(&self) -> bool {
        self.fast_owned
    }

    fn set_fast(&mut self) {
        self.fast_owned = true;
    }

    fn write_sender_report(&self, buf: &mut Vec<u8>, now: Instant, wall: SystemTime) -> bool {
        rtcp::write_sr(buf, *self.ssrc, &self.sent, self.clock_rate, now, wall).is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn continuous_across_source_wrap() {
        let t0 = Instant::now();
        let mut dt = DownTrack::new("1".into(), 1.into(), None, 48_000);
        let src: Ssrc = 7.into();
        // Extended input numbers cross the 16-bit wrap: 65534, 65535, 65536 (=0), 65537 (=1).
        let mut outs = vec![];
        for (i, seq) in (65_534u64..65_538).enumerate() {
            let ts = 4_294_966_000u32.wrapping_add(960 * i as u32);
            outs.push(
                dt.rewrite(src, seq, ts, t0 + Duration::from_millis(20 * i as u64))
                    .unwrap(),
            );
        }
        assert!(outs[0].0 < INITIAL_SEQ_MAX);
        for w in outs.windows(2) {
            assert_eq!(w[1].0, w[0].0 + 1);
            assert_eq!(w[1].1, w[0].1.wrapping_add(960));
        }
    }

    #[test]
    fn source_switch_continues_numbers_and_time() {
        let t0 = Instant::now();
        let mut dt = DownTrack::new("1".into(), 1.into(), None, 48_000);
        let (s1, _) = dt.rewrite(10.into(), 100, 1000, t0).unwrap();
        let (s2, t2) = dt
            .rewrite(10.into(), 101, 1960, t0 + Duration::from_millis(20))
            .unwrap();
        assert_eq!(s2, s1 + 1);
        // A different source with unrelated numbers, 100 ms later.
        let (s3, t3) = dt
            .rewrite(20.into(), 50_000, 7, t0 + Duration::from_millis(120))
            .unwrap();
        assert_eq!(s3, s2 + 1);
        assert_eq!(t3, t2.wrapping_add(4800));
        let (s4, t4) = dt
            .rewrite(20.into(), 50_001, 967, t0 + Duration::from_millis(140))
            .unwrap();
        assert_eq!((s4, t4), (s3 + 1, t3.wrapping_add(960)));
        // Late packet of the new source from before its anchor: dropped.
        assert!(dt.rewrite(20.into(), 49_999, 0, t0).is_none());
        // Reordering after the anchor keeps its relative position.
        let (s5, _) = dt.rewrite(20.into(), 50_003, 2887, t0).unwrap();
        assert_eq!(s5, s3 + 3);
        // A resync (e.g. mute toggled) re-anchors right after the highest number sent.
        dt.resync();
        let (s6, _) = dt
            .rewrite(20.into(), 60_000, 0, t0 + Duration::from_secs(2))
            .unwrap();
        assert_eq!(s6, s5 + 1);
    }
}
