//! Threads and forum channels (docs/threads.md): threads started from a message and
//! standalone, forum posts with tags sorted by activity, permissions inherited from the parent
//! (403 without CREATE_PUBLIC_THREADS; a private thread invisible to non-members over REST and
//! the gateway), the archive worker and unarchive on post, read states per thread.

use crate::common::{Event, Overwrite, TestApp, User};
use serde_json::{json, Value};
use std::time::Duration;

const VIEW: i64 = 1 << 10;
const MANAGE_THREADS: i64 = 1 << 34;
const CREATE_PUBLIC_THREADS: i64 = 1 << 35;
const SEND_IN_THREADS: i64 = 1 << 38;
const QUIET: Duration = Duration::from_millis(600);

async fn app() -> TestApp {
    TestApp::spawn_with(|c| c.rate_limit_scale = 100.0).await
}

async fn db(app: &TestApp) -> sqlx::PgPool {
    sqlx::PgPool::connect(&app.database_url()).await.unwrap()
}

fn id(v: &Value) -> String {
    v["id"].as_str().unwrap().to_string()
}

async fn thread_from(app: &TestApp, by: &User, channel: &str, message: &str, name: &str) -> Value {
    let (s, t) = app
        .post(
            &format!("/channels/{channel}/messages/{message}/threads"),
            &by.token,
            json!({"name": name}),
        )
        .await;
    assert_eq!(s, 201, "{t}");
    t
}

async fn new_thread(app: &TestApp, by: &User, channel: &str, body: Value) -> (u16, Value) {
    app.post(&format!("/channels/{channel}/threads"), &by.token, body)
        .await
}

async fn list(app: &TestApp, by: &User, channel: &str, query: &str) -> Vec<Value> {
    let (s, v) = app
        .get(&format!("/channels/{channel}/threads{query}"), &by.token)
        .await;
    assert_eq!(s, 200, "{v}");
    v.as_array().unwrap().clone()
}

