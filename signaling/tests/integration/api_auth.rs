//! Accounts and authentication over HTTP.

use crate::common::TestApp;
use reqwest::Method;
use serde_json::json;

#[tokio::test]
async fn register_login_refresh_logout() {
    let app = TestApp::spawn().await;
    let alice = app.register("alice").await;

    let (s, me) = app.get("/users/@me", &alice.token).await;
    assert_eq!(s, 200);
    assert_eq!(me["username"], "alice");
    assert_eq!(me["id"], alice.id.as_str());

    // Same name in other case is taken.
    let (s, body) = app
        .request(
            Method::POST,
            "/auth/register",
            None,
            Some(json!({"username": "ALICE", "password": "another good one"})),
        )
        .await;
    assert_eq!(s, 400);
    assert_eq!(body["code"], 50035);
    assert!(body["errors"]["username"].is_array());

    // Login: wrong password and unknown user get the same answer.
    let (s1, b1) = app
        .request(
            Method::POST,
            "/auth/login",
            None,
            Some(json!({"username": "alice", "password": "wrong password!"})),
        )
        .await;
    let (s2, b2) = app
        .request(
            Method::POST,
            "/auth/login",
            None,
            Some(json!({"username": "nobody", "password": "wrong password!"})),
        )
        .await;
    assert_eq!((s1, s2), (401, 401));
    assert_eq!(b1, b2);
    let (s, login) = app
        .request(
            Method::POST,
            "/auth/login",
            None,
            Some(json!({"username": "Alice", "password": "correct horse battery"})),
        )
        .await;
    assert_eq!(s, 200, "{login}");
    let token2 = login["token"].as_str().unwrap().to_string();
    let refresh2 = login["refresh_token"].as_str().unwrap().to_string();

    // Two sessions now; the second is "current" for token2.
    let (s, sessions) = app.get("/users/@me/sessions", &token2).await;
    assert_eq!(s, 200);
    let sessions = sessions.as_array().unwrap();
    assert_eq!(sessions.len(), 2);
    assert_eq!(sessions.iter().filter(|s| s["current"] == true).count(), 1);

    // Refresh rotates; the old refresh token then fails and revokes the whole family.
    let (s, r) = app
        .request(
            Method::POST,
            "/auth/refresh",
            None,
            Some(json!({"refresh_token": refresh2})),
        )
        .await;
    assert_eq!(s, 200, "{r}");
    let token3 = r["token"].as_str().unwrap().to_string();
    let refresh3 = r["refresh_token"].as_str().unwrap().to_string();
    assert_ne!(refresh3, refresh2);
    assert_eq!(app.get("/users/@me", &token3).await.0, 200);
    let (s, _) = app
        .request(
            Method::POST,
            "/auth/refresh",
            None,
            Some(json!({"refresh_token": refresh2})),
        )
        .await;
    assert_eq!(s, 401, "reused refresh token must fail");
    let (s, _) = app
        .request(
            Method::POST,
            "/auth/refresh",
            None,
            Some(json!({"refresh_token": refresh3})),
        )
        .await;
    assert_eq!(
        s, 401,
        "reuse revokes the family, including the newest token"
    );
    assert_eq!(
        app.get("/users/@me", &token3).await.0,
        401,
        "access tokens of a revoked session stop working"
    );

    // The first session is untouched; logout ends it.
    assert_eq!(app.get("/users/@me", &alice.token).await.0, 200);
    let (s, _) = app
        .request(Method::POST, "/auth/logout", Some(&alice.token), None)
        .await;
    assert_eq!(s, 204);
    assert_eq!(app.get("/users/@me", &alice.token).await.0, 401);
    let (s, _) = app
        .request(
            Method::POST,
            "/auth/refresh",
            None,
            Some(json!({"refresh_token": alice.refresh})),
        )
        .await;
    assert_eq!(s, 401);
}

