//! Entry points for the fuzz targets in `fuzz/` (not an API: the parsers they
//! reach stay crate-private). Each function runs one parser on untrusted bytes
//! and returns plain data the target can check.

use crate::demux::{self, Kind, Stun};
use crate::fastpath::feedback::SrtcpRx;
use crate::fastpath::rtcp::{self, Item};
use crate::fastpath::srtp::{Profile, SrtpTx};

/// What the first look at a datagram on the shared port finds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Demuxed {
    /// `"stun"`, `"dtls"`, `"rtp"`, `"rtcp"`, or `None` for junk.
    pub kind: Option<&'static str>,
    /// For STUN: the local ufrag of a binding request, `Some("")` for other
    /// well-formed STUN, `None` when malformed or not STUN.
    pub ufrag: Option<String>,
    /// For RTP: the SSRC.
    pub ssrc: Option<u32>,
}

/// Classifies a datagram and runs the parser its class goes to first.
pub fn demux(buf: &[u8]) -> Demuxed {
    let kind = demux::classify(buf);
    let mut out = Demuxed {
        kind: kind.map(|k| match k {
            Kind::Stun => "stun",
            Kind::Dtls => "dtls",
            Kind::Rtp => "rtp",
            Kind::Rtcp => "rtcp",
        }),
        ufrag: None,
        ssrc: None,
    };
    match kind {
        Some(Kind::Stun) => {
            out.ufrag = match demux::stun_ufrag(buf) {
                Stun::BindingRequest { local_ufrag } => Some(local_ufrag.to_owned()),
                Stun::Other => Some(String::new()),
                Stun::Malformed => None,
            }
        }
        Some(Kind::Rtp) => out.ssrc = demux::rtp_ssrc(buf),
        _ => {}
    }
    out
}

/// The offer checks run before str0m sees an offer; the error text on refusal.
pub fn check_offer(sdp: &str, max_bytes: usize, max_m_lines: usize) -> Result<(), String> {
    crate::sdp::check_offer(sdp, max_bytes, max_m_lines)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// One item of a compound RTCP packet, as the fast path reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RtcpItem {
    /// A report block: (ssrc, fraction lost, jitter, lsr, dlsr).
    Report(u32, u8, u32, u32, u32),
    /// A generic NACK about this media SSRC.
    Nack(u32),
}

/// Everything the fast path's RTCP reader takes from a plain compound packet.
pub fn read_compound(buf: &[u8]) -> Vec<RtcpItem> {
    let mut items = Vec::new();
    rtcp::read_compound(buf, |item| {
        items.push(match item {
            Item::Report(b) => RtcpItem::Report(b.ssrc, b.fraction_lost, b.jitter, b.lsr, b.dlsr),
            Item::Nack { media_ssrc } => RtcpItem::Nack(media_ssrc),
        })
    });
    items
}

/// The SRTP profiles, by number (0: AES-CM + HMAC-SHA1-80, 1: AES-128-GCM,
/// 2: AES-256-GCM; others wrap).
fn profile(n: u8) -> Profile {
    match n % 3 {
        0 => Profile::Aes128CmSha1_80,
        1 => Profile::AeadAes128Gcm,
        _ => Profile::AeadAes256Gcm,
    }
}

/// Keying material of the right length for `profile(p)`, from `seed`.
pub fn keying_material(p: u8, seed: &[u8]) -> Vec<u8> {
    let len = match profile(p) {
        Profile::Aes128CmSha1_80 => 2 * (16 + 14),
        Profile::AeadAes128Gcm => 2 * (16 + 12),
        Profile::AeadAes256Gcm => 2 * (32 + 12),
    };
    (0..len)
        .map(|i| seed.get(i % seed.len().max(1)).copied().unwrap_or(0) ^ i as u8)
        .collect()
}

/// The receiving SRTCP context for what the DTLS server sends, as a fast
/// path that is the DTLS client builds it.
pub struct SrtcpReceiver(SrtcpRx);

impl SrtcpReceiver {
    pub fn new(p: u8, material: &[u8]) -> Option<Self> {
        SrtcpRx::from_keying_material(profile(p), material, true)
            .ok()
            .map(SrtcpReceiver)
    }

    /// Authenticates and decrypts in place: (SRTCP index, plain length).
    pub fn unprotect(&self, buf: &mut [u8]) -> Option<(u32, usize)> {
        self.0.unprotect(buf)
    }
}

/// The sending contexts of the DTLS server (what [`SrtcpReceiver`] reads).
pub struct SrtpSender(SrtpTx);

impl SrtpSender {
    pub fn new(p: u8, material: &[u8]) -> Option<Self> {
        SrtpTx::from_keying_material(profile(p), material, false)
            .ok()
            .map(SrtpSender)
    }

    /// Bytes SRTCP protection appends.
    pub fn rtcp_overhead(&self) -> usize {
        self.0.profile.rtcp_overhead()
    }

    /// Bytes SRTP protection appends.
    pub fn rtp_overhead(&self) -> usize {
        self.0.profile.rtp_overhead()
    }

    /// Protects `plain` (at least 8 bytes: the RTCP header and sender SSRC
    /// stay in clear) as SRTCP with `index`.
    pub fn protect_rtcp(&self, plain: &[u8], index: u32) -> Vec<u8> {
        assert!(plain.len() >= 8, "an RTCP packet has an 8-byte header");
        let mut buf = plain.to_vec();
        buf.resize(plain.len() + self.rtcp_overhead(), 0);
        let n = self.0.protect_rtcp(&mut buf, plain.len(), index);
        buf.truncate(n);
        buf
    }

