//! A client on a bad network: it drops its connection every few hundred milliseconds and
//! RESUMEs, while others send a steady stream of messages. Every message must reach it
//! exactly once, in order, across all those reconnections.

use crate::common::{Event, Server, TestApp};
use serde_json::json;
use std::collections::HashSet;
use std::time::{Duration, Instant};

#[tokio::test]
async fn a_client_that_keeps_dropping_and_resuming_misses_nothing() {
    let app = TestApp::spawn_with(|c| c.rate_limit_scale = 100.0).await;
    let owner = app.register("churn_owner").await;
    let flaky = app.register("churn_flaky").await;
    let Server {
        id: server, text, ..
    } = app.server(&owner, "churn").await;
    app.join(&owner, &flaky, &server).await;

    let (mut gw, ready) = app.identified(&flaky).await;
    let session_id = ready["session_id"].as_str().unwrap().to_string();
    let mut seq = gw.last_seq;

    const TOTAL: usize = 300;
    let sender = {
        let http = app.http.clone();
        let url = app.url(&format!("/channels/{text}/messages"));
        let token = owner.token.clone();
        tokio::spawn(async move {
            for i in 0..TOTAL {
                let r = http
                    .post(&url)
                    .bearer_auth(&token)
                    .json(&json!({"content": format!("m{i}"), "nonce": format!("n{i}")}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status().as_u16(), 201);
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };

    let mut received: Vec<usize> = Vec::new();
    let mut resumes = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    while received.len() < TOTAL {
        assert!(
            Instant::now() < deadline,
            "only {} of {TOTAL} arrived",
            received.len()
        );
        // Read for a while, then drop the TCP connection without a close frame.
        let until = Instant::now() + Duration::from_millis(150 + (resumes % 4) * 100);
        while Instant::now() < until {
            let left = until.saturating_duration_since(Instant::now());
            let Some(v) = gw.next_within(left).await else {
                break;
            };
            if v["op"] == 0 {
                seq = v["s"].as_u64().unwrap();
                if v["t"] == Event::MessageCreate.name() {
                    let n: usize = v["d"]["content"].as_str().unwrap()[1..].parse().unwrap();
                    received.push(n);
                }
            }
        }
        if received.len() >= TOTAL {
            break;
        }
        drop(gw);
        resumes += 1;
        gw = app.gateway().await;
        gw.last_seq = seq;
        gw.send(
            json!({"op": 6, "d": {"token": flaky.token, "session_id": session_id, "seq": seq}}),
        )
        .await;
        // Replayed dispatches come first, then RESUMED; both are read by the loop above.
    }
    sender.await.unwrap();
    assert!(resumes >= 5, "the client resumed only {resumes} times");
    let unique: HashSet<usize> = received.iter().copied().collect();
    assert_eq!(unique.len(), TOTAL, "every message arrived");
    assert_eq!(received.len(), TOTAL, "none arrived twice");
    assert!(
        received.windows(2).all(|w| w[0] < w[1]),
        "in the order they were sent"
    );
}
