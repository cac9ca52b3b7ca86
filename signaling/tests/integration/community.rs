//! Roles, permission overwrites, moderation and the audit log.

use crate::common::{Event, Overwrite, Server, TestApp, User};
use serde_json::json;

const VIEW: i64 = 1 << 10;
const SEND: i64 = 1 << 11;
const MANAGE_ROLES: i64 = 1 << 28;
const KICK: i64 = 1 << 1;
const BAN: i64 = 1 << 2;
const AUDIT: i64 = 1 << 7;
const MODERATE: i64 = 1 << 40;

/// A server with a moderator (the "Mods" role: manage roles, kick, ban, audit log, timeouts),
/// a lower "Helpers" role nobody holds yet, and two plain members.
struct Guild {
    app: TestApp,
    owner: User,
    modr: User,
    member: User,
    other: User,
    server: Server,
    mods: String,
    helpers: String,
}

async fn guild() -> Guild {
    let app = TestApp::spawn_with(|c| c.rate_limit_scale = 100.0).await;
    let owner = app.register("boss").await;
    let modr = app.register("moderator").await;
    let member = app.register("regular").await;
    let other = app.register("another").await;
    let server = app.server(&owner, "Guild").await;
    for u in [&modr, &member, &other] {
        app.join(&owner, u, &server.id).await;
    }
    let mod_perms = (MANAGE_ROLES | KICK | BAN | AUDIT | MODERATE).to_string();
    let (s, mods) = app
        .post(
            &format!("/servers/{}/roles", server.id),
            &owner.token,
            json!({"name": "Mods", "permissions": mod_perms, "color": 0x3498db, "hoist": true}),
        )
        .await;
    assert_eq!(s, 201, "{mods}");
    let mods = mods["id"].as_str().unwrap().to_string();
    let helpers = app.role(&owner, &server.id, "Helpers", 0).await;
    app.give_role(&owner, &server.id, &modr, &mods).await;
    Guild {
        app,
        owner,
        modr,
        member,
        other,
        server,
        mods,
        helpers,
    }
}

impl Guild {
    fn member_path(&self, u: &User) -> String {
        format!("/servers/{}/members/{}", self.server.id, u.id)
    }

    /// `by` kicks `whom`, giving `reason` (percent-encoded) for the audit log.
    async fn kick(&self, by: &User, whom: &User, reason: &str) -> u16 {
        self.app
            .http
            .delete(self.app.url(&self.member_path(whom)))
            .bearer_auth(&by.token)
            .header("X-Audit-Log-Reason", reason)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }

    async fn timeout(&self, by: &User, whom: &User, until: serde_json::Value) -> u16 {
        self.app
            .patch(
                &self.member_path(whom),
                &by.token,
                json!({ "timeout_until": until }),
            )
            .await
            .0
    }

    async fn ban(&self, by: &User, whom: &User) -> u16 {
        self.app
            .put_json(
                &format!("/servers/{}/bans/{}", self.server.id, whom.id),
                &by.token,
                json!({"delete_message_seconds": 3600}),
            )
            .await
            .0
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_roles_enter_just_above_everyone_and_need_manage_roles() {
    let g = guild().await;
    let sid = &g.server.id;
    // A member without MANAGE_ROLES cannot create roles.
    let (s, _) = g
        .app
        .post(
            &format!("/servers/{sid}/roles"),
            &g.member.token,
            json!({"name": "x"}),
        )
        .await;
    assert_eq!(s, 403);
    // Mods were made first, then Helpers: Mods moved up to 2, Helpers at 1.
    let (_, roles) = g
        .app
        .get(&format!("/servers/{sid}/roles"), &g.member.token)
        .await;
    let pos = |id: &str| {
        roles
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["id"] == id)
            .unwrap()["position"]
            .as_i64()
            .unwrap()
    };
    assert_eq!((pos(&g.mods), pos(&g.helpers), pos(sid)), (2, 1, 0));
}

/// The moderator manages roles below theirs but not their own or above, and cannot grant
/// permissions they lack.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_moderator_manages_only_roles_below_their_own() {
    let g = guild().await;
    let (app, sid) = (&g.app, &g.server.id);
    let (s, _) = app
        .patch(
            &format!("/servers/{sid}/roles/{}", g.helpers),
            &g.modr.token,
            json!({"color": 255}),
        )
        .await;
    assert_eq!(s, 200);
    let (s, _) = app
        .patch(
            &format!("/servers/{sid}/roles/{}", g.mods),
            &g.modr.token,
            json!({"color": 255}),
        )
        .await;
    assert_eq!(s, 403, "own top role");
    let admin = (1i64 << 3).to_string();
    let (s, _) = app
        .patch(
            &format!("/servers/{sid}/roles/{}", g.helpers),
            &g.modr.token,
            json!({"permissions": admin}),
        )
        .await;
    assert_eq!(s, 403, "cannot grant ADMINISTRATOR");
    assert_eq!(
        app.try_give_role(&g.modr, sid, &g.member, &g.helpers).await,
        204
    );
    assert_eq!(
        app.try_give_role(&g.modr, sid, &g.member, &g.mods).await,
        403,
        "cannot hand out their own top role"
    );
}

