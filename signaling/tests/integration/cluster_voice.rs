//! Voice in a cluster: api nodes place voice channels on media nodes over NATS, participants
//! connected to different api nodes hear each other through the channel's media node, and a
//! media node that dies or drains hands its participants to another within seconds.

use crate::common::{Server, TestApp, User};
use crate::nats_util::NatsServer;
use crate::voice_util::*;
use confab_signaling::config::{Config, Role};
use confab_signaling::media::run::{start_media_node, MediaRunning};
use serde_json::json;
use std::time::{Duration, Instant};

/// An api node (no SFU of its own) on `db` (None: a fresh database) and `nats`.
async fn api_node(nats: &NatsServer, db: Option<String>, name: &str) -> TestApp {
    let name = name.to_string();
    TestApp::spawn_with(move |c| {
        if let Some(db) = db {
            c.database_url = Some(db);
        }
        c.nats_url = Some(nats.url());
        c.role = Role::Api;
        c.node_name = name;
    })
    .await
}

async fn media_node(
    nats: &NatsServer,
    name: &str,
    tweak: impl FnOnce(&mut Config),
) -> MediaRunning {
    let mut c = crate::common::test_config();
    c.nats_url = Some(nats.url());
    c.role = Role::Media;
    c.node_name = name.into();
    tweak(&mut c);
    start_media_node(c).await.expect("media node starts")
}

