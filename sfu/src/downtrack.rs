//! One forwarded stream to one subscriber: the slot's outgoing SSRC and the
//! sequence-number / timestamp rewriting that keeps it continuous while the
//! source on the slot changes.
//!
//! The rewriting state is shared by both send paths: [`DownTrack::forward`]
//! hands the packet to str0m, the audio fast path (`fastpath::forward`)
//! writes and protects it itself.

use std::time::Instant;

use str0m::media::{Mid, Pt};
use str0m::rtp::{ExtensionValues, RtpPacket, RtpWrite, Ssrc, Vp8Patch};
use str0m::Rtc;

use crate::fastpath::SendStats;
use crate::metrics::DropReason;

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
    pub fast_owned: bool,
    /// What the fast path sent on `ssrc` (for its sender reports).
    pub sent: SendStats,
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

    /// Rewrites `pkt` and hands it to the subscriber's str0m send stream with
    /// payload type `pt` (the subscriber's number for the packet's codec).
    /// The payload bytes are shared, never copied or changed (Opus, RED, FEC
    /// and DTX pass through untouched).
    pub fn forward(&mut self, rtc: &mut Rtc, pkt: &RtpPacket, pt: Pt) -> Result<(), DropReason> {
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
            audio_level: pkt.header.ext_vals.audio_level,
            voice_activity: pkt.header.ext_vals.voice_activity,
            ..Default::default()
        };
        tx.write_rtp(
            RtpWrite::new(pt, seq.into(), ts, pkt.timestamp, pkt.payload.clone())
                .marker(pkt.header.marker)
                .ext_vals(ext)
                .nackable(true),
        );
        Ok(())
    }
}

impl DownTrack {
    /// Like [`DownTrack::forward`] for a video packet; `vp8` rewrites the VP8
    /// picture id / TL0PICIDX (applied by str0m while serializing, so the
    /// shared payload is still not copied here).
    pub fn forward_video(
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