/// @everyone may not send in #general, Helpers may; a member overwrite denying VIEW hides the
/// channel entirely until it is removed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channel_overwrites_apply_role_then_member() {
    let g = guild().await;
    let (app, sid, text) = (&g.app, &g.server.id, &g.server.text);
    app.give_role(&g.owner, sid, &g.member, &g.helpers).await;
    let s = app
        .try_overwrite(&g.owner, text, Overwrite::Role(sid), 0, SEND)
        .await;
    assert_eq!(s, 200);
    assert_eq!(
        app.try_message(&g.other, text, "can I?").await.0,
        403,
        "@everyone deny"
    );
    let s = app
        .try_overwrite(&g.owner, text, Overwrite::Role(&g.helpers), SEND, 0)
        .await;
    assert_eq!(s, 200);
    assert_eq!(
        app.try_message(&g.member, text, "helper speaks").await.0,
        201,
        "role allow beats @everyone deny"
    );
    let s = app
        .try_overwrite(&g.owner, text, Overwrite::Member(&g.member.id), 0, VIEW)
        .await;
    assert_eq!(s, 200);
    assert_eq!(
        app.get(&format!("/channels/{text}/messages"), &g.member.token)
            .await
            .0,
        404
    );
    let (_, ows) = app
        .get(&format!("/channels/{text}/permissions"), &g.owner.token)
        .await;
    assert_eq!(ows.as_array().unwrap().len(), 3);
    assert_eq!(
        app.delete(
            &format!("/channels/{text}/permissions/{}", g.member.id),
            &g.owner.token
        )
        .await
        .0,
        204
    );
    assert_eq!(
        app.get(&format!("/channels/{text}/messages"), &g.member.token)
            .await
            .0,
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timed_out_member_reads_but_cannot_send() {
    let g = guild().await;
    let (app, text) = (&g.app, &g.server.text);
    let until = (chrono::Utc::now() + chrono::Duration::minutes(10)).to_rfc3339();
    assert_eq!(g.timeout(&g.modr, &g.member, json!(until)).await, 200);
    assert_eq!(
        app.get(&format!("/channels/{text}/messages"), &g.member.token)
            .await
            .0,
        200
    );
    assert_eq!(app.try_message(&g.member, text, "muted?").await.0, 403);
    assert_eq!(g.timeout(&g.modr, &g.member, json!(null)).await, 200);
    assert_eq!(app.try_message(&g.member, text, "back").await.0, 201);
}

/// A member cannot kick; the moderator cannot touch the owner but kicks and bans members;
/// banned users lose their recent messages and cannot rejoin until unbanned.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kicks_and_bans_follow_the_hierarchy_and_bans_keep_users_out() {
    let g = guild().await;
    let (app, sid, text) = (&g.app, &g.server.id, &g.server.text);
    assert_eq!(
        app.delete(&g.member_path(&g.other), &g.member.token)
            .await
            .0,
        403
    );
    assert_eq!(
        app.delete(&g.member_path(&g.owner), &g.modr.token).await.0,
        403
    );
    assert_eq!(g.kick(&g.modr, &g.other, "spam%20%C3%A9").await, 204);
    app.join(&g.owner, &g.other, sid).await;
    app.message(&g.member, text, "kept").await;
    assert_eq!(g.ban(&g.modr, &g.member).await, 204);
    assert_eq!(
        app.get(&format!("/servers/{sid}"), &g.member.token).await.0,
        404
    );
    let code = app.invite(&g.owner, sid).await;
    assert_eq!(
        app.accept_invite(&g.member, &code).await.0,
        403,
        "banned users cannot rejoin"
    );
    let (_, page) = app
        .get(
            &format!("/channels/{text}/messages?limit=100"),
            &g.owner.token,
        )
        .await;
    assert!(
        !page
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["author"]["id"] == g.member.id.as_str()),
        "the banned member's recent messages are gone"
    );
    let (_, bans) = app
        .get(&format!("/servers/{sid}/bans"), &g.modr.token)
        .await;
    assert_eq!(bans.as_array().unwrap().len(), 1);
    assert_eq!(
        app.delete(
            &format!("/servers/{sid}/bans/{}", g.member.id),
            &g.modr.token
        )
        .await
        .0,
        204
    );
    assert_eq!(app.accept_invite(&g.member, &code).await.0, 200);
}

