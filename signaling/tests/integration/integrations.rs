//! Integrations end to end (docs/bots.md): incoming webhooks (posting, tokens, rate limit,
//! who may manage them), bot accounts (token auth over REST and the gateway, intents, token
//! reset), slash commands and interactions (answer, deferred answer, the deadline).

use crate::common::{Closed, Event, Overwrite, TestApp, User};
use serde_json::{json, Value};
use std::time::Duration;

const MANAGE_WEBHOOKS: i64 = 1 << 29;
const SEND_MESSAGES: i64 = 1 << 11;
const VIEW_CHANNEL: i64 = 1 << 10;

// Intents (docs/gateway.md).
const SERVERS: u64 = 1 << 0;
const MESSAGES: u64 = 1 << 9;
const MESSAGE_CONTENT: u64 = 1 << 15;

async fn post_webhook(app: &TestApp, id: &str, token: &str, body: Value) -> reqwest::Response {
    app.http
        .post(app.url(&format!("/webhooks/{id}/{token}")))
        .json(&body)
        .send()
        .await
        .expect("webhook post")
}

/// `GET /channels/{channel}/messages` as `by`: the contents, newest first.
async fn contents(app: &TestApp, by: &User, channel: &str) -> Vec<Value> {
    let (s, page) = app
        .get(
            &format!("/channels/{channel}/messages?limit=100"),
            &by.token,
        )
        .await;
    assert_eq!(s, 200, "{page}");
    page.as_array().unwrap().clone()
}

/// A bot of `server` made by `owner`: (bot user id, token).
async fn bot(
    app: &TestApp,
    owner: &User,
    server: &str,
    name: &str,
    perms: i64,
) -> (String, String) {
    let (s, b) = app
        .post(
            &format!("/servers/{server}/bots"),
            &owner.token,
            json!({"username": name, "permissions": perms.to_string()}),
        )
        .await;
    assert_eq!(s, 201, "{b}");
    assert_eq!(b["user"]["bot"], true);
    (
        b["user"]["id"].as_str().unwrap().to_string(),
        b["token"].as_str().unwrap().to_string(),
    )
}

