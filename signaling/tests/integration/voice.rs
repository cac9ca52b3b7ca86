//! Voice end to end through the gateway and the real SFU on UDP, with str0m client peers that
//! offer like the web client.

use crate::common::{Event, Server, TestApp, User};
use crate::voice_util::*;
use confab_sfu::testing::TestPeerConfig;
use serde_json::{json, Value};
use std::time::Duration;

/// Offer before joining, a text channel, and hostile SDP are refused with op 14.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_voice_requests_are_refused_with_op_14() {
    let app = TestApp::spawn().await;
    let ua = app.register("vera").await;
    let Server {
        id: sid,
        text,
        voice: vc,
    } = app.server(&ua, "Voice").await;
    let mut a = connect(&app, &ua).await;
    a.send(json!({"op": 12, "d": {"sdp": "v=0"}}));
    assert_eq!(a.wait(|v| v["op"] == 14).await["d"]["code"], 4404);
    a.send(join_frame(&sid, &text));
    assert_eq!(a.wait(|v| v["op"] == 14).await["d"]["code"], 4403);
    a.send(join_frame(&sid, &vc));
    a.wait(|v| v["t"] == Event::VoiceStateUpdate.name()).await;
    // (A NUL would close the connection with 4002 before the voice service sees it.)
    a.send(json!({"op": 12, "d": {"sdp": "v=0\r\nthis is not sdp\u{1}\u{7f}"}}));
    assert_eq!(a.wait(|v| v["op"] == 14).await["d"]["code"], 4400);
}

/// Three members in one voice channel, each with a gateway client and a talking str0m peer
/// (tags 1, 2, 3), negotiated with a slot for each other one.
struct Three {
    app: TestApp,
    ua: User,
    ub: User,
    uc: User,
    sid: String,
    vc: String,
    a: Client,
    b: Client,
    c: Client,
    pa: Peer,
    pb: Peer,
    pc: Peer,
}

