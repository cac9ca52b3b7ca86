//! A cluster on one machine: nodes sharing one PostgreSQL and a private NATS. What is done
//! through one node reaches gateway clients connected to the others, once and in order, as if
//! they were all on one.

use crate::common::{Closed, Gateway, TestApp, User};
use crate::nats_util::NatsServer;
use confab_signaling::gateway::events::Event;
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::time::Duration;

/// `n` nodes on one fresh database and `nats`, with rate limits scaled up (tests send faster
/// than a person may).
async fn cluster(nats: &NatsServer, n: usize) -> Vec<TestApp> {
    cluster_scaled(nats, n, 100.0).await
}

async fn cluster_scaled(nats: &NatsServer, n: usize, rate_limit_scale: f64) -> Vec<TestApp> {
    let first = TestApp::spawn_with(|c| {
        c.nats_url = Some(nats.url());
        c.rate_limit_scale = rate_limit_scale;
        c.node_name = "node-0".into();
    })
    .await;
    let db = first.database_url();
    let mut nodes = vec![first];
    for i in 1..n {
        let db = db.clone();
        nodes.push(
            TestApp::spawn_with(move |c| {
                c.database_url = Some(db);
                c.nats_url = Some(nats.url());
                c.rate_limit_scale = rate_limit_scale;
                c.node_name = format!("node-{i}");
            })
            .await,
        );
    }
    nodes
}

/// MESSAGE_CREATE payloads until `n` arrived (panics after 10 s without one).
async fn messages(gw: &mut Gateway, n: usize) -> Vec<Value> {
    let mut got = Vec::new();
    while got.len() < n {
        let v = gw
            .next_within(Duration::from_secs(10))
            .await
            .unwrap_or_else(|| panic!("only {} of {n} messages arrived", got.len()));
        if v["op"] == 0 && v["t"] == "MESSAGE_CREATE" {
            got.push(v["d"].clone());
        }
    }
    got
}

