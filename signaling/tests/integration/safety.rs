//! Safety at scale (docs/safety.md): automod rules refuse messages before they are stored
//! (checked in the database), alert a channel and time authors out; raid protection turns on
//! with a join burst and holds newcomers back; reports reach only moderators, who act on
//! them; every action is in the audit log.

use crate::common::{Event, TestApp, User};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const MODERATE_MEMBERS: i64 = 1 << 40;
const MANAGE_MESSAGES: i64 = 1 << 13;
const BAN_MEMBERS: i64 = 1 << 2;

async fn app() -> TestApp {
    TestApp::spawn_with(|c| c.rate_limit_scale = 100.0).await
}

async fn db(app: &TestApp) -> sqlx::PgPool {
    sqlx::PgPool::connect(&app.database_url()).await.unwrap()
}

/// Messages in `channel_id` whose content contains `needle`, read from the database.
async fn stored(pool: &sqlx::PgPool, channel_id: &str, needle: &str) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM messages WHERE channel_id = $1::bigint AND strpos(content, $2) > 0",
    )
    .bind(channel_id)
    .bind(needle)
    .fetch_one(pool)
    .await
    .unwrap()
}

async fn rule(app: &TestApp, owner: &User, sid: &str, body: Value) -> Value {
    let (s, r) = app
        .post(&format!("/servers/{sid}/automod/rules"), &owner.token, body)
        .await;
    assert_eq!(s, 201, "{r}");
    r
}

async fn audit(app: &TestApp, owner: &User, sid: &str, action: &str) -> Vec<Value> {
    let (s, v) = app
        .get(
            &format!("/servers/{sid}/audit-log?action={action}"),
            &owner.token,
        )
        .await;
    assert_eq!(s, 200, "{v}");
    v.as_array().unwrap().clone()
}

/// Asserts a send was refused by automod, naming `rule_name`.
fn assert_blocked(status: u16, body: &Value, rule_name: &str) {
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["code"], 200000, "{body}");
    let m = body["message"].as_str().unwrap();
    assert!(m.contains(rule_name), "{m}");
    assert_eq!(body["errors"]["content"][0], m, "{body}");
}

