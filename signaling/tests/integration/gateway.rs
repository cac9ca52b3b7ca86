//! The real-time gateway over a real WebSocket.

use crate::common::{Closed, Event, Server, TestApp, User};
use serde_json::json;
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

/// Anna's server with Ben in it.
async fn live() -> (TestApp, User, User, Server) {
    let app = TestApp::spawn().await;
    let a = app.register("anna").await;
    let b = app.register("ben").await;
    let server = app.server(&a, "Live").await;
    app.join(&a, &b, &server.id).await;
    (app, a, b, server)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_carries_the_user_and_their_servers() {
    let (app, _, b, _) = live().await;
    let (_, ready) = app.identified(&b).await;
    assert_eq!(ready["user"]["id"], b.id.as_str());
    assert!(ready["session_id"].is_string());
    let servers = ready["servers"].as_array().unwrap();
    assert_eq!(servers.len(), 1);
    assert_eq!(servers[0]["channels"].as_array().unwrap().len(), 2);
    assert_eq!(servers[0]["members"].as_array().unwrap().len(), 2);
}

/// A comes online and later goes offline (a normal close): B sees both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_see_each_other_come_online_and_go_offline() {
    let (app, a, b, _) = live().await;
    let (mut gb, _) = app.identified(&b).await;
    let (mut ga, _) = app.identified(&a).await;
    let p = gb.expect(Event::PresenceUpdate).await;
    assert_eq!(p["user_id"], a.id.as_str());
    assert_eq!(p["status"], "online");
    ga.ws.close(None).await.unwrap();
    let p = gb
        .expect_where(Event::PresenceUpdate, |p| p["user_id"] == a.id.as_str())
        .await;
    assert_eq!(p["status"], "offline");
}

/// A types and sends; B sees both, A does not see its own typing, and A's other sessions see
/// the message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typing_and_messages_reach_members_and_the_senders_sessions() {
    let (app, a, b, Server { text, .. }) = live().await;
    let (mut gb, _) = app.identified(&b).await;
    let (mut ga, _) = app.identified(&a).await;
    let (s, _) = app
        .post_empty(&format!("/channels/{text}/typing"), &a.token)
        .await;
    assert_eq!(s, 204);
    let t = gb.expect(Event::TypingStart).await;
    assert_eq!(t["user_id"], a.id.as_str());
    assert_eq!(t["channel_id"], text.as_str());
    let (s, m) = app
        .post(
            &format!("/channels/{text}/messages"),
            &a.token,
            json!({"content": "hi ben", "nonce": "x1"}),
        )
        .await;
    assert_eq!(s, 201);
    let got = gb.expect(Event::MessageCreate).await;
    assert_eq!(got["id"], m["id"]);
    assert_eq!(got["content"], "hi ben");
    assert_eq!(got["nonce"], "x1");
    let own = ga.expect(Event::MessageCreate).await;
    assert_eq!(
        own["id"], m["id"],
        "the sender's other sessions see it too (no typing first)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channel_and_server_changes_reach_members() {
    let (app, a, b, Server { id: sid, .. }) = live().await;
    let (mut gb, _) = app.identified(&b).await;
    let ch = app.channel(&a, &sid, "text", "news").await;
    assert_eq!(gb.expect(Event::ChannelCreate).await["id"], ch.as_str());
    app.patch(
        &format!("/servers/{sid}"),
        &a.token,
        json!({"name": "Live 2"}),
    )
    .await;
    assert_eq!(gb.expect(Event::ServerUpdate).await["name"], "Live 2");
}

