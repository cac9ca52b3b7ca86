//! Go Live: the sound of a screen share reaches those who watch the share,
//! on a listening slot marked as a stream, and nobody else.

use super::core_tests::config;
use super::{pid, room_id, user};
use crate::testing::{Net, TestPeerConfig};
use crate::{SfuEvent, SlotAssignment, VideoSubscription, VideoTrackKind};

const VOICE: &[u8] = b"voice-packet";
const SOUND: &[u8] = b"stream-sound";

/// Streamer (peer 0, user 1001: camera + screen + the screen's sound),
/// viewer (peer 1, user 1002) and bystander (peer 2, user 1003), each with
/// two listening slots and two video slots.
fn room() -> Net {
    let mut net = Net::new(&config());
    let streamer = TestPeerConfig {
        video_send: 2,
        video_recv: 2,
        screen_audio: true,
        ..Default::default()
    };
    let watcher = TestPeerConfig {
        video_recv: 2,
        ..Default::default()
    };
    net.join(room_id(1), pid(1), 2, streamer).unwrap();
    net.join(room_id(1), pid(2), 2, watcher).unwrap();
    net.join(room_id(1), pid(3), 2, watcher).unwrap();
    net.connect_all();
    let mid = net.peers[0].screen_audio_mid.unwrap().to_string();
    let now = net.now;
    net.sfu.set_stream_audio_mid(now, pid(1), Some(mid));
    collect(&mut net);
    net
}

fn collect(net: &mut Net) {
    net.exchange();
    while let Some(e) = net.sfu.poll_event() {
        net.events.push(e);
    }
}

fn watch_screen(net: &mut Net, viewer: u64, on: bool) {
    let subs = if on {
        vec![VideoSubscription {
            user_id: user(1001),
            track: VideoTrackKind::Screen,
            width: 1280,
            height: 720,
        }]
    } else {
        Vec::new()
    };
    let now = net.now;
    let mark = net.events.len();
    net.sfu.set_video_subscriptions(now, pid(viewer), subs);
    collect(net);
    // Its slots are taken by voices: the SFU asks for one more, as
    // VOICE_RENEGOTIATE asks the web client.
    let asked = net.events[mark..].iter().find_map(|e| match e {
        SfuEvent::RenegotiationNeeded {
            participant,
            audio_slots,
        } if *participant == pid(viewer) => Some(*audio_slots),
        _ => None,
    });
    if let Some(n) = asked {
        let idx = net.ids.iter().position(|p| *p == pid(viewer)).unwrap();
        net.renegotiate(idx, n).unwrap();
        collect(net);
    }
}

/// The streamer talks and its screen plays sound: `n` packets of each.
fn play(net: &mut Net, n: usize) {
    for _ in 0..n {
        let now = net.now;
        net.peers[0].send_audio(now, VOICE, 10);
        net.peers[0].send_screen_audio(now, SOUND);
        net.advance(std::time::Duration::from_millis(20));
    }
}

fn count(net: &Net, idx: usize, payload: &[u8]) -> usize {
    net.peers[idx]
        .received
        .iter()
        .filter(|r| &*r.payload == payload)
        .count()
}

fn last_slots(net: &Net, participant: u64) -> Vec<SlotAssignment> {
    net.events
        .iter()
        .rev()
        .find_map(|e| match e {
            SfuEvent::Slots {
                participant: p,
                slots,
            } if *p == pid(participant) => Some(slots.clone()),
            _ => None,
        })
        .unwrap_or_default()
}

fn last_viewers(net: &Net) -> Option<usize> {
    net.events.iter().rev().find_map(|e| match e {
        SfuEvent::StreamViewers {
            participant,
            viewers,
            ..
        } if *participant == pid(1) => Some(*viewers),
        _ => None,
    })
}

#[test]
fn the_screen_sound_reaches_only_those_watching_the_share() {
    let mut net = room();
    play(&mut net, 10);
    // Nobody watches: voice reaches both, the screen's sound nobody.
    assert!(count(&net, 1, VOICE) >= 8, "viewer hears the voice");
    assert!(count(&net, 2, VOICE) >= 8, "bystander hears the voice");
    assert_eq!(count(&net, 1, SOUND), 0, "not watching yet");
    assert_eq!(count(&net, 2, SOUND), 0);

    watch_screen(&mut net, 2, true);
    let slots = last_slots(&net, 2);
    let stream_slot = slots
        .iter()
        .find(|s| s.stream)
        .unwrap_or_else(|| panic!("a stream slot for the viewer: {slots:?}"));
    assert_eq!(stream_slot.user_id, Some(user(1001)));
    assert!(
        slots
            .iter()
            .any(|s| !s.stream && s.user_id == Some(user(1001))),
        "the streamer's voice keeps its own slot: {slots:?}"
    );
    assert_eq!(last_viewers(&net), Some(1));

    play(&mut net, 20);
    let mid = stream_slot.mid.clone();
    let on_slot = net.peers[1]
        .received_on(&mid)
        .iter()
        .filter(|r| &*r.payload == SOUND)
        .count();
    assert!(
        on_slot >= 18,
        "the viewer gets the sound on its stream slot ({on_slot})"
    );
    assert_eq!(count(&net, 2, SOUND), 0, "the bystander does not watch");
    assert_eq!(count(&net, 0, SOUND), 0, "the streamer never hears itself");
    assert!(
        net.sfu.stream_slots_of(pid(2)) == vec![(mid.clone(), pid(1))],
        "{:?}",
        net.sfu.stream_slots_of(pid(2))
    );

    // Stops watching: the sound stops, the slot is freed, the count says 0.
    watch_screen(&mut net, 2, false);
    let before = count(&net, 1, SOUND);
    play(&mut net, 10);
    assert_eq!(count(&net, 1, SOUND), before, "no sound after unwatching");
    assert!(last_slots(&net, 2).iter().all(|s| !s.stream));
    assert_eq!(last_viewers(&net), Some(0));
}

#[test]
fn a_switched_off_share_sends_no_sound_and_a_bad_declaration_is_ignored() {
    let mut net = room();
    watch_screen(&mut net, 2, true);
    let now = net.now;
    net.sfu.set_self_video(now, pid(1), false, false);
    collect(&mut net);
    play(&mut net, 10);
    assert_eq!(count(&net, 1, SOUND), 0, "share off: its sound is dropped");
    assert!(count(&net, 1, VOICE) >= 8, "the voice still flows");

    // The microphone's mid cannot be declared as the screen's sound: the
    // voice would leave the loudest-speaker rules.
    let mut net = room();
    let mic = net.peers[0].send_mid.unwrap().to_string();
    let now = net.now;
    net.sfu.set_stream_audio_mid(now, pid(1), Some(mic));
    watch_screen(&mut net, 2, true);
    play(&mut net, 10);
    assert!(
        last_slots(&net, 2).iter().all(|s| !s.stream),
        "no stream slot from a mic declared as screen sound"
    );
    assert!(count(&net, 2, VOICE) >= 8);
}
