//! RTCP for streams the fast path receives: RFC 3550 receiver reports that
//! we write (str0m never sees those packets, so its reports would carry no
//! blocks for them) and the SFU's sender reports we read for their LSR/DLSR.

use std::time::Instant;

use crate::stats::Jitter;

const PT_SR: u8 = 200;
const PT_RR: u8 = 201;
const PT_SDES: u8 = 202;
/// Report blocks per RR packet (the 5-bit count).
pub const MAX_BLOCKS: usize = 31;

/// RFC 3550 Appendix A.3 reception statistics of one stream, counted on
/// every packet that authenticated (duplicates included, as the RFC does).
#[derive(Clone, Debug, Default)]
pub struct Reception {
    base: Option<u64>,
    max: u64,
    received: u64,
    expected_prior: u64,
    received_prior: u64,
    jitter: Jitter,
    /// Middle 32 bits of the last sender report's NTP time, and its arrival.
    last_sr: Option<(u32, Instant)>,
}

impl Reception {
    /// `ext_seq` extended sequence number; `arrival` in RTP clock units.
    #[inline]
    pub fn on_packet(&mut self, ext_seq: u64, arrival: u64, rtp_ts: u32) {
        match self.base {
            None => {
                self.base = Some(ext_seq);
                self.max = ext_seq;
            }
            Some(_) => self.max = self.max.max(ext_seq),
        }
        self.received += 1;
        self.jitter.update(arrival, rtp_ts);
    }

    pub fn on_sender_report(&mut self, ntp_mid: u32, at: Instant) {
        self.last_sr = Some((ntp_mid, at));
    }

    /// The 24-byte report block about `ssrc` as of `now`; starts a new
    /// interval for the fraction lost. `None` before the first packet.
    pub fn block(&mut self, ssrc: u32, now: Instant) -> Option<[u8; 24]> {
        let base = self.base?;
        let expected = self.max - base + 1;
        let lost = expected as i64 - self.received as i64;
        let exp_int = expected - self.expected_prior;
        let rec_int = self.received - self.received_prior;
        self.expected_prior = expected;
        self.received_prior = self.received;
        let lost_int = exp_int as i64 - rec_int as i64;
        let fraction = if exp_int == 0 || lost_int <= 0 {
            0
        } else {
            ((lost_int << 8) / exp_int as i64).min(255) as u8
        };
        // 24-bit signed, clamped (RFC 3550 §6.4.1).
        let cum = lost.clamp(-0x80_0000, 0x7f_ffff) as i32 as u32 & 0xff_ffff;
        let (lsr, dlsr) = match self.last_sr {
            Some((mid, at)) => {
                let d = now.saturating_duration_since(at);
                (
                    mid,
                    (d.as_micros() * 65_536 / 1_000_000).min(u32::MAX as u128) as u32,
                )
            }
            None => (0, 0),
        };
        let mut b = [0u8; 24];
        b[..4].copy_from_slice(&ssrc.to_be_bytes());
        b[4..8].copy_from_slice(&(((fraction as u32) << 24) | cum).to_be_bytes());
        b[8..12].copy_from_slice(&(self.max as u32).to_be_bytes());
        b[12..16].copy_from_slice(&(self.jitter.value().round() as u32).to_be_bytes());
        b[16..20].copy_from_slice(&lsr.to_be_bytes());
        b[20..24].copy_from_slice(&dlsr.to_be_bytes());
        Some(b)
    }
}

/// Appends an RR from `sender` with `blocks` (at most [`MAX_BLOCKS`]) and an
/// SDES CNAME chunk, as one compound RTCP packet (RFC 3550 §6.1).
pub fn write_compound(out: &mut Vec<u8>, sender: u32, blocks: &[[u8; 24]], cname: &[u8]) {
    let blocks = &blocks[..blocks.len().min(MAX_BLOCKS)];
    let words = 1 + 6 * blocks.len();
    out.push(0x80 | blocks.len() as u8);
    out.push(PT_RR);
    out.extend_from_slice(&(words as u16).to_be_bytes());
    out.extend_from_slice(&sender.to_be_bytes());
    for b in blocks {
        out.extend_from_slice(b);
    }
    // SDES: one chunk, CNAME item, a null item ending it, padded to words.
    let cname = &cname[..cname.len().min(255)];
    let chunk = 4 + 2 + cname.len() + 1;
    let padded = chunk.div_ceil(4) * 4;
    out.push(0x81);
    out.push(PT_SDES);
    out.extend_from_slice(&((padded / 4) as u16).to_be_bytes());
    out.extend_from_slice(&sender.to_be_bytes());
    out.push(1);
    out.push(cname.len() as u8);
    out.extend_from_slice(cname);
    out.resize(out.len() + padded - chunk + 1, 0);
}

