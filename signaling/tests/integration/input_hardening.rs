//! Input that the database or the protocol cannot take: NUL characters wherever text enters,
//! a bad row inside a batched message write, unauthenticated gateway connections that try to
//! stay open, and text frames that are not UTF-8.

use crate::common::{Closed, Event, Server, TestApp};
use futures_util::SinkExt;
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::Message;

fn assert_field(status: u16, body: &Value, field: &str) {
    assert_eq!(status, 400, "{field}: {body}");
    assert!(
        body["errors"][field].is_array(),
        "the 400 names `{field}`: {body}"
    );
}

#[tokio::test]
async fn nul_characters_are_refused_with_the_field_named_everywhere_text_enters() {
    let app = TestApp::spawn().await;
    let owner = app.register("nul_owner").await;
    let Server {
        id: server, text, ..
    } = app.server(&owner, "nul").await;
    let nul = "x\u{0}y";

    // Message content and nonce, on the batched path and beside a reply (slow path).
    let path = format!("/channels/{text}/messages");
    let (s, b) = app.post(&path, &owner.token, json!({"content": nul})).await;
    assert_field(s, &b, "content");
    let (s, b) = app
        .post(&path, &owner.token, json!({"content": "ok", "nonce": nul}))
        .await;
    assert_field(s, &b, "nonce");
    // Edit.
    let (s, m) = app
        .post(&path, &owner.token, json!({"content": "fine"}))
        .await;
    assert_eq!(s, 201, "{m}");
    let id = m["id"].as_str().unwrap();
    let (s, b) = app
        .patch(
            &format!("{path}/{id}"),
            &owner.token,
            json!({"content": nul}),
        )
        .await;
    assert_field(s, &b, "content");
    // Channel topic, nested in a body.
    let (s, b) = app
        .patch(
            &format!("/channels/{text}"),
            &owner.token,
            json!({"topic": nul}),
        )
        .await;
    assert_field(s, &b, "topic");
    // Login username and register email (no token).
    let (s, b) = app
        .request(
            reqwest::Method::POST,
            "/auth/login",
            None,
            Some(json!({"username": nul, "password": "correct horse battery"})),
        )
        .await;
    assert_field(s, &b, "username");
    let (s, b) = app
        .request(
            reqwest::Method::POST,
            "/auth/register",
            None,
            Some(json!({"username": "fresh_user", "password": "correct horse battery", "email": "a\u{0}@example.org"})),
        )
        .await;
    assert_field(s, &b, "email");
    // Invite code in the path, audit-log filter in the query.
    let (s, b) = app
        .request(
            reqwest::Method::POST,
            "/invites/ab%00cd",
            Some(&owner.token),
            None,
        )
        .await;
    assert_field(s, &b, "path");
    let (s, b) = app
        .get(
            &format!("/servers/{server}/audit-log?action=invite%00create"),
            &owner.token,
        )
        .await;
    assert_field(s, &b, "action");
    // X-Audit-Log-Reason (percent-encoded, as clients send it).
    let resp = app
        .http
        .post(app.url(&format!("/servers/{server}/invites")))
        .bearer_auth(&owner.token)
        .header("X-Audit-Log-Reason", "because%00")
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    let s = resp.status().as_u16();
    let b: Value = resp.json().await.unwrap();
    assert_field(s, &b, "x-audit-log-reason");

    // None of it reached the database; an escaped backslash before "u0000" is plain text.
    let (_, history) = app.get(&format!("{path}?limit=100"), &owner.token).await;
    assert_eq!(history.as_array().unwrap().len(), 1, "{history}");
    let (s, b) = app
        .post(&path, &owner.token, json!({"content": "a\\u0000b"}))
        .await;
    assert_eq!(s, 201, "{b}");
    assert_eq!(b["content"], "a\\u0000b");

    // A gateway frame with a NUL is a decode error, not a crash of anything behind it.
    let (mut gw, _) = app.identified(&owner).await;
    gw.send(json!({"op": 3, "d": {"status": "idle\u{0}"}}))
        .await;
    assert_eq!(gw.closed().await, Closed::Code(4002));
}

