//! A voice room spanning several media nodes (cascade): local speakers are
//! relayed once to each other node hosting the room and heard there as
//! remote publishers, chosen for slots channel-wide.

use std::time::Duration;

use super::core_tests::{config, payload};
use super::{pid, room_id};
use crate::relay::{self, NonceSeq, RelayHeader, RelayKey, RtpFields, FLAG_SPEAKING};
use crate::testing::{tag_of, Cluster, Net, TestPeerConfig};
use crate::{ParticipantId, RoomId, SfuEvent};

const ROOM: u64 = 1;

fn listen_only() -> TestPeerConfig {
    TestPeerConfig {
        send: false,
        ..TestPeerConfig::default()
    }
}

/// Sources heard by peer `idx` of `net`, in slot order.
fn heard(net: &Net, idx: usize) -> Vec<ParticipantId> {
    net.sfu
        .slots_of(net.ids[idx])
        .into_iter()
        .filter_map(|(_, s)| s)
        .collect()
}

fn mid_of(net: &Net, idx: usize, source: ParticipantId) -> Option<String> {
    net.sfu
        .slots_of(net.ids[idx])
        .into_iter()
        .find(|(_, s)| *s == Some(source))
        .map(|(m, _)| m)
}

/// Whether the last `Slots` event of peer `idx` names `source`'s user on `mid`.
fn slots_event_names(net: &Net, idx: usize, mid: &str, source: ParticipantId) -> bool {
    net.events
        .iter()
        .rev()
        .find_map(|e| match e {
            SfuEvent::Slots { participant, slots } if *participant == net.ids[idx] => Some(slots),
            _ => None,
        })
        .is_some_and(|slots| {
            slots
                .iter()
                .any(|a| a.mid == mid && a.user_id == Some(tag_of(source)))
        })
}

/// Two nodes hosting room 1; `a` and `b` list (participant, sends) per node.
fn two_nodes(slots: usize, a: &[(u64, bool)], b: &[(u64, bool)]) -> Cluster {
    let mut cfg = config();
    cfg.max_audio_slots = slots;
    three_or_two(&cfg, &[a, b])
}

fn three_or_two(cfg: &crate::SfuConfig, nodes: &[&[(u64, bool)]]) -> Cluster {
    let mut c = Cluster::new(nodes.len(), cfg);
    let all: Vec<usize> = (0..nodes.len()).collect();
    // Peers are known before the first join.
    c.span(room_id(ROOM), &all);
    for (n, members) in nodes.iter().enumerate() {
        for &(p, sends) in members.iter() {
            let pc = if sends {
                TestPeerConfig::default()
            } else {
                listen_only()
            };
            c.nodes[n]
                .join(room_id(ROOM), pid(p), cfg.max_audio_slots, pc)
                .unwrap();
        }
    }
    c.connect_all();
    c.advance(Duration::from_millis(50));
    c
}

/// `talkers` (node, peer index) each send one packet at `level` per 20 ms, `n` times.
fn talk(c: &mut Cluster, talkers: &[(usize, usize)], n: u32, start: u32, level: u8) {
    for i in 0..n {
        for (k, &(node, idx)) in talkers.iter().enumerate() {
            c.send_audio(node, idx, &payload(start + i * 16 + k as u32), level);
        }
        c.advance(Duration::from_millis(20));
    }
}

fn relayed(c: &Cluster, from: usize, to: usize) -> usize {
    c.relayed
        .iter()
        .filter(|(f, t, _)| *f == from && *t == to)
        .count()
}