#[tokio::test]
async fn blocked_words_patterns_mentions_and_invites_are_not_stored() {
    let app = app().await;
    let owner = app.register("am_owner").await;
    let member = app.register("am_member").await;
    let stranger = app.register("am_stranger").await;
    let s = app.server(&owner, "Automod").await;
    app.join(&owner, &member, &s.id).await;
    let pool = db(&app).await;

    rule(
        &app,
        &owner,
        &s.id,
        json!({"name": "No swearing", "kind": "keyword",
        "keywords": ["darn", "heck*", "*crud"], "block_message": "Please keep it civil."}),
    )
    .await;
    rule(
        &app,
        &owner,
        &s.id,
        json!({"name": "No nitro scams", "kind": "regex",
        "patterns": [r"fr[e3]{2}\s*nitro"]}),
    )
    .await;
    rule(
        &app,
        &owner,
        &s.id,
        json!({"name": "Mention spam", "kind": "mention_spam", "mention_limit": 2}),
    )
    .await;
    rule(
        &app,
        &owner,
        &s.id,
        json!({"name": "No invites", "kind": "invites",
        "allowed_domains": ["confab.example"]}),
    )
    .await;

    let cases = [
        ("well DARN it", "No swearing"),
        ("what the heckity", "No swearing"),
        ("such supercrud", "No swearing"),
        ("get FR33 nitro here", "No nitro scams"),
        ("<@1> <@2> <@3> hi", "Mention spam"),
        (
            "join us https://elsewhere.example/invite/abcDEF12",
            "No invites",
        ),
        ("join discord.gg/xyzzy", "No invites"),
    ];
    for (content, name) in cases {
        let (st, body) = app.try_message(&member, &s.text, content).await;
        assert_blocked(st, &body, name);
        assert_eq!(stored(&pool, &s.text, content).await, 0, "{content} stored");
    }
    // The sender is told the rule's own message.
    let (st, body) = app.try_message(&member, &s.text, "darn").await;
    assert_eq!(st, 400);
    assert_eq!(
        body["message"],
        "Blocked by AutoMod rule \"No swearing\": Please keep it civil."
    );
    // Whole words only, and allowed invites and plain text pass.
    for ok in [
        "darning socks",
        "<@1> <@2> two is fine",
        "https://confab.example/invite/abcDEF12",
        "free as in freedom, nitro as in cold brew",
    ] {
        app.message(&member, &s.text, ok).await;
        assert_eq!(stored(&pool, &s.text, ok).await, 1);
    }
    // History shows none of the blocked messages (what other members would see).
    let (_, history) = app
        .get(
            &format!("/channels/{}/messages?limit=100", s.text),
            &owner.token,
        )
        .await;
    let contents: Vec<&str> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["content"].as_str().unwrap())
        .collect();
    assert!(!contents
        .iter()
        .any(|c| c.contains("DARN") || c.contains("FR33")));
    // An edit cannot bring a blocked word in; the stored content stays.
    let m = app.message(&member, &s.text, "a clean line").await;
    let (st, body) = app
        .patch(
            &format!(
                "/channels/{}/messages/{}",
                s.text,
                m["id"].as_str().unwrap()
            ),
            &member.token,
            json!({"content": "a darn line"}),
        )
        .await;
    assert_blocked(st, &body, "No swearing");
    assert_eq!(stored(&pool, &s.text, "a darn line").await, 0);
    assert_eq!(stored(&pool, &s.text, "a clean line").await, 1);
    // A stranger's attempt is a plain 404 and triggers nothing.
    let before = audit(&app, &owner, &s.id, "automod_trigger").await.len();
    let (st, _) = app.try_message(&stranger, &s.text, "darn").await;
    assert_eq!(st, 404);
    let triggers = audit(&app, &owner, &s.id, "automod_trigger").await;
    assert_eq!(triggers.len(), before);
    // Every refusal was audit-logged with the rule and the author.
    assert_eq!(triggers.len(), cases.len() + 2);
    let t = &triggers[0];
    assert_eq!(t["target_id"], member.id.as_str());
    assert_eq!(t["actor_id"], Value::Null);
    assert_eq!(t["changes"]["rule_name"], "No swearing");
    assert_eq!(t["changes"]["actions"], json!(["block"]));
    // The owner is exempt (as are administrators and MANAGE_SERVER).
    app.message(&owner, &s.text, "darn, says the owner").await;
}

#[tokio::test]
async fn bad_rules_are_refused_and_hostile_patterns_cannot_hang_a_send() {
    let app = app().await;
    let owner = app.register("hr_owner").await;
    let member = app.register("hr_member").await;
    let s = app.server(&owner, "Regexes").await;
    app.join(&owner, &member, &s.id).await;
    let path = format!("/servers/{}/automod/rules", s.id);
    for (body, field) in [
        (
            json!({"name": "x", "kind": "regex", "patterns": [r"\w{1000}{1000}"]}),
            "patterns",
        ),
        (
            json!({"name": "x", "kind": "regex", "patterns": ["(unclosed"]}),
            "patterns",
        ),
        (
            json!({"name": "x", "kind": "keyword", "keywords": []}),
            "keywords",
        ),
        (
            json!({"name": "x", "kind": "keyword", "keywords": ["*"]}),
            "keywords",
        ),
        (
            json!({"name": "x", "kind": "mention_spam", "mention_limit": 0}),
            "mention_limit",
        ),
        // A field another kind uses is still checked: the column refuses it otherwise.
        (
            json!({"name": "x", "kind": "keyword", "keywords": ["a"], "mention_limit": 0}),
            "mention_limit",
        ),
        (
            json!({"name": "x", "kind": "links", "allowed_domains": ["not a domain"]}),
            "allowed_domains",
        ),
        (
            json!({"name": "x", "kind": "keyword", "keywords": ["a"], "block": false}),
            "block",
        ),
        (
            json!({"name": "x", "kind": "keyword", "keywords": ["a"], "alert_channel_id": s.voice}),
            "alert_channel_id",
        ),
        (
            json!({"name": "", "kind": "keyword", "keywords": ["a"]}),
            "name",
        ),
    ] {
        let (st, e) = app.post(&path, &owner.token, body.clone()).await;
        assert_eq!(st, 400, "{body}: {e}");
        assert_eq!(e["code"], 50035);
        assert!(e["errors"][field].is_array(), "{body}: {e}");
    }
    let (st, e) = app
        .post(&path, &owner.token, json!({"name": "x", "kind": "nope"}))
        .await;
    assert_eq!(st, 400, "{e}");
    // A pattern that backtracking engines take exponential time on runs in linear time.
    rule(
        &app,
        &owner,
        &s.id,
        json!({"name": "Evil", "kind": "regex", "patterns": ["(a+)+$", "(a|aa)+b"]}),
    )
    .await;
    let content = "a".repeat(3999) + "!";
    let t = Instant::now();
    app.message(&member, &s.text, &content).await;
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
}

