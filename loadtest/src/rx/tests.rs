use std::time::{Duration, Instant};

use super::srtp::{Profile, SrtpRx, SrtpTxForTest, TAG_LEN};
use super::*;

const MATERIAL_LEN: usize = 2 * (32 + 12);

fn material() -> Vec<u8> {
    (0..MATERIAL_LEN)
        .map(|i| (i as u8).wrapping_mul(31) ^ 0x5a)
        .collect()
}

/// What the SFU would send: header with a one-byte extension block (audio
/// level), `payload`, sealed.
fn srtp(tx: &SrtpTxForTest, ssrc: u32, ext_seq: u64, ts: u32, payload: &[u8]) -> Vec<u8> {
    let mut d = vec![0x90, 111];
    d.extend_from_slice(&(ext_seq as u16).to_be_bytes());
    d.extend_from_slice(&ts.to_be_bytes());
    d.extend_from_slice(&ssrc.to_be_bytes());
    d.extend_from_slice(&[0xbe, 0xde, 0, 1, 0x10, 0x85, 0, 0]);
    let hlen = d.len();
    d.extend_from_slice(payload);
    let len = d.len();
    d.resize(len + TAG_LEN, 0);
    tx.seal_rtp(&mut d, hlen, len, ext_seq);
    d
}

fn pair(client: bool) -> (FastRx, SrtpTxForTest) {
    let m = material();
    let rx = SrtpRx::new(Profile::AeadAes256Gcm, &m, client).unwrap();
    let tx = SrtpTxForTest::peer_of(Profile::AeadAes256Gcm, &m, client).unwrap();
    (FastRx::with_keys(rx), tx)
}

/// Across a sequence-number wrap, with reordering, duplicates, forged and
/// truncated datagrams: every genuine packet decrypts with its extended
/// sequence number; nothing else does, and nothing panics.
#[test]
fn opens_genuine_packets_and_nothing_else() {
    let (mut fast, tx) = pair(true);
    let start = 65_530u64;
    let mut order: Vec<u64> = (start..start + 20).collect();
    order.swap(3, 4);
    order.insert(10, start + 8); // duplicate
    let mut forged = 0;
    for &s in &order {
        let payload = [s as u8; 40];
        let mut d = srtp(&tx, 0xdead_beef, s, (s as u32) * 960, &payload);
        let mut bad = d.clone();
        bad[20] ^= 0x40;
        assert!(fast.open(&mut bad, 0).is_none());
        forged += 1;
        let p = fast.open(&mut d, s * 960).expect("authenticates");
        assert_eq!((p.ssrc, p.seq, p.payload), (0xdead_beef, s, &payload[..]));
        assert_eq!(p.timestamp, (s as u32) * 960);
        // Every prefix of a genuine datagram: no panic, never accepted.
        let whole = srtp(&tx, 0xdead_beef, s, 0, &payload);
        for cut in 0..whole.len() {
            assert!(fast.open(&mut whole[..cut].to_vec(), 0).is_none());
        }
        forged += whole.len() - 20; // prefixes with a whole header fail the tag
    }
    assert_eq!(fast.auth_failures as usize, forged);
    // Garbage shaped like RTP, and a header whose extension runs past the end.
    let mut junk = vec![0x90u8; 64];
    assert!(fast.open(&mut junk, 0).is_none());
    let mut long_ext = vec![
        0x90, 111, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0xbe, 0xde, 0xff, 0xff,
    ];
    assert!(fast.open(&mut long_ext, 0).is_none());
}