#[test]
fn a_speaker_on_one_node_is_heard_on_the_other_and_back() {
    // Node 0: speaker 1 and listener 2; node 1: speaker 11 and listener 12.
    let mut c = two_nodes(2, &[(1, true), (2, false)], &[(11, true), (12, false)]);
    assert!(c.nodes[0].sfu.stats().relay_sent == 0, "nobody talked yet");
    talk(&mut c, &[(0, 0)], 30, 0, 20);
    for (idx, what) in [
        (0usize, "the speaker on the other node"),
        (1, "the listener"),
    ] {
        let b = &c.nodes[1];
        let mid = mid_of(b, idx, pid(1)).unwrap_or_else(|| panic!("{what} has a slot for 1"));
        assert!(
            slots_event_names(b, idx, &mid, pid(1)),
            "{what}: Slots names user 1001"
        );
        let got: Vec<Vec<u8>> = b.peers[idx]
            .received_on(&mid)
            .iter()
            .map(|r| r.payload.to_vec())
            .collect();
        // The first packets, before the smoothed level is loud, are not relayed.
        assert!(got.len() >= 25, "{what} got {} packets", got.len());
        let first = 30 - got.len() as u32;
        for (k, p) in got.iter().enumerate() {
            let expected = payload((first + k as u32) * 16);
            assert_eq!(*p, expected, "{what}: packet {k} intact, in order");
        }
    }
    // And back: 11 on node 1 is heard by both on node 0.
    talk(&mut c, &[(1, 0)], 30, 1000, 20);
    for idx in [0, 1] {
        let a = &c.nodes[0];
        let mid = mid_of(a, idx, pid(11)).expect("a slot for 11");
        assert!(slots_event_names(a, idx, &mid, pid(11)));
        let got = a.peers[idx].received_on(&mid);
        assert!(got.len() >= 25, "got {}", got.len());
        assert_eq!(
            *got.last().unwrap().payload,
            payload(1000 + 29 * 16)[..],
            "the last packet arrived"
        );
    }
}

#[test]
fn the_loudest_speaker_choice_is_channel_wide() {
    // K = 2; four publishers over two nodes and a listener on each.
    let mut c = two_nodes(
        2,
        &[(1, true), (2, true), (3, false)],
        &[(11, true), (12, true), (13, false)],
    );
    // 1 (node 0) and 11 (node 1) talk first; then 2, and 12 200 ms later.
    talk(&mut c, &[(0, 0), (1, 0)], 20, 0, 20);
    talk(&mut c, &[(0, 0), (1, 0), (0, 1)], 10, 1000, 20);
    talk(&mut c, &[(0, 0), (1, 0), (0, 1), (1, 1)], 30, 2000, 20);
    let mut on_a = heard(&c.nodes[0], 2);
    let mut on_b = heard(&c.nodes[1], 2);
    on_a.sort_unstable();
    on_b.sort_unstable();
    assert_eq!(on_a, vec![pid(1), pid(11)], "listener on node 0");
    assert_eq!(on_b, on_a, "listener on node 1 hears the same speakers");
    // Both hear them now, on the slots the SFU reported.
    for n in [0, 1] {
        for src in [pid(1), pid(11)] {
            let mid = mid_of(&c.nodes[n], 2, src).unwrap();
            assert!(slots_event_names(&c.nodes[n], 2, &mid, src));
            let got = c.nodes[n].peers[2].received_on(&mid);
            assert!(got.len() >= 40, "node {n}: {} packets of {src}", got.len());
        }
    }
    // 1 stops: after its release, the one of the waiting speakers who
    // started first (2) takes its place, on both nodes.
    talk(&mut c, &[(1, 0), (0, 1), (1, 1)], 50, 5000, 20);
    let mut on_a = heard(&c.nodes[0], 2);
    let mut on_b = heard(&c.nodes[1], 2);
    on_a.sort_unstable();
    on_b.sort_unstable();
    assert_eq!(on_a, vec![pid(2), pid(11)], "listener on node 0");
    assert_eq!(on_b, on_a, "listener on node 1");
}

#[test]
fn a_remote_priority_speaker_displaces_a_talking_local_one() {
    // K = 2: node 1's three talkers fill the selection (K + 1).
    let mut c = two_nodes(
        2,
        &[(1, true)],
        &[(11, true), (12, true), (14, true), (13, false)],
    );
    let locals = [(1, 0), (1, 1), (1, 2)];
    talk(&mut c, &locals, 20, 0, 20);
    let all = [(1, 0), (1, 1), (1, 2), (0, 0)];
    talk(&mut c, &all, 20, 1000, 20);
    assert!(
        !heard(&c.nodes[1], 3).contains(&pid(1)),
        "everyone talks: the remote speaker waits"
    );
    c.nodes[0].sfu.set_priority_speaker(pid(1), true);
    talk(&mut c, &all, 10, 2000, 20);
    let h = heard(&c.nodes[1], 3);
    assert!(
        h.contains(&pid(1)),
        "the priority flag came with its packets: {h:?}"
    );
    assert_eq!(h.len(), 2);
}

