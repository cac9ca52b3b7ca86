//! What a participant's own switches mean on the wire, and the state a late joiner gets:
//! - self-mute and self-deafen are enforced by the SFU (a client that keeps sending while it
//!   shows as muted is not heard), and a camera switched off is not forwarded;
//! - the voice states of READY say who is speaking now.

use crate::common::{Event, Server, TestApp};
use crate::voice_util::*;
use confab_sfu::testing::TestPeerConfig;
use serde_json::json;
use std::time::Duration;

fn state_frame(sid: &str, vc: &str, mute: bool, deaf: bool, video: bool) -> serde_json::Value {
    json!({"op": 4, "d": {"server_id": sid, "channel_id": vc, "self_mute": mute,
        "self_deaf": deaf, "self_video": video}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn self_muted_or_deafened_audio_is_dropped_even_if_the_client_keeps_sending() {
    let app = TestApp::spawn().await;
    let (ua, ub) = (app.register("mia").await, app.register("noa").await);
    let Server {
        id: sid, voice: vc, ..
    } = app.server(&ua, "Mute").await;
    app.join(&ua, &ub, &sid).await;
    let (mut a, mut b) = (connect(&app, &ua).await, connect(&app, &ub).await);
    a.send(join_frame(&sid, &vc));
    let mut pa = Peer::new(true, 1).await;
    negotiate(&mut a, &mut pa, 1).await;
    b.send(join_frame(&sid, &vc));
    let mut pb = Peer::new(true, 2).await;
    negotiate(&mut b, &mut pb, 1).await;
    settle(
        &mut [(&mut a, &mut pa), (&mut b, &mut pb)],
        Duration::from_millis(300),
    )
    .await;

    let settle_for = Duration::from_millis(400);
    let window = Duration::from_secs(1);
    // 50 packets a second: well above 30 heard in a second before muting.
    let heard = heard_during(&mut [&mut pa, &mut pb], 1, 1, settle_for, window).await;
    assert!(heard > 30, "B hears A before muting: {heard}");

    // A mutes itself, but its (modified) client keeps sending: B hears nothing.
    a.send(state_frame(&sid, &vc, true, false, false));
    state_of(&mut b, &ua.id, |d| d["self_mute"] == true).await;
    let sent = pa.sent;
    let heard = heard_during(&mut [&mut pa, &mut pb], 1, 1, settle_for, window).await;
    assert!(pa.sent > sent + 40, "A kept sending");
    assert_eq!(heard, 0, "a self-muted participant was heard");

    // Unmuted: heard again.
    a.send(state_frame(&sid, &vc, false, false, false));
    state_of(&mut b, &ua.id, |d| d["self_mute"] == false).await;
    let heard = heard_during(&mut [&mut pa, &mut pb], 1, 1, settle_for, window).await;
    assert!(heard > 30, "B hears A after unmuting: {heard}");

    // Self-deafened (a client may send self_mute false with it): not heard either.
    a.send(state_frame(&sid, &vc, false, true, false));
    state_of(&mut b, &ua.id, |d| d["self_deaf"] == true).await;
    let heard = heard_during(&mut [&mut pa, &mut pb], 1, 1, settle_for, window).await;
    assert_eq!(heard, 0, "a self-deafened participant was heard");
    // …and hears nothing.
    let heard_by_a = heard_during(&mut [&mut pa, &mut pb], 0, 2, settle_for, window).await;
    assert_eq!(heard_by_a, 0, "a self-deafened participant hears");

    a.send(state_frame(&sid, &vc, false, false, false));
    state_of(&mut b, &ua.id, |d| d["self_deaf"] == false).await;
    let heard = heard_during(&mut [&mut pa, &mut pb], 1, 1, settle_for, window).await;
    assert!(heard > 30, "B hears A after undeafening: {heard}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_camera_switched_off_is_not_forwarded_even_if_the_client_keeps_sending() {
    let app = TestApp::spawn().await;
    let (ua, ub) = (app.register("oli").await, app.register("pia").await);
    let Server {
        id: sid, voice: vc, ..
    } = app.server(&ua, "Cam").await;
    app.join(&ua, &ub, &sid).await;
    let (mut a, mut b) = (connect(&app, &ua).await, connect(&app, &ub).await);
    a.send(state_frame(&sid, &vc, false, false, true));
    state_of(&mut b, &ua.id, |d| d["self_video"] == true).await;
    let mut pa = Peer::with_config(
        TestPeerConfig {
            send: true,
            video_send: 1,
            simulcast: true,
            ..Default::default()
        },
        1,
    )
    .await;
    negotiate_video(&mut a, &mut pa, 0, true).await;
    b.send(join_frame(&sid, &vc));
    let mut pb = Peer::with_config(
        TestPeerConfig {
            video_recv: 1,
            ..Default::default()
        },
        2,
    )
    .await;
    negotiate(&mut b, &mut pb, 1).await;
    b.send(json!({"op": 15, "d": {"tiles": [
        {"user_id": ua.id, "track": "camera", "width": 320, "height": 180}]}}));
    b.wait(|v| v["t"] == Event::VoiceVideoSlots.name()).await;
    let mid = pb.peer.video_recv_mids[0].to_string();

    run_video(&mut [&mut pa, &mut pb], Duration::from_secs(2)).await;
    let before = pb.peer.received_on(&mid).len();
    assert!(before > 20, "B sees A's camera: {before} packets");

    // Camera off, frames still sent: nothing reaches B.
    a.send(state_frame(&sid, &vc, false, false, false));
    state_of(&mut b, &ua.id, |d| d["self_video"] == false).await;
    run_video(&mut [&mut pa, &mut pb], Duration::from_millis(300)).await;
    let off = pb.peer.received_on(&mid).len();
    let frames = pa.video_frames;
    run_video(&mut [&mut pa, &mut pb], Duration::from_secs(1)).await;
    assert!(pa.video_frames > frames + 20, "A kept sending");
    assert_eq!(
        pb.peer.received_on(&mid).len(),
        off,
        "a camera switched off was forwarded"
    );

    // On again: forwarded again (from a keyframe the SFU asks for).
    a.send(state_frame(&sid, &vc, false, false, true));
    state_of(&mut b, &ua.id, |d| d["self_video"] == true).await;
    run_video(&mut [&mut pa, &mut pb], Duration::from_secs(2)).await;
    let on = pb.peer.received_on(&mid).len();
    assert!(on > off + 20, "camera back on: {off} → {on}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn someone_connecting_while_another_talks_sees_them_speaking() {
    let app = TestApp::spawn().await;
    let (ua, ub) = (app.register("quin").await, app.register("rosa").await);
    let Server {
        id: sid, voice: vc, ..
    } = app.server(&ua, "Talk").await;
    app.join(&ua, &ub, &sid).await;
    let mut a = connect(&app, &ua).await;
    a.send(join_frame(&sid, &vc));
    let mut pa = Peer::new(true, 1).await;
    negotiate(&mut a, &mut pa, 0).await;
    // A talks continuously (every packet loud) until its speaking is dispatched.
    run_media(&mut [&mut pa], Duration::from_millis(600)).await;
    a.wait(|v| v["t"] == Event::VoiceSpeaking.name() && v["d"]["speaking"] == true)
        .await;

    // B connects now: its READY says A is in the channel and speaking.
    let b = connect(&app, &ub).await;
    let st = b.ready["voice_states"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["user_id"] == ua.id.as_str())
        .cloned()
        .expect("A in READY's voice states");
    assert_eq!(st["channel_id"], vc.as_str());
    assert_eq!(st["speaking"], true, "{st}");

    // A stops (packets stop: the release timer ends it); a later READY says so.
    run_media(&mut [], Duration::from_millis(900)).await;
    a.wait(|v| v["t"] == Event::VoiceSpeaking.name() && v["d"]["speaking"] == false)
        .await;
    let c = connect(&app, &ub).await;
    let st = c.ready["voice_states"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["user_id"] == ua.id.as_str())
        .cloned()
        .unwrap();
    assert_eq!(st["speaking"], false, "{st}");

    // A talks again and leaves while talking: "stopped speaking" is said with the leave.
    run_media(&mut [&mut pa], Duration::from_millis(600)).await;
    a.wait(|v| v["t"] == Event::VoiceSpeaking.name() && v["d"]["speaking"] == true)
        .await;
    let mut b = b;
    b.forget();
    a.send(json!({"op": 4, "d": {"server_id": sid, "channel_id": null}}));
    b.wait(|v| {
        v["t"] == Event::VoiceSpeaking.name()
            && v["d"]["user_id"] == ua.id.as_str()
            && v["d"]["speaking"] == false
    })
    .await;
}
