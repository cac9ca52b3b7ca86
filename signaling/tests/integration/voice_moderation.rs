//! Live voice sessions follow permission changes, and moderators move or disconnect members:
//! the real SFU on UDP, str0m peers, PostgreSQL.

use crate::common::{Event, Overwrite, Server, TestApp, User};
use crate::voice_util::*;
use serde_json::json;
use std::time::Duration;

const SPEAK: i64 = 1 << 21;
const CONNECT: i64 = 1 << 20;
const VIDEO: i64 = 1 << 9;

const VIEW_CHANNEL: i64 = 1 << 10;

/// The owner listens and the talker talks in the server's voice channel, each with a gateway
/// client and a str0m peer.
struct Live {
    app: TestApp,
    owner: User,
    talker: User,
    sid: String,
    vc: String,
    a: Client,
    b: Client,
    pa: Peer,
    pb: Peer,
}

async fn live() -> Live {
    let app = TestApp::spawn().await;
    let (owner, talker) = (app.register("olga").await, app.register("theo").await);
    let Server {
        id: sid, voice: vc, ..
    } = app.server(&owner, "Live perms").await;
    app.join(&owner, &talker, &sid).await;
    let mut a = connect(&app, &owner).await;
    let mut b = connect(&app, &talker).await;
    a.send(join_frame(&sid, &vc));
    let mut pa = Peer::new(false, 1).await;
    negotiate(&mut a, &mut pa, 1).await;
    b.send(join_frame(&sid, &vc));
    let mut pb = Peer::new(true, 2).await;
    negotiate(&mut b, &mut pb, 1).await;
    settle(
        &mut [(&mut a, &mut pa), (&mut b, &mut pb)],
        Duration::from_millis(400),
    )
    .await;
    Live {
        app,
        owner,
        talker,
        sid,
        vc,
        a,
        b,
        pa,
        pb,
    }
}

impl Live {
    /// Packets of the talker the listener hears in `window` (after `warmup`).
    async fn heard(&mut self, warmup: Duration, window: Duration) -> usize {
        heard_during(&mut [&mut self.pa, &mut self.pb], 0, 2, warmup, window).await
    }

    /// The talker's own overwrite in the voice channel.
    fn talker_overwrite(&self) -> String {
        format!("/channels/{}/permissions/{}", self.vc, self.talker.id)
    }
}

/// SPEAK denied on the channel for the talker, who sends no op 4: the SFU drops the audio and
/// everyone sees `suppress` (not a moderator's mute); given back, audio flows again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_speak_suppresses_a_live_talker_until_given_back() {
    let mut l = live().await;
    let talking = l
        .heard(Duration::from_millis(800), Duration::from_secs(1))
        .await;
    assert!(talking > 30, "the listener heard {talking} packets before");
    let (s, body) = l
        .app
        .put_json(
            &l.talker_overwrite(),
            &l.owner.token,
            json!({"type": "member", "deny": SPEAK.to_string()}),
        )
        .await;
    assert_eq!(s, 200, "{body}");
    let st = state_of(&mut l.a, &l.talker.id, |d| d["suppress"] == true).await;
    assert_eq!(st["mute"], false);
    assert_eq!(st["channel_id"], l.vc.as_str());
    state_of(&mut l.b, &l.talker.id, |d| d["suppress"] == true).await;
    let muted = l
        .heard(Duration::from_millis(200), Duration::from_secs(1))
        .await;
    assert_eq!(muted, 0, "audio still forwarded without SPEAK");

    // Given back (the overwrite removed): audio flows again.
    let (s, _) = l.app.delete(&l.talker_overwrite(), &l.owner.token).await;
    assert_eq!(s, 204);
    state_of(&mut l.a, &l.talker.id, |d| d["suppress"] == false).await;
    let back = l
        .heard(Duration::from_millis(300), Duration::from_secs(1))
        .await;
    assert!(back > 30, "only {back} packets after SPEAK came back");
}