#[tokio::test]
async fn password_rules_and_profile() {
    let app = TestApp::spawn().await;
    for (pw, why) in [
        ("short", "too short"),
        ("password123", "common"),
        (&"x".repeat(129) as &str, "too long"),
    ] {
        let (s, body) = app
            .request(
                Method::POST,
                "/auth/register",
                None,
                Some(json!({"username": "bob", "password": pw})),
            )
            .await;
        assert_eq!(s, 400, "{why}: {body}");
        assert!(body["errors"]["password"].is_array(), "{why}: {body}");
    }
    let (s, body) = app
        .request(
            Method::POST,
            "/auth/register",
            None,
            Some(json!({"username": "a b<script>", "password": "correct horse battery"})),
        )
        .await;
    assert_eq!(s, 400);
    assert!(body["errors"]["username"].is_array());

    let bob = app.register("bob").await;
    let (s, me) = app
        .patch("/users/@me", &bob.token, json!({"display_name": "Bobby", "custom_status": "on holiday", "avatar_url": "https://example.org/a.png"}))
        .await;
    assert_eq!(s, 200, "{me}");
    assert_eq!(me["display_name"], "Bobby");
    assert_eq!(me["custom_status"], "on holiday");
    let (s, me) = app
        .patch("/users/@me", &bob.token, json!({"custom_status": null}))
        .await;
    assert_eq!(s, 200);
    assert!(me["custom_status"].is_null());
    assert_eq!(me["display_name"], "Bobby", "absent fields are unchanged");
    let (s, body) = app
        .patch(
            "/users/@me",
            &bob.token,
            json!({"avatar_url": "javascript:alert(1)"}),
        )
        .await;
    assert_eq!(s, 400);
    assert!(body["errors"]["avatar_url"].is_array());
    let (s, _) = app
        .patch("/users/@me", &bob.token, json!({"username": "hacker"}))
        .await;
    assert_eq!(s, 400, "unknown fields are refused");
}

#[tokio::test]
async fn ending_another_session() {
    let app = TestApp::spawn().await;
    let carol = app.register("carol").await;
    let (_, login) = app
        .request(
            Method::POST,
            "/auth/login",
            None,
            Some(json!({"username": "carol", "password": "correct horse battery"})),
        )
        .await;
    let other_token = login["token"].as_str().unwrap();
    let other_sid = login["session_id"].as_str().unwrap();
    let (s, _) = app
        .delete(&format!("/users/@me/sessions/{other_sid}"), &carol.token)
        .await;
    assert_eq!(s, 204);
    assert_eq!(app.get("/users/@me", other_token).await.0, 401);
    assert_eq!(app.get("/users/@me", &carol.token).await.0, 200);
    // Someone else's session id is not found.
    let dave = app.register("dave").await;
    let (s, _) = app
        .delete(&format!("/users/@me/sessions/{other_sid}"), &dave.token)
        .await;
    assert_eq!(s, 404);
}

#[tokio::test]
async fn bad_tokens_are_rejected() {
    use base64::Engine;
    let app = TestApp::spawn().await;
    let erin = app.register("erin").await;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let parts: Vec<&str> = erin.token.split('.').collect();
    let none = format!(
        "{}.{}.",
        b64.encode(r#"{"alg":"none","typ":"JWT"}"#),
        parts[1]
    );
    let mut payload: serde_json::Value =
        serde_json::from_slice(&b64.decode(parts[1]).unwrap()).unwrap();
    payload["sub"] = "1".into();
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        b64.encode(payload.to_string()),
        parts[2]
    );
    for bad in [
        none.as_str(),
        tampered.as_str(),
        "garbage",
        "",
        &"a".repeat(5000),
    ] {
        let (s, body) = app.get("/users/@me", bad).await;
        assert_eq!(s, 401, "{bad}");
        assert_eq!(body["code"], 40001);
    }
    let (s, _) = app.request(Method::GET, "/users/@me", None, None).await;
    assert_eq!(s, 401);
}

#[tokio::test]
async fn auth_rate_limit_has_headers_and_retry_after() {
    let app = TestApp::spawn().await;
    // All at once: the bucket is checked before the (slow) password hashing, so
    // sequential attempts on a loaded machine could be slower than its refill.
    let attempts = (0..60).map(|_| {
        app.http
            .post(app.url("/auth/login"))
            .json(&json!({"username": "x", "password": "y"}))
            .send()
    });
    let mut limited = None;
    for resp in futures_util::future::join_all(attempts).await {
        let resp = resp.unwrap();
        assert!(resp.headers().contains_key("x-ratelimit-limit"));
        assert_eq!(resp.headers()["x-ratelimit-bucket"], "auth");
        if resp.status() == 429 && limited.is_none() {
            limited = Some(resp);
        }
    }
    let resp = limited.expect("the auth bucket must run out within 60 attempts");
    let retry: u64 = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry >= 1);
    assert_eq!(resp.headers()["x-ratelimit-remaining"], "0");
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["code"], 42900);
}

#[tokio::test]
async fn rate_limit_scale_multiplies_buckets() {
    let app = TestApp::spawn_with(|c| c.rate_limit_scale = 10.0).await;
    let resp = app
        .http
        .post(app.url("/auth/login"))
        .json(&json!({"username": "x", "password": "y"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["x-ratelimit-limit"], "200");
}