#[tokio::test]
async fn exemptions_alerts_and_timeouts() {
    let app = app().await;
    let owner = app.register("ex_owner").await;
    let spammer = app.register("ex_spammer").await;
    let trusted = app.register("ex_trusted").await;
    let s = app.server(&owner, "Exempt").await;
    for u in [&spammer, &trusted] {
        app.join(&owner, u, &s.id).await;
    }
    let mods = app.channel(&owner, &s.id, "text", "mod-log").await;
    let offtopic = app.channel(&owner, &s.id, "text", "links-ok").await;
    let role = app.role(&owner, &s.id, "trusted", 0).await;
    app.give_role(&owner, &s.id, &trusted, &role).await;
    let r = rule(
        &app,
        &owner,
        &s.id,
        json!({"name": "No links", "kind": "links",
        "allowed_domains": ["example.com"], "alert_channel_id": mods, "timeout_seconds": 600,
        "exempt_roles": [role], "exempt_channels": [offtopic]}),
    )
    .await;
    assert_eq!(r["exempt_roles"], json!([role]));
    let pool = db(&app).await;
    let (mut gw, _) = app.identified(&owner).await;

    // Exempt by role, by channel, and allowed domains pass.
    app.message(&trusted, &s.text, "see https://trusted.example.net")
        .await;
    app.message(&spammer, &offtopic, "see https://offtopic.example.net")
        .await;
    app.message(&spammer, &s.text, "see https://docs.example.com/x")
        .await;

    let (st, body) = app
        .try_message(
            &spammer,
            &s.text,
            "cheap pills https://spam.example.net/buy",
        )
        .await;
    assert_blocked(st, &body, "No links");
    assert_eq!(stored(&pool, &s.text, "cheap pills").await, 0);
    // The alert is in the moderators' channel, live and in history, naming the author.
    let alert = gw
        .expect_where(Event::MessageCreate, |d| d["channel_id"] == mods.as_str())
        .await;
    let text = alert["content"].as_str().unwrap();
    assert!(
        text.contains("No links") && text.contains("cheap pills"),
        "{text}"
    );
    assert!(text.contains(&format!("<@{}>", spammer.id)), "{text}");
    assert_eq!(alert["flags"].as_i64().unwrap() & (1 << 24), 1 << 24);
    assert_eq!(stored(&pool, &mods, "cheap pills").await, 1);
    // The author is timed out: members see it, and a clean message is now refused.
    let upd = gw
        .expect_where(Event::MemberUpdate, |d| {
            d["user"]["id"] == spammer.id.as_str()
        })
        .await;
    let until: chrono::DateTime<chrono::Utc> =
        upd["timeout_until"].as_str().unwrap().parse().unwrap();
    let left = until - chrono::Utc::now();
    assert!(left > chrono::Duration::seconds(500) && left <= chrono::Duration::seconds(600));
    let (st, _) = app.try_message(&spammer, &s.text, "just saying hi").await;
    assert_eq!(st, 403);
    assert_eq!(stored(&pool, &s.text, "just saying hi").await, 0);
    let t = audit(&app, &owner, &s.id, "automod_trigger").await;
    assert_eq!(t.len(), 1);
    assert_eq!(
        t[0]["changes"]["actions"],
        json!(["block", "alert", "timeout"])
    );
    assert_eq!(t[0]["changes"]["matched"], "spam.example.net");
}