    /// Protects the RTP packet `packet` (header `..hlen`, at least 12 bytes)
    /// as SRTP with the 48-bit `index`.
    pub fn protect_rtp(&self, packet: &[u8], hlen: usize, index: u64) -> Vec<u8> {
        assert!(
            hlen >= 12 && hlen <= packet.len(),
            "an RTP header is 12+ bytes"
        );
        let mut buf = packet.to_vec();
        buf.resize(packet.len() + self.rtp_overhead(), 0);
        let n = self.0.protect_rtp(&mut buf, hlen, packet.len(), index);
        buf.truncate(n);
        buf
    }
}

/// Everything a relay datagram between media nodes carries (`relay.rs`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayFields {
    /// The sending node's id ([`relay_node_id`] of its key).
    pub origin: u64,
    pub room: u64,
    pub publisher: u64,
    pub user: u64,
    /// Flag bits (only the low six are defined).
    pub flags: u8,
    /// RFC 6464 level 0..=127, or none.
    pub level: Option<u8>,
    pub marker: bool,
    /// RTP payload type (7 bits).
    pub pt: u8,
    /// Extended RTP sequence number (48 bits are carried).
    pub seq: u64,
    pub timestamp: u32,
    pub ssrc: u32,
    pub payload: Vec<u8>,
}

impl RelayFields {
    /// The fields as they travel: undefined flag bits, levels above 127,
    /// the PT's eighth bit and sequence bits above 48 are not carried.
    pub fn normalized(mut self) -> Self {
        self.flags &= 0x3f;
        self.level = self.level.map(|l| l.min(127));
        self.pt &= 0x7f;
        self.seq &= (1 << 48) - 1;
        self
    }
}

/// The id a node whose relay key is `key` sends as origin.
pub fn relay_node_id(key: &[u8; 16]) -> u64 {
    crate::relay::node_id(key)
}

/// Seals `f` as a relay datagram to a node whose key is `key` (None: the
/// payload is too large to relay).
pub fn seal_relay(f: &RelayFields, key: &[u8; 16]) -> Option<Vec<u8>> {
    use crate::relay::{self, NonceSeq, RelayHeader, RelayKey, RtpFields};
    use crate::{ParticipantId, RoomId, UserTag};
    let mut out = Vec::new();
    relay::seal(
        &mut out,
        &RelayKey::new(key),
        &mut NonceSeq::random(),
        &RelayHeader {
            origin: f.origin,
            room: RoomId::new(f.room),
            publisher: ParticipantId::new(f.publisher),
            user: UserTag::new(f.user),
            flags: f.flags,
            level: f.level,
        },
        &RtpFields {
            marker: f.marker,
            pt: f.pt,
            seq: f.seq,
            timestamp: f.timestamp,
            ssrc: f.ssrc,
        },
        &f.payload,
    )?;
    Some(out)
}

/// Opens a relay datagram with this node's `key`: its fields, or why it is
/// refused (the `reason` it would be counted under).
pub fn open_relay(buf: &[u8], key: &[u8; 16]) -> Result<RelayFields, &'static str> {
    use crate::relay::{self, OpenError, RelayKey};
    let mut buf = buf.to_vec();
    match relay::open(&mut buf, &RelayKey::new(key)) {
        Ok(o) => Ok(RelayFields {
            origin: o.header.origin,
            room: o.header.room.get(),
            publisher: o.header.publisher.get(),
            user: o.header.user.get(),
            flags: o.header.flags,
            level: o.header.level,
            marker: o.rtp.marker,
            pt: o.rtp.pt,
            seq: o.rtp.seq,
            timestamp: o.rtp.timestamp,
            ssrc: o.rtp.ssrc,
            payload: o.payload.to_vec(),
        }),
        Err(e) => Err(match e {
            OpenError::Truncated => "truncated",
            OpenError::Oversize => "oversize",
            OpenError::BadMagic | OpenError::Malformed => "malformed",
            OpenError::Auth => "auth",
        }),
    }
}

/// ICE-TCP framing (RFC 4571) of a byte stream that arrives in `chunks`: the frames taken as
/// the media loop's reader takes them, and whether the stream went bad (a zero or oversized
/// length) before its end. Frames cut across chunks come out whole.
pub fn ice_tcp_frames(chunks: &[&[u8]]) -> (Vec<Vec<u8>>, bool) {
    let mut buf = bytes::BytesMut::new();
    let mut frames = Vec::new();
    for chunk in chunks {
        buf.extend_from_slice(chunk);
        loop {
            match crate::tcp::take_frame(&mut buf) {
                Ok(Some(f)) => frames.push(f.to_vec()),
                Ok(None) => break,
                Err(_) => return (frames, true),
            }
        }
    }
    (frames, false)
}

/// The largest datagram an ICE-TCP frame carries.
pub const ICE_TCP_MAX_FRAME: usize = crate::tcp::MAX_FRAME;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relay_round_trip_through_the_fuzzing_entry_points() {
        let f = RelayFields {
            origin: relay_node_id(&[1; 16]),
            room: 1,
            publisher: 2,
            user: 3,
            flags: 0xff,
            level: Some(200),
            marker: true,
            pt: 0xff,
            seq: u64::MAX,
            timestamp: 9,
            ssrc: 10,
            payload: vec![1, 2, 3],
        };
        let d = seal_relay(&f, &[2; 16]).unwrap();
        assert_eq!(open_relay(&d, &[2; 16]), Ok(f.clone().normalized()));
        assert_eq!(open_relay(&d, &[3; 16]), Err("auth"));
        assert_eq!(open_relay(&d[..10], &[2; 16]), Err("truncated"));
        assert!(seal_relay(
            &RelayFields {
                payload: vec![0; 1500],
                ..f
            },
            &[2; 16]
        )
        .is_none());
    }
}
