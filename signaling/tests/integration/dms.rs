//! What a user's inbox shows: DMs and group DMs (opening, messaging like a text channel,
//! events to the parties only, blocks, group membership), read states with unread and mention
//! counts, and moderators' bulk delete.

use crate::common::{Event, Overwrite, Server, TestApp, User};
use reqwest::Method;
use serde_json::{json, Value};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dm_behaves_like_a_text_channel_for_its_two_parties_only() {
    let app = TestApp::spawn().await;
    let a = app.register("dm_amy").await;
    let b = app.register("dm_bob").await;
    let c = app.register("dm_cat").await;
    let (mut gb, _) = app.identified(&b).await;
    let (mut gc, _) = app.identified(&c).await;

    // A opens the DM: created once, the same channel whoever opens it again.
    let (s, dm) = app
        .post(
            "/users/@me/channels",
            &a.token,
            json!({"recipient_id": b.id}),
        )
        .await;
    assert_eq!(s, 201, "{dm}");
    assert_eq!(dm["type"], "dm");
    assert!(dm["server_id"].is_null());
    let dm_id = dm["id"].as_str().unwrap().to_string();
    let mut people: Vec<&str> = dm["recipients"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["id"].as_str().unwrap())
        .collect();
    people.sort();
    let mut want = vec![a.id.as_str(), b.id.as_str()];
    want.sort();
    assert_eq!(people, want);
    let created = gb.expect(Event::ChannelCreate).await;
    assert_eq!(created["id"], dm_id.as_str());
    let (s, again) = app
        .post(
            "/users/@me/channels",
            &b.token,
            json!({"recipient_id": a.id}),
        )
        .await;
    assert_eq!((s, again["id"].as_str().unwrap()), (200, dm_id.as_str()));
    let (_, list) = app.get("/users/@me/channels", &b.token).await;
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["id"], dm_id.as_str());

    // Messages, edits, typing and reactions reach B; C sees nothing and cannot get in.
    let m = app.message(&a, &dm_id, "hi bob").await;
    assert!(m["server_id"].is_null());
    let mid = m["id"].as_str().unwrap().to_string();
    assert_eq!(gb.expect(Event::MessageCreate).await["content"], "hi bob");
    let (s, _) = app
        .patch(
            &format!("/channels/{dm_id}/messages/{mid}"),
            &a.token,
            json!({"content": "hi bob!"}),
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(gb.expect(Event::MessageUpdate).await["content"], "hi bob!");
    let (s, _) = app
        .post_empty(&format!("/channels/{dm_id}/typing"), &a.token)
        .await;
    assert_eq!(s, 204);
    assert_eq!(
        gb.expect(Event::TypingStart).await["user_id"],
        a.id.as_str()
    );
    let (s, _) = app
        .put(
            &format!("/channels/{dm_id}/messages/{mid}/reactions/%F0%9F%91%8B"),
            &b.token,
        )
        .await;
    assert_eq!(s, 204);
    let (s, hist) = app
        .get(&format!("/channels/{dm_id}/messages"), &b.token)
        .await;
    assert_eq!(s, 200);
    assert_eq!(hist[0]["content"], "hi bob!");
    // A mention of the other recipient resolves (the exact path).
    let m2 = app.message(&b, &dm_id, &format!("<@{}> yo", a.id)).await;
    assert_eq!(m2["mentions"], json!([a.id]));
    // B may not delete A's message (no moderators in DMs); A may.
    let (s, _) = app
        .delete(&format!("/channels/{dm_id}/messages/{mid}"), &b.token)
        .await;
    assert_eq!(s, 403);
    for (method, path, body) in [
        (Method::GET, format!("/channels/{dm_id}"), None),
        (Method::GET, format!("/channels/{dm_id}/messages"), None),
        (
            Method::POST,
            format!("/channels/{dm_id}/messages"),
            Some(json!({"content": "let me in"})),
        ),
        (Method::POST, format!("/channels/{dm_id}/typing"), None),
        (
            Method::GET,
            format!("/channels/{dm_id}/messages/{mid}"),
            None,
        ),
    ] {
        let (s, _) = app.request(method, &path, Some(&c.token), body).await;
        assert_eq!(s, 404, "stranger on {path}");
    }
    // A stranger gets no DM event.
    gc.expect_silence(Duration::from_millis(300)).await;

    // READY lists the DM for both parties, with its newest message.
    let (_, ready) = app.identified(&a).await;
    let private = ready["private_channels"].as_array().unwrap();
    assert_eq!(private.len(), 1);
    assert_eq!(private[0]["id"], dm_id.as_str());
    assert_eq!(private[0]["last_message_id"], m2["id"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocked_users_cannot_open_or_write_a_dm() {
    let app = TestApp::spawn().await;
    let a = app.register("bl_amy").await;
    let b = app.register("bl_bob").await;
    let dm_id = app.dm(&a, &b).await;
    let send = |who| app.try_message(who, &dm_id, "hello?");
    assert_eq!(send(&a).await.0, 201);

    // B blocks A: A can neither write (fast or exact path) nor reopen; nor can B write to A.
    let (s, _) = app
        .put_json(
            &format!("/users/@me/relationships/{}", a.id),
            &b.token,
            json!({"type": "blocked"}),
        )
        .await;
    assert_eq!(s, 204);
    let (s, body) = send(&a).await;
    assert_eq!((s, body["code"].as_u64()), (403, Some(50007)), "{body}");
    let (s, body) = app
        .try_message(&a, &dm_id, &format!("<@{}> please", b.id))
        .await;
    assert_eq!((s, body["code"].as_u64()), (403, Some(50007)));
    let (s, _) = send(&b).await;
    assert_eq!(s, 403);
    let (s, body) = app
        .post(
            "/users/@me/channels",
            &a.token,
            json!({"recipient_id": b.id}),
        )
        .await;
    assert_eq!((s, body["code"].as_u64()), (403, Some(50007)));
    let (s, body) = app
        .post(
            "/users/@me/channels",
            &a.token,
            json!({"recipient_ids": [b.id]}),
        )
        .await;
    assert_eq!((s, body["code"].as_u64()), (403, Some(50007)));

    // Unblocked: writing works again.
    let (s, _) = app
        .delete(&format!("/users/@me/relationships/{}", a.id), &b.token)
        .await;
    assert_eq!(s, 204);
    assert_eq!(send(&a).await.0, 201);
    // Bad input: both or neither field, yourself, unknown users.
    for body in [
        json!({}),
        json!({"recipient_id": b.id, "recipient_ids": [b.id]}),
        json!({"recipient_id": a.id}),
    ] {
        let (s, _) = app.post("/users/@me/channels", &a.token, body).await;
        assert_eq!(s, 400);
    }
    let (s, _) = app
        .post(
            "/users/@me/channels",
            &a.token,
            json!({"recipient_id": "123456"}),
        )
        .await;
    assert_eq!(s, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_dm_membership_and_events() {
    let app = TestApp::spawn().await;
    let mut users = Vec::new();
    for i in 0..11 {
        users.push(app.register(&format!("grp_{i}")).await);
    }
    let (owner, b, c, d) = (&users[0], &users[1], &users[2], &users[3]);
    let (mut gc, _) = app.identified(c).await;
    let (mut gd, _) = app.identified(d).await;

    // Eleven people is one too many.
    let all: Vec<&str> = users[1..].iter().map(|u| u.id.as_str()).collect();
    let (s, _) = app
        .post(
            "/users/@me/channels",
            &owner.token,
            json!({"recipient_ids": all}),
        )
        .await;
    assert_eq!(s, 400);

    let (s, g) = app
        .post(
            "/users/@me/channels",
            &owner.token,
            json!({"recipient_ids": [b.id, c.id], "name": "trio"}),
        )
        .await;
    assert_eq!(s, 201, "{g}");
    assert_eq!(
        (g["type"].as_str(), g["name"].as_str()),
        (Some("group_dm"), Some("trio"))
    );
    assert_eq!(g["owner_id"], owner.id.as_str());
    let gid = g["id"].as_str().unwrap().to_string();
    assert_eq!(gc.expect(Event::ChannelCreate).await["id"], gid.as_str());

    // Only the owner adds people; D then gets the channel and its messages.
    let add = |who: &User, whom: &User| {
        let path = format!("/channels/{gid}/recipients/{}", whom.id);
        let token = who.token.clone();
        let app = &app;
        async move { app.put(&path, &token).await.0 }
    };
    assert_eq!(add(b, d).await, 403);
    gd.expect_silence(Duration::from_millis(200)).await;
    assert_eq!(add(owner, d).await, 204);
    assert_eq!(gd.expect(Event::ChannelCreate).await["id"], gid.as_str());
    assert_eq!(
        gc.expect(Event::ChannelRecipientAdd).await["user"]["id"],
        d.id.as_str()
    );
    app.message(b, &gid, "welcome d").await;
    assert_eq!(
        gd.expect(Event::MessageCreate).await["content"],
        "welcome d"
    );

    // B cannot remove C; C leaves by itself and then sees nothing more.
    let (s, _) = app
        .delete(&format!("/channels/{gid}/recipients/{}", c.id), &b.token)
        .await;
    assert_eq!(s, 403);
    let (s, _) = app
        .delete(&format!("/channels/{gid}/recipients/{}", c.id), &c.token)
        .await;
    assert_eq!(s, 204);
    assert_eq!(gc.expect(Event::ChannelDelete).await["id"], gid.as_str());
    let (s, _) = app
        .get(&format!("/channels/{gid}/messages"), &c.token)
        .await;
    assert_eq!(s, 404);
    app.message(b, &gid, "c is gone").await;
    assert_eq!(
        gd.expect(Event::MessageCreate).await["content"],
        "c is gone"
    );
    gc.expect_silence(Duration::from_millis(300)).await;

    // The owner leaves: the longest-standing recipient owns it now and may add people.
    let (s, _) = app
        .delete(
            &format!("/channels/{gid}/recipients/{}", owner.id),
            &owner.token,
        )
        .await;
    assert_eq!(s, 204);
    let (_, g) = app.get(&format!("/channels/{gid}"), &b.token).await;
    assert_eq!(g["owner_id"], b.id.as_str());
    assert_eq!(add(b, &users[4]).await, 204);
    // A 1:1 DM has no recipients to manage.
    let dm = app.dm(b, d).await;
    let (s, _) = app
        .put(&format!("/channels/{dm}/recipients/{}", c.id), &b.token)
        .await;
    assert_eq!(s, 400);
}

/// A server where `reader` holds a role, for read-state tests.
struct Reads {
    app: TestApp,
    owner: User,
    reader: User,
    sid: String,
    text: String,
    role_id: String,
}

async fn reads() -> Reads {
    let app = TestApp::spawn_with(|c| c.rate_limit_scale = 100.0).await;
    let owner = app.register("rs_owner").await;
    let reader = app.register("rs_reader").await;
    let Server { id: sid, text, .. } = app.server(&owner, "Reads").await;
    app.join(&owner, &reader, &sid).await;
    let role_id = app.role(&owner, &sid, "readers", 0).await;
    app.give_role(&owner, &sid, &reader, &role_id).await;
    Reads {
        app,
        owner,
        reader,
        sid,
        text,
        role_id,
    }
}

impl Reads {
    /// `reader` acks `message_id` in `channel`: the status and the read state.
    async fn ack(&self, channel: &str, message_id: &str) -> (u16, Value) {
        self.app
            .post(
                &format!("/channels/{channel}/messages/{message_id}/ack"),
                &self.reader.token,
                json!(null),
            )
            .await
    }

    /// The reader acks a plain message; then come a direct mention, a role mention, @everyone
    /// (the owner may) and plain text. Returns the acked message's id and the newest's.
    async fn three_mentions_after_an_ack(&self) -> (String, String) {
        let send = |content: String| async move {
            let m = self.app.message(&self.owner, &self.text, &content).await;
            m["id"].as_str().unwrap().to_string()
        };
        let first = send("plain".into()).await;
        let (s, ack) = self.ack(&self.text, &first).await;
        assert_eq!(s, 200, "{ack}");
        assert_eq!(
            (
                ack["last_message_id"].as_str(),
                ack["mention_count"].as_i64()
            ),
            (Some(first.as_str()), Some(0))
        );
        send(format!("hey <@{}>", self.reader.id)).await;
        send(format!("<@&{}> meeting", self.role_id)).await;
        send("@everyone lunch".into()).await;
        let last = send("no mention".into()).await;
        (first, last)
    }
}

/// The read state of `channel` in a READY.
fn read_state(ready: &Value, channel: &str) -> Option<Value> {
    ready["read_states"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["channel_id"] == channel)
        .cloned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_states_count_mentions_since_the_last_ack() {
    let r = reads().await;
    let (first, last) = r.three_mentions_after_an_ack().await;
    let (_, ready) = r.app.identified(&r.reader).await;
    let rs = read_state(&ready, &r.text).expect("read state of the text channel");
    assert_eq!(rs["last_message_id"], first.as_str());
    assert_eq!(rs["mention_count"], 3);
    let channel = ready["servers"][0]["channels"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == r.text.as_str())
        .cloned()
        .unwrap();
    assert_eq!(
        channel["last_message_id"],
        last.as_str(),
        "unread: newer than the ack"
    );
}

/// Acking the newest clears the count, and every session of the reader hears about it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ack_clears_mentions_and_reaches_every_session() {
    let r = reads().await;
    let (_, last) = r.three_mentions_after_an_ack().await;
    let (mut g1, _) = r.app.identified(&r.reader).await;
    let (mut g2, _) = r.app.identified(&r.reader).await;
    let (s, ack) = r.ack(&r.text, &last).await;
    assert_eq!((s, ack["mention_count"].as_i64()), (200, Some(0)));
    for g in [&mut g1, &mut g2] {
        let ev = g.expect(Event::MessageAck).await;
        assert_eq!(
            (ev["channel_id"].as_str(), ev["last_message_id"].as_str()),
            (Some(r.text.as_str()), Some(last.as_str()))
        );
    }
    let (_, ready) = r.app.identified(&r.reader).await;
    let rs = read_state(&ready, &r.text).unwrap();
    assert_eq!(rs["mention_count"], 0);
}

/// A hidden channel has no read state in READY; acking in it or a foreign message is 404.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hidden_channel_has_no_read_state_and_takes_no_ack() {
    let r = reads().await;
    let (app, owner, reader, sid) = (&r.app, &r.owner, &r.reader, &r.sid);
    let secret = app.channel(owner, sid, "text", "secret").await;
    let hidden_msg = app
        .message(owner, &secret, &format!("<@{}> psst", reader.id))
        .await;
    let hidden_msg = hidden_msg["id"].as_str().unwrap().to_string();
    app.overwrite(owner, &secret, Overwrite::Member(&reader.id), 0, 1 << 10)
        .await;
    let (_, ready) = app.identified(reader).await;
    assert!(read_state(&ready, &secret).is_none());
    // Nor does its activity show: a channel one may not view is not listed at all.
    assert!(
        ready["servers"][0]["channels"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["id"] != secret.as_str()),
        "hidden channel in READY"
    );
    let (_, listed) = app
        .get(&format!("/servers/{sid}/channels"), &reader.token)
        .await;
    assert!(
        listed
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["id"] != secret.as_str()),
        "hidden channel listed: {listed}"
    );
    assert_eq!(r.ack(&secret, &hidden_msg).await.0, 404);
    assert_eq!(
        r.ack(&r.text, &hidden_msg).await.0,
        404,
        "a message of another channel"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dms_have_read_states_too() {
    let r = reads().await;
    let dm_id = r.app.dm(&r.owner, &r.reader).await;
    r.app
        .message(&r.owner, &dm_id, &format!("<@{}> hi", r.reader.id))
        .await;
    let (_, ready) = r.app.identified(&r.reader).await;
    let rs = read_state(&ready, &dm_id).expect("DM read state");
    assert!(rs["last_message_id"].is_null());
    assert_eq!(rs["mention_count"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_delete_removes_history_logs_and_tells_viewers() {
    let app = TestApp::spawn_with(|c| c.rate_limit_scale = 100.0).await;
    let owner = app.register("bd_owner").await;
    let member = app.register("bd_member").await;
    let Server { id: sid, text, .. } = app.server(&owner, "Bulk").await;
    app.join(&owner, &member, &sid).await;
    let other = app.channel(&owner, &sid, "text", "other").await;
    let mut ids = Vec::new();
    for i in 0..5 {
        let m = app.message(&member, &text, &format!("spam {i}")).await;
        ids.push(m["id"].as_str().unwrap().to_string());
    }
    let foreign = app.message(&member, &other, "elsewhere").await;
    let foreign = foreign["id"].as_str().unwrap().to_string();
    let (mut gm, _) = app.identified(&member).await;
    let path = format!("/channels/{text}/messages/bulk-delete");

    // Without MANAGE_MESSAGES: 403; bad sizes and repeats: 400.
    let (s, _) = app
        .post(&path, &member.token, json!({"messages": [ids[0], ids[1]]}))
        .await;
    assert_eq!(s, 403);
    for bad in [
        json!({"messages": [ids[0]]}),
        json!({"messages": [ids[0], ids[0]]}),
        json!({"messages": (0..101).map(|i| i.to_string()).collect::<Vec<_>>()}),
    ] {
        let (s, _) = app.post(&path, &owner.token, bad).await;
        assert_eq!(s, 400);
    }
    // Three of this channel and one of another: only the three go.
    let (s, body) = app
        .post(
            &path,
            &owner.token,
            json!({"messages": [ids[0], ids[1], ids[2], foreign]}),
        )
        .await;
    assert_eq!(s, 204, "{body}");
    let ev = gm.expect(Event::MessageDeleteBulk).await;
    let mut got: Vec<&str> = ev["ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    got.sort();
    let mut want = vec![ids[0].as_str(), ids[1].as_str(), ids[2].as_str()];
    want.sort();
    assert_eq!(got, want);
    assert_eq!(ev["channel_id"], text.as_str());
    let (_, hist) = app
        .get(&format!("/channels/{text}/messages"), &member.token)
        .await;
    let left: Vec<&str> = hist
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["content"].as_str().unwrap().starts_with("spam"))
        .map(|m| m["content"].as_str().unwrap())
        .collect();
    assert_eq!(left, vec!["spam 4", "spam 3"]);
    let (s, _) = app
        .get(
            &format!("/channels/{other}/messages/{foreign}"),
            &member.token,
        )
        .await;
    assert_eq!(s, 200, "the other channel's message stays");
    let (_, log) = app
        .get(
            &format!("/servers/{sid}/audit-log?action=message_bulk_delete"),
            &owner.token,
        )
        .await;
    assert_eq!(log.as_array().unwrap().len(), 1, "{log}");
    assert_eq!(log[0]["target_id"], text.as_str());
    assert_eq!(log[0]["changes"]["count"], 3);
}