#[tokio::test]
async fn rules_need_manage_server_and_every_change_applies_at_once() {
    let app = app().await;
    let owner = app.register("rc_owner").await;
    let member = app.register("rc_member").await;
    let s = app.server(&owner, "Rules").await;
    app.join(&owner, &member, &s.id).await;
    let path = format!("/servers/{}/automod/rules", s.id);
    let body = json!({"name": "w", "kind": "keyword", "keywords": ["zonk"]});
    assert_eq!(app.post(&path, &member.token, body.clone()).await.0, 403);
    assert_eq!(app.get(&path, &member.token).await.0, 403);
    let r = rule(&app, &owner, &s.id, body).await;
    let id = r["id"].as_str().unwrap();
    let (st, _) = app.try_message(&member, &s.text, "zonk").await;
    assert_eq!(st, 400);
    // Alert only (no block): stored, and audited as flagged.
    let mods = app.channel(&owner, &s.id, "text", "mods").await;
    let (st, r2) = app
        .patch(
            &format!("{path}/{id}"),
            &owner.token,
            json!({"block": false, "alert_channel_id": mods}),
        )
        .await;
    assert_eq!(st, 200, "{r2}");
    app.message(&member, &s.text, "zonk once").await;
    let (st, _) = app
        .patch(
            &format!("{path}/{id}"),
            &owner.token,
            json!({"keywords": ["blip"], "block": true}),
        )
        .await;
    assert_eq!(st, 200);
    app.message(&member, &s.text, "zonk twice").await;
    assert_eq!(app.try_message(&member, &s.text, "blip").await.0, 400);
    assert_eq!(
        app.delete(&format!("{path}/{id}"), &member.token).await.0,
        403
    );
    assert_eq!(
        app.delete(&format!("{path}/{id}"), &owner.token).await.0,
        204
    );
    app.message(&member, &s.text, "blip").await;
    for action in [
        "automod_rule_create",
        "automod_rule_update",
        "automod_rule_delete",
    ] {
        assert!(
            !audit(&app, &owner, &s.id, action).await.is_empty(),
            "{action}"
        );
    }
    let updates = audit(&app, &owner, &s.id, "automod_rule_update").await;
    assert_eq!(updates.len(), 2);
    assert_eq!(updates[0]["changes"]["keywords"]["new"], json!(["blip"]));
    let flagged = audit(&app, &owner, &s.id, "automod_trigger").await;
    assert_eq!(flagged.len(), 3, "{flagged:?}");
    assert_eq!(flagged[0]["changes"]["actions"], json!(["block", "alert"]));
    assert_eq!(flagged[1]["changes"]["actions"], json!(["alert"]));
    assert_eq!(stored(&db(&app).await, &mods, "zonk once").await, 1);
    // Another server's rule is unknown here.
    let other = app.server(&owner, "Other").await;
    assert_eq!(
        app.patch(
            &format!("/servers/{}/automod/rules/{id}", other.id),
            &owner.token,
            json!({"enabled": false})
        )
        .await
        .0,
        404
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn join_burst_turns_raid_mode_on_and_holds_newcomers() {
    let app = app().await;
    let owner = app.register("rd_owner").await;
    let s = app.server(&owner, "Raided").await;
    let alerts = app.channel(&owner, &s.id, "text", "alerts").await;
    let (st, set) = app
        .patch(
            &format!("/servers/{}/safety", s.id),
            &owner.token,
            json!({"raid_join_threshold": 5, "raid_join_window_secs": 30,
                   "raid_restrict_minutes": 10, "alert_channel_id": alerts}),
        )
        .await;
    assert_eq!(st, 200, "{set}");
    assert_eq!(set["raid_mode"], false);
    let mut users = Vec::new();
    for i in 0..7 {
        users.push(app.register(&format!("rd_user{i}")).await);
    }
    let code = app.invite(&owner, &s.id).await;
    let (mut gw, _) = app.identified(&owner).await;
    // Four joins: below the threshold.
    for u in &users[..4] {
        assert_eq!(app.accept_invite(u, &code).await.0, 200);
    }
    let (_, now) = app
        .get(&format!("/servers/{}/safety", s.id), &owner.token)
        .await;
    assert_eq!(now["raid_mode"], false);
    // The fifth crosses it: raid mode is on within 2 s, moderators are told, the alert posted.
    let crossed = Instant::now();
    assert_eq!(app.accept_invite(&users[4], &code).await.0, 200);
    // The alert is posted first, then moderators are told.
    let alert = gw
        .expect_where(Event::MessageCreate, |d| d["channel_id"] == alerts.as_str())
        .await;
    assert!(alert["content"]
        .as_str()
        .unwrap()
        .contains("raid mode is on"));
    let d = gw
        .expect_where(Event::RaidModeUpdate, |d| d["raid_mode"] == true)
        .await;
    assert!(
        crossed.elapsed() < Duration::from_secs(2),
        "{:?}",
        crossed.elapsed()
    );
    assert_eq!(d["server_id"], s.id.as_str());
    assert_eq!(d["joins"], 5);
    let (_, now) = app
        .get(&format!("/servers/{}/safety", s.id), &owner.token)
        .await;
    assert_eq!(now["raid_mode"], true);
    let on = audit(&app, &owner, &s.id, "raid_mode_enable").await;
    assert_eq!(on.len(), 1);
    assert_eq!(on[0]["changes"]["joins"], 5);

    // Members who joined before raid mode post as usual.
    app.message(&users[0], &s.text, "early bird").await;
    // A newcomer in raid mode: first the "I am human" step, then the posting delay.
    let newcomer = &users[5];
    assert_eq!(app.accept_invite(newcomer, &code).await.0, 200);
    let pool = db(&app).await;
    let (st, e) = app.try_message(newcomer, &s.text, "raider one").await;
    assert_eq!((st, e["code"].as_u64()), (403, Some(200010)), "{e}");
    let (st, _) = app
        .post_empty(
            &format!("/servers/{}/members/@me/verify", s.id),
            &newcomer.token,
        )
        .await;
    assert_eq!(st, 204);
    let (st, e) = app.try_message(newcomer, &s.text, "raider two").await;
    assert_eq!((st, e["code"].as_u64()), (403, Some(200011)), "{e}");
    assert!(e["message"].as_str().unwrap().contains("raid mode"));
    assert_eq!(stored(&pool, &s.text, "raider").await, 0);

    // A plain member cannot turn it off; the owner can (audited), and newcomers then join
    // freely — the one held back stays held back for its minutes.
    let (st, _) = app
        .patch(
            &format!("/servers/{}/safety", s.id),
            &users[0].token,
            json!({"raid_mode": false}),
        )
        .await;
    assert_eq!(st, 403);
    let (st, off) = app
        .patch(
            &format!("/servers/{}/safety", s.id),
            &owner.token,
            json!({"raid_mode": false}),
        )
        .await;
    assert_eq!((st, &off["raid_mode"]), (200, &json!(false)), "{off}");
    gw.expect_where(Event::RaidModeUpdate, |d| d["raid_mode"] == false)
        .await;
    assert_eq!(
        audit(&app, &owner, &s.id, "raid_mode_disable").await.len(),
        1
    );
    assert_eq!(
        app.try_message(newcomer, &s.text, "raider three").await.0,
        403
    );
    // Raising the threshold keeps the next join from turning it on again.
    app.patch(
        &format!("/servers/{}/safety", s.id),
        &owner.token,
        json!({"raid_join_threshold": 100}),
    )
    .await;
    assert_eq!(app.accept_invite(&users[6], &code).await.0, 200);
    app.message(&users[6], &s.text, "after the raid").await;
}

#[tokio::test]
async fn raid_mode_can_refuse_young_accounts_and_verification_levels_gate_posting() {
    let app = app().await;
    let owner = app.register("vl_owner").await;
    let member = app.register("vl_member").await;
    let roled = app.register("vl_roled").await;
    let late = app.register("vl_late").await;
    let s = app.server(&owner, "Levels").await;
    for u in [&member, &roled] {
        app.join(&owner, u, &s.id).await;
    }
    let role = app.role(&owner, &s.id, "regular", 0).await;
    app.give_role(&owner, &s.id, &roled, &role).await;
    let path = format!("/servers/{}/safety", s.id);
    // Low (a verified email) is not offered; a member without MANAGE_SERVER changes nothing.
    let (st, e) = app
        .patch(&path, &owner.token, json!({"verification_level": 1}))
        .await;
    assert_eq!(st, 400);
    assert!(e["errors"]["verification_level"][0]
        .as_str()
        .unwrap()
        .contains("email"));
    assert_eq!(
        app.patch(&path, &member.token, json!({"verification_level": 2}))
            .await
            .0,
        403
    );
    assert_eq!(app.get(&path, &member.token).await.0, 403);
    // Medium: accounts younger than 5 minutes may not post (all of these are); roles bypass.
    assert_eq!(
        app.patch(&path, &owner.token, json!({"verification_level": 2}))
            .await
            .0,
        200
    );
    let (st, e) = app.try_message(&member, &s.text, "too young").await;
    assert_eq!((st, e["code"].as_u64()), (403, Some(50009)), "{e}");
    app.message(&roled, &s.text, "roles bypass").await;
    // High: also members of less than 10 minutes.
    assert_eq!(
        app.patch(&path, &owner.token, json!({"verification_level": 3}))
            .await
            .0,
        200
    );
    assert_eq!(app.try_message(&member, &s.text, "too new").await.0, 403);
    // Highest: every newcomer clicks through first.
    assert_eq!(
        app.patch(&path, &owner.token, json!({"verification_level": 4}))
            .await
            .0,
        200
    );
    let code = app.invite(&owner, &s.id).await;
    assert_eq!(app.accept_invite(&late, &code).await.0, 200);
    let (_, e) = app.try_message(&late, &s.text, "hi").await;
    assert_eq!(e["code"], 200010, "{e}");
    // Back to none: members post again.
    assert_eq!(
        app.patch(&path, &owner.token, json!({"verification_level": 0}))
            .await
            .0,
        200
    );
    app.message(&member, &s.text, "free again").await;
    assert_eq!(audit(&app, &owner, &s.id, "safety_update").await.len(), 4);
    // Raid mode with a minimum account age refuses young accounts at the door.
    let young = app.register("vl_young").await;
    assert_eq!(
        app.patch(
            &path,
            &owner.token,
            json!({"raid_mode": true, "raid_min_account_age_secs": 86400})
        )
        .await
        .0,
        200
    );
    let (st, e) = app.accept_invite(&young, &code).await;
    assert_eq!((st, e["code"].as_u64()), (403, Some(200012)), "{e}");
    assert!(!app.member_ids(&owner, &s.id).await.contains(&young.id));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_reach_only_moderators_who_act_on_them() {
    let app = app().await;
    let owner = app.register("rp_owner").await;
    let moder = app.register("rp_mod").await;
    let author = app.register("rp_author").await;
    let reporter = app.register("rp_reporter").await;
    let bystander = app.register("rp_bystander").await;
    let s = app.server(&owner, "Reports").await;
    for u in [&moder, &author, &reporter, &bystander] {
        app.join(&owner, u, &s.id).await;
    }
    let role = app
        .role(
            &owner,
            &s.id,
            "mods",
            MODERATE_MEMBERS | MANAGE_MESSAGES | BAN_MEMBERS,
        )
        .await;
    app.give_role(&owner, &s.id, &moder, &role).await;
    // Server B, where "moder" moderates too, with a report of its own.
    let b = app.server(&moder, "Other").await;
    app.join(&moder, &bystander, &b.id).await;
    let (mut mod_gw, _) = app.identified(&moder).await;
    let (mut by_gw, _) = app.identified(&bystander).await;

    let m = app.message(&author, &s.text, "something nasty").await;
    let mid = m["id"].as_str().unwrap().to_string();
    let reports = format!("/servers/{}/reports", s.id);
    let (st, r) = app
        .post(
            &reports,
            &reporter.token,
            json!({"message_id": mid, "channel_id": s.text, "reason": "rude"}),
        )
        .await;
    assert_eq!(st, 201, "{r}");
    assert_eq!(r["target_user_id"], author.id.as_str());
    assert_eq!(r["message_content"], "something nasty");
    let rid = r["id"].as_str().unwrap().to_string();
    let live = mod_gw.expect(Event::ReportCreate).await;
    assert_eq!(live["id"], rid.as_str());
    by_gw
        .expect_none(Event::ReportCreate, Duration::from_millis(500))
        .await;

    // Reporters and bystanders see no queue and cannot act.
    for u in [&reporter, &bystander, &author] {
        assert_eq!(app.get(&reports, &u.token).await.0, 403);
        let (st, _) = app
            .post(
                &format!("{reports}/{rid}/resolve"),
                &u.token,
                json!({"action": "dismiss"}),
            )
            .await;
        assert_eq!(st, 403);
    }
    // Bad reports.
    let (st, _) = app
        .post(
            &reports,
            &reporter.token,
            json!({"user_id": reporter.id, "reason": "me"}),
        )
        .await;
    assert_eq!(st, 400);
    let (st, _) = app
        .post(
            &reports,
            &reporter.token,
            json!({"user_id": author.id, "reason": ""}),
        )
        .await;
    assert_eq!(st, 400);
    let (st, _) = app
        .post(
            &reports,
            &reporter.token,
            json!({"message_id": mid, "channel_id": b.text, "reason": "x"}),
        )
        .await;
    assert_eq!(st, 404);
    let outsider = app.register("rp_outsider").await;
    assert_eq!(
        app.post(
            &reports,
            &outsider.token,
            json!({"user_id": author.id, "reason": "x"})
        )
        .await
        .0,
        404
    );

    // No IDOR across servers: B's moderator (who also moderates A) cannot reach A's report
    // through B, and B's report is unknown through A; a non-member of B gets 404 there.
    let (st, rb) = app
        .post(
            &format!("/servers/{}/reports", b.id),
            &bystander.token,
            json!({"user_id": moder.id, "reason": "b"}),
        )
        .await;
    assert_eq!(st, 201, "{rb}");
    let rbid = rb["id"].as_str().unwrap();
    let (st, _) = app
        .post(
            &format!("/servers/{}/reports/{rid}/resolve", b.id),
            &moder.token,
            json!({"action": "dismiss"}),
        )
        .await;
    assert_eq!(st, 404);
    let (st, _) = app
        .post(
            &format!("{reports}/{rbid}/resolve"),
            &moder.token,
            json!({"action": "dismiss"}),
        )
        .await;
    assert_eq!(st, 404);
    assert_eq!(
        app.get(&format!("/servers/{}/reports", b.id), &owner.token)
            .await
            .0,
        404
    );

    // The moderator's queue lists A's report only.
    let (st, q) = app.get(&reports, &moder.token).await;
    assert_eq!(st, 200);
    let ids: Vec<&str> = q
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec![rid.as_str()]);

    // Delete the message: gone for everyone, the report resolved.
    let (st, done) = app
        .post(
            &format!("{reports}/{rid}/resolve"),
            &moder.token,
            json!({"action": "delete_message"}),
        )
        .await;
    assert_eq!(st, 200, "{done}");
    assert_eq!(
        (done["status"].as_str(), done["resolution"].as_str()),
        (Some("resolved"), Some("delete_message"))
    );
    by_gw
        .expect_where(Event::MessageDelete, |d| d["id"] == mid.as_str())
        .await;
    let pool = db(&app).await;
    assert_eq!(stored(&pool, &s.text, "something nasty").await, 0);
    let (st, _) = app
        .post(
            &format!("{reports}/{rid}/resolve"),
            &moder.token,
            json!({"action": "dismiss"}),
        )
        .await;
    assert_eq!(st, 409);

    // Time out the reported user.
    let (_, r2) = app
        .post(
            &reports,
            &reporter.token,
            json!({"user_id": author.id, "reason": "spam"}),
        )
        .await;
    let (st, _) = app
        .post(
            &format!("{reports}/{}/resolve", r2["id"].as_str().unwrap()),
            &moder.token,
            json!({"action": "timeout", "timeout_seconds": 300}),
        )
        .await;
    assert_eq!(st, 200);
    assert_eq!(app.try_message(&author, &s.text, "muted?").await.0, 403);
    // Dismiss one; ban on another.
    let (_, r3) = app
        .post(
            &reports,
            &reporter.token,
            json!({"user_id": bystander.id, "reason": "meh"}),
        )
        .await;
    let (_, d3) = app
        .post(
            &format!("{reports}/{}/resolve", r3["id"].as_str().unwrap()),
            &moder.token,
            json!({"action": "dismiss"}),
        )
        .await;
    assert_eq!(d3["status"], "dismissed");
    let (_, r4) = app
        .post(
            &reports,
            &reporter.token,
            json!({"user_id": author.id, "reason": "again"}),
        )
        .await;
    let (st, _) = app
        .post(
            &format!("{reports}/{}/resolve", r4["id"].as_str().unwrap()),
            &moder.token,
            json!({"action": "ban"}),
        )
        .await;
    assert_eq!(st, 200);
    let (_, bans) = app
        .get(&format!("/servers/{}/bans", s.id), &owner.token)
        .await;
    assert!(bans
        .as_array()
        .unwrap()
        .iter()
        .any(|b| b["user_id"] == author.id.as_str()));
    // The open queue is empty; "all" shows the four; the audit log has each resolution.
    assert_eq!(app.get(&reports, &moder.token).await.1, json!([]));
    assert_eq!(
        app.get(&format!("{reports}?status=all"), &moder.token)
            .await
            .1
            .as_array()
            .unwrap()
            .len(),
        4
    );
    let resolved = audit(&app, &owner, &s.id, "report_resolve").await;
    let actions: Vec<&str> = resolved
        .iter()
        .map(|e| e["changes"]["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, vec!["ban", "dismiss", "timeout", "delete_message"]);
    assert!(resolved.iter().all(|e| e["actor_id"] == moder.id.as_str()));
    assert_eq!(audit(&app, &owner, &s.id, "member_timeout").await.len(), 1);
    assert_eq!(audit(&app, &owner, &s.id, "member_ban_add").await.len(), 1);
}

/// The figure in docs/benchmarks.md: 500 joins in 10 s against a threshold of 100 joins in
/// 10 s. Prints how long after the 100th join was sent moderators heard raid mode was on.
/// Run by hand: `cargo test -p confab-signaling --test integration -- safety::join_storm --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn join_storm_500_in_10_s() {
    let app = std::sync::Arc::new(
        TestApp::spawn_with(|c| {
            c.rate_limit_scale = 1000.0;
            c.db_pool_size = 20;
        })
        .await,
    );
    let owner = app.register("st_owner").await;
    let s = app.server(&owner, "Storm").await;
    app.patch(
        &format!("/servers/{}/safety", s.id),
        &owner.token,
        json!({"raid_join_threshold": 100, "raid_join_window_secs": 10}),
    )
    .await;
    let code = app.invite(&owner, &s.id).await;
    let t = Instant::now();
    let mut users = Vec::new();
    for chunk in (0..500).collect::<Vec<_>>().chunks(25) {
        let regs = chunk.iter().map(|i| {
            let app = app.clone();
            async move { app.register(&format!("st_u{i}")).await }
        });
        users.extend(futures_util::future::join_all(regs).await);
    }
    println!("registered 500 users in {:.1} s", t.elapsed().as_secs_f64());
    let (mut gw, _) = app.identified(&owner).await;
    // Heard as it arrives, while the joins go on.
    let watcher = tokio::spawn(async move {
        while let Some(v) = gw.next_within(Duration::from_secs(30)).await {
            if v["t"] == Event::RaidModeUpdate.name() && v["d"]["raid_mode"] == true {
                return Some((Instant::now(), v["d"].clone()));
            }
        }
        None
    });
    let start = Instant::now();
    let mut sent = Vec::new();
    let mut tasks = Vec::new();
    for (i, u) in users.into_iter().enumerate() {
        // 50 joins a second, each on its own task so a slow answer does not slow the pace.
        let at = start + Duration::from_millis(20 * i as u64);
        tokio::time::sleep_until(at.into()).await;
        sent.push(Instant::now());
        let (app, code) = (app.clone(), code.clone());
        tasks.push(tokio::spawn(
            async move { app.accept_invite(&u, &code).await.0 },
        ));
        if i == 99 {
            println!("100th join sent at {:.2} s", start.elapsed().as_secs_f64());
        }
    }
    let (heard, d) = watcher.await.unwrap().expect("raid mode announced");
    let statuses = futures_util::future::join_all(tasks).await;
    let ok = statuses.iter().filter(|s| matches!(s, Ok(200))).count();
    let after = heard.saturating_duration_since(sent[99]);
    println!(
        "500 joins sent in {:.2} s, {ok} accepted; raid mode announced (joins counted: {}) {:.0} ms after the 100th join was sent",
        sent[499].duration_since(start).as_secs_f64(),
        d["joins"],
        after.as_secs_f64() * 1e3
    );
    assert!(after < Duration::from_secs(2), "{after:?}");
}
