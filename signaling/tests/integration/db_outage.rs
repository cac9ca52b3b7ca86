//! PostgreSQL frozen and then killed under a stream of sends: requests are answered 503 with
//! `Retry-After` quickly instead of hanging into a 500, `/readyz` says not ready, service
//! comes back by itself, and every acknowledged message is stored exactly once.
//!
//! This file runs its own cluster (one test per process), so stopping it disturbs no other
//! test. With `DATABASE_URL` set the database is not ours to kill: the test says so and passes.

use crate::common::{Server, TestApp};
use confab_chat::postgres::{EmbeddedOptions, EmbeddedPostgres};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The postmaster and its children (backends, checkpointer, …).
fn cluster_pids(postmaster: u32) -> Vec<i32> {
    let mut pids = vec![postmaster as i32];
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // Fields after the command's closing parenthesis: state, ppid, …
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        if ppid == Some(postmaster) {
            pids.push(pid);
        }
    }
    pids
}

fn signal_all(postmaster: u32, sig: Signal) {
    for pid in cluster_pids(postmaster) {
        let _ = kill(Pid::from_raw(pid), sig);
    }
}

#[derive(Default)]
struct Log {
    acked: HashMap<String, String>,
    statuses: HashMap<u16, u32>,
}

/// Sends messages one after another as a careful client does: the same nonce until the
/// server acknowledges it (201, or 200 for a nonce it already has), pausing on 503.
async fn sender(
    app: Arc<TestApp>,
    token: String,
    channel: String,
    log: Arc<Mutex<Log>>,
    stop: Arc<AtomicBool>,
) {
    let path = format!("/channels/{channel}/messages");
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let nonce = format!("m{n}");
        loop {
            let (s, b) = app
                .post(
                    &path,
                    &token,
                    json!({"content": format!("message {n}"), "nonce": nonce}),
                )
                .await;
            *log.lock().unwrap().statuses.entry(s).or_default() += 1;
            if s == 200 || s == 201 {
                let id = b["id"].as_str().unwrap().to_string();
                log.lock().unwrap().acked.insert(nonce.clone(), id);
                break;
            }
            assert!(
                s == 503 || s == 0,
                "only 503s during an outage, got {s}: {b}"
            );
            if stop.load(Ordering::Relaxed) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        n += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A send measured on its own: (status, Retry-After, time taken).
async fn probe_send(app: &TestApp, token: &str, channel: &str) -> (u16, Option<String>, Duration) {
    let started = Instant::now();
    let resp = app
        .http
        .post(app.url(&format!("/channels/{channel}/messages")))
        .bearer_auth(token)
        .json(&json!({"content": "probe"}))
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .unwrap();
    let retry = resp
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_string());
    (resp.status().as_u16(), retry, started.elapsed())
}

async fn ready(app: &TestApp) -> u16 {
    app.http
        .get(format!("http://{}/readyz", app.addr))
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}

/// Waits until sends are refused fast: a 503 with Retry-After in under 1.5 s.
async fn until_fast_503(app: &TestApp, token: &str, channel: &str, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (s, retry, took) = probe_send(app, token, channel).await;
        assert!(s == 503, "{what}: a send got {s} during the outage");
        assert!(retry.is_some(), "{what}: 503 without Retry-After");
        if took < Duration::from_millis(1500) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: still slow after 15 s ({took:?})"
        );
    }
}

async fn until_sends_work(app: &TestApp, token: &str, channel: &str, what: &str) -> Duration {
    let started = Instant::now();
    loop {
        let (s, _, _) = probe_send(app, token, channel).await;
        if s == 201 {
            return started.elapsed();
        }
        assert!(s == 503, "{what}: recovering send got {s}");
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{what}: not recovered in 30 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn sends_get_503_during_a_database_outage_and_no_acknowledged_message_is_lost() {
    if std::env::var("DATABASE_URL").is_ok_and(|u| !u.is_empty()) {
        eprintln!(
            "SKIPPED: DATABASE_URL is set; this test needs a PostgreSQL it may freeze and kill"
        );
        return;
    }
    let options = EmbeddedOptions {
        data_dir: std::env::temp_dir().join(format!("confab-outage-{}", std::process::id())),
        // Durable commits: the test kills PostgreSQL, and an acknowledged message must survive.
        ephemeral: false,
        database: "outage".into(),
    };
    let _ = std::fs::remove_dir_all(&options.data_dir);
    let pg = EmbeddedPostgres::start(options.clone()).await.unwrap();
    let url = pg.url();
    let app = Arc::new(
        TestApp::spawn_with(|c| {
            c.database_url = Some(url.clone());
            c.rate_limit_scale = 100.0;
        })
        .await,
    );
    let owner = app.register("outage_owner").await;
    let Server { text: channel, .. } = app.server(&owner, "outage").await;
    let log = Arc::new(Mutex::new(Log::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let task = tokio::spawn(sender(
        app.clone(),
        owner.token.clone(),
        channel.clone(),
        log.clone(),
        stop.clone(),
    ));
    tokio::time::sleep(Duration::from_secs(1)).await;

    // Frozen: connections open, nothing answers.
    let pid = pg.pid().unwrap();
    signal_all(pid, Signal::SIGSTOP);
    until_fast_503(&app, &owner.token, &channel, "frozen").await;
    assert_eq!(ready(&app).await, 503, "/readyz during the freeze");
    signal_all(pid, Signal::SIGCONT);
    let back = until_sends_work(&app, &owner.token, &channel, "after the freeze").await;
    eprintln!("frozen: sends work again {back:?} after SIGCONT");
    tokio::time::sleep(Duration::from_secs(1)).await;

    // Killed: every process of the cluster gone at once, then started again.
    signal_all(pid, Signal::SIGKILL);
    until_fast_503(&app, &owner.token, &channel, "killed").await;
    assert_eq!(ready(&app).await, 503, "/readyz while the database is down");
    drop(pg);
    let pg = EmbeddedPostgres::start(options.clone()).await.unwrap();
    let back = until_sends_work(&app, &owner.token, &channel, "after the restart").await;
    eprintln!("killed: sends work again {back:?} after the restart");
    assert_eq!(ready(&app).await, 200);
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::Relaxed);
    task.await.unwrap();

    // Every acknowledged message is stored once, with the id it was acknowledged with.
    let pool = confab_chat::postgres::connect(&pg.url(), 1).await.unwrap();
    let rows: Vec<(String, i64)> = sqlx::query_as(
        "SELECT nonce, count(*) FROM messages WHERE nonce IS NOT NULL GROUP BY nonce",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let stored: HashMap<String, i64> = rows.into_iter().collect();
    let log = std::mem::take(&mut *log.lock().unwrap());
    eprintln!("statuses seen by the sender: {:?}", log.statuses);
    assert!(
        log.acked.len() > 20,
        "the sender made progress: {}",
        log.acked.len()
    );
    assert!(
        log.statuses.get(&503).copied().unwrap_or(0) > 0,
        "the sender saw the outage"
    );
    for (nonce, id) in &log.acked {
        assert_eq!(
            stored.get(nonce),
            Some(&1),
            "acknowledged {nonce} stored once"
        );
        let (s, m): (u16, Value) = app
            .get(&format!("/channels/{channel}/messages/{id}"), &owner.token)
            .await;
        assert_eq!(s, 200, "{m}");
    }
    pool.close().await;
    pg.stop();
    let _ = std::fs::remove_dir_all(&options.data_dir);
}