#[test]
fn one_datagram_per_packet_and_node_whatever_the_listeners() {
    let mut cfg = config();
    cfg.max_audio_slots = 2;
    let five: Vec<(u64, bool)> = (11..16).map(|p| (p, false)).collect();
    let mut c = three_or_two(&cfg, &[&[(1, true)], &five, &[(21, false)]]);
    talk(&mut c, &[(0, 0)], 50, 0, 20);
    let to_b = relayed(&c, 0, 1);
    let to_c = relayed(&c, 0, 2);
    assert!((45..=50).contains(&to_b), "{to_b} datagrams to node 1");
    assert_eq!(to_b, to_c, "one copy per node");
    assert_eq!(c.nodes[0].sfu.stats().relay_sent as usize, to_b + to_c);
    assert_eq!(c.nodes[1].sfu.stats().relay_received as usize, to_b);
    // Every listener on node 1 got every relayed packet.
    for idx in 0..5 {
        let mid = mid_of(&c.nodes[1], idx, pid(1)).unwrap();
        assert_eq!(c.nodes[1].peers[idx].received_on(&mid).len(), to_b);
    }
    assert_eq!(
        c.nodes[2].peers[0]
            .received_on(&mid_of(&c.nodes[2], 0, pid(1)).unwrap())
            .len(),
        to_c
    );
    // Nothing comes back, and the listeners relay nothing.
    assert_eq!(relayed(&c, 1, 0) + relayed(&c, 2, 0), 0);
}

#[test]
fn muted_and_unselected_silent_publishers_are_not_relayed() {
    // One slot: the room's selection holds two publishers, 1 and 2 (join order).
    let mut c = two_nodes(1, &[(1, true), (2, true), (3, true)], &[(11, false)]);
    c.nodes[0].sfu.set_server_mute(pid(1), true);
    c.nodes[0].sfu.set_self_mute(pid(2), true);
    // 1 and 2 talk loudly but are muted; 3 sends silence outside the selection.
    talk(&mut c, &[(0, 0), (0, 1)], 30, 0, 20);
    talk(&mut c, &[(0, 2)], 50, 100, 127);
    assert_eq!(c.relayed.len(), 0);
    assert_eq!(c.nodes[0].sfu.stats().relay_sent, 0);
    assert!(heard(&c.nodes[1], 0).is_empty(), "nobody heard on node 1");
    // Unmuted, 1 is relayed.
    c.nodes[0].sfu.set_server_mute(pid(1), false);
    talk(&mut c, &[(0, 0)], 30, 1000, 20);
    assert!(relayed(&c, 0, 1) >= 25);
    assert_eq!(heard(&c.nodes[1], 0), vec![pid(1)]);
    // 3's silence still does not cross.
    let n = relayed(&c, 0, 1);
    talk(&mut c, &[(0, 2)], 50, 2000, 127);
    assert_eq!(relayed(&c, 0, 1), n, "unselected silence is not relayed");
}

#[test]
fn a_selected_publishers_silence_is_relayed_packet_for_packet() {
    // What node 1's listeners get of a slot holder is what node 0's get:
    // its pauses between words too (they are part of the stream).
    let mut c = two_nodes(2, &[(1, true), (2, false)], &[(11, false)]);
    talk(&mut c, &[(0, 0)], 30, 0, 20);
    talk(&mut c, &[(0, 0)], 100, 1000, 127);
    assert_eq!(relayed(&c, 0, 1), 130);
    let local = c.nodes[0].peers[1].received_on(&mid_of(&c.nodes[0], 1, pid(1)).unwrap());
    let b = &c.nodes[1];
    let remote = b.peers[0].received_on(&mid_of(b, 0, pid(1)).unwrap());
    assert_eq!(local.len(), 130);
    assert_eq!(remote.len(), 130, "the remote listener got every packet");
    for w in remote.windows(2) {
        assert_eq!(w[1].seq, w[0].seq + 1);
    }
}

#[test]
fn a_pause_in_the_relay_is_not_a_gap_at_the_listener() {
    let mut c = two_nodes(2, &[(1, true)], &[(11, false)]);
    talk(&mut c, &[(0, 0)], 30, 0, 20);
    let n = relayed(&c, 0, 1);
    // Self-muted for 1.5 s while its client keeps sending: nothing crosses.
    c.nodes[0].sfu.set_self_mute(pid(1), true);
    talk(&mut c, &[(0, 0)], 75, 1000, 20);
    assert_eq!(relayed(&c, 0, 1), n, "muted packets relayed");
    c.nodes[0].sfu.set_self_mute(pid(1), false);
    talk(&mut c, &[(0, 0)], 30, 5000, 20);
    assert_eq!(relayed(&c, 0, 1), n + 30);
    let b = &c.nodes[1];
    let mid = mid_of(b, 0, pid(1)).unwrap();
    let got = b.peers[0].received_on(&mid);
    assert_eq!(got.len(), relayed(&c, 0, 1));
    for w in got.windows(2) {
        assert_eq!(
            w[1].seq,
            w[0].seq + 1,
            "continuous numbering across the pause"
        );
    }
    // The timestamp moves on by the time the pause lasted (about 1.5 s).
    let jump = got
        .windows(2)
        .map(|w| w[1].timestamp.wrapping_sub(w[0].timestamp))
        .max()
        .unwrap();
    assert!(
        (48_000 * 3 / 2..=48_000 * 2).contains(&jump),
        "timestamp jump {jump}"
    );
}

