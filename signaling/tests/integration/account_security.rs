//! How login sessions end, and what ending them does where users feel it: refresh-token reuse,
//! forged tokens against the session cache, password change and account deletion — over HTTP,
//! on the gateway and in the database.

use crate::common;
use crate::common::{Closed, Event, Server, TestApp, User};
use confab_chat::{SessionId, UserId};
use reqwest::Method;
use serde_json::{json, Value};

const PASSWORD: &str = "correct horse battery";

/// An app whose auth rate limit leaves room for the logins these tests make.
async fn app() -> TestApp {
    TestApp::spawn_with(|c| c.rate_limit_scale = 10.0).await
}

/// Logs `username` in once more (a new session, i.e. a new refresh-token family).
async fn login(app: &TestApp, username: &str, password: &str) -> (u16, Value) {
    app.request(
        Method::POST,
        "/auth/login",
        None,
        Some(json!({"username": username, "password": password})),
    )
    .await
}

async fn second_session(app: &TestApp, user: &User, username: &str) -> User {
    let (s, body) = login(app, username, PASSWORD).await;
    assert_eq!(s, 200, "{body}");
    User {
        id: user.id.clone(),
        token: body["token"].as_str().unwrap().to_string(),
        refresh: body["refresh_token"].as_str().unwrap().to_string(),
    }
}

async fn delete_account(app: &TestApp, user: &User, body: Value) -> (u16, Value) {
    app.request(Method::DELETE, "/users/@me", Some(&user.token), Some(body))
        .await
}

async fn refresh(app: &TestApp, refresh_token: &str) -> (u16, Value) {
    app.request(
        Method::POST,
        "/auth/refresh",
        None,
        Some(json!({"refresh_token": refresh_token})),
    )
    .await
}

/// The `sid` claim of an access token, read without verifying it.
fn session_of(token: &str) -> SessionId {
    use base64::Engine;
    let payload = token.split('.').nth(1).unwrap();
    let claims: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap();
    claims["sid"].as_str().unwrap().parse().unwrap()
}

fn id(s: &str) -> UserId {
    s.parse().unwrap()
}

async fn active_sessions_in_db(app: &TestApp, user: &User) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM auth_sessions WHERE user_id = $1 AND revoked_at IS NULL",
    )
    .bind(id(&user.id))
    .fetch_one(app.running.as_ref().unwrap().state.chat.pool())
    .await
    .unwrap()
}

