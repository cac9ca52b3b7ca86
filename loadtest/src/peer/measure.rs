//! What a peer records for each audio packet it receives: arrival counts,
//! sequence gaps, loss (by packet identity), latency, jitter, the sampled
//! integrity decode, and the talk-in-turn figures. Both receive paths feed
//! it: str0m's events and the SRTP fast path (`crate::rx`).
//!
//! **Identity without hashing every packet.** A packet's (speaker, counter)
//! is what loss and latency rest on. The first packet of a stream is found
//! by its payload hash ([`Catalog::lookup`]); after that, the stream's RTP
//! timestamp gives the next packet's counter (the SFU only adds a constant
//! per slot and source, a speaker advances one frame per counter), and the
//! guess is confirmed by comparing the payload with that frame's bytes
//! ([`Catalog::origin_if`]). A slot switch to another speaker fails the
//! compare and falls back to the hash. So every packet is still identified
//! exactly and gets its own latency: nothing is sampled, and loss, gaps,
//! duplicates and latency percentiles are the same figures as with a hash
//! per packet.

use std::sync::atomic::Ordering;
use std::time::Instant;

use super::{PeerReport, VoiceShared, COL_RECEIVED, COL_RX};
use crate::audio::{Catalog, LoopResolver, FRAME_SAMPLES, SAMPLE_RATE};
use crate::stats::{Jitter, SeenSet};
use crate::turns::Turns;

use super::SeqTrack;

/// One received audio packet, from either receive path.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Received<'a> {
    pub ssrc: u32,
    /// Extended RTP sequence number.
    pub seq: u64,
    pub rtp_ts: u32,
    pub payload: &'a [u8],
    /// Kernel arrival time, µs on the shared clock (when the socket has
    /// SO_TIMESTAMPNS).
    pub kernel_us: Option<u64>,
    /// When the tester handled it.
    pub at: Instant,
}

/// Arrival times around a connection's first packets (join and reconnect).
#[derive(Debug, Default)]
pub(crate) struct AudioTimes {
    /// When the server asked this peer to reconnect (VOICE_RECONNECT), until
    /// its first audio packet on the new connection.
    pub reconnect_from: Option<Instant>,
    /// The last audio packet received (on this connection, or on the one it
    /// replaced while none arrived here yet).
    pub last_audio: Option<Instant>,
    /// `last_audio` of the connection this one replaced, until this one's
    /// first packet.
    pub gap_from: Option<Instant>,
}

impl PeerReport {
    /// Records one received audio packet; in an e2ee channel it is decrypted first, into a
    /// buffer reused for every packet, and one that no key opens counts only as received
    /// (a listener would not hear it, so in the window it is lost). No allocation once the
    /// peer's per-stream tables exist; no lock.
    pub(crate) fn on_audio(
        &mut self,
        shared: &VoiceShared,
        times: &mut AudioTimes,
        t_join: Instant,
        p: &Received<'_>,
    ) {
        let Some(rx) = self.e2ee_rx.as_mut() else {
            return self.on_plain_audio(shared, times, t_join, p);
        };
        let Some(plain) = rx.open(p.payload) else {
            self.rx_total += 1;
            return;
        };
        self.on_plain_audio(
            shared,
            times,
            t_join,
            &Received {
                payload: &plain,
                ..*p
            },
        );
        if let Some(rx) = self.e2ee_rx.as_mut() {
            rx.give_back(plain);
        }
    }