fn names(threads: &[Value]) -> Vec<&str> {
    threads
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn threads_from_a_message_and_standalone_carry_their_own_messages() {
    let app = app().await;
    let a = app.register("th_a").await;
    let b = app.register("th_b").await;
    let s = app.server(&a, "Threads").await;
    app.join(&a, &b, &s.id).await;
    let (mut gb, _) = app.identified(&b).await;
    let (mut ga, _) = app.identified(&a).await;
    let pool = db(&app).await;

    let root = app.message(&a, &s.text, "shall we talk about lunch?").await;
    let t = thread_from(&app, &a, &s.text, &id(&root), "Lunch").await;
    assert_eq!(t["type"], "public_thread");
    assert_eq!(t["parent_id"], s.text.as_str());
    assert_eq!(t["owner_id"], a.id.as_str());
    assert_eq!(t["thread_metadata"]["starter_message_id"], root["id"]);
    assert_eq!(t["thread_metadata"]["archived"], false);
    assert_eq!(t["thread_metadata"]["auto_archive_duration"], 1440);
    assert_eq!(t["thread_metadata"]["member_count"], 1);
    let tid = id(&t);
    // B sees it appear on the wire.
    let created = gb
        .expect_where(Event::ThreadCreate, |d| d["id"] == tid.as_str())
        .await;
    assert_eq!(created["parent_id"], s.text.as_str());
    // One thread per message.
    let (st, body) = app
        .post(
            &format!("/channels/{}/messages/{}/threads", s.text, id(&root)),
            &a.token,
            json!({"name": "Again"}),
        )
        .await;
    assert_eq!(st, 409, "{body}");
    // Bad input: a clear 400.
    let other = app.message(&a, &s.text, "another").await;
    let (st, body) = app
        .post(
            &format!("/channels/{}/messages/{}/threads", s.text, id(&other)),
            &a.token,
            json!({"name": "x", "auto_archive_duration": 30}),
        )
        .await;
    assert_eq!(st, 400, "{body}");
    assert!(body["errors"]["auto_archive_duration"].is_array(), "{body}");
    let (st, _) = app
        .post(
            &format!("/channels/{}/messages/{}/threads", s.text, id(&other)),
            &a.token,
            json!({"name": ""}),
        )
        .await;
    assert_eq!(st, 400);

    // B replies in the thread: A gets it with the thread's id; B joined by posting.
    let reply = app.message(&b, &tid, "pizza!").await;
    assert_eq!(reply["channel_id"], tid.as_str());
    // Membership first, then the message (a private thread's newcomers need it that way).
    let joined = ga
        .expect_where(Event::ThreadMembersUpdate, |d| d["id"] == tid.as_str())
        .await;
    assert_eq!(joined["added_members"][0]["user_id"], b.id.as_str());
    let got = ga
        .expect_where(Event::MessageCreate, |d| d["id"] == reply["id"])
        .await;
    assert_eq!(got["channel_id"], tid.as_str());
    let (st, history) = app
        .get(&format!("/channels/{tid}/messages"), &a.token)
        .await;
    assert_eq!(st, 200);
    assert_eq!(history.as_array().unwrap().len(), 1);
    // The parent's history holds only its own messages.
    let (_, parent) = app
        .get(&format!("/channels/{}/messages", s.text), &a.token)
        .await;
    assert!(parent
        .as_array()
        .unwrap()
        .iter()
        .all(|m| m["channel_id"] == s.text.as_str()));
    let (count, members): (i32, i64) = sqlx::query_as(
        "SELECT t.message_count, (SELECT count(*) FROM thread_members m WHERE m.channel_id = t.channel_id)
         FROM threads t WHERE t.channel_id = $1::bigint",
    )
    .bind(&tid)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!((count, members), (1, 2));
    let (st, ms) = app
        .get(&format!("/channels/{tid}/thread-members"), &b.token)
        .await;
    assert_eq!(st, 200);
    assert_eq!(ms.as_array().unwrap().len(), 2);

    // Standalone; listed by activity, newest first; never among the server's channels.
    let (st, solo) = new_thread(&app, &b, &s.text, json!({"name": "Standalone"})).await;
    assert_eq!(st, 201, "{solo}");
    assert_eq!(solo["thread_metadata"]["starter_message_id"], Value::Null);
    ga.expect_where(Event::ThreadCreate, |d| d["id"] == solo["id"])
        .await;
    assert_eq!(
        names(&list(&app, &a, &s.text, "").await),
        ["Standalone", "Lunch"]
    );
    app.message(&a, &tid, "back to lunch").await;
    let listed = list(&app, &a, &s.text, "").await;
    assert_eq!(names(&listed), ["Lunch", "Standalone"]);
    assert_eq!(listed[0]["thread_metadata"]["message_count"], 2);
    // Keyset pages.
    let page = list(&app, &a, &s.text, &format!("?limit=1&before={tid}")).await;
    assert_eq!(names(&page), ["Standalone"]);
    let (st, _) = app
        .get(&format!("/channels/{}/threads?limit=0", s.text), &a.token)
        .await;
    assert_eq!(st, 400);
    let (_, channels) = app
        .get(&format!("/servers/{}/channels", s.id), &b.token)
        .await;
    assert!(channels
        .as_array()
        .unwrap()
        .iter()
        .all(|c| !c["type"].as_str().unwrap().ends_with("thread")));

    // Leave and join.
    let (st, _) = app
        .delete(&format!("/channels/{tid}/thread-members/@me"), &b.token)
        .await;
    assert_eq!(st, 204);
    let left = ga
        .expect_where(Event::ThreadMembersUpdate, |d| {
            d["id"] == tid.as_str() && d["removed_member_ids"][0] == b.id.as_str()
        })
        .await;
    assert_eq!(left["member_count"], 1);
    let (st, _) = app
        .put(&format!("/channels/{tid}/thread-members/@me"), &b.token)
        .await;
    assert_eq!(st, 204);

    // Rename (the owner), delete (MANAGE_THREADS): THREAD_UPDATE and THREAD_DELETE.
    let (st, renamed) = app
        .patch(
            &format!("/channels/{tid}"),
            &a.token,
            json!({"name": "Dinner"}),
        )
        .await;
    assert_eq!(st, 200, "{renamed}");
    gb.expect_where(Event::ThreadUpdate, |d| d["name"] == "Dinner")
        .await;
    let (st, _) = app
        .patch(
            &format!("/channels/{tid}"),
            &b.token,
            json!({"name": "Mine"}),
        )
        .await;
    assert_eq!(st, 403, "neither creator nor MANAGE_THREADS");
    let (st, _) = app.delete(&format!("/channels/{tid}"), &b.token).await;
    assert_eq!(st, 403);
    let (st, _) = app.delete(&format!("/channels/{tid}"), &a.token).await;
    assert_eq!(st, 204);
    gb.expect_where(Event::ThreadDelete, |d| d["id"] == tid.as_str())
        .await;
    let (st, _) = app.get(&format!("/channels/{tid}"), &a.token).await;
    assert_eq!(st, 404);
    let gone: i64 =
        sqlx::query_scalar("SELECT count(*) FROM messages WHERE channel_id = $1::bigint")
            .bind(&tid)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(gone, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forum_posts_have_titles_tags_and_sort_by_activity() {
    let app = app().await;
    let a = app.register("fo_a").await;
    let b = app.register("fo_b").await;
    let s = app.server(&a, "Forum").await;
    app.join(&a, &b, &s.id).await;
    let (mut gb, _) = app.identified(&b).await;
    let forum = app.channel(&a, &s.id, "forum", "help").await;
    let (st, f) = app
        .patch(
            &format!("/channels/{forum}"),
            &a.token,
            json!({"available_tags": [{"name": "bug"}, {"name": "idea"}]}),
        )
        .await;
    assert_eq!(st, 200, "{f}");
    let tags = f["available_tags"].as_array().unwrap();
    assert_eq!(tags.len(), 2);
    let bug = tags[0]["id"].as_str().unwrap().to_string();
    let idea = tags[1]["id"].as_str().unwrap().to_string();
    // Members may not change the tags; 21 tags are too many.
    let (st, _) = app
        .patch(
            &format!("/channels/{forum}"),
            &b.token,
            json!({"available_tags": []}),
        )
        .await;
    assert_eq!(st, 403);
    let many: Vec<Value> = (0..21).map(|i| json!({"name": format!("t{i}")})).collect();
    let (st, _) = app
        .patch(
            &format!("/channels/{forum}"),
            &a.token,
            json!({"available_tags": many}),
        )
        .await;
    assert_eq!(st, 400);
    // The forum shows its tags in the channel list.
    let (_, channels) = app
        .get(&format!("/servers/{}/channels", s.id), &b.token)
        .await;
    let listed = channels
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == forum.as_str())
        .unwrap();
    assert_eq!(listed["type"], "forum");
    assert_eq!(listed["available_tags"].as_array().unwrap().len(), 2);

    let (st, p1) = new_thread(
        &app,
        &a,
        &forum,
        json!({"name": "Crash on start", "message": {"content": "it crashes"}, "applied_tags": [bug]}),
    )
    .await;
    assert_eq!(st, 201, "{p1}");
    assert_eq!(p1["thread_metadata"]["applied_tags"], json!([bug]));
    assert_eq!(p1["thread_metadata"]["message_count"], 1);
    let created = gb
        .expect_where(Event::ThreadCreate, |d| d["id"] == p1["id"])
        .await;
    assert_eq!(created["name"], "Crash on start");
    let first = gb
        .expect_where(Event::MessageCreate, |d| d["channel_id"] == p1["id"])
        .await;
    assert_eq!(first["content"], "it crashes");
    let (st, p2) = new_thread(
        &app,
        &b,
        &forum,
        json!({"name": "Dark mode", "message": {"content": "please"}, "applied_tags": [idea]}),
    )
    .await;
    assert_eq!(st, 201, "{p2}");
    // Refusals: no message, an unknown tag, six tags, a private post, a message to the forum.
    for body in [
        json!({"name": "No body"}),
        json!({"name": "x", "message": {"content": "y"}, "applied_tags": [id(&p1)]}),
        json!({"name": "x", "message": {"content": "y"}, "applied_tags": [bug, bug, bug, bug, bug, idea]}),
        json!({"name": "x", "message": {"content": "y"}, "type": "private_thread"}),
    ] {
        let (st, v) = new_thread(&app, &b, &forum, body).await;
        assert_eq!(st, 400, "{v}");
        assert_eq!(v["code"], 50035, "{v}");
    }
    let (st, _) = app.try_message(&b, &forum, "straight into the forum").await;
    assert_eq!(st, 400);

    // Newest activity first; a reply moves a post up; filter by tag.
    let posts = list(&app, &b, &forum, "").await;
    assert_eq!(names(&posts), ["Dark mode", "Crash on start"]);
    app.message(&b, &id(&p1), "same here").await;
    let posts = list(&app, &b, &forum, "").await;
    assert_eq!(names(&posts), ["Crash on start", "Dark mode"]);
    assert_eq!(posts[0]["thread_metadata"]["message_count"], 2);
    assert_eq!(
        names(&list(&app, &b, &forum, &format!("?tag={idea}")).await),
        ["Dark mode"]
    );
    // Re-tag by its creator; removing a tag from the forum removes it from posts.
    let (st, v) = app
        .patch(
            &format!("/channels/{}", id(&p2)),
            &b.token,
            json!({"applied_tags": [idea, bug]}),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    let (st, _) = app
        .patch(
            &format!("/channels/{forum}"),
            &a.token,
            json!({"available_tags": [{"id": idea, "name": "feature"}]}),
        )
        .await;
    assert_eq!(st, 200);
    let (_, p2now) = app.get(&format!("/channels/{}", id(&p2)), &b.token).await;
    assert_eq!(p2now["thread_metadata"]["applied_tags"], json!([idea]));
    assert!(list(&app, &b, &forum, &format!("?tag={bug}"))
        .await
        .is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permissions_come_from_the_parent_and_private_threads_stay_private() {
    let app = app().await;
    let owner = app.register("tp_owner").await;
    let member = app.register("tp_member").await;
    let outsider = app.register("tp_outsider").await;
    let moderator = app.register("tp_mod").await;
    let s = app.server(&owner, "Perms").await;
    for u in [&member, &outsider, &moderator] {
        app.join(&owner, u, &s.id).await;
    }
    let mods = app.role(&owner, &s.id, "mods", MANAGE_THREADS).await;
    app.give_role(&owner, &s.id, &moderator, &mods).await;
    let (mut g_member, _) = app.identified(&member).await;
    let (mut g_out, _) = app.identified(&outsider).await;
    let (mut g_mod, _) = app.identified(&moderator).await;

    // Private thread by the member: hidden from the outsider everywhere.
    let (st, p) = new_thread(
        &app,
        &member,
        &s.text,
        json!({"name": "Secret", "type": "private_thread"}),
    )
    .await;
    assert_eq!(st, 201, "{p}");
    assert_eq!(p["type"], "private_thread");
    let pid = id(&p);
    g_mod
        .expect_where(Event::ThreadCreate, |d| d["id"] == pid.as_str())
        .await;
    let (st, _) = app.get(&format!("/channels/{pid}"), &outsider.token).await;
    assert_eq!(st, 404);
    let (st, _) = app
        .get(&format!("/channels/{pid}/messages"), &outsider.token)
        .await;
    assert_eq!(st, 404);
    let (st, _) = app.try_message(&outsider, &pid, "let me in").await;
    assert_eq!(st, 404);
    let (st, _) = app
        .put(
            &format!("/channels/{pid}/thread-members/@me"),
            &outsider.token,
        )
        .await;
    assert_eq!(st, 404);
    assert!(list(&app, &outsider, &s.text, "").await.is_empty());
    assert_eq!(
        names(&list(&app, &moderator, &s.text, "").await),
        ["Secret"]
    );
    let secret = app.message(&member, &pid, "just us").await;
    g_mod
        .expect_where(Event::MessageCreate, |d| d["id"] == secret["id"])
        .await;
    g_out.expect_none(Event::ThreadCreate, QUIET).await;
    g_out.expect_none(Event::MessageCreate, QUIET).await;
    // Nor does search reach into it; a public thread's messages are found by all.
    let found = |who: &User| {
        let who = who.token.clone();
        let app = &app;
        let sid = s.id.clone();
        async move {
            let (st, v) = app
                .get(&format!("/servers/{sid}/messages/search?q=just"), &who)
                .await;
            assert_eq!(st, 200, "{v}");
            v.as_array().unwrap().len()
        }
    };
    assert_eq!(found(&outsider).await, 0);
    assert_eq!(found(&moderator).await, 1);
    assert_eq!(found(&member).await, 1);
    // Mentioning the outsider adds them: they learn of the thread and get the message.
    let hi = app
        .message(&member, &pid, &format!("welcome <@{}>", outsider.id))
        .await;
    g_out
        .expect_where(Event::ThreadCreate, |d| d["id"] == pid.as_str())
        .await;
    g_out
        .expect_where(Event::MessageCreate, |d| d["id"] == hi["id"])
        .await;
    let (st, _) = app.get(&format!("/channels/{pid}"), &outsider.token).await;
    assert_eq!(st, 200);
    // Leaving hides it again.
    let (st, _) = app
        .delete(
            &format!("/channels/{pid}/thread-members/@me"),
            &outsider.token,
        )
        .await;
    assert_eq!(st, 204);
    let (st, _) = app.get(&format!("/channels/{pid}"), &outsider.token).await;
    assert_eq!(st, 404);
    app.message(&member, &pid, "gone again").await;
    g_out.expect_none(Event::MessageCreate, QUIET).await;

    // Without CREATE_PUBLIC_THREADS: 403; without SEND_MESSAGES_IN_THREADS: no posting in
    // threads, while the channel itself still takes messages.
    let root = app.message(&owner, &s.text, "root").await;
    let public = thread_from(&app, &owner, &s.text, &id(&root), "Open").await;
    g_member
        .expect_where(Event::ThreadCreate, |d| d["id"] == public["id"])
        .await;
    app.overwrite(
        &owner,
        &s.text,
        Overwrite::Role(&s.id),
        0,
        CREATE_PUBLIC_THREADS | SEND_IN_THREADS,
    )
    .await;
    let other = app.message(&owner, &s.text, "another root").await;
    let (st, body) = app
        .post(
            &format!("/channels/{}/messages/{}/threads", s.text, id(&other)),
            &member.token,
            json!({"name": "Nope"}),
        )
        .await;
    assert_eq!(st, 403, "{body}");
    let (st, body) = new_thread(&app, &member, &s.text, json!({"name": "Nope"})).await;
    assert_eq!(st, 403, "{body}");
    let (st, _) = app.try_message(&member, &id(&public), "in thread").await;
    assert_eq!(st, 403);
    let (st, _) = app.try_message(&member, &s.text, "in channel").await;
    assert_eq!(st, 201);
    // The owner holds every permission and still posts.
    let (st, _) = app.try_message(&owner, &id(&public), "owner").await;
    assert_eq!(st, 201);

    // Hiding the parent hides its threads.
    app.overwrite(&owner, &s.text, Overwrite::Member(&member.id), 0, VIEW)
        .await;
    let (st, _) = app
        .get(&format!("/channels/{}", id(&public)), &member.token)
        .await;
    assert_eq!(st, 404);
    let (st, _) = app
        .get(&format!("/channels/{}/threads", s.text), &member.token)
        .await;
    assert_eq!(st, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_threads_archive_and_a_post_reopens_them() {
    let app = app().await;
    let a = app.register("ar_a").await;
    let b = app.register("ar_b").await;
    let s = app.server(&a, "Archive").await;
    app.join(&a, &b, &s.id).await;
    let (mut gb, _) = app.identified(&b).await;
    let pool = db(&app).await;
    let (_, short) = new_thread(
        &app,
        &a,
        &s.text,
        json!({"name": "Short", "auto_archive_duration": 60}),
    )
    .await;
    let (_, long) = new_thread(
        &app,
        &a,
        &s.text,
        json!({"name": "Long", "auto_archive_duration": 10080}),
    )
    .await;
    // Both idle for two hours: only the one-hour thread is past its duration.
    sqlx::query(
        "UPDATE threads SET last_activity_at = now() - interval '2 hours'
         WHERE channel_id IN ($1::bigint, $2::bigint)",
    )
    .bind(id(&short))
    .bind(id(&long))
    .execute(&pool)
    .await
    .unwrap();
    let state = &app.running.as_ref().unwrap().state;
    confab_signaling::http::threads::archive_sweep(state).await;
    let archived = |tid: String| {
        let pool = pool.clone();
        async move {
            sqlx::query_scalar::<_, bool>(
                "SELECT archived FROM threads WHERE channel_id = $1::bigint",
            )
            .bind(tid)
            .fetch_one(&pool)
            .await
            .unwrap()
        }
    };
    assert!(archived(id(&short)).await);
    assert!(!archived(id(&long)).await);
    let upd = gb
        .expect_where(Event::ThreadUpdate, |d| d["id"] == short["id"])
        .await;
    assert_eq!(upd["thread_metadata"]["archived"], true);
    assert_eq!(
        names(&list(&app, &b, &s.text, "?archived=true").await),
        ["Short"]
    );
    assert_eq!(
        names(&list(&app, &b, &s.text, "?archived=false").await),
        ["Long"]
    );
    // A post reopens it.
    app.message(&b, &id(&short), "still here").await;
    assert!(!archived(id(&short)).await);
    let upd = gb
        .expect_where(Event::ThreadUpdate, |d| {
            d["id"] == short["id"] && d["thread_metadata"]["archived"] == false
        })
        .await;
    assert_eq!(upd["name"], "Short");
    // A second sweep leaves a fresh thread alone.
    confab_signaling::http::threads::archive_sweep(state).await;
    assert!(!archived(id(&short)).await);

    // Locked (MANAGE_THREADS): members can neither post nor reopen it; the owner can.
    let (st, v) = app
        .patch(
            &format!("/channels/{}", id(&short)),
            &b.token,
            json!({"locked": true}),
        )
        .await;
    assert_eq!(st, 403, "{v}");
    let (st, v) = app
        .patch(
            &format!("/channels/{}", id(&short)),
            &a.token,
            json!({"locked": true, "archived": true}),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    let (st, _) = app.try_message(&b, &id(&short), "locked?").await;
    assert_eq!(st, 403);
    assert!(archived(id(&short)).await);
    let (st, v) = app
        .patch(
            &format!("/channels/{}", id(&long)),
            &a.token,
            json!({"position": 3}),
        )
        .await;
    assert_eq!(st, 400, "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_states_count_unread_mentions_per_thread() {
    let app = app().await;
    let a = app.register("rs_a").await;
    let b = app.register("rs_b").await;
    let s = app.server(&a, "Reads").await;
    app.join(&a, &b, &s.id).await;
    let root = app.message(&a, &s.text, "root").await;
    let t = thread_from(&app, &a, &s.text, &id(&root), "Chat").await;
    let tid = id(&t);
    let first = app.message(&b, &tid, "joined").await;
    let (st, _) = app
        .post_empty(
            &format!("/channels/{tid}/messages/{}/ack", id(&first)),
            &b.token,
        )
        .await;
    assert_eq!(st, 200);
    app.message(&a, &tid, &format!("hey <@{}>", b.id)).await;
    app.message(&a, &tid, "no mention").await;
    let last = app.message(&a, &tid, &format!("again <@{}>", b.id)).await;
    let (_, ready) = app.identified(&b).await;
    let rs = ready["read_states"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["channel_id"] == tid.as_str())
        .cloned()
        .expect("the thread's read state");
    assert_eq!(rs["last_message_id"], first["id"]);
    assert_eq!(rs["mention_count"], 2);
    // The thread's newest message, for the unread marker.
    let listed = list(&app, &b, &s.text, "").await;
    assert_eq!(listed[0]["last_message_id"], last["id"]);
    let (st, acked) = app
        .post_empty(
            &format!("/channels/{tid}/messages/{}/ack", id(&last)),
            &b.token,
        )
        .await;
    assert_eq!(st, 200, "{acked}");
    assert_eq!(acked["mention_count"], 0);
    // A thread B is not in has no read state for B.
    let (_, other) = new_thread(&app, &a, &s.text, json!({"name": "Other"})).await;
    app.message(&a, &id(&other), &format!("psst <@{}>", a.id))
        .await;
    let (_, ready) = app.identified(&b).await;
    assert!(ready["read_states"]
        .as_array()
        .unwrap()
        .iter()
        .all(|r| r["channel_id"] != other["id"]));
}

/// Thread listing latency with 10,000 threads in one channel (docs/benchmarks.md):
/// `cargo test -p confab-signaling --test integration -- threads::listing_latency --ignored --nocapture`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn listing_latency_with_10000_threads() {
    let app = app().await;
    let a = app.register("bench_a").await;
    let s = app.server(&a, "Bench").await;
    let pool = db(&app).await;
    // Rows straight into the database: 10,000 threads with spread-out activity.
    sqlx::query(
        "WITH ids AS (SELECT g, (1 << 40) + g AS id FROM generate_series(1, 10000) g),
              c AS (INSERT INTO channels (id, server_id, kind, name, position, parent_id, owner_id)
                    SELECT id, $1::bigint, 'public_thread', 'thread ' || g, 0, $2::bigint, $3::bigint FROM ids)
         INSERT INTO threads (channel_id, parent_id, last_activity_at, archived)
         SELECT id, $2::bigint, now() - g * interval '1 minute', g % 10 = 0 FROM ids",
    )
    .bind(&s.id)
    .bind(&s.text)
    .bind(&a.id)
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query("ANALYZE threads").execute(&pool).await.unwrap();
    // Active threads, and all of them (a forum's list): each reads an index in order.
    for filter in ["AND t.archived = false", ""] {
        let plan: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "EXPLAIN SELECT t.channel_id FROM threads t WHERE t.parent_id = $1::bigint {filter}
             ORDER BY t.last_activity_at DESC, t.channel_id DESC LIMIT 50"
        )))
        .bind(&s.text)
        .fetch_all(&pool)
        .await
        .unwrap();
        println!("{}", plan.join("\n"));
        assert!(
            plan.iter()
                .any(|l| l.contains("Index") && l.contains("threads_parent")),
            "the listing reads an index: {plan:?}"
        );
        assert!(!plan.iter().any(|l| l.contains("Sort")), "{plan:?}");
    }
    let mut times = Vec::new();
    let mut before: Option<String> = None;
    for i in 0..200 {
        let q = match (&before, i % 4) {
            (Some(b), 1) => format!("?limit=50&before={b}"),
            (_, 2) => "?archived=false&limit=50".into(),
            (_, 3) => "?archived=true&limit=50".into(),
            _ => "?limit=50".into(),
        };
        let started = std::time::Instant::now();
        let page = list(&app, &a, &s.text, &q).await;
        times.push(started.elapsed());
        assert_eq!(page.len(), 50);
        before = Some(id(page.last().unwrap()));
    }
    times.sort();
    let p = |q: f64| times[((times.len() as f64 * q) as usize).min(times.len() - 1)];
    println!(
        "thread listing, 10,000 threads, 200 calls over HTTP: p50 {:?}, p99 {:?}, max {:?}",
        p(0.5),
        p(0.99),
        times.last().unwrap()
    );
    assert!(p(0.99) < Duration::from_millis(50), "p99 {:?}", p(0.99));

    // The service call alone (access check and the listing query, no HTTP or JSON).
    let state = &app.running.as_ref().unwrap().state;
    let parent: confab_chat::ChannelId = s.text.parse().unwrap();
    let user: confab_chat::UserId = a.id.parse().unwrap();
    let mut direct = Vec::new();
    for _ in 0..200 {
        let started = std::time::Instant::now();
        let page = state
            .chat
            .threads(
                parent,
                user,
                confab_chat::threads::ThreadQuery {
                    limit: Some(50),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        direct.push(started.elapsed());
        assert_eq!(page.len(), 50);
    }
    direct.sort();
    println!(
        "Chat::threads alone, 200 calls: p50 {:?}, p99 {:?}",
        direct[100], direct[198]
    );
}
