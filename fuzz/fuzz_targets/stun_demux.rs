//! The first look at every datagram on the shared UDP port: RFC 7983 class,
//! STUN parsing for the ICE ufrag, the RTP SSRC.
#![no_main]

use confab_sfu::fuzzing::demux;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let d = demux(data);
    match d.kind {
        None => assert!(d.ufrag.is_none() && d.ssrc.is_none()),
        Some("stun") => {
            assert!(data.len() >= 20 && data[0] <= 1);
            if let Some(ufrag) = &d.ufrag {
                // The ufrag is the local part of USERNAME: bytes of the datagram.
                if !ufrag.is_empty() {
                    assert!(!ufrag.contains(':'));
                    let found = data.windows(ufrag.len()).any(|w| w == ufrag.as_bytes());
                    assert!(found, "ufrag {ufrag:?} is not in the datagram");
                }
            }
        }
        Some("rtp") => {
            assert!(data.len() >= 12 && (128..=191).contains(&data[0]));
            let ssrc = u32::from_be_bytes([data[8], data[9], data[10], data[11]]);
            assert_eq!(d.ssrc, Some(ssrc));
        }
        Some("rtcp") => {
            assert!(data.len() >= 12 && (64..96).contains(&(data[1] & 0x7f)));
        }
        Some("dtls") => assert!((20..=63).contains(&data[0])),
        Some(other) => panic!("unknown class {other}"),
    }
});