/// One message the database refuses must fail only itself: the others batched with it are
/// stored once and acknowledged. The refusal is staged with a trigger, standing for any
/// future row that validation lets through.
#[tokio::test]
async fn a_row_the_database_refuses_fails_only_its_own_send() {
    let app = TestApp::spawn_with(|c| c.rate_limit_scale = 100.0).await;
    let pool = app.running.as_ref().unwrap().state.chat.pool().clone();
    sqlx::raw_sql(
        "CREATE FUNCTION refuse_poison() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
             IF NEW.content LIKE 'poison%' THEN RAISE EXCEPTION 'refused row'; END IF;
             RETURN NEW;
         END $$;
         CREATE TRIGGER refuse_poison BEFORE INSERT ON messages
             FOR EACH ROW EXECUTE FUNCTION refuse_poison();",
    )
    .execute(&pool)
    .await
    .unwrap();

    let owner = app.register("batch_owner").await;
    let Server {
        id: server, text, ..
    } = app.server(&owner, "batch").await;
    let mut users = vec![owner.clone()];
    for i in 0..7 {
        let u = app.register(&format!("batch_user{i}")).await;
        app.join(&owner, &u, &server).await;
        users.push(u);
    }
    let path = format!("/channels/{text}/messages");
    let before = retries(&app).await;
    // Rounds of concurrent sends until one batch mixed a poison row with good ones (the
    // writer batches whatever is queued, so concurrency makes it happen within a few rounds).
    let mut good_sent = Vec::new();
    for round in 0..20 {
        let mut sends = Vec::new();
        for (i, u) in users.iter().enumerate() {
            for k in 0..4 {
                let content = if i == 0 && k == 0 {
                    format!("poison {round}")
                } else {
                    format!("good {round} {i} {k}")
                };
                let nonce = format!("n{round}-{i}-{k}");
                let app = &app;
                let path = &path;
                let token = u.token.clone();
                sends.push(async move {
                    let r = app
                        .post(path, &token, json!({"content": content, "nonce": nonce}))
                        .await;
                    (content, r)
                });
            }
        }
        for (content, (s, b)) in futures_util::future::join_all(sends).await {
            if content.starts_with("poison") {
                assert_eq!(s, 500, "the refused row fails: {b}");
            } else {
                assert_eq!(s, 201, "{content} was sent beside a refused row: {b}");
                good_sent.push(content);
            }
        }
        if retries(&app).await > before && round >= 2 {
            break;
        }
    }
    assert!(
        retries(&app).await > before,
        "no batch mixed a refused row with others; the test did not exercise the retry"
    );
    // Every acknowledged message is stored exactly once; no poison row is.
    let rows: Vec<(String,)> = sqlx::query_as("SELECT content FROM messages")
        .fetch_all(&pool)
        .await
        .unwrap();
    let mut stored: Vec<String> = rows.into_iter().map(|r| r.0).collect();
    stored.sort();
    good_sent.sort();
    assert_eq!(stored, good_sent);
}

async fn retries(app: &TestApp) -> f64 {
    app.metrics()
        .await
        .lines()
        .find(|l| l.starts_with("confab_message_write_batch_retries_total"))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test]
async fn heartbeats_do_not_extend_the_identify_deadline() {
    let app = TestApp::spawn().await;
    let mut gw = app.gateway().await;
    let started = Instant::now();
    // Heartbeat every second; the server answers but closes at its 10 s deadline anyway.
    let closed = loop {
        gw.send(json!({"op": 1, "d": null})).await;
        match gw.next_within(Duration::from_secs(1)).await {
            Some(v) => assert_eq!(v["op"], 11, "only heartbeat ACKs before IDENTIFY: {v}"),
            None if started.elapsed() > Duration::from_secs(9) => break gw.closed().await,
            None => {}
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "connection still open after 20 s of heartbeats without IDENTIFY"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let elapsed = started.elapsed();
    assert!(
        matches!(closed, Closed::Code(4003) | Closed::Dropped),
        "{closed:?}"
    );
    assert!(
        elapsed >= Duration::from_secs(9) && elapsed < Duration::from_secs(13),
        "closed after {elapsed:?}"
    );
}

#[tokio::test]
async fn unauthenticated_connections_are_limited_per_address() {
    let app = TestApp::spawn().await;
    let limit = confab_signaling::gateway::PENDING_PER_IP as usize;
    let mut held = Vec::new();
    for _ in 0..limit {
        held.push(app.gateway().await);
    }
    let url = format!("ws://{}/api/v1/gateway", app.addr);
    match tokio_tungstenite::connect_async(&url).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            assert_eq!(resp.status().as_u16(), 429);
            assert!(resp.headers().contains_key("retry-after"));
        }
        other => panic!("connection {} was accepted: {:?}", limit + 1, other.is_ok()),
    }
    // An identified connection frees its slot for the next one.
    let user = app.register("pending_user").await;
    let mut first = held.remove(0);
    first
        .send(json!({"op": 2, "d": {"token": user.token}}))
        .await;
    first.expect(Event::Ready).await;
    let mut again = app.gateway().await;
    again.send(json!({"op": 1, "d": null})).await;
    assert_eq!(again.next().await.unwrap()["op"], 11);
}

