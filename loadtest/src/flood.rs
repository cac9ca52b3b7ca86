//! Flooders for the fairness benchmark (`chat --flooders N`): members of the same server who,
//! during the measured window, send messages, typing and reactions as fast as the server
//! answers (ignoring 429s) and hold a gateway connection that sends frames past its budget.
//! The chat report's `deliver_ms` then shows what the flood costs everyone else; run once
//! with `--flooders 0` beside it for the baseline.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::SinkExt;
use parking_lot::Mutex;
use reqwest::Method;
use serde_json::{json, Value};
use tokio::sync::watch;

use crate::api::{Api, User};
use crate::gateway;

/// Requests each flooder keeps in flight.
const IN_FLIGHT: usize = 8;

#[derive(Default)]
struct Counts {
    statuses: BTreeMap<u16, u64>,
    errors: u64,
    gateway_closes: u64,
}

/// One flood request: which kind it is decides the route.
fn request(
    api: &Api,
    user: &User,
    channel: &str,
    message: &str,
    n: u64,
) -> reqwest::RequestBuilder {
    let emoji = ["%F0%9F%91%8D", "%F0%9F%8E%89", "%E2%9D%A4"][n as usize % 3];
    let (method, path, body) = match n % 4 {
        0 | 2 => (
            Method::POST,
            format!("/channels/{channel}/messages"),
            Some(json!({"content": "flood"})),
        ),
        1 => (Method::POST, format!("/channels/{channel}/typing"), None),
        _ => (
            if n % 8 == 3 {
                Method::PUT
            } else {
                Method::DELETE
            },
            format!("/channels/{channel}/messages/{message}/reactions/{emoji}"),
            None,
        ),
    };
    let mut r = api
        .http
        .request(method, api.url(&path))
        .bearer_auth(&user.token);
    if let Some(b) = body {
        r = r.json(&b);
    }
    r
}

async fn rest_loop(
    api: Api,
    user: User,
    channel: String,
    message: String,
    counts: Arc<Mutex<Counts>>,
    mut stop: watch::Receiver<bool>,
    lane: u64,
) {
    let mut n = lane;
    loop {
        let send = request(&api, &user, &channel, &message, n).send();
        tokio::select! {
            _ = stop.changed() => return,
            r = send => match r {
                Ok(resp) => {
                    let s = resp.status().as_u16();
                    let _ = resp.bytes().await;
                    *counts.lock().statuses.entry(s).or_default() += 1;
                }
                Err(_) => counts.lock().errors += 1,
            }
        }
        n += IN_FLIGHT as u64;
    }
}

/// A gateway connection that sends heartbeats back to back until the server closes it for
/// exceeding the frame budget (4008), then connects again after a second.
async fn gateway_loop(
    url: String,
    user: User,
    counts: Arc<Mutex<Counts>>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        if *stop.borrow() {
            return;
        }
        if let Ok(mut sess) = gateway::connect(&url, &user.token).await {
            loop {
                tokio::select! {
                    _ = stop.changed() => return,
                    r = sess.ws.send(gateway::heartbeat_frame(0)) => if r.is_err() { break },
                }
            }
            counts.lock().gateway_closes += 1;
        }
        tokio::select! {
            _ = stop.changed() => return,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

/// Running flooders; `finish` stops them and reports.
pub struct Flood {
    stop: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    counts: Arc<Mutex<Counts>>,
    started: tokio::time::Instant,
    flooders: usize,
}

/// Posts the message the flooders react to; returns its id.
pub async fn target_message(api: &Api, user: &User, channel: &str) -> anyhow::Result<String> {
    let resp = api
        .http
        .post(api.url(&format!("/channels/{channel}/messages")))
        .bearer_auth(&user.token)
        .json(&json!({"content": "react to me"}))
        .send()
        .await?;
    let v: Value = resp.json().await?;
    v["id"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| anyhow::anyhow!("posting the flood target: {v}"))
}

pub fn start(api: &Api, flooders: &[User], channel: &str, message: &str) -> Flood {
    let (stop, rx) = watch::channel(false);
    let counts = Arc::new(Mutex::new(Counts::default()));
    let mut tasks = Vec::new();
    for user in flooders {
        for lane in 0..IN_FLIGHT as u64 {
            tasks.push(tokio::spawn(rest_loop(
                api.clone(),
                user.clone(),
                channel.to_string(),
                message.to_string(),
                counts.clone(),
                rx.clone(),
                lane,
            )));
        }
        tasks.push(tokio::spawn(gateway_loop(
            api.gateway_url(),
            user.clone(),
            counts.clone(),
            rx.clone(),
        )));
    }
    Flood {
        stop,
        tasks,
        counts,
        started: tokio::time::Instant::now(),
        flooders: flooders.len(),
    }
}

impl Flood {
    pub async fn finish(self) -> Value {
        let secs = self.started.elapsed().as_secs_f64();
        let _ = self.stop.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
        let c = self.counts.lock();
        let requests: u64 = c.statuses.values().sum();
        json!({
            "flooders": self.flooders,
            "requests": requests,
            "requests_per_second": requests as f64 / secs.max(0.001),
            "statuses": c.statuses.iter().map(|(k, v)| (k.to_string(), json!(v))).collect::<serde_json::Map<_, _>>(),
            "errors": c.errors,
            "gateway_closes": c.gateway_closes,
        })
    }
}
