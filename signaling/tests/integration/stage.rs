//! Stage channels end to end: the audience's audio never leaves the SFU, a raised hand reaches
//! the moderator, who invites the speaker; only moderators put others (or themselves) on stage.

use crate::common::{Server, TestApp, User};
use crate::voice_util::*;
use serde_json::{json, Value};
use std::time::Duration;

/// A stage channel where the host and the guest have joined as audience (each with a gateway
/// client and a str0m peer; the guest's peer talks).
struct Stage {
    app: TestApp,
    host: User,
    guest: User,
    sid: String,
    /// The server's ordinary voice channel.
    vc: String,
    stage: String,
    a: Client,
    b: Client,
    pa: Peer,
    pb: Peer,
}

async fn stage() -> Stage {
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
    Stage {
        app,
        host,
        guest,
        sid,
        vc,
        stage,
        a,
        b,
        pa,
        pb,
    }
}

impl Stage {
    /// Packets of the guest the host hears in `window` (after `warmup`).
    async fn heard(&mut self, warmup: Duration, window: Duration) -> usize {
        heard_during(&mut [&mut self.pa, &mut self.pb], 0, 2, warmup, window).await
    }

    fn voice_state(&self, user: &str) -> String {
        format!("/servers/{}/voice-states/{user}", self.sid)
    }

    /// `by` changes the voice state of `user` (`"@me"` or an id) in the stage.
    async fn set(&self, by: &User, user: &str, fields: Value) -> (u16, Value) {
        let mut body = json!({"channel_id": self.stage});
        body.as_object_mut()
            .unwrap()
            .extend(fields.as_object().unwrap().clone());
        self.app
            .patch(&self.voice_state(user), &by.token, body)
            .await
    }

    /// The host invites the guest to speak: the hand goes down and the audio flows.
    async fn invite_guest_to_speak(&mut self) {
        let (s, r) = self
            .set(&self.host, &self.guest.id, json!({"suppress": false}))
            .await;
        assert_eq!(s, 204, "{r}");
        let st = state_of(&mut self.b, &self.guest.id, |d| d["suppress"] == false).await;
        assert!(st["request_to_speak_timestamp"].is_null());
        let heard = self
            .heard(Duration::from_millis(500), Duration::from_secs(1))
            .await;
        assert!(
            heard > 30,
            "the host heard {heard} packets from the speaker"
        );
    }
}

/// The audience talks, nobody hears it: the SFU drops it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audience_joins_suppressed_and_is_not_heard() {
    let mut st = stage().await;
    let heard = st
        .heard(Duration::from_millis(800), Duration::from_secs(1))
        .await;
    assert_eq!(heard, 0, "audience audio was forwarded");
}

/// The guest may not put itself on stage, nor anyone else; bad input is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_moderators_put_people_on_stage() {
    let st = stage().await;
    let (s, _) = st.set(&st.guest, "@me", json!({"suppress": false})).await;
    assert_eq!(s, 403);
    let (s, _) = st
        .set(&st.guest, &st.host.id, json!({"suppress": false}))
        .await;
    assert_eq!(s, 403);
    // Bad input: wrong channel, not a stage, unknown fields, missing suppress.
    let me = st.voice_state("@me");
    let theirs = st.voice_state(&st.guest.id);
    let stage = &st.stage;
    for (path, body, want) in [
        (
            &me,
            json!({"channel_id": st.vc, "request_to_speak": true}),
            400,
        ),
        (&me, json!({"channel_id": stage, "raise": true}), 400),
        (&me, json!({"request_to_speak": true}), 400),
        (&theirs, json!({"channel_id": stage}), 400),
        (&theirs, json!({"channel_id": stage, "suppress": "no"}), 400),
    ] {
        let (s, r) = st.app.patch(path, &st.host.token, body.clone()).await;
        assert_eq!(s, want, "{body}: {r}");
    }
}

/// The guest raises a hand; the host sees it; the guest is still not heard until the host
/// invites it to speak.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_raised_hand_reaches_the_host_who_invites_the_speaker() {
    let mut st = stage().await;
    let (s, r) = st
        .set(&st.guest, "@me", json!({"request_to_speak": true}))
        .await;
    assert_eq!(s, 204, "{r}");
    let guest = st.guest.id.clone();
    let v = state_of(&mut st.a, &guest, |d| {
        !d["request_to_speak_timestamp"].is_null()
    })
    .await;
    assert_eq!(v["suppress"], true);
    let heard = st
        .heard(Duration::from_millis(100), Duration::from_millis(500))
        .await;
    assert_eq!(heard, 0);
    st.invite_guest_to_speak().await;
}

/// The guest steps down on its own: silence again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_speaker_who_steps_down_is_silent_again() {
    let mut st = stage().await;
    st.invite_guest_to_speak().await;
    let (s, _) = st.set(&st.guest, "@me", json!({"suppress": true})).await;
    assert_eq!(s, 204);
    let guest = st.guest.id.clone();
    state_of(&mut st.a, &guest, |d| d["suppress"] == true).await;
    let heard = st
        .heard(Duration::from_millis(200), Duration::from_secs(1))
        .await;
    assert_eq!(heard, 0, "a speaker who stepped down is still heard");
}

/// The host (MUTE_MEMBERS) may step up itself; READY of a new session shows the states with
/// their stage fields.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_moderator_steps_up_itself_and_ready_shows_stage_states() {
    let mut st = stage().await;
    let (s, _) = st.set(&st.host, "@me", json!({"suppress": false})).await;
    assert_eq!(s, 204);
    let host = st.host.id.clone();
    state_of(&mut st.b, &host, |d| d["suppress"] == false).await;
    let c = connect(&st.app, &st.host).await;
    let states = c.ready["voice_states"].as_array().unwrap().clone();
    let guest_state = states
        .iter()
        .find(|s| s["user_id"] == st.guest.id.as_str())
        .unwrap();
    assert_eq!(guest_state["suppress"], true);
}
