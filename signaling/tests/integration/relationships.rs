//! Friends and blocks: requests, acceptance, removal, blocking, and events to both parties only.

use crate::common::{Event, TestApp, User};
use serde_json::json;
use std::time::Duration;

/// Amy, Bob and Cid, registered.
async fn three() -> (TestApp, User, User, User) {
    let app = TestApp::spawn().await;
    let a = app.register("amy").await;
    let b = app.register("bob_f").await;
    let c = app.register("cid").await;
    (app, a, b, c)
}

fn relationship(other: &User) -> String {
    format!("/users/@me/relationships/{}", other.id)
}

async fn relationships(app: &TestApp, of: &User) -> serde_json::Value {
    app.get("/users/@me/relationships", &of.token).await.1
}

/// A asks B by username (any case); B accepts; B removes A. Each step reaches B live; a third
/// user hears none of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_friend_request_accepted_makes_friends_and_only_they_hear_of_it() {
    let (app, a, b, c) = three().await;
    let (mut gb, _) = app.identified(&b).await;
    let (mut gc, _) = app.identified(&c).await;

    // A asks B by username: A sees outgoing, B incoming (live).
    let (s, _) = app
        .post(
            "/users/@me/relationships",
            &a.token,
            json!({"username": "BOB_F"}),
        )
        .await;
    assert_eq!(s, 204);
    let ev = gb.expect(Event::RelationshipAdd).await;
    assert_eq!(
        (ev["id"].as_str().unwrap(), ev["type"].as_str().unwrap()),
        (a.id.as_str(), "incoming")
    );
    let rel = relationships(&app, &a).await;
    assert_eq!(rel[0]["type"], "outgoing");
    assert_eq!(rel[0]["user"]["username"], "bob_f");

    // B accepts: both are friends.
    let (s, _) = app.put(&relationship(&a), &b.token).await;
    assert_eq!(s, 204);
    assert_eq!(gb.expect(Event::RelationshipAdd).await["type"], "friend");
    for (u, other) in [(&a, &b), (&b, &a)] {
        let rel = relationships(&app, u).await;
        assert_eq!(rel.as_array().unwrap().len(), 1);
        assert_eq!(rel[0]["type"], "friend");
        assert_eq!(rel[0]["id"], other.id.as_str());
    }
    // C saw none of it.
    gc.expect_silence(Duration::from_millis(300)).await;

    // B removes A: gone on both sides.
    assert_eq!(app.delete(&relationship(&a), &b.token).await.0, 204);
    assert_eq!(relationships(&app, &a).await.as_array().unwrap().len(), 0);
}

/// C blocks A: A cannot send C requests and does not see the block; unblocking allows
/// requests again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_block_stops_requests_until_lifted_and_is_invisible_to_the_blocked() {
    let (app, a, _, c) = three().await;
    let (mut gc, _) = app.identified(&c).await;
    let (s, _) = app
        .put_json(&relationship(&a), &c.token, json!({"type": "blocked"}))
        .await;
    assert_eq!(s, 204);
    assert_eq!(gc.expect(Event::RelationshipAdd).await["type"], "blocked");
    let ask_c = || {
        app.post(
            "/users/@me/relationships",
            &a.token,
            json!({"username": "cid"}),
        )
    };
    assert_eq!(ask_c().await.0, 403);
    assert_eq!(
        relationships(&app, &a).await.as_array().unwrap().len(),
        0,
        "a block is invisible to the blocked"
    );
    assert_eq!(app.delete(&relationship(&a), &c.token).await.0, 204);
    assert_eq!(ask_c().await.0, 204);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_relationship_requests_are_refused() {
    let (app, a, b, _) = three().await;
    assert_eq!(
        app.post(
            "/users/@me/relationships",
            &a.token,
            json!({"username": "nobody_here"})
        )
        .await
        .0,
        404
    );
    assert_eq!(
        app.put(&relationship(&a), &a.token).await.0,
        400,
        "yourself"
    );
    assert_eq!(
        app.delete(&relationship(&b), &a.token).await.0,
        404,
        "no relationship"
    );
    let (s, _) = app
        .put_json(&relationship(&b), &a.token, json!({"type": "enemy"}))
        .await;
    assert_eq!(s, 400);
}