#[test]
fn a_remote_publisher_raises_no_speaking_event() {
    let mut c = two_nodes(2, &[(1, true)], &[(11, true), (12, false)]);
    talk(&mut c, &[(0, 0)], 40, 0, 20);
    talk(&mut c, &[(0, 0)], 40, 100, 127);
    let speaking = |n: &Net, p: ParticipantId| {
        n.events
            .iter()
            .filter(|e| matches!(e, SfuEvent::Speaking { participant, .. } if *participant == p))
            .count()
    };
    assert_eq!(
        speaking(&c.nodes[0], pid(1)),
        2,
        "started and stopped on its node"
    );
    assert_eq!(speaking(&c.nodes[1], pid(1)), 0, "none on the other node");
    assert!(heard(&c.nodes[1], 1).contains(&pid(1)));
}

#[test]
fn remote_publishers_go_when_peers_are_removed_or_their_packets_stop() {
    let mut c = two_nodes(2, &[(1, true)], &[(11, false)]);
    talk(&mut c, &[(0, 0)], 30, 0, 20);
    assert_eq!(heard(&c.nodes[1], 0), vec![pid(1)]);
    // Node 1 no longer relays with node 0 for this room.
    c.nodes[1].sfu.set_relay_peers(room_id(ROOM), vec![]);
    c.exchange();
    assert!(
        heard(&c.nodes[1], 0).is_empty(),
        "the remote publisher left its slot"
    );
    let last = c.nodes[1]
        .events
        .iter()
        .rev()
        .find_map(|e| match e {
            SfuEvent::Slots { slots, .. } => Some(slots.clone()),
            _ => None,
        })
        .unwrap();
    assert!(last.iter().all(|s| s.user_id.is_none()), "{last:?}");
    // What node 0 still sends is refused.
    let dropped = c.nodes[1].sfu.stats().relay_dropped;
    talk(&mut c, &[(0, 0)], 10, 100, 20);
    assert_eq!(c.nodes[1].sfu.stats().relay_dropped, dropped + 10);
    assert!(heard(&c.nodes[1], 0).is_empty());
    // Peers again: heard again; then its packets stop and it goes.
    c.span(room_id(ROOM), &[0, 1]);
    talk(&mut c, &[(0, 0)], 10, 200, 20);
    assert_eq!(heard(&c.nodes[1], 0), vec![pid(1)]);
    c.advance(Duration::from_millis(2500));
    assert_eq!(heard(&c.nodes[1], 0), vec![pid(1)], "kept a while");
    c.advance(Duration::from_millis(1000));
    assert!(
        heard(&c.nodes[1], 0).is_empty(),
        "gone after its packets stopped"
    );
}

#[test]
fn peers_set_before_the_first_join_and_the_room_emptying() {
    let mut c = two_nodes(2, &[(1, true)], &[(11, false)]);
    talk(&mut c, &[(0, 0)], 30, 0, 20);
    assert_eq!(heard(&c.nodes[1], 0), vec![pid(1)]);
    // The last local participant of node 1 leaves: the remote publishers go,
    // the peer list stays for the next join.
    let now = c.nodes[1].now;
    c.nodes[1].sfu.leave(now, pid(11));
    assert_eq!(c.nodes[1].sfu.room_count(), 0);
    let dropped = c.nodes[1].sfu.stats().relay_dropped;
    talk(&mut c, &[(0, 0)], 5, 100, 20);
    assert_eq!(
        c.nodes[1].sfu.stats().relay_dropped,
        dropped + 5,
        "nobody listens"
    );
    c.nodes[1]
        .join(room_id(ROOM), pid(12), 2, listen_only())
        .unwrap();
    c.connect_all();
    talk(&mut c, &[(0, 0)], 10, 200, 20);
    assert_eq!(heard(&c.nodes[1], 1), vec![pid(1)]);
}

