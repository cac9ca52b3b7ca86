//! Voice events follow channel visibility: who sits and who talks in a voice channel reaches
//! only the members who may view it, a member who gains sight of it learns who is there, and
//! one who loses it hears nothing more.

use crate::common::{Event, Overwrite, Server, TestApp};
use crate::voice_util::{connect, join_frame, negotiate, run_media, Client, Peer};
use serde_json::{json, Value};
use std::time::Duration;

const VIEW_CHANNEL: i64 = 1 << 10;

/// Frames `c` received (up to a marker message sent now in `lobby`) that mention `id`.
async fn mentions_after_marker(
    app: &TestApp,
    owner_token: &str,
    lobby: &str,
    c: &mut Client,
    id: &str,
    n: u32,
) -> Vec<Value> {
    let marker = format!("marker {n}");
    let (s, b) = app
        .post(
            &format!("/channels/{lobby}/messages"),
            owner_token,
            json!({"content": marker}),
        )
        .await;
    assert_eq!(s, 201, "{b}");
    c.wait(|v| v["t"] == Event::MessageCreate.name() && v["d"]["content"] == marker.as_str())
        .await;
    let hits = c
        .seen
        .iter()
        .filter(|v| v["d"].to_string().contains(id))
        .cloned()
        .collect();
    c.seen.clear();
    hits
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn voice_states_and_speaking_reach_only_who_may_view_the_channel() {
    let app = TestApp::spawn_with(|c| c.rate_limit_scale = 100.0).await;
    let owner = app.register("vv_owner").await;
    let staff = app.register("vv_staff").await;
    let member = app.register("vv_member").await;
    let Server {
        id: server,
        text: lobby,
        ..
    } = app.server(&owner, "voice visibility").await;
    app.join(&owner, &staff, &server).await;
    app.join(&owner, &member, &server).await;
    let role = app.role(&owner, &server, "staff", 0).await;
    let room = app.channel(&owner, &server, "voice", "war room").await;
    app.overwrite(&owner, &room, Overwrite::Role(&server), 0, VIEW_CHANNEL)
        .await;
    app.overwrite(&owner, &room, Overwrite::Role(&role), VIEW_CHANNEL, 0)
        .await;
    app.give_role(&owner, &server, &staff, &role).await;

    let mut st = connect(&app, &staff).await;
    let mut mb = connect(&app, &member).await;
    let mut ow = connect(&app, &owner).await;

    // The owner joins the private voice channel and talks.
    ow.send(join_frame(&server, &room));
    let mut po = Peer::new(true, 1).await;
    negotiate(&mut ow, &mut po, 0).await;
    run_media(&mut [&mut po], Duration::from_millis(600)).await;
    let joined = st
        .wait(|v| {
            v["t"] == Event::VoiceStateUpdate.name() && v["d"]["user_id"] == owner.id.as_str()
        })
        .await;
    assert_eq!(joined["d"]["channel_id"], room.as_str());
    st.wait(|v| {
        v["t"] == Event::VoiceSpeaking.name()
            && v["d"]["user_id"] == owner.id.as_str()
            && v["d"]["speaking"] == true
    })
    .await;
    let leaked = mentions_after_marker(&app, &owner.token, &lobby, &mut mb, &room, 1).await;
    assert!(
        leaked.is_empty(),
        "the member learns nothing of the room: {leaked:?}"
    );

    // Revealed: the member gets the channel and who is in it, then its events.
    app.give_role(&owner, &server, &member, &role).await;
    mb.wait(|v| v["t"] == Event::ChannelCreate.name() && v["d"]["id"] == room.as_str())
        .await;
    let there = mb
        .wait(|v| {
            v["t"] == Event::VoiceStateUpdate.name() && v["d"]["user_id"] == owner.id.as_str()
        })
        .await;
    assert_eq!(there["d"]["channel_id"], room.as_str());
    // The owner stops talking: both viewers hear of it.
    run_media(&mut [], Duration::from_millis(900)).await;
    for c in [&mut st, &mut mb] {
        c.wait(|v| {
            v["t"] == Event::VoiceSpeaking.name()
                && v["d"]["user_id"] == owner.id.as_str()
                && v["d"]["speaking"] == false
        })
        .await;
    }

    // Hidden again: the member gets CHANNEL_DELETE, then nothing more about the room while
    // the owner talks, mutes and leaves.
    app.take_role(&owner, &server, &member, &role).await;
    mb.wait(|v| v["t"] == Event::ChannelDelete.name() && v["d"]["id"] == room.as_str())
        .await;
    mb.seen.clear();
    run_media(&mut [&mut po], Duration::from_millis(600)).await;
    st.wait(|v| {
        v["t"] == Event::VoiceSpeaking.name()
            && v["d"]["user_id"] == owner.id.as_str()
            && v["d"]["speaking"] == true
    })
    .await;
    ow.send(json!({"op": 4, "d": {"server_id": server, "channel_id": room, "self_mute": true, "self_deaf": false}}));
    st.wait(|v| {
        v["t"] == Event::VoiceStateUpdate.name()
            && v["d"]["user_id"] == owner.id.as_str()
            && v["d"]["self_mute"] == true
    })
    .await;
    ow.send(json!({"op": 4, "d": {"server_id": server, "channel_id": null}}));
    st.wait(|v| {
        v["t"] == Event::VoiceStateUpdate.name()
            && v["d"]["user_id"] == owner.id.as_str()
            && v["d"]["channel_id"].is_null()
    })
    .await;
    let leaked = mentions_after_marker(&app, &owner.token, &lobby, &mut mb, &owner.id, 2).await;
    let leaked: Vec<&Value> = leaked
        .iter()
        .filter(|v| v["t"].as_str().is_some_and(|t| t.starts_with("VOICE")))
        .collect();
    assert!(
        leaked.is_empty(),
        "no voice events after losing sight: {leaked:?}"
    );
}