/// VIEW_AUDIT_LOG only; actions recorded with reasons; filters work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_log_records_moderation_with_reasons() {
    let g = guild().await;
    let (app, sid, text) = (&g.app, &g.server.id, &g.server.text);
    // The guild's set-up made roles, gave one and made invites; now the rest.
    let (s, _) = app
        .patch(
            &format!("/servers/{sid}/roles/{}", g.helpers),
            &g.modr.token,
            json!({"color": 255}),
        )
        .await;
    assert_eq!(s, 200);
    app.overwrite(&g.owner, text, Overwrite::Role(sid), 0, SEND)
        .await;
    let until = (chrono::Utc::now() + chrono::Duration::minutes(10)).to_rfc3339();
    assert_eq!(g.timeout(&g.modr, &g.member, json!(until)).await, 200);
    assert_eq!(g.kick(&g.modr, &g.other, "spam%20%C3%A9").await, 204);
    // Back in: a member without VIEW_AUDIT_LOG is refused the log below.
    app.join(&g.owner, &g.other, sid).await;
    assert_eq!(g.ban(&g.modr, &g.member).await, 204);
    assert_eq!(
        app.delete(
            &format!("/servers/{sid}/bans/{}", g.member.id),
            &g.modr.token
        )
        .await
        .0,
        204
    );

    assert_eq!(
        app.get(&format!("/servers/{sid}/audit-log"), &g.other.token)
            .await
            .0,
        403
    );
    let (s, log) = app
        .get(
            &format!("/servers/{sid}/audit-log?limit=100"),
            &g.modr.token,
        )
        .await;
    assert_eq!(s, 200);
    let actions: Vec<&str> = log
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    for a in [
        "role_create",
        "role_update",
        "member_role_update",
        "channel_overwrite_update",
        "member_timeout",
        "member_kick",
        "member_ban_add",
        "member_ban_remove",
        "invite_create",
    ] {
        assert!(actions.contains(&a), "{a} missing from {actions:?}");
    }
    let kick = log
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "member_kick")
        .unwrap();
    assert_eq!(kick["reason"], "spam é", "percent-decoded");
    assert_eq!(kick["target_id"], g.other.id.as_str());
    let (_, only) = app
        .get(
            &format!("/servers/{sid}/audit-log?action=member_kick"),
            &g.owner.token,
        )
        .await;
    assert_eq!(only.as_array().unwrap().len(), 1);
    let (_, by_owner) = app
        .get(
            &format!("/servers/{sid}/audit-log?user_id={}&limit=100", g.owner.id),
            &g.owner.token,
        )
        .await;
    assert!(by_owner
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["actor_id"] == g.owner.id.as_str()));
}

#[tokio::test]
async fn a_failed_change_leaves_no_audit_entry() {
    let app = TestApp::spawn().await;
    let owner = app.register("auditor").await;
    let Server { id: sid, .. } = app.server(&owner, "A").await;
    // Invalid role (bad colour) fails validation: nothing recorded.
    let (s, _) = app
        .post(
            &format!("/servers/{sid}/roles"),
            &owner.token,
            json!({"name": "x", "color": -5}),
        )
        .await;
    assert_eq!(s, 400);
    let (s, _) = app
        .post(
            &format!("/servers/{sid}/roles"),
            &owner.token,
            json!({"name": "x", "permissions": "not a number"}),
        )
        .await;
    assert_eq!(s, 400);
    let (_, log) = app
        .get(&format!("/servers/{sid}/audit-log"), &owner.token)
        .await;
    assert!(
        log.as_array()
            .unwrap()
            .iter()
            .all(|e| e["action"] != "role_create"),
        "{log}"
    );
}