/// A valid datagram from node 0 to node 1 (room 1, publisher 1).
fn sealed_to_node_1(room: RoomId, publisher: u64, seq: u64, key: &[u8; 16]) -> Vec<u8> {
    let mut out = Vec::new();
    relay::seal(
        &mut out,
        &RelayKey::new(key),
        &mut NonceSeq::random(),
        &RelayHeader {
            origin: relay::node_id(&Cluster::endpoint_of(0).key),
            room,
            publisher: pid(publisher),
            user: tag_of(pid(publisher)),
            flags: FLAG_SPEAKING,
            level: Some(10),
        },
        &RtpFields {
            marker: false,
            pt: 111,
            seq,
            timestamp: (seq as u32).wrapping_mul(960),
            ssrc: 4242,
        },
        &payload(seq as u32),
    )
    .unwrap();
    out
}

#[test]
fn a_jump_in_a_remote_publishers_numbering_does_not_break_the_listener() {
    let mut c = two_nodes(2, &[(1, true)], &[(11, false)]);
    let b_key = Cluster::endpoint_of(1).key;
    let from = Cluster::endpoint_of(0).addr;
    // Remote publisher 5 (relayed by node 0): 10 packets, then its numbers
    // jump far ahead (without the resume flag), then 10 more.
    let seqs = (100..110).chain(3_000_000_000..3_000_000_010);
    for seq in seqs {
        let d = sealed_to_node_1(room_id(ROOM), 5, seq, &b_key);
        let now = c.nodes[1].now;
        c.nodes[1].sfu.handle_relay_datagram(now, from, &d);
        c.exchange();
        c.advance(Duration::from_millis(20));
    }
    let b = &c.nodes[1];
    let mid = mid_of(b, 0, pid(5)).unwrap();
    let got = b.peers[0].received_on(&mid);
    assert_eq!(got.len(), 20, "every packet decrypted at the listener");
    for w in got.windows(2) {
        assert_eq!(w[1].seq, w[0].seq + 1);
    }
}

