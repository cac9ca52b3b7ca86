//! End-to-end encrypted voice channels (docs/e2ee.md): the `e2ee` channel setting, joins that
//! must declare an identity key (and plain joins refused, so encrypted and plain senders never
//! mix), wrapped media keys relayed only to the named participants of the same channel, and
//! encrypted frames forwarded by the SFU byte for byte.

use crate::common::{Event, Server, TestApp, User};
use crate::voice_util::*;
use base64::Engine;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// A syntactically valid P-256 SPKI (WebCrypto's `exportKey("spki")` form); the server never
/// needs the point to be on the curve, only clients use it.
fn identity_key(seed: u8) -> String {
    let mut der = vec![
        0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08,
        0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00, 0x04,
    ];
    der.extend([seed; 64]);
    base64::engine::general_purpose::STANDARD.encode(der)
}

fn e2ee_join(server: &str, channel: &str, seed: u8) -> Value {
    let mut f = join_frame(server, channel);
    f["d"]["e2ee"] = json!({"identity_key": identity_key(seed)});
    f
}

async fn make_e2ee(app: &TestApp, by: &User, channel: &str) {
    let (s, body) = app
        .patch(
            &format!("/channels/{channel}"),
            &by.token,
            json!({"e2ee": true}),
        )
        .await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(body["e2ee"], true, "{body}");
}

/// Joins and returns the voice session id from the joiner's own VOICE_STATE_UPDATE.
async fn joined(c: &mut Client, user: &User, frame: Value) -> String {
    c.send(frame);
    let st = state_of(c, &user.id, |d| !d["channel_id"].is_null()).await;
    st["voice_session_id"].as_str().unwrap().to_string()
}

async fn voice_error(c: &mut Client) -> Value {
    c.wait(|v| v["op"] == 14).await["d"].clone()
}

