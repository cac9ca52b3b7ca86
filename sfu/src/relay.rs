//! Relay datagrams between media nodes (cascade): the wire format, its
//! AES-128-GCM protection, and the reusable outbox the core writes them to.
//! A leaf like `fastpath/`: it knows nothing of rooms or peers; the core's
//! side (who is relayed, remote publishers) is `core/relay.rs`.
//!
//! Datagram (big-endian numbers; `docs/relay.md` has the same table):
//!
//! | bytes | field |
//! |---|---|
//! | 0..2 | magic `b"CR"` |
//! | 2 | version (1) |
//! | 3 | reserved (0) |
//! | 4..16 | nonce: the sender's random 4-byte prefix, then a 64-bit counter |
//! | 16..24 | origin: the sending node's id ([`node_id`] of its own key) |
//! | 24..32 | room id |
//! | 32..40 | publisher (participant id) |
//! | 40..48 | user tag |
//! | 48 | flags ([`FLAG_PRIORITY`], [`FLAG_SPEAKING`], [`FLAG_RED`], [`FLAG_VAD`], [`FLAG_VOICE`], [`FLAG_RESUME`]) |
//! | 49 | audio level, 0 (loud) ..= 127 (silence), or 0xFF for none |
//! | 50..52 | reserved (0) |
//! | 52..56 | rollover count of the RTP sequence number (extended seq >> 16) |
//! | 56..68 | RTP header: V=2, no padding/extension/CSRC, marker, PT, seq, timestamp, SSRC |
//! | 68..n-16 | RTP payload (Opus or RED), untouched |
//! | n-16..n | AES-128-GCM tag |
//!
//! Bytes 0..16 are sent in clear and authenticated (additional data); bytes
//! 16..n-16 are encrypted. The key is the *receiver's* relay key.

use std::net::SocketAddr;

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_128_GCM};

use crate::{ParticipantId, RoomId, UserTag};

/// Where another media node receives relay datagrams, and the key that
/// datagrams sent to it must be encrypted with.
///
/// Signaling learns each node's endpoint from [`crate::Sfu::relay_endpoint`]
/// and hands the endpoints of the other nodes hosting a room to
/// [`crate::Sfu::set_relay_peers`]. `Debug` does not show the key.
#[derive(Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct RelayEndpoint {
    pub addr: SocketAddr,
    pub key: [u8; 16],
}

impl std::fmt::Debug for RelayEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RelayEndpoint")
            .field("addr", &self.addr)
            .field("key", &"<16 bytes>")
            .finish()
    }
}

pub(crate) const MAGIC: [u8; 2] = *b"CR";
pub(crate) const VERSION: u8 = 1;
/// Clear part: magic, version, reserved, nonce.
pub(crate) const CLEAR_LEN: usize = 16;
/// Encrypted relay header before the RTP packet.
pub(crate) const INNER_LEN: usize = 40;
/// The RTP header written (no extension, no CSRC).
pub(crate) const RTP_LEN: usize = 12;
pub(crate) const TAG_LEN: usize = 16;
/// Bytes a relay datagram adds to the RTP payload.
pub(crate) const OVERHEAD: usize = CLEAR_LEN + INNER_LEN + RTP_LEN + TAG_LEN;
/// Largest relay datagram sent or accepted (an Opus packet is far smaller).
pub(crate) const MAX_DATAGRAM: usize = 1500;
/// Largest payload that is relayed.
pub(crate) const MAX_PAYLOAD: usize = MAX_DATAGRAM - OVERHEAD;

/// Flag bits (byte 48).
pub(crate) const FLAG_PRIORITY: u8 = 0x01;
/// The publisher's own node detects speech (its `SpeakingDetector`).
pub(crate) const FLAG_SPEAKING: u8 = 0x02;
/// The payload is RED (RFC 2198) around Opus, else plain Opus.
pub(crate) const FLAG_RED: u8 = 0x04;
/// The packet had the voice-activity bit of RFC 6464; [`FLAG_VOICE`] is its value.
pub(crate) const FLAG_VAD: u8 = 0x08;
pub(crate) const FLAG_VOICE: u8 = 0x10;
/// One of the first packets relayed after a pause in this publisher's relay
/// (it was silent): a gap in sequence numbers before it is not loss.
pub(crate) const FLAG_RESUME: u8 = 0x20;
const KNOWN_FLAGS: u8 = 0x3f;
const NO_LEVEL: u8 = 0xff;