#[test]
fn bad_relay_datagrams_are_dropped_and_counted() {
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    let mut c =
        metrics::with_local_recorder(&recorder, || two_nodes(2, &[(1, true)], &[(11, false)]));
    let b_key = Cluster::endpoint_of(1).key;
    let from = Cluster::endpoint_of(0).addr;
    let good = sealed_to_node_1(room_id(ROOM), 5, 100, &b_key);
    let mut bad: Vec<(&str, Vec<u8>)> = vec![
        ("auth", sealed_to_node_1(room_id(ROOM), 5, 100, &[99; 16])),
        ("truncated", good[..20].to_vec()),
        ("truncated", Vec::new()),
        ("malformed", vec![0x80; 120]),
        ("oversize", vec![0x43; relay::MAX_DATAGRAM + 1]),
        (
            "unknown_room",
            sealed_to_node_1(room_id(99), 5, 100, &b_key),
        ),
        ("conflict", sealed_to_node_1(room_id(ROOM), 11, 100, &b_key)),
    ];
    // The good one with a changed byte in each part (clear header, relay
    // header, RTP, payload, tag).
    for i in [3, 6, 20, 40, 60, 80, good.len() - 1] {
        let mut d = good.clone();
        d[i] ^= 0x01;
        bad.push(("auth", d));
    }
    let mut junk = 0x1234_5678u32;
    for n in [1usize, 16, 83, 84, 200, 1400] {
        let d: Vec<u8> = (0..n)
            .map(|_| {
                junk ^= junk << 13;
                junk ^= junk >> 17;
                junk ^= junk << 5;
                junk as u8
            })
            .collect();
        bad.push((
            if n < relay::OVERHEAD {
                "truncated"
            } else {
                "malformed"
            },
            d,
        ));
    }
    let now = c.nodes[1].now;
    let before = c.nodes[1].sfu.stats().clone();
    for (_, d) in &bad {
        c.nodes[1].sfu.handle_relay_datagram(now, from, d);
    }
    c.exchange();
    let after = c.nodes[1].sfu.stats().clone();
    assert_eq!(after.relay_dropped - before.relay_dropped, bad.len() as u64);
    assert_eq!(after.relay_received, before.relay_received);
    assert!(heard(&c.nodes[1], 0).is_empty());
    // The good one is taken once; again (a replay) it is dropped.
    c.nodes[1].sfu.handle_relay_datagram(now, from, &good);
    c.nodes[1].sfu.handle_relay_datagram(now, from, &good);
    c.exchange();
    assert_eq!(
        c.nodes[1].sfu.stats().relay_received,
        before.relay_received + 1
    );
    assert_eq!(heard(&c.nodes[1], 0), vec![pid(5)]);
    let text = handle.render();
    let count = |reason: &str| -> f64 {
        text.lines()
            .filter(|l| {
                l.starts_with("confab_sfu_relay_dropped_total")
                    && l.contains(&format!("reason=\"{reason}\""))
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    for reason in [
        "auth",
        "truncated",
        "malformed",
        "oversize",
        "unknown_room",
        "conflict",
    ] {
        let expected = bad.iter().filter(|(r, _)| *r == reason).count() as f64;
        assert_eq!(count(reason), expected, "reason {reason}\n{text}");
    }
    assert_eq!(count("replay"), 1.0);
    assert!(text.contains("confab_sfu_relay_packets_total{direction=\"received\"} 1"));
    assert!(text.contains("confab_sfu_remote_publishers 1"), "{text}");
    // Both cores of this test set the gauge: one link each.
    assert!(text.contains("confab_sfu_relay_peers 1"), "{text}");
}

/// Allocations on this thread while `f` runs (see `tests/mod.rs`).
fn allocations(f: impl FnOnce()) -> u64 {
    let before = super::allocations_on_this_thread();
    f();
    super::allocations_on_this_thread() - before
}

/// SRTP datagrams of peer `idx` of `net` for `n` loud audio packets, not delivered.
fn captured_audio(net: &mut Net, idx: usize, n: u32, start: u32) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for i in 0..n {
        let now = net.now;
        net.peers[idx].send_audio(now, &payload(start + i), 20);
        while let Some(t) = net.peers[idx].poll_transmit() {
            out.push(t.contents.to_vec());
        }
    }
    out
}

#[test]
fn relaying_allocates_nothing_per_packet() {
    let mut c = two_nodes(2, &[(1, true)], &[(11, false), (12, false)]);
    talk(&mut c, &[(0, 0)], 30, 0, 20);
    let b = &c.nodes[1];
    for idx in [0, 1] {
        let mid = mid_of(b, idx, pid(1)).unwrap();
        assert!(
            b.sfu.slot_is_fast(b.ids[idx], &mid),
            "listener {idx} on the fast path"
        );
    }
    // Receiving: remote publisher 1 (speaking) to two fast-path listeners.
    let b_key = Cluster::endpoint_of(1).key;
    let from = Cluster::endpoint_of(0).addr;
    let datagrams: Vec<Vec<u8>> = (0..110)
        .map(|s| sealed_to_node_1(room_id(ROOM), 1, 50_000 + s, &b_key))
        .collect();
    let node = &mut c.nodes[1];
    let now = node.now;
    let received = node.sfu.stats().relay_received;
    let (warm, measured) = datagrams.split_at(10);
    for d in warm {
        node.sfu.handle_relay_datagram(now, from, d);
        node.sfu.drain_fast(|_, _| true);
    }
    let n = allocations(|| {
        for d in measured {
            node.sfu.handle_relay_datagram(now, from, d);
            node.sfu.drain_fast(|_, _| true);
        }
    });
    assert_eq!(node.sfu.stats().relay_received, received + 110);
    assert_eq!(n, 0, "allocations receiving 100 relay datagrams");

    // Sending: the speaker's packets cost as many allocations (str0m's) with
    // the relay to node 1 as without it.
    let node = &mut c.nodes[0];
    let addr = node.peers[0].addr;
    let cost = |node: &mut Net, start: u32| -> (u64, u64) {
        let dgs = captured_audio(node, 0, 60, start);
        let now = node.now;
        let sent = node.sfu.stats().relay_sent;
        let (warm, measured) = dgs.split_at(10);
        for d in warm {
            node.sfu.handle_datagram(now, addr, d);
            node.sfu.drain_relay(|_, _| true);
        }
        let n = allocations(|| {
            for d in measured {
                node.sfu.handle_datagram(now, addr, d);
                node.sfu.drain_relay(|_, _| true);
            }
        });
        (n, node.sfu.stats().relay_sent - sent)
    };
    let (with_relay, relayed) = cost(node, 10_000);
    assert_eq!(relayed, 60, "every packet relayed");
    node.sfu.set_relay_peers(room_id(ROOM), vec![]);
    let (without, relayed) = cost(node, 20_000);
    assert_eq!(relayed, 0);
    assert_eq!(
        with_relay, without,
        "allocations for 50 packets with the relay and without"
    );
}
