//! Video through the SFU: simulcast layers, video slots, layer switches at
//! keyframes, keyframe request throttling and pause reports.

use std::time::Duration;

use super::core_tests::config;
use super::{pid, room_id, user};
use crate::testing::{parse_vp8_frame, Bottleneck, Net, Received, TestPeerConfig};
use crate::{ParticipantId, SfuEvent, VideoSlotAssignment, VideoSubscription, VideoTrackKind};

const RIDS: [&str; 3] = ["q", "h", "f"];

fn publisher() -> TestPeerConfig {
    TestPeerConfig {
        video_send: 1,
        simulcast: true,
        ..Default::default()
    }
}

fn viewer() -> TestPeerConfig {
    TestPeerConfig {
        video_recv: 3,
        ..Default::default()
    }
}

/// A publisher (participant 1, user 1001) with a simulcast camera and
/// `viewers` viewers (participants 2.., users 1002..) with 3 video slots each.
fn room(viewers: usize) -> Net {
    let mut net = Net::new(&config());
    net.join(room_id(1), pid(1), viewers, publisher()).unwrap();
    for v in 0..viewers {
        net.join(room_id(1), pid(2 + v as u64), viewers, viewer())
            .unwrap();
    }
    net.connect_all();
    net
}

/// One frame on every layer of the camera of peer 0, then 33 ms pass.
fn frame(net: &mut Net, keyframe_on: &[&str]) {
    for rid in RIDS {
        net.send_video(0, 0, Some(rid), keyframe_on.contains(&rid));
    }
    net.advance(Duration::from_millis(33));
}

fn watch(net: &mut Net, viewer: ParticipantId, width: u32, height: u32) {
    let now = net.now;
    net.sfu.set_video_subscriptions(
        now,
        viewer,
        vec![VideoSubscription {
            user_id: user(1001),
            track: VideoTrackKind::Camera,
            width,
            height,
        }],
    );
    net.exchange();
    while let Some(e) = net.sfu.poll_event() {
        net.events.push(e);
    }
}

/// Video packets peer `idx` received on its first video slot.
fn video_in(net: &Net, idx: usize) -> Vec<&Received> {
    let mid = net.peers[idx].video_recv_mids[0].to_string();
    net.peers[idx].received_on(&mid)
}

/// rid index (0 q, 1 h, 2 f) of each received packet.
fn layers(got: &[&Received]) -> Vec<u8> {
    got.iter()
        .map(|r| parse_vp8_frame(&r.payload).expect("vp8 frame").3 & 0x0f)
        .collect()
}

fn assert_continuous(got: &[&Received]) {
    for w in got.windows(2) {
        assert_eq!(w[1].seq, w[0].seq + 1, "continuous sequence numbers");
        assert!(
            w[1].timestamp.wrapping_sub(w[0].timestamp) < 90_000,
            "timestamps advance: {} → {}",
            w[0].timestamp,
            w[1].timestamp
        );
        let (p0, t0, ..) = parse_vp8_frame(&w[0].payload).unwrap();
        let (p1, t1, ..) = parse_vp8_frame(&w[1].payload).unwrap();
        assert_eq!(p1, (p0 + 1) & 0x7fff, "continuous VP8 picture ids");
        assert_eq!(t1, t0.wrapping_add(1), "continuous TL0PICIDX");
    }
    assert_eq!(
        got.iter()
            .map(|r| r.ssrc)
            .collect::<std::collections::HashSet<_>>()
            .len(),
        1
    );
}

