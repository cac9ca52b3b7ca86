//! Message search (docs/search.md) over HTTP against a real PostgreSQL: words (stemmed, with
//! the simple fallback) newest first with highlights; channels the caller may not read (role
//! overwrites, READ_MESSAGE_HISTORY) and other people's DMs never appear; every filter; paging
//! by cursor; bad input answered 400 with the standard body; the rate limit; history `?around=`.

use crate::common::{Overwrite, TestApp, User};
use serde_json::Value;

const VIEW: i64 = 1 << 10;
const HISTORY: i64 = 1 << 16;

async fn app() -> TestApp {
    // Tests send dozens of messages and searches quickly.
    TestApp::spawn_with(|c| c.rate_limit_scale = 50.0).await
}

/// Percent-encodes a query value (every byte but letters, digits and `-_.~`).
fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

async fn search(app: &TestApp, by: &User, server_id: &str, q: &str) -> (u16, Value) {
    app.get(
        &format!("/servers/{server_id}/messages/search?q={}", enc(q)),
        &by.token,
    )
    .await
}

/// The results' contents, newest first; panics unless the answer is 200.
async fn contents(app: &TestApp, by: &User, server_id: &str, q: &str) -> Vec<String> {
    let (s, body) = search(app, by, server_id, q).await;
    assert_eq!(s, 200, "search {q:?}: {body}");
    body.as_array()
        .unwrap()
        .iter()
        .map(|m| m["content"].as_str().unwrap().to_string())
        .collect()
}

