//! ICE-TCP framing (RFC 4571) on hostile byte streams: never a panic, the same frames however
//! the stream is cut into reads, every frame 1..=4095 bytes, and the frames taken are exactly
//! the stream's prefix re-encoded (nothing skipped, duplicated or reordered).
#![no_main]

use confab_sfu::fuzzing::{ice_tcp_frames, ICE_TCP_MAX_FRAME};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: (Vec<u8>, Vec<u16>)| {
    let (stream, cuts) = input;
    let (whole, whole_bad) = ice_tcp_frames(&[&stream]);
    // Cut the same stream at the fuzzer's points.
    let mut points: Vec<usize> = cuts.iter().map(|c| *c as usize % (stream.len() + 1)).collect();
    points.sort_unstable();
    let mut chunks = Vec::new();
    let mut at = 0;
    for p in points {
        chunks.push(&stream[at..p]);
        at = p;
    }
    chunks.push(&stream[at..]);
    let (cut, cut_bad) = ice_tcp_frames(&chunks);
    assert_eq!(whole, cut, "frames do not depend on how reads split the stream");
    assert_eq!(whole_bad, cut_bad);
    let mut encoded = Vec::new();
    for f in &whole {
        assert!((1..=ICE_TCP_MAX_FRAME).contains(&f.len()), "frame of {} bytes", f.len());
        encoded.extend_from_slice(&(f.len() as u16).to_be_bytes());
        encoded.extend_from_slice(f);
    }
    assert_eq!(&stream[..encoded.len()], &encoded[..], "frames are the stream's prefix");
    if whole_bad {
        let len = u16::from_be_bytes([stream[encoded.len()], stream[encoded.len() + 1]]) as usize;
        assert!(len == 0 || len > ICE_TCP_MAX_FRAME, "only a bad length ends the stream");
    } else {
        let rest = stream.len() - encoded.len();
        assert!(
            rest < 2 || rest < 2 + u16::from_be_bytes([stream[encoded.len()], stream[encoded.len() + 1]]) as usize,
            "a whole frame left untaken"
        );
    }
});