/// Through a role: the talker's role loses VIDEO while the camera is on → camera off, still
/// connected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_video_through_a_role_turns_the_camera_off() {
    let mut l = live().await;
    let (app, owner, sid, vc) = (&l.app, &l.owner, &l.sid, &l.vc);
    let role = app
        .role(owner, sid, "cam", VIDEO | SPEAK | CONNECT | VIEW_CHANNEL)
        .await;
    app.give_role(owner, sid, &l.talker, &role).await;
    let (s, _) = app
        .patch(
            &format!("/servers/{sid}/roles/{sid}"),
            &owner.token,
            json!({"permissions": (VIEW_CHANNEL | (1 << 16) | CONNECT | SPEAK).to_string()}),
        )
        .await;
    assert_eq!(s, 200);
    l.b.send(json!({"op": 4, "d": {"server_id": sid, "channel_id": vc, "self_mute": false, "self_deaf": false, "self_video": true}}));
    state_of(&mut l.a, &l.talker.id, |d| d["self_video"] == true).await;
    let (s, _) = app
        .patch(
            &format!("/servers/{sid}/roles/{role}"),
            &owner.token,
            json!({"permissions": (VIEW_CHANNEL | SPEAK | CONNECT).to_string()}),
        )
        .await;
    assert_eq!(s, 200);
    let st = state_of(&mut l.a, &l.talker.id, |d| d["self_video"] == false).await;
    assert_eq!(st["channel_id"], vc.as_str(), "still connected");
}

/// CONNECT denied: out of voice at once, everyone sees it, nothing more is forwarded, and the
/// voice history says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_connect_ends_a_live_session() {
    let mut l = live().await;
    let (s, _) = l
        .app
        .put_json(
            &l.talker_overwrite(),
            &l.owner.token,
            json!({"type": "member", "deny": CONNECT.to_string()}),
        )
        .await;
    assert_eq!(s, 200);
    state_of(&mut l.a, &l.talker.id, |d| d["channel_id"].is_null()).await;
    state_of(&mut l.b, &l.talker.id, |d| d["channel_id"].is_null()).await;
    let gone = l
        .heard(Duration::from_millis(200), Duration::from_millis(600))
        .await;
    assert_eq!(gone, 0, "a disconnected talker is still forwarded");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let state = &l.app.running.as_ref().unwrap().state;
    let hist = state
        .chat
        .voice_history(l.talker.id.parse().unwrap())
        .await
        .unwrap();
    assert_eq!(hist[0].3.as_deref(), Some("permission"));
}

/// So does losing VIEW_CHANNEL (through an @everyone overwrite).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_view_channel_ends_a_live_session() {
    let mut l = live().await;
    let s = l
        .app
        .try_overwrite(&l.owner, &l.vc, Overwrite::Role(&l.sid), 0, VIEW_CHANNEL)
        .await;
    assert_eq!(s, 200);
    state_of(&mut l.a, &l.talker.id, |d| d["channel_id"].is_null()).await;
}

