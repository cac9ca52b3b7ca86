//! Sender reports for the SSRCs the fast path sends on (RFC 3550 §6.4.1),
//! with an SDES CNAME chunk so the compound packet is complete (§6.1).

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Seconds between 1900-01-01 (NTP era 0) and the Unix epoch.
const NTP_UNIX_OFFSET: u64 = 2_208_988_800;

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
    fn ntp_of_unix_epoch() {
        assert_eq!(ntp_time(UNIX_EPOCH) >> 32, NTP_UNIX_OFFSET);
        let half = UNIX_EPOCH + Duration::from_millis(500);
        assert_eq!(ntp_time(half) & 0xffff_ffff, 1 << 31);
    }
}
