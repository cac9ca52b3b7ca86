//! Live voice sessions follow permission changes, and moderators move or disconnect members:
//! the real SFU on UDP, str0m peers, PostgreSQL.

use crate::common::{Server, TestApp};
use crate::voice_util::*;
use serde_json::json;
use std::time::Duration;

const SPEAK: i64 = 1 << 21;
const CONNECT: i64 = 1 << 20;
const VIDEO: i64 = 1 << 9;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_permissions_apply_to_a_live_session_at_once() {
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
    let talking = heard_during(
        &mut [&mut pa, &mut pb],
        0,
        2,
        Duration::from_millis(800),
        Duration::from_secs(1),
    )
    .await;
    assert!(talking > 30, "the listener heard {talking} packets before");

    // SPEAK denied on the channel for the talker, who sends no op 4: the SFU drops the audio
    // and everyone sees `suppress` (not a moderator's mute).
    let ow = format!("/channels/{vc}/permissions/{}", talker.id);
    let (s, body) = app
        .request(
            reqwest::Method::PUT,
            &ow,
            Some(&owner.token),
            Some(json!({"type": "member", "deny": SPEAK.to_string()})),
        )
        .await;
    assert_eq!(s, 200, "{body}");
    let st = state_of(&mut a, &talker.id, |d| d["suppress"] == true).await;
    assert_eq!(st["mute"], false);
    assert_eq!(st["channel_id"], vc.as_str());
    state_of(&mut b, &talker.id, |d| d["suppress"] == true).await;
    let muted = heard_during(
        &mut [&mut pa, &mut pb],
        0,
        2,
        Duration::from_millis(200),
        Duration::from_secs(1),
    )
    .await;
    assert_eq!(muted, 0, "audio still forwarded without SPEAK");

    // Given back (the overwrite removed): audio flows again.
    let (s, _) = app.delete(&ow, &owner.token).await;
    assert_eq!(s, 204);
    state_of(&mut a, &talker.id, |d| d["suppress"] == false).await;
    let back = heard_during(
        &mut [&mut pa, &mut pb],
        0,
        2,
        Duration::from_millis(300),
        Duration::from_secs(1),
    )
    .await;
    assert!(back > 30, "only {back} packets after SPEAK came back");

    // Through a role: the talker's role loses VIDEO while the camera is on → camera off.
    let (_, role) = app
        .post(
            &format!("/servers/{sid}/roles"),
            &owner.token,
            json!({"name": "cam", "permissions": (VIDEO | SPEAK | CONNECT | (1 << 10)).to_string()}),
        )
        .await;
    let role = role["id"].as_str().unwrap().to_string();
    let (s, _) = app
        .request(
            reqwest::Method::PUT,
            &format!("/servers/{sid}/members/{}/roles/{role}", talker.id),
            Some(&owner.token),
            None,
        )
        .await;
    assert_eq!(s, 204);
    let (s, _) = app
        .patch(
            &format!("/servers/{sid}/roles/{sid}"),
            &owner.token,
            json!({"permissions": ((1i64 << 10) | (1 << 16) | CONNECT | SPEAK).to_string()}),
        )
        .await;
    assert_eq!(s, 200);
    b.send(json!({"op": 4, "d": {"server_id": sid, "channel_id": vc, "self_mute": false, "self_deaf": false, "self_video": true}}));
    state_of(&mut a, &talker.id, |d| d["self_video"] == true).await;
    let (s, _) = app
        .patch(
            &format!("/servers/{sid}/roles/{role}"),
            &owner.token,
            json!({"permissions": ((1i64 << 10) | SPEAK | CONNECT).to_string()}),
        )
        .await;
    assert_eq!(s, 200);
    let st = state_of(&mut a, &talker.id, |d| d["self_video"] == false).await;
    assert_eq!(st["channel_id"], vc.as_str(), "still connected");

    // CONNECT denied: out of voice at once, and everyone sees it.
    let (s, _) = app
        .request(
            reqwest::Method::PUT,
            &ow,
            Some(&owner.token),
            Some(json!({"type": "member", "deny": CONNECT.to_string()})),
        )
        .await;
    assert_eq!(s, 200);
    state_of(&mut a, &talker.id, |d| d["channel_id"].is_null()).await;
    state_of(&mut b, &talker.id, |d| d["channel_id"].is_null()).await;
    let gone = heard_during(
        &mut [&mut pa, &mut pb],
        0,
        2,
        Duration::from_millis(200),
        Duration::from_millis(600),
    )
    .await;
    assert_eq!(gone, 0, "a disconnected talker is still forwarded");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let state = &app.running.as_ref().unwrap().state;
    let hist = state
        .chat
        .voice_history(talker.id.parse().unwrap())
        .await
        .unwrap();
    assert_eq!(hist[0].3.as_deref(), Some("permission"));

    // So does losing VIEW_CHANNEL (through an @everyone overwrite this time).
    app.delete(&ow, &owner.token).await;
    a.forget();
    b.send(join_frame(&sid, &vc));
    state_of(&mut a, &talker.id, |d| d["channel_id"] == vc.as_str()).await;
    let everyone = format!("/channels/{vc}/permissions/{sid}");
    let (s, _) = app
        .request(
            reqwest::Method::PUT,
            &everyone,
            Some(&owner.token),
            Some(json!({"type": "role", "deny": (1i64 << 10).to_string()})),
        )
        .await;
    assert_eq!(s, 200);
    state_of(&mut a, &talker.id, |d| d["channel_id"].is_null()).await;

    // A timeout ends voice too.
    app.delete(&everyone, &owner.token).await;
    a.forget();
    b.send(join_frame(&sid, &vc));
    state_of(&mut a, &talker.id, |d| d["channel_id"] == vc.as_str()).await;
    let until = (chrono::Utc::now() + chrono::Duration::minutes(5)).to_rfc3339();
    let (s, body) = app
        .patch(
            &format!("/servers/{sid}/members/{}", talker.id),
            &owner.token,
            json!({"timeout_until": until}),
        )
        .await;
    assert_eq!(s, 200, "{body}");
    state_of(&mut a, &talker.id, |d| d["channel_id"].is_null()).await;
    // While timed out the talker cannot come back.
    b.send(join_frame(&sid, &vc));
    assert_eq!(b.wait(|v| v["op"] == 14).await["d"]["code"], 4403);
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
    let (_, vc2) = app
        .post(
            &format!("/servers/{sid}/channels"),
            &owner.token,
            json!({"name": "Other", "type": "voice"}),
        )
        .await;
    let vc2 = vc2["id"].as_str().unwrap().to_string();
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
    let (_, closed) = app
        .post(
            &format!("/servers/{sid}/channels"),
            &owner.token,
            json!({"name": "Closed", "type": "voice"}),
        )
        .await;
    let closed = closed["id"].as_str().unwrap().to_string();
    let (s, _) = app
        .request(
            reqwest::Method::PUT,
            &format!("/channels/{closed}/permissions/{}", member.id),
            Some(&owner.token),
            Some(json!({"type": "member", "deny": CONNECT.to_string()})),
        )
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
    let mv = b.wait(|v| v["t"] == "VOICE_CHANNEL_MOVE").await;
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