/// Proves a gateway connection is alive: a heartbeat is acknowledged.
async fn assert_alive(g: &mut common::Gateway) {
    g.send(json!({"op": 1, "d": {"seq": g.last_seq}})).await;
    loop {
        let v = g.next().await.expect("connection still open");
        if v["op"] == 11 {
            return;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_token_reuse_closes_the_family_gateway_connections_for_good() {
    let app = app().await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let Server {
        id: server_id,
        text: channel_id,
        ..
    } = app.server(&bob, "den").await;
    app.join(&bob, &alice, &server_id).await;
    // Another login of Alice's: another family, which must survive.
    let other = second_session(&app, &alice, "alice").await;

    // Two connections of the same family (say, two tabs), and one of the other.
    let (mut g1, ready) = app.identified(&alice).await;
    let gateway_session = ready["session_id"].as_str().unwrap().to_string();
    let (mut g1b, _) = app.identified(&alice).await;
    let (mut g2, _) = app.identified(&other).await;

    // The legitimate client rotates; someone replays the old refresh token.
    let (s, rotated) = refresh(&app, &alice.refresh).await;
    assert_eq!(s, 200, "{rotated}");
    let rotated_token = rotated["token"].as_str().unwrap().to_string();
    let (s, body) = refresh(&app, &alice.refresh).await;
    assert_eq!(s, 401, "{body}");

    // Every connection of the family is closed with 4004 at once.
    assert_eq!(g1.closed().await, Closed::Code(4004));
    assert_eq!(g1b.closed().await, Closed::Code(4004));
    // Its tokens, including the newest, no longer work.
    assert_eq!(app.get("/users/@me", &alice.token).await.0, 401);
    assert_eq!(app.get("/users/@me", &rotated_token).await.0, 401);
    let (s, _) = refresh(&app, rotated["refresh_token"].as_str().unwrap()).await;
    assert_eq!(s, 401);

    // The other family is untouched and still receives events.
    assert_eq!(app.get("/users/@me", &other.token).await.0, 200);
    app.message(&bob, &channel_id, "still there?").await;
    let m = g2.expect(Event::MessageCreate).await;
    assert_eq!(m["content"], "still there?");

    // The ended gateway session cannot be resumed: not with the family's token...
    let mut g3 = app.gateway().await;
    g3.send(
        json!({"op": 6, "d": {"token": rotated_token, "session_id": gateway_session, "seq": 1}}),
    )
    .await;
    assert_eq!(g3.closed().await, Closed::Code(4004));
    // ...nor with a live token of the same user.
    let mut g4 = app.gateway().await;
    g4.send(json!({"op": 6, "d": {"token": other.token, "session_id": gateway_session, "seq": 1}}))
        .await;
    let v = g4.next().await.expect("an answer to RESUME");
    assert_eq!(v["op"], 9, "INVALID_SESSION, not RESUMED: {v}");
    assert_eq!(v["d"]["resumable"], false);
    // A new IDENTIFY with the family's token is refused too.
    let mut g5 = app.gateway().await;
    g5.send(json!({"op": 2, "d": {"token": alice.token}})).await;
    assert_eq!(g5.closed().await, Closed::Code(4004));
    assert_alive(&mut g2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logging_out_another_device_closes_its_connections_only() {
    let app = app().await;
    let alice = app.register("alice").await;
    let phone = second_session(&app, &alice, "alice").await;
    let (mut g_here, _) = app.identified(&alice).await;
    let (mut g_phone, _) = app.identified(&phone).await;
    let (s, _) = app
        .delete(
            &format!("/users/@me/sessions/{}", session_of(&phone.token)),
            &alice.token,
        )
        .await;
    assert_eq!(s, 204);
    assert_eq!(g_phone.closed().await, Closed::Code(4004));
    assert_eq!(app.get("/users/@me", &phone.token).await.0, 401);
    assert_alive(&mut g_here).await;
    assert_eq!(active_sessions_in_db(&app, &alice).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_naming_another_users_session_is_refused_cached_or_not() {
    let app = app().await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let state = &app.running.as_ref().unwrap().state;
    let alice_session = session_of(&alice.token);
    // Validly signed with the server's key: Bob's user id, Alice's live session id.
    let forged = state.tokens.mint(id(&bob.id), alice_session).unwrap();

    // Not cached yet (Alice has made no request).
    let (s, body) = app.get("/users/@me", &forged).await;
    assert_eq!(s, 401, "{body}");
    let mut g = app.gateway().await;
    g.send(json!({"op": 2, "d": {"token": forged}})).await;
    assert_eq!(g.closed().await, Closed::Code(4004));

    // Cached: Alice's own requests confirm her session is active.
    assert_eq!(app.get("/users/@me", &alice.token).await.0, 200);
    let (s, body) = app.get("/users/@me", &forged).await;
    assert_eq!(s, 401, "a cached session is bound to its user: {body}");
    let (s, _) = app
        .post("/servers", &forged, json!({"name": "not bob's"}))
        .await;
    assert_eq!(s, 401);
    let mut g = app.gateway().await;
    g.send(json!({"op": 2, "d": {"token": forged}})).await;
    assert_eq!(g.closed().await, Closed::Code(4004));

    // Nobody's real sessions were disturbed, and nothing was created as Bob.
    let (s, me) = app.get("/users/@me", &alice.token).await;
    assert_eq!((s, me["username"].as_str()), (200, Some("alice")));
    let (s, servers) = app.get("/servers", &bob.token).await;
    assert_eq!((s, servers), (200, json!([])));
    assert_eq!(app.get("/users/@me", &bob.token).await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_change_ends_every_other_session_and_keeps_the_callers() {
    let app = app().await;
    let alice = app.register("alice").await;
    let phone = second_session(&app, &alice, "alice").await;
    let (mut g_here, _) = app.identified(&alice).await;
    let (mut g_phone, _) = app.identified(&phone).await;
    assert_eq!(active_sessions_in_db(&app, &alice).await, 2);

    // Bad requests change nothing and name the field.
    let new = "a brand new horse battery";
    for (body, field) in [
        (json!({"new_password": new}), "password"),
        (json!({"password": PASSWORD}), "new_password"),
        (
            json!({"password": "not my password", "new_password": new}),
            "password",
        ),
        (
            json!({"password": PASSWORD, "new_password": "short"}),
            "new_password",
        ),
        (
            json!({"password": PASSWORD, "new_password": "password123"}),
            "new_password",
        ),
        (
            json!({"password": PASSWORD, "new_password": "alice"}),
            "new_password",
        ),
        (json!({"password": 5, "new_password": new}), ""),
    ] {
        let (s, r) = app.patch("/users/@me", &alice.token, body.clone()).await;
        assert_eq!(s, 400, "{body} -> {r}");
        if !field.is_empty() {
            assert!(r["errors"][field].is_array(), "{body} -> {r}");
        }
    }
    assert_eq!(app.get("/users/@me", &phone.token).await.0, 200);
    assert_eq!(active_sessions_in_db(&app, &alice).await, 2);

    let (s, me) = app
        .patch(
            "/users/@me",
            &alice.token,
            json!({"password": PASSWORD, "new_password": new}),
        )
        .await;
    assert_eq!(s, 200, "{me}");
    assert_eq!(me["username"], "alice");
    assert!(me.get("password").is_none() && me.get("password_hash").is_none());

    // The other session is over: its connection, access and refresh tokens.
    assert_eq!(g_phone.closed().await, Closed::Code(4004));
    assert_eq!(app.get("/users/@me", &phone.token).await.0, 401);
    assert_eq!(refresh(&app, &phone.refresh).await.0, 401);
    // The caller's is not.
    assert_eq!(app.get("/users/@me", &alice.token).await.0, 200);
    assert_alive(&mut g_here).await;
    let (s, r) = refresh(&app, &alice.refresh).await;
    assert_eq!(s, 200, "{r}");
    assert_eq!(active_sessions_in_db(&app, &alice).await, 1);

    // Only the new password logs in.
    assert_eq!(login(&app, "alice", PASSWORD).await.0, 401);
    let (s, r) = login(&app, "alice", new).await;
    assert_eq!(s, 200, "{r}");
}

/// Alice owns a server Bob is in; Bob has written there and in their DM, and is Alice's
/// friend.
struct Den {
    app: TestApp,
    alice: User,
    bob: User,
    server_id: String,
    channel_id: String,
    dm_id: String,
}

async fn den() -> Den {
    let app = app().await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    let Server {
        id: server_id,
        text: channel_id,
        ..
    } = app.server(&alice, "den").await;
    app.join(&alice, &bob, &server_id).await;
    app.message(&bob, &channel_id, "hello from bob").await;
    let dm_id = app.dm(&bob, &alice).await;
    app.message(&bob, &dm_id, "a private hello").await;
    let (s, r) = app
        .post(
            "/users/@me/relationships",
            &bob.token,
            json!({"username": "alice"}),
        )
        .await;
    assert!(s < 300, "{r}");
    let (s, r) = app
        .put_json(
            &format!("/users/@me/relationships/{}", bob.id),
            &alice.token,
            json!({}),
        )
        .await;
    assert!(s < 300, "{r}");
    Den {
        app,
        alice,
        bob,
        server_id,
        channel_id,
        dm_id,
    }
}

impl Den {
    /// Bob deletes his account while he and Alice are connected; returns their gateways.
    async fn bob_deletes_his_account(&self) -> (common::Gateway, common::Gateway) {
        let (g_alice, _) = self.app.identified(&self.alice).await;
        let (g_bob, _) = self.app.identified(&self.bob).await;
        let (s, r) = delete_account(&self.app, &self.bob, json!({"password": PASSWORD})).await;
        assert_eq!(s, 204, "{r}");
        (g_alice, g_bob)
    }

    fn deleted_name(&self) -> String {
        format!("deleted_user_{}", self.bob.id)
    }
}

/// A wrong or missing password is a 400 naming it, and an owner must deal with their servers
/// first; nothing happens.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn account_deletion_needs_the_password_and_no_owned_server() {
    let Den {
        app, alice, bob, ..
    } = den().await;
    let (s, r) = delete_account(&app, &bob, json!({"password": "not my password"})).await;
    assert_eq!(s, 400, "{r}");
    assert!(r["errors"]["password"].is_array(), "{r}");
    assert_eq!(delete_account(&app, &bob, json!({})).await.0, 400);
    assert_eq!(app.get("/users/@me", &bob.token).await.0, 200);
    let (s, r) = delete_account(&app, &alice, json!({"password": PASSWORD})).await;
    assert_eq!(s, 400, "{r}");
    assert_eq!(r["code"], 40011);
    assert!(
        r["message"].as_str().unwrap().contains("own 1 server"),
        "{r}"
    );
    assert_eq!(app.get("/users/@me", &alice.token).await.0, 200);
}

/// Bob's connection closes; his tokens and password are dead; in the database his account is
/// anonymised, not removed, and has no live session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_account_is_signed_out_everywhere_and_anonymised() {
    let d = den().await;
    let (app, bob) = (&d.app, &d.bob);
    let (_g_alice, mut g_bob) = d.bob_deletes_his_account().await;
    assert_eq!(g_bob.closed().await, Closed::Code(4004));
    assert_eq!(app.get("/users/@me", &bob.token).await.0, 401);
    assert_eq!(refresh(app, &bob.refresh).await.0, 401);
    assert_eq!(login(app, "bob", PASSWORD).await.0, 401);
    let deleted_name = d.deleted_name();
    assert_eq!(login(app, &deleted_name, PASSWORD).await.0, 401);

    let pool = app.running.as_ref().unwrap().state.chat.pool();
    let (username, email, deleted): (String, Option<String>, bool) =
        sqlx::query_as("SELECT username, email, deleted_at IS NOT NULL FROM users WHERE id = $1")
            .bind(id(&bob.id))
            .fetch_one(pool)
            .await
            .unwrap();
    assert_eq!(
        (username.as_str(), email, deleted),
        (deleted_name.as_str(), None, true)
    );
    assert_eq!(active_sessions_in_db(app, bob).await, 0);
}

/// Alice sees him leave the server, the friendship go, and his new name; his messages stay,
/// authored by "Deleted User"; the DM stays too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn others_see_a_deleted_account_go_and_its_messages_stay() {
    let d = den().await;
    let (app, alice, bob) = (&d.app, &d.alice, &d.bob);
    let (mut g_alice, _g_bob) = d.bob_deletes_his_account().await;
    let removed = g_alice.expect(Event::MemberRemove).await;
    assert_eq!(removed["server_id"], d.server_id.as_str());
    assert_eq!(removed["user_id"], bob.id.as_str());
    let rel = g_alice.expect(Event::RelationshipRemove).await;
    assert_eq!(rel["id"], bob.id.as_str());
    let update = g_alice.expect(Event::UserUpdate).await;
    assert_eq!(update["id"], bob.id.as_str());
    assert_eq!(update["display_name"], "Deleted User");

    let members = app.member_ids(alice, &d.server_id).await;
    assert!(!members.contains(&bob.id), "{members:?}");
    let (_, rels) = app.get("/users/@me/relationships", &alice.token).await;
    assert_eq!(rels, json!([]));

    let (s, history) = app
        .get(
            &format!("/channels/{}/messages", d.channel_id),
            &alice.token,
        )
        .await;
    assert_eq!(s, 200);
    let msg = history
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["content"] == "hello from bob")
        .expect("the message is kept");
    assert_eq!(msg["author"]["id"], bob.id.as_str());
    assert_eq!(msg["author"]["username"], d.deleted_name().as_str());
    assert_eq!(msg["author"]["display_name"], "Deleted User");
    let (s, dm_history) = app
        .get(&format!("/channels/{}/messages", d.dm_id), &alice.token)
        .await;
    assert_eq!(s, 200);
    assert_eq!(dm_history[0]["content"], "a private hello");
    assert_eq!(dm_history[0]["author"]["display_name"], "Deleted User");
    let (_, dms) = app.get("/users/@me/channels", &alice.token).await;
    assert!(dms
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["id"] == d.dm_id.as_str()));
    assert_alive(&mut g_alice).await;
}

/// Nobody can reach the account anew, or take its reserved name; the old name is free.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_account_cannot_be_reached_and_its_name_is_free() {
    let d = den().await;
    let (app, alice, bob) = (&d.app, &d.alice, &d.bob);
    d.bob_deletes_his_account().await;
    let (s, _) = app
        .post(
            "/users/@me/relationships",
            &alice.token,
            json!({"username": d.deleted_name()}),
        )
        .await;
    assert_eq!(s, 404);
    let (s, _) = app
        .request(
            Method::POST,
            "/auth/register",
            None,
            Some(json!({"username": "deleted_user_1", "password": PASSWORD})),
        )
        .await;
    assert_eq!(s, 400);
    let new_bob = app.register("bob").await;
    assert_ne!(new_bob.id, bob.id);
    let (s, _) = app
        .post(
            "/users/@me/channels",
            &new_bob.token,
            json!({"recipient_id": bob.id}),
        )
        .await;
    assert_eq!(s, 404, "no new DM with a deleted account");
    let (s, group) = app
        .post(
            "/users/@me/channels",
            &alice.token,
            json!({"recipient_ids": [new_bob.id]}),
        )
        .await;
    assert_eq!(s, 201, "{group}");
    let (s, r) = app
        .put(
            &format!(
                "/channels/{}/recipients/{}",
                group["id"].as_str().unwrap(),
                bob.id
            ),
            &alice.token,
        )
        .await;
    assert_eq!(s, 404, "nor into a group DM: {r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guessing_the_current_password_is_rate_limited_per_user() {
    let app = TestApp::spawn().await;
    let alice = app.register("alice").await;
    // Over-long guesses are refused without hashing, so this costs the test nothing.
    let guess = json!({"password": "x".repeat(600), "new_password": "a brand new horse battery"});
    let mut statuses = Vec::new();
    for _ in 0..21 {
        statuses.push(app.patch("/users/@me", &alice.token, guess.clone()).await.0);
    }
    assert!(statuses[..20].iter().all(|s| *s == 400), "{statuses:?}");
    assert_eq!(statuses[20], 429);
    let (s, _) = delete_account(&app, &alice, json!({"password": PASSWORD})).await;
    assert_eq!(s, 429, "deletion verifies the password too");
    // Other requests are not affected.
    assert_eq!(app.get("/users/@me", &alice.token).await.0, 200);
}

#[tokio::test]
async fn the_openapi_document_describes_password_change_and_account_deletion() {
    let app = TestApp::spawn().await;
    let doc: Value = app
        .http
        .get(app.url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let me = &doc["paths"]["/api/v1/users/@me"];
    let delete = &me["delete"];
    assert!(delete["requestBody"].is_object(), "{me}");
    for status in ["204", "400", "401"] {
        assert!(
            delete["responses"][status].is_object(),
            "{status}: {delete}"
        );
    }
    let profile = &doc["components"]["schemas"]["ProfileBody"]["properties"];
    assert!(profile["password"].is_object() && profile["new_password"].is_object());
    let body = &doc["components"]["schemas"]["DeleteAccountBody"];
    assert_eq!(body["required"], json!(["password"]));
}