    fn on_plain_audio(
        &mut self,
        shared: &VoiceShared,
        times: &mut AudioTimes,
        t_join: Instant,
        p: &Received<'_>,
    ) {
        self.rx_total += 1;
        let app_us = shared.clock.us_of(p.at);
        let now_us = p.kernel_us.unwrap_or(app_us);
        if self.first_audio_us.is_none() {
            self.first_audio_us = Some(p.at.saturating_duration_since(t_join).as_micros() as u64);
        }
        if let Some(t0) = times.reconnect_from.take() {
            self.reconnect_us
                .push(p.at.saturating_duration_since(t0).as_micros() as u64);
            if let Some(g) = times.gap_from.take() {
                self.reconnect_gap_us
                    .push(p.at.saturating_duration_since(g).as_micros() as u64);
            }
        }
        times.last_audio = Some(p.at);
        if shared.in_window(now_us) {
            self.rx_in_window += 1;
            shared.series.add(now_us, COL_RX, 1);
            self.seq_for(p.ssrc).update(p.seq);
        }
        let (origin, hashed) = identify(&shared.catalog, self.loops_for(p.ssrc), p);
        self.hash_lookups += hashed as u64;
        if let (Some(o), Some(t)) = (&origin, shared.turns) {
            if shared.in_window(o.send_us) {
                self.on_turn_packet(
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
                self.latency.record_us(lat);
                self.latency_app.record_us(app_us.saturating_sub(o.send_us));
                if self.seen_for(o.speaker).insert(o.counter) {
                    shared.series.add(o.send_us, COL_RECEIVED, 1);
                    shared.series.latency(o.send_us, lat);
                    let every = shared.integrity_every;
                    if every > 0 && self.rx_in_window.is_multiple_of(every) {
                        self.check_integrity(
                            &shared.catalog,
                            o.speaker as usize,
                            o.counter,
                            p.payload,
                        );
                    }
                }
                let arrival = now_us * (SAMPLE_RATE as u64 / 1000) / 1000;
                self.jitter_for(p.ssrc).update(arrival, p.rtp_ts);
            }
            Some(_) => {}
            None => self.unknown_payloads += 1,
        }
    }

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

/// The packet's origin: the stream's prediction confirmed by its bytes, else
/// the payload hash placed by the stream's timestamps (see the module doc).
/// Also says whether the hash was needed.
#[inline]
fn identify(
    catalog: &Catalog,
    stream: &mut LoopResolver,
    p: &Received<'_>,
) -> (Option<crate::audio::Origin>, bool) {
    if let Some(o) = stream
        .predict(p.rtp_ts)
        .and_then(|(speaker, counter)| catalog.origin_if(speaker, counter, p.payload))
    {
        stream.note(&o, p.rtp_ts);
        return (Some(o), false);
    }
    let o = catalog
        .lookup(p.payload)
        .map(|o| stream.resolve(o, p.rtp_ts));
    (o, true)
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;
    use crate::audio::FRAMES;
    use crate::rx::srtp::{Profile, SrtpRx, SrtpTxForTest, TAG_LEN};
    use crate::rx::FastRx;

    /// The SFU's rewrite of packet `c` of `speaker` onto one slot: its own
    /// SSRC, sequence numbers (starting just below a wrap) and timestamps.
    fn wire(
        tx: &SrtpTxForTest,
        cat: &Catalog,
        speaker: usize,
        c: u64,
        seq: u64,
        ts: u32,
    ) -> Vec<u8> {
        let mut d = vec![0x90, 111];
        d.extend_from_slice(&(seq as u16).to_be_bytes());
        d.extend_from_slice(&ts.to_be_bytes());
        d.extend_from_slice(&0x0102_0304u32.to_be_bytes());
        d.extend_from_slice(&[0xbe, 0xde, 0, 1, 0x10, 0x85, 0, 0]);
        let hlen = d.len();
        d.extend_from_slice(&cat.frame(speaker, c).payload);
        let len = d.len();
        d.resize(len + TAG_LEN, 0);
        tx.seal_rtp(&mut d, hlen, len, seq);
        d
    }

    /// The whole fast receive path on a crafted stream — drops, a reorder, a
    /// duplicate, a late packet, forged datagrams, a sequence-number wrap, a
    /// loop of the catalog and a switch to another speaker on the slot —
    /// counts loss, gaps, recoveries and duplicates exactly, gives every
    /// packet its own latency, and hashes only where a stream's prediction
    /// cannot hold.
    #[test]
    fn fast_path_counts_every_packet_exactly() {
        let cat = Catalog::generate(2, 21).unwrap();
        let n = FRAMES as u64 + 100; // past one loop of the catalog
        let send_us = |c: u64| 1_000_000 + c * 20_000;
        let shared = VoiceShared::standalone(cat, (1_000_000, 100_000_000), 10);
        let material: Vec<u8> = (0..88).map(|i| (i * 7 + 1) as u8).collect();
        let tx = SrtpTxForTest::peer_of(Profile::AeadAes256Gcm, &material, true).unwrap();
        let mut fast =
            FastRx::with_keys(SrtpRx::new(Profile::AeadAes256Gcm, &material, true).unwrap());
        let mut rep = PeerReport::default();
        let mut times = AudioTimes::default();
        let t_join = Instant::now();

        let seq0 = 65_400u64; // wraps at counter 136
        let ts0 = 0xffff_0000u32;
        let ts_of = |c: u64| ts0.wrapping_add((c as u32).wrapping_mul(960));
        let mut order: Vec<u64> = (0..n).filter(|c| ![10, 11, 50].contains(c)).collect();
        let i20 = order.iter().position(|&c| c == 20).unwrap();
        order.swap(i20, i20 + 1); // 21 before 20
        let i30 = order.iter().position(|&c| c == 30).unwrap();
        order.insert(i30 + 1, 30); // duplicate
        let i100 = order.iter().position(|&c| c == 100).unwrap();
        order.insert(i100 + 1, 11); // late: a retransmission or a long detour
        let mut forged = 0;
        let mut deliver =
            |rep: &mut PeerReport, times: &mut AudioTimes, mut d: Vec<u8>, sent: u64| {
                let kernel_us = sent + 5_000;
                if let Some(p) = fast.open(&mut d, kernel_us * 48 / 1000) {
                    let r = Received {
                        ssrc: p.ssrc,
                        seq: p.seq,
                        rtp_ts: p.timestamp,
                        payload: p.payload,
                        kernel_us: Some(kernel_us),
                        at: t_join,
                    };
                    rep.on_audio(&shared, times, t_join, &r);
                }
            };
        // Sent in order, each just before the first packet that needs it (a
        // frame's slot is overwritten when the catalog loops).
        let mut marked = 0;
        for &c in &order {
            while marked <= c {
                shared.catalog.mark_sent(0, marked, send_us(marked));
                marked += 1;
            }
            let d = wire(&tx, &shared.catalog, 0, c, seq0 + c, ts_of(c));
            let mut bad = d.clone();
            bad[25] ^= 1;
            deliver(&mut rep, &mut times, bad, send_us(c));
            forged += 1;
            deliver(&mut rep, &mut times, d[..d.len() - 3].to_vec(), send_us(c));
            forged += 1;
            deliver(&mut rep, &mut times, d, send_us(c));
        }
        // The slot switches to speaker 1 (the SFU keeps the slot's sequence
        // and moves the timestamp on by an arbitrary amount).
        for c in 0..20 {
            shared.catalog.mark_sent(1, c, send_us(c) + 7);
            let d = wire(
                &tx,
                &shared.catalog,
                1,
                c,
                seq0 + n + c,
                ts_of(n + 5000 + c),
            );
            deliver(&mut rep, &mut times, d, send_us(c) + 7);
        }
        assert_eq!(fast.auth_failures, forged);

        let seen0 = &rep.seen.iter().find(|(s, _)| *s == 0).unwrap().1;
        assert_eq!(seen0.unique(), n - 2, "10 and 50 lost, 11 late but there");
        assert_eq!(seen0.duplicates(), 1);
        let seen1 = &rep.seen.iter().find(|(s, _)| *s == 1).unwrap().1;
        assert_eq!((seen1.unique(), seen1.duplicates()), (20, 0));
        let (_, seq) = rep.seq[0];
        // Skipped: 10+11, 50, 20 (overtaken by 21); filled later: 20 and 11.
        assert_eq!((seq.gaps, seq.recovered), (4, 2));
        let arrivals = order.len() as u64 + 20;
        assert_eq!(rep.rx_total, arrivals);
        assert_eq!(rep.rx_in_window, arrivals);
        assert_eq!(rep.latency.count(), arrivals, "a latency for every packet");
        assert_eq!(rep.latency.max_us(), rep.latency.percentile_us(1.0));
        assert!((4_950..=5_050).contains(&rep.latency.percentile_us(50.0)));
        assert_eq!(rep.unknown_payloads, 0);
        assert!(rep.integrity.checked > 0);
        assert_eq!(rep.integrity.failed, 0);
        // Hashed: the stream's first packet and the first after the switch.
        assert_eq!(rep.hash_lookups, 2);
    }
}