/// The relay header of one packet (everything but the RTP packet).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RelayHeader {
    pub origin: u64,
    pub room: RoomId,
    pub publisher: ParticipantId,
    pub user: UserTag,
    pub flags: u8,
    /// RFC 6464 level, 0 (loud) ..= 127.
    pub level: Option<u8>,
}

/// The RTP fields carried (the payload travels separately).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RtpFields {
    pub marker: bool,
    pub pt: u8,
    /// Extended sequence number (rollover count in bytes 52..56).
    pub seq: u64,
    pub timestamp: u32,
    pub ssrc: u32,
}

/// A relay datagram that authenticated and parsed.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Opened<'a> {
    pub header: RelayHeader,
    pub rtp: RtpFields,
    pub payload: &'a [u8],
}

/// Why a relay datagram was refused (each maps to a `reason` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OpenError {
    /// Shorter than the smallest datagram.
    Truncated,
    /// Larger than [`MAX_DATAGRAM`].
    Oversize,
    /// Not our magic or version.
    BadMagic,
    /// The tag did not verify: another key, or bytes changed on the way.
    Auth,
    /// Authentic but inconsistent (unknown flags, not the RTP header we write).
    Malformed,
}

/// The AES-128-GCM key of one direction (a peer's key to send, ours to receive).
pub(crate) struct RelayKey(LessSafeKey);

impl RelayKey {
    pub fn new(key: &[u8; 16]) -> Self {
        // A 16-byte key is always valid for AES-128-GCM.
        let unbound = UnboundKey::new(&AES_128_GCM, key).expect("a 128-bit AES key");
        RelayKey(LessSafeKey::new(unbound))
    }
}

/// A node's id on the wire: the first 8 bytes of the GCM tag of nothing
/// under its relay key with the all-ones nonce (a key check value). Every
/// node computes it from an endpoint's key alone; it tells nothing of the
/// key. Data nonces never take that value (see [`NonceSeq`]).
pub(crate) fn node_id(key: &[u8; 16]) -> u64 {
    let k = RelayKey::new(key);
    let tag =
        k.0.seal_in_place_separate_tag(
            Nonce::assume_unique_for_key([0xff; 12]),
            Aad::empty(),
            &mut [],
        )
        .expect("sealing nothing");
    let mut id = [0u8; 8];
    id.copy_from_slice(&tag.as_ref()[..8]);
    u64::from_be_bytes(id)
}

/// The sender's nonces: a random prefix chosen at start and a counter, so
/// that no two datagrams sealed under one receiver's key by this node share
/// a nonce (several senders share that key: the random prefixes keep them
/// apart). The counter never reaches `u64::MAX`, so the all-ones nonce of
/// [`node_id`] is never used for data.
pub(crate) struct NonceSeq {
    prefix: [u8; 4],
    counter: u64,
}

impl NonceSeq {
    pub fn random() -> Self {
        let mut prefix = [0u8; 4];
        if aws_lc_rs::rand::fill(&mut prefix).is_err() {
            prefix = rand::random();
        }
        NonceSeq { prefix, counter: 0 }
    }

    fn next(&mut self) -> [u8; 12] {
        if self.counter >= u64::MAX - 1 {
            *self = NonceSeq::random();
        }
        self.counter += 1;
        let mut n = [0u8; 12];
        n[..4].copy_from_slice(&self.prefix);
        n[4..].copy_from_slice(&self.counter.to_be_bytes());
        n
    }
}

/// Appends one sealed relay datagram to `out` (whose capacity is reused);
/// returns its length. The payload must be at most [`MAX_PAYLOAD`] bytes.
pub(crate) fn seal(
    out: &mut Vec<u8>,
    key: &RelayKey,
    nonces: &mut NonceSeq,
    header: &RelayHeader,
    rtp: &RtpFields,
    payload: &[u8],
) -> Option<usize> {
    if payload.len() > MAX_PAYLOAD {
        return None;
    }
    let start = out.len();
    let nonce = nonces.next();
    out.extend_from_slice(&MAGIC);
    out.push(VERSION);
    out.push(0);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&header.origin.to_be_bytes());
    out.extend_from_slice(&header.room.get().to_be_bytes());
    out.extend_from_slice(&header.publisher.get().to_be_bytes());
    out.extend_from_slice(&header.user.get().to_be_bytes());
    out.push(header.flags & KNOWN_FLAGS);
    out.push(header.level.map_or(NO_LEVEL, |l| l.min(127)));
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(&((rtp.seq >> 16) as u32).to_be_bytes());
    out.push(0x80);
    out.push(((rtp.marker as u8) << 7) | (rtp.pt & 0x7f));
    out.extend_from_slice(&(rtp.seq as u16).to_be_bytes());
    out.extend_from_slice(&rtp.timestamp.to_be_bytes());
    out.extend_from_slice(&rtp.ssrc.to_be_bytes());
    out.extend_from_slice(payload);
    let (clear, body) = out[start..].split_at_mut(CLEAR_LEN);
    let Ok(tag) = key.0.seal_in_place_separate_tag(
        Nonce::assume_unique_for_key(nonce),
        Aad::from(&*clear),
        body,
    ) else {
        out.truncate(start);
        return None;
    };
    out.extend_from_slice(tag.as_ref());
    Some(out.len() - start)
}

