//! Reading an RTP header in place, telling RTP from RTCP, and extending
//! 16-bit sequence numbers (the SRTP rollover counter).

/// What kind of datagram arrived on a peer's socket (RFC 7983 demultiplexing,
/// RFC 5761 for RTP and RTCP on one port).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Rtp,
    Rtcp,
    /// STUN, DTLS, anything else: str0m's business.
    Other,
}

#[inline]
pub fn classify(d: &[u8]) -> Kind {
    match d {
        [b0, b1, ..] if (128..=191).contains(b0) => {
            // The second byte is the RTCP packet type (192..=223 as RTCP
            // uses it) or the RTP marker bit and payload type.
            if (192..=223).contains(b1) {
                Kind::Rtcp
            } else if d.len() >= 12 {
                Kind::Rtp
            } else {
                Kind::Other
            }
        }
        _ => Kind::Other,
    }
}

/// The fixed part of an RTP header and where the payload starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub seq: u16,
    pub timestamp: u32,
    pub ssrc: u32,
    /// Header length (fixed part, CSRCs, extension block).
    pub len: usize,
    /// The padding bit: the payload's last byte says how much to drop.
    pub padding: bool,
}

impl Header {
    /// Parses the header of `d`; `None` if it is not RTP version 2 or its
    /// declared lengths run past the datagram.
    #[inline]
    pub fn parse(d: &[u8]) -> Option<Header> {
        if d.len() < 12 || d[0] >> 6 != 2 {
            return None;
        }
        let cc = (d[0] & 0x0f) as usize;
        let mut len = 12 + 4 * cc;
        if d[0] & 0x10 != 0 {
            let ext = d.get(len + 2..len + 4)?;
            len += 4 + 4 * u16::from_be_bytes([ext[0], ext[1]]) as usize;
        }
        if len > d.len() {
            return None;
        }
        Some(Header {
            seq: u16::from_be_bytes([d[2], d[3]]),
            timestamp: u32::from_be_bytes([d[4], d[5], d[6], d[7]]),
            ssrc: u32::from_be_bytes([d[8], d[9], d[10], d[11]]),
            len,
            padding: d[0] & 0x20 != 0,
        })
    }
}

/// Extends one stream's 16-bit sequence numbers to 48 bits (RFC 3711
/// Appendix A): the rollover counter is guessed per packet and only
/// committed once the packet authenticated.
#[derive(Clone, Copy, Debug, Default)]
pub struct SeqExtender {
    /// Highest extended sequence number accepted so far.
    highest: Option<u64>,
}

impl SeqExtender {
    /// The extended sequence number `seq` most likely has.
    #[inline]
    pub fn guess(&self, seq: u16) -> u64 {
        let Some(h) = self.highest else {
            return seq as u64;
        };
        let roc = h >> 16;
        let s_l = (h & 0xffff) as i64;
        let s = seq as i64;
        let v = if s_l < 32_768 {
            if s - s_l > 32_768 {
                roc.saturating_sub(1)
            } else {
                roc
            }
        } else if s_l - 32_768 > s {
            roc + 1
        } else {
            roc
        };
        (v << 16) | seq as u64
    }

    /// Commits an authenticated packet's extended sequence number.
    #[inline]
    pub fn accept(&mut self, ext: u64) {
        if self.highest.is_none_or(|h| ext > h) {
            self.highest = Some(ext);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_by_first_bytes() {
        let mut rtp = [0u8; 20];
        rtp[0] = 0x80;
        rtp[1] = 111;
        assert_eq!(classify(&rtp), Kind::Rtp);
        rtp[1] = 0x80 | 111; // marker bit
        assert_eq!(classify(&rtp), Kind::Rtp);
        rtp[1] = 200;
        assert_eq!(classify(&rtp), Kind::Rtcp);
        assert_eq!(classify(&[0x00, 0x01, 0, 0]), Kind::Other); // STUN
        assert_eq!(classify(&[22, 254, 253]), Kind::Other); // DTLS
        assert_eq!(classify(&[0x80, 111, 0]), Kind::Other); // too short for RTP
        assert_eq!(classify(&[]), Kind::Other);
    }

    #[test]
    fn header_lengths() {
        // X=1 with one extension word, CC=1.
        let mut d = vec![
            0x91, 111, 0x01, 0x02, 0, 0, 0x03, 0xc0, 0xaa, 0xbb, 0xcc, 0xdd,
        ];
        d.extend_from_slice(&[1, 2, 3, 4]); // CSRC
        d.extend_from_slice(&[0xbe, 0xde, 0, 1, 0x10, 0xff, 0, 0]);
        d.extend_from_slice(b"payload");
        let h = Header::parse(&d).unwrap();
        assert_eq!(h.len, 12 + 4 + 8);
        assert_eq!((h.seq, h.timestamp, h.ssrc), (0x0102, 960, 0xaabb_ccdd));
        assert!(!h.padding);
        // Extension length past the end; version 1; short: no header.
        let mut long = d[..24].to_vec();
        long[19] = 9;
        assert_eq!(Header::parse(&long), None);
        let mut v1 = d.clone();
        v1[0] = 0x51;
        assert_eq!(Header::parse(&v1), None);
        for cut in 0..16 {
            assert_eq!(Header::parse(&d[..cut]), None, "{cut}");
        }
    }

    #[test]
    fn sequence_numbers_extend_across_wraps_and_reorders() {
        let mut x = SeqExtender::default();
        let mut feed = |seq: u16| {
            let e = x.guess(seq);
            x.accept(e);
            e
        };
        assert_eq!(feed(65_534), 65_534);
        assert_eq!(feed(65_535), 65_535);
        assert_eq!(feed(0), 65_536);
        // A late packet from before the wrap keeps the old counter.
        assert_eq!(feed(65_533), 65_533);
        assert_eq!(feed(1), 65_537);
        // Far into the new cycle; a late packet; the next wrap.
        assert_eq!(feed(30_000), 65_536 + 30_000);
        assert_eq!(feed(20_000), 65_536 + 20_000);
        assert_eq!(feed(60_000), 65_536 + 60_000);
        assert_eq!(feed(10), 2 * 65_536 + 10);
        // More than half a cycle ahead reads as a late packet (RFC 3711).
        assert_eq!(feed(40_000), 65_536 + 40_000);
        // Before any packet of the stream: ROC 0, and never below it.
        let fresh = SeqExtender::default();
        assert_eq!(fresh.guess(5), 5);
        let mut early = SeqExtender::default();
        early.accept(10);
        assert_eq!(early.guess(60_000), 60_000);
    }
}
