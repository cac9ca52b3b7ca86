use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use crate::testing::{Net, TestPeerConfig};
use crate::{SfuConfig, SfuEvent, SlotAssignment};

fn config() -> SfuConfig {
    SfuConfig::new(
        SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0),
        IpAddr::V4(Ipv4Addr::new(10, 9, 9, 9)),
    )
}

fn payload(i: u32) -> Vec<u8> {
    // Opus-looking bytes, unique per packet.
    let mut p = vec![0xfc, 0xff, 0xfe];
    p.extend_from_slice(&i.to_be_bytes());
    p.extend(std::iter::repeat_n(i as u8, 60));
    p
}

#[test]
fn a_reaches_b_and_c_rewritten_and_unchanged() {
    let mut net = Net::new(&config());
    let a = net.join(1, 1, 2, TestPeerConfig::default()).unwrap();
    let b = net.join(1, 2, 2, TestPeerConfig::default()).unwrap();
    let c = net.join(1, 3, 2, TestPeerConfig::default()).unwrap();
    net.connect_all();
    net.advance(Duration::from_millis(50));
    for i in 0..50 {
        net.send_audio(a, &payload(i), 30);
        net.advance(Duration::from_millis(20));
    }
    let a_ssrc = {
        let mid = net.peers[a].send_mid.unwrap();
        *net.peers[a].rtc.direct_api().stream_tx_by_mid(mid, None).unwrap().ssrc()
    };
    for sub in [b, c] {
        let slots = net.sfu.slots_of(net.ids[sub]);
        let (mid, _) = slots.iter().find(|(_, s)| *s == Some(1)).expect("A has a slot").clone();
        let got = net.peers[sub].received_on(&mid);
        assert_eq!(got.len(), 50, "subscriber {sub} got {} packets", got.len());
        let out_ssrc = net.sfu.slot_ssrc(net.ids[sub], &mid).unwrap();
        for (i, r) in got.iter().enumerate() {
            assert_eq!(&r.payload[..], &payload(i as u32)[..], "payload unchanged");
            assert_eq!(r.ssrc, out_ssrc);
            assert_ne!(r.ssrc, a_ssrc, "SSRC rewritten");
            assert_eq!(r.audio_level, Some(-30));
        }
        for w in got.windows(2) {
            assert_eq!(w[1].seq, w[0].seq + 1, "continuous sequence numbers");
            assert_eq!(w[1].timestamp, w[0].timestamp.wrapping_add(960));
        }
    }
    assert_eq!(net.sfu.stats().forwarded, 100);
    // A hears nothing from itself.
    assert!(net.peers[a].received.is_empty());
}