#[tokio::test]
async fn a_text_frame_that_is_not_utf8_is_closed_with_1007() {
    let app = TestApp::spawn().await;
    let user = app.register("utf8_user").await;
    let (mut gw, _) = app.identified(&user).await;
    let frame = Frame::message(vec![b'{', 0xff, 0xfe, b'}'], OpCode::Data(Data::Text), true);
    gw.ws.send(Message::Frame(frame)).await.unwrap();
    assert_eq!(gw.closed().await, Closed::Code(1007));
}

/// A write whose target is deleted between the handler's check and the write (a member
/// kicked while being given a role, a message deleted while being reacted to) answers 404,
/// never 500. The concurrent delete is staged with triggers that remove the referenced row
/// just before the insert, in the insert's own statement.
#[tokio::test]
async fn a_target_deleted_during_a_write_is_a_404_not_a_500() {
    let app = TestApp::spawn_with(|c| c.rate_limit_scale = 100.0).await;
    let pool = app.running.as_ref().unwrap().state.chat.pool().clone();
    sqlx::raw_sql(
        "CREATE FUNCTION vanish_member() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
             DELETE FROM members WHERE server_id = NEW.server_id AND user_id = NEW.user_id;
             RETURN NEW;
         END $$;
         CREATE TRIGGER vanish_member BEFORE INSERT ON member_roles
             FOR EACH ROW EXECUTE FUNCTION vanish_member();
         CREATE FUNCTION vanish_message() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
             DELETE FROM messages WHERE id = NEW.message_id;
             RETURN NEW;
         END $$;
         CREATE TRIGGER vanish_message BEFORE INSERT ON reactions
             FOR EACH ROW EXECUTE FUNCTION vanish_message();",
    )
    .execute(&pool)
    .await
    .unwrap();

    let owner = app.register("race_owner").await;
    let member = app.register("race_member").await;
    let Server {
        id: server, text, ..
    } = app.server(&owner, "race").await;
    app.join(&owner, &member, &server).await;
    let (s, role) = app
        .post(
            &format!("/servers/{server}/roles"),
            &owner.token,
            json!({"name": "r"}),
        )
        .await;
    assert_eq!(s, 201, "{role}");
    let role = role["id"].as_str().unwrap();

    let (s, body) = app
        .request(
            reqwest::Method::PUT,
            &format!("/servers/{server}/members/{}/roles/{role}", member.id),
            Some(&owner.token),
            None,
        )
        .await;
    assert_eq!(s, 404, "a member kicked meanwhile: {body}");
    assert!(
        body["message"].as_str().unwrap().starts_with("unknown"),
        "{body}"
    );

    let (s, msg) = app
        .post(
            &format!("/channels/{text}/messages"),
            &owner.token,
            json!({"content": "hi"}),
        )
        .await;
    assert_eq!(s, 201, "{msg}");
    let (s, body) = app
        .request(
            reqwest::Method::PUT,
            &format!(
                "/channels/{text}/messages/{}/reactions/%F0%9F%91%8D",
                msg["id"].as_str().unwrap()
            ),
            Some(&owner.token),
            None,
        )
        .await;
    assert_eq!(s, 404, "a message deleted meanwhile: {body}");
}

/// A body must be a JSON object: serde would read a struct from an array of its fields
/// (`[]` as "change nothing", `["hi"]` as a message), which no client means.
#[tokio::test]
async fn bodies_that_are_not_json_objects_are_refused() {
    let app = TestApp::spawn().await;
    let owner = app.register("array_owner").await;
    let Server { text, .. } = app.server(&owner, "arrays").await;
    let (s, body) = app.patch("/users/@me", &owner.token, json!([])).await;
    assert_eq!(s, 400, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("JSON object"),
        "{body}"
    );
    let (s, body) = app
        .post(
            &format!("/channels/{text}/messages"),
            &owner.token,
            json!(["hi"]),
        )
        .await;
    assert_eq!(s, 400, "{body}");
    let (s, body) = app
        .post(
            &format!("/channels/{text}/messages"),
            &owner.token,
            json!("hi"),
        )
        .await;
    assert_eq!(s, 400, "{body}");
    // An object still works.
    let (s, body) = app
        .post(
            &format!("/channels/{text}/messages"),
            &owner.token,
            json!({"content": "hi"}),
        )
        .await;
    assert_eq!(s, 201, "{body}");
}
