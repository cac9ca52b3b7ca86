//! Hostile and broken input: never a panic, other peers unaffected.

use std::net::SocketAddr;
use std::time::Duration;

use str0m::ice::{StunMessage, TransId};

use super::core_tests::{config, payload, slot_for};
use super::{pid, room_id, user};
use crate::testing::{Net, TestPeerConfig};
use crate::{JoinRequest, SfuError, SfuEvent};

fn stun_request(username: &str) -> Vec<u8> {
    let msg = StunMessage::binding_request(username, TransId::new(), true, 1, 100, false);
    let mut buf = vec![0u8; 1500];
    let n = msg
        .to_bytes(Some(b"not-the-password"), &mut buf, |_, _| [0u8; 20])
        .unwrap();
    buf.truncate(n);
    buf
}

/// A room with A → B flowing; returns the net.
fn flowing() -> Net {
    let mut net = Net::new(&config());
    net.join(room_id(1), pid(1), 1, TestPeerConfig::default())
        .unwrap();
    net.join(room_id(1), pid(2), 1, TestPeerConfig::default())
        .unwrap();
    net.connect_all();
    net
}

fn assert_still_forwards(net: &mut Net, from_payload: u32) {
    let mid = slot_for(net, 1, pid(1)).unwrap();
    let before = net.peers[1].received_on(&mid).len();
    for i in 0..5 {
        net.send_audio(0, &payload(from_payload + i), 40);
        net.advance(Duration::from_millis(20));
    }
    assert_eq!(
        net.peers[1].received_on(&mid).len(),
        before + 5,
        "forwarding still works"
    );
}