fn pauses(net: &Net) -> Vec<Vec<String>> {
    net.events
        .iter()
        .filter_map(|e| match e {
            SfuEvent::PauseLayers {
                participant,
                track: VideoTrackKind::Camera,
                active_rids,
            } if *participant == pid(1) => Some(active_rids.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn answer_negotiates_video_with_simulcast_and_feedback() {
    let mut net = Net::new(&config());
    let mut peer = crate::testing::TestPeer::new(
        "10.7.0.1:4000".parse().unwrap(),
        net.now,
        TestPeerConfig {
            video_send: 2,
            simulcast: true,
            video_recv: 2,
            ..Default::default()
        },
    );
    let offer = peer.offer(0);
    let answer = net
        .sfu
        .join(
            net.now,
            crate::JoinRequest {
                room: room_id(1),
                participant: pid(1),
                user_id: user(1001),
                offer_sdp: offer,
            },
        )
        .unwrap();
    for want in [
        "VP8/90000",
        "transport-wide-cc",
        "sdes:rtp-stream-id",
        "repaired-rtp-stream-id",
        "abs-send-time",
        "a=simulcast:recv q;h;f",
        "a=rid:q recv",
        "nack pli",
        "ccm fir",
        "rtx/90000",
    ] {
        assert!(answer.contains(want), "answer lacks {want:?}:\n{answer}");
    }
    // A camera starts sharp: a starting bandwidth estimate for the publisher's encoder, and
    // audio kept out of the transport-wide feedback (see `sdp::tune_video_answer`).
    let (audio, video) = answer.split_at(answer.find("m=video").unwrap());
    assert!(
        !audio.contains("transport-wide-cc") && !audio.contains(" transport-cc"),
        "{audio}"
    );
    assert!(video.contains(" transport-cc"), "{video}");
    assert!(video.contains("x-google-start-bitrate=2000"), "{video}");
    peer.accept_answer(&answer).unwrap();
    assert_eq!(
        net.sfu.video_tracks_of(pid(1)),
        vec![
            (
                VideoTrackKind::Camera,
                vec!["q".into(), "h".into(), "f".into()]
            ),
            (
                VideoTrackKind::Screen,
                vec!["q".into(), "h".into(), "f".into()]
            ),
        ]
    );
    assert_eq!(net.sfu.video_slots_of(pid(1)).len(), 2);
}

#[test]
fn small_view_gets_q_layer_from_its_keyframe_on() {
    let mut net = room(1);
    // Unwatched: nothing is forwarded, and the publisher is told so.
    for _ in 0..5 {
        frame(&mut net, &[]);
    }
    assert!(video_in(&net, 1).is_empty());
    assert_eq!(net.sfu.stats().forwarded_video, 0);
    assert_eq!(pauses(&net).last(), Some(&vec![]));

    watch(&mut net, pid(2), 320, 180);
    let mid = net.peers[1].video_recv_mids[0].to_string();
    assert!(net.events.contains(&SfuEvent::VideoSlots {
        participant: pid(2),
        slots: vec![
            VideoSlotAssignment {
                mid: mid.clone(),
                user_id: Some(user(1001)),
                track: Some(VideoTrackKind::Camera)
            },
            VideoSlotAssignment {
                mid: net.peers[1].video_recv_mids[1].to_string(),
                user_id: None,
                track: None
            },
            VideoSlotAssignment {
                mid: net.peers[1].video_recv_mids[2].to_string(),
                user_id: None,
                track: None
            },
        ]
    }));
    // Asked for a keyframe on q; until it comes nothing is forwarded.
    assert_eq!(
        net.peers[0].keyframe_requests,
        vec![(
            net.peers[0].video_send_mids[0].to_string(),
            Some("q".into())
        )]
    );
    assert_eq!(pauses(&net).last(), Some(&vec!["q".to_string()]));
    frame(&mut net, &[]);
    assert!(video_in(&net, 1).is_empty());
    frame(&mut net, &["q", "h", "f"]);
    for _ in 0..10 {
        frame(&mut net, &[]);
    }
    let got = video_in(&net, 1);
    assert_eq!(got.len(), 11);
    assert!(layers(&got).iter().all(|&l| l == 0), "{:?}", layers(&got));
    assert!(
        parse_vp8_frame(&got[0].payload).unwrap().2,
        "starts with a keyframe"
    );
    assert_continuous(&got);
    assert_eq!(net.sfu.video_layer_of(pid(2), &mid).as_deref(), Some("q"));
    // Audio slots are untouched by video.
    assert_eq!(
        net.sfu.slots_of(pid(2)),
        vec![(net.peers[1].recv_mids[0].to_string(), Some(pid(1)))]
    );
}

#[test]
fn large_view_gets_f_and_switches_only_at_a_keyframe() {
    let mut net = room(1);
    frame(&mut net, &[]);
    watch(&mut net, pid(2), 1280, 720);
    frame(&mut net, &["q", "h", "f"]);
    for _ in 0..5 {
        frame(&mut net, &[]);
    }
    assert!(layers(&video_in(&net, 1)).iter().all(|&l| l == 2));
    assert_eq!(pauses(&net).last(), Some(&vec!["f".to_string()]));

    // Smaller view: still f until q's next keyframe, then q.
    let before = video_in(&net, 1).len();
    let asked = net.peers[0].keyframe_requests.len();
    net.advance(Duration::from_millis(600));
    watch(&mut net, pid(2), 300, 170);
    assert_eq!(net.peers[0].keyframe_requests.len(), asked + 1, "PLI for q");
    assert_eq!(
        net.peers[0].keyframe_requests.last().unwrap().1.as_deref(),
        Some("q")
    );
    for _ in 0..4 {
        frame(&mut net, &["f"]); // keyframes on other layers don't switch
    }
    frame(&mut net, &["q"]);
    for _ in 0..4 {
        frame(&mut net, &[]);
    }
    let got = video_in(&net, 1);
    assert_eq!(got.len(), before + 9);
    let l = layers(&got[before..]);
    assert_eq!(l, vec![2, 2, 2, 2, 0, 0, 0, 0, 0]);
    assert!(parse_vp8_frame(&got[before + 4].payload).unwrap().2);
    assert_continuous(&got);
    // The f layer is no longer needed.
    net.advance(Duration::from_millis(300));
    assert_eq!(pauses(&net).last(), Some(&vec!["q".to_string()]));

    // Not shown any more: nothing forwarded, all layers paused.
    let now = net.now;
    net.sfu.set_video_subscriptions(now, pid(2), vec![]);
    net.exchange();
    while let Some(e) = net.sfu.poll_event() {
        net.events.push(e);
    }
    let n = video_in(&net, 1).len();
    frame(&mut net, &["q", "h", "f"]);
    assert_eq!(video_in(&net, 1).len(), n);
    assert_eq!(pauses(&net).last(), Some(&vec![]));
}

#[test]
fn keyframe_requests_are_throttled_per_track() {
    let mut net = room(3);
    frame(&mut net, &[]);
    // Three viewers start watching within 100 ms: one PLI.
    watch(&mut net, pid(2), 320, 180);
    net.advance(Duration::from_millis(50));
    watch(&mut net, pid(3), 320, 180);
    net.advance(Duration::from_millis(50));
    watch(&mut net, pid(4), 320, 180);
    assert_eq!(net.peers[0].keyframe_requests.len(), 1);
    frame(&mut net, &["q"]);
    for _ in 0..3 {
        frame(&mut net, &[]);
    }
    for v in 1..4 {
        assert_eq!(video_in(&net, v).len(), 4, "viewer {v}");
    }
    // Viewers' own PLIs within the throttle window: at most one more.
    net.advance(Duration::from_millis(500));
    let asked = net.peers[0].keyframe_requests.len();
    for _ in 0..5 {
        for v in 1..4 {
            let mid = net.peers[v].video_recv_mids[0].to_string();
            let now = net.now;
            net.peers[v].request_keyframe(now, &mid);
        }
        net.advance(Duration::from_millis(40));
    }
    assert_eq!(net.peers[0].keyframe_requests.len(), asked + 1);
    // After the interval, a pending request goes out (once).
    net.advance(Duration::from_millis(600));
    assert_eq!(net.peers[0].keyframe_requests.len(), asked + 2);
    net.advance(Duration::from_millis(600));
    assert_eq!(net.peers[0].keyframe_requests.len(), asked + 2);
}

#[test]
fn audio_only_peer_in_a_video_room_is_unaffected() {
    let mut net = room(1);
    let c = net
        .join(room_id(1), pid(9), 2, TestPeerConfig::default())
        .unwrap();
    net.connect_all();
    watch(&mut net, pid(2), 320, 180);
    frame(&mut net, &["q", "h", "f"]);
    net.send_audio(0, &super::core_tests::payload(1), 30);
    net.advance(Duration::from_millis(20));
    assert!(net.sfu.video_slots_of(pid(9)).is_empty());
    let mid = super::core_tests::slot_for(&net, c, pid(1)).unwrap();
    assert_eq!(net.peers[c].received_on(&mid).len(), 1);
    assert_eq!(video_in(&net, 1).len(), 1);
}

/// The value of one series (`name{labels}`) in a Prometheus text exposition.
fn series(text: &str, name_and_labels: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name_and_labels)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name_and_labels} in\n{text}"))
}

#[test]
fn video_metrics_count_switches_keyframe_requests_and_layer_bytes() {
    // A recorder of its own: the handles the core creates bind to it, so
    // parallel tests do not disturb the counts.
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    let mut net = metrics::with_local_recorder(&recorder, || room(1));
    frame(&mut net, &[]);
    watch(&mut net, pid(2), 1280, 720);
    frame(&mut net, &["q", "h", "f"]);
    frame(&mut net, &[]);
    // Down to q at its next keyframe.
    net.advance(Duration::from_millis(600));
    watch(&mut net, pid(2), 320, 180);
    frame(&mut net, &["q"]);
    frame(&mut net, &[]);
    // Back up to f.
    net.advance(Duration::from_millis(600));
    watch(&mut net, pid(2), 1280, 720);
    frame(&mut net, &["f"]);
    // The viewer asks for a keyframe itself.
    net.advance(Duration::from_millis(600));
    let mid = net.peers[1].video_recv_mids[0].to_string();
    let now = net.now;
    net.peers[1].request_keyframe(now, &mid);
    net.advance(Duration::from_millis(50));

    let text = handle.render();
    let m = |s: &str| series(&text, s);
    assert_eq!(
        m("confab_sfu_video_layer_switches_total{direction=\"down\"}"),
        1.0
    );
    assert_eq!(
        m("confab_sfu_video_layer_switches_total{direction=\"up\"}"),
        1.0
    );
    let kf = |r: &str| {
        m(&format!(
            "confab_sfu_keyframe_requests_total{{reason=\"{r}\"}}"
        ))
    };
    assert_eq!(kf("subscribe"), 1.0);
    assert_eq!(kf("switch"), 2.0);
    assert_eq!(kf("subscriber_pli"), 1.0);
    assert_eq!(
        kf("subscribe") + kf("switch") + kf("subscriber_pli") + kf("retry"),
        net.peers[0].keyframe_requests.len() as f64,
        "every PLI the publisher got is counted once"
    );
    // Every layer arrives; only f and q were forwarded (h never watched).
    for layer in ["low", "mid", "high"] {
        let rx = m(&format!(
            "confab_sfu_video_received_bytes_total{{layer=\"{layer}\"}}"
        ));
        assert!(rx > 0.0, "{layer}: {rx}");
    }
    let fwd = |l: &str| {
        m(&format!(
            "confab_sfu_video_forwarded_bytes_total{{layer=\"{l}\"}}"
        ))
    };
    assert!(fwd("high") > 0.0 && fwd("low") > 0.0, "{text}");
    assert_eq!(fwd("mid"), 0.0);
    let forwarded: u64 = video_in(&net, 1)
        .iter()
        .map(|r| r.payload.len() as u64)
        .sum();
    assert_eq!(fwd("low") + fwd("high"), forwarded as f64);
}

#[test]
fn video_of_a_publisher_not_allowed_video_is_dropped_until_allowed_again() {
    let mut net = room(1);
    let now = net.now;
    net.sfu.set_video_allowed(now, pid(1), false);
    watch(&mut net, pid(2), 320, 180);
    let dropped = net.sfu.stats().dropped_muted;
    frame(&mut net, &["q", "h", "f"]);
    for _ in 0..5 {
        frame(&mut net, &[]);
    }
    assert!(
        video_in(&net, 1).is_empty(),
        "video forwarded while not allowed"
    );
    assert_eq!(net.sfu.stats().forwarded_video, 0);
    assert!(net.sfu.stats().dropped_muted >= dropped + 18);

    // Allowed again: a keyframe is asked for and forwarding starts on it.
    net.advance(Duration::from_millis(600));
    let asked = net.peers[0].keyframe_requests.len();
    let now = net.now;
    net.sfu.set_video_allowed(now, pid(1), true);
    // Its first packets are not forwarded (no keyframe yet); a PLI for q goes out.
    for _ in 0..10 {
        frame(&mut net, &[]);
    }
    assert!(video_in(&net, 1).is_empty(), "starts only on a keyframe");
    assert!(
        net.peers[0].keyframe_requests[asked..]
            .iter()
            .any(|(_, rid)| rid.as_deref() == Some("q")),
        "PLI for q: {:?}",
        net.peers[0].keyframe_requests
    );
    frame(&mut net, &["q"]);
    for _ in 0..3 {
        frame(&mut net, &[]);
    }
    let got = video_in(&net, 1);
    assert_eq!(got.len(), 4);
    assert!(parse_vp8_frame(&got[0].payload).unwrap().2);
    assert!(layers(&got).iter().all(|&l| l == 0));
}

#[test]
fn a_paused_layer_the_view_asks_for_is_requested_back() {
    let mut net = room(1);
    // Only q flows: the sender paused h and f (nobody watched them before).
    let send = |net: &mut Net, rids: &[(&str, bool)]| {
        for (rid, key) in rids {
            net.send_video(0, 0, Some(rid), *key);
        }
        net.advance(Duration::from_millis(33));
    };
    send(&mut net, &[("q", false)]);
    watch(&mut net, pid(2), 640, 360);
    // Shown on q meanwhile, but h is reported as needed so the sender resumes it.
    assert_eq!(
        pauses(&net).last(),
        Some(&vec!["q".to_string(), "h".to_string()])
    );
    send(&mut net, &[("q", true)]);
    send(&mut net, &[("q", false)]);
    assert_eq!(layers(&video_in(&net, 1)), vec![0, 0]);
    // h resumes (starting with a keyframe): the slot moves up to it.
    for i in 0..12 {
        send(&mut net, &[("q", false), ("h", i % 4 == 0)]);
    }
    let got = video_in(&net, 1);
    assert_eq!(layers(&got).last(), Some(&1), "{:?}", layers(&got));
    assert_continuous(&got);
}

#[test]
fn a_paused_layer_that_fits_a_new_view_is_asked_for() {
    let mut net = room(2);
    watch(&mut net, pid(2), 1280, 720);
    // The publisher honours the pause report: only f flows.
    assert_eq!(pauses(&net).last(), Some(&vec!["f".to_string()]));
    for i in 0..10 {
        net.send_video(0, 0, Some("f"), i == 0);
        net.advance(Duration::from_millis(33));
    }
    assert!(!video_in(&net, 1).is_empty());
    // A small view: q is not flowing, so the viewer gets f meanwhile, but q
    // must be un-paused — else the small view would get f for good.
    watch(&mut net, pid(3), 320, 180);
    let last = pauses(&net).last().cloned().unwrap();
    assert!(last.contains(&"q".to_string()), "q not asked for: {last:?}");
    // Once q flows, the small view switches to it at a keyframe.
    for _ in 0..3 {
        frame(&mut net, &[]);
    }
    net.advance(Duration::from_millis(600));
    frame(&mut net, &["q", "h", "f"]);
    for _ in 0..5 {
        frame(&mut net, &[]);
    }
    let got = video_in(&net, 2);
    assert_eq!(layers(&got).last(), Some(&0), "{:?}", layers(&got));
}

#[test]
fn camera_switched_off_by_the_client_is_dropped_until_switched_on() {
    let mut net = room(1);
    watch(&mut net, pid(2), 320, 180);
    frame(&mut net, &["q", "h", "f"]);
    for _ in 0..3 {
        frame(&mut net, &[]);
    }
    let before = video_in(&net, 1).len();
    assert!(before >= 4, "camera forwarded while on: {before}");
    // Camera off, but a (modified) client keeps sending it.
    let now = net.now;
    net.sfu.set_self_video(now, pid(1), false, true);
    let dropped = net.sfu.stats().dropped_muted;
    frame(&mut net, &["q", "h", "f"]);
    for _ in 0..5 {
        frame(&mut net, &[]);
    }
    assert_eq!(
        video_in(&net, 1).len(),
        before,
        "camera forwarded while off"
    );
    assert!(net.sfu.stats().dropped_muted >= dropped + 18);
    // On again: forwarding restarts at a keyframe (a PLI is sent for it).
    net.advance(Duration::from_millis(600));
    let asked = net.peers[0].keyframe_requests.len();
    let now = net.now;
    net.sfu.set_self_video(now, pid(1), true, true);
    frame(&mut net, &[]);
    assert!(net.peers[0].keyframe_requests.len() > asked, "no PLI");
    frame(&mut net, &["q"]);
    for _ in 0..3 {
        frame(&mut net, &[]);
    }
    assert_eq!(video_in(&net, 1).len(), before + 4);
}

/// A room like [`room`] with 1 viewer, bandwidth estimation on or off, and a
/// starting estimate far below what any layer needs.
fn starved_room(bwe: bool) -> Net {
    let mut cfg = config();
    cfg.video_bwe = bwe;
    cfg.video_initial_bitrate_kbps = 1;
    let mut net = Net::new(&cfg);
    net.join(room_id(1), pid(1), 1, publisher()).unwrap();
    net.join(room_id(1), pid(2), 1, viewer()).unwrap();
    net.connect_all();
    net
}

#[test]
fn a_short_bandwidth_estimate_keeps_a_large_view_on_a_lower_layer() {
    let layers_seen = |bwe: bool| {
        let mut net = starved_room(bwe);
        // Long enough for the SFU to have measured every layer's rate.
        for _ in 0..45 {
            frame(&mut net, &[]);
        }
        watch(&mut net, pid(2), 1280, 720);
        for i in 0..20 {
            frame(&mut net, if i % 5 == 0 { &["q", "h", "f"] } else { &[] });
        }
        layers(&video_in(&net, 1))
    };
    // Without an estimate the tile decides: f.
    let off = layers_seen(false);
    assert_eq!(off.last(), Some(&2), "{off:?}");
    // With an estimate below f's measured rate the viewer is kept lower.
    let on = layers_seen(true);
    assert!(!on.is_empty());
    assert!(on.iter().all(|&l| l < 2), "{on:?}");
}

/// One 30 fps frame on every layer with real rates: q 1, h 4 and f 16 packets of
/// ~1,100 bytes (≈ 0.26, 1.1 and 4.2 Mbit/s); a keyframe on every layer each second.
fn heavy_frame(net: &mut Net, n: usize) {
    for (rid, packets) in [("q", 1), ("h", 4), ("f", 16)] {
        net.send_video_frame(0, 0, Some(rid), n.is_multiple_of(30), packets);
    }
    net.advance(Duration::from_millis(33));
}

/// Layers (0 q, 1 h, 2 f) of the frames viewer `idx` received (first packets only).
fn frame_layers(net: &Net, idx: usize) -> Vec<u8> {
    video_in(net, idx)
        .iter()
        .filter(|r| r.payload.first().is_some_and(|b| b & 0x10 != 0))
        .map(|r| parse_vp8_frame(&r.payload).expect("vp8 frame").3 & 0x0f)
        .collect()
}

/// A network for bandwidth estimation: estimation on from a 300 kbit/s start, a 1 ms clock
/// step (arrival times the estimator can use) and 10 ms one-way delay.
fn bwe_net() -> Net {
    let mut cfg = config();
    cfg.video_bwe = true;
    cfg.video_initial_bitrate_kbps = 300;
    let mut net = Net::new(&cfg);
    net.step = Duration::from_millis(1);
    net.delay = Duration::from_millis(10);
    net
}

#[test]
fn bandwidth_estimation_climbs_to_the_layer_a_large_view_wants() {
    // The viewer comes while the stream is on and its estimate starts far below f. Held on
    // h at ~80 % of its estimate, it would stay there (str0m grows an estimate only to ~1.5×
    // what is acknowledged); padded towards the next layer, the estimate climbs to f.
    let mut net = bwe_net();
    net.join(room_id(1), pid(1), 1, publisher()).unwrap();
    net.connect_all();
    // The stream is on before the viewer comes (its layers' rates are known).
    for n in 0..60 {
        heavy_frame(&mut net, n);
    }
    net.join(room_id(1), pid(2), 1, viewer()).unwrap();
    watch(&mut net, pid(2), 1280, 720);
    let mut reached = None;
    for n in 60..60 + 30 * 20 {
        heavy_frame(&mut net, n);
        if reached.is_none() && frame_layers(&net, 1).last() == Some(&2) {
            reached = Some(n);
        }
    }
    let got = frame_layers(&net, 1);
    let tail = &got[got.len().saturating_sub(60)..];
    assert!(
        tail.iter().all(|&l| l == 2),
        "the 1280×720 view ends on f (reached at frame {reached:?}): {tail:?}"
    );
    // Within 10 s of the start.
    assert!(
        reached.is_some_and(|n| n < 360),
        "reached f at frame {reached:?}"
    );
}

#[test]
fn a_viewer_behind_a_narrow_link_settles_on_the_layer_it_can_carry() {
    // Two viewers of a 1280×720 view: one on an open link, one behind 2 Mbit/s with a
    // 100 ms queue (f needs ~4.2 Mbit/s, h ~1.1). The estimate, padding included, must
    // keep the narrow one on h with little loss while the other gets f.
    let mut net = bwe_net();
    net.join(room_id(1), pid(1), 2, publisher()).unwrap();
    net.join(room_id(1), pid(2), 2, viewer()).unwrap();
    net.join(room_id(1), pid(3), 2, viewer()).unwrap();
    net.connect_all();
    net.downlinks
        .insert(2, Bottleneck::new(2_000_000, Duration::from_millis(100)));
    watch(&mut net, pid(2), 1280, 720);
    watch(&mut net, pid(3), 1280, 720);
    for n in 0..30 * 20 {
        heavy_frame(&mut net, n);
    }
    let open = frame_layers(&net, 1);
    let narrow = frame_layers(&net, 2);
    let tail = |l: &[u8]| l[l.len().saturating_sub(90)..].to_vec();
    assert!(
        tail(&open).iter().all(|&l| l == 2),
        "open link on f: {:?}",
        tail(&open)
    );
    assert!(
        tail(&narrow).iter().all(|&l| l == 1),
        "narrow link on h: {:?}",
        tail(&narrow)
    );
    // What reached the narrow viewer in its last 3 s is whole frames of h, in sequence:
    // the link is not overrun by f or by padding.
    let got = video_in(&net, 2);
    let last: Vec<_> = got.iter().rev().take(300).rev().copied().collect();
    let gaps = last.windows(2).filter(|w| w[1].seq != w[0].seq + 1).count();
    assert!(gaps <= 2, "{gaps} gaps in the narrow viewer's last packets");
}
