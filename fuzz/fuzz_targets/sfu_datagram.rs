//! Datagrams on the shared media port, from a stranger and from the
//! addresses of two connected participants, into the SFU core (STUN demux,
//! DTLS, SRTP/SRTCP, the fast path's RTCP reader). Whatever a stranger sends,
//! audio between the participants keeps flowing.
#![no_main]

use arbitrary::Arbitrary;
use confab_sfu::testing::{Net, TestPeerConfig};
use confab_sfu::{ParticipantId, RoomId, SfuConfig};
use libfuzzer_sys::fuzz_target;
use std::cell::RefCell;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

#[derive(Arbitrary, Debug)]
struct Datagram {
    /// 0: a stranger; 1, 2: the addresses of participants A and B.
    from: u8,
    bytes: Vec<u8>,
}

thread_local! {
    static NET: RefCell<Option<(Net, u32)>> = const { RefCell::new(None) };
}

/// Two participants in one room, A sending audio to B.
fn call() -> Net {
    let config = SfuConfig::new(
        SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0),
        IpAddr::V4(Ipv4Addr::new(10, 9, 9, 9)),
    );
    let mut net = Net::new(&config);
    let room = RoomId::new(1);
    net.join(room, ParticipantId::new(1), 1, TestPeerConfig::default())
        .expect("join A");
    net.join(room, ParticipantId::new(2), 1, TestPeerConfig::default())
        .expect("join B");
    net.connect_all();
    net
}

fn received(net: &Net) -> usize {
    net.peers[1].received.len()
}

fuzz_target!(|datagrams: Vec<Datagram>| {
    NET.with(|cell| {
        let mut cell = cell.borrow_mut();
        let (net, n) = cell.get_or_insert_with(|| (call(), 0));
        let stranger: SocketAddr = "192.0.2.7:5555".parse().unwrap();
        let mut only_strangers = true;
        for d in datagrams.iter().take(16) {
            let from = match d.from % 3 {
                0 => stranger,
                i => {
                    only_strangers = false;
                    net.peers[i as usize - 1].addr
                }
            };
            let now = net.now;
            net.sfu.handle_datagram(now, from, &d.bytes);
        }
        net.advance(Duration::from_millis(5));
        if only_strangers {
            // A keeps being heard by B.
            let before = received(net);
            *n += 1;
            let mut payload = vec![0xfc, 0xff, 0xfe];
            payload.extend_from_slice(&n.to_be_bytes());
            payload.extend_from_slice(&[7; 40]);
            net.send_audio(0, &payload, 40);
            net.advance(Duration::from_millis(20));
            assert_eq!(
                received(net),
                before + 1,
                "a stranger's datagrams broke the call"
            );
            if received(net) > 10_000 {
                net.peers[1].received.clear();
            }
        } else {
            // A participant's address may have been spoofed: start over with a
            // fresh call next time rather than carry a possibly broken one.
            *cell = None;
        }
    });
});