/// Channel events reach only members who may view the channel, and stop at once when an
/// overwrite hides it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hidden_channels_send_no_events() {
    let app = TestApp::spawn().await;
    let owner = app.register("host").await;
    let guest = app.register("guest").await;
    let Server { id: sid, text, .. } = app.server(&owner, "Private").await;
    app.join(&owner, &guest, &sid).await;
    let secret = app.channel(&owner, &sid, "text", "staff").await;
    let (mut g, _) = app.identified(&guest).await;

    // Visible: the guest gets it.
    app.message(&owner, &secret, "before").await;
    assert_eq!(g.expect(Event::MessageCreate).await["content"], "before");

    // Hide it from @everyone: nothing more arrives from it, while #general still flows.
    let s = app
        .try_overwrite(&owner, &secret, Overwrite::Role(&sid), 0, VIEW)
        .await;
    assert_eq!(s, 200);
    app.message(&owner, &secret, "hidden").await;
    app.post_empty(&format!("/channels/{secret}/typing"), &owner.token)
        .await;
    app.message(&owner, &text, "public").await;
    let mut got = vec![];
    while let Some(v) = g.next_within(std::time::Duration::from_millis(700)).await {
        if v["t"] == Event::MessageCreate.name() || v["t"] == Event::TypingStart.name() {
            got.push(v["d"]["content"].as_str().unwrap_or("typing").to_string());
        }
    }
    assert_eq!(
        got,
        vec!["public".to_string()],
        "the hidden channel leaked events"
    );
    assert_eq!(
        app.get(&format!("/channels/{secret}/messages"), &guest.token)
            .await
            .0,
        404
    );
    // Not even its name: the channel list and READY leave it out for the guest, not for the owner.
    let names = |list: &serde_json::Value| -> Vec<String> {
        list.as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap_or("").to_string())
            .collect()
    };
    let (s, list) = app
        .get(&format!("/servers/{sid}/channels"), &guest.token)
        .await;
    assert_eq!(s, 200);
    assert!(!names(&list).contains(&"staff".to_string()), "{list}");
    assert!(names(&list).contains(&"general".to_string()), "{list}");
    let (_, list) = app
        .get(&format!("/servers/{sid}/channels"), &owner.token)
        .await;
    assert!(names(&list).contains(&"staff".to_string()), "{list}");
    let (_, ready) = app.identified(&guest).await;
    let server = ready["servers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == sid.as_str())
        .expect("the server in READY")
        .clone();
    assert!(
        !names(&server["channels"]).contains(&"staff".to_string()),
        "{server}"
    );
}

