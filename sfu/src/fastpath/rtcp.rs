//! Sender reports for the SSRCs the fast path sends on (RFC 3550 §6.4.1),
//! with an SDES CNAME chunk so the compound packet is complete (§6.1); and
//! reading the report blocks and NACKs subscribers send back about them.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Seconds between 1900-01-01 (NTP era 0) and the Unix epoch.
const NTP_UNIX_OFFSET: u64 = 2_208_988_800;

/// RTCP packet types and the generic NACK's feedback message type.
pub(crate) const PT_SR: u8 = 200;
pub(crate) const PT_RR: u8 = 201;
pub(crate) const PT_RTPFB: u8 = 205;
pub(crate) const FMT_NACK: u8 = 1;

/// Sender reports kept for RTT: a receiver report names the SR it answers
/// by its NTP time's middle 32 bits (LSR).
const SR_LOG_LEN: usize = 16;

/// When the last rounds of sender reports went out: (LSR value, time). One
/// round shares one NTP time across every peer, so one log serves all.
#[derive(Debug, Default)]
pub(crate) struct SrLog {
    entries: [(u32, Option<Instant>); SR_LOG_LEN],
    next: usize,
}

impl SrLog {
    /// Notes a round of sender reports stamped with `wall`, sent at `now`.
    pub fn push(&mut self, wall: SystemTime, now: Instant) {
        self.entries[self.next] = (ntp_middle(ntp_time(wall)), Some(now));
        self.next = (self.next + 1) % SR_LOG_LEN;
    }

    /// RTT of a report block received at `now` (RFC 3550 §6.4.1): the time
    /// since we sent the SR named by `lsr`, minus the receiver's delay `dlsr`
    /// (1/65536 s). `None` if the block names no SR (LSR 0) or one not in
    /// the log. Measured on our monotonic clock, so wall-clock steps between
    /// the SR and the report do not matter.
    pub fn rtt(&self, lsr: u32, dlsr: u32, now: Instant) -> Option<Duration> {
        if lsr == 0 {
            return None;
        }
        let sent = self
            .entries
            .iter()
            .find_map(|&(v, at)| at.filter(|_| v == lsr))?;
        let delay = Duration::from_nanos((dlsr as u64 * 1_000_000_000) >> 16);
        Some(now.saturating_duration_since(sent).saturating_sub(delay))
    }
}

/// The middle 32 bits of a 64-bit NTP timestamp (LSR, RFC 3550 §6.4.1).
pub(crate) fn ntp_middle(ntp: u64) -> u32 {
    (ntp >> 16) as u32
}

/// One report block (RFC 3550 §6.4.1), the fields the SFU uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ReportBlock {
    pub ssrc: u32,
    /// Fraction lost since the previous report, in 1/256.
    pub fraction_lost: u8,
    /// Interarrival jitter in RTP timestamp units.
    pub jitter: u32,
    pub lsr: u32,
    pub dlsr: u32,
}

/// What [`read_compound`] finds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Item {
    Report(ReportBlock),
    /// A generic NACK (RFC 4585 §6.2.1) about `media_ssrc`.
    Nack {
        media_ssrc: u32,
    },
}

/// Walks a plain compound RTCP packet and hands every report block (of SRs
/// and RRs) and every generic NACK to `f`. Stops at the first malformed
/// packet; never allocates.
pub(crate) fn read_compound(mut buf: &[u8], mut f: impl FnMut(Item)) {
    let be32 = |b: &[u8], at: usize| u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
    while buf.len() >= 4 {
        if buf[0] >> 6 != 2 {
            return;
        }
        let count = (buf[0] & 0x1f) as usize;
        let len = (u16::from_be_bytes([buf[2], buf[3]]) as usize + 1) * 4;
        if len > buf.len() {
            return;
        }
        let pkt = &buf[..len];
        let blocks_at = match buf[1] {
            PT_SR => Some(28),
            PT_RR => Some(8),
            _ => None,
        };
        if let Some(at) = blocks_at {
            for i in 0..count {
                let o = at + 24 * i;
                if o + 24 > pkt.len() {
                    break;
                }
                f(Item::Report(ReportBlock {
                    ssrc: be32(pkt, o),
                    fraction_lost: pkt[o + 4],
                    jitter: be32(pkt, o + 12),
                    lsr: be32(pkt, o + 16),
                    dlsr: be32(pkt, o + 20),
                }));
            }
        } else if buf[1] == PT_RTPFB && count == FMT_NACK as usize && pkt.len() >= 12 {
            f(Item::Nack {
                media_ssrc: be32(pkt, 8),
            });
        }
        buf = &buf[len..];
    }
}