/// A third user joins: members see MEMBER_ADD and the newcomer come online; the joiner's
/// sessions get SERVER_CREATE with who is online, and then the server's messages.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_joiner_gets_the_server_and_members_get_the_joiner() {
    let (app, a, b, Server { id: sid, text, .. }) = live().await;
    let (mut gb, _) = app.identified(&b).await;
    let (_ga, _) = app.identified(&a).await;
    gb.expect(Event::PresenceUpdate).await;
    let c = app.register("cleo").await;
    let (mut gc, _) = app.identified(&c).await;
    app.join(&a, &c, &sid).await;
    assert_eq!(
        gb.expect(Event::MemberAdd).await["user"]["id"],
        c.id.as_str()
    );
    let sc = gc.expect(Event::ServerCreate).await;
    assert_eq!(sc["id"], sid.as_str());
    let online: Vec<&str> = sc["presences"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["user_id"].as_str().unwrap())
        .collect();
    assert!(
        online.contains(&a.id.as_str()) && online.contains(&b.id.as_str()),
        "{online:?}"
    );
    let p = gb.expect(Event::PresenceUpdate).await;
    assert_eq!(
        p["user_id"],
        c.id.as_str(),
        "members learn the newcomer is online"
    );
    app.message(&a, &text, "welcome").await;
    assert_eq!(gc.expect(Event::MessageCreate).await["content"], "welcome");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outsider_never_sees_a_servers_events() {
    let (app, a, b, Server { text, .. }) = live().await;
    let (mut gb, _) = app.identified(&b).await;
    let d = app.register("dora").await;
    let (mut gd, ready) = app.identified(&d).await;
    assert_eq!(ready["servers"].as_array().unwrap().len(), 0);
    app.message(&a, &text, "private").await;
    gb.expect(Event::MessageCreate).await;
    // The outsider gets no event.
    gd.expect_silence(Duration::from_millis(500)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_reaches_friends_and_co_members_never_strangers() {
    let app = TestApp::spawn().await;
    let a = app.register("pres_a").await;
    let friend = app.register("pres_friend").await;
    let mate = app.register("pres_mate").await;
    let stranger = app.register("pres_stranger").await;
    let Server { id: sid, .. } = app.server(&a, "Presence").await;
    app.join(&a, &mate, &sid).await;
    app.post(
        "/users/@me/relationships",
        &a.token,
        json!({"username": "pres_friend"}),
    )
    .await;
    let (s, _) = app
        .put(&format!("/users/@me/relationships/{}", a.id), &friend.token)
        .await;
    assert_eq!(s, 204);
    let (mut gf, _) = app.identified(&friend).await;
    let (mut gm, _) = app.identified(&mate).await;
    let (mut gs, _) = app.identified(&stranger).await;

    // A comes online, changes status, goes offline: the friend (no common server) and the
    // server mate see each step; the stranger sees nothing at all.
    let (mut ga, ready) = app.identified(&a).await;
    assert!(
        ready["presences"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["user_id"] == friend.id.as_str()),
        "READY carries friends' presences: {ready}"
    );
    for g in [&mut gf, &mut gm] {
        let p = g.expect(Event::PresenceUpdate).await;
        assert_eq!(
            (p["user_id"].as_str(), p["status"].as_str()),
            (Some(a.id.as_str()), Some("online"))
        );
    }
    ga.send(json!({"op": 3, "d": {"status": "dnd"}})).await;
    for g in [&mut gf, &mut gm] {
        assert_eq!(g.expect(Event::PresenceUpdate).await["status"], "dnd");
    }
    ga.ws.close(None).await.unwrap();
    for g in [&mut gf, &mut gm] {
        assert_eq!(g.expect(Event::PresenceUpdate).await["status"], "offline");
    }
    // A stranger sees no presence.
    gs.expect_none(Event::PresenceUpdate, Duration::from_millis(300))
        .await;

    // Unfriended: the former friend sees no more of A's presence.
    app.delete(&format!("/users/@me/relationships/{}", a.id), &friend.token)
        .await;
    gf.expect(Event::RelationshipRemove).await;
    let (_ga, _) = app.identified(&a).await;
    gm.expect(Event::PresenceUpdate).await;
    // An ex-friend sees no presence.
    gf.expect_none(Event::PresenceUpdate, Duration::from_millis(300))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_replays_exactly_the_missed_events_in_order() {
    let app = TestApp::spawn().await;
    let a = app.register("sender").await;
    let b = app.register("listener").await;
    let Server { id: sid, text, .. } = app.server(&a, "R").await;
    app.join(&a, &b, &sid).await;
    let (mut gb, ready) = app.identified(&b).await;
    let session_id = ready["session_id"].as_str().unwrap().to_string();
    app.message(&a, &text, "before").await;
    assert_eq!(gb.expect(Event::MessageCreate).await["content"], "before");
    let seq = gb.last_seq;

    // Drop the connection abruptly (no close frame), send while away.
    drop(gb);
    tokio::time::sleep(Duration::from_millis(200)).await;
    for i in 0..5 {
        app.message(&a, &text, &format!("missed {i}")).await;
    }

    let mut g2 = app.gateway().await;
    g2.send(json!({"op": 6, "d": {"token": b.token, "session_id": session_id, "seq": seq}}))
        .await;
    let mut got = vec![];
    let mut seqs = vec![];
    loop {
        let v = g2.next().await.expect("replay");
        assert_eq!(v["op"], 0, "{v}");
        seqs.push(v["s"].as_u64().unwrap());
        if v["t"] == Event::Resumed.name() {
            break;
        }
        assert_eq!(v["t"], Event::MessageCreate.name());
        got.push(v["d"]["content"].as_str().unwrap().to_string());
    }
    assert_eq!(
        got,
        (0..5).map(|i| format!("missed {i}")).collect::<Vec<_>>()
    );
    let expected: Vec<u64> = (seq + 1..=seq + 6).collect();
    assert_eq!(seqs, expected, "consecutive sequence numbers, each once");
    // Live again.
    app.message(&a, &text, "after").await;
    assert_eq!(g2.expect(Event::MessageCreate).await["content"], "after");

    // A bogus session cannot be resumed.
    let mut g3 = app.gateway().await;
    g3.send(json!({"op": 6, "d": {"token": b.token, "session_id": "nope", "seq": 1}}))
        .await;
    let v = g3.next().await.unwrap();
    assert_eq!(v["op"], 9);
    assert_eq!(v["d"]["resumable"], false);
    // Someone else's session cannot be resumed either.
    let mut g4 = app.gateway().await;
    g4.send(json!({"op": 6, "d": {"token": a.token, "session_id": session_id, "seq": 1}}))
        .await;
    assert_eq!(g4.next().await.unwrap()["op"], 9);
}

/// A heartbeat's seq acknowledges the dispatches up to it: the session's replay buffer drops
/// them, so a RESUME from before the acknowledgement is refused and one from it replays the rest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_heartbeat_acknowledges_what_a_resume_no_longer_needs() {
    let app = TestApp::spawn().await;
    let a = app.register("sender").await;
    let b = app.register("listener").await;
    let Server { id: sid, text, .. } = app.server(&a, "R").await;
    app.join(&a, &b, &sid).await;
    let (mut gb, ready) = app.identified(&b).await;
    let session_id = ready["session_id"].as_str().unwrap().to_string();
    app.message(&a, &text, "one").await;
    gb.expect(Event::MessageCreate).await;
    let first = gb.last_seq;
    app.message(&a, &text, "two").await;
    gb.expect(Event::MessageCreate).await;
    let acked = gb.last_seq;
    gb.send(json!({"op": 1, "d": {"seq": acked}})).await;
    loop {
        if gb.next().await.expect("heartbeat ack")["op"] == 11 {
            break;
        }
    }
    drop(gb);
    tokio::time::sleep(Duration::from_millis(200)).await;
    app.message(&a, &text, "missed").await;

    // From before the acknowledgement: "two" is gone from the buffer.
    let mut g2 = app.gateway().await;
    g2.send(json!({"op": 6, "d": {"token": b.token, "session_id": session_id, "seq": first}}))
        .await;
    let v = g2.next().await.unwrap();
    assert_eq!(v["op"], 9, "{v}");
    assert_eq!(v["d"]["resumable"], false);
    // From the acknowledgement: exactly what was missed, then RESUMED.
    let mut g3 = app.gateway().await;
    g3.send(json!({"op": 6, "d": {"token": b.token, "session_id": session_id, "seq": acked}}))
        .await;
    let v = g3.next().await.unwrap();
    assert_eq!(v["t"], Event::MessageCreate.name(), "{v}");
    assert_eq!(v["d"]["content"], "missed");
    assert_eq!(v["s"].as_u64(), Some(acked + 1));
    assert_eq!(g3.next().await.unwrap()["t"], Event::Resumed.name());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_are_acknowledged_and_zombies_closed() {
    let app = TestApp::spawn_with(|c| c.heartbeat_interval_ms = 1000).await;
    let a = app.register("beat").await;
    let (mut g, _) = app.identified(&a).await;
    g.send(json!({"op": 1, "d": {"seq": g.last_seq}})).await;
    assert_eq!(g.next().await.unwrap()["op"], 11);
    // Then stay silent: closed with 4009 after 1.5 intervals.
    assert_eq!(g.closed().await, Closed::Code(4009));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_frames_close_with_documented_codes() {
    let app = TestApp::spawn().await;
    let a = app.register("bad").await;
    let cases: Vec<(Message, u16)> = vec![
        (Message::Text("not json".into()), 4002),
        (Message::Binary(vec![1, 2, 3].into()), 4002),
        (Message::Text(r#"{"op": 42, "d": null}"#.into()), 4001),
        (
            Message::Text(r#"{"op": 3, "d": {"status": "online"}}"#.into()),
            4003,
        ),
        (
            Message::Text(r#"{"op": 2, "d": {"token": "forged"}}"#.into()),
            4004,
        ),
        (
            Message::Text(format!(r#"{{"op": 1, "d": "{}"}}"#, "x".repeat(70_000)).into()),
            4014,
        ),
    ];
    for (frame, code) in cases {
        let mut g = app.gateway().await;
        g.send_raw(frame).await;
        let closed = g.closed().await;
        // An oversized frame may be cut by the WebSocket layer before a close frame fits.
        if code == 4014 {
            assert!(
                closed == Closed::Code(4014) || closed == Closed::Dropped,
                "{closed:?}"
            );
        } else {
            assert_eq!(closed, Closed::Code(code));
        }
    }
    // Second IDENTIFY.
    let (mut g, _) = app.identified(&a).await;
    g.send(json!({"op": 2, "d": {"token": a.token}})).await;
    assert_eq!(g.closed().await, Closed::Code(4005));
    // Too many frames.
    let (mut g, _) = app.identified(&a).await;
    // One frame over the budget (then stop sending, as a client that reads would).
    for _ in 0..121 {
        g.send_raw(Message::Text(r#"{"op":1,"d":null}"#.into()))
            .await;
    }
    assert_eq!(g.closed().await, Closed::Code(4008));
    // The server is fine.
    let (_, ready) = app.identified(&a).await;
    assert_eq!(ready["user"]["username"], "bad");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn origin_allowlist_and_logout_close() {
    let app = TestApp::spawn().await;
    let url = format!("ws://{}/api/v1/gateway", app.addr);
    let mut req =
        tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(url.clone())
            .unwrap();
    req.headers_mut()
        .insert("origin", "https://evil.example".parse().unwrap());
    assert!(
        tokio_tungstenite::connect_async(req).await.is_err(),
        "foreign origin refused"
    );
    let mut req =
        tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(url)
            .unwrap();
    req.headers_mut().insert(
        "origin",
        format!("http://127.0.0.1:{}", app.addr.port())
            .parse()
            .unwrap(),
    );
    assert!(
        tokio_tungstenite::connect_async(req).await.is_ok(),
        "own origin allowed"
    );

    let a = app.register("leaver").await;
    let (mut g, _) = app.identified(&a).await;
    let (s, _) = app
        .request(reqwest::Method::POST, "/auth/logout", Some(&a.token), None)
        .await;
    assert_eq!(s, 204);
    assert_eq!(g.closed().await, Closed::Code(4004));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_sends_reconnect() {
    let mut app = TestApp::spawn().await;
    let a = app.register("stayer").await;
    let (mut g, _) = app.identified(&a).await;
    let running = app.running.take().unwrap();
    let stop = tokio::spawn(running.shutdown());
    let v = g.next().await.expect("reconnect op");
    assert_eq!(v["op"], 7);
    assert_eq!(g.closed().await, Closed::Code(1012));
    stop.await.unwrap();
}

/// A client that identifies while another member comes online sees them online: READY's
/// presences are taken once the new session receives dispatches (see
/// `voice::a_session_identifying_during_a_voice_join_sees_the_participant`). Each round, one
/// more member connects 0–30 ms after the watcher starts to IDENTIFY.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_identifying_while_a_member_comes_online_sees_them_online() {
    let app = TestApp::spawn().await;
    let owner = app.register("olga").await;
    let watcher = app.register("walt").await;
    let server = app.server(&owner, "Online").await;
    app.join(&owner, &watcher, &server.id).await;
    const ROUNDS: usize = 16;
    let mut members = Vec::new();
    for i in 0..ROUNDS {
        let m = app.register(&format!("comer{i}")).await;
        app.join(&owner, &m, &server.id).await;
        members.push(m);
    }
    let mut online_gateways = Vec::new();
    let mut missed = Vec::new();
    for (round, m) in members.iter().enumerate() {
        let delay = Duration::from_millis(2 * round as u64);
        let ((mut gw, ready), (member_gw, _)) = tokio::join!(app.identified(&watcher), async {
            tokio::time::sleep(delay).await;
            app.identified(m).await
        });
        online_gateways.push(member_gw);
        let mut online: std::collections::HashSet<String> = ready["presences"]
            .as_array()
            .expect("READY presences")
            .iter()
            .filter(|p| p["status"] != "offline")
            .map(|p| p["user_id"].as_str().unwrap().to_string())
            .collect();
        while let Some(f) = gw.next_within(Duration::from_millis(300)).await {
            if f["t"] == Event::PresenceUpdate.name() {
                let id = f["d"]["user_id"].as_str().unwrap().to_string();
                if f["d"]["status"] == "offline" {
                    online.remove(&id);
                } else {
                    online.insert(id);
                }
            }
        }
        for (i, earlier) in members[..=round].iter().enumerate() {
            if !online.contains(&earlier.id) {
                missed.push((round, i));
            }
        }
    }
    assert!(
        missed.is_empty(),
        "(round, member) the new session saw offline: {missed:?}"
    );
}

/// A member kicked while their IDENTIFY builds READY gets none of the server's events after:
/// the session's routes follow the membership read again once it is routed, not the one READY
/// started from. Each round a new member identifies and is kicked 0–30 ms later (across the
/// time READY takes to build); a message sent in the server then must not reach them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_kicked_while_identifying_gets_none_of_the_servers_events() {
    let app = TestApp::spawn().await;
    let owner = app.register("kara").await;
    let server = app.server(&owner, "Kicks").await;
    const ROUNDS: usize = 16;
    let mut leaked = Vec::new();
    for round in 0..ROUNDS {
        let m = app.register(&format!("kicked{round}")).await;
        app.join(&owner, &m, &server.id).await;
        let delay = Duration::from_millis(2 * round as u64);
        let ((mut gw, _), status) = tokio::join!(app.identified(&m), async {
            tokio::time::sleep(delay).await;
            app.http
                .delete(app.url(&format!("/servers/{}/members/{}", server.id, m.id)))
                .bearer_auth(&owner.token)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        });
        assert_eq!(status, 204, "kick in round {round}");
        let content = format!("after kick {round}");
        app.message(&owner, &server.text, &content).await;
        while let Some(f) = gw.next_within(Duration::from_millis(300)).await {
            if f["t"] == Event::MessageCreate.name() && f["d"]["content"] == content.as_str() {
                leaked.push(round);
            }
        }
    }
    assert!(
        leaked.is_empty(),
        "rounds whose kicked member still got the server's message: {leaked:?}"
    );
}