/// Waits until `app` knows `n` live media nodes.
async fn until_media_nodes(app: &TestApp, n: usize) {
    let state = &app.running.as_ref().unwrap().state;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let known = match state.voice.media() {
            confab_signaling::media::MediaPlane::Cluster(c) => c.nodes().len(),
            confab_signaling::media::MediaPlane::Local(_) => 1,
        };
        if known == n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{known} media nodes known, not {n}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Which media node `app` placed `user`'s voice session on.
fn node_of(app: &TestApp, voice_session: &str) -> Option<String> {
    let state = &app.running.as_ref().unwrap().state;
    match state.voice.media() {
        confab_signaling::media::MediaPlane::Cluster(c) => c.node_of(
            confab_sfu::ParticipantId::new(voice_session.parse().unwrap()),
        ),
        confab_signaling::media::MediaPlane::Local(_) => None,
    }
}

/// Two members, one on each api node, in the server's voice channel, talking.
struct Pair {
    a: TestApp,
    b: TestApp,
    ua: User,
    ub: User,
    guild: Server,
}

async fn pair(nats: &NatsServer) -> Pair {
    let a = api_node(nats, None, "api-a").await;
    let b = api_node(nats, Some(a.database_url()), "api-b").await;
    let ua = a.register("ana").await;
    let ub = a.register("bo").await;
    let guild = a.server(&ua, "Cluster voice").await;
    let code = a.invite(&ua, &guild.id).await;
    assert_eq!(b.accept_invite(&ub, &code).await.0, 200);
    Pair {
        a,
        b,
        ua,
        ub,
        guild,
    }
}

/// Both join through their own api node and offer; returns the clients, peers and voice
/// session ids.
async fn join_both(p: &Pair) -> (Client, Peer, String, Client, Peer, String) {
    let mut ca = connect(&p.a, &p.ua).await;
    let mut cb = connect(&p.b, &p.ub).await;
    let mut pa = Peer::new(true, 1).await;
    let mut pb = Peer::new(true, 2).await;
    ca.send(join_frame(&p.guild.id, &p.guild.voice));
    state_of(&mut ca, &p.ua.id, |d| {
        d["channel_id"] == p.guild.voice.as_str()
    })
    .await;
    let va = negotiate(&mut ca, &mut pa, 1).await;
    cb.send(join_frame(&p.guild.id, &p.guild.voice));
    state_of(&mut cb, &p.ub.id, |d| {
        d["channel_id"] == p.guild.voice.as_str()
    })
    .await;
    let vb = negotiate(&mut cb, &mut pb, 1).await;
    (ca, pa, va, cb, pb, vb)
}

/// Packets each peer hears from the other within `dur` of media.
async fn exchange(pa: &mut Peer, pb: &mut Peer, dur: Duration) -> (usize, usize) {
    let (a0, b0) = (pa.heard_from(2), pb.heard_from(1));
    run_media(&mut [pa, pb], dur).await;
    (pa.heard_from(2) - a0, pb.heard_from(1) - b0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_on_two_api_nodes_hear_each_other_through_one_media_node() {
    let nats = NatsServer::start();
    let m1 = media_node(&nats, "media-1", |_| {}).await;
    let m2 = media_node(&nats, "media-2", |_| {}).await;
    let p = pair(&nats).await;
    until_media_nodes(&p.a, 2).await;
    until_media_nodes(&p.b, 2).await;
    let (mut ca, mut pa, va, mut cb, mut pb, vb) = join_both(&p).await;
    // Both api nodes placed the channel on the same media node (its placement is shared).
    let node = node_of(&p.a, &va).expect("placed");
    assert_eq!(node_of(&p.b, &vb).as_deref(), Some(node.as_str()));
    let on = if node == "media-1" { &m1 } else { &m2 };
    let other = if node == "media-1" { &m2 } else { &m1 };
    assert_eq!(on.node.participants(), 2);
    assert_eq!(other.node.participants(), 0);

    run_media(&mut [&mut pa, &mut pb], Duration::from_millis(1500)).await;
    let (a_heard, b_heard) = exchange(&mut pa, &mut pb, Duration::from_secs(1)).await;
    assert!(
        a_heard > 20 && b_heard > 20,
        "heard {a_heard} / {b_heard} packets in 1 s"
    );
    // Slots and speaking come back through each participant's own api node.
    ca.wait(|v| v["t"] == "VOICE_SLOTS" && v["d"]["slots"][0]["user_id"] == p.ub.id.as_str())
        .await;
    cb.wait(|v| {
        v["t"] == "VOICE_SPEAKING"
            && v["d"]["user_id"] == p.ua.id.as_str()
            && v["d"]["speaking"] == true
    })
    .await;

    // A self-mute through api node B reaches the media node: A stops hearing B.
    cb.send(json!({"op": 4, "d": {"server_id": p.guild.id, "channel_id": p.guild.voice, "self_mute": true, "self_deaf": false}}));
    state_of(&mut ca, &p.ub.id, |d| d["self_mute"] == true).await;
    run_media(&mut [&mut pa, &mut pb], Duration::from_millis(300)).await;
    let (a_heard, b_heard) = exchange(&mut pa, &mut pb, Duration::from_secs(1)).await;
    assert_eq!(a_heard, 0, "a self-muted member is not forwarded");
    assert!(b_heard > 20);

    // Leaving frees the media node.
    ca.send(json!({"op": 4, "d": {"server_id": p.guild.id, "channel_id": null}}));
    cb.send(json!({"op": 4, "d": {"server_id": p.guild.id, "channel_id": null}}));
    let deadline = Instant::now() + Duration::from_secs(5);
    while on.node.participants() > 0 {
        assert!(
            Instant::now() < deadline,
            "participants left behind on {node}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_media_nodes_participants_reconnect_on_another_within_seconds() {
    let nats = NatsServer::start();
    let m1 = media_node(&nats, "media-1", |_| {}).await;
    let p = pair(&nats).await;
    until_media_nodes(&p.a, 1).await;
    until_media_nodes(&p.b, 1).await;
    let (mut ca, mut pa, va, mut cb, mut pb, vb) = join_both(&p).await;
    assert_eq!(node_of(&p.a, &va).as_deref(), Some("media-1"));
    let m2 = media_node(&nats, "media-2", |_| {}).await;
    until_media_nodes(&p.a, 2).await;
    run_media(&mut [&mut pa, &mut pb], Duration::from_millis(1000)).await;
    let (a_heard, b_heard) = exchange(&mut pa, &mut pb, Duration::from_millis(500)).await;
    assert!(a_heard > 10 && b_heard > 10);

    // media-1 dies without a word.
    let killed = Instant::now();
    m1.kill();
    for (c, peer) in [(&mut ca, &mut pa), (&mut cb, &mut pb)] {
        let d = c.wait(|v| v["t"] == "VOICE_RECONNECT").await["d"].clone();
        assert_eq!(d["channel_id"], p.guild.voice.as_str());
        // The client offers again on a fresh connection, as the web client does.
        *peer = Peer::new(true, peer.payload_tag).await;
        negotiate(c, peer, 1).await;
    }
    assert_eq!(node_of(&p.a, &va).as_deref(), Some("media-2"));
    assert_eq!(node_of(&p.b, &vb).as_deref(), Some("media-2"));
    // Audio again both ways, within 5 s of the kill.
    let mut heard = (0, 0);
    while killed.elapsed() < Duration::from_secs(5) && (heard.0 < 5 || heard.1 < 5) {
        let (x, y) = exchange(&mut pa, &mut pb, Duration::from_millis(100)).await;
        heard = (heard.0 + x, heard.1 + y);
    }
    assert!(
        heard.0 >= 5 && heard.1 >= 5,
        "heard {heard:?} within {:?} of the kill",
        killed.elapsed()
    );
    eprintln!("audio back {:?} after the kill", killed.elapsed());
    assert_eq!(m2.node.participants(), 2);
    // The voice states never said they left.
    ca.drain();
    assert!(
        !ca.seen
            .iter()
            .any(|v| v["t"] == "VOICE_STATE_UPDATE" && v["d"]["channel_id"].is_null()),
        "nobody left voice"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_draining_media_node_moves_its_participants_and_takes_no_new_ones() {
    let nats = NatsServer::start();
    let m1 = media_node(&nats, "media-1", |_| {}).await;
    let p = pair(&nats).await;
    until_media_nodes(&p.a, 1).await;
    until_media_nodes(&p.b, 1).await;
    let (mut ca, mut pa, va, mut cb, mut pb, _vb) = join_both(&p).await;
    let _m2 = media_node(&nats, "media-2", |_| {}).await;
    until_media_nodes(&p.a, 2).await;
    until_media_nodes(&p.b, 2).await;

    let node = m1.node.clone();
    let drained = tokio::spawn(async move { node.drain(Duration::ZERO).await });
    for (c, peer) in [(&mut ca, &mut pa), (&mut cb, &mut pb)] {
        c.wait(|v| v["t"] == "VOICE_RECONNECT").await;
        *peer = Peer::new(true, peer.payload_tag).await;
        negotiate(c, peer, 1).await;
    }
    drained.await.unwrap();
    assert_eq!(m1.node.participants(), 0, "the drained node is empty");
    assert_eq!(node_of(&p.a, &va).as_deref(), Some("media-2"));
    run_media(&mut [&mut pa, &mut pb], Duration::from_millis(1000)).await;
    let (a_heard, b_heard) = exchange(&mut pa, &mut pb, Duration::from_secs(1)).await;
    assert!(a_heard > 20 && b_heard > 20, "heard {a_heard} / {b_heard}");

    // A new channel is not placed on the draining node.
    let owner = &p.ua;
    let (s, ch) =
        p.a.post(
            &format!("/servers/{}/channels", p.guild.id),
            &owner.token,
            json!({"name": "second", "type": "voice"}),
        )
        .await;
    assert_eq!(s, 201, "{ch}");
    let ch = ch["id"].as_str().unwrap().to_string();
    let mut peer = Peer::new(true, 3).await;
    ca.send(join_frame(&p.guild.id, &ch));
    state_of(&mut ca, &p.ua.id, |d| d["channel_id"] == ch.as_str()).await;
    let v = negotiate(&mut ca, &mut peer, 1).await;
    assert_eq!(node_of(&p.a, &v).as_deref(), Some("media-2"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_media_node_an_offer_is_refused_clearly() {
    let nats = NatsServer::start();
    let p = pair(&nats).await;
    let mut ca = connect(&p.a, &p.ua).await;
    let mut pa = Peer::new(true, 1).await;
    ca.send(join_frame(&p.guild.id, &p.guild.voice));
    state_of(&mut ca, &p.ua.id, |d| {
        d["channel_id"] == p.guild.voice.as_str()
    })
    .await;
    ca.send(json!({"op": 12, "d": {"sdp": pa.peer.offer(1)}}));
    let refused = ca.wait(|v| v["op"] == 14).await;
    assert_eq!(refused["d"]["code"], 4500, "{refused}");
    // Chat goes on: the api node stays ready for its load balancer.
    let ready = reqwest::get(format!("http://{}/readyz", p.a.addr))
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn voice_states_and_moderation_reach_participants_on_other_api_nodes() {
    let nats = NatsServer::start();
    let _m1 = media_node(&nats, "media-1", |_| {}).await;
    let p = pair(&nats).await;
    until_media_nodes(&p.a, 1).await;
    until_media_nodes(&p.b, 1).await;
    let (mut ca, mut pa, _va, mut cb, mut pb, _vb) = join_both(&p).await;
    run_media(&mut [&mut pa, &mut pb], Duration::from_millis(1500)).await;

    // A new session on node A lists bo, whose voice session node B serves, in READY.
    let fresh = connect(&p.a, &p.ua).await;
    let states = fresh.ready["voice_states"].as_array().unwrap().clone();
    assert!(
        states
            .iter()
            .any(|s| s["user_id"] == p.ub.id.as_str() && s["channel_id"] == p.guild.voice.as_str()),
        "READY on A lists B's participant: {states:?}"
    );

    // The owner server-mutes bo through node A: node B applies it, and A stops hearing bo.
    let (s, body) =
        p.a.patch(
            &format!("/servers/{}/members/{}", p.guild.id, p.ub.id),
            &p.ua.token,
            json!({"mute": true}),
        )
        .await;
    assert_eq!(s, 200, "{body}");
    state_of(&mut ca, &p.ub.id, |d| d["mute"] == true).await;
    run_media(&mut [&mut pa, &mut pb], Duration::from_millis(300)).await;
    let (a_heard, b_heard) = exchange(&mut pa, &mut pb, Duration::from_secs(1)).await;
    assert_eq!(
        a_heard, 0,
        "a server-muted member on another api node is not forwarded"
    );
    assert!(b_heard > 20);

    // Moved through node A to another voice channel: bo's client (on B) is told to offer there.
    let (s, ch) =
        p.a.post(
            &format!("/servers/{}/channels", p.guild.id),
            &p.ua.token,
            json!({"name": "elsewhere", "type": "voice"}),
        )
        .await;
    assert_eq!(s, 201, "{ch}");
    let to = ch["id"].as_str().unwrap().to_string();
    let (s, body) =
        p.a.patch(
            &format!("/servers/{}/members/{}", p.guild.id, p.ub.id),
            &p.ua.token,
            json!({"channel_id": to}),
        )
        .await;
    assert_eq!(s, 200, "{body}");
    let moved = cb.wait(|v| v["t"] == "VOICE_CHANNEL_MOVE").await;
    assert_eq!(moved["d"]["channel_id"], to.as_str());
    state_of(&mut ca, &p.ub.id, |d| d["channel_id"] == to.as_str()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nats_restart_does_not_interrupt_calls() {
    let mut nats = NatsServer::start();
    let m1 = media_node(&nats, "media-1", |_| {}).await;
    let p = pair(&nats).await;
    until_media_nodes(&p.a, 1).await;
    until_media_nodes(&p.b, 1).await;
    let (mut ca, mut pa, _va, mut cb, mut pb, _vb) = join_both(&p).await;
    run_media(&mut [&mut pa, &mut pb], Duration::from_millis(1000)).await;

    // NATS is away for longer than a media node may be silent: media keeps flowing (it never
    // goes through NATS) and nobody is asked to reconnect.
    nats.kill();
    let (a_heard, b_heard) = exchange(&mut pa, &mut pb, Duration::from_secs(5)).await;
    assert!(
        a_heard > 150 && b_heard > 150,
        "heard {a_heard} / {b_heard} while NATS was down"
    );
    nats.restart();
    let (a_heard, b_heard) = exchange(&mut pa, &mut pb, Duration::from_secs(3)).await;
    assert!(a_heard > 100 && b_heard > 100);
    for c in [&mut ca, &mut cb] {
        c.drain();
        assert!(
            !c.seen.iter().any(|v| v["t"] == "VOICE_RECONNECT"),
            "no reconnect after a NATS restart"
        );
    }
    // Signalling works again: a self-mute through B reaches the media node (once both nodes
    // are back on NATS: what the bus carries while a node resubscribes is not kept).
    until_media_nodes(&p.b, 1).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut mute = true;
    loop {
        cb.send(json!({"op": 4, "d": {"server_id": p.guild.id, "channel_id": p.guild.voice, "self_mute": mute, "self_deaf": false}}));
        let seen = tokio::time::timeout(
            Duration::from_millis(700),
            state_of(&mut ca, &p.ub.id, |d| d["self_mute"] == mute),
        )
        .await
        .is_ok();
        if seen && mute {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "voice states did not cross nodes again"
        );
        mute = !mute;
    }
    run_media(&mut [&mut pa, &mut pb], Duration::from_millis(500)).await;
    let (a_heard, _) = exchange(&mut pa, &mut pb, Duration::from_secs(1)).await;
    assert_eq!(
        a_heard, 0,
        "the mute reached the media node after NATS came back"
    );
    assert_eq!(m1.node.participants(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_channel_larger_than_one_media_node_spans_two_and_relays_its_audio() {
    let nats = NatsServer::start();
    // One participant per media node: the second participant spreads the channel to media-2.
    let m1 = media_node(&nats, "media-1", |c| c.media_capacity = 1).await;
    let m2 = media_node(&nats, "media-2", |c| c.media_capacity = 1).await;
    let p = pair(&nats).await;
    until_media_nodes(&p.a, 2).await;
    until_media_nodes(&p.b, 2).await;
    let (mut ca, mut pa, va, mut cb, mut pb, vb) = join_both(&p).await;
    let (na, nb) = (node_of(&p.a, &va).unwrap(), node_of(&p.b, &vb).unwrap());
    assert_ne!(na, nb, "the channel spans both media nodes");
    assert_eq!((m1.node.participants(), m2.node.participants()), (1, 1));

    run_media(&mut [&mut pa, &mut pb], Duration::from_millis(1500)).await;
    let (a_heard, b_heard) = exchange(&mut pa, &mut pb, Duration::from_secs(1)).await;
    assert!(
        a_heard > 20 && b_heard > 20,
        "heard {a_heard} / {b_heard} packets in 1 s across the relay"
    );
    // The listener's slot names the speaker on the other node; speaking is told once.
    ca.wait(|v| v["t"] == "VOICE_SLOTS" && v["d"]["slots"][0]["user_id"] == p.ub.id.as_str())
        .await;
    cb.wait(|v| {
        v["t"] == "VOICE_SPEAKING"
            && v["d"]["user_id"] == p.ua.id.as_str()
            && v["d"]["speaking"] == true
    })
    .await;

    // A self-muted member is not relayed either.
    cb.send(json!({"op": 4, "d": {"server_id": p.guild.id, "channel_id": p.guild.voice, "self_mute": true, "self_deaf": false}}));
    state_of(&mut ca, &p.ub.id, |d| d["self_mute"] == true).await;
    run_media(&mut [&mut pa, &mut pb], Duration::from_millis(300)).await;
    let (a_heard, b_heard) = exchange(&mut pa, &mut pb, Duration::from_secs(1)).await;
    assert_eq!(
        a_heard, 0,
        "a self-muted member on another media node is not heard"
    );
    assert!(b_heard > 20);
}