/// Send-side counters of one SSRC, as reported in its sender reports.
#[derive(Debug, Default, Clone)]
pub(crate) struct SendStats {
    /// Packets sent (wrapping, as the SR field).
    pub packets: u32,
    /// Payload octets sent (wrapping, as the SR field).
    pub octets: u32,
    /// RTP timestamp and wall-clock time of the latest packet sent.
    pub last: Option<(u32, Instant)>,
}

impl SendStats {
    pub fn on_sent(&mut self, payload_len: usize, ts: u32, at: Instant) {
        self.packets = self.packets.wrapping_add(1);
        self.octets = self.octets.wrapping_add(payload_len as u32);
        self.last = Some((ts, at));
    }
}

/// 64-bit NTP timestamp of `wall`.
pub(crate) fn ntp_time(wall: SystemTime) -> u64 {
    let d = wall.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
    let secs = d.as_secs() + NTP_UNIX_OFFSET;
    let frac = ((d.subsec_nanos() as u64) << 32) / 1_000_000_000;
    (secs << 32) | frac
}

/// Appends one SR (no report blocks) for `ssrc` at `now` / `wall` (the same
/// instant on both clocks) to `out`; `None` if nothing was sent yet.
pub(crate) fn write_sr(
    out: &mut Vec<u8>,
    ssrc: u32,
    stats: &SendStats,
    clock_rate: u32,
    now: Instant,
    wall: SystemTime,
) -> Option<()> {
    let (ts, at) = stats.last?;
    // The RTP time that corresponds to `now`: the last packet's timestamp
    // advanced by the wall-clock time since it was sent.
    let elapsed = now.saturating_duration_since(at);
    let rtp = ts.wrapping_add((elapsed.as_micros() * clock_rate as u128 / 1_000_000) as u32);
    out.extend_from_slice(&[0x80, 200, 0, 6]);
    out.extend_from_slice(&ssrc.to_be_bytes());
    out.extend_from_slice(&ntp_time(wall).to_be_bytes());
    out.extend_from_slice(&rtp.to_be_bytes());
    out.extend_from_slice(&stats.packets.to_be_bytes());
    out.extend_from_slice(&stats.octets.to_be_bytes());
    Some(())
}

