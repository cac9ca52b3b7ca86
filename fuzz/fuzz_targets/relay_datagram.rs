//! Relay datagrams between media nodes: the parser on hostile bytes, the
//! seal/open round trip (tampering refused), and the receiving core fed
//! with both (remote publishers appearing, replays, conflicts with local
//! participants, rooms that do not span here, peers removed, time passing).
//! Every datagram is counted once, as received or dropped, and the speaker
//! of the other node is still heard afterwards.
#![no_main]

use arbitrary::Arbitrary;
use confab_sfu::fuzzing::{open_relay, relay_node_id, seal_relay, RelayFields};
use confab_sfu::testing::{Cluster, TestPeerConfig};
use confab_sfu::{ParticipantId, RoomId, SfuConfig};
use libfuzzer_sys::fuzz_target;
use std::cell::RefCell;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

#[derive(Arbitrary, Debug)]
enum Step {
    /// Bytes as they come, to the parser and to node 1.
    Raw(Vec<u8>),
    /// A datagram sealed by node 0 for node 1 (or with another key), maybe
    /// with one byte changed afterwards.
    Sealed {
        other_room: Option<u8>,
        publisher: u8,
        flags: u8,
        level: Option<u8>,
        seq: u32,
        ssrc: u8,
        payload: Vec<u8>,
        flip: Option<(u16, u8)>,
        wrong_key: bool,
        /// Send it this many times (replays).
        copies: u8,
    },
    /// Node 1 drops (false) or restores (true) node 0 as a peer of the room.
    Peers(bool),
    /// Time passes (20 ms units).
    Advance(u8),
}

const ROOM: u64 = 1;

thread_local! {
    static CLUSTER: RefCell<Option<(Cluster, u32)>> = const { RefCell::new(None) };
}

/// Node 0: speaker 1; node 1: listener 11; room 1 spans both.
fn cluster() -> Cluster {
    let mut config = SfuConfig::new(
        SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0),
        IpAddr::V4(Ipv4Addr::new(10, 9, 9, 9)),
    );
    config.max_audio_slots = 2;
    let mut c = Cluster::new(2, &config);
    c.span(RoomId::new(ROOM), &[0, 1]);
    c.nodes[0]
        .join(
            RoomId::new(ROOM),
            ParticipantId::new(1),
            2,
            TestPeerConfig::default(),
        )
        .expect("join speaker");
    let listener = TestPeerConfig {
        send: false,
        ..TestPeerConfig::default()
    };
    c.nodes[1]
        .join(RoomId::new(ROOM), ParticipantId::new(11), 2, listener)
        .expect("join listener");
    c.connect_all();
    c
}

fn payload(n: u32) -> Vec<u8> {
    let mut p = vec![0xfc, 0xff, 0xfe];
    p.extend_from_slice(&n.to_be_bytes());
    p.extend_from_slice(&[7; 40]);
    p
}

fuzz_target!(|steps: Vec<Step>| {
    CLUSTER.with(|cell| {
        let mut cell = cell.borrow_mut();
        let (c, n) = cell.get_or_insert_with(|| (cluster(), 0));
        let key = Cluster::endpoint_of(1).key;
        let from = Cluster::endpoint_of(0).addr;
        let origin = relay_node_id(&Cluster::endpoint_of(0).key);
        let stats = |c: &Cluster| {
            let s = c.nodes[1].sfu.stats();
            s.relay_received + s.relay_dropped
        };
        let mut fed = 0u64;
        let before = stats(c);
        for step in steps.iter().take(32) {
            match step {
                Step::Raw(bytes) => {
                    let _ = open_relay(bytes, &key);
                    let now = c.nodes[1].now;
                    c.nodes[1].sfu.handle_relay_datagram(now, from, bytes);
                    fed += 1;
                }
                Step::Sealed {
                    other_room,
                    publisher,
                    flags,
                    level,
                    seq,
                    ssrc,
                    payload,
                    flip,
                    wrong_key,
                    copies,
                } => {
                    let f = RelayFields {
                        origin,
                        room: other_room.map_or(ROOM, |r| 100 + r as u64),
                        publisher: *publisher as u64,
                        user: 1000 + *publisher as u64,
                        flags: *flags,
                        level: *level,
                        marker: false,
                        pt: 111,
                        seq: *seq as u64,
                        timestamp: seq.wrapping_mul(960),
                        ssrc: *ssrc as u32,
                        payload: payload.clone(),
                    };
                    let seal_key = if *wrong_key { [9; 16] } else { key };
                    let Some(mut d) = seal_relay(&f, &seal_key) else {
                        assert!(payload.len() > 1000, "only a large payload is refused");
                        continue;
                    };
                    let opened = open_relay(&d, &key);
                    if *wrong_key {
                        assert_eq!(opened, Err("auth"));
                    } else {
                        assert_eq!(opened, Ok(f.normalized()), "round trip");
                    }
                    if let Some((at, x)) = flip {
                        let i = *at as usize % d.len();
                        let x = if *x == 0 { 1 } else { *x };
                        d[i] ^= x;
                        assert!(open_relay(&d, &key).is_err(), "a changed byte is refused");
                    }
                    for _ in 0..=(*copies % 4) {
                        let now = c.nodes[1].now;
                        c.nodes[1].sfu.handle_relay_datagram(now, from, &d);
                        fed += 1;
                    }
                }
                Step::Peers(on) => {
                    let peers = if *on {
                        vec![Cluster::endpoint_of(0)]
                    } else {
                        vec![]
                    };
                    c.nodes[1].sfu.set_relay_peers(RoomId::new(ROOM), peers);
                }
                Step::Advance(t) => {
                    c.advance(Duration::from_millis(20 * (*t as u64 % 8)));
                }
            }
        }
        assert_eq!(stats(c) - before, fed, "every datagram counted once");
        // Liveness, now and then: with the peers restored and the fuzzed
        // remote publishers timed out, the real speaker is heard again.
        *n += 1;
        if *n % 64 == 0 {
            c.nodes[1]
                .sfu
                .set_relay_peers(RoomId::new(ROOM), vec![Cluster::endpoint_of(0)]);
            c.advance(Duration::from_secs(4));
            let heard_before = c.nodes[1].peers[0].received.len();
            for i in 0..20 {
                c.send_audio(0, 0, &payload(*n * 100 + i), 20);
                c.advance(Duration::from_millis(20));
            }
            let heard = c.nodes[1].peers[0].received.len() - heard_before;
            assert!(
                heard >= 10,
                "the speaker of node 0 is heard on node 1: {heard}"
            );
            c.nodes[1].peers[0].received.clear();
        }
    });
});
