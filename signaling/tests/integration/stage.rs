//! Stage channels end to end: the audience's audio never leaves the SFU, a raised hand reaches
//! the moderator, who invites the speaker; only moderators put others (or themselves) on stage.

use crate::common::{Server, TestApp};
use crate::voice_util::*;
use serde_json::json;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raise_hand_invite_to_speak_and_step_down() {
    let app = TestApp::spawn().await;
    let (host, guest) = (app.register("hana").await, app.register("gus").await);
    let Server {
        id: sid, voice: vc, ..
    } = app.server(&host, "Stage").await;
    app.join(&host, &guest, &sid).await;
    let (s, stage) = app
        .post(
            &format!("/servers/{sid}/channels"),
            &host.token,
            json!({"name": "Town hall", "type": "stage"}),
        )
        .await;
    assert_eq!(s, 201, "{stage}");
    assert_eq!(stage["type"], "stage");
    let stage = stage["id"].as_str().unwrap().to_string();

    let mut a = connect(&app, &host).await;
    let mut b = connect(&app, &guest).await;
    a.send(join_frame(&sid, &stage));
    let mut pa = Peer::new(false, 1).await;
    negotiate(&mut a, &mut pa, 1).await;
    // Everyone joins as audience, the owner too.
    let st = state_of(&mut a, &host.id, |_| true).await;
    assert_eq!(st["suppress"], true);
    assert!(st["request_to_speak_timestamp"].is_null());
    b.send(join_frame(&sid, &stage));
    let mut pb = Peer::new(true, 2).await;
    negotiate(&mut b, &mut pb, 1).await;
    let st = state_of(&mut a, &guest.id, |_| true).await;
    assert_eq!(
        (st["suppress"].clone(), st["mute"].clone()),
        (json!(true), json!(false))
    );
    settle(
        &mut [(&mut a, &mut pa), (&mut b, &mut pb)],
        Duration::from_millis(400),
    )
    .await;

    // The audience talks, nobody hears it: the SFU drops it.
    let heard = heard_during(
        &mut [&mut pa, &mut pb],
        0,
        2,
        Duration::from_millis(800),
        Duration::from_secs(1),
    )
    .await;
    assert_eq!(heard, 0, "audience audio was forwarded");

    let me = format!("/servers/{sid}/voice-states/@me");
    let theirs = format!("/servers/{sid}/voice-states/{}", guest.id);
    // The guest may not put itself on stage, nor anyone else.
    let (s, _) = app
        .patch(
            &me,
            &guest.token,
            json!({"channel_id": stage, "suppress": false}),
        )
        .await;
    assert_eq!(s, 403);
    let (s, _) = app
        .patch(
            &format!("/servers/{sid}/voice-states/{}", host.id),
            &guest.token,
            json!({"channel_id": stage, "suppress": false}),
        )
        .await;
    assert_eq!(s, 403);
    // Bad input: wrong channel, not a stage, unknown fields, missing suppress.
    for (path, body, want) in [
        (
            &me,
            json!({"channel_id": vc, "request_to_speak": true}),
            400,
        ),
        (&me, json!({"channel_id": stage, "raise": true}), 400),
        (&me, json!({"request_to_speak": true}), 400),
        (&theirs, json!({"channel_id": stage}), 400),
        (&theirs, json!({"channel_id": stage, "suppress": "no"}), 400),
    ] {
        let (s, r) = app.patch(path, &host.token, body.clone()).await;
        assert_eq!(s, want, "{body}: {r}");
    }

    // The guest raises a hand; the host sees it.
    let (s, r) = app
        .patch(
            &me,
            &guest.token,
            json!({"channel_id": stage, "request_to_speak": true}),
        )
        .await;
    assert_eq!(s, 204, "{r}");
    let st = state_of(&mut a, &guest.id, |d| {
        !d["request_to_speak_timestamp"].is_null()
    })
    .await;
    assert_eq!(st["suppress"], true);
    // Still not heard while waiting.
    let heard = heard_during(
        &mut [&mut pa, &mut pb],
        0,
        2,
        Duration::from_millis(100),
        Duration::from_millis(500),
    )
    .await;
    assert_eq!(heard, 0);

    // The host invites the guest to speak: the hand goes down and the audio flows.
    let (s, r) = app
        .patch(
            &theirs,
            &host.token,
            json!({"channel_id": stage, "suppress": false}),
        )
        .await;
    assert_eq!(s, 204, "{r}");
    let st = state_of(&mut b, &guest.id, |d| d["suppress"] == false).await;
    assert!(st["request_to_speak_timestamp"].is_null());
    let heard = heard_during(
        &mut [&mut pa, &mut pb],
        0,
        2,
        Duration::from_millis(500),
        Duration::from_secs(1),
    )
    .await;
    assert!(
        heard > 30,
        "the host heard {heard} packets from the speaker"
    );

    // The guest steps down on its own: silence again.
    let (s, _) = app
        .patch(
            &me,
            &guest.token,
            json!({"channel_id": stage, "suppress": true}),
        )
        .await;
    assert_eq!(s, 204);
    state_of(&mut a, &guest.id, |d| d["suppress"] == true).await;
    let heard = heard_during(
        &mut [&mut pa, &mut pb],
        0,
        2,
        Duration::from_millis(200),
        Duration::from_secs(1),
    )
    .await;
    assert_eq!(heard, 0, "a speaker who stepped down is still heard");

    // The host (MUTE_MEMBERS) may step up itself.
    let (s, _) = app
        .patch(
            &me,
            &host.token,
            json!({"channel_id": stage, "suppress": false}),
        )
        .await;
    assert_eq!(s, 204);
    state_of(&mut b, &host.id, |d| d["suppress"] == false).await;
    // READY of a new session shows both states with their stage fields.
    let c = connect(&app, &host).await;
    let states = c.ready["voice_states"].as_array().unwrap().clone();
    let guest_state = states
        .iter()
        .find(|s| s["user_id"] == guest.id.as_str())
        .unwrap();
    assert_eq!(guest_state["suppress"], true);
}
