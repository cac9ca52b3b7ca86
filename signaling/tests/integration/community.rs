//! Roles, permission overwrites, moderation and the audit log.

use crate::common;
use crate::common::{Event, Server, TestApp};
use reqwest::Method;
use serde_json::json;

const VIEW: i64 = 1 << 10;
const SEND: i64 = 1 << 11;
const MANAGE_ROLES: i64 = 1 << 28;
const KICK: i64 = 1 << 1;
const BAN: i64 = 1 << 2;
const AUDIT: i64 = 1 << 7;
const MODERATE: i64 = 1 << 40;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_hierarchy_overwrites_moderation_and_audit() {
    let app = TestApp::spawn_with(|c| c.rate_limit_scale = 100.0).await;
    let owner = app.register("boss").await;
    let modr = app.register("moderator").await;
    let member = app.register("regular").await;
    let other = app.register("another").await;
    let Server { id: sid, text, .. } = app.server(&owner, "Guild").await;
    for u in [&modr, &member, &other] {
        app.join(&owner, u, &sid).await;
    }

    // A member without MANAGE_ROLES cannot create roles.
    let (s, _) = app
        .post(
            &format!("/servers/{sid}/roles"),
            &member.token,
            json!({"name": "x"}),
        )
        .await;
    assert_eq!(s, 403);

    // The owner makes a moderator role and a lower "helper" role.
    let mod_perms = (MANAGE_ROLES | KICK | BAN | AUDIT | MODERATE).to_string();
    let (s, mod_role) = app
        .request(
            Method::POST,
            &format!("/servers/{sid}/roles"),
            Some(&owner.token),
            Some(
                json!({"name": "Mods", "permissions": mod_perms, "color": 0x3498db, "hoist": true}),
            ),
        )
        .await;
    assert_eq!(s, 201, "{mod_role}");
    let mod_role_id = mod_role["id"].as_str().unwrap().to_string();
    let (s, helper) = app
        .post(
            &format!("/servers/{sid}/roles"),
            &owner.token,
            json!({"name": "Helpers"}),
        )
        .await;
    assert_eq!(s, 201);
    let helper_id = helper["id"].as_str().unwrap().to_string();
    // New roles go just above @everyone: Mods moved up to 2, Helpers at 1.
    let (_, roles) = app
        .get(&format!("/servers/{sid}/roles"), &member.token)
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
    assert_eq!((pos(&mod_role_id), pos(&helper_id), pos(&sid)), (2, 1, 0));

    let (s, _) = app
        .request(
            Method::PUT,
            &format!("/servers/{sid}/members/{}/roles/{mod_role_id}", modr.id),
            Some(&owner.token),
            None,
        )
        .await;
    assert_eq!(s, 204);

    // The moderator manages roles below theirs but not their own or above, and cannot grant
    // permissions they lack.
    let (s, _) = app
        .patch(
            &format!("/servers/{sid}/roles/{helper_id}"),
            &modr.token,
            json!({"color": 255}),
        )
        .await;
    assert_eq!(s, 200);
    let (s, _) = app
        .patch(
            &format!("/servers/{sid}/roles/{mod_role_id}"),
            &modr.token,
            json!({"color": 255}),
        )
        .await;
    assert_eq!(s, 403, "own top role");
    let admin = (1i64 << 3).to_string();
    let (s, _) = app
        .patch(
            &format!("/servers/{sid}/roles/{helper_id}"),
            &modr.token,
            json!({"permissions": admin}),
        )
        .await;
    assert_eq!(s, 403, "cannot grant ADMINISTRATOR");
    let (s, _) = app
        .request(
            Method::PUT,
            &format!("/servers/{sid}/members/{}/roles/{helper_id}", member.id),
            Some(&modr.token),
            None,
        )
        .await;
    assert_eq!(s, 204);
    let (s, _) = app
        .request(
            Method::PUT,
            &format!("/servers/{sid}/members/{}/roles/{mod_role_id}", member.id),
            Some(&modr.token),
            None,
        )
        .await;
    assert_eq!(s, 403, "cannot hand out their own top role");

    // Overwrites: @everyone may not send in #general, Helpers may.
    let deny_send = json!({"type": "role", "deny": SEND.to_string()});
    let (s, ow) = app
        .request(
            Method::PUT,
            &format!("/channels/{text}/permissions/{sid}"),
            Some(&owner.token),
            Some(deny_send),
        )
        .await;
    assert_eq!(s, 200, "{ow}");
    let (s, _) = app
        .post(
            &format!("/channels/{text}/messages"),
            &other.token,
            json!({"content": "can I?"}),
        )
        .await;
    assert_eq!(s, 403, "@everyone deny");
    let (s, _) = app
        .request(
            Method::PUT,
            &format!("/channels/{text}/permissions/{helper_id}"),
            Some(&owner.token),
            Some(json!({"type": "role", "allow": SEND.to_string()})),
        )
        .await;
    assert_eq!(s, 200);
    let (s, _) = app
        .post(
            &format!("/channels/{text}/messages"),
            &member.token,
            json!({"content": "helper speaks"}),
        )
        .await;
    assert_eq!(s, 201, "role allow beats @everyone deny");
    // A member overwrite denying VIEW hides the channel entirely.
    let (s, _) = app
        .request(
            Method::PUT,
            &format!("/channels/{text}/permissions/{}", member.id),
            Some(&owner.token),
            Some(json!({"type": "member", "deny": VIEW.to_string()})),
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(
        app.get(&format!("/channels/{text}/messages"), &member.token)
            .await
            .0,
        404
    );
    let (_, ows) = app
        .get(&format!("/channels/{text}/permissions"), &owner.token)
        .await;
    assert_eq!(ows.as_array().unwrap().len(), 3);
    assert_eq!(
        app.delete(
            &format!("/channels/{text}/permissions/{}", member.id),
            &owner.token
        )
        .await
        .0,
        204
    );
    assert_eq!(
        app.get(&format!("/channels/{text}/messages"), &member.token)
            .await
            .0,
        200
    );

    // Timeout: the member can read but not send.
    let until = (chrono::Utc::now() + chrono::Duration::minutes(10)).to_rfc3339();
    let (s, m) = app
        .patch(
            &format!("/servers/{sid}/members/{}", member.id),
            &modr.token,
            json!({"timeout_until": until}),
        )
        .await;
    assert_eq!(s, 200, "{m}");
    assert_eq!(
        app.get(&format!("/channels/{text}/messages"), &member.token)
            .await
            .0,
        200
    );
    assert_eq!(
        app.post(
            &format!("/channels/{text}/messages"),
            &member.token,
            json!({"content": "muted?"})
        )
        .await
        .0,
        403
    );
    let (s, _) = app
        .patch(
            &format!("/servers/{sid}/members/{}", member.id),
            &modr.token,
            json!({"timeout_until": null}),
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(
        app.post(
            &format!("/channels/{text}/messages"),
            &member.token,
            json!({"content": "back"})
        )
        .await
        .0,
        201
    );

    // Hierarchy in moderation: a member cannot kick; the moderator cannot touch the owner.
    assert_eq!(
        app.delete(
            &format!("/servers/{sid}/members/{}", other.id),
            &member.token
        )
        .await
        .0,
        403
    );
    assert_eq!(
        app.delete(&format!("/servers/{sid}/members/{}", owner.id), &modr.token)
            .await
            .0,
        403
    );
    // Kick, then ban with message deletion: banned users cannot rejoin.
    let (s, _) = app
        .http
        .delete(app.url(&format!("/servers/{sid}/members/{}", other.id)))
        .bearer_auth(&modr.token)
        .header("X-Audit-Log-Reason", "spam%20%C3%A9")
        .send()
        .await
        .map(|r| (r.status().as_u16(), ()))
        .unwrap();
    assert_eq!(s, 204);
    app.join(&owner, &other, &sid).await;
    app.post(
        &format!("/channels/{text}/messages"),
        &member.token,
        json!({"content": "kept"}),
    )
    .await;
    let (s, _) = app
        .request(
            Method::PUT,
            &format!("/servers/{sid}/bans/{}", member.id),
            Some(&modr.token),
            Some(json!({"delete_message_seconds": 3600})),
        )
        .await;
    assert_eq!(s, 204);
    assert_eq!(
        app.get(&format!("/servers/{sid}"), &member.token).await.0,
        404
    );
    let (_, inv) = app
        .post(&format!("/servers/{sid}/invites"), &owner.token, json!({}))
        .await;
    let code = inv["code"].as_str().unwrap();
    let (s, _) = app
        .request(
            Method::POST,
            &format!("/invites/{code}"),
            Some(&member.token),
            None,
        )
        .await;
    assert_eq!(s, 403, "banned users cannot rejoin");
    let (_, page) = app
        .get(
            &format!("/channels/{text}/messages?limit=100"),
            &owner.token,
        )
        .await;
    assert!(
        !page
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["author"]["id"] == member.id.as_str()),
        "the banned member's recent messages are gone"
    );
    let (_, bans) = app.get(&format!("/servers/{sid}/bans"), &modr.token).await;
    assert_eq!(bans.as_array().unwrap().len(), 1);
    assert_eq!(
        app.delete(&format!("/servers/{sid}/bans/{}", member.id), &modr.token)
            .await
            .0,
        204
    );
    assert_eq!(
        app.request(
            Method::POST,
            &format!("/invites/{code}"),
            Some(&member.token),
            None
        )
        .await
        .0,
        200
    );

    // Audit log: VIEW_AUDIT_LOG only; actions recorded with reasons; filters work.
    assert_eq!(
        app.get(&format!("/servers/{sid}/audit-log"), &other.token)
            .await
            .0,
        403
    );
    let (s, log) = app
        .get(&format!("/servers/{sid}/audit-log?limit=100"), &modr.token)
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
    assert_eq!(kick["target_id"], other.id.as_str());
    let (_, only) = app
        .get(
            &format!("/servers/{sid}/audit-log?action=member_kick"),
            &owner.token,
        )
        .await;
    assert_eq!(only.as_array().unwrap().len(), 1);
    let (_, by_owner) = app
        .get(
            &format!("/servers/{sid}/audit-log?user_id={}&limit=100", owner.id),
            &owner.token,
        )
        .await;
    assert!(by_owner
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["actor_id"] == owner.id.as_str()));
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
    let (_, secret) = app
        .post(
            &format!("/servers/{sid}/channels"),
            &owner.token,
            json!({"name": "staff"}),
        )
        .await;
    let secret = secret["id"].as_str().unwrap().to_string();
    let (mut g, _) = app.identified(&guest).await;

    // Visible: the guest gets it.
    app.post(
        &format!("/channels/{secret}/messages"),
        &owner.token,
        json!({"content": "before"}),
    )
    .await;
    assert_eq!(g.expect(Event::MessageCreate).await["content"], "before");

    // Hide it from @everyone: nothing more arrives from it, while #general still flows.
    let (s, _) = app
        .request(
            Method::PUT,
            &format!("/channels/{secret}/permissions/{sid}"),
            Some(&owner.token),
            Some(json!({"type": "role", "deny": VIEW.to_string()})),
        )
        .await;
    assert_eq!(s, 200);
    app.post(
        &format!("/channels/{secret}/messages"),
        &owner.token,
        json!({"content": "hidden"}),
    )
    .await;
    app.request(
        Method::POST,
        &format!("/channels/{secret}/typing"),
        Some(&owner.token),
        None,
    )
    .await;
    app.post(
        &format!("/channels/{text}/messages"),
        &owner.token,
        json!({"content": "public"}),
    )
    .await;
    let mut got = vec![];
    while let Some(v) = g.next_within(std::time::Duration::from_millis(700)).await {
        if v["t"] == "MESSAGE_CREATE" || v["t"] == "TYPING_START" {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reactions_pins_and_invite_revocation() {
    let app = TestApp::spawn().await;
    let owner = app.register("pinner").await;
    let fan = app.register("reactor").await;
    let Server { id: sid, text, .. } = app.server(&owner, "R").await;
    app.join(&owner, &fan, &sid).await;
    let (_, m) = app
        .post(
            &format!("/channels/{text}/messages"),
            &owner.token,
            json!({"content": "react to me"}),
        )
        .await;
    let mid = m["id"].as_str().unwrap();
    let (mut g, _) = app.identified(&owner).await;

    let thumbs = "%F0%9F%91%8D"; // 👍
    let path = format!("/channels/{text}/messages/{mid}/reactions/{thumbs}");
    assert_eq!(
        app.request(Method::PUT, &path, Some(&fan.token), None)
            .await
            .0,
        204
    );
    assert_eq!(
        app.request(Method::PUT, &path, Some(&fan.token), None)
            .await
            .0,
        204,
        "idempotent"
    );
    let ev = g.expect(Event::MessageReactionAdd).await;
    assert_eq!(ev["emoji"], "👍");
    assert_eq!(ev["user_id"], fan.id.as_str());
    let (s, who) = app.get(&path, &owner.token).await;
    assert_eq!(s, 200);
    assert_eq!(who.as_array().unwrap().len(), 1);
    let bad = format!("/channels/{text}/messages/{mid}/reactions/%3Cb%3E");
    assert_eq!(
        app.request(Method::PUT, &bad, Some(&fan.token), None)
            .await
            .0,
        400
    );
    assert_eq!(app.delete(&path, &fan.token).await.0, 204);
    assert_eq!(g.expect(Event::MessageReactionRemove).await["emoji"], "👍");

    // Pins: only with MANAGE_MESSAGES.
    assert_eq!(
        app.request(
            Method::PUT,
            &format!("/channels/{text}/pins/{mid}"),
            Some(&fan.token),
            None
        )
        .await
        .0,
        403
    );
    assert_eq!(
        app.request(
            Method::PUT,
            &format!("/channels/{text}/pins/{mid}"),
            Some(&owner.token),
            None
        )
        .await
        .0,
        204
    );
    g.expect(Event::ChannelPinsUpdate).await;
    let (_, pins) = app.get(&format!("/channels/{text}/pins"), &fan.token).await;
    assert_eq!(pins[0]["id"], mid);
    assert_eq!(
        app.delete(&format!("/channels/{text}/pins/{mid}"), &owner.token)
            .await
            .0,
        204
    );
    assert_eq!(
        app.get(&format!("/channels/{text}/pins"), &fan.token)
            .await
            .1
            .as_array()
            .unwrap()
            .len(),
        0
    );

    // Invites: listed for managers, revoked by their creator; a revoked invite no longer works.
    let (_, inv) = app
        .post(&format!("/servers/{sid}/invites"), &fan.token, json!({}))
        .await;
    let code = inv["code"].as_str().unwrap();
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
    assert_eq!(
        app.request(
            Method::POST,
            &format!("/invites/{code}"),
            Some(&late.token),
            None
        )
        .await
        .0,
        404
    );
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
    let (_, role) = app
        .post(
            &format!("/servers/{sid}/roles"),
            &owner.token,
            json!({"name": "team"}),
        )
        .await;
    let role_id = role["id"].as_str().unwrap().to_string();
    let (mut g, _) = app.identified(&friend).await;

    let (_, first) = app
        .post(
            &format!("/channels/{text}/messages"),
            &owner.token,
            json!({"content": "first"}),
        )
        .await;
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
    loop {
        let ev = g.expect(Event::MessageCreate).await;
        if ev["id"] == m["id"] {
            assert_eq!(ev["mentions"], json!([friend.id]));
            break;
        }
    }
    // A plain member's @everyone is not a mention (no MENTION_EVERYONE by default).
    let (_, m2) = app
        .post(
            &format!("/channels/{text}/messages"),
            &friend.token,
            json!({"content": "@everyone look"}),
        )
        .await;
    assert_eq!(m2["mention_everyone"], false);
    // A plain member pings a role only when it is mentionable.
    let role_msg = format!("<@&{role_id}> ping");
    let (_, m3) = app
        .post(
            &format!("/channels/{text}/messages"),
            &friend.token,
            json!({"content": role_msg}),
        )
        .await;
    assert_eq!(m3["mention_roles"], json!([]), "not mentionable: {m3}");
    let (s, _) = app
        .patch(
            &format!("/servers/{sid}/roles/{role_id}"),
            &owner.token,
            json!({"mentionable": true}),
        )
        .await;
    assert_eq!(s, 200);
    let (_, m4) = app
        .post(
            &format!("/channels/{text}/messages"),
            &friend.token,
            json!({"content": role_msg}),
        )
        .await;
    assert_eq!(m4["mention_roles"], json!([role_id]), "mentionable: {m4}");
    // Mentions in code and @everyone inside an address are not mentions.
    let (_, m5) = app
        .post(
            &format!("/channels/{text}/messages"),
            &owner.token,
            json!({"content": format!("`<@{}>` ops@here.example", friend.id)}),
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
    let (_, other) = app
        .post(
            &format!("/servers/{sid}/channels"),
            &owner.token,
            json!({"name": "other"}),
        )
        .await;
    let other_id = other["id"].as_str().unwrap();
    let (s, _) = app
        .post(
            &format!("/channels/{other_id}/messages"),
            &owner.token,
            json!({"content": "x", "reply_to": first_id}),
        )
        .await;
    assert_eq!(s, 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn temporary_members_leave_when_they_go_offline_unless_given_a_role() {
    let app = TestApp::spawn_with(|c| c.rate_limit_scale = 100.0).await;
    let owner = app.register("tmp_owner").await;
    let guest = app.register("tmp_guest").await;
    let kept = app.register("tmp_kept").await;
    let Server { id: sid, .. } = app.server(&owner, "Temp").await;
    let (s, inv) = app
        .post(
            &format!("/servers/{sid}/invites"),
            &owner.token,
            json!({"temporary": true}),
        )
        .await;
    assert_eq!((s, inv["temporary"].as_bool()), (201, Some(true)), "{inv}");
    let code = inv["code"].as_str().unwrap().to_string();
    let (mut go, _) = app.identified(&owner).await;

    // Both join online through the temporary invite; `kept` is then given a role.
    let (mut gg, _) = app.identified(&guest).await;
    let (mut gk, _) = app.identified(&kept).await;
    for u in [&guest, &kept] {
        let (s, _) = app
            .request(
                Method::POST,
                &format!("/invites/{code}"),
                Some(&u.token),
                None,
            )
            .await;
        assert_eq!(s, 200);
    }
    let (_, role) = app
        .post(
            &format!("/servers/{sid}/roles"),
            &owner.token,
            json!({"name": "stays"}),
        )
        .await;
    let (s, _) = app
        .request(
            Method::PUT,
            &format!(
                "/servers/{sid}/members/{}/roles/{}",
                kept.id,
                role["id"].as_str().unwrap()
            ),
            Some(&owner.token),
            None,
        )
        .await;
    assert_eq!(s, 204);

    // A second session keeps the guest a member; closing the last one removes them.
    let (mut gg2, _) = app.identified(&guest).await;
    gg.ws.close(None).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(member_count(&app, &owner, &sid).await, 3);
    gg2.ws.close(None).await.unwrap();
    loop {
        let ev = go.expect(Event::MemberRemove).await;
        if ev["user_id"] == guest.id.as_str() {
            break;
        }
    }
    gk.ws.close(None).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let (_, members) = app
        .get(&format!("/servers/{sid}/members"), &owner.token)
        .await;
    let ids: Vec<&str> = members
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["user"]["id"].as_str().unwrap())
        .collect();
    assert!(!ids.contains(&guest.id.as_str()), "temporary member stayed");
    assert!(
        ids.contains(&kept.id.as_str()),
        "a member with a role stays"
    );
    // An ordinary invite's members stay when offline.
    let plain = app.register("tmp_plain").await;
    app.join(&owner, &plain, &sid).await;
    let (gp, _) = app.identified(&plain).await;
    drop(gp);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(member_count(&app, &owner, &sid).await, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn temporary_members_who_never_come_online_are_let_go_after_the_grace() {
    use confab_signaling::gateway::temporary;
    let app = TestApp::spawn_with(|c| c.rate_limit_scale = 100.0).await;
    let owner = app.register("tmp2_owner").await;
    let ghost = app.register("tmp2_ghost").await;
    let online = app.register("tmp2_online").await;
    let Server { id: sid, .. } = app.server(&owner, "Temp2").await;
    let (_, inv) = app
        .post(
            &format!("/servers/{sid}/invites"),
            &owner.token,
            json!({"temporary": true}),
        )
        .await;
    let code = inv["code"].as_str().unwrap().to_string();
    // `ghost` accepts over REST and never opens the gateway; `online` does.
    let (_go, _) = app.identified(&online).await;
    for u in [&ghost, &online] {
        let (s, _) = app
            .request(
                Method::POST,
                &format!("/invites/{code}"),
                Some(&u.token),
                None,
            )
            .await;
        assert_eq!(s, 200);
    }
    assert_eq!(member_count(&app, &owner, &sid).await, 3);
    let state = &app.running.as_ref().unwrap().state;
    // Within the grace nobody goes.
    assert_eq!(temporary::sweep(state, temporary::GRACE).await, 0);
    assert_eq!(member_count(&app, &owner, &sid).await, 3);
    // After it, the one without any gateway session goes; the online one stays.
    assert_eq!(temporary::sweep(state, std::time::Duration::ZERO).await, 1);
    let (_, members) = app
        .get(&format!("/servers/{sid}/members"), &owner.token)
        .await;
    let ids: Vec<&str> = members
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["user"]["id"].as_str().unwrap())
        .collect();
    assert!(!ids.contains(&ghost.id.as_str()), "the ghost stayed");
    assert!(ids.contains(&online.id.as_str()), "an online member went");
}

async fn member_count(app: &TestApp, owner: &common::User, sid: &str) -> usize {
    let (_, members) = app
        .get(&format!("/servers/{sid}/members"), &owner.token)
        .await;
    members.as_array().unwrap().len()
}