async fn send(node: &TestApp, user: &User, channel: &str, content: &str) -> String {
    let (s, body) = node
        .post(
            &format!("/channels/{channel}/messages"),
            &user.token,
            json!({ "content": content }),
        )
        .await;
    assert_eq!(s, 201, "{body}");
    body["id"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_sent_through_each_node_reach_clients_on_every_node_once_in_order() {
    let nats = NatsServer::start();
    let nodes = cluster(&nats, 3).await;
    let (a, b, c) = (&nodes[0], &nodes[1], &nodes[2]);

    let owner = a.register("owner").await;
    let bob = b.register("bob").await;
    let carol = c.register("carol").await;
    let guild = a.server(&owner, "cluster").await;
    let (server, channel) = (guild.id, guild.text);
    a.join(&owner, &bob, &server).await;
    a.join(&owner, &carol, &server).await;

    // Each client on its own node.
    let (mut gw_a, _) = a.identified(&owner).await;
    let (mut gw_b, _) = b.identified(&bob).await;
    let (mut gw_c, _) = c.identified(&carol).await;

    // Every node's users write at once; each writer's messages are sent one after another.
    const EACH: usize = 15;
    let writers = [(a, &owner), (b, &bob), (c, &carol)];
    let sent: Vec<Vec<String>> =
        futures_util::future::join_all(writers.iter().map(|(node, user)| async {
            let mut ids = Vec::new();
            for i in 0..EACH {
                ids.push(send(node, user, &channel, &format!("{} {i}", user.id)).await);
            }
            ids
        }))
        .await;
    let all: HashSet<&String> = sent.iter().flatten().collect();
    assert_eq!(all.len(), 3 * EACH, "ids made on different nodes collide");

    for (name, gw) in [("A", &mut gw_a), ("B", &mut gw_b), ("C", &mut gw_c)] {
        let got = messages(gw, 3 * EACH).await;
        let ids: Vec<String> = got
            .iter()
            .map(|m| m["id"].as_str().unwrap().into())
            .collect();
        let unique: HashSet<&String> = ids.iter().collect();
        assert_eq!(
            unique.len(),
            ids.len(),
            "node {name}: a message arrived twice"
        );
        assert_eq!(unique, all, "node {name}: not every message arrived");
        // Each writer's messages arrive in the order they were sent (and of their ids).
        for writer in &sent {
            let order: Vec<&String> = ids.iter().filter(|id| writer.contains(id)).collect();
            let expected: Vec<&String> = writer.iter().collect();
            assert_eq!(
                order, expected,
                "node {name}: one writer's messages out of order"
            );
        }
        gw.expect_none(Event::MessageCreate, Duration::from_millis(300))
            .await;
    }

    // The nodes lease different snowflake worker ids (bits 12..22 of an id).
    let workers: HashMap<u64, usize> = sent
        .iter()
        .map(|w| (w[0].parse::<u64>().unwrap() >> 12) & 0x3ff)
        .fold(HashMap::new(), |mut m, w| {
            *m.entry(w).or_default() += 1;
            m
        });
    assert_eq!(
        workers.len(),
        3,
        "three nodes, three worker ids: {workers:?}"
    );

    // Cross-node deliveries were timed.
    let metrics = a.metrics().await;
    let timed: f64 = metrics
        .lines()
        .find(|l| l.starts_with("confab_bus_delivery_seconds_count{"))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0.0);
    assert!(timed > 0.0, "no cross-node delivery latency recorded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joins_kicks_and_logouts_on_one_node_take_effect_on_another() {
    let nats = NatsServer::start();
    let nodes = cluster(&nats, 2).await;
    let (a, b) = (&nodes[0], &nodes[1]);

    let owner = a.register("owner").await;
    let dave = b.register("dave").await;
    let guild = a.server(&owner, "cluster").await;
    let (server, channel) = (guild.id, guild.text);

    // Dave is connected to B before he belongs to the server.
    let (mut gw, ready) = b.identified(&dave).await;
    assert!(ready["servers"].as_array().unwrap().is_empty());

    // He joins through A: B learns it and routes the server's events to him.
    a.join(&owner, &dave, &server).await;
    let created = gw.expect(Event::ServerCreate).await;
    assert_eq!(created["id"], server.as_str());
    let id = send(a, &owner, &channel, "welcome").await;
    let got = messages(&mut gw, 1).await;
    assert_eq!(got[0]["id"], id.as_str());

    // Kicked through A: nothing of the server reaches him on B any more.
    let (s, body) = a
        .delete(
            &format!("/servers/{server}/members/{}", dave.id),
            &owner.token,
        )
        .await;
    assert_eq!(s, 204, "{body}");
    gw.expect(Event::ServerDelete).await;
    send(a, &owner, &channel, "after the kick").await;
    gw.expect_none(Event::MessageCreate, Duration::from_millis(500))
        .await;

    // Logging out through A closes his gateway connection on B (4004).
    let (s, body) = a
        .request(
            reqwest::Method::POST,
            "/auth/logout",
            Some(&dave.token),
            Some(json!({ "refresh_token": dave.refresh })),
        )
        .await;
    assert!(s == 204 || s == 200, "logout: {s} {body}");
    assert_eq!(gw.closed().await, Closed::Code(4004));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_reconnect_and_resubscribe_after_nats_restarts() {
    let mut nats = NatsServer::start();
    let nodes = cluster(&nats, 2).await;
    let (a, b) = (&nodes[0], &nodes[1]);
    let owner = a.register("owner").await;
    let bob = b.register("bob").await;
    let guild = a.server(&owner, "cluster").await;
    let (server, channel) = (guild.id, guild.text);
    a.join(&owner, &bob, &server).await;
    let (mut gw, _) = b.identified(&bob).await;
    let first = send(a, &owner, &channel, "before").await;
    assert_eq!(messages(&mut gw, 1).await[0]["id"], first.as_str());

    nats.kill();
    // While NATS is down, sends are still stored and acknowledged.
    let during = send(a, &owner, &channel, "during").await;
    let (s, history) = b
        .get(&format!("/channels/{channel}/messages?limit=5"), &bob.token)
        .await;
    assert_eq!(s, 200);
    assert!(
        history
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["id"] == during.as_str()),
        "a message sent while NATS is down is stored"
    );

    nats.restart();
    // No manual step: once both nodes are back on NATS, messages flow again.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let id = send(a, &owner, &channel, "after").await;
        let mut arrived = false;
        while let Some(v) = gw.next_within(Duration::from_millis(500)).await {
            if v["t"] == "MESSAGE_CREATE" && v["d"]["id"] == id.as_str() {
                arrived = true;
                break;
            }
        }
        if arrived {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "messages did not reach the other node within 20 s of NATS restarting"
        );
    }
}

/// The next PRESENCE_UPDATE of `user` (panics after 5 s).
async fn presence(gw: &mut Gateway, user: &User) -> String {
    loop {
        let d = gw.expect(Event::PresenceUpdate).await;
        if d["user_id"] == user.id.as_str() {
            return d["status"].as_str().unwrap().to_string();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_counts_every_nodes_sessions() {
    let nats = NatsServer::start();
    let nodes = cluster(&nats, 2).await;
    let (a, b) = (&nodes[0], &nodes[1]);
    let alice = a.register("alice").await;
    let bob = b.register("bob").await;
    let server = a.server(&alice, "cluster").await.id;
    a.join(&alice, &bob, &server).await;

    // Bob watches from B; Alice comes online on A.
    let (mut bob_gw, _) = b.identified(&bob).await;
    let (mut alice_a, _) = a.identified(&alice).await;
    assert_eq!(presence(&mut bob_gw, &alice).await, "online");

    // A client connecting to B sees her online in READY.
    let (_, ready) = b.identified(&bob).await;
    let listed = ready["presences"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["user_id"] == alice.id.as_str() && p["status"] == "online");
    assert!(
        listed,
        "READY on B lists Alice online: {}",
        ready["presences"]
    );

    // She also connects to B, then leaves A: still online, so Bob is told nothing.
    let (mut alice_b, _) = b.identified(&alice).await;
    alice_a
        .send(json!({"op": 3, "d": {"status": "idle"}}))
        .await;
    drop(alice_a);
    quiet_presence(&mut bob_gw, &alice, Duration::from_millis(700)).await;

    // Her last session (on B) goes idle, then ends: Bob sees idle, then offline.
    alice_b
        .send(json!({"op": 3, "d": {"status": "idle"}}))
        .await;
    assert_eq!(presence(&mut bob_gw, &alice).await, "idle");
    alice_b.ws.close(None).await.ok();
    assert_eq!(presence(&mut bob_gw, &alice).await, "offline");
}

/// No PRESENCE_UPDATE of `user` within `d`.
async fn quiet_presence(gw: &mut Gateway, user: &User, d: Duration) {
    let deadline = tokio::time::Instant::now() + d;
    while let Some(v) = gw
        .next_within(deadline.saturating_duration_since(tokio::time::Instant::now()))
        .await
    {
        assert!(
            !(v["t"] == "PRESENCE_UPDATE" && v["d"]["user_id"] == user.id.as_str()),
            "unexpected presence change: {v}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limit_is_one_budget_across_nodes() {
    let nats = NatsServer::start();
    let nodes = cluster_scaled(&nats, 2, 1.0).await;
    let (a, b) = (&nodes[0], &nodes[1]);
    let owner = a.register("owner").await;
    let channel = a.server(&owner, "cluster").await.text;
    let path = format!("/channels/{channel}/messages");
    // The messages bucket holds 10: spend it through A.
    let mut on_a = 0;
    for _ in 0..10 {
        if a.post(&path, &owner.token, json!({"content": "a"})).await.0 == 201 {
            on_a += 1;
        }
    }
    assert_eq!(on_a, 10, "A admits the whole bucket");
    // A tells B within its sharing interval; B then has (almost) nothing left to give.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let mut on_b = 0;
    for _ in 0..10 {
        match b.post(&path, &owner.token, json!({"content": "b"})).await.0 {
            201 => on_b += 1,
            429 => {}
            s => panic!("unexpected status {s}"),
        }
    }
    // The bucket refills 2 a second: what B admits is what came back meanwhile, not 10 more.
    assert!(on_b <= 3, "B admitted {on_b} more after A spent the budget");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_temporary_member_connected_to_another_node_is_kept() {
    use confab_signaling::temporary_members as temporary;
    let nats = NatsServer::start();
    let nodes = cluster(&nats, 2).await;
    let (a, b) = (&nodes[0], &nodes[1]);
    let owner = a.register("owner").await;
    let guest = b.register("guest").await;
    let server = a.server(&owner, "cluster").await.id;
    let (s, inv) = a
        .post(
            &format!("/servers/{server}/invites"),
            &owner.token,
            json!({"temporary": true}),
        )
        .await;
    assert_eq!(s, 201, "{inv}");
    let (s, body) = a.accept_invite(&guest, inv["code"].as_str().unwrap()).await;
    assert_eq!(s, 200, "{body}");

    // The guest is online on B; A's sweep (as if the grace period had passed) keeps them.
    let (mut guest_gw, _) = b.identified(&guest).await;
    let a_state = &a.running.as_ref().unwrap().state;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !a_state
        .hub
        .connected_anywhere(guest.id.parse::<confab_chat::UserId>().unwrap())
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "A never learned the guest is online"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(temporary::sweep(a_state, Duration::ZERO).await, 0);
    assert_eq!(
        a.member_ids(&owner, &server).await.len(),
        2,
        "the guest stays"
    );

    // Once their session on B ends (a clean close: a dropped one waits to be resumed), they
    // are let go.
    guest_gw.ws.close(None).await.ok();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while a.member_ids(&owner, &server).await.len() != 1 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the guest was not let go after going offline"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_from_a_gone_node_is_told_to_identify_again_elsewhere() {
    let nats = NatsServer::start();
    let mut nodes = cluster(&nats, 2).await;
    let b = nodes.pop().unwrap();
    let a = nodes.pop().unwrap();
    let owner = a.register("owner").await;
    let (mut gw, ready) = a.identified(&owner).await;
    let session_id = ready["session_id"].as_str().unwrap().to_string();
    let channel = a.server(&owner, "cluster").await.text;
    gw.expect(Event::ServerCreate).await;
    let seq = gw.last_seq;
    drop(gw);
    drop(a);

    // Its client reconnects through the balancer to B: B cannot replay A's buffer, so the
    // RESUME is refused (op 9) and a fresh IDENTIFY gets READY with the current state.
    let mut g2 = b.gateway().await;
    g2.send(json!({"op": 6, "d": {"token": owner.token, "session_id": session_id, "seq": seq}}))
        .await;
    assert_eq!(g2.next().await.unwrap()["op"], 9, "RESUME on another node");
    g2.send(json!({"op": 2, "d": {"token": owner.token}})).await;
    let ready = g2.expect(Event::Ready).await;
    assert_eq!(ready["servers"].as_array().unwrap().len(), 1);
    let id = send(&b, &owner, &channel, "after the move").await;
    assert_eq!(messages(&mut g2, 1).await[0]["id"], id.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_starting_node_closes_only_the_voice_sessions_of_gone_nodes() {
    let nats = NatsServer::start();
    let nodes = cluster(&nats, 1).await;
    let a = &nodes[0];
    let owner = a.register("owner").await;
    let guild = a.server(&owner, "cluster").await;
    let chat = &a.running.as_ref().unwrap().state.chat;
    let user: confab_chat::UserId = owner.id.parse().unwrap();
    let server: confab_chat::ServerId = guild.id.parse().unwrap();
    let channel: confab_chat::ChannelId = guild.voice.parse().unwrap();
    // One voice session served by A (alive), one by a node that died without closing it.
    let live: confab_chat::Snowflake = chat.next_id();
    chat.voice_session_started(live, user, server, channel)
        .await
        .unwrap();
    let db = sqlx::PgPool::connect(&a.database_url()).await.unwrap();
    let gone: confab_chat::Snowflake = chat.next_id();
    sqlx::query(
        "INSERT INTO voice_sessions (id, user_id, server_id, channel_id, node)
         VALUES ($1, $2, $3, $4, 'gone/0')",
    )
    .bind(gone)
    .bind(user)
    .bind(server)
    .bind(channel)
    .execute(&db)
    .await
    .unwrap();

    // B starts on the same database.
    let db_url = a.database_url();
    let _b = TestApp::spawn_with(|c| {
        c.database_url = Some(db_url);
        c.nats_url = Some(nats.url());
        c.node_name = "node-b".into();
    })
    .await;
    let open: Vec<confab_chat::Snowflake> =
        sqlx::query_scalar("SELECT id FROM voice_sessions WHERE ended_at IS NULL")
            .fetch_all(&db)
            .await
            .unwrap();
    assert_eq!(open, vec![live], "only the gone node's session is closed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_profile_change_reaches_co_members_on_other_nodes_once() {
    let nats = NatsServer::start();
    let nodes = cluster(&nats, 2).await;
    let (a, b) = (&nodes[0], &nodes[1]);
    let owner = a.register("owner").await;
    let member = a.register("member").await;
    let guild = a.server(&owner, "profiles").await;
    let code = a.invite(&owner, &guild.id).await;
    assert_eq!(a.accept_invite(&member, &code).await.0, 200);
    // A second server in common: still one USER_UPDATE.
    let other = a.server(&owner, "second").await;
    let code = a.invite(&owner, &other.id).await;
    assert_eq!(a.accept_invite(&member, &code).await.0, 200);
    let (mut on_b, _) = b.identified(&member).await;
    let (s, body) = a
        .patch(
            "/users/@me",
            &owner.token,
            json!({"display_name": "The Owner"}),
        )
        .await;
    assert_eq!(s, 200, "{body}");
    let update = on_b.expect(Event::UserUpdate).await;
    assert_eq!(update["display_name"], "The Owner");
    on_b.expect_none(Event::UserUpdate, Duration::from_millis(500))
        .await;
}
