//! Loudest-speaker slots: listeners hear at most K publishers, chosen by who
//! talks, whatever the room's size.

use std::time::Duration;

use super::core_tests::{config, payload};
use super::{pid, room_id, user};
use crate::testing::{Net, TestPeerConfig};
use crate::{ParticipantId, SfuEvent};

const K: usize = 3;

fn listen_only() -> TestPeerConfig {
    TestPeerConfig {
        send: false,
        ..TestPeerConfig::default()
    }
}

/// Sources heard by `idx`, in slot order (unassigned slots skipped).
fn heard(net: &Net, idx: usize) -> Vec<ParticipantId> {
    net.sfu
        .slots_of(net.ids[idx])
        .into_iter()
        .filter_map(|(_, s)| s)
        .collect()
}

/// Six publishers and two listeners, every client offering K slots.
fn room_of_six() -> (Net, Vec<usize>, Vec<usize>) {
    let mut cfg = config();
    cfg.max_audio_slots = K;
    let mut net = Net::new(&cfg);
    let pubs: Vec<usize> = (1..=6)
        .map(|p| {
            net.join(room_id(1), pid(p), K, TestPeerConfig::default())
                .unwrap()
        })
        .collect();
    let subs: Vec<usize> = (7..=8)
        .map(|p| net.join(room_id(1), pid(p), K, listen_only()).unwrap())
        .collect();
    net.connect_all();
    net.advance(Duration::from_millis(50));
    (net, pubs, subs)
}

/// Publisher `idx` talks (loud audio level) for `ms`, with the others silent.
fn talk(net: &mut Net, idx: usize, ms: u64, start: u32) {
    for i in 0..(ms / 20) as u32 {
        net.send_audio(idx, &payload(start + i), 20);
        net.advance(Duration::from_millis(20));
    }
}

#[test]
fn nobody_is_asked_for_more_than_k_slots() {
    let (net, pubs, subs) = room_of_six();
    for e in &net.events {
        if let SfuEvent::RenegotiationNeeded { audio_slots, .. } = e {
            assert!(*audio_slots <= K, "asked for {audio_slots} slots: {e:?}");
        }
    }
    // Before anyone talks: the first publishers in join order.
    for &s in &subs {
        assert_eq!(heard(&net, s), vec![pid(1), pid(2), pid(3)]);
    }
    // A selected publisher hears K others, never itself.
    for &p in &pubs {
        let h = heard(&net, p);
        assert_eq!(h.len(), K, "publisher {p} hears {h:?}");
        assert!(!h.contains(&net.ids[p]));
    }
}

#[test]
fn a_speaker_outside_the_selection_takes_a_slot_and_is_heard() {
    let (mut net, pubs, subs) = room_of_six();
    let mark = net.events.len();
    // Publisher 6 starts talking: it replaces the longest-silent selected one
    // (nobody spoke yet: the first position, publisher 1).
    talk(&mut net, pubs[5], 400, 0);
    for &s in &subs {
        let h = heard(&net, s);
        assert!(h.contains(&pid(6)), "listener {s} hears {h:?}");
        assert_eq!(h.len(), K);
        assert!(!h.contains(&pid(1)), "publisher 1 lost its slot: {h:?}");
        // The slot change was reported, and 6's audio arrives on that slot.
        let mid = super::core_tests::slot_for(&net, s, pid(6)).expect("slot of 6");
        assert!(net.events[mark..].iter().any(|e| matches!(
            e,
            SfuEvent::Slots { participant, slots }
                if *participant == net.ids[s]
                    && slots.iter().any(|a| a.mid == mid && a.user_id == Some(user(1006)))
        )));
        let got = net.peers[s].received_on(&mid);
        // Attack time is 100 ms: everything after onset + ~100 ms arrives.
        assert!(
            got.len() >= 12,
            "listener {s} got {} packets of 6",
            got.len()
        );
        for w in got.windows(2) {
            assert_eq!(w[1].seq, w[0].seq.wrapping_add(1), "continuous numbering");
        }
    }
    // Publisher 1, not talking and not selected, is not forwarded at all.
    let before = net.sfu.stats().forwarded;
    net.send_audio(pubs[0], &payload(9_999), 127);
    assert_eq!(net.sfu.stats().forwarded, before);
    // 6 never hears itself.
    assert!(!heard(&net, pubs[5]).contains(&pid(6)));
}

#[test]
fn talking_speakers_keep_their_slots_and_a_waiting_one_gets_in_when_one_stops() {
    let (mut net, pubs, subs) = room_of_six();
    // 4, 5 and 6 talk at once (interleaved packets); they become the selection.
    for i in 0..25u32 {
        for &p in &pubs[3..6] {
            net.send_audio(p, &payload(i * 8 + p as u32), 20);
        }
        net.advance(Duration::from_millis(20));
    }
    for &s in &subs {
        let mut h = heard(&net, s);
        h.sort_unstable();
        assert_eq!(h, vec![pid(4), pid(5), pid(6)]);
    }
    // 1 talks too while 4 and 5 go on and 6 stops: 1 takes 6's slot after
    // 6's release (500 ms), and 4 and 5 are never displaced.
    for i in 0..50u32 {
        for &p in &pubs[3..5] {
            net.send_audio(p, &payload(10_000 + i * 8 + p as u32), 20);
        }
        net.send_audio(pubs[0], &payload(20_000 + i), 20);
        net.advance(Duration::from_millis(20));
        for &s in &subs {
            let h = heard(&net, s);
            assert!(
                h.contains(&pid(4)) && h.contains(&pid(5)),
                "talking 4 and 5 kept: {h:?}"
            );
        }
    }
    for &s in &subs {
        let mut h = heard(&net, s);
        h.sort_unstable();
        assert_eq!(h, vec![pid(1), pid(4), pid(5)], "1 replaced the silent 6");
    }
}

#[test]
fn a_priority_speaker_displaces_a_talking_one() {
    let (mut net, pubs, subs) = room_of_six();
    net.sfu.set_priority_speaker(net.ids[pubs[5]], true);
    for i in 0..25u32 {
        for &p in &pubs[0..3] {
            net.send_audio(p, &payload(i * 8 + p as u32), 20);
        }
        net.advance(Duration::from_millis(20));
    }
    assert_eq!(heard(&net, subs[0]), vec![pid(1), pid(2), pid(3)]);
    for i in 0..15u32 {
        for &p in &pubs[0..3] {
            net.send_audio(p, &payload(1000 + i * 8 + p as u32), 20);
        }
        net.send_audio(pubs[5], &payload(5000 + i), 20);
        net.advance(Duration::from_millis(20));
    }
    let h = heard(&net, subs[0]);
    assert!(h.contains(&pid(6)), "priority speaker heard: {h:?}");
    assert_eq!(h.len(), K);
}
