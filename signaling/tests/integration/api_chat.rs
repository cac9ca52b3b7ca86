//! Servers, channels, invites and messages over HTTP, including access control and bad input.

use crate::common::{Server, TestApp, User};
use serde_json::json;

/// A server with its owner and one member.
async fn home() -> (TestApp, User, User, Server) {
    let app = TestApp::spawn().await;
    let owner = app.register("owner").await;
    let member = app.register("member").await;
    let server = app.server(&owner, "Home").await;
    (app, owner, member, server)
}

/// Only the owner manages; members get 403. Members leave; the owner cannot leave but can
/// delete.
#[tokio::test]
async fn a_server_is_managed_and_deleted_only_by_its_owner() {
    let (app, owner, member, Server { id: sid, text, .. }) = home().await;
    let (s, list) = app.get("/servers", &owner.token).await;
    assert_eq!(s, 200);
    assert_eq!(list.as_array().unwrap().len(), 1);
    let (s, server) = app
        .patch(
            &format!("/servers/{sid}"),
            &owner.token,
            json!({"name": "Renamed"}),
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(server["name"], "Renamed");
    app.join(&owner, &member, &sid).await;

    assert_eq!(
        app.patch(
            &format!("/servers/{sid}"),
            &member.token,
            json!({"name": "Mine"})
        )
        .await
        .0,
        403
    );
    assert_eq!(
        app.delete(&format!("/servers/{sid}"), &member.token)
            .await
            .0,
        403
    );
    assert_eq!(
        app.post(
            &format!("/servers/{sid}/channels"),
            &member.token,
            json!({"name": "x"})
        )
        .await
        .0,
        403
    );
    assert_eq!(
        app.delete(&format!("/channels/{text}"), &member.token)
            .await
            .0,
        403
    );

    assert_eq!(
        app.delete(&format!("/servers/{sid}/members/@me"), &member.token)
            .await
            .0,
        204
    );
    assert_eq!(
        app.get(&format!("/servers/{sid}"), &member.token).await.0,
        404
    );
    assert_eq!(
        app.delete(&format!("/servers/{sid}/members/@me"), &owner.token)
            .await
            .0,
        409
    );
    assert_eq!(
        app.delete(&format!("/servers/{sid}"), &owner.token).await.0,
        204
    );
    assert_eq!(
        app.get(&format!("/servers/{sid}"), &owner.token).await.0,
        404
    );
}

/// Channels: a category, a text channel inside it, moved out and renamed, then deleted; bad
/// types and parents are refused.
#[tokio::test]
async fn channels_nest_in_categories_move_and_are_deleted() {
    let (
        app,
        owner,
        _,
        Server {
            id: sid,
            text,
            voice,
        },
    ) = home().await;
    assert_ne!(text, voice);
    let (s, cat) = app
        .post(
            &format!("/servers/{sid}/channels"),
            &owner.token,
            json!({"name": "Games", "type": "category"}),
        )
        .await;
    assert_eq!(s, 201, "{cat}");
    let cat_id = cat["id"].as_str().unwrap();
    let (s, ch) = app
        .post(
            &format!("/servers/{sid}/channels"),
            &owner.token,
            json!({"name": "chess", "type": "text", "parent_id": cat_id}),
        )
        .await;
    assert_eq!(s, 201, "{ch}");
    assert_eq!(ch["parent_id"], cat_id);
    let ch_id = ch["id"].as_str().unwrap();
    let (s, ch) = app
        .patch(
            &format!("/channels/{ch_id}"),
            &owner.token,
            json!({"name": "go", "position": 0, "parent_id": null}),
        )
        .await;
    assert_eq!(s, 200, "{ch}");
    assert_eq!(ch["name"], "go");
    assert!(ch["parent_id"].is_null());
    let (s, body) = app
        .post(
            &format!("/servers/{sid}/channels"),
            &owner.token,
            json!({"name": "x", "type": "bulletin"}),
        )
        .await;
    assert_eq!(s, 400, "an unknown channel type: {body}");
    // Threads are made under a channel, never as a server channel.
    let (s, body) = app
        .post(
            &format!("/servers/{sid}/channels"),
            &owner.token,
            json!({"name": "x", "type": "public_thread"}),
        )
        .await;
    assert_eq!(s, 400, "a thread as a server channel: {body}");
    let (s, body) = app
        .post(
            &format!("/servers/{sid}/channels"),
            &owner.token,
            json!({"name": "x", "type": "text", "parent_id": text}),
        )
        .await;
    assert_eq!(s, 400, "a text channel cannot be a parent: {body}");
    assert_eq!(
        app.delete(&format!("/channels/{ch_id}"), &owner.token)
            .await
            .0,
        204
    );
    assert_eq!(
        app.get(&format!("/channels/{ch_id}"), &owner.token).await.0,
        404
    );
}

/// Invites: a preview, a join, limited uses and ages.
#[tokio::test]
async fn an_invite_previews_joins_and_runs_out() {
    let (app, owner, member, Server { id: sid, .. }) = home().await;
    let (s, inv) = app
        .post(
            &format!("/servers/{sid}/invites"),
            &owner.token,
            json!({"max_uses": 1, "max_age": 3600}),
        )
        .await;
    assert_eq!(s, 201, "{inv}");
    let code = inv["code"].as_str().unwrap();
    let (s, preview) = app.get(&format!("/invites/{code}"), &member.token).await;
    assert_eq!(s, 200);
    assert_eq!(preview["server"]["name"], "Home");
    let (s, joined) = app.accept_invite(&member, code).await;
    assert_eq!(s, 200, "{joined}");
    assert_eq!(joined["id"], sid.as_str());
    let third = app.register("third").await;
    let (s, _) = app.accept_invite(&third, code).await;
    assert_eq!(s, 404, "a used-up invite is gone");
    assert_eq!(app.member_ids(&member, &sid).await.len(), 2);
    let (s, body) = app
        .post(
            &format!("/servers/{sid}/invites"),
            &owner.token,
            json!({"max_age": 99999999}),
        )
        .await;
    assert_eq!(s, 400, "{body}");
}

/// A server with a writer and a reader.
async fn chat() -> (TestApp, User, User, Server) {
    let app = TestApp::spawn_with(|c| c.rate_limit_scale = 100.0).await;
    let a = app.register("writer").await;
    let b = app.register("reader").await;
    let server = app.server(&a, "Chat").await;
    app.join(&a, &b, &server.id).await;
    (app, a, b, server)
}

#[tokio::test]
async fn a_repeated_nonce_returns_the_first_message() {
    let (app, a, _, Server { text, .. }) = chat().await;
    let (s, m1) = app
        .post(
            &format!("/channels/{text}/messages"),
            &a.token,
            json!({"content": "hello **world**", "nonce": "n-1"}),
        )
        .await;
    assert_eq!(s, 201, "{m1}");
    let (s, again) = app
        .post(
            &format!("/channels/{text}/messages"),
            &a.token,
            json!({"content": "hello **world**", "nonce": "n-1"}),
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(again["id"], m1["id"]);
    assert_eq!(m1["author"]["username"], "writer");
    assert_eq!(m1["content"], "hello **world**", "stored verbatim");
}

/// Not blank, at most 4,000 characters (not bytes), and only in text channels.
#[tokio::test]
async fn message_content_must_be_text_of_a_bounded_length() {
    let (app, a, _, Server { text, voice, .. }) = chat().await;
    assert_eq!(app.try_message(&a, &text, "   ").await.0, 400);
    assert_eq!(app.try_message(&a, &text, &"é".repeat(4001)).await.0, 400);
    assert_eq!(app.try_message(&a, &text, &"é".repeat(4000)).await.0, 201);
    assert_eq!(app.try_message(&a, &voice, "hi").await.0, 400);
}

#[tokio::test]
async fn history_pages_by_before_after_and_limit() {
    let (app, _, b, Server { text, .. }) = chat().await;
    let mut ids = vec![];
    for i in 0..30 {
        let m = app.message(&b, &text, &format!("m{i}")).await;
        ids.push(m["id"].as_str().unwrap().to_string());
    }
    let (s, page) = app
        .get(&format!("/channels/{text}/messages?limit=10"), &b.token)
        .await;
    assert_eq!(s, 200);
    let page = page.as_array().unwrap();
    assert_eq!(page.len(), 10);
    assert_eq!(page[0]["content"], "m29", "newest first");
    let oldest = page[9]["id"].as_str().unwrap();
    let (_, older) = app
        .get(
            &format!("/channels/{text}/messages?limit=5&before={oldest}"),
            &b.token,
        )
        .await;
    let older = older.as_array().unwrap();
    assert_eq!(older[0]["content"], "m19");
    assert_eq!(older.len(), 5);
    let (_, newer) = app
        .get(
            &format!("/channels/{text}/messages?after={}&limit=3", ids[5]),
            &b.token,
        )
        .await;
    let newer: Vec<&str> = newer
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["content"].as_str().unwrap())
        .collect();
    assert_eq!(newer, vec!["m8", "m7", "m6"]);
    assert_eq!(
        app.get(&format!("/channels/{text}/messages?limit=101"), &b.token)
            .await
            .0,
        400
    );
    assert_eq!(
        app.get(&format!("/channels/{text}/messages?limit=abc"), &b.token)
            .await
            .0,
        400
    );
}

#[tokio::test]
async fn only_the_author_edits_and_deletes_a_message() {
    let (app, a, b, Server { text, .. }) = chat().await;
    let m1 = app.message(&a, &text, "hello").await;
    let mid = m1["id"].as_str().unwrap();
    assert_eq!(
        app.patch(
            &format!("/channels/{text}/messages/{mid}"),
            &b.token,
            json!({"content": "hacked"})
        )
        .await
        .0,
        403
    );
    let (s, edited) = app
        .patch(
            &format!("/channels/{text}/messages/{mid}"),
            &a.token,
            json!({"content": "edited"}),
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(edited["content"], "edited");
    assert!(edited["edited_at"].is_string());
    assert_eq!(
        app.delete(&format!("/channels/{text}/messages/{mid}"), &b.token)
            .await
            .0,
        403
    );
    assert_eq!(
        app.delete(&format!("/channels/{text}/messages/{mid}"), &a.token)
            .await
            .0,
        204
    );
    assert_eq!(
        app.get(&format!("/channels/{text}/messages/{mid}"), &a.token)
            .await
            .0,
        404
    );
}

/// /metrics counts created messages and HTTP requests by route, and has the process metrics.
#[tokio::test]
async fn metrics_count_created_messages_and_requests() {
    let (app, a, _, Server { text, .. }) = chat().await;
    for i in 0..32 {
        app.message(&a, &text, &format!("m{i}")).await;
    }
    let metrics = app.metrics().await;
    let created: f64 = metrics
        .lines()
        .find(|l| l.starts_with("confab_messages_created_total{"))
        .and_then(|l| l.rsplit(' ').next())
        .expect("messages counter")
        .parse()
        .unwrap();
    assert!(created >= 32.0, "{created}");
    assert!(metrics
        .lines()
        .any(|l| l.starts_with("confab_http_requests_total{")
            && l.contains(
                ",method=\"POST\",route=\"/api/v1/channels/{channel_id}/messages\",status=\"201\"}"
            )));
    assert!(metrics.contains("process_cpu_seconds_total"));
}

/// A user who is not a member never gets data: 404 (or 403) on every server, channel and
/// message endpoint.
#[tokio::test]
async fn outsiders_get_nothing() {
    let app = TestApp::spawn().await;
    let owner = app.register("insider").await;
    let eve = app.register("outsider").await;
    let Server { id: sid, text, .. } = app.server(&owner, "Private").await;
    let m = app.message(&owner, &text, "secret").await;
    let mid = m["id"].as_str().unwrap();
    app.invite(&owner, &sid).await;
    let t = &eve.token;
    let checks = vec![
        app.get(&format!("/servers/{sid}"), t).await,
        app.patch(&format!("/servers/{sid}"), t, json!({"name": "x"}))
            .await,
        app.delete(&format!("/servers/{sid}"), t).await,
        app.get(&format!("/servers/{sid}/channels"), t).await,
        app.post(&format!("/servers/{sid}/channels"), t, json!({"name": "x"}))
            .await,
        app.get(&format!("/servers/{sid}/members"), t).await,
        app.post(&format!("/servers/{sid}/invites"), t, json!({}))
            .await,
        app.delete(&format!("/servers/{sid}/members/@me"), t).await,
        app.patch(
            &format!("/servers/{sid}/members/{}", owner.id),
            t,
            json!({"mute": true}),
        )
        .await,
        app.get(&format!("/channels/{text}"), t).await,
        app.patch(&format!("/channels/{text}"), t, json!({"name": "x"}))
            .await,
        app.delete(&format!("/channels/{text}"), t).await,
        app.get(&format!("/channels/{text}/messages"), t).await,
        app.post(
            &format!("/channels/{text}/messages"),
            t,
            json!({"content": "x"}),
        )
        .await,
        app.get(&format!("/channels/{text}/messages/{mid}"), t)
            .await,
        app.patch(
            &format!("/channels/{text}/messages/{mid}"),
            t,
            json!({"content": "x"}),
        )
        .await,
        app.delete(&format!("/channels/{text}/messages/{mid}"), t)
            .await,
        app.post_empty(&format!("/channels/{text}/typing"), t).await,
    ];
    for (i, (status, body)) in checks.iter().enumerate() {
        assert!(
            *status == 404 || *status == 403,
            "check {i}: {status} {body}"
        );
        assert!(
            !body.to_string().contains("secret"),
            "check {i} leaked data"
        );
        assert!(body["code"].is_number(), "check {i}: {body}");
    }
    assert_eq!(app.get("/servers", t).await.1.as_array().unwrap().len(), 0);
    // The message is intact.
    let (_, page) = app
        .get(&format!("/channels/{text}/messages"), &owner.token)
        .await;
    assert_eq!(page[0]["content"], "secret");
}

#[tokio::test]
async fn bad_input_gets_clear_errors() {
    let app = TestApp::spawn().await;
    let u = app.register("tester").await;
    let Server { id: sid, text, .. } = app.server(&u, "S").await;
    let send = |body: &'static str, ct: &'static str| {
        app.http
            .post(app.url(&format!("/channels/{text}/messages")))
            .bearer_auth(&u.token)
            .header("content-type", ct)
            .body(body)
            .send()
    };
    for (body, ct, want) in [
        ("{not json", "application/json", 400),
        (r#"{"content": 5}"#, "application/json", 400),
        (r#"{"nope": "x"}"#, "application/json", 400),
        (r#"[1,2,3]"#, "application/json", 400),
        (r#"{"content": "x"}"#, "text/plain", 415),
    ] {
        let resp = send(body, ct).await.unwrap();
        assert_eq!(resp.status().as_u16(), want, "{body}");
        let v: serde_json::Value = resp.json().await.unwrap();
        assert!(v["code"].is_number() && v["message"].is_string(), "{v}");
    }
    let huge = json!({"content": "x".repeat(200_000)}).to_string();
    let resp = app
        .http
        .post(app.url(&format!("/channels/{text}/messages")))
        .bearer_auth(&u.token)
        .header("content-type", "application/json")
        .body(huge)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 413);
    // Optional bodies (invite, ban, relationship): empty means defaults, junk is a 400.
    for (method, path) in [
        (reqwest::Method::POST, format!("/servers/{sid}/invites")),
        (reqwest::Method::PUT, format!("/servers/{sid}/bans/1")),
        (
            reqwest::Method::PUT,
            "/users/@me/relationships/1".to_string(),
        ),
    ] {
        let resp = app
            .http
            .request(method, app.url(&path))
            .bearer_auth(&u.token)
            .body("{not json")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 400, "{path}");
    }
    let resp = app
        .http
        .post(app.url(&format!("/servers/{sid}/invites")))
        .bearer_auth(&u.token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201, "an empty body means the defaults");
    // Malformed ids are "not found", never 500.
    assert_eq!(app.get("/servers/abc", &u.token).await.0, 404);
    assert_eq!(
        app.get("/servers/99999999999999999999999", &u.token)
            .await
            .0,
        404
    );
    assert_eq!(app.get("/channels/-5/messages", &u.token).await.0, 404);
    let (s, body) = app.get("/no/such/route", &u.token).await;
    assert_eq!(s, 404);
    assert!(body["code"].is_number());
    // The server still works.
    assert_eq!(app.get(&format!("/servers/{sid}"), &u.token).await.0, 200);
}

#[tokio::test]
async fn openapi_describes_every_route() {
    let app = TestApp::spawn().await;
    let doc: serde_json::Value = app
        .http
        .get(app.url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let paths = doc["paths"].as_object().unwrap();
    for p in [
        "/api/v1/auth/register",
        "/api/v1/auth/login",
        "/api/v1/auth/refresh",
        "/api/v1/auth/logout",
        "/api/v1/users/@me",
        "/api/v1/users/@me/sessions",
        "/api/v1/users/@me/sessions/{session_id}",
        "/api/v1/servers",
        "/api/v1/servers/{server_id}",
        "/api/v1/servers/{server_id}/channels",
        "/api/v1/servers/{server_id}/members",
        "/api/v1/servers/{server_id}/invites",
        "/api/v1/invites/{code}",
        "/api/v1/channels/{channel_id}",
        "/api/v1/channels/{channel_id}/messages",
        "/api/v1/channels/{channel_id}/messages/{message_id}",
        "/api/v1/channels/{channel_id}/typing",
    ] {
        assert!(paths.contains_key(p), "missing {p}");
    }
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
    // Bodies the handlers take as optional (sending none is fine) are not documented as
    // required: schemathesis expects a request without one to be refused.
    for (p, method) in [
        ("/api/v1/servers/{server_id}/invites", "post"),
        ("/api/v1/servers/{server_id}/bans/{user_id}", "put"),
        ("/api/v1/users/@me/relationships/{user_id}", "put"),
    ] {
        let body = &paths[p][method]["requestBody"];
        assert!(
            body["content"]["application/json"].is_object(),
            "{method} {p}: {body}"
        );
        assert_ne!(body["required"], true, "{method} {p}: the body is optional");
    }
    // Answers any operation can give are documented on each: 401 where a token is needed,
    // 400/413/415 where a body is read, 429 and 503 everywhere.
    for (p, item) in paths {
        for (method, op) in item.as_object().unwrap() {
            let responses = op["responses"].as_object().unwrap();
            let has = |s: &str| responses.contains_key(s);
            assert!(has("429") && has("503"), "{method} {p}: {responses:?}");
            if op["security"].as_array().is_some_and(|s| !s.is_empty()) {
                assert!(has("401"), "{method} {p} needs a token: 401 undocumented");
            }
            if op.get("requestBody").is_some() {
                for s in ["400", "413", "415"] {
                    assert!(has(s), "{method} {p} reads a body: {s} undocumented");
                }
            }
        }
    }
}

#[tokio::test]
async fn health_and_security_headers() {
    let app = TestApp::spawn().await;
    let r = app
        .http
        .get(format!("http://{}/readyz", app.addr))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = app
        .http
        .get(format!("http://{}/healthz", app.addr))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = app
        .http
        .get(format!("http://{}/", app.addr))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let h = r.headers();
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert!(h["content-security-policy"]
        .to_str()
        .unwrap()
        .contains("frame-ancestors 'none'"));
    assert!(h.contains_key("referrer-policy"));
    // CORS: our own origin is allowed, others are not.
    let own = format!("http://127.0.0.1:{}", app.addr.port());
    let r = app
        .http
        .get(app.url("/servers"))
        .header("origin", &own)
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["access-control-allow-origin"], own.as_str());
    let r = app
        .http
        .get(app.url("/servers"))
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert!(!r.headers().contains_key("access-control-allow-origin"));
}

/// Concurrent sends are batched into one statement: every acknowledged message is stored
/// exactly once, and a nonce repeated concurrently still creates one message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_sends_are_stored_exactly_once() {
    let app = TestApp::spawn_with(|c| c.rate_limit_scale = 1000.0).await;
    let a = app.register("burst").await;
    let outsider = app.register("burst_outsider").await;
    let Server { text, .. } = app.server(&a, "Burst").await;
    let mut tasks = Vec::new();
    for i in 0..200 {
        let (http, url, token) = (
            app.http.clone(),
            app.url(&format!("/channels/{text}/messages")),
            a.token.clone(),
        );
        let nonce = if i % 4 == 0 {
            "same-nonce".to_string()
        } else {
            format!("n{i}")
        };
        tasks.push(tokio::spawn(async move {
            let r = http
                .post(url)
                .bearer_auth(token)
                .json(&json!({"content": format!("c{i}"), "nonce": nonce}))
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            let body: serde_json::Value = r.json().await.unwrap();
            (i, status, body)
        }));
    }
    // An outsider's sends in the same batches are refused, not stored.
    let (s, _) = app
        .post(
            &format!("/channels/{text}/messages"),
            &outsider.token,
            json!({"content": "intruder"}),
        )
        .await;
    assert_eq!(s, 404);
    let mut created = 0;
    let mut same_nonce_ids = std::collections::HashSet::new();
    for t in tasks {
        let (i, status, body) = t.await.unwrap();
        assert!(status == 201 || status == 200, "{i}: {status} {body}");
        if status == 201 {
            created += 1;
        }
        if i % 4 == 0 {
            same_nonce_ids.insert(body["id"].as_str().unwrap().to_string());
        }
    }
    assert_eq!(
        same_nonce_ids.len(),
        1,
        "one message for the repeated nonce"
    );
    assert_eq!(created, 150 + 1);
    let pool = app.running.as_ref().unwrap().state.chat.pool().clone();
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM messages")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(stored, 151);
}

/// Many joins through one invite at once, with a small pool: each join's transaction must not
/// wait for a second pooled connection (that deadlocks once every connection holds a join).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_invite_joins_with_a_small_pool() {
    let app = TestApp::spawn_with(|c| {
        c.db_pool_size = 2;
        c.rate_limit_scale = 1000.0;
    })
    .await;
    let owner = app.register("host_pool").await;
    let Server { id: sid, .. } = app.server(&owner, "Busy").await;
    let code = app.invite(&owner, &sid).await;
    let mut users = Vec::new();
    for i in 0..12 {
        users.push(app.register(&format!("joiner{i}")).await);
    }
    let mut tasks = Vec::new();
    for u in users {
        let (http, url, token) = (
            app.http.clone(),
            app.url(&format!("/invites/{code}")),
            u.token.clone(),
        );
        tasks.push(tokio::spawn(async move {
            http.post(url)
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 200);
    }
    assert_eq!(app.member_ids(&owner, &sid).await.len(), 13);
}

/// Past the member-list limit of a server snapshot, joining still works and the joiner finds
/// their own membership in the answer (a 2,000-member load test once failed at member 1,001).
#[tokio::test]
async fn joining_a_server_with_more_members_than_the_snapshot_lists() {
    let mut db_url = String::new();
    let app = TestApp::spawn_with(|c| db_url = c.database_url.clone().unwrap()).await;
    let owner = app.register("owner").await;
    let Server { id: sid, .. } = app.server(&owner, "Big").await;
    // 1,000 earlier members, inserted directly (registering them would cost 1,000 argon2 hashes).
    let pool = confab_chat::postgres::connect(&db_url, 1).await.unwrap();
    sqlx::query(
        "INSERT INTO users (id, username, password_hash)
         SELECT 9000000 + g, 'bulk' || g, 'x' FROM generate_series(1, 1000) g",
    )
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO members (server_id, user_id, joined_at)
         SELECT $1, 9000000 + g, now() - interval '1 hour' FROM generate_series(1, 1000) g",
    )
    .bind(sid.parse::<i64>().unwrap())
    .execute(&pool)
    .await
    .unwrap();
    pool.close().await;

    let late = app.register("latecomer").await;
    let code = app.invite(&owner, &sid).await;
    let (s, joined) = app.accept_invite(&late, &code).await;
    assert_eq!(s, 200, "{joined}");
    let members = joined["members"].as_array().unwrap();
    assert!(
        members.iter().any(|m| m["user"]["id"] == late.id.as_str()),
        "the joiner is in the answer's member list"
    );
    let (s, servers) = app.get("/servers", &late.token).await;
    assert_eq!(s, 200, "{servers}");
    assert!(servers
        .as_array()
        .unwrap()
        .iter()
        .any(|v| v["id"] == sid.as_str()));
}