#[test]
fn garbage_truncated_and_unknown_datagrams_are_dropped() {
    let mut net = flowing();
    assert_still_forwards(&mut net, 0);
    let stranger: SocketAddr = "192.0.2.7:5555".parse().unwrap();
    let known = net.peers[0].addr;
    let now = net.now;
    let mut rtp = vec![0x80, 111, 0, 1, 0, 0, 0, 1, 0xde, 0xad, 0xbe, 0xef];
    rtp.extend_from_slice(&[7; 50]);
    let stats0 = net.sfu.stats().clone();

    // Garbage and truncated datagrams, from a stranger and from a known peer.
    for from in [stranger, known] {
        for junk in [
            &[][..],
            &[0u8][..],
            &[0x80, 111][..],
            &[1, 1, 0, 0][..],
            &[255; 300][..],
            &[70; 8][..],
        ] {
            net.sfu.handle_datagram(now, from, junk);
        }
        // A STUN header claiming more attributes than present.
        let mut bad_stun = stun_request("abc:def");
        bad_stun.truncate(24);
        net.sfu.handle_datagram(now, from, &bad_stun);
    }
    // Random bytes of every length.
    for len in 0..200usize {
        let bytes: Vec<u8> = (0..len).map(|_| rand::random::<u8>()).collect();
        net.sfu.handle_datagram(now, stranger, &bytes);
        net.sfu.handle_datagram(now, known, &bytes);
    }
    // STUN with an unknown ufrag.
    net.sfu
        .handle_datagram(now, stranger, &stun_request("nosuchufrag:remote"));
    net.sfu
        .handle_datagram(now, known, &stun_request("nosuchufrag:remote"));
    // A forged binding request with a real ufrag but a wrong password: str0m
    // does not answer it, so the stranger's address is not learned.
    let ufrag = net.sfu.local_ufrag(pid(1)).unwrap().to_string();
    net.sfu
        .handle_datagram(now, stranger, &stun_request(&format!("{ufrag}:remote")));
    // RTP / DTLS / RTCP from an unknown address.
    net.sfu.handle_datagram(now, stranger, &rtp);
    net.sfu
        .handle_datagram(now, stranger, &[22, 254, 253, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    let mut rtcp = rtp.clone();
    rtcp[1] = 200;
    net.sfu.handle_datagram(now, stranger, &rtcp);
    // Forged RTP from a known address (bad SRTP auth): str0m drops it.
    net.sfu.handle_datagram(now, known, &rtp);
    net.exchange();

    let s = net.sfu.stats();
    assert!(s.dropped_malformed > stats0.dropped_malformed + 10, "{s:?}");
    assert_eq!(
        s.dropped_unknown_ufrag,
        stats0.dropped_unknown_ufrag + 2,
        "{s:?}"
    );
    assert!(
        s.dropped_unknown_peer >= stats0.dropped_unknown_peer + 3,
        "{s:?}"
    );
    assert_eq!(
        s.forwarded, stats0.forwarded,
        "nothing forged was forwarded"
    );
    assert!(!net
        .events
        .iter()
        .any(|e| matches!(e, SfuEvent::Disconnected { .. })));
    // The stranger is still unknown after its forged binding request.
    let unknown = s.dropped_unknown_peer;
    net.sfu.handle_datagram(now, stranger, &rtp);
    assert_eq!(net.sfu.stats().dropped_unknown_peer, unknown + 1);
    assert_still_forwards(&mut net, 100);
}

#[test]
fn hostile_sdp_is_rejected_without_side_effects() {
    let mut net = flowing();
    let now = net.now;
    let good = crate::testing::TestPeer::new(
        "10.1.1.1:1".parse().unwrap(),
        now,
        TestPeerConfig::default(),
    )
    .offer(1);
    let mut cases: Vec<(&str, String)> = vec![
        ("empty", String::new()),
        ("huge", format!("{good}{}", "a=x\r\n".repeat(20_000))),
        (
            "binary",
            String::from_utf8_lossy(&(0..4000).map(|i| (i * 7 % 256) as u8).collect::<Vec<_>>())
                .into_owned(),
        ),
        (
            "video only",
            good.replace("m=audio", "m=video")
                .replace("opus/48000/2", "VP8/90000"),
        ),
        ("no opus", good.replace("opus/48000/2", "PCMU/8000")),
        ("truncated", good[..good.len() / 2].to_string()),
        (
            "no ice",
            good.lines()
                .filter(|l| !l.starts_with("a=ice-"))
                .collect::<Vec<_>>()
                .join("\r\n"),
        ),
        (
            "no fingerprint",
            good.lines()
                .filter(|l| !l.starts_with("a=fingerprint"))
                .collect::<Vec<_>>()
                .join("\r\n"),
        ),
    ];
    let mut many = good.clone();
    let section = &good[good.find("m=audio").unwrap()..];
    for _ in 0..1000 {
        many.push_str(section);
    }
    cases.push(("1000 m-lines", many));
    for (i, (name, sdp)) in cases.into_iter().enumerate() {
        let r = net.sfu.join(
            now,
            JoinRequest {
                room: room_id(1),
                participant: pid(100 + i as u64),
                user_id: user(5),
                offer_sdp: sdp.clone(),
            },
        );
        assert!(matches!(r, Err(SfuError::InvalidSdp(_))), "{name}: {r:?}");
        // The same garbage as a renegotiation of a live peer.
        let r = net.sfu.renegotiate(now, pid(2), &sdp);
        assert!(r.is_err(), "{name}: renegotiate accepted");
    }
    assert!(matches!(
        net.sfu.renegotiate(now, pid(999), &good),
        Err(SfuError::UnknownParticipant)
    ));
    assert_eq!(
        net.sfu.participant_count(),
        2,
        "no state from rejected offers"
    );
    assert_still_forwards(&mut net, 0);
}

#[test]
fn mutated_offers_never_panic() {
    let mut net = flowing();
    let now = net.now;
    let good = crate::testing::TestPeer::new(
        "10.1.1.1:1".parse().unwrap(),
        now,
        TestPeerConfig::default(),
    )
    .offer(2);
    let lines: Vec<&str> = good.split("\r\n").collect();
    for round in 0..300u64 {
        let mut l: Vec<String> = lines.iter().map(|s| s.to_string()).collect();
        for _ in 0..(1 + round % 4) {
            let i = rand::random_range(0..l.len());
            match rand::random_range(0..5) {
                0 => {
                    l.remove(i);
                }
                1 => {
                    let dup = l[i].clone();
                    l.insert(i, dup);
                }
                2 => {
                    // Mangle numbers.
                    l[i] = l[i].replace('1', "99999999999").replace('9', "-1");
                }
                3 => {
                    let n = l[i].len();
                    l[i].truncate(n / 2);
                }
                _ => {
                    let j = rand::random_range(0..l.len());
                    l.swap(i, j);
                }
            }
        }
        let sdp = l.join("\r\n");
        let _ = net.sfu.join(
            now,
            JoinRequest {
                room: room_id(2),
                participant: pid(1000 + round),
                user_id: user(9),
                offer_sdp: sdp.clone(),
            },
        );
        net.sfu.leave(now, pid(1000 + round));
        let _ = net.sfu.renegotiate(now, pid(2), &sdp);
    }
    net.exchange();
    assert_still_forwards(&mut net, 0);
}

#[test]
fn connect_timeout_and_ice_timeout_disconnect() {
    let mut net = Net::new(&config());
    let a = net
        .join(room_id(1), pid(1), 1, TestPeerConfig::default())
        .unwrap();
    let b = net
        .join(room_id(1), pid(2), 1, TestPeerConfig::default())
        .unwrap();
    net.connect_all();
    // A vanishes: nothing from it reaches the SFU any more.
    net.filter = Some(Box::new(move |peer, to_sfu, _| !(peer == a && to_sfu)));
    net.advance(Duration::from_secs(40));
    let disc: Vec<_> = net
        .events
        .iter()
        .filter(
            |e| matches!(e, SfuEvent::Disconnected { participant, .. } if *participant == pid(1)),
        )
        .collect();
    assert_eq!(disc.len(), 1, "{:?}", net.events);
    assert!(!net.sfu.has_participant(pid(1)));
    assert!(net.sfu.has_participant(pid(2)), "B is unaffected");
    // B's slot was freed.
    assert!(net
        .events
        .iter()
        .any(|e| matches!(e, SfuEvent::Slots { participant, slots }
        if *participant == pid(2) && slots.iter().all(|s| s.user_id.is_none()))));
    let _ = b;

    // A participant that never connects is dropped after the connect timeout.
    let mut net = Net::new(&config());
    let mut p = crate::testing::TestPeer::new(
        "10.2.2.2:2".parse().unwrap(),
        net.now,
        TestPeerConfig::default(),
    );
    net.sfu
        .join(
            net.now,
            JoinRequest {
                room: room_id(1),
                participant: pid(5),
                user_id: user(5),
                offer_sdp: p.offer(0),
            },
        )
        .unwrap();
    net.advance(Duration::from_secs(21));
    assert!(!net.sfu.has_participant(pid(5)));
    assert!(net.events.iter().any(|e| matches!(e, SfuEvent::Disconnected { participant, reason } if *participant == pid(5) && reason.contains("timeout"))), "{:?}", net.events);
    assert_eq!(net.sfu.room_count(), 0);
}

#[test]
fn rejoin_replaces_peer_without_a_leave() {
    let mut net = Net::new(&config());
    let a = net
        .join(room_id(1), pid(1), 1, TestPeerConfig::default())
        .unwrap();
    let b = net
        .join(room_id(1), pid(2), 1, TestPeerConfig::default())
        .unwrap();
    net.connect_all();
    for i in 0..5 {
        net.send_audio(a, &payload(i), 40);
        net.advance(Duration::from_millis(20));
    }
    let mid = slot_for(&net, b, pid(1)).unwrap();
    let last = (*net.peers[b].received_on(&mid).last().unwrap()).clone();
    net.sfu.set_server_mute(pid(1), false);
    // A comes back on a new connection (new client Rtc, new address).
    let mark = net.events.len();
    let a2 = net
        .join(room_id(1), pid(1), 1, TestPeerConfig::default())
        .unwrap();
    net.connect_all();
    let ev = &net.events[mark..];
    assert!(
        !ev.iter()
            .any(|e| matches!(e, SfuEvent::Disconnected { .. })),
        "{ev:?}"
    );
    assert!(
        !ev.iter()
            .any(|e| matches!(e, SfuEvent::Slots { participant, .. } if *participant == pid(2))),
        "B's mapping unchanged: {ev:?}"
    );
    assert!(ev.contains(&SfuEvent::Connected {
        participant: pid(1)
    }));
    assert_eq!(net.sfu.participant_count(), 2);
    for i in 50..55 {
        net.send_audio(a2, &payload(i), 40);
        net.advance(Duration::from_millis(20));
    }
    let got = net.peers[b].received_on(&mid);
    assert_eq!(got.len(), 10);
    assert_eq!(
        got[5].seq,
        last.seq + 1,
        "B's stream continues across A's rejoin"
    );
    assert_eq!(got[5].ssrc, last.ssrc);
    // The old connection's datagrams are no longer accepted for A.
    let old_addr = net.peers[a].addr;
    let before = net.sfu.stats().dropped_unknown_peer;
    net.sfu.handle_datagram(
        net.now,
        old_addr,
        &[0x80, 111, 0, 1, 0, 0, 0, 1, 1, 2, 3, 4, 5],
    );
    assert_eq!(net.sfu.stats().dropped_unknown_peer, before + 1);
}

/// A STUN flood on the media port: binding requests from thousands of addresses, with unknown
/// ufrags and with a real ufrag but no password. Each is dropped (counted), no address is
/// learned, and the call in progress keeps flowing.
#[test]
fn stun_flood_is_dropped_and_the_call_keeps_flowing() {
    let mut net = flowing();
    assert_still_forwards(&mut net, 0);
    let stats0 = net.sfu.stats().clone();
    let ufrag = net.sfu.local_ufrag(pid(1)).unwrap().to_string();
    let unknown = stun_request("nosuchufrag:remote");
    let forged = stun_request(&format!("{ufrag}:remote"));
    let now = net.now;
    const FLOOD: u32 = 5_000;
    for i in 0..FLOOD {
        let from = SocketAddr::from((
            [198, 51, (i >> 8) as u8, i as u8],
            40_000 + (i % 1000) as u16,
        ));
        net.sfu.handle_datagram(now, from, &unknown);
        net.sfu.handle_datagram(now, from, &forged);
        if i % 500 == 0 {
            // The call goes on in the middle of the flood.
            net.exchange();
        }
    }
    net.exchange();
    let s = net.sfu.stats().clone();
    assert_eq!(
        s.dropped_unknown_ufrag,
        stats0.dropped_unknown_ufrag + u64::from(FLOOD),
        "{s:?}"
    );
    assert_eq!(
        s.forwarded, stats0.forwarded,
        "nothing from the flood was forwarded"
    );
    // None of the flooding addresses became a peer: their RTP is still from strangers.
    let mut rtp = vec![0x80, 111, 0, 1, 0, 0, 0, 1, 0xde, 0xad, 0xbe, 0xef];
    rtp.extend_from_slice(&[7; 50]);
    let before = s.dropped_unknown_peer;
    for i in [0u32, 1, FLOOD / 2, FLOOD - 1] {
        let from = SocketAddr::from((
            [198, 51, (i >> 8) as u8, i as u8],
            40_000 + (i % 1000) as u16,
        ));
        net.sfu.handle_datagram(now, from, &rtp);
    }
    assert_eq!(net.sfu.stats().dropped_unknown_peer, before + 4);
    assert!(!net
        .events
        .iter()
        .any(|e| matches!(e, SfuEvent::Disconnected { .. })));
    assert_still_forwards(&mut net, 200);
}
