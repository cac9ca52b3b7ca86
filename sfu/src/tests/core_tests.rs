use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use super::{pid, room_id, user};
use crate::testing::{Net, TestPeerConfig};
use crate::{ParticipantId, SfuConfig, SfuEvent, SlotAssignment};

pub(super) fn config() -> SfuConfig {
    SfuConfig::new(
        SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0),
        IpAddr::V4(Ipv4Addr::new(10, 9, 9, 9)),
    )
}

pub(super) fn payload(i: u32) -> Vec<u8> {
    // Opus-looking bytes, unique per packet.
    let mut p = vec![0xfc, 0xff, 0xfe];
    p.extend_from_slice(&i.to_be_bytes());
    p.extend(std::iter::repeat_n(i as u8, 60));
    p
}

#[test]
fn a_reaches_b_and_c_rewritten_and_unchanged() {
    let mut net = Net::new(&config());
    let a = net
        .join(room_id(1), pid(1), 2, TestPeerConfig::default())
        .unwrap();
    let b = net
        .join(room_id(1), pid(2), 2, TestPeerConfig::default())
        .unwrap();
    let c = net
        .join(room_id(1), pid(3), 2, TestPeerConfig::default())
        .unwrap();
    net.connect_all();
    net.advance(Duration::from_millis(50));
    for i in 0..50 {
        net.send_audio(a, &payload(i), 30);
        net.advance(Duration::from_millis(20));
    }
    let a_ssrc = {
        let mid = net.peers[a].send_mid.unwrap();
        *net.peers[a]
            .rtc
            .direct_api()
            .stream_tx_by_mid(mid, None)
            .unwrap()
            .ssrc()
    };
    for sub in [b, c] {
        let slots = net.sfu.slots_of(net.ids[sub]);
        let (mid, _) = slots
            .iter()
            .find(|(_, s)| *s == Some(pid(1)))
            .expect("A has a slot")
            .clone();
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

/// The slot mid of `sub` that carries `source`, if any.
pub(super) fn slot_for(net: &Net, sub: usize, source: ParticipantId) -> Option<String> {
    net.sfu
        .slots_of(net.ids[sub])
        .into_iter()
        .find(|(_, s)| *s == Some(source))
        .map(|(m, _)| m)
}

fn events_since(net: &Net, from: usize) -> Vec<SfuEvent> {
    net.events[from..].to_vec()
}

#[test]
fn renegotiation_and_slot_events() {
    let mut net = Net::new(&config());
    let a = net
        .join(room_id(1), pid(1), 0, TestPeerConfig::default())
        .unwrap();
    // Alone: no slots needed, no renegotiation.
    assert!(!net
        .events
        .iter()
        .any(|e| matches!(e, SfuEvent::RenegotiationNeeded { .. })));

    let mark = net.events.len();
    let b = net
        .join(room_id(1), pid(2), 1, TestPeerConfig::default())
        .unwrap();
    let ev = events_since(&net, mark);
    assert!(
        ev.contains(&SfuEvent::RenegotiationNeeded {
            participant: pid(1),
            audio_slots: 1
        }),
        "{ev:?}"
    );
    assert!(
        ev.contains(&SfuEvent::Slots {
            participant: pid(2),
            slots: vec![SlotAssignment {
                mid: net.peers[b].recv_mids[0].to_string(),
                user_id: Some(user(1001)),
                stream: false,
            }],
        }),
        "{ev:?}"
    );

    // A offers again with one listening slot and gets B on it.
    let mark = net.events.len();
    net.renegotiate(a, 1).unwrap();
    let ev = events_since(&net, mark);
    assert!(
        ev.contains(&SfuEvent::Slots {
            participant: pid(1),
            slots: vec![SlotAssignment {
                mid: net.peers[a].recv_mids[0].to_string(),
                user_id: Some(user(1002)),
                stream: false,
            }],
        }),
        "{ev:?}"
    );

    // A listen-only peer costs nobody a renegotiation, but gets slots itself.
    let mark = net.events.len();
    let l = net
        .join(
            room_id(1),
            pid(9),
            2,
            TestPeerConfig {
                send: false,
                ..Default::default()
            },
        )
        .unwrap();
    let ev = events_since(&net, mark);
    assert!(
        !ev.iter()
            .any(|e| matches!(e, SfuEvent::RenegotiationNeeded { .. })),
        "{ev:?}"
    );
    assert_eq!(
        net.sfu
            .slots_of(pid(9))
            .iter()
            .filter(|(_, s)| s.is_some())
            .count(),
        2
    );

    // A third publisher: A and B need 2 slots, L already has 2.
    let mark = net.events.len();
    let _c = net
        .join(room_id(1), pid(3), 2, TestPeerConfig::default())
        .unwrap();
    let ev = events_since(&net, mark);
    assert!(
        ev.contains(&SfuEvent::RenegotiationNeeded {
            participant: pid(1),
            audio_slots: 2
        }),
        "{ev:?}"
    );
    assert!(
        ev.contains(&SfuEvent::RenegotiationNeeded {
            participant: pid(2),
            audio_slots: 2
        }),
        "{ev:?}"
    );
    // The listen-only peer hears three publishers now: it needs a third slot.
    assert!(
        ev.contains(&SfuEvent::RenegotiationNeeded {
            participant: pid(9),
            audio_slots: 3
        }),
        "{ev:?}"
    );
    assert!(!ev.iter().any(
        |e| matches!(e, SfuEvent::RenegotiationNeeded { participant, .. } if *participant == pid(3))
    ));

    // Media flows to everybody after the renegotiations.
    net.renegotiate(a, 2).unwrap();
    net.renegotiate(b, 2).unwrap();
    net.connect_all();
    net.advance(Duration::from_millis(50));
    for i in 0..10 {
        net.send_audio(b, &payload(i), 40);
        net.advance(Duration::from_millis(20));
    }
    for sub in [a, l] {
        let mid = slot_for(&net, sub, pid(2)).unwrap();
        assert_eq!(net.peers[sub].received_on(&mid).len(), 10);
    }
}

#[test]
fn leaving_publisher_frees_slot_for_next_with_continuous_stream() {
    let mut net = Net::new(&config());
    let a = net
        .join(room_id(1), pid(1), 2, TestPeerConfig::default())
        .unwrap();
    let b = net
        .join(room_id(1), pid(2), 2, TestPeerConfig::default())
        .unwrap();
    net.connect_all();
    net.advance(Duration::from_millis(50));
    for i in 0..10 {
        net.send_audio(b, &payload(i), 40);
        net.advance(Duration::from_millis(20));
    }
    let mid = slot_for(&net, a, pid(2)).unwrap();
    assert_eq!(net.peers[a].received_on(&mid).len(), 10);
    let last_b = (*net.peers[a].received_on(&mid).last().unwrap()).clone();

    let mark = net.events.len();
    net.sfu.leave(net.now, pid(2));
    net.exchange();
    let ev = events_since(&net, mark);
    assert!(
        ev.iter()
            .any(|e| matches!(e, SfuEvent::Slots { participant, slots }
        if *participant == pid(1) && slots.iter().all(|s| s.user_id.is_none()))),
        "{ev:?}"
    );
    assert!(
        !ev.iter()
            .any(|e| matches!(e, SfuEvent::Disconnected { .. })),
        "explicit leave is not a disconnect"
    );
    assert_eq!(net.sfu.participant_count(), 1);

    // Nothing more arrives on the freed slot.
    net.advance(Duration::from_millis(500));
    assert_eq!(net.peers[a].received_on(&mid).len(), 10);

    // D takes the freed slot: same mid, same SSRC, numbering continues.
    let d = net
        .join(room_id(1), pid(4), 2, TestPeerConfig::default())
        .unwrap();
    net.connect_all();
    assert_eq!(
        slot_for(&net, a, pid(4)).as_deref(),
        Some(mid.as_str()),
        "slot reused"
    );
    for i in 100..110 {
        net.send_audio(d, &payload(i), 40);
        net.advance(Duration::from_millis(20));
    }
    let got = net.peers[a].received_on(&mid);
    assert_eq!(got.len(), 20);
    let first_d = got[10];
    assert_eq!(first_d.ssrc, last_b.ssrc, "same outgoing SSRC on the slot");
    assert_eq!(
        first_d.seq,
        last_b.seq + 1,
        "sequence continues across the source switch"
    );
    assert!(
        first_d.timestamp.wrapping_sub(last_b.timestamp) >= 960,
        "time moves forward"
    );
    assert_eq!(&first_d.payload[..], &payload(100)[..]);
}

#[test]
fn room_is_removed_when_empty() {
    let mut net = Net::new(&config());
    net.join(room_id(1), pid(1), 0, TestPeerConfig::default())
        .unwrap();
    net.join(room_id(2), pid(2), 0, TestPeerConfig::default())
        .unwrap();
    assert_eq!(net.sfu.room_count(), 2);
    net.sfu.leave(net.now, pid(1));
    assert_eq!(net.sfu.room_count(), 1);
    net.sfu.leave(net.now, pid(2));
    assert_eq!(net.sfu.room_count(), 0);
    assert_eq!(net.sfu.participant_count(), 0);
    net.sfu.leave(net.now, pid(2)); // unknown: no-op
}

fn speaking(ev: &[SfuEvent], participant: ParticipantId) -> Vec<bool> {
    ev.iter()
        .filter_map(|e| match e {
            SfuEvent::Speaking {
                participant: p,
                speaking,
                ..
            } if *p == participant => Some(*speaking),
            _ => None,
        })
        .collect()
}

#[test]
fn speaking_from_audio_level() {
    let mut net = Net::new(&config());
    let a = net
        .join(room_id(7), pid(1), 1, TestPeerConfig::default())
        .unwrap();
    net.join(room_id(7), pid(2), 1, TestPeerConfig::default())
        .unwrap();
    net.connect_all();
    // Quiet audio: no event.
    for i in 0..20 {
        net.send_audio(a, &payload(i), 110);
        net.advance(Duration::from_millis(20));
    }
    assert!(speaking(&net.events, pid(1)).is_empty());
    // Speech for 400 ms: speaking.
    for i in 20..40 {
        net.send_audio(a, &payload(i), 25);
        net.advance(Duration::from_millis(20));
    }
    assert_eq!(speaking(&net.events, pid(1)), vec![true]);
    assert!(net.events.contains(&SfuEvent::Speaking {
        room: room_id(7),
        participant: pid(1),
        user_id: user(1001),
        speaking: true
    }));
    // The packets stop (DTX / mute): the release timer ends it.
    net.advance(Duration::from_millis(700));
    assert_eq!(speaking(&net.events, pid(1)), vec![true, false]);

    // Server-muted: audio dropped and never speaking.
    net.sfu.set_server_mute(pid(1), true);
    let before = net.sfu.stats().forwarded;
    for i in 40..70 {
        net.send_audio(a, &payload(i), 10);
        net.advance(Duration::from_millis(20));
    }
    assert_eq!(speaking(&net.events, pid(1)), vec![true, false]);
    assert_eq!(net.sfu.stats().forwarded, before);
    assert_eq!(net.sfu.stats().dropped_muted, 30);

    // Self-mute while speaking clears the state.
    net.sfu.set_server_mute(pid(1), false);
    for i in 70..90 {
        net.send_audio(a, &payload(i), 10);
        net.advance(Duration::from_millis(20));
    }
    assert_eq!(speaking(&net.events, pid(1)), vec![true, false, true]);
    net.sfu.set_self_mute(pid(1), true);
    net.exchange();
    assert_eq!(
        speaking(&net.events, pid(1)),
        vec![true, false, true, false]
    );
}

#[test]
fn server_mute_drops_and_unmute_resumes_continuously() {
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
    net.sfu.set_server_mute(pid(1), true);
    for i in 5..15 {
        net.send_audio(a, &payload(i), 40);
        net.advance(Duration::from_millis(20));
    }
    let mid = slot_for(&net, b, pid(1)).unwrap();
    assert_eq!(net.peers[b].received_on(&mid).len(), 5);
    net.sfu.set_server_mute(pid(1), false);
    for i in 15..20 {
        net.send_audio(a, &payload(i), 40);
        net.advance(Duration::from_millis(20));
    }
    let got = net.peers[b].received_on(&mid);
    assert_eq!(got.len(), 10);
    assert_eq!(&got[5].payload[..], &payload(15)[..]);
    for w in got.windows(2) {
        assert_eq!(
            w[1].seq,
            w[0].seq + 1,
            "no gap the client would take for loss"
        );
    }
}

#[test]
fn self_mute_drops_audio_like_a_server_mute_and_unmute_resumes() {
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
    // Self-muted (or self-deafened, which signaling passes as a self-mute),
    // yet the client keeps sending: nothing reaches the listener.
    net.sfu.set_self_mute(pid(1), true);
    let dropped = net.sfu.stats().dropped_muted;
    for i in 5..15 {
        net.send_audio(a, &payload(i), 10);
        net.advance(Duration::from_millis(20));
    }
    let mid = slot_for(&net, b, pid(1)).unwrap();
    assert_eq!(net.peers[b].received_on(&mid).len(), 5);
    assert_eq!(net.sfu.stats().dropped_muted, dropped + 10);
    net.sfu.set_self_mute(pid(1), false);
    for i in 15..20 {
        net.send_audio(a, &payload(i), 40);
        net.advance(Duration::from_millis(20));
    }
    let got = net.peers[b].received_on(&mid);
    assert_eq!(got.len(), 10);
    assert_eq!(&got[5].payload[..], &payload(15)[..]);
    for w in got.windows(2) {
        assert_eq!(w[1].seq, w[0].seq + 1, "continuous numbering");
    }
}

#[test]
fn deaf_stops_forwarding_to_that_participant_only() {
    let mut net = Net::new(&config());
    let a = net
        .join(room_id(1), pid(1), 2, TestPeerConfig::default())
        .unwrap();
    let b = net
        .join(room_id(1), pid(2), 2, TestPeerConfig::default())
        .unwrap();
    let c = net
        .join(
            room_id(1),
            pid(3),
            2,
            TestPeerConfig {
                send: false,
                ..Default::default()
            },
        )
        .unwrap();
    net.connect_all();
    net.sfu.set_deaf(pid(2), true);
    for i in 0..10 {
        net.send_audio(a, &payload(i), 40);
        net.advance(Duration::from_millis(20));
    }
    let mid_b = slot_for(&net, b, pid(1)).unwrap();
    let mid_c = slot_for(&net, c, pid(1)).unwrap();
    assert_eq!(net.peers[b].received_on(&mid_b).len(), 0);
    assert_eq!(net.peers[c].received_on(&mid_c).len(), 10);
    net.sfu.set_deaf(pid(2), false);
    for i in 10..15 {
        net.send_audio(a, &payload(i), 40);
        net.advance(Duration::from_millis(20));
    }
    assert_eq!(net.peers[b].received_on(&mid_b).len(), 5);
    assert_eq!(net.peers[c].received_on(&mid_c).len(), 15);
}

#[test]
fn nack_is_answered_from_the_send_buffer() {
    let mut cfg = config();
    cfg.audio_rtx = true;
    cfg.stats_interval = Duration::from_millis(200);
    let mut net = Net::new(&cfg);
    let rtx = TestPeerConfig {
        rtx: true,
        ..Default::default()
    };
    let a = net.join(room_id(1), pid(1), 1, rtx).unwrap();
    let b = net.join(room_id(1), pid(2), 1, rtx).unwrap();
    net.connect_all();
    for i in 0..10 {
        net.send_audio(a, &payload(i), 40);
        net.advance(Duration::from_millis(20));
    }
    // Lose exactly one forwarded RTP packet on its way to B.
    let mut seen = 0;
    net.filter = Some(Box::new(move |peer, to_sfu, bytes| {
        if peer == b && !to_sfu && crate::demux::classify(bytes) == Some(crate::demux::Kind::Rtp) {
            seen += 1;
            return seen != 2;
        }
        true
    }));
    for i in 10..30 {
        net.send_audio(a, &payload(i), 40);
        net.advance(Duration::from_millis(20));
    }
    net.advance(Duration::from_millis(500));
    let mid = slot_for(&net, b, pid(1)).unwrap();
    let got = net.peers[b].received_on(&mid);
    let mut payloads: Vec<Vec<u8>> = got.iter().map(|r| r.payload.to_vec()).collect();
    payloads.sort();
    payloads.dedup();
    assert_eq!(
        payloads.len(),
        30,
        "the lost packet was recovered by retransmission"
    );
    assert!(
        net.sfu.stats().retransmissions >= 1,
        "{:?}",
        net.sfu.stats()
    );
    assert!(net.sfu.stats().nacks_received >= 1, "{:?}", net.sfu.stats());
}

#[test]
fn red_is_passed_through_untouched() {
    let mut net = Net::new(&config());
    let red = TestPeerConfig {
        red: true,
        ..Default::default()
    };
    let a = net.join(room_id(1), pid(1), 1, red).unwrap();
    let b = net.join(room_id(1), pid(2), 1, red).unwrap();
    let c = net
        .join(room_id(1), pid(3), 1, TestPeerConfig::default())
        .unwrap(); // no RED
    net.renegotiate(a, 2).unwrap();
    net.renegotiate(b, 2).unwrap();
    net.connect_all();
    let red_pt = net.peers[a]
        .rtc
        .codec_config()
        .params()
        .iter()
        .find_map(|p| p.red())
        .expect("RED negotiated");
    // A RED packet: header byte (F=0, PT 111) + Opus primary.
    let mut red_payload = vec![111u8];
    red_payload.extend_from_slice(&payload(5));
    net.peers[a].send_raw(net.now, red_pt, &red_payload);
    net.exchange();
    let mid = slot_for(&net, b, pid(1)).unwrap();
    let got = net.peers[b].received_on(&mid);
    assert_eq!(
        got.len(),
        1,
        "{:?} {:?}",
        net.sfu.stats(),
        net.peers[b].events
    );
    assert_eq!(
        &got[0].payload[..],
        &red_payload[..],
        "RED payload bytes untouched"
    );
    assert_eq!(got[0].pt, *red_pt);
    // C did not negotiate RED: it gets nothing rather than bytes it can't parse.
    let mid_c = slot_for(&net, c, pid(1)).unwrap();
    assert!(net.peers[c].received_on(&mid_c).is_empty());
}

#[test]
fn offer_with_extra_video_m_line_still_joins_for_audio() {
    use str0m::media::{Direction, MediaKind};
    let mut net = Net::new(&config());
    let a = net
        .join(room_id(1), pid(1), 1, TestPeerConfig::default())
        .unwrap();
    // A client that also offers a video receive transceiver (later feature).
    let now = net.now;
    let mut rtc = str0m::RtcConfig::new().set_rtp_mode(true).build(now);
    rtc.add_local_candidate(str0m::Candidate::host("10.3.3.3:3".parse().unwrap(), "udp").unwrap());
    let mut api = rtc.sdp_api();
    api.add_media(MediaKind::Audio, Direction::SendOnly, None, None, None);
    api.add_media(MediaKind::Audio, Direction::RecvOnly, None, None, None);
    api.add_media(MediaKind::Video, Direction::RecvOnly, None, None, None);
    let (offer, pending) = api.apply().unwrap();
    let answer = net
        .sfu
        .join(
            now,
            crate::JoinRequest {
                room: room_id(1),
                participant: pid(2),
                user_id: user(2),
                offer_sdp: offer.to_sdp_string(),
            },
        )
        .unwrap();
    let answer = str0m::change::SdpAnswer::from_sdp_string(&answer).unwrap();
    rtc.sdp_api().accept_answer(pending, answer).unwrap();
    assert_eq!(
        net.sfu.slots_of(pid(2)).len(),
        1,
        "only the audio recvonly m-line is a slot"
    );
    assert_eq!(net.sfu.slots_of(pid(1))[0].1, Some(pid(2)));
    let _ = a;
}

#[test]
fn source_sequence_wrap_is_continuous_downstream() {
    let mut net = Net::new(&config());
    let a = net
        .join(room_id(1), pid(1), 1, TestPeerConfig::default())
        .unwrap();
    let b = net
        .join(room_id(1), pid(2), 1, TestPeerConfig::default())
        .unwrap();
    net.connect_all();
    net.peers[a].next_seq = 65_530;
    for i in 0..12 {
        net.send_audio(a, &payload(i), 40);
        net.advance(Duration::from_millis(20));
    }
    let mid = slot_for(&net, b, pid(1)).unwrap();
    let got = net.peers[b].received_on(&mid);
    assert_eq!(got.len(), 12);
    for w in got.windows(2) {
        assert_eq!(w[1].seq, w[0].seq + 1);
    }
    for (i, r) in got.iter().enumerate() {
        assert_eq!(&r.payload[..], &payload(i as u32)[..]);
    }
}

/// An offer shaped like Chromium's (sendrecv mic + two recvonly slots, many
/// codecs and header extensions).
const CHROME_LIKE_OFFER: &str = "v=0\r\n\
o=- 4611731400430051336 2 IN IP4 127.0.0.1\r\n\
s=-\r\n\
t=0 0\r\n\
a=group:BUNDLE 0 1 2\r\n\
a=extmap-allow-mixed\r\n\
a=msid-semantic: WMS stream0\r\n\
m=audio 9 UDP/TLS/RTP/SAVPF 111 63 9 0 8 13 110 126\r\n\
c=IN IP4 0.0.0.0\r\n\
a=rtcp:9 IN IP4 0.0.0.0\r\n\
a=ice-ufrag:Hx2v\r\n\
a=ice-pwd:ytc9Xw0fTn3Gx5nU8WmG2mDd\r\n\
a=ice-options:trickle\r\n\
a=fingerprint:sha-256 8E:6B:22:7E:1B:2C:7C:64:2B:9D:80:5F:1A:58:F2:8C:52:BC:1E:3E:11:F6:55:2A:86:0D:12:0B:1D:7B:65:7D\r\n\
a=setup:actpass\r\n\
a=mid:0\r\n\
a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level\r\n\
a=extmap:2 http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time\r\n\
a=extmap:3 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01\r\n\
a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid\r\n\
a=sendrecv\r\n\
a=msid:stream0 track0\r\n\
a=rtcp-mux\r\n\
a=rtcp-rsize\r\n\
a=rtpmap:111 opus/48000/2\r\n\
a=rtcp-fb:111 transport-cc\r\n\
a=fmtp:111 minptime=10;useinbandfec=1\r\n\
a=rtpmap:63 red/48000/2\r\n\
a=fmtp:63 111/111\r\n\
a=rtpmap:9 G722/8000\r\n\
a=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:13 CN/8000\r\n\
a=rtpmap:110 telephone-event/48000\r\n\
a=rtpmap:126 telephone-event/8000\r\n\
a=ssrc:1001 cname:abcdefgh\r\n\
a=ssrc:1001 msid:stream0 track0\r\n\
m=audio 9 UDP/TLS/RTP/SAVPF 111 63 0\r\n\
c=IN IP4 0.0.0.0\r\n\
a=rtcp:9 IN IP4 0.0.0.0\r\n\
a=ice-ufrag:Hx2v\r\n\
a=ice-pwd:ytc9Xw0fTn3Gx5nU8WmG2mDd\r\n\
a=ice-options:trickle\r\n\
a=fingerprint:sha-256 8E:6B:22:7E:1B:2C:7C:64:2B:9D:80:5F:1A:58:F2:8C:52:BC:1E:3E:11:F6:55:2A:86:0D:12:0B:1D:7B:65:7D\r\n\
a=setup:actpass\r\n\
a=mid:1\r\n\
a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level\r\n\
a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid\r\n\
a=recvonly\r\n\
a=rtcp-mux\r\n\
a=rtpmap:111 opus/48000/2\r\n\
a=fmtp:111 minptime=10;useinbandfec=1\r\n\
a=rtpmap:63 red/48000/2\r\n\
a=fmtp:63 111/111\r\n\
a=rtpmap:0 PCMU/8000\r\n\
m=audio 9 UDP/TLS/RTP/SAVPF 111 63 0\r\n\
c=IN IP4 0.0.0.0\r\n\
a=rtcp:9 IN IP4 0.0.0.0\r\n\
a=ice-ufrag:Hx2v\r\n\
a=ice-pwd:ytc9Xw0fTn3Gx5nU8WmG2mDd\r\n\
a=ice-options:trickle\r\n\
a=fingerprint:sha-256 8E:6B:22:7E:1B:2C:7C:64:2B:9D:80:5F:1A:58:F2:8C:52:BC:1E:3E:11:F6:55:2A:86:0D:12:0B:1D:7B:65:7D\r\n\
a=setup:actpass\r\n\
a=mid:2\r\n\
a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level\r\n\
a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid\r\n\
a=recvonly\r\n\
a=rtcp-mux\r\n\
a=rtpmap:111 opus/48000/2\r\n\
a=fmtp:111 minptime=10;useinbandfec=1\r\n\
a=rtpmap:63 red/48000/2\r\n\
a=fmtp:63 111/111\r\n\
a=rtpmap:0 PCMU/8000\r\n";

#[test]
fn chrome_like_offer_is_answered_with_audio_only_extensions() {
    let mut net = Net::new(&config());
    net.join(room_id(1), pid(1), 2, TestPeerConfig::default())
        .unwrap();
    let answer = net
        .sfu
        .join(
            net.now,
            crate::JoinRequest {
                room: room_id(1),
                participant: pid(2),
                user_id: user(2),
                offer_sdp: CHROME_LIKE_OFFER.into(),
            },
        )
        .unwrap();
    assert!(answer.contains("a=ice-lite"), "{answer}");
    assert!(
        answer.contains("a=candidate:") && answer.contains("10.9.9.9 3478 typ host"),
        "{answer}"
    );
    assert!(
        answer.contains("ssrc-audio-level") && answer.contains("sdes:mid"),
        "{answer}"
    );
    assert!(
        !answer.contains("transport-wide-cc") && !answer.contains("abs-send-time"),
        "{answer}"
    );
    assert!(
        answer.contains("opus/48000/2") && answer.contains("red/48000/2"),
        "{answer}"
    );
    assert!(!answer.contains("PCMU"), "{answer}");
    // mid 0 publishes (sendrecv), mids 1 and 2 are slots; participant 1 is on the first.
    let slots = net.sfu.slots_of(pid(2));
    assert_eq!(
        slots,
        vec![("1".to_string(), Some(pid(1))), ("2".to_string(), None)]
    );
    // And participant 2 counts as a publisher for participant 1.
    assert!(net
        .sfu
        .slots_of(pid(1))
        .iter()
        .any(|(_, s)| *s == Some(pid(2))));
}

#[test]
fn ice_tcp_adds_a_passive_tcp_candidate_below_udp() {
    let mut net = Net::new(&config());
    net.sfu.enable_ice_tcp("10.9.9.9:3479".parse().unwrap());
    let answer = net
        .sfu
        .join(
            net.now,
            crate::JoinRequest {
                room: room_id(1),
                participant: pid(2),
                user_id: user(2),
                offer_sdp: CHROME_LIKE_OFFER.into(),
            },
        )
        .unwrap();
    let candidates: Vec<&str> = answer
        .lines()
        .filter(|l| l.starts_with("a=candidate:"))
        .collect();
    let udp = candidates
        .iter()
        .find(|l| l.contains(" udp ") && l.contains("10.9.9.9 3478 typ host"));
    let tcp = candidates
        .iter()
        .find(|l| l.contains(" tcp ") && l.contains("10.9.9.9 3479 typ host tcptype passive"));
    let (Some(udp), Some(tcp)) = (udp, tcp) else {
        panic!("a UDP and a passive TCP host candidate: {candidates:?}");
    };
    let priority = |l: &str| {
        l.split_whitespace()
            .nth(3)
            .and_then(|p| p.parse::<u32>().ok())
            .unwrap()
    };
    assert!(
        priority(udp) > priority(tcp),
        "UDP preferred: {udp} / {tcp}"
    );
}

#[test]
fn ipv6_adds_a_second_host_candidate() {
    let mut net = Net::new(&config());
    net.sfu.enable_ipv6("[2001:db8::7]:3478".parse().unwrap());
    let answer = net
        .sfu
        .join(
            net.now,
            crate::JoinRequest {
                room: room_id(1),
                participant: pid(2),
                user_id: user(2),
                offer_sdp: CHROME_LIKE_OFFER.into(),
            },
        )
        .unwrap();
    assert!(answer.contains("10.9.9.9 3478 typ host"), "{answer}");
    assert!(answer.contains("2001:db8::7 3478 typ host"), "{answer}");
}