fn be_u64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_be_bytes(a)
}

fn be_u32(b: &[u8]) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[..4]);
    u32::from_be_bytes(a)
}

/// Authenticates and decrypts a relay datagram in place, then parses it.
/// Never panics, whatever `buf` holds.
pub(crate) fn open<'a>(buf: &'a mut [u8], key: &RelayKey) -> Result<Opened<'a>, OpenError> {
    if buf.len() > MAX_DATAGRAM {
        return Err(OpenError::Oversize);
    }
    if buf.len() < OVERHEAD {
        return Err(OpenError::Truncated);
    }
    if buf[0..2] != MAGIC || buf[2] != VERSION {
        return Err(OpenError::BadMagic);
    }
    let mut nonce = [0u8; 12];
    nonce.copy_from_slice(&buf[4..CLEAR_LEN]);
    let (clear, body) = buf.split_at_mut(CLEAR_LEN);
    let plain = key
        .0
        .open_in_place(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(&*clear),
            body,
        )
        .map_err(|_| OpenError::Auth)?;
    // `plain` is the inner header, the RTP header and the payload.
    if plain.len() < INNER_LEN + RTP_LEN {
        return Err(OpenError::Truncated);
    }
    let (inner, packet) = plain.split_at(INNER_LEN);
    let flags = inner[32];
    if flags & !KNOWN_FLAGS != 0 || inner[34..36] != [0, 0] || clear[3] != 0 {
        return Err(OpenError::Malformed);
    }
    let level = match inner[33] {
        NO_LEVEL => None,
        l if l <= 127 => Some(l),
        _ => return Err(OpenError::Malformed),
    };
    let header = RelayHeader {
        origin: be_u64(&inner[0..8]),
        room: RoomId::new(be_u64(&inner[8..16])),
        publisher: ParticipantId::new(be_u64(&inner[16..24])),
        user: UserTag::new(be_u64(&inner[24..32])),
        flags,
        level,
    };
    let roc = be_u32(&inner[36..40]) as u64;
    // Exactly the header `seal` writes: version 2, no padding, extension or CSRC.
    if packet[0] != 0x80 {
        return Err(OpenError::Malformed);
    }
    let seq16 = u16::from_be_bytes([packet[2], packet[3]]) as u64;
    let rtp = RtpFields {
        marker: packet[1] & 0x80 != 0,
        pt: packet[1] & 0x7f,
        seq: (roc << 16) | seq16,
        timestamp: be_u32(&packet[4..8]),
        ssrc: be_u32(&packet[8..12]),
    };
    Ok(Opened {
        header,
        rtp,
        payload: &packet[RTP_LEN..],
    })
}

/// Relay datagrams waiting to be sent, in one reusable buffer: no allocation
/// per datagram once the buffers have grown to a loop iteration's worth.
#[derive(Default)]
pub(crate) struct RelayOutbox {
    buf: Vec<u8>,
    /// (destination, end offset in `buf`), in order.
    items: Vec<(SocketAddr, usize)>,
}

/// Datagrams held at most before the outbox is drained (a shell that never
/// drains loses the newest ones rather than growing without bound).
pub(crate) const OUTBOX_LIMIT: usize = 4096;

impl RelayOutbox {
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Seals one datagram to `dest`; false when full or the payload is too large.
    pub fn push(
        &mut self,
        dest: SocketAddr,
        key: &RelayKey,
        nonces: &mut NonceSeq,
        header: &RelayHeader,
        rtp: &RtpFields,
        payload: &[u8],
    ) -> bool {
        if self.items.len() >= OUTBOX_LIMIT {
            return false;
        }
        match seal(&mut self.buf, key, nonces, header, rtp, payload) {
            Some(_) => {
                self.items.push((dest, self.buf.len()));
                true
            }
            None => false,
        }
    }