/// Appends an SDES packet with one CNAME chunk per SSRC in `ssrcs`.
pub(crate) fn write_sdes(out: &mut Vec<u8>, ssrcs: &[u32], cname: &[u8]) {
    if ssrcs.is_empty() || ssrcs.len() > 31 {
        return;
    }
    let cname = &cname[..cname.len().min(255)];
    let start = out.len();
    out.extend_from_slice(&[0x80 | ssrcs.len() as u8, 202, 0, 0]);
    for ssrc in ssrcs {
        out.extend_from_slice(&ssrc.to_be_bytes());
        out.push(1); // CNAME
        out.push(cname.len() as u8);
        out.extend_from_slice(cname);
        // Item list end (one null octet at least), padded to 32 bits.
        out.push(0);
        while !(out.len() - start).is_multiple_of(4) {
            out.push(0);
        }
    }
    let words = ((out.len() - start) / 4 - 1) as u16;
    out[start + 2..start + 4].copy_from_slice(&words.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use str0m::rtp::rtcp::Rtcp;

    #[test]
    fn sr_and_sdes_parse_as_str0m_reads_them() {
        let t0 = Instant::now();
        let mut stats = SendStats::default();
        stats.on_sent(100, 1000, t0);
        stats.on_sent(60, 1960, t0 + Duration::from_millis(20));
        let mut buf = Vec::new();
        let wall = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        write_sr(
            &mut buf,
            0x1234_5678,
            &stats,
            48_000,
            t0 + Duration::from_millis(120),
            wall,
        )
        .unwrap();
        write_sdes(&mut buf, &[0x1234_5678], b"confab");
        let Ok(Rtcp::SenderReport(sr)) = Rtcp::try_from(&buf[..28]) else {
            panic!("not an SR");
        };
        assert_eq!(*sr.sender_info.ssrc, 0x1234_5678);
        assert_eq!(sr.sender_info.sender_packet_count, 2);
        assert_eq!(sr.sender_info.sender_octet_count, 160);
        // 100 ms after the last packet: 4800 samples later.
        assert_eq!(sr.sender_info.rtp_time.numer(), 1960 + 4800);
        assert!(matches!(
            Rtcp::try_from(&buf[28..]),
            Ok(Rtcp::SourceDescription(_))
        ));
        assert_eq!(buf.len() % 4, 0);
    }

    #[test]
    fn rtt_from_the_logged_sender_report() {
        let t0 = Instant::now();
        let wall = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let mut log = SrLog::default();
        log.push(wall, t0);
        log.push(wall + Duration::from_secs(1), t0 + Duration::from_secs(1));
        let lsr = ntp_middle(ntp_time(wall));
        // Answered 1.5 s after the first SR, held 1.25 s (0x1_4000 / 65536) by the receiver.
        let got = log
            .rtt(lsr, 0x0001_4000, t0 + Duration::from_millis(1500))
            .unwrap();
        assert!((got.as_secs_f64() - 0.25).abs() < 1e-4, "{got:?}");
        // Unknown LSR, or none (0): no sample.
        assert_eq!(log.rtt(lsr ^ 0x100, 0, t0), None);
        assert_eq!(log.rtt(0, 0, t0), None);
        // A delay longer than the elapsed time (clock granularity): zero, not a panic.
        assert_eq!(
            log.rtt(lsr, 0x0002_0000, t0 + Duration::from_secs(1)),
            Some(Duration::ZERO)
        );
        // Old rounds fall out of the log.
        for i in 2..=SR_LOG_LEN as u64 {
            log.push(wall + Duration::from_secs(i), t0 + Duration::from_secs(i));
        }
        assert_eq!(log.rtt(lsr, 0, t0 + Duration::from_secs(20)), None);
    }

    #[test]
    fn report_blocks_and_nacks_of_a_compound_packet() {
        let mut buf = Vec::new();
        // SR from SSRC 9 with two blocks.
        buf.extend_from_slice(&[0x82, PT_SR, 0, 18]);
        buf.extend_from_slice(&9u32.to_be_bytes());
        buf.extend_from_slice(&[0; 20]);
        for (ssrc, lost) in [(0x11u32, 64u8), (0x22, 0)] {
            buf.extend_from_slice(&ssrc.to_be_bytes());
            buf.extend_from_slice(&[lost, 0, 0, 1, 0, 0, 0, 50]);
            buf.extend_from_slice(&480u32.to_be_bytes());
            buf.extend_from_slice(&0xaabb_ccddu32.to_be_bytes());
            buf.extend_from_slice(&0x8000u32.to_be_bytes());
        }
        write_sdes(&mut buf, &[9], b"x");
        // Generic NACK about 0x22, then a PLI (ignored).
        buf.extend_from_slice(&[0x81, PT_RTPFB, 0, 3, 0, 0, 0, 9, 0, 0, 0, 0x22, 0, 5, 0, 0]);
        buf.extend_from_slice(&[0x81, 206, 0, 2, 0, 0, 0, 9, 0, 0, 0, 0x22]);
        let mut items = Vec::new();
        read_compound(&buf, |i| items.push(i));
        assert_eq!(
            items,
            vec![
                Item::Report(ReportBlock {
                    ssrc: 0x11,
                    fraction_lost: 64,
                    jitter: 480,
                    lsr: 0xaabb_ccdd,
                    dlsr: 0x8000
                }),
                Item::Report(ReportBlock {
                    ssrc: 0x22,
                    fraction_lost: 0,
                    jitter: 480,
                    lsr: 0xaabb_ccdd,
                    dlsr: 0x8000
                }),
                Item::Nack { media_ssrc: 0x22 },
            ]
        );
        // Truncated or garbage input: no panic, no items past the damage.
        for cut in 0..buf.len() {
            read_compound(&buf[..cut], |_| {});
        }
        let mut n = 0;
        read_compound(&[0x41, 201, 0, 7], |_| n += 1);
        read_compound(&[0x81, 201, 0xff, 0xff, 0, 0], |_| n += 1);
        assert_eq!(n, 0);
    }

    #[test]
    fn ntp_of_unix_epoch() {
        assert_eq!(ntp_time(UNIX_EPOCH) >> 32, NTP_UNIX_OFFSET);
        let half = UNIX_EPOCH + Duration::from_millis(500);
        assert_eq!(ntp_time(half) & 0xffff_ffff, 1 << 31);
    }
}