/// A request with `Authorization: Bot <token>`.
async fn as_bot(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = app
        .http
        .request(method, app.url(path))
        .header("authorization", format!("Bot {token}"));
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// A bot's gateway session with `intents`.
async fn bot_gateway(app: &TestApp, token: &str, intents: u64) -> crate::common::Gateway {
    let mut g = app.gateway().await;
    g.send(json!({"op": 2, "d": {"token": format!("Bot {token}"), "intents": intents}}))
        .await;
    g.expect(Event::Ready).await;
    g
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_posts_once_under_its_name_and_is_rate_limited() {
    let app = TestApp::spawn().await;
    let owner = app.register("wh_owner").await;
    let member = app.register("wh_member").await;
    let s = app.server(&owner, "Hooks").await;
    app.join(&owner, &member, &s.id).await;
    let (mut g, _) = app.identified(&member).await;

    let (st, hook) = app
        .post(
            &format!("/channels/{}/webhooks", s.text),
            &owner.token,
            json!({"name": "Deploys"}),
        )
        .await;
    assert_eq!(st, 201, "{hook}");
    let id = hook["id"].as_str().unwrap().to_string();
    let token = hook["token"].as_str().unwrap().to_string();
    assert!(token.len() >= 32);

    // The post: no Authorization header, the token in the URL.
    let resp = post_webhook(
        &app,
        &id,
        &token,
        json!({"content": "build 42 is green", "username": "CI"}),
    )
    .await;
    assert_eq!(resp.status().as_u16(), 200);
    let posted: Value = resp.json().await.unwrap();
    assert_eq!(posted["webhook_id"], id.as_str());

    // The other member sees it live, as the webhook, tagged as a bot.
    let m = g.expect(Event::MessageCreate).await;
    assert_eq!(m["content"], "build 42 is green");
    assert_eq!(m["webhook_id"], id.as_str());
    assert_eq!(m["author"]["id"], id.as_str());
    assert_eq!(m["author"]["display_name"], "CI");
    assert_eq!(m["author"]["bot"], true);
    g.expect_none(Event::MessageCreate, Duration::from_millis(300))
        .await;
    // Stored once, and read back the same way.
    let history = contents(&app, &member, &s.text).await;
    let stored: Vec<&Value> = history
        .iter()
        .filter(|m| m["content"] == "build 42 is green")
        .collect();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0]["webhook_id"], id.as_str());
    assert_eq!(stored[0]["author"]["display_name"], "CI");
    // Without a username it shows the webhook's name.
    let resp = post_webhook(&app, &id, &token, json!({"content": "plain"})).await;
    assert_eq!(resp.status().as_u16(), 200);
    let m = g.expect(Event::MessageCreate).await;
    assert_eq!(m["author"]["display_name"], "Deploys");

    // A wrong token, an unknown webhook, bad input.
    let resp = post_webhook(&app, &id, "not-the-token", json!({"content": "x"})).await;
    assert_eq!(resp.status().as_u16(), 401);
    let resp = post_webhook(&app, "123456789", &token, json!({"content": "x"})).await;
    assert_eq!(resp.status().as_u16(), 404);
    let resp = post_webhook(&app, &id, &token, json!({"content": ""})).await;
    assert_eq!(resp.status().as_u16(), 400);
    let err: Value = resp.json().await.unwrap();
    assert!(err["errors"]["content"].is_array(), "{err}");
    let resp = post_webhook(
        &app,
        &id,
        &token,
        json!({"content": "x", "avatar_url": "javascript:alert(1)"}),
    )
    .await;
    assert_eq!(resp.status().as_u16(), 400);

    // Rate limit: five posts per 2 s per webhook (the burst above spent some already).
    let mut limited = None;
    for i in 0..8 {
        let resp = post_webhook(&app, &id, &token, json!({"content": format!("burst {i}")})).await;
        if resp.status().as_u16() == 429 {
            limited = Some(resp);
            break;
        }
        assert_eq!(resp.status().as_u16(), 200);
    }
    let resp = limited.expect("a burst of webhook posts is limited");
    assert!(resp.headers().contains_key("retry-after"));
    assert_eq!(resp.headers()["x-ratelimit-bucket"], "webhooks");

    // Listed without its token; audit-logged; deleting keeps its messages.
    let (st, list) = app
        .get(&format!("/channels/{}/webhooks", s.text), &owner.token)
        .await;
    assert_eq!(st, 200);
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert!(list[0].get("token").is_none(), "{list}");
    let (st, _) = app.delete(&format!("/webhooks/{id}"), &owner.token).await;
    assert_eq!(st, 204);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let resp = post_webhook(&app, &id, &token, json!({"content": "after delete"})).await;
    assert_eq!(resp.status().as_u16(), 404);
    assert!(contents(&app, &member, &s.text)
        .await
        .iter()
        .any(|m| m["content"] == "build 42 is green"));
    let (st, log) = app
        .get(&format!("/servers/{}/audit-log", s.id), &owner.token)
        .await;
    assert_eq!(st, 200);
    let actions: Vec<&str> = log
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert!(actions.contains(&"webhook_create"), "{actions:?}");
    assert!(actions.contains(&"webhook_delete"), "{actions:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_need_manage_webhooks_and_stay_in_their_server() {
    let app = TestApp::spawn().await;
    let owner = app.register("whp_owner").await;
    let member = app.register("whp_member").await;
    let other = app.register("whp_other").await;
    let a = app.server(&owner, "A").await;
    let b = app.server(&other, "B").await;
    app.join(&owner, &member, &a.id).await;
    let path = format!("/channels/{}/webhooks", a.text);

    let (st, hook) = app
        .post(&path, &owner.token, json!({"name": "A hook"}))
        .await;
    assert_eq!(st, 201);
    let id = hook["id"].as_str().unwrap().to_string();
    let token = hook["token"].as_str().unwrap().to_string();

    // A member without the permission: 403 everywhere; a stranger: 404 (no IDOR).
    let (st, err) = app.post(&path, &member.token, json!({"name": "x"})).await;
    assert_eq!(st, 403, "{err}");
    assert_eq!(app.get(&path, &member.token).await.0, 403);
    assert_eq!(
        app.delete(&format!("/webhooks/{id}"), &member.token)
            .await
            .0,
        403
    );
    assert_eq!(
        app.post(&path, &other.token, json!({"name": "x"})).await.0,
        404
    );
    assert_eq!(app.get(&path, &other.token).await.0, 404);
    assert_eq!(
        app.delete(&format!("/webhooks/{id}"), &other.token).await.0,
        404
    );
    // Bad input is a field error.
    let (st, err) = app.post(&path, &owner.token, json!({"name": ""})).await;
    assert_eq!(st, 400);
    assert!(err["errors"]["name"].is_array(), "{err}");
    // Nothing was created by the refused attempts.
    let (_, list) = app.get(&path, &owner.token).await;
    assert_eq!(list.as_array().unwrap().len(), 1);

    // B's webhook cannot post as A's: the id and token must match.
    let (st, hook_b) = app
        .post(
            &format!("/channels/{}/webhooks", b.text),
            &other.token,
            json!({"name": "B hook"}),
        )
        .await;
    assert_eq!(st, 201);
    let token_b = hook_b["token"].as_str().unwrap();
    let resp = post_webhook(&app, &id, token_b, json!({"content": "into A?"})).await;
    assert_eq!(resp.status().as_u16(), 401);
    let resp = post_webhook(
        &app,
        hook_b["id"].as_str().unwrap(),
        token_b,
        json!({"content": "into B"}),
    )
    .await;
    assert_eq!(resp.status().as_u16(), 200);
    assert!(!contents(&app, &owner, &a.text)
        .await
        .iter()
        .any(|m| m["content"] == "into A?" || m["content"] == "into B"));
    assert_eq!(
        post_webhook(&app, &id, &token, json!({"content": "A ok"}))
            .await
            .status()
            .as_u16(),
        200
    );

    // Given MANAGE_WEBHOOKS, the member may.
    let role = app
        .role(&owner, &a.id, "hooks", MANAGE_WEBHOOKS | VIEW_CHANNEL)
        .await;
    app.give_role(&owner, &a.id, &member, &role).await;
    let (st, _) = app
        .post(&path, &member.token, json!({"name": "mine"}))
        .await;
    assert_eq!(st, 201);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bots_use_their_token_and_receive_only_their_intents() {
    let app = TestApp::spawn().await;
    let owner = app.register("bot_owner").await;
    let member = app.register("bot_member").await;
    let s = app.server(&owner, "Bots").await;
    app.join(&owner, &member, &s.id).await;

    // Only MANAGE_SERVER adds bots; nobody gives a bot more than they hold.
    let (st, _) = app
        .post(
            &format!("/servers/{}/bots", s.id),
            &member.token,
            json!({"username": "sneaky"}),
        )
        .await;
    assert_eq!(st, 403);
    let (st, err) = app
        .post(
            &format!("/servers/{}/bots", s.id),
            &owner.token,
            json!({"username": "x"}),
        )
        .await;
    assert_eq!(st, 400, "{err}");

    let (quiet_id, quiet) = bot(
        &app,
        &owner,
        &s.id,
        "quietbot",
        SEND_MESSAGES | VIEW_CHANNEL,
    )
    .await;
    let (reader_id, reader) = bot(&app, &owner, &s.id, "readerbot", VIEW_CHANNEL).await;
    let (full_id, full) = bot(&app, &owner, &s.id, "fullbot", VIEW_CHANNEL).await;
    // A bot is a member with its role, which belongs to it alone while it stays.
    let members = app.member_ids(&owner, &s.id).await;
    assert!(members.contains(&quiet_id));
    let (_, bots) = app
        .get(&format!("/servers/{}/bots", s.id), &owner.token)
        .await;
    let quiet_role = bots
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["user"]["id"] == quiet_id.as_str())
        .unwrap()["role_id"]
        .as_str()
        .unwrap()
        .to_string();
    let (st, err) = app
        .put(
            &format!("/servers/{}/members/{}/roles/{quiet_role}", s.id, member.id),
            &owner.token,
        )
        .await;
    assert_eq!(st, 403, "{err}");
    let (st, _) = app
        .delete(
            &format!("/servers/{}/roles/{quiet_role}", s.id),
            &owner.token,
        )
        .await;
    assert_eq!(st, 403);

    // REST with `Authorization: Bot`.
    let (st, me) = as_bot(&app, reqwest::Method::GET, "/users/@me", &quiet, None).await;
    assert_eq!(st, 200, "{me}");
    assert_eq!(me["id"], quiet_id.as_str());
    assert_eq!(me["bot"], true);
    let (st, _) = as_bot(&app, reqwest::Method::GET, "/users/@me", "1.nope", None).await;
    assert_eq!(st, 401);
    let forged = format!("{reader_id}.{}", quiet.split_once('.').unwrap().1);
    let (st, _) = as_bot(&app, reqwest::Method::GET, "/users/@me", &forged, None).await;
    assert_eq!(st, 401, "a token is bound to its bot");
    // A bot may post with the permissions of its role.
    let (st, _) = as_bot(
        &app,
        reqwest::Method::POST,
        &format!("/channels/{}/messages", s.text),
        &quiet,
        Some(json!({"content": "beep"})),
    )
    .await;
    assert_eq!(st, 201);
    // A bot cannot log in with a password.
    let (st, _) = app
        .request(
            reqwest::Method::POST,
            "/auth/login",
            None,
            Some(json!({"username": "quietbot", "password": "anything at all"})),
        )
        .await;
    assert_eq!(st, 401);

    // Intents: SERVERS only, MESSAGES without content, MESSAGES with content.
    let mut g_quiet = bot_gateway(&app, &quiet, SERVERS).await;
    let mut g_reader = bot_gateway(&app, &reader, MESSAGES).await;
    let mut g_full = bot_gateway(&app, &full, MESSAGES | MESSAGE_CONTENT).await;
    app.message(&member, &s.text, "hello bots").await;
    let m = g_full.expect(Event::MessageCreate).await;
    assert_eq!(m["content"], "hello bots");
    let m = g_reader.expect(Event::MessageCreate).await;
    assert_eq!(m["content"], "", "no MESSAGE_CONTENT intent: no content");
    // A mention gives the content even without the intent.
    app.message(&member, &s.text, &format!("hey <@{reader_id}>"))
        .await;
    let m = g_reader.expect(Event::MessageCreate).await;
    assert_eq!(m["content"], format!("hey <@{reader_id}>"));
    // The quiet bot got neither, but still gets what SERVERS covers.
    g_quiet
        .expect_none(Event::MessageCreate, Duration::from_millis(500))
        .await;
    let (st, _) = app
        .post(
            &format!("/servers/{}/channels", s.id),
            &owner.token,
            json!({"name": "news", "type": "text"}),
        )
        .await;
    assert_eq!(st, 201);
    g_quiet.expect(Event::ChannelCreate).await;

    // Resetting the token ends the old one at once, gateway included.
    let (st, reset) = app
        .post_empty(
            &format!("/servers/{}/bots/{quiet_id}/reset-token", s.id),
            &owner.token,
        )
        .await;
    assert_eq!(st, 200, "{reset}");
    let new_token = reset["token"].as_str().unwrap();
    assert_ne!(new_token, quiet);
    assert_eq!(g_quiet.closed().await, Closed::Code(4004));
    // Intents this server does not know close the connection with 4013 before anything else.
    let mut g = app.gateway().await;
    g.send(
        json!({"op": 2, "d": {"token": format!("Bot {new_token}"), "intents": MESSAGES | 1 << 40}}),
    )
    .await;
    assert_eq!(g.closed().await, Closed::Code(4013));
    assert_eq!(
        as_bot(&app, reqwest::Method::GET, "/users/@me", &quiet, None)
            .await
            .0,
        401
    );
    assert_eq!(
        as_bot(&app, reqwest::Method::GET, "/users/@me", new_token, None)
            .await
            .0,
        200
    );
    // Only MANAGE_SERVER resets or lists.
    assert_eq!(
        app.post_empty(
            &format!("/servers/{}/bots/{quiet_id}/reset-token", s.id),
            &member.token,
        )
        .await
        .0,
        403
    );
    assert_eq!(
        app.get(&format!("/servers/{}/bots", s.id), &member.token)
            .await
            .0,
        403
    );
    let (st, bots) = app
        .get(&format!("/servers/{}/bots", s.id), &owner.token)
        .await;
    assert_eq!(st, 200);
    assert_eq!(bots.as_array().unwrap().len(), 3);
    assert!(bots[0].get("token").is_none());
    // Once the bot is removed, its role is an ordinary one again.
    let full_role = bots
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["user"]["id"] == full_id.as_str())
        .unwrap()["role_id"]
        .as_str()
        .unwrap()
        .to_string();
    let (st, _) = app
        .delete(
            &format!("/servers/{}/members/{full_id}", s.id),
            &owner.token,
        )
        .await;
    assert_eq!(st, 204);
    let (st, _) = app
        .delete(
            &format!("/servers/{}/roles/{full_role}", s.id),
            &owner.token,
        )
        .await;
    assert_eq!(st, 204);
}