async fn dm_contents(app: &TestApp, by: &User, q: &str) -> Vec<String> {
    let (s, body) = app
        .get(
            &format!("/users/@me/messages/search?q={}", enc(q)),
            &by.token,
        )
        .await;
    assert_eq!(s, 200, "DM search {q:?}: {body}");
    body.as_array()
        .unwrap()
        .iter()
        .map(|m| m["content"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn words_match_stemmed_and_as_typed_newest_first_with_highlights() {
    let app = app().await;
    let owner = app.register("se_owner").await;
    let s = app.server(&owner, "Search").await;
    app.message(&owner, &s.text, "deploy failed on staging")
        .await;
    app.message(&owner, &s.text, "unrelated chatter").await;
    app.message(&owner, &s.text, "The deploy worked, Deploy again?")
        .await;
    app.message(&owner, &s.text, "Running the tests now").await;
    app.message(&owner, &s.text, "naïve café déjà vu").await;

    let (status, hits) = search(&app, &owner, &s.id, "deploy").await;
    assert_eq!(status, 200, "{hits}");
    let hits = hits.as_array().unwrap();
    assert_eq!(hits.len(), 2, "{hits:?}");
    // Newest first, each a whole message with the fields history has.
    assert_eq!(hits[0]["content"], "The deploy worked, Deploy again?");
    assert_eq!(hits[1]["content"], "deploy failed on staging");
    assert_eq!(hits[0]["channel_id"], s.text.as_str());
    assert_eq!(hits[0]["server_id"], s.id.as_str());
    assert_eq!(hits[0]["author"]["id"], owner.id.as_str());
    // The highlights cover exactly the matched words, in characters.
    let marked = |hit: &Value| -> Vec<String> {
        let chars: Vec<char> = hit["content"].as_str().unwrap().chars().collect();
        hit["highlights"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                let (a, b) = (r["start"].as_u64().unwrap(), r["end"].as_u64().unwrap());
                chars[a as usize..b as usize].iter().collect()
            })
            .collect()
    };
    assert_eq!(marked(&hits[0]), vec!["deploy", "Deploy"]);
    assert_eq!(marked(&hits[1]), vec!["deploy"]);

    // Stemmed: "run" finds "Running"; the simple half finds stop words ("the") as typed.
    assert_eq!(
        contents(&app, &owner, &s.id, "run").await,
        vec!["Running the tests now"]
    );
    assert_eq!(
        contents(&app, &owner, &s.id, "the").await,
        vec!["Running the tests now", "The deploy worked, Deploy again?"]
    );
    // Both halves mark what they matched: the stop word as typed, the stem in its word.
    let (_, the) = search(&app, &owner, &s.id, "the").await;
    assert_eq!(marked(&the[0]), vec!["the"]);
    assert_eq!(marked(&the[1]), vec!["The"]);
    let (_, run) = search(&app, &owner, &s.id, "run").await;
    assert_eq!(marked(&run[0]), vec!["Running"]);
    // Accented words, a phrase, an exclusion, an "or".
    assert_eq!(
        contents(&app, &owner, &s.id, "café").await,
        vec!["naïve café déjà vu"]
    );
    let hit = &search(&app, &owner, &s.id, "café").await.1[0];
    assert_eq!(marked(hit), vec!["café"]);
    assert_eq!(
        contents(&app, &owner, &s.id, "\"failed on staging\"").await,
        vec!["deploy failed on staging"]
    );
    assert!(contents(&app, &owner, &s.id, "\"staging on failed\"")
        .await
        .is_empty());
    assert_eq!(
        contents(&app, &owner, &s.id, "deploy -staging").await,
        vec!["The deploy worked, Deploy again?"]
    );
    assert_eq!(
        contents(&app, &owner, &s.id, "chatter or staging").await,
        vec!["unrelated chatter", "deploy failed on staging"]
    );
    assert!(contents(&app, &owner, &s.id, "nothingmatchesthis")
        .await
        .is_empty());
    // Operators of tsquery syntax are only text here, never a 500.
    let (st, body) = search(&app, &owner, &s.id, "'&|!():*<-> \\ deploy").await;
    assert_eq!(st, 200, "{body}");
    // An edit is searchable at once (the vector is regenerated with the row).
    let m = app.message(&owner, &s.text, "original wording").await;
    let (st, _) = app
        .patch(
            &format!(
                "/channels/{}/messages/{}",
                s.text,
                m["id"].as_str().unwrap()
            ),
            &owner.token,
            serde_json::json!({"content": "edited phrasing"}),
        )
        .await;
    assert_eq!(st, 200);
    assert!(contents(&app, &owner, &s.id, "original").await.is_empty());
    assert_eq!(
        contents(&app, &owner, &s.id, "phrasing").await,
        vec!["edited phrasing"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channels_the_caller_cannot_read_never_appear() {
    let app = app().await;
    let owner = app.register("sp_owner").await;
    let member = app.register("sp_member").await;
    let stranger = app.register("sp_stranger").await;
    let s = app.server(&owner, "Private").await;
    app.join(&owner, &member, &s.id).await;
    // #staff: @everyone may not view it; the staff role may.
    let staff_channel = app.channel(&owner, &s.id, "text", "staff").await;
    let staff = app.role(&owner, &s.id, "staff", 0).await;
    app.overwrite(&owner, &staff_channel, Overwrite::Role(&s.id), 0, VIEW)
        .await;
    app.overwrite(&owner, &staff_channel, Overwrite::Role(&staff), VIEW, 0)
        .await;
    // #archive: visible, but its history is not readable.
    let archive = app.channel(&owner, &s.id, "text", "archive").await;
    app.overwrite(&owner, &archive, Overwrite::Role(&s.id), 0, HISTORY)
        .await;
    // A category whose overwrite hides it, and a synced channel inside that follows it.
    let cat = app.channel(&owner, &s.id, "category", "hidden-cat").await;
    app.overwrite(&owner, &cat, Overwrite::Role(&s.id), 0, VIEW)
        .await;
    let inside = app.channel_in(&owner, &s.id, &cat, "text", "inside").await;
    app.message(&owner, &staff_channel, "secret plans for launch")
        .await;
    app.message(&owner, &archive, "archived plans for launch")
        .await;
    app.message(&owner, &inside, "categorised plans for launch")
        .await;
    app.message(&owner, &s.text, "public plans for launch")
        .await;

    // The owner reads everything.
    assert_eq!(
        contents(&app, &owner, &s.id, "plans").await.len(),
        4,
        "the owner sees all four"
    );
    // The member: only the public one, also when naming the hidden channel.
    assert_eq!(
        contents(&app, &member, &s.id, "plans").await,
        vec!["public plans for launch"]
    );
    assert_eq!(
        contents(&app, &member, &s.id, "from:sp_owner").await,
        vec!["public plans for launch"]
    );
    for q in [
        format!("in:<#{staff_channel}> plans"),
        "in:staff plans".to_string(),
        format!("in:{archive} plans"),
        "in:nosuchchannel plans".to_string(),
    ] {
        let (st, body) = search(&app, &member, &s.id, &q).await;
        assert_eq!(st, 400, "{q}: {body}");
        assert!(body["errors"]["q"].is_array(), "{body}");
        assert!(
            !body.to_string().contains("secret"),
            "nothing of the channel leaks: {body}"
        );
    }
    // Given the role, the member finds the staff channel's message: the filter is the role.
    app.give_role(&owner, &s.id, &member, &staff).await;
    assert_eq!(
        contents(&app, &member, &s.id, "plans").await,
        vec!["public plans for launch", "secret plans for launch"]
    );
    assert_eq!(
        contents(&app, &member, &s.id, "in:staff plans").await,
        vec!["secret plans for launch"]
    );
    // A member overwrite taking it away again wins over the role's allow.
    app.overwrite(
        &owner,
        &staff_channel,
        Overwrite::Member(&member.id),
        0,
        VIEW,
    )
    .await;
    assert_eq!(
        contents(&app, &member, &s.id, "plans").await,
        vec!["public plans for launch"]
    );
    // Not a member: the server does not exist for them.
    let (st, body) = search(&app, &stranger, &s.id, "plans").await;
    assert_eq!(st, 404, "{body}");
    // Another server's search does not reach into this one.
    let other = app.server(&stranger, "Elsewhere").await;
    let (st, body) = search(&app, &stranger, &other.id, "plans").await;
    assert_eq!(st, 200);
    assert_eq!(body.as_array().unwrap().len(), 0, "{body}");
    let (st, _) = search(&app, &stranger, &other.id, &format!("in:{} plans", s.text)).await;
    assert_eq!(st, 400);
    // Without a token: 401.
    let resp = app
        .http
        .get(app.url(&format!("/servers/{}/messages/search?q=plans", s.id)))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dm_search_covers_only_the_callers_dms() {
    let app = app().await;
    let alice = app.register("sd_alice").await;
    let bob = app.register("sd_bob").await;
    let carol = app.register("sd_carol").await;
    let ab = app.dm(&alice, &bob).await;
    let cb = app.dm(&carol, &bob).await;
    app.message(&alice, &ab, "banana bread recipe").await;
    app.message(&bob, &ab, "banana split please").await;
    app.message(&carol, &cb, "banana secrets of carol").await;
    // A server message with the word is not a DM.
    let s = app.server(&alice, "Fruit").await;
    app.message(&alice, &s.text, "banana in a server").await;

    assert_eq!(
        dm_contents(&app, &alice, "banana").await,
        vec!["banana split please", "banana bread recipe"]
    );
    assert_eq!(
        dm_contents(&app, &bob, "banana").await,
        vec![
            "banana secrets of carol",
            "banana split please",
            "banana bread recipe"
        ]
    );
    assert_eq!(
        dm_contents(&app, &carol, "banana").await,
        vec!["banana secrets of carol"]
    );
    // Naming someone else's DM is refused like any channel one cannot read.
    let (st, body) = app
        .get(
            &format!(
                "/users/@me/messages/search?q={}",
                enc(&format!("in:{cb} banana"))
            ),
            &alice.token,
        )
        .await;
    assert_eq!(st, 400, "{body}");
    assert_eq!(
        dm_contents(&app, &bob, &format!("in:{cb} banana")).await,
        vec!["banana secrets of carol"]
    );
    assert_eq!(
        dm_contents(&app, &alice, "from:sd_bob banana").await,
        vec!["banana split please"]
    );
    // And the server search never shows DMs.
    assert_eq!(
        contents(&app, &alice, &s.id, "banana").await,
        vec!["banana in a server"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_filter_narrows_the_results() {
    let app = app().await;
    let owner = app.register("sf_owner").await;
    let bob = app.register("sf_bob").await;
    let s = app.server(&owner, "Filters").await;
    app.join(&owner, &bob, &s.id).await;
    let other = app.channel(&owner, &s.id, "text", "Release-Notes").await;
    let m1 = app.message(&owner, &s.text, "report one").await;
    let m2 = app
        .message(&bob, &s.text, "report two see https://example.com/x")
        .await;
    let m3 = app
        .message(&owner, &other, &format!("report three for <@{}>", bob.id))
        .await;
    let m4 = app.message(&bob, &other, "report four with a file").await;
    let m5 = app
        .message(&owner, &s.text, "report five with an image")
        .await;
    let id = |m: &Value| m["id"].as_str().unwrap().to_string();

    // Files: rows as the upload endpoint writes them (content type sniffed).
    let pool = confab_chat::postgres::connect(&app.database_url(), 1)
        .await
        .unwrap();
    for (n, (m, channel, ty)) in [
        (&m4, &other, "application/pdf"),
        (&m5, &s.text, "image/png"),
    ]
    .into_iter()
    .enumerate()
    {
        sqlx::query(
            "INSERT INTO attachments (id, message_id, channel_id, server_id, uploader_id, filename,
                 content_type, size, storage_key)
             VALUES ($1, $2, $3, $4, $5, 'f', $6, 10, $7)",
        )
        .bind(900 + n as i64)
        .bind(id(m).parse::<i64>().unwrap())
        .bind(channel.parse::<i64>().unwrap())
        .bind(s.id.parse::<i64>().unwrap())
        .bind(m["author"]["id"].as_str().unwrap().parse::<i64>().unwrap())
        .bind(ty)
        .bind(format!("key-{n}"))
        .execute(&pool)
        .await
        .unwrap();
    }
    // Pin the second.
    let (st, _) = app
        .put(
            &format!("/channels/{}/pins/{}", s.text, id(&m2)),
            &owner.token,
        )
        .await;
    assert_eq!(st, 204);

    macro_rules! q {
        ($q:expr) => {
            contents(&app, &owner, &s.id, &$q).await
        };
    }
    let all: Vec<String> = [
        "report five with an image".to_string(),
        "report four with a file".to_string(),
        format!("report three for <@{}>", bob.id),
        "report two see https://example.com/x".to_string(),
        "report one".to_string(),
    ]
    .to_vec();
    assert_eq!(q!("report"), all);
    // from: by name (any case) and by mention; two of them mean either.
    assert_eq!(
        q!("from:SF_bob report"),
        vec![all[1].clone(), all[3].clone()]
    );
    assert_eq!(
        q!(format!("from:<@{}> report", bob.id)),
        vec![all[1].clone(), all[3].clone()]
    );
    assert_eq!(q!("from:sf_bob from:sf_owner report"), all);
    assert!(q!("from:nobody_here report").is_empty());
    // in: by name (any case, with or without #), by id and by mention.
    assert_eq!(q!("in:release-notes"), vec![all[1].clone(), all[2].clone()]);
    assert_eq!(
        q!("in:#Release-Notes report"),
        vec![all[1].clone(), all[2].clone()]
    );
    assert_eq!(
        q!(format!("in:<#{}>", s.text)),
        vec![all[0].clone(), all[3].clone(), all[4].clone()]
    );
    // has:
    assert_eq!(q!("has:link"), vec![all[3].clone()]);
    assert_eq!(q!("has:file"), vec![all[0].clone(), all[1].clone()]);
    assert_eq!(q!("has:image"), vec![all[0].clone()]);
    assert_eq!(q!("has:file has:image report"), vec![all[0].clone()]);
    // mentions:
    assert_eq!(q!("mentions:sf_bob"), vec![all[2].clone()]);
    assert!(q!("mentions:sf_owner").is_empty());
    // before:/after: by id, and by date (everything here was sent today).
    assert_eq!(
        q!(format!("after:{} before:{}", id(&m2), id(&m4))),
        vec![all[2].clone()]
    );
    assert_eq!(
        q!(format!("before:{} report", id(&m2))),
        vec![all[4].clone()]
    );
    let today = chrono::Utc::now().date_naive();
    let yesterday = today.pred_opt().unwrap();
    let tomorrow = today.succ_opt().unwrap();
    assert_eq!(q!(format!("after:{yesterday} report")), all);
    assert!(q!(format!("after:{today} report")).is_empty());
    assert!(q!(format!("before:{today} report")).is_empty());
    assert_eq!(q!(format!("before:{tomorrow} report")), all);
    // pinned:
    assert_eq!(q!("pinned:true"), vec![all[3].clone()]);
    assert_eq!(q!("pinned:false report").len(), 4);
    // Filters together.
    assert_eq!(
        q!("from:sf_bob in:release-notes has:file"),
        vec![all[1].clone()]
    );
    assert!(q!("from:sf_bob has:image").is_empty());
    let _ = (m1, m3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_follow_the_cursor_without_gaps_or_repeats() {
    let app = app().await;
    let owner = app.register("sg_owner").await;
    let s = app.server(&owner, "Pages").await;
    let mut sent = Vec::new();
    for i in 0..7 {
        let m = app
            .message(&owner, &s.text, &format!("paged item {i}"))
            .await;
        sent.push(m["id"].as_str().unwrap().to_string());
        app.message(&owner, &s.text, &format!("noise {i}")).await;
    }
    sent.reverse();
    let mut got = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = Vec::new();
    loop {
        let mut path = format!("/servers/{}/messages/search?q=paged&limit=3", s.id);
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let (st, body) = app.get(&path, &owner.token).await;
        assert_eq!(st, 200, "{body}");
        let ids: Vec<String> = body
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["id"].as_str().unwrap().to_string())
            .collect();
        pages.push(ids.len());
        got.extend(ids.iter().cloned());
        if ids.len() < 3 {
            break;
        }
        cursor = ids.last().cloned();
    }
    assert_eq!(pages, vec![3, 3, 1]);
    assert_eq!(got, sent, "every match once, newest first");
    // The default page is 25, the largest 50.
    let (st, body) = search(&app, &owner, &s.id, "noise").await;
    assert_eq!(st, 200);
    assert_eq!(body.as_array().unwrap().len(), 7);
    let (st, _) = app
        .get(
            &format!("/servers/{}/messages/search?q=noise&limit=50", s.id),
            &owner.token,
        )
        .await;
    assert_eq!(st, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_400_with_the_error_body() {
    let app = app().await;
    let owner = app.register("sb_owner").await;
    let s = app.server(&owner, "Bad").await;
    let base = format!("/servers/{}/messages/search", s.id);
    let long = "x".repeat(513);
    // Every refusal names what was wrong in `errors`.
    for (query, field) in [
        (String::new(), "q"),
        ("q=a&q=b".to_string(), "q"),
        ("q=".to_string(), "q"),
        ("q=%20%20".to_string(), "q"),
        (format!("q={long}"), "q"),
        ("q=has:video".to_string(), "q"),
        ("q=from:".to_string(), "q"),
        ("q=pinned:maybe".to_string(), "q"),
        ("q=before:tomorrow".to_string(), "q"),
        ("q=after:2026-13-45".to_string(), "q"),
        ("q=before:99999999999999999999999".to_string(), "q"),
        ("q=in:%3C%23abc%3E".to_string(), "q"),
        ("q=x&limit=0".to_string(), "limit"),
        ("q=x&limit=51".to_string(), "limit"),
        ("q=x&limit=many".to_string(), "limit"),
        ("q=x&cursor=abc".to_string(), "cursor"),
        ("q=x&cursor=-5".to_string(), "cursor"),
        ("q=x&unknown=1".to_string(), "unknown"),
        (format!("q={}", "has:link%20".repeat(17)), "q"),
    ] {
        let (st, body) = app.get(&format!("{base}?{query}"), &owner.token).await;
        assert_eq!(st, 400, "{query}: {body}");
        assert!(body["code"].is_u64(), "{query}: {body}");
        assert!(body["message"].is_string(), "{query}: {body}");
        assert!(body["errors"][field].is_array(), "{query}: {body}");
    }
    // The longest allowed query is fine.
    let (st, body) = app
        .get(&format!("{base}?q={}", "x".repeat(512)), &owner.token)
        .await;
    assert_eq!(st, 200, "{body}");
    // The DM search validates the same way.
    let (st, body) = app
        .get("/users/@me/messages/search?q=has:video", &owner.token)
        .await;
    assert_eq!(st, 400, "{body}");
    assert!(body["errors"]["q"].is_array(), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_has_its_own_rate_limit() {
    let app = TestApp::spawn().await;
    let owner = app.register("sr_owner").await;
    let s = app.server(&owner, "Limits").await;
    let mut limited = None;
    for i in 0..15 {
        let resp = app
            .http
            .get(app.url(&format!("/servers/{}/messages/search?q=x{i}", s.id)))
            .bearer_auth(&owner.token)
            .send()
            .await
            .unwrap();
        let bucket = resp
            .headers()
            .get("x-ratelimit-bucket")
            .map(|v| v.to_str().unwrap().to_string());
        assert_eq!(bucket.as_deref(), Some("search"));
        if resp.status().as_u16() == 429 {
            assert!(resp.headers().contains_key("retry-after"));
            limited = Some(i);
            break;
        }
        assert_eq!(resp.status().as_u16(), 200);
    }
    let at = limited.expect("the search bucket refuses a burst past its capacity");
    assert_eq!(at, 10, "ten searches in a burst, the eleventh refused");
    // Other endpoints are not limited by it.
    let (st, _) = app.get("/users/@me", &owner.token).await;
    assert_eq!(st, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_around_a_message_gives_its_context() {
    let app = app().await;
    let owner = app.register("sa_owner").await;
    let outsider = app.register("sa_outsider").await;
    let s = app.server(&owner, "Around").await;
    let other = app.channel(&owner, &s.id, "text", "other").await;
    let mut ids = Vec::new();
    for i in 0..20 {
        let m = app.message(&owner, &s.text, &format!("m{i}")).await;
        ids.push(m["id"].as_str().unwrap().to_string());
    }
    let page = |q: String| {
        let app = &app;
        let token = owner.token.clone();
        let channel = s.text.clone();
        async move {
            let (st, body) = app
                .get(&format!("/channels/{channel}/messages?{q}"), &token)
                .await;
            (st, body)
        }
    };
    let contents = |body: &Value| -> Vec<String> {
        body.as_array()
            .unwrap()
            .iter()
            .map(|m| m["content"].as_str().unwrap().to_string())
            .collect()
    };
    let (st, body) = page(format!("around={}&limit=6", ids[10])).await;
    assert_eq!(st, 200, "{body}");
    assert_eq!(
        contents(&body),
        vec!["m13", "m12", "m11", "m10", "m9", "m8"]
    );
    // Odd limits give the older half the extra one; near the ends the page is shorter.
    let (_, body) = page(format!("around={}&limit=5", ids[10])).await;
    assert_eq!(contents(&body), vec!["m12", "m11", "m10", "m9", "m8"]);
    let (_, body) = page(format!("around={}&limit=6", ids[19])).await;
    assert_eq!(contents(&body), vec!["m19", "m18", "m17"]);
    let (_, body) = page(format!("around={}&limit=6", ids[0])).await;
    assert_eq!(contents(&body), vec!["m3", "m2", "m1", "m0"]);
    // Not with before/after; limits as for any page.
    let (st, body) = page(format!("around={}&before={}", ids[10], ids[12])).await;
    assert_eq!(st, 400, "{body}");
    assert!(body["errors"]["around"].is_array(), "{body}");
    let (st, _) = page(format!("around={}&limit=101", ids[10])).await;
    assert_eq!(st, 400);
    // Another channel's id is only a position: nothing of that channel comes back.
    let o = app.message(&owner, &other, "elsewhere").await;
    let (st, body) = page(format!("around={}&limit=4", o["id"].as_str().unwrap())).await;
    assert_eq!(st, 200);
    assert!(!contents(&body).contains(&"elsewhere".to_string()));
    // And outsiders get nothing.
    let (st, _) = app
        .get(
            &format!("/channels/{}/messages?around={}", s.text, ids[10]),
            &outsider.token,
        )
        .await;
    assert_eq!(st, 404);
}
