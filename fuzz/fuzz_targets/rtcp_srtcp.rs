//! The fast path's receiving side of RTCP: SRTCP unprotect (AES-CM + HMAC-SHA1
//! and AES-GCM) and the compound RTCP reader, on hostile bytes and on what
//! the other end's protection produces (round trip, tampering refused).
#![no_main]

use arbitrary::Arbitrary;
use confab_sfu::fuzzing::{keying_material, read_compound, RtcpItem, SrtcpReceiver, SrtpSender};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
struct Input {
    profile: u8,
    key_seed: [u8; 8],
    index: u32,
    /// Bit to flip in the protected packet (taken modulo its length).
    flip: Option<u16>,
    /// Decrypt as received from the network (hostile), rather than protect first.
    raw: bool,
    bytes: Vec<u8>,
}

fn check_items(plain: &[u8], items: &[RtcpItem]) {
    // A report block is 24 bytes and a NACK at least 12: the reader cannot
    // find more items than the bytes hold.
    let reports = items
        .iter()
        .filter(|i| matches!(i, RtcpItem::Report(..)))
        .count();
    assert!(reports * 24 <= plain.len());
    let nacks = items.len() - reports;
    assert!(nacks * 12 <= plain.len());
}

fuzz_target!(|input: Input| {
    let material = keying_material(input.profile, &input.key_seed);
    let rx = SrtcpReceiver::new(input.profile, &material).expect("material fits its profile");

    // The compound reader alone, on anything.
    check_items(&input.bytes, &read_compound(&input.bytes));

    if input.raw {
        let mut buf = input.bytes.clone();
        if let Some((_, len)) = rx.unprotect(&mut buf) {
            assert!(len <= buf.len());
            check_items(&buf[..len], &read_compound(&buf[..len]));
        }
        return;
    }

    // Round trip: what the sender protects, the receiver gets back exactly.
    if input.bytes.len() < 8 {
        return;
    }
    let tx = SrtpSender::new(input.profile, &material).expect("material fits its profile");
    let protected = tx.protect_rtcp(&input.bytes, input.index);
    assert_eq!(protected.len(), input.bytes.len() + tx.rtcp_overhead());
    let mut buf = protected.clone();
    let (index, len) = rx
        .unprotect(&mut buf)
        .expect("own protection authenticates");
    assert_eq!(index, input.index & 0x7fff_ffff);
    assert_eq!(&buf[..len], &input.bytes[..]);

    // Any single flipped bit is refused.
    if let Some(bit) = input.flip {
        let bit = bit as usize % (protected.len() * 8);
        let mut buf = protected.clone();
        buf[bit / 8] ^= 1 << (bit % 8);
        assert_eq!(
            rx.unprotect(&mut buf),
            None,
            "a tampered packet authenticated"
        );
    }

    // SRTP of the same bytes as an RTP packet: length and clear header.
    if input.bytes.len() >= 12 {
        let hlen = 12 + (input.index as usize % (input.bytes.len() - 11));
        let out = tx.protect_rtp(&input.bytes, hlen, u64::from(input.index) << 8);
        assert_eq!(out.len(), input.bytes.len() + tx.rtp_overhead());
        assert_eq!(&out[..hlen], &input.bytes[..hlen]);
    }
});