/// Calls `f(ssrc, ntp_middle_32)` for every sender report in a plain
/// compound RTCP packet. Stops at the first malformed packet.
pub fn sender_reports(mut d: &[u8], mut f: impl FnMut(u32, u32)) {
    while d.len() >= 4 {
        if d[0] >> 6 != 2 {
            return;
        }
        let len = (u16::from_be_bytes([d[2], d[3]]) as usize + 1) * 4;
        let Some(pkt) = d.get(..len) else {
            return;
        };
        if pkt[1] == PT_SR && pkt.len() >= 28 {
            let ssrc = u32::from_be_bytes([pkt[4], pkt[5], pkt[6], pkt[7]]);
            let mid = u32::from_be_bytes([pkt[10], pkt[11], pkt[12], pkt[13]]);
            f(ssrc, mid);
        }
        d = &d[len..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn report_block_counts_loss_per_interval() {
        let mut r = Reception::default();
        let t0 = Instant::now();
        assert!(r.block(7, t0).is_none(), "nothing received yet");
        // 100..=199 with 10 missing, then a duplicate.
        for s in 100u64..200 {
            if s % 10 != 3 {
                r.on_packet(s, s * 960, (s * 960) as u32);
            }
        }
        r.on_packet(150, 150 * 960 + 5, (150 * 960) as u32);
        r.on_sender_report(0xabcd_0123, t0);
        let b = r.block(7, t0 + Duration::from_millis(500)).unwrap();
        assert_eq!(u32::from_be_bytes(b[..4].try_into().unwrap()), 7);
        // 100 expected, 91 received (the duplicate counts): 9 lost.
        assert_eq!(b[4], (9 * 256 / 100) as u8);
        assert_eq!(&b[5..8], &[0, 0, 9]);
        assert_eq!(u32::from_be_bytes(b[8..12].try_into().unwrap()), 199);
        assert_eq!(
            u32::from_be_bytes(b[16..20].try_into().unwrap()),
            0xabcd_0123
        );
        assert_eq!(u32::from_be_bytes(b[20..24].try_into().unwrap()), 32_768);
        // Next interval: nothing lost.
        for s in 200u64..250 {
            r.on_packet(s, s * 960, (s * 960) as u32);
        }
        let b = r.block(7, t0).unwrap();
        assert_eq!(b[4], 0);
        assert_eq!(&b[5..8], &[0, 0, 9]);
    }

    #[test]
    fn compound_is_well_formed_and_sender_reports_are_read() {
        let mut out = Vec::new();
        write_compound(&mut out, 0x1122_3344, &[[1u8; 24], [2u8; 24]], b"abc");
        assert_eq!(out[0], 0x82);
        assert_eq!(out[1], PT_RR);
        assert_eq!(u16::from_be_bytes([out[2], out[3]]), 13, "14 words");
        let sdes = &out[56..];
        assert_eq!(sdes[1], PT_SDES);
        assert_eq!(sdes.len() % 4, 0);
        assert_eq!(
            (u16::from_be_bytes([sdes[2], sdes[3]]) as usize + 1) * 4,
            sdes.len()
        );
        assert_eq!(&sdes[8..13], &[1, 3, b'a', b'b', b'c']);
        // An SR followed by our RR + SDES.
        let mut sr = vec![
            0x80, PT_SR, 0, 6, 0, 0, 0, 42, 0, 0, 0x12, 0x34, 0x56, 0x78, 0, 0,
        ];
        sr.extend_from_slice(&[0u8; 12]);
        sr.extend_from_slice(&out);
        let mut seen = Vec::new();
        sender_reports(&sr, |s, m| seen.push((s, m)));
        assert_eq!(seen, vec![(42, 0x1234_5678)]);
        // Truncated or garbage: no panic, nothing past the damage.
        for cut in 0..sr.len() {
            sender_reports(&sr[..cut], |_, _| {});
        }
        sender_reports(&[0xff; 40], |_, _| panic!("not RTCP"));
    }
}