/// A timeout ends voice too, and while timed out the talker cannot come back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timeout_ends_voice_and_keeps_the_member_out() {
    let mut l = live().await;
    let until = (chrono::Utc::now() + chrono::Duration::minutes(5)).to_rfc3339();
    let (s, body) = l
        .app
        .patch(
            &format!("/servers/{}/members/{}", l.sid, l.talker.id),
            &l.owner.token,
            json!({"timeout_until": until}),
        )
        .await;
    assert_eq!(s, 200, "{body}");
    state_of(&mut l.a, &l.talker.id, |d| d["channel_id"].is_null()).await;
    l.b.send(join_frame(&l.sid, &l.vc));
    assert_eq!(l.b.wait(|v| v["op"] == 14).await["d"]["code"], 4403);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_moderator_moves_and_disconnects_a_member() {
    let app = TestApp::spawn().await;
    let (owner, member) = (app.register("mona").await, app.register("mick").await);
    let Server {
        id: sid,
        text,
        voice: vc,
    } = app.server(&owner, "Moves").await;
    app.join(&owner, &member, &sid).await;
    let vc2 = app.channel(&owner, &sid, "voice", "Other").await;
    let mut a = connect(&app, &owner).await;
    let mut b = connect(&app, &member).await;
    // The owner listens in the destination channel.
    a.send(join_frame(&sid, &vc2));
    let mut pa = Peer::new(false, 1).await;
    negotiate(&mut a, &mut pa, 1).await;
    b.send(join_frame(&sid, &vc));
    let mut pb = Peer::new(true, 2).await;
    let first = negotiate(&mut b, &mut pb, 0).await;
    state_of(&mut a, &member.id, |d| d["channel_id"] == vc.as_str()).await;

    let path = format!("/servers/{sid}/members/{}", member.id);
    // Bad destinations are refused with 400 and leave the member where they are.
    for bad in [json!(text), json!("12345"), json!("nope")] {
        let (s, body) = app
            .patch(&path, &owner.token, json!({ "channel_id": bad }))
            .await;
        assert_eq!(s, 400, "{bad}: {body}");
    }
    // A member cannot move the owner.
    let (s, _) = app
        .patch(
            &format!("/servers/{sid}/members/{}", owner.id),
            &member.token,
            json!({"channel_id": vc}),
        )
        .await;
    assert_eq!(s, 403);

    // Not into a channel the member may not connect to.
    let closed = app.channel(&owner, &sid, "voice", "Closed").await;
    let s = app
        .try_overwrite(&owner, &closed, Overwrite::Member(&member.id), 0, CONNECT)
        .await;
    assert_eq!(s, 200);
    let (s, body) = app
        .patch(&path, &owner.token, json!({ "channel_id": closed }))
        .await;
    assert_eq!(s, 403, "{body}");

    let (s, body) = app
        .patch(&path, &owner.token, json!({ "channel_id": vc2 }))
        .await;
    assert_eq!(s, 200, "{body}");
    let mv = b.wait(|v| v["t"] == Event::VoiceChannelMove.name()).await;
    assert_eq!(mv["d"]["channel_id"], vc2.as_str());
    assert_ne!(mv["d"]["voice_session_id"], first.as_str());
    let st = state_of(&mut a, &member.id, |d| d["channel_id"] == vc2.as_str()).await;
    assert_eq!(st["voice_session_id"], mv["d"]["voice_session_id"]);
    // The moved client offers again and is heard in the new channel.
    let mut pb2 = Peer::new(true, 2).await;
    let second = negotiate(&mut b, &mut pb2, 1).await;
    assert_eq!(second, mv["d"]["voice_session_id"].as_str().unwrap());
    settle(
        &mut [(&mut a, &mut pa), (&mut b, &mut pb2)],
        Duration::from_millis(400),
    )
    .await;
    let heard = heard_during(
        &mut [&mut pa, &mut pb2],
        0,
        2,
        Duration::from_millis(800),
        Duration::from_secs(1),
    )
    .await;
    assert!(heard > 30, "the owner heard {heard} packets after the move");

    // Disconnect: everyone sees the member leave.
    let (s, body) = app
        .patch(&path, &owner.token, json!({ "channel_id": null }))
        .await;
    assert_eq!(s, 200, "{body}");
    state_of(&mut a, &member.id, |d| d["channel_id"].is_null()).await;
    state_of(&mut b, &member.id, |d| d["channel_id"].is_null()).await;
    // Not in voice any more: nothing to move.
    let (s, _) = app
        .patch(&path, &owner.token, json!({ "channel_id": vc }))
        .await;
    assert_eq!(s, 400);

    let (_, log) = app
        .get(&format!("/servers/{sid}/audit-log"), &owner.token)
        .await;
    let actions: Vec<&str> = log
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["target_id"] == member.id.as_str())
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["member_disconnect", "member_move"], "{log}");
}
