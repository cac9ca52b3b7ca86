//! Friends and blocks: requests, acceptance, removal, blocking, and events to both parties only.

use crate::common::{Event, TestApp};
use reqwest::Method;
use serde_json::json;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn friend_requests_blocks_and_events() {
    let app = TestApp::spawn().await;
    let a = app.register("amy").await;
    let b = app.register("bob_f").await;
    let c = app.register("cid").await;
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
    let (_, rel) = app.get("/users/@me/relationships", &a.token).await;
    assert_eq!(rel[0]["type"], "outgoing");
    assert_eq!(rel[0]["user"]["username"], "bob_f");

    // B accepts: both are friends.
    let (s, _) = app
        .request(
            Method::PUT,
            &format!("/users/@me/relationships/{}", a.id),
            Some(&b.token),
            None,
        )
        .await;
    assert_eq!(s, 204);
    assert_eq!(gb.expect(Event::RelationshipAdd).await["type"], "friend");
    for (u, other) in [(&a, &b), (&b, &a)] {
        let (_, rel) = app.get("/users/@me/relationships", &u.token).await;
        assert_eq!(rel.as_array().unwrap().len(), 1);
        assert_eq!(rel[0]["type"], "friend");
        assert_eq!(rel[0]["id"], other.id.as_str());
    }
    // C saw none of it.
    assert!(gc.next_within(Duration::from_millis(300)).await.is_none());

    // B removes A: gone on both sides.
    assert_eq!(
        app.delete(&format!("/users/@me/relationships/{}", a.id), &b.token)
            .await
            .0,
        204
    );
    assert_eq!(
        app.get("/users/@me/relationships", &a.token)
            .await
            .1
            .as_array()
            .unwrap()
            .len(),
        0
    );

    // C blocks A: A cannot send C requests; unblocking allows it again.
    let (s, _) = app
        .request(
            Method::PUT,
            &format!("/users/@me/relationships/{}", a.id),
            Some(&c.token),
            Some(json!({"type": "blocked"})),
        )
        .await;
    assert_eq!(s, 204);
    assert_eq!(gc.expect(Event::RelationshipAdd).await["type"], "blocked");
    let (s, _) = app
        .post(
            "/users/@me/relationships",
            &a.token,
            json!({"username": "cid"}),
        )
        .await;
    assert_eq!(s, 403);
    assert_eq!(
        app.get("/users/@me/relationships", &a.token)
            .await
            .1
            .as_array()
            .unwrap()
            .len(),
        0,
        "a block is invisible to the blocked"
    );
    assert_eq!(
        app.delete(&format!("/users/@me/relationships/{}", a.id), &c.token)
            .await
            .0,
        204
    );
    assert_eq!(
        app.post(
            "/users/@me/relationships",
            &a.token,
            json!({"username": "cid"})
        )
        .await
        .0,
        204
    );

    // Bad input.
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
        app.request(
            Method::PUT,
            &format!("/users/@me/relationships/{}", a.id),
            Some(&a.token),
            None
        )
        .await
        .0,
        400
    );
    assert_eq!(
        app.delete(&format!("/users/@me/relationships/{}", b.id), &a.token)
            .await
            .0,
        404
    );
    let (s, _) = app
        .request(
            Method::PUT,
            &format!("/users/@me/relationships/{}", b.id),
            Some(&a.token),
            Some(json!({"type": "enemy"})),
        )
        .await;
    assert_eq!(s, 400);
}