/// A joins alone (everyone in the server sees the voice state), then B and C; each arrival
/// asks those already there to renegotiate for one more slot.
async fn three_in_voice() -> Three {
    let app = TestApp::spawn().await;
    let (ua, ub, uc) = (
        app.register("vera").await,
        app.register("walt").await,
        app.register("xena").await,
    );
    let Server {
        id: sid, voice: vc, ..
    } = app.server(&ua, "Voice").await;
    app.join(&ua, &ub, &sid).await;
    app.join(&ua, &uc, &sid).await;
    let (mut a, mut b, mut c) = (
        connect(&app, &ua).await,
        connect(&app, &ub).await,
        connect(&app, &uc).await,
    );

    a.send(join_frame(&sid, &vc));
    let st = b.wait(|v| v["t"] == Event::VoiceStateUpdate.name()).await;
    assert_eq!(st["d"]["user_id"], ua.id.as_str());
    assert_eq!(st["d"]["channel_id"], vc.as_str());
    let mut pa = Peer::new(true, 1).await;
    negotiate(&mut a, &mut pa, 0).await;

    // B joins with one slot (A): A is asked to renegotiate for a slot.
    b.send(join_frame(&sid, &vc));
    let mut pb = Peer::new(true, 2).await;
    negotiate(&mut b, &mut pb, 1).await;
    let re = a.wait(|v| v["t"] == Event::VoiceRenegotiate.name()).await;
    assert_eq!(re["d"]["audio_slots"], 1);
    negotiate(&mut a, &mut pa, 1).await;

    // C joins with two slots; A and B renegotiate to two.
    c.send(join_frame(&sid, &vc));
    let mut pc = Peer::new(true, 3).await;
    negotiate(&mut c, &mut pc, 2).await;
    for (cl, p) in [(&mut a, &mut pa), (&mut b, &mut pb)] {
        let re = cl.wait(|v| v["t"] == Event::VoiceRenegotiate.name()).await;
        assert_eq!(re["d"]["audio_slots"], 2);
        negotiate(cl, p, 2).await;
    }
    Three {
        app,
        ua,
        ub,
        uc,
        sid,
        vc,
        a,
        b,
        c,
        pa,
        pb,
        pc,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_peers_hear_each_other_through_the_sfu() {
    // The app and every client are kept: a client dropped would leave the channel.
    let Three {
        app: _app,
        ua,
        ub,
        a: _a,
        mut b,
        mut c,
        mut pa,
        mut pb,
        mut pc,
        ..
    } = three_in_voice().await;
    run_media(&mut [&mut pa, &mut pb, &mut pc], Duration::from_secs(3)).await;
    for (name, p, others) in [("a", &pa, [2u8, 3]), ("b", &pb, [1, 3]), ("c", &pc, [1, 2])] {
        assert!(p.peer.connected, "{name} connected");
        for o in others {
            assert!(
                p.heard_from(o) > 50,
                "{name} got {} packets from {o}",
                p.heard_from(o)
            );
        }
        assert_eq!(
            p.heard_from(p.payload_tag),
            0,
            "{name} must not hear itself"
        );
    }
    // Loss below 1% between connected peers over the run (packets sent after connecting).
    let sent_by_b = pb.sent as f64;
    let got_by_a = pa.heard_from(2) as f64;
    assert!(
        got_by_a / sent_by_b > 0.95,
        "a got {got_by_a} of {sent_by_b} from b"
    );

    // Slots map mids to the other users; speaking was detected.
    let slots = c
        .wait(|v| {
            v["t"] == Event::VoiceSlots.name()
                && v["d"]["slots"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter(|s| !s["user_id"].is_null())
                    .count()
                    == 2
        })
        .await;
    let users: Vec<&str> = slots["d"]["slots"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["user_id"].as_str())
        .collect();
    assert!(
        users.contains(&ua.id.as_str()) && users.contains(&ub.id.as_str()),
        "{slots}"
    );
    let sp = b
        .wait(|v| v["t"] == Event::VoiceSpeaking.name() && v["d"]["user_id"] == ua.id.as_str())
        .await;
    assert_eq!(sp["d"]["speaking"], true);
}

/// The owner server-mutes C: its audio stops reaching A and B. A non-moderator cannot mute.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_mute_stops_a_members_audio_for_everyone() {
    let Three {
        app,
        ua,
        ub,
        uc,
        sid,
        vc,
        a: _a,
        mut b,
        c: _c,
        mut pa,
        mut pb,
        mut pc,
        ..
    } = three_in_voice().await;
    run_media(&mut [&mut pa, &mut pb, &mut pc], Duration::from_secs(1)).await;
    assert!(pa.heard_from(3) > 0, "C was heard before the mute");
    let (s, m) = app
        .patch(
            &format!("/servers/{sid}/members/{}", uc.id),
            &ua.token,
            json!({"mute": true}),
        )
        .await;
    assert_eq!(s, 200, "{m}");
    let st = b
        .wait(|v| {
            v["t"] == Event::VoiceStateUpdate.name()
                && v["d"]["user_id"] == uc.id.as_str()
                && v["d"]["mute"] == true
        })
        .await;
    assert_eq!(st["d"]["channel_id"], vc.as_str());
    run_media(&mut [&mut pa, &mut pb, &mut pc], Duration::from_millis(300)).await;
    let before = (pa.heard_from(3), pb.heard_from(1));
    run_media(&mut [&mut pa, &mut pb, &mut pc], Duration::from_secs(1)).await;
    assert_eq!(pa.heard_from(3), before.0, "muted C still heard");
    assert!(pb.heard_from(1) > before.1 + 20, "B still hears A");
    assert_eq!(
        app.patch(
            &format!("/servers/{sid}/members/{}", ua.id),
            &ub.token,
            json!({"mute": true})
        )
        .await
        .0,
        403
    );
}

/// B leaves: everyone sees it, and B's voice session is recorded as ended by leaving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_who_leaves_voice_is_seen_leaving_and_their_session_closed() {
    let Three {
        app,
        ub,
        sid,
        mut a,
        b,
        c: _c,
        ..
    } = three_in_voice().await;
    b.send(json!({"op": 4, "d": {"server_id": sid, "channel_id": null}}));
    let st = a
        .wait(|v| {
            v["t"] == Event::VoiceStateUpdate.name()
                && v["d"]["user_id"] == ub.id.as_str()
                && v["d"]["channel_id"].is_null()
        })
        .await;
    assert_eq!(st["d"]["server_id"], sid.as_str());

    tokio::time::sleep(Duration::from_millis(300)).await;
    let state = &app.running.as_ref().unwrap().state;
    let hist = state
        .chat
        .voice_history(ub.id.parse().unwrap())
        .await
        .unwrap();
    assert_eq!(hist.len(), 1);
    assert!(hist[0].2, "B's session ended");
    assert_eq!(hist[0].3.as_deref(), Some("left"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejoin_after_a_blip_is_invisible_and_gateway_close_leaves() {
    let app = TestApp::spawn().await;
    let (ua, ub) = (app.register("yuri").await, app.register("zoe").await);
    let Server {
        id: sid, voice: vc, ..
    } = app.server(&ua, "Blip").await;
    app.join(&ua, &ub, &sid).await;
    let mut a = connect(&app, &ua).await;
    let mut b = connect(&app, &ub).await;
    b.send(join_frame(&sid, &vc));
    let mut pb = Peer::new(true, 2).await;
    let vsid = negotiate(&mut b, &mut pb, 0).await;
    a.wait(|v| v["t"] == Event::VoiceStateUpdate.name() && v["d"]["user_id"] == ub.id.as_str())
        .await;

    // B's gateway drops without a close frame; B reconnects with a new IDENTIFY and claims
    // its voice session within 15 s. A sees no leave.
    b.task.abort();
    drop(b);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut b2 = connect(&app, &ub).await;
    b2.send(json!({"op": 4, "d": {"server_id": sid, "channel_id": vc, "self_mute": false, "self_deaf": false, "voice_session_id": vsid}}));
    let mut pb2 = Peer::new(true, 2).await;
    let vsid2 = negotiate(&mut b2, &mut pb2, 0).await;
    assert_eq!(vsid2, vsid, "same voice session");
    run_media(&mut [&mut pb2], Duration::from_millis(800)).await;
    assert!(pb2.peer.connected);
    a.drain();
    assert!(
        !a.seen
            .iter()
            .any(|v| v["t"] == Event::VoiceStateUpdate.name() && v["d"]["channel_id"].is_null()),
        "A saw B leave during the blip"
    );

    // Closing the gateway normally ends the voice session at once.
    drop(b2.tx);
    let st = a
        .wait(|v| {
            v["t"] == Event::VoiceStateUpdate.name()
                && v["d"]["user_id"] == ub.id.as_str()
                && v["d"]["channel_id"].is_null()
        })
        .await;
    assert_eq!(st["d"]["voice_session_id"], vsid.as_str());
}

fn slot_of<'a>(slots: &'a Value, user: &str) -> Option<&'a str> {
    slots["d"]["slots"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["user_id"] == user && s["track"] == "camera")
        .and_then(|s| s["mid"].as_str())
}

/// A tile request for `user`'s camera at width `w` (16:9).
fn tile(user: &str, w: u32) -> Value {
    json!({"user_id": user, "track": "camera", "width": w, "height": w * 9 / 16})
}

/// A video call: A publishes simulcast camera video in the voice channel; B is connected but
/// not yet in voice; C may connect and speak there but not send video.
struct VideoCall {
    app: TestApp,
    ua: User,
    uc: User,
    sid: String,
    vc: String,
    a: Client,
    b: Client,
    pa: Peer,
}

async fn video_call() -> VideoCall {
    let app = TestApp::spawn().await;
    let (ua, ub, uc) = (
        app.register("vic").await,
        app.register("wen").await,
        app.register("xiu").await,
    );
    let Server {
        id: sid, voice: vc, ..
    } = app.server(&ua, "Video").await;
    app.join(&ua, &ub, &sid).await;
    app.join(&ua, &uc, &sid).await;
    let video = confab_chat::permissions::VIDEO;
    let (s, ow) = app
        .put_json(
            &format!("/channels/{vc}/permissions/{}", uc.id),
            &ua.token,
            json!({"type": "member", "deny": video.to_string()}),
        )
        .await;
    assert_eq!(s, 200, "{ow}");
    let (mut a, mut b) = (connect(&app, &ua).await, connect(&app, &ub).await);

    // A joins with the camera on and publishes simulcast video, declaring its camera mid.
    a.send(json!({"op": 4, "d": {"server_id": sid, "channel_id": vc, "self_video": true}}));
    let st = b
        .wait(|v| v["t"] == Event::VoiceStateUpdate.name() && v["d"]["user_id"] == ua.id.as_str())
        .await;
    assert_eq!(st["d"]["self_video"], true);
    assert_eq!(st["d"]["self_stream"], false);
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
    VideoCall {
        app,
        ua,
        uc,
        sid,
        vc,
        a,
        b,
        pa,
    }
}

impl VideoCall {
    /// B joins to watch with three video slots (listen-only audio: no renegotiation for A).
    async fn b_joins(&mut self) -> Peer {
        self.b.send(join_frame(&self.sid, &self.vc));
        let mut pb = Peer::with_config(
            TestPeerConfig {
                video_recv: 3,
                ..Default::default()
            },
            2,
        )
        .await;
        negotiate(&mut self.b, &mut pb, 1).await;
        pb
    }

    /// B asks for A's camera in a 1280-wide tile; returns the mid A's video arrives on.
    async fn b_watches_a(&mut self, pb: &Peer) -> String {
        let ua = self.ua.id.clone();
        self.b
            .send(json!({"op": 15, "d": {"tiles": [tile(&ua, 1280)]}}));
        let slots = self
            .b
            .wait(|v| v["t"] == Event::VoiceVideoSlots.name() && slot_of(v, &ua).is_some())
            .await;
        assert_eq!(slots["d"]["channel_id"], self.vc.as_str());
        assert_eq!(slots["d"]["slots"].as_array().unwrap().len(), 3);
        let mid_a = slot_of(&slots, &ua).unwrap().to_string();
        assert_eq!(mid_a, pb.peer.video_recv_mids[0].to_string());
        mid_a
    }
}

/// op 15 outside a voice channel is refused; malformed or too many tiles are 4400, and the
/// connection stays usable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_tile_requests_are_refused_and_the_connection_stays_usable() {
    let mut call = video_call().await;
    call.b.send(json!({"op": 15, "d": {"tiles": []}}));
    assert_eq!(call.b.wait(|v| v["op"] == 14).await["d"]["code"], 4404);
    let pb = call.b_joins().await;
    let ua = call.ua.id.clone();
    let ten: Vec<Value> = (0..10).map(|i| tile(&format!("{}", i + 1), 64)).collect();
    for bad in [
        json!({"tiles": "all"}),
        json!({"tiles": [{"user_id": ua, "track": "microphone", "width": 1, "height": 1}]}),
        json!({"tiles": [{"user_id": ua, "track": "camera", "width": -5, "height": 1}]}),
        json!({ "tiles": ten }),
        json!(null),
    ] {
        call.b.send(json!({"op": 15, "d": bad}));
        let e = call.b.wait(|v| v["op"] == 14).await;
        assert_eq!(e["d"]["code"], 4400, "{bad} → {e}");
    }
    call.b_watches_a(&pb).await;
}

/// A watched camera arrives in its slot, and the publisher is told which encodings are
/// watched: a 1280-wide tile needs the full layer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watched_camera_is_forwarded_and_its_publisher_told_the_layer() {
    let mut call = video_call().await;
    let mut pb = call.b_joins().await;
    let mid_a = call.b_watches_a(&pb).await;
    run_video(&mut [&mut call.pa, &mut pb], Duration::from_secs(3)).await;
    assert!(call.pa.peer.connected && pb.peer.connected);
    let got = pb.peer.received_on(&mid_a).len();
    assert!(
        got > 30,
        "B got {got} video packets from A ({} frames sent)",
        call.pa.video_frames
    );
    let layers = call
        .a
        .wait(|v| {
            v["t"] == Event::VoiceVideoLayers.name()
                && v["d"]["active_rids"]
                    .as_array()
                    .is_some_and(|r| !r.is_empty())
        })
        .await;
    assert_eq!(layers["d"]["track"], "camera");
    assert_eq!(layers["d"]["channel_id"], call.vc.as_str());
    assert_eq!(layers["d"]["active_rids"], json!(["f"]));
}