/// A server with a member and a bot that registered `/roll`.
async fn command_setup(
    app: &TestApp,
) -> (User, User, crate::common::Server, String, String, String) {
    let owner = app.register("cmd_owner").await;
    let member = app.register("cmd_member").await;
    let s = app.server(&owner, "Commands").await;
    app.join(&owner, &member, &s.id).await;
    let (bot_id, token) = bot(app, &owner, &s.id, "dicebot", VIEW_CHANNEL).await;
    let (st, cmd) = as_bot(
        app,
        reqwest::Method::POST,
        &format!("/servers/{}/commands", s.id),
        &token,
        Some(json!({"name": "roll", "description": "Roll dice", "options": [
            {"name": "sides", "description": "How many sides", "type": "integer", "required": true},
            {"name": "loud", "description": "Shout it", "type": "boolean"}
        ]})),
    )
    .await;
    assert_eq!(st, 201, "{cmd}");
    (
        owner,
        member,
        s,
        bot_id,
        token,
        cmd["id"].as_str().unwrap().to_string(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slash_command_reaches_its_bot_and_the_answer_shows_in_the_channel() {
    let app = TestApp::spawn().await;
    let (owner, member, s, bot_id, token, cmd) = command_setup(&app).await;
    let mut bot_g = bot_gateway(&app, &token, SERVERS).await;
    let (mut g, _) = app.identified(&owner).await;

    // Members see the commands; people cannot register any; bad definitions are refused.
    let (st, list) = app
        .get(&format!("/servers/{}/commands", s.id), &member.token)
        .await;
    assert_eq!(st, 200);
    assert_eq!(list[0]["name"], "roll");
    assert_eq!(list[0]["options"][0]["type"], "integer");
    let (st, _) = app
        .post(
            &format!("/servers/{}/commands", s.id),
            &member.token,
            json!({"name": "x", "description": "y"}),
        )
        .await;
    assert_eq!(st, 403);
    let (st, err) = as_bot(
        &app,
        reqwest::Method::POST,
        &format!("/servers/{}/commands", s.id),
        &token,
        Some(json!({"name": "Bad Name", "description": "y"})),
    )
    .await;
    assert_eq!(st, 400);
    assert!(err["errors"]["name"].is_array(), "{err}");

    // Options are checked against the command.
    let invoke = format!("/channels/{}/interactions", s.text);
    let (st, err) = app
        .post(
            &invoke,
            &member.token,
            json!({"command_id": cmd, "options": []}),
        )
        .await;
    assert_eq!(st, 400);
    assert!(err["errors"]["options.sides"].is_array(), "{err}");
    let (st, _) = app
        .post(
            &invoke,
            &member.token,
            json!({"command_id": cmd, "options": [{"name": "sides", "value": "six"}]}),
        )
        .await;
    assert_eq!(st, 400);

    let (st, inv) = app
        .post(
            &invoke,
            &member.token,
            json!({"command_id": cmd, "options": [{"name": "sides", "value": 6}]}),
        )
        .await;
    assert_eq!(st, 202, "{inv}");
    let i = bot_g.expect(Event::InteractionCreate).await;
    assert_eq!(i["id"], inv["id"]);
    assert_eq!(i["data"]["name"], "roll");
    assert_eq!(
        i["data"]["options"][0],
        json!({"name": "sides", "value": 6})
    );
    assert_eq!(i["user"]["id"], member.id.as_str());
    assert_eq!(i["channel_id"], s.text.as_str());
    let (iid, itoken) = (i["id"].as_str().unwrap(), i["token"].as_str().unwrap());
    let callback = format!("/interactions/{iid}/{itoken}/callback");
    // Another bot's token, or the wrong interaction token, cannot answer.
    let (_, other_bot) = bot(&app, &owner, &s.id, "otherbot", VIEW_CHANNEL).await;
    let (st, _) = as_bot(
        &app,
        reqwest::Method::POST,
        &callback,
        &other_bot,
        Some(json!({"type": 4, "data": {"content": "hijack"}})),
    )
    .await;
    assert_eq!(st, 404);
    let (st, _) = as_bot(
        &app,
        reqwest::Method::POST,
        &format!("/interactions/{iid}/wrong/callback"),
        &token,
        Some(json!({"type": 4, "data": {"content": "hijack"}})),
    )
    .await;
    assert_eq!(st, 404);
    let (st, _) = as_bot(
        &app,
        reqwest::Method::POST,
        &callback,
        &token,
        Some(json!({"type": 4, "data": {"content": "You rolled 4"}})),
    )
    .await;
    assert_eq!(st, 204);
    let m = g.expect(Event::MessageCreate).await;
    assert_eq!(m["content"], "You rolled 4");
    assert_eq!(m["author"]["id"], bot_id.as_str());
    assert_eq!(m["author"]["bot"], true);
    // Once only.
    let (st, _) = as_bot(
        &app,
        reqwest::Method::POST,
        &callback,
        &token,
        Some(json!({"type": 4, "data": {"content": "again"}})),
    )
    .await;
    assert_eq!(st, 409);
    let stored = contents(&app, &member, &s.text).await;
    assert_eq!(
        stored
            .iter()
            .filter(|m| m["author"]["id"] == bot_id.as_str())
            .count(),
        1
    );

    // Deferred: "thinking", then the follow-up.
    let (st, _) = app
        .post(
            &invoke,
            &member.token,
            json!({"command_id": cmd, "options": [{"name": "sides", "value": 20}, {"name": "loud", "value": true}]}),
        )
        .await;
    assert_eq!(st, 202);
    let i = bot_g.expect(Event::InteractionCreate).await;
    let (iid, itoken) = (i["id"].as_str().unwrap(), i["token"].as_str().unwrap());
    // A follow-up needs a deferral first.
    let (st, err) = as_bot(
        &app,
        reqwest::Method::POST,
        &format!("/interactions/{iid}/{itoken}/followup"),
        &token,
        Some(json!({"content": "too soon"})),
    )
    .await;
    assert_eq!(st, 409, "{err}");
    let (st, _) = as_bot(
        &app,
        reqwest::Method::POST,
        &format!("/interactions/{iid}/{itoken}/callback"),
        &token,
        Some(json!({"type": 5})),
    )
    .await;
    assert_eq!(st, 204);
    // Past the first deadline the deferred interaction is still open.
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let (st, m) = as_bot(
        &app,
        reqwest::Method::POST,
        &format!("/interactions/{iid}/{itoken}/followup"),
        &token,
        Some(json!({"content": "ROLLED 17"})),
    )
    .await;
    assert_eq!(st, 200, "{m}");
    let m = g
        .expect_where(Event::MessageCreate, |m| m["content"] == "ROLLED 17")
        .await;
    assert_eq!(m["author"]["id"], bot_id.as_str());
    g.expect_none(Event::InteractionFailed, Duration::from_millis(300))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unanswered_interaction_fails_with_a_clear_error() {
    let app = TestApp::spawn().await;
    let (owner, member, s, _bot_id, token, cmd) = command_setup(&app).await;
    let mut bot_g = bot_gateway(&app, &token, 0).await;
    let (mut g, _) = app.identified(&member).await;
    let started = std::time::Instant::now();
    let (st, inv) = app
        .post(
            &format!("/channels/{}/interactions", s.text),
            &member.token,
            json!({"command_id": cmd, "options": [{"name": "sides", "value": 6}]}),
        )
        .await;
    assert_eq!(st, 202);
    // INTERACTION_CREATE needs no intent.
    let i = bot_g.expect(Event::InteractionCreate).await;
    let f = g.expect(Event::InteractionFailed).await;
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(2900) && waited < Duration::from_secs(5),
        "{waited:?}"
    );
    assert_eq!(f["id"], inv["id"]);
    assert_eq!(f["command"], "roll");
    assert!(f["message"].as_str().unwrap().contains("did not respond"));
    // Too late now; nothing reached the channel.
    let (st, err) = as_bot(
        &app,
        reqwest::Method::POST,
        &format!(
            "/interactions/{}/{}/callback",
            i["id"].as_str().unwrap(),
            i["token"].as_str().unwrap()
        ),
        &token,
        Some(json!({"type": 4, "data": {"content": "late"}})),
    )
    .await;
    assert_eq!(st, 409, "{err}");
    assert!(err["message"].as_str().unwrap().contains("deadline"));
    assert!(!contents(&app, &owner, &s.text)
        .await
        .iter()
        .any(|m| m["content"] == "late"));

    // Without SEND_MESSAGES in the channel a member cannot use commands there.
    app.overwrite(&owner, &s.text, Overwrite::Role(&s.id), 0, SEND_MESSAGES)
        .await;
    let (st, _) = app
        .post(
            &format!("/channels/{}/interactions", s.text),
            &member.token,
            json!({"command_id": cmd, "options": [{"name": "sides", "value": 6}]}),
        )
        .await;
    assert_eq!(st, 403);
}

/// Defers an interaction of `cmd` used by `member`, then moves its creation `ago` into the
/// past in the database (the follow-up window is measured from the interaction's creation).
async fn deferred_since(
    app: &TestApp,
    member: &User,
    channel: &str,
    cmd: &str,
    bot_g: &mut crate::common::Gateway,
    token: &str,
    ago: Duration,
) -> (String, String) {
    let (st, _) = app
        .post(
            &format!("/channels/{channel}/interactions"),
            &member.token,
            json!({"command_id": cmd, "options": [{"name": "sides", "value": 6}]}),
        )
        .await;
    assert_eq!(st, 202);
    let i = bot_g.expect(Event::InteractionCreate).await;
    let (iid, itoken) = (
        i["id"].as_str().unwrap().to_string(),
        i["token"].as_str().unwrap().to_string(),
    );
    let (st, _) = as_bot(
        app,
        reqwest::Method::POST,
        &format!("/interactions/{iid}/{itoken}/callback"),
        token,
        Some(json!({"type": 5})),
    )
    .await;
    assert_eq!(st, 204);
    let moved = sqlx::query(
        "UPDATE interactions SET created_at = now() - make_interval(secs => $2) WHERE id = $1",
    )
    .bind(iid.parse::<i64>().unwrap())
    .bind(ago.as_secs_f64())
    .execute(app.running.as_ref().unwrap().state.chat.pool())
    .await
    .unwrap();
    assert_eq!(moved.rows_affected(), 1);
    (iid, itoken)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deferred_interaction_takes_its_follow_up_for_15_minutes_and_not_after() {
    let app = TestApp::spawn().await;
    let (owner, member, s, bot_id, token, cmd) = command_setup(&app).await;
    let mut bot_g = bot_gateway(&app, &token, 0).await;

    // 14 min 50 s after it was used, the follow-up still lands in the channel.
    let (iid, itoken) = deferred_since(
        &app,
        &member,
        &s.text,
        &cmd,
        &mut bot_g,
        &token,
        Duration::from_secs(14 * 60 + 50),
    )
    .await;
    let (st, m) = as_bot(
        &app,
        reqwest::Method::POST,
        &format!("/interactions/{iid}/{itoken}/followup"),
        &token,
        Some(json!({"content": "just in time"})),
    )
    .await;
    assert_eq!(st, 200, "{m}");
    assert_eq!(m["author"]["id"], bot_id.as_str());

    // 15 min 5 s after, it is refused with the deadline named, and nothing is posted.
    let (iid, itoken) = deferred_since(
        &app,
        &member,
        &s.text,
        &cmd,
        &mut bot_g,
        &token,
        Duration::from_secs(15 * 60 + 5),
    )
    .await;
    let (st, err) = as_bot(
        &app,
        reqwest::Method::POST,
        &format!("/interactions/{iid}/{itoken}/followup"),
        &token,
        Some(json!({"content": "too late"})),
    )
    .await;
    assert_eq!(st, 409, "{err}");
    assert!(
        err["message"].as_str().unwrap().contains("deadline"),
        "{err}"
    );
    let stored = contents(&app, &owner, &s.text).await;
    assert!(stored.iter().any(|m| m["content"] == "just in time"));
    assert!(!stored.iter().any(|m| m["content"] == "too late"));
}

/// A bot request's status and rate-limit headers (bucket, limit, remaining).
async fn bot_limits(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> (u16, String, u64, u64) {
    let mut req = app
        .http
        .request(method, app.url(path))
        .header("authorization", format!("Bot {token}"));
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.unwrap();
    let header = |name: &str| {
        resp.headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default()
    };
    (
        resp.status().as_u16(),
        header("x-ratelimit-bucket"),
        header("x-ratelimit-limit").parse().unwrap_or(0),
        header("x-ratelimit-remaining").parse().unwrap_or(0),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_bot_has_its_own_rate_limits() {
    let app = TestApp::spawn().await;
    let owner = app.register("limits_owner").await;
    let s = app.server(&owner, "Limits").await;
    let other = app.channel(&owner, &s.id, "text", "other").await;
    let perms = VIEW_CHANNEL | SEND_MESSAGES;
    let (_, a) = bot(&app, &owner, &s.id, "busybot", perms).await;
    let (_, b) = bot(&app, &owner, &s.id, "quietbot", perms).await;
    let me = reqwest::Method::GET;

    // Its first request, before this node knows the token, counts against the address; from
    // then on the bot has its own bucket of 250 per 5 s: more than a person's 100.
    let (st, bucket, _, _) = bot_limits(&app, me.clone(), "/users/@me", &a, None).await;
    assert_eq!((st, bucket.as_str()), (200, "api"));
    let mut remaining = 250;
    let started = std::time::Instant::now();
    for i in 0..150 {
        let (st, bucket, limit, left) = bot_limits(&app, me.clone(), "/users/@me", &a, None).await;
        assert_eq!(
            (st, bucket.as_str(), limit),
            (200, "bot", 250),
            "request {i}"
        );
        remaining = left;
    }
    // Spent, give or take the refill (50 a second) while the requests ran: a person's bucket
    // (100) would have refused them.
    let refill = (50.0 * started.elapsed().as_secs_f64()).ceil() as u64;
    assert!(
        remaining <= 100 + refill + 1,
        "{remaining} left, {refill} refilled"
    );
    // Another bot and a person from the same address have their own, untouched budgets.
    bot_limits(&app, me.clone(), "/users/@me", &b, None).await;
    let (st, bucket, _, remaining) = bot_limits(&app, me.clone(), "/users/@me", &b, None).await;
    assert_eq!((st, bucket.as_str()), (200, "bot"));
    assert!(remaining >= 247, "{remaining}");
    let resp = app
        .http
        .get(app.url("/users/@me"))
        .bearer_auth(&owner.token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["x-ratelimit-bucket"], "api");
    let left: u64 = resp.headers()["x-ratelimit-remaining"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(left >= 97, "{left}");

    // Message sends are limited per channel for a bot: ten in one channel (plus what refills,
    // 2 a second, while they run), then 429 there while another channel still takes them.
    let post = reqwest::Method::POST;
    let started = std::time::Instant::now();
    let mut sent = 0;
    loop {
        let (st, bucket, _, _) = bot_limits(
            &app,
            post.clone(),
            &format!("/channels/{}/messages", s.text),
            &a,
            Some(json!({"content": format!("tick {sent}")})),
        )
        .await;
        assert_eq!(bucket, "messages", "send {sent}");
        if st == 429 {
            break;
        }
        assert_eq!(st, 201, "send {sent}");
        sent += 1;
        assert!(sent <= 40, "no 429 after {sent} sends");
    }
    let refill = (2.0 * started.elapsed().as_secs_f64()).ceil() as usize;
    assert!(
        (10..=10 + refill).contains(&sent),
        "{sent} sends before the 429 ({refill} refilled)"
    );
    let (st, _, _, _) = bot_limits(
        &app,
        post,
        &format!("/channels/{other}/messages"),
        &a,
        Some(json!({"content": "elsewhere"})),
    )
    .await;
    assert_eq!(st, 201);
    let stored = contents(&app, &owner, &s.text).await;
    assert_eq!(
        stored
            .iter()
            .filter(|m| m["content"].as_str().unwrap().starts_with("tick "))
            .count(),
        sent,
        "every accepted send stored once, the refused one not"
    );
}