fn no_key_within(c: &mut Client, _d: Duration) -> bool {
    c.drain();
    !c.seen.iter().any(|v| v["t"] == "VOICE_E2EE_KEY")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_setting_is_for_managers_audited_and_joins_must_declare_a_key() {
    let app = TestApp::spawn().await;
    let (owner, member) = (app.register("ema").await, app.register("finn").await);
    let Server {
        id: sid,
        voice: vc,
        text,
    } = app.server(&owner, "Secret").await;
    app.join(&owner, &member, &sid).await;

    // Members without MANAGE_CHANNELS may not; text channels cannot be encrypted.
    let (s, _) = app
        .patch(
            &format!("/channels/{vc}"),
            &member.token,
            json!({"e2ee": true}),
        )
        .await;
    assert_eq!(s, 403);
    let (s, body) = app
        .patch(
            &format!("/channels/{text}"),
            &owner.token,
            json!({"e2ee": true}),
        )
        .await;
    assert_eq!(s, 400, "{body}");
    assert!(body["errors"]["e2ee"].is_array(), "{body}");
    let (s, _) = app
        .patch(
            &format!("/channels/{vc}"),
            &owner.token,
            json!({"e2ee": "yes"}),
        )
        .await;
    assert_eq!(s, 400);

    let mut watcher = connect(&app, &member).await;
    make_e2ee(&app, &owner, &vc).await;
    // Members learn it with the channel.
    let upd = watcher
        .wait(|v| v["t"] == Event::ChannelUpdate.name() && v["d"]["id"] == vc.as_str())
        .await;
    assert_eq!(upd["d"]["e2ee"], true, "{upd}");
    let (_, ch) = app.get(&format!("/channels/{vc}"), &member.token).await;
    assert_eq!(ch["e2ee"], true);
    let (_, log) = app
        .get(
            &format!("/servers/{sid}/audit-log?action=channel_update"),
            &owner.token,
        )
        .await;
    assert_eq!(log[0]["target_id"], vc.as_str(), "{log}");
    assert_eq!(
        log[0]["changes"]["e2ee"],
        json!({"old": false, "new": true})
    );

    // A join without a key is refused with 4426, one with a malformed key with 4400.
    let mut a = connect(&app, &owner).await;
    a.send(join_frame(&sid, &vc));
    let err = voice_error(&mut a).await;
    assert_eq!(err["code"], 4426, "{err}");
    let mut bad = join_frame(&sid, &vc);
    bad["d"]["e2ee"] = json!({"identity_key": "AAAA"});
    a.send(bad);
    assert_eq!(voice_error(&mut a).await["code"], 4400);
    // Nobody saw a join.
    watcher.drain();
    assert!(!watcher
        .seen
        .iter()
        .any(|v| v["t"] == Event::VoiceStateUpdate.name() && v["d"]["channel_id"] == vc.as_str()));

    // With a key: the others see it in the voice state.
    joined(&mut a, &owner, e2ee_join(&sid, &vc, 1)).await;
    let st = state_of(&mut watcher, &owner.id, |d| d["channel_id"] == vc.as_str()).await;
    assert_eq!(st["e2ee"]["identity_key"], identity_key(1));

    // An e2ee client cannot join a plain channel either.
    let plain = app.channel(&owner, &sid, "voice", "Plain").await;
    let mut b = connect(&app, &member).await;
    b.send(e2ee_join(&sid, &plain, 2));
    assert_eq!(voice_error(&mut b).await["code"], 4426);

    // The setting cannot change under a connected participant.
    let (s, body) = app
        .patch(
            &format!("/channels/{vc}"),
            &owner.token,
            json!({"e2ee": false}),
        )
        .await;
    assert_eq!(s, 409, "{body}");
    a.send(json!({"op": 4, "d": {"server_id": sid, "channel_id": null}}));
    state_of(&mut watcher, &owner.id, |d| d["channel_id"].is_null()).await;
    let (s, body) = app
        .patch(
            &format!("/channels/{vc}"),
            &owner.token,
            json!({"e2ee": false}),
        )
        .await;
    assert_eq!(s, 200, "{body}");
    assert!(body.get("e2ee").is_none(), "{body}");
    // Plain again: a plain join works.
    joined(&mut b, &member, join_frame(&sid, &vc)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn media_keys_reach_only_the_named_participants_of_the_channel() {
    let app = TestApp::spawn().await;
    let owner = app.register("gus").await;
    let (ub, uc, ud) = (
        app.register("hal").await,
        app.register("ivy").await,
        app.register("jo").await,
    );
    let Server {
        id: sid, voice: vc, ..
    } = app.server(&owner, "Keys").await;
    for u in [&ub, &uc, &ud] {
        app.join(&owner, u, &sid).await;
    }
    let other = app.channel(&owner, &sid, "voice", "Other").await;
    let plain = app.channel(&owner, &sid, "voice", "Plain").await;
    make_e2ee(&app, &owner, &vc).await;
    make_e2ee(&app, &owner, &other).await;

    let mut a = connect(&app, &owner).await;
    let mut b = connect(&app, &ub).await;
    let mut c = connect(&app, &uc).await; // a member, not in voice
    let mut d = connect(&app, &ud).await; // in another e2ee channel
    let vs_a = joined(&mut a, &owner, e2ee_join(&sid, &vc, 1)).await;
    let vs_b = joined(&mut b, &ub, e2ee_join(&sid, &vc, 2)).await;
    let vs_d = joined(&mut d, &ud, e2ee_join(&sid, &other, 4)).await;

    let entry = |u: &User, vs: &str, ct: &str| json!({"user_id": u.id, "voice_session_id": vs, "key_id": 7, "ciphertext": ct});
    a.send(json!({"op": 16, "d": {"channel_id": vc, "keys": [
        entry(&ub, &vs_b, "Zm9yIGI="),
        entry(&ub, &vs_d, "d3JvbmcgdnM="),   // B's user with someone else's voice session
        entry(&uc, &vs_a, "Zm9yIGM="),       // not in voice
        entry(&ud, &vs_d, "Zm9yIGQ="),       // in another channel
    ]}}));
    let got = b.wait(|v| v["t"] == "VOICE_E2EE_KEY").await["d"].clone();
    assert_eq!(got["from_user_id"], owner.id.as_str());
    assert_eq!(got["from_voice_session_id"], vs_a.as_str());
    assert_eq!(got["channel_id"], vc.as_str());
    assert_eq!(got["key_id"], 7);
    assert_eq!(got["ciphertext"], "Zm9yIGI=");
    tokio::time::sleep(Duration::from_millis(500)).await;
    b.drain();
    assert!(
        !b.seen.iter().any(|v| v["t"] == "VOICE_E2EE_KEY"),
        "B got a key meant for another voice session"
    );
    assert!(
        no_key_within(&mut c, Duration::ZERO),
        "a member outside the call got a key"
    );
    assert!(
        no_key_within(&mut d, Duration::ZERO),
        "someone in another channel got a key"
    );
    // Nothing went wrong for the sender: skipped recipients are not errors.
    a.drain();
    assert!(!a.seen.iter().any(|v| v["op"] == 14), "{:?}", a.seen);

    // A sender may only name its own channel; outside voice it is 4404.
    a.send(json!({"op": 16, "d": {"channel_id": other, "keys": [entry(&ud, &vs_d, "eA==")]}}));
    assert_eq!(voice_error(&mut a).await["code"], 4404);
    c.send(json!({"op": 16, "d": {"channel_id": vc, "keys": [entry(&ub, &vs_b, "eA==")]}}));
    assert_eq!(voice_error(&mut c).await["code"], 4404);
    // Malformed or oversized frames: 4400.
    a.send(
        json!({"op": 16, "d": {"channel_id": vc, "keys": [entry(&ub, &vs_b, &"A".repeat(400))]}}),
    );
    assert_eq!(voice_error(&mut a).await["code"], 4400);
    a.send(json!({"op": 16, "d": {"channel_id": vc, "keys": "nope"}}));
    assert_eq!(voice_error(&mut a).await["code"], 4400);

    // In a plain channel the op is refused (4426) and nothing is relayed.
    let vs_c = joined(&mut c, &uc, join_frame(&sid, &plain)).await;
    d.send(join_frame(&sid, &plain));
    let st = state_of(&mut d, &ud.id, |s| s["channel_id"] == plain.as_str()).await;
    assert!(st.get("e2ee").is_none());
    c.send(json!({"op": 16, "d": {"channel_id": plain, "keys": [
        entry(&ud, st["voice_session_id"].as_str().unwrap(), "eA==")]}}));
    assert_eq!(voice_error(&mut c).await["code"], 4426);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(no_key_within(&mut d, Duration::ZERO));
    let _ = vs_c;

    // A participant who left gets nothing sent to its old voice session.
    b.send(json!({"op": 4, "d": {"server_id": sid, "channel_id": null}}));
    state_of(&mut a, &ub.id, |s| s["channel_id"].is_null()).await;
    b.forget();
    a.send(json!({"op": 16, "d": {"channel_id": vc, "keys": [entry(&ub, &vs_b, "eA==")]}}));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(no_key_within(&mut b, Duration::ZERO), "a leaver got a key");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encrypted_frames_cross_the_sfu_byte_for_byte() {
    let app = TestApp::spawn().await;
    let (ua, ub) = (app.register("kai").await, app.register("lou").await);
    let Server {
        id: sid, voice: vc, ..
    } = app.server(&ua, "Frames").await;
    app.join(&ua, &ub, &sid).await;
    make_e2ee(&app, &ua, &vc).await;
    let (mut a, mut b) = (connect(&app, &ua).await, connect(&app, &ub).await);
    joined(&mut a, &ua, e2ee_join(&sid, &vc, 1)).await;
    let mut pa = Peer::new(true, 1).await;
    negotiate(&mut a, &mut pa, 1).await;
    joined(&mut b, &ub, e2ee_join(&sid, &vc, 2)).await;
    let mut pb = Peer::new(false, 2).await;
    negotiate(&mut b, &mut pb, 1).await;
    settle(
        &mut [(&mut a, &mut pa), (&mut b, &mut pb)],
        Duration::from_millis(300),
    )
    .await;

    // SFrame-shaped payloads (a header byte, then what looks like ciphertext and a tag): not
    // Opus, and the SFU must neither parse nor change them; the audio level rides in the RTP
    // header extension beside them.
    let mut sent: Vec<Vec<u8>> = Vec::new();
    let end = Instant::now() + Duration::from_secs(2);
    let mut n: u32 = 0;
    while Instant::now() < end {
        if pa.peer.connected {
            let mut payload = vec![0x1a, (n & 0xff) as u8];
            let mut x = n.wrapping_mul(2_654_435_761);
            for _ in 0..60 {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                payload.push((x & 0xff) as u8);
            }
            pa.peer.send_audio(Instant::now(), &payload, 30);
            sent.push(payload);
            n += 1;
        }
        pa.step(false).await;
        pb.step(false).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    run_media(&mut [&mut pa, &mut pb], Duration::from_millis(300)).await;
    let got: Vec<&confab_sfu::testing::Received> = pb
        .peer
        .received
        .iter()
        .filter(|r| r.payload.first() == Some(&0x1a))
        .collect();
    assert!(
        got.len() > sent.len() / 2,
        "B heard {} of {}",
        got.len(),
        sent.len()
    );
    for r in &got {
        assert!(
            sent.iter().any(|s| s[..] == r.payload[..]),
            "a payload was changed on the way: {:?}",
            &r.payload[..8.min(r.payload.len())]
        );
        // Speaking detection keeps working: the level is in the header, in clear.
        assert_eq!(r.audio_level, Some(-30), "{:?}", r.audio_level);
    }
}

/// An api node of a cluster on `db` (None: a fresh database) and `nats`.
async fn cluster_node(
    nats: &crate::nats_util::NatsServer,
    db: Option<String>,
    name: &str,
) -> TestApp {
    let name = name.to_string();
    TestApp::spawn_with(move |c| {
        if let Some(db) = db {
            c.database_url = Some(db);
        }
        c.nats_url = Some(nats.url());
        c.role = confab_signaling::config::Role::Api;
        c.node_name = name;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_cross_nodes_of_a_cluster_to_the_named_participant_only() {
    let nats = crate::nats_util::NatsServer::start();
    let a = cluster_node(&nats, None, "api-a").await;
    let b = cluster_node(&nats, Some(a.database_url()), "api-b").await;
    let (ua, ub, uc) = (
        a.register("mo").await,
        a.register("ned").await,
        a.register("oz").await,
    );
    let Server {
        id: sid, voice: vc, ..
    } = a.server(&ua, "Cluster keys").await;
    let code = a.invite(&ua, &sid).await;
    assert_eq!(b.accept_invite(&ub, &code).await.0, 200);
    assert_eq!(b.accept_invite(&uc, &code).await.0, 200);
    let other = a.channel(&ua, &sid, "voice", "Other").await;
    make_e2ee(&a, &ua, &vc).await;
    make_e2ee(&a, &ua, &other).await;

    let mut ca = connect(&a, &ua).await;
    let mut cb = connect(&b, &ub).await;
    let mut cc = connect(&b, &uc).await;
    let vs_a = joined(&mut ca, &ua, e2ee_join(&sid, &vc, 1)).await;
    let vs_b = joined(&mut cb, &ub, e2ee_join(&sid, &vc, 2)).await;
    let vs_c = joined(&mut cc, &uc, e2ee_join(&sid, &other, 3)).await;
    // Node A learns B's participants from the bus: until then its keys are skipped, so A's
    // client sends again until one lands (as a client would rotate again on the voice state).
    let frame = json!({"op": 16, "d": {"channel_id": vc, "keys": [
        {"user_id": ub.id, "voice_session_id": vs_b, "key_id": 1, "ciphertext": "Zm9yIGI="},
        {"user_id": uc.id, "voice_session_id": vs_c, "key_id": 1, "ciphertext": "Zm9yIGM="},
    ]}});
    let deadline = Instant::now() + Duration::from_secs(10);
    let got = loop {
        ca.send(frame.clone());
        tokio::time::sleep(Duration::from_millis(200)).await;
        cb.drain();
        if let Some(i) = cb.seen.iter().position(|v| v["t"] == "VOICE_E2EE_KEY") {
            break cb.seen.remove(i)["d"].clone();
        }
        assert!(Instant::now() < deadline, "no key crossed the nodes");
    };
    assert_eq!(got["from_user_id"], ua.id.as_str());
    assert_eq!(got["from_voice_session_id"], vs_a.as_str());
    assert_eq!(got["ciphertext"], "Zm9yIGI=");
    // And back, from node B to node A.
    cb.send(json!({"op": 16, "d": {"channel_id": vc, "keys": [
        {"user_id": ua.id, "voice_session_id": vs_a, "key_id": 2, "ciphertext": "Zm9yIGE="}]}}));
    let back = ca.wait(|v| v["t"] == "VOICE_E2EE_KEY").await;
    assert_eq!(back["d"]["from_user_id"], ub.id.as_str());
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        no_key_within(&mut cc, Duration::ZERO),
        "a participant of another channel got a key"
    );
}