/// C has no VIDEO: camera on is refused (READY showed A's camera), and C's video is not
/// forwarded while A's keeps flowing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_without_video_permission_is_not_forwarded() {
    let mut call = video_call().await;
    let mut pb = call.b_joins().await;
    let mid_a = call.b_watches_a(&pb).await;
    run_video(&mut [&mut call.pa, &mut pb], Duration::from_secs(1)).await;
    let (app, ua, uc) = (&call.app, &call.ua, &call.uc);
    let (sid, vc) = (&call.sid, &call.vc);
    let mut c = connect(app, uc).await;
    let a_state = c.ready["voice_states"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["user_id"] == ua.id.as_str())
        .cloned()
        .expect("A in READY's voice states");
    assert_eq!(a_state["self_video"], true);
    c.send(json!({"op": 4, "d": {"server_id": sid, "channel_id": vc, "self_video": true}}));
    assert_eq!(c.wait(|v| v["op"] == 14).await["d"]["code"], 4403);
    c.send(join_frame(sid, vc));
    let mut pc = Peer::with_config(
        TestPeerConfig {
            send: true,
            video_send: 1,
            simulcast: true,
            video_recv: 1,
            ..Default::default()
        },
        3,
    )
    .await;
    negotiate(&mut c, &mut pc, 1).await;
    // A sends audio, so C's arrival asks A and B for more audio slots; not needed here.
    call.b
        .send(json!({"op": 15, "d": {"tiles": [tile(&ua.id, 1280), tile(&uc.id, 1280)]}}));
    let slots = call
        .b
        .wait(|v| v["t"] == Event::VoiceVideoSlots.name() && slot_of(v, &uc.id).is_some())
        .await;
    let mid_c = slot_of(&slots, &uc.id).unwrap().to_string();
    assert_eq!(
        slot_of(&slots, &ua.id),
        Some(mid_a.as_str()),
        "A keeps its slot"
    );
    let before_a = pb.peer.received_on(&mid_a).len();
    run_video(
        &mut [&mut call.pa, &mut pb, &mut pc],
        Duration::from_secs(2),
    )
    .await;
    assert!(pc.peer.connected);
    assert!(pc.video_frames > 20, "C sent {} frames", pc.video_frames);
    assert_eq!(
        pb.peer.received_on(&mid_c).len(),
        0,
        "video of a member without VIDEO was forwarded"
    );
    assert!(
        pb.peer.received_on(&mid_a).len() > before_a + 20,
        "A's video kept flowing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_video_tiles_limits_tiles_and_slots() {
    let app = TestApp::spawn_with(|c| c.max_video_tiles = 2).await;
    let ua = app.register("yann").await;
    let Server {
        id: sid, voice: vc, ..
    } = app.server(&ua, "Tiles").await;
    let mut a = connect(&app, &ua).await;
    a.send(join_frame(&sid, &vc));
    let mut pa = Peer::with_config(
        TestPeerConfig {
            video_recv: 3,
            ..Default::default()
        },
        1,
    )
    .await;
    negotiate(&mut a, &mut pa, 0).await;
    // Three receive transceivers offered, two used.
    let slots = a.wait(|v| v["t"] == Event::VoiceVideoSlots.name()).await;
    assert_eq!(slots["d"]["slots"].as_array().unwrap().len(), 2, "{slots}");
    let tile = |u: &str| json!({"user_id": u, "track": "camera", "width": 320, "height": 180});
    a.send(json!({"op": 15, "d": {"tiles": [tile("1"), tile("2"), tile("3")]}}));
    let e = a.wait(|v| v["op"] == 14).await;
    assert_eq!(e["d"]["code"], 4400);
    assert!(
        e["d"]["message"].as_str().unwrap().contains("at most 2"),
        "{e}"
    );
    a.send(json!({"op": 15, "d": {"tiles": [tile("1"), tile("2")]}}));
    tokio::time::sleep(Duration::from_millis(300)).await;
    a.drain();
    assert!(
        !a.seen.iter().any(|v| v["op"] == 14),
        "two tiles refused: {:?}",
        a.seen
    );
}