    /// Hands every datagram to `send` (false = not sent) and empties the
    /// outbox, keeping its capacity. Returns (sent, failed).
    pub fn drain(&mut self, mut send: impl FnMut(SocketAddr, &[u8]) -> bool) -> (u64, u64) {
        let (mut sent, mut failed) = (0, 0);
        let mut start = 0;
        for &(dest, end) in &self.items {
            if send(dest, &self.buf[start..end]) {
                sent += 1;
            } else {
                failed += 1;
            }
            start = end;
        }
        self.items.clear();
        self.buf.clear();
        (sent, failed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> RelayHeader {
        RelayHeader {
            origin: 0x0102_0304_0506_0708,
            room: RoomId::new(77),
            publisher: ParticipantId::new(5),
            user: UserTag::new(1005),
            flags: FLAG_PRIORITY | FLAG_SPEAKING | FLAG_VAD | FLAG_VOICE,
            level: Some(23),
        }
    }

    fn rtp() -> RtpFields {
        RtpFields {
            marker: true,
            pt: 111,
            seq: (3 << 16) | 65_530,
            timestamp: 0xdead_beef,
            ssrc: 0x1234_5678,
        }
    }

    fn sealed(key: &[u8; 16], payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let n = seal(
            &mut out,
            &RelayKey::new(key),
            &mut NonceSeq::random(),
            &header(),
            &rtp(),
            payload,
        )
        .unwrap();
        assert_eq!(n, out.len());
        assert_eq!(n, OVERHEAD + payload.len());
        out
    }

    #[test]
    fn round_trip() {
        let key = [7u8; 16];
        let payload = [0xfc, 1, 2, 3, 4, 5];
        let mut d = sealed(&key, &payload);
        // Only the clear part shows: the ids and the payload do not.
        assert_eq!(&d[0..3], b"CR\x01");
        assert!(!d.windows(payload.len()).any(|w| w == payload));
        let o = open(&mut d, &RelayKey::new(&key)).unwrap();
        assert_eq!(o.header, header());
        assert_eq!(o.rtp, rtp());
        assert_eq!(o.payload, payload);
    }

    #[test]
    fn wrong_key_truncation_and_changed_bytes_are_refused() {
        let key = [7u8; 16];
        let good = sealed(&key, &[1; 40]);
        let k = RelayKey::new(&key);
        assert_eq!(
            open(&mut good.clone(), &RelayKey::new(&[8; 16])),
            Err(OpenError::Auth)
        );
        for n in [0, 1, 15, OVERHEAD - 1] {
            assert_eq!(open(&mut good[..n].to_vec(), &k), Err(OpenError::Truncated));
        }
        // Any byte changed, clear or encrypted, fails (or is not ours at all).
        for i in 0..good.len() {
            let mut d = good.clone();
            d[i] ^= 0x20;
            let r = open(&mut d, &k);
            assert!(
                matches!(r, Err(OpenError::Auth) | Err(OpenError::BadMagic)),
                "byte {i}: {r:?}"
            );
        }
        let mut big = vec![0u8; MAX_DATAGRAM + 1];
        big[..3].copy_from_slice(b"CR\x01");
        assert_eq!(open(&mut big, &k), Err(OpenError::Oversize));
    }

    #[test]
    fn nonces_differ_and_node_ids_depend_on_the_key() {
        let mut n = NonceSeq::random();
        let (a, b) = (n.next(), n.next());
        assert_ne!(a, b);
        assert_eq!(a[..4], b[..4]);
        assert_eq!(node_id(&[1; 16]), node_id(&[1; 16]));
        assert_ne!(node_id(&[1; 16]), node_id(&[2; 16]));
    }

    #[test]
    fn outbox_reuses_its_buffers() {
        let key = RelayKey::new(&[3; 16]);
        let mut nonces = NonceSeq::random();
        let mut out = RelayOutbox::default();
        let dest: SocketAddr = "127.0.0.1:9".parse().unwrap();
        for _ in 0..3 {
            assert!(out.push(dest, &key, &mut nonces, &header(), &rtp(), &[9; 80]));
        }
        let mut lens = vec![];
        assert_eq!(
            out.drain(|_, b| {
                lens.push(b.len());
                true
            }),
            (3, 0)
        );
        assert_eq!(lens, vec![OVERHEAD + 80; 3]);
        let cap = out.buf.capacity();
        assert!(out.push(dest, &key, &mut nonces, &header(), &rtp(), &[9; 80]));
        assert_eq!(out.buf.capacity(), cap, "no new allocation");
        assert!(!out.push(
            dest,
            &key,
            &mut nonces,
            &header(),
            &rtp(),
            &[0; MAX_PAYLOAD + 1]
        ));
    }
}