/// A server with a member and a message by its owner in #general.
async fn with_a_message(owner: &str, member: &str) -> (TestApp, User, User, Server, String) {
    let app = TestApp::spawn().await;
    let owner = app.register(owner).await;
    let member = app.register(member).await;
    let server = app.server(&owner, "R").await;
    app.join(&owner, &member, &server.id).await;
    let m = app.message(&owner, &server.text, "react to me").await;
    let mid = m["id"].as_str().unwrap().to_string();
    (app, owner, member, server, mid)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reactions_are_idempotent_listed_and_dispatched() {
    let (app, owner, fan, Server { text, .. }, mid) = with_a_message("pinner", "reactor").await;
    let (mut g, _) = app.identified(&owner).await;

    let thumbs = "%F0%9F%91%8D"; // 👍
    let path = format!("/channels/{text}/messages/{mid}/reactions/{thumbs}");
    assert_eq!(app.put(&path, &fan.token).await.0, 204);
    assert_eq!(app.put(&path, &fan.token).await.0, 204, "idempotent");
    let ev = g.expect(Event::MessageReactionAdd).await;
    assert_eq!(ev["emoji"], "👍");
    assert_eq!(ev["user_id"], fan.id.as_str());
    let (s, who) = app.get(&path, &owner.token).await;
    assert_eq!(s, 200);
    assert_eq!(who.as_array().unwrap().len(), 1);
    let bad = format!("/channels/{text}/messages/{mid}/reactions/%3Cb%3E");
    assert_eq!(app.put(&bad, &fan.token).await.0, 400);
    assert_eq!(app.delete(&path, &fan.token).await.0, 204);
    assert_eq!(g.expect(Event::MessageReactionRemove).await["emoji"], "👍");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pins_need_manage_messages() {
    let (app, owner, fan, Server { text, .. }, mid) = with_a_message("pinner", "reactor").await;
    let (mut g, _) = app.identified(&owner).await;
    let pin = format!("/channels/{text}/pins/{mid}");
    assert_eq!(app.put(&pin, &fan.token).await.0, 403);
    assert_eq!(app.put(&pin, &owner.token).await.0, 204);
    g.expect(Event::ChannelPinsUpdate).await;
    let (_, pins) = app.get(&format!("/channels/{text}/pins"), &fan.token).await;
    assert_eq!(pins[0]["id"], mid.as_str());
    assert_eq!(app.delete(&pin, &owner.token).await.0, 204);
    assert_eq!(
        app.get(&format!("/channels/{text}/pins"), &fan.token)
            .await
            .1
            .as_array()
            .unwrap()
            .len(),
        0
    );
}

/// Invites are listed for managers and revoked by their creator; a revoked invite no longer
/// works, and the audit log says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_invite_no_longer_works() {
    let (app, owner, fan, Server { id: sid, .. }, _) = with_a_message("pinner", "reactor").await;
    let code = app.invite(&fan, &sid).await;
    assert_eq!(
        app.get(&format!("/servers/{sid}/invites"), &fan.token)
            .await
            .0,
        403
    );
    let (_, list) = app
        .get(&format!("/servers/{sid}/invites"), &owner.token)
        .await;
    assert!(list.as_array().unwrap().iter().any(|i| i["code"] == code));
    assert_eq!(
        app.delete(&format!("/invites/{code}"), &fan.token).await.0,
        204
    );
    let late = app.register("latecomer").await;
    assert_eq!(app.accept_invite(&late, &code).await.0, 404);
    let (_, log) = app
        .get(
            &format!("/servers/{sid}/audit-log?action=invite_delete"),
            &owner.token,
        )
        .await;
    assert_eq!(log.as_array().unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_and_mentions_are_resolved_on_send() {
    let app = TestApp::spawn().await;
    let owner = app.register("speaker").await;
    let friend = app.register("listener").await;
    let stranger = app.register("stranger").await;
    let Server { id: sid, text, .. } = app.server(&owner, "M").await;
    app.join(&owner, &friend, &sid).await;
    let role_id = app.role(&owner, &sid, "team", 0).await;
    let (mut g, _) = app.identified(&friend).await;

    let first = app.message(&owner, &text, "first").await;
    let first_id = first["id"].as_str().unwrap();
    let content = format!(
        "hey <@{}> <@{}> <@&{role_id}> @everyone",
        friend.id, stranger.id
    );
    let (s, m) = app
        .post(
            &format!("/channels/{text}/messages"),
            &owner.token,
            json!({"content": content, "reply_to": first_id}),
        )
        .await;
    assert_eq!(s, 201, "{m}");
    assert_eq!(m["reply_to"], first_id);
    assert_eq!(
        m["mentions"],
        json!([friend.id]),
        "non-members are not mentioned"
    );
    assert_eq!(m["mention_roles"], json!([role_id]));
    assert_eq!(
        m["mention_everyone"], true,
        "the owner may mention everyone"
    );
    // The event carries the same, so clients can highlight.
    let ev = g
        .expect_where(Event::MessageCreate, |d| d["id"] == m["id"])
        .await;
    assert_eq!(ev["mentions"], json!([friend.id]));
    // A plain member's @everyone is not a mention (no MENTION_EVERYONE by default).
    let m2 = app.message(&friend, &text, "@everyone look").await;
    assert_eq!(m2["mention_everyone"], false);
    // A plain member pings a role only when it is mentionable.
    let role_msg = format!("<@&{role_id}> ping");
    let m3 = app.message(&friend, &text, &role_msg).await;
    assert_eq!(m3["mention_roles"], json!([]), "not mentionable: {m3}");
    let (s, _) = app
        .patch(
            &format!("/servers/{sid}/roles/{role_id}"),
            &owner.token,
            json!({"mentionable": true}),
        )
        .await;
    assert_eq!(s, 200);
    let m4 = app.message(&friend, &text, &role_msg).await;
    assert_eq!(m4["mention_roles"], json!([role_id]), "mentionable: {m4}");
    // Mentions in code and @everyone inside an address are not mentions.
    let m5 = app
        .message(
            &owner,
            &text,
            &format!("`<@{}>` ops@here.example", friend.id),
        )
        .await;
    assert_eq!(
        (m5["mentions"].clone(), m5["mention_everyone"].clone()),
        (json!([]), json!(false))
    );
    // An edit re-resolves: a mention added is counted, one removed is gone.
    let m5_id = m5["id"].as_str().unwrap();
    let (s, e1) = app
        .patch(
            &format!("/channels/{text}/messages/{m5_id}"),
            &owner.token,
            json!({"content": format!("now <@{}>", friend.id)}),
        )
        .await;
    assert_eq!(
        (s, e1["mentions"].clone()),
        (200, json!([friend.id])),
        "{e1}"
    );
    let (_, e2) = app
        .patch(
            &format!("/channels/{text}/messages/{m5_id}"),
            &owner.token,
            json!({"content": "nobody now"}),
        )
        .await;
    assert_eq!(e2["mentions"], json!([]), "{e2}");
    // Replies must point into the same channel.
    let other_id = app.channel(&owner, &sid, "text", "other").await;
    let (s, _) = app
        .post(
            &format!("/channels/{other_id}/messages"),
            &owner.token,
            json!({"content": "x", "reply_to": first_id}),
        )
        .await;
    assert_eq!(s, 400);
}

/// A temporary invite to a new server; returns the server's id and the invite's code.
async fn temporary_invite(app: &TestApp, owner: &User) -> (String, String) {
    let Server { id: sid, .. } = app.server(owner, "Temp").await;
    let (s, inv) = app
        .post(
            &format!("/servers/{sid}/invites"),
            &owner.token,
            json!({"temporary": true}),
        )
        .await;
    assert_eq!((s, inv["temporary"].as_bool()), (201, Some(true)), "{inv}");
    (sid, inv["code"].as_str().unwrap().to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn temporary_members_leave_when_they_go_offline_unless_given_a_role() {
    let app = TestApp::spawn_with(|c| c.rate_limit_scale = 100.0).await;
    let owner = app.register("tmp_owner").await;
    let guest = app.register("tmp_guest").await;
    let kept = app.register("tmp_kept").await;
    let (sid, code) = temporary_invite(&app, &owner).await;
    let (mut go, _) = app.identified(&owner).await;

    // Both join online through the temporary invite; `kept` is then given a role.
    let (mut gg, _) = app.identified(&guest).await;
    let (mut gk, _) = app.identified(&kept).await;
    for u in [&guest, &kept] {
        assert_eq!(app.accept_invite(u, &code).await.0, 200);
    }
    let role = app.role(&owner, &sid, "stays", 0).await;
    app.give_role(&owner, &sid, &kept, &role).await;

    // A second session keeps the guest a member; closing the last one removes them.
    let (mut gg2, _) = app.identified(&guest).await;
    gg.ws.close(None).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(app.member_ids(&owner, &sid).await.len(), 3);
    gg2.ws.close(None).await.unwrap();
    go.expect_where(Event::MemberRemove, |d| d["user_id"] == guest.id.as_str())
        .await;
    gk.ws.close(None).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let ids = app.member_ids(&owner, &sid).await;
    assert!(!ids.contains(&guest.id), "temporary member stayed");
    assert!(ids.contains(&kept.id), "a member with a role stays");
    // An ordinary invite's members stay when offline.
    let plain = app.register("tmp_plain").await;
    app.join(&owner, &plain, &sid).await;
    let (gp, _) = app.identified(&plain).await;
    drop(gp);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(app.member_ids(&owner, &sid).await.len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn temporary_members_who_never_come_online_are_let_go_after_the_grace() {
    use confab_signaling::temporary_members as temporary;
    let app = TestApp::spawn_with(|c| c.rate_limit_scale = 100.0).await;
    let owner = app.register("tmp2_owner").await;
    let ghost = app.register("tmp2_ghost").await;
    let online = app.register("tmp2_online").await;
    let (sid, code) = temporary_invite(&app, &owner).await;
    // `ghost` accepts over REST and never opens the gateway; `online` does.
    let (_go, _) = app.identified(&online).await;
    for u in [&ghost, &online] {
        assert_eq!(app.accept_invite(u, &code).await.0, 200);
    }
    assert_eq!(app.member_ids(&owner, &sid).await.len(), 3);
    let state = &app.running.as_ref().unwrap().state;
    // Within the grace nobody goes.
    assert_eq!(temporary::sweep(state, temporary::GRACE).await, 0);
    assert_eq!(app.member_ids(&owner, &sid).await.len(), 3);
    // After it, the one without any gateway session goes; the online one stays.
    assert_eq!(temporary::sweep(state, std::time::Duration::ZERO).await, 1);
    let ids = app.member_ids(&owner, &sid).await;
    assert!(!ids.contains(&ghost.id), "the ghost stayed");
    assert!(ids.contains(&online.id), "an online member went");
}
