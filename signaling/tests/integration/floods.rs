//! Floods: one user sending messages, typing and reactions as fast as they can, and an
//! IDENTIFY storm from one address. Each is limited (429 with its bucket named, or a close
//! code), and a user who is not flooding is served as usual meanwhile. (How much the flood
//! costs the others' latency is a benchmark: docs/benchmarks.md, "Floods and fairness".)

use crate::common::{Closed, Event, Server, TestApp};
use serde_json::json;
use std::collections::HashMap;

/// Fires `n` requests at once; returns how many got each status, and one refusal's bucket.
async fn burst(
    app: &TestApp,
    n: usize,
    method: reqwest::Method,
    path: impl Fn(usize) -> String,
    token: &str,
    body: Option<serde_json::Value>,
) -> (HashMap<u16, usize>, Option<(String, String)>) {
    let reqs = (0..n).map(|i| {
        let mut r = app
            .http
            .request(method.clone(), app.url(&path(i)))
            .bearer_auth(token);
        if let Some(b) = &body {
            r = r.json(b);
        }
        r.send()
    });
    let mut counts = HashMap::new();
    let mut refusal = None;
    for resp in futures_util::future::join_all(reqs).await {
        let resp = resp.expect("request");
        let s = resp.status().as_u16();
        *counts.entry(s).or_insert(0) += 1;
        if s == 429 && refusal.is_none() {
            let h = |name: &str| {
                resp.headers()
                    .get(name)
                    .map(|v| v.to_str().unwrap().to_string())
                    .unwrap_or_default()
            };
            assert!(!h("retry-after").is_empty(), "429 carries Retry-After");
            refusal = Some((h("x-ratelimit-bucket"), h("retry-after")));
        }
    }
    (counts, refusal)
}

#[tokio::test]
async fn a_flooding_user_is_limited_and_a_bystander_is_not() {
    let app = TestApp::spawn().await;
    let owner = app.register("flood_owner").await;
    let flooder = app.register("flooder").await;
    let bystander = app.register("bystander").await;
    let Server {
        id: server, text, ..
    } = app.server(&owner, "floods").await;
    app.join(&owner, &flooder, &server).await;
    app.join(&owner, &bystander, &server).await;
    let (mut by_gw, _) = app.identified(&bystander).await;
    let messages = format!("/channels/{text}/messages");

    // Messages: 10 per 5 s per user.
    let (counts, refusal) = burst(
        &app,
        40,
        reqwest::Method::POST,
        |_| messages.clone(),
        &flooder.token,
        Some(json!({"content": "spam"})),
    )
    .await;
    assert_eq!(counts.get(&201), Some(&10), "{counts:?}");
    assert_eq!(counts.get(&429), Some(&30), "{counts:?}");
    assert_eq!(refusal.unwrap().0, "messages");

    // Meanwhile the bystander's messages go through and arrive.
    for i in 0..5 {
        let (s, b) = app
            .post(
                &messages,
                &bystander.token,
                json!({"content": format!("hello {i}")}),
            )
            .await;
        assert_eq!(s, 201, "bystander send {i}: {b}");
    }
    let mut got = 0;
    while got < 5 {
        let d = by_gw.expect(Event::MessageCreate).await;
        if d["author"]["id"] == bystander.id.as_str() {
            got += 1;
        }
    }

    // Typing: 10 per 10 s.
    let typing = format!("/channels/{text}/typing");
    let (counts, refusal) = burst(
        &app,
        25,
        reqwest::Method::POST,
        |_| typing.clone(),
        &flooder.token,
        None,
    )
    .await;
    assert_eq!(counts.get(&429), Some(&15), "{counts:?}");
    assert_eq!(refusal.unwrap().0, "typing");

    // Reactions: the general bucket, 100 per 5 s.
    let (s, m) = app
        .post(&messages, &owner.token, json!({"content": "react here"}))
        .await;
    assert_eq!(s, 201, "{m}");
    let id = m["id"].as_str().unwrap().to_string();
    let emoji = ["%F0%9F%91%8D", "%F0%9F%8E%89", "%E2%9D%A4"];
    let (counts, refusal) = burst(
        &app,
        150,
        reqwest::Method::PUT,
        |i| format!("/channels/{text}/messages/{id}/reactions/{}", emoji[i % 3]),
        &flooder.token,
        None,
    )
    .await;
    assert!(counts.get(&429).copied().unwrap_or(0) >= 40, "{counts:?}");
    assert_eq!(refusal.unwrap().0, "api");
    // The bystander's own general bucket is untouched.
    let (s, b) = app
        .request(
            reqwest::Method::PUT,
            &format!("/channels/{text}/messages/{id}/reactions/{}", emoji[0]),
            Some(&bystander.token),
            None,
        )
        .await;
    assert_eq!(s, 204, "{b}");
}

#[tokio::test]
async fn an_identify_storm_from_one_address_is_limited() {
    let app = TestApp::spawn().await;
    let user = app.register("storm_user").await;
    // 30 IDENTIFYs per minute per address: the 31st and later are closed with 4008.
    let mut ready = 0;
    let mut limited = 0;
    for _ in 0..36 {
        let mut gw = app.gateway().await;
        gw.send(json!({"op": 2, "d": {"token": user.token}})).await;
        match gw.next().await {
            Some(v) if v["t"] == Event::Ready.name() => ready += 1,
            Some(v) => panic!("unexpected frame {v}"),
            None => {
                limited += 1;
            }
        }
        if limited > 0 {
            let mut gw = app.gateway().await;
            gw.send(json!({"op": 2, "d": {"token": user.token}})).await;
            assert_eq!(gw.closed().await, Closed::Code(4008));
            break;
        }
    }
    assert_eq!(ready, 30, "IDENTIFYs allowed before the limit");
    assert_eq!(limited, 1);
}