/// RTP padding is removed; a padding count larger than the payload is refused.
#[test]
fn padding_is_stripped() {
    let (mut fast, tx) = pair(false);
    let mut payload = b"hello".to_vec();
    payload.extend_from_slice(&[0, 0, 3]);
    let mut d = srtp(&tx, 5, 1, 0, &payload);
    // Set P before sealing: the header is authenticated.
    let mut p = vec![0xb0, 111, 0, 2, 0, 0, 0, 0, 0, 0, 0, 5];
    p.extend_from_slice(&[0xbe, 0xde, 0, 1, 0x10, 0x85, 0, 0]);
    let hlen = p.len();
    p.extend_from_slice(&payload);
    let len = p.len();
    p.resize(len + TAG_LEN, 0);
    tx.seal_rtp(&mut p, hlen, len, 2);
    assert_eq!(fast.open(&mut p, 0).unwrap().payload, b"hello");
    let mut q = vec![0xb0, 111, 0, 3, 0, 0, 0, 0, 0, 0, 0, 5];
    q.extend_from_slice(&[0xbe, 0xde, 0, 1, 0x10, 0x85, 0, 0]);
    q.extend_from_slice(&[1, 2, 200]);
    let len = q.len();
    q.resize(len + TAG_LEN, 0);
    tx.seal_rtp(&mut q, 20, len, 3);
    assert!(fast.open(&mut q, 0).is_none());
    assert!(fast.open(&mut d, 0).is_some());
}

/// Receiver reports: due once a second while receiving, sealed so that the
/// SFU's side opens them, with the loss and highest sequence number of what
/// arrived and the LSR of the SFU's last sender report.
#[test]
fn receiver_reports_reach_the_sfu() {
    let (mut fast, tx) = pair(true);
    let m = material();
    // The SFU's view: it opens what we seal with our sending keys.
    let sfu = SrtpRx::new(Profile::AeadAes256Gcm, &m, false).unwrap();
    let t0 = Instant::now();
    assert!(fast.poll_report(t0).is_none(), "nothing received yet");
    for s in 0u64..100 {
        if s % 4 != 1 {
            let mut d = srtp(&tx, 77, s, (s * 960) as u32, b"x");
            fast.open(&mut d, s * 960).unwrap();
        }
    }
    // A sender report from the SFU about SSRC 77.
    let mut sr = vec![
        0x80, 200, 0, 6, 0, 0, 0, 77, 0, 0, 0xaa, 0xbb, 0xcc, 0xdd, 0, 0,
    ];
    sr.extend_from_slice(&[0u8; 12]);
    let len = sr.len();
    sr.resize(len + super::srtp::SRTCP_TRAILER, 0);
    tx.seal_rtcp(&mut sr, len, 1 << 30);
    fast.on_rtcp(&sr, t0);
    assert!(fast.poll_report(t0).is_none(), "not due yet");
    let mut rr = fast
        .poll_report(t0 + Duration::from_millis(1500))
        .expect("due")
        .to_vec();
    let (index, len) = sfu.open_rtcp(&mut rr).expect("the SFU opens our report");
    assert_eq!(index, SRTCP_INDEX_START);
    let rr = &rr[..len];
    assert_eq!((rr[0] & 0x1f, rr[1]), (1, 201));
    let block = &rr[8..32];
    assert_eq!(u32::from_be_bytes(block[..4].try_into().unwrap()), 77);
    assert_eq!(block[4], (25 * 256 / 100) as u8, "25 of 100 lost");
    assert_eq!(&block[5..8], &[0, 0, 25]);
    assert_eq!(u32::from_be_bytes(block[8..12].try_into().unwrap()), 99);
    assert_eq!(
        u32::from_be_bytes(block[16..20].try_into().unwrap()),
        0xaabb_ccdd
    );
    // 1.5 s after the SR, in 1/65536 s.
    assert_eq!(
        u32::from_be_bytes(block[20..24].try_into().unwrap()),
        98_304
    );
    assert_eq!(rr[33], 202, "an SDES CNAME follows");
}

/// Off until keys arrive; never on without a key slot.
#[test]
fn stays_off_without_keys() {
    let mut f = FastRx::new(None, true);
    assert!(!f.active());
    let mut g = FastRx::new(Some(Default::default()), true);
    assert!(!g.active(), "no handshake yet");
    let mut h = FastRx::new(Some(Default::default()), false);
    assert!(!h.active());
}