/// A client that identifies while someone joins voice sees them: READY is built before the
/// session receives dispatches, so a join in between used to reach neither (the client showed
/// the call without that person, and in an e2ee call dropped their media keys). Each round
/// starts an IDENTIFY and, a little later each time (0–30 ms, across the time READY takes to
/// build), one more member's join; the new session must know every participant, from READY or
/// from a dispatch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_identifying_during_a_voice_join_sees_the_participant() {
    let app = TestApp::spawn().await;
    let owner = app.register("rita").await;
    let watcher = app.register("wes").await;
    let Server {
        id: sid, voice: vc, ..
    } = app.server(&owner, "Race").await;
    app.join(&owner, &watcher, &sid).await;
    const ROUNDS: usize = 16;
    let mut members = Vec::new();
    for i in 0..ROUNDS {
        let m = app.register(&format!("joiner{i}")).await;
        app.join(&owner, &m, &sid).await;
        let c = connect(&app, &m).await;
        members.push((m, c));
    }
    let ids: Vec<String> = members.iter().map(|(m, _)| m.id.clone()).collect();
    let mut missed = Vec::new();
    for (round, (m, c)) in members.iter_mut().enumerate() {
        let delay = Duration::from_millis(2 * round as u64);
        let (identified, _) = tokio::join!(app.identified(&watcher), async {
            tokio::time::sleep(delay).await;
            c.send(join_frame(&sid, &vc));
            state_of(c, &m.id, |d| !d["channel_id"].is_null()).await;
        });
        let (mut gw, ready) = identified;
        let mut in_call: std::collections::HashSet<String> = ready["voice_states"]
            .as_array()
            .expect("READY voice_states")
            .iter()
            .filter(|s| s["channel_id"] == vc.as_str())
            .map(|s| s["user_id"].as_str().unwrap().to_string())
            .collect();
        while let Some(f) = gw.next_within(Duration::from_millis(300)).await {
            if f["t"] == Event::VoiceStateUpdate.name() && f["d"]["channel_id"] == vc.as_str() {
                in_call.insert(f["d"]["user_id"].as_str().unwrap().to_string());
            }
        }
        for (i, id) in ids[..=round].iter().enumerate() {
            if !in_call.contains(id) {
                missed.push((round, i));
            }
        }
    }
    assert!(
        missed.is_empty(),
        "(round, joiner) the new session never saw: {missed:?}"
    );
}
