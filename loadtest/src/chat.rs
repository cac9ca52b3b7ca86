//! The chat scenario: C gateway clients in one server, senders posting
//! messages over REST at a total rate; every client records each
//! MESSAGE_CREATE it gets (send→deliver latency, duplicates), and the run
//! ends with a grace period of up to 5 s for stragglers (then: lost).
//!
//! With `--rate 0` it is an idle-connection test: the report carries the
//! server's RSS growth per connected client.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use futures_util::{stream, SinkExt, StreamExt};
use parking_lot::Mutex;
use rand::Rng;
use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio::sync::{watch, Semaphore};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

use crate::api::User;
use crate::gateway::{self, classify, Frame};
use crate::server;
use crate::setup;
use crate::stats::{self, loss_percent, Hist, SeenSet};
use crate::timeseries::Series;
use crate::Ctx;

#[derive(Clone, Debug)]
pub struct ChatOpts {
    pub clients: usize,
    pub channels: usize,
    /// Messages per second, in total.
    pub rate: f64,
    /// Distinct users behind the clients (clients share them round-robin).
    pub users: Option<usize>,
    /// Typing notifications per second, in total.
    pub typing: f64,
    /// Presence changes (op 3) per second, in total.
    pub presence: f64,
    pub connect_concurrency: usize,
    /// Message POSTs in flight at most.
    pub post_concurrency: usize,
    /// Extra members flooding messages, typing, reactions and gateway frames during the
    /// measured window (the fairness benchmark; see `flood`).
    pub flooders: usize,
    /// Members of the server in all (at least the users); only the users connect.
    pub members: Option<usize>,
    /// Wait before the idle RSS sample.
    pub settle: Option<Duration>,
}

/// What one client saw.
#[derive(Default)]
struct ClientStats {
    hist: Option<Hist>,
    seen: SeenSet,
    disconnected: bool,
    presence_sent: u64,
}

struct Shared {
    clock: stats::Clock,
    deliveries: AtomicU64,
    /// Per second of the send window: see [`SERIES_COLS`].
    series: Series,
}

/// Series columns: messages persisted and unique deliveries (both by the
/// second the message was sent), deliveries by the second they arrived.
const SERIES_COLS: [&str; 3] = ["persisted", "delivered", "deliveries"];
const COL_PERSISTED: usize = 0;
const COL_DELIVERED: usize = 1;
const COL_ARRIVALS: usize = 2;

/// Message content: `lt|<id>|<send µs>|` and some text.
fn content(id: u64, send_us: u64) -> String {
    format!("lt|{id}|{send_us}| the quick brown fox jumps over the lazy dog")
}

/// Finds `"content":"lt|ID|US|` in a MESSAGE_CREATE payload.
fn parse_content(d: &str) -> Option<(u64, u64)> {
    const KEY: &[u8] = b"\"content\":\"lt|";
    let at = memchr::memmem::find(d.as_bytes(), KEY)? + KEY.len();
    let rest = &d[at..];
    let mut it = rest.splitn(3, '|');
    let id = it.next()?.parse().ok()?;
    let us = it.next()?.parse().ok()?;
    Some((id, us))
}

async fn client_loop(
    mut sess: gateway::Session,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
    presence_period: Option<Duration>,
) -> ClientStats {
    let mut st = ClientStats::default();
    let hb_period = sess.heartbeat;
    let first_hb = Instant::now() + hb_period.mul_f64(rand::rng().random_range(0.1..0.9));
    let mut hb = tokio::time::interval_at(first_hb, hb_period);
    let pp = presence_period.unwrap_or(Duration::from_secs(3600 * 24));
    let first_p = Instant::now() + pp.mul_f64(rand::rng().random_range(0.0..1.0));
    let mut presence = tokio::time::interval_at(first_p, pp);
    loop {
        tokio::select! {
            biased;
            _ = stop.changed() => break,
            msg = sess.ws.next() => match msg {
                Some(Ok(Message::Text(t))) => match classify(t.as_str()) {
                    Some(Frame::Dispatch { seq, t: "MESSAGE_CREATE", d }) => {
                        sess.last_seq = seq;
                        if let Some((id, send_us)) = parse_content(d) {
                            let now = shared.clock.now_us();
                            st.hist.get_or_insert_with(Hist::new).record_us(now.saturating_sub(send_us));
                            if st.seen.insert(id) {
                                shared.deliveries.fetch_add(1, Ordering::Relaxed);
                                shared.series.add(send_us, COL_DELIVERED, 1);
                                shared.series.add(now, COL_ARRIVALS, 1);
                                shared.series.latency(send_us, now.saturating_sub(send_us));
                            }
                        }
                    }
                    Some(Frame::Dispatch { seq, .. }) => sess.last_seq = seq,
                    Some(Frame::Op { op: 7 | 9, .. }) => {
                        st.disconnected = true;
                        break;
                    }
                    _ => {}
                },
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => {
                    st.disconnected = true;
                    break;
                }
                Some(Ok(_)) => {}
            },
            _ = hb.tick() => {
                if sess.ws.send(gateway::heartbeat_frame(sess.last_seq)).await.is_err() {
                    st.disconnected = true;
                    break;
                }
            }
            _ = presence.tick(), if presence_period.is_some() => {
                let status = if st.presence_sent % 2 == 0 { "idle" } else { "online" };
                let f = format!(r#"{{"op":3,"d":{{"status":"{status}"}}}}"#);
                if sess.ws.send(Message::text(f)).await.is_err() {
                    st.disconnected = true;
                    break;
                }
                st.presence_sent += 1;
            }
        }
    }
    if !st.disconnected {
        let _ = tokio::time::timeout(Duration::from_secs(1), sess.ws.close(None)).await;
    }
    st
}

/// Connected clients, their tasks, and how the connecting went.
pub struct Clients {
    tasks: Vec<tokio::task::JoinHandle<ClientStats>>,
    stop: watch::Sender<bool>,
    failed: usize,
    shared: Arc<Shared>,
}

async fn connect_clients(
    ctx: &Ctx,
    users: &[User],
    opts: &ChatOpts,
    duration: Duration,
) -> Clients {
    let shared = Arc::new(Shared {
        clock: ctx.clock,
        deliveries: AtomicU64::new(0),
        // The send window plus the 5 s grace period.
        series: Series::new(duration.as_secs_f64().ceil() as usize + 6, &SERIES_COLS),
    });
    let (stop_tx, stop_rx) = watch::channel(false);
    let presence_period =
        (opts.presence > 0.0).then(|| Duration::from_secs_f64(opts.clients as f64 / opts.presence));
    let pb = setup::bar(opts.clients as u64, "connect");
    let results: Vec<Result<gateway::Session>> = stream::iter(0..opts.clients)
        .map(|i| {
            // In a cluster, clients are spread over the nodes.
            let url = ctx.api.node(i).gateway_url();
            let token = users[i % users.len()].token.clone();
            let pb = pb.clone();
            async move {
                let r = gateway::connect(&url, &token).await;
                pb.inc(1);
                r
            }
        })
        .buffer_unordered(opts.connect_concurrency.max(1))
        .collect()
        .await;
    pb.finish();
    let mut tasks = Vec::new();
    let mut failed = 0;
    let mut first_err = None;
    for r in results {
        match r {
            Ok(sess) => tasks.push(tokio::spawn(client_loop(
                sess,
                shared.clone(),
                stop_rx.clone(),
                presence_period,
            ))),
            Err(e) => {
                failed += 1;
                first_err.get_or_insert(e);
            }
        }
    }
    if let Some(e) = first_err {
        tracing::warn!("{failed} gateway connections failed; first error: {e:#}");
    }
    Clients {
        tasks,
        stop: stop_tx,
        failed,
        shared,
    }
}

/// Posts messages at `rate`/s for `duration`; returns the ids that got a 201.
struct SendOutcome {
    attempted: u64,
    persisted: SeenSet,
    failed: u64,
    statuses: Vec<(u16, u64)>,
    post: Hist,
}

async fn send_messages(
    ctx: &Ctx,
    senders: &[User],
    channels: &[String],
    rate: f64,
    duration: Duration,
    post_concurrency: usize,
    series: Arc<Shared>,
) -> SendOutcome {
    let persisted = Arc::new(Mutex::new(SeenSet::default()));
    let post = Arc::new(Mutex::new(Hist::new()));
    let statuses = Arc::new(Mutex::new(std::collections::BTreeMap::<u16, u64>::new()));
    let failed = Arc::new(AtomicU64::new(0));
    let inflight = Arc::new(Semaphore::new(post_concurrency));
    let start = Instant::now();
    let end = start + duration;
    let mut id: u64 = 0;
    let mut tasks = tokio::task::JoinSet::new();
    loop {
        let due = start + Duration::from_secs_f64(id as f64 / rate);
        if due >= end {
            break;
        }
        tokio::time::sleep_until(due).await;
        let Ok(permit) = inflight.clone().acquire_owned().await else {
            break;
        };
        // In a cluster, sends are spread over the nodes.
        let api = ctx.api.node(id as usize);
        let token = senders[id as usize % senders.len()].token.clone();
        let channel = channels[id as usize % channels.len()].clone();
        let (persisted, post, statuses, failed) = (
            persisted.clone(),
            post.clone(),
            statuses.clone(),
            failed.clone(),
        );
        let clock = ctx.clock;
        let this = id;
        let shared = series.clone();
        tasks.spawn(async move {
            let t0 = clock.now_us();
            let body = content(this, t0);
            let nonce = this.to_string();
            let r = api.post_message(&token, &channel, &body, &nonce).await;
            let t1 = clock.now_us();
            drop(permit);
            match r {
                Ok(s) => {
                    *statuses.lock().entry(s.as_u16()).or_default() += 1;
                    if s == StatusCode::CREATED || s == StatusCode::OK {
                        persisted.lock().insert(this);
                        shared.series.add(t0, COL_PERSISTED, 1);
                        post.lock().record_us(t1 - t0);
                    } else {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Err(_) => {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        id += 1;
        // Reap finished tasks now and then so the set stays small.
        while tasks.try_join_next().is_some() {}
    }
    while tasks.join_next().await.is_some() {}
    let persisted = std::mem::take(&mut *persisted.lock());
    let post = post.lock().clone();
    let statuses = statuses.lock().iter().map(|(k, v)| (*k, *v)).collect();
    SendOutcome {
        attempted: id,
        persisted,
        failed: failed.load(Ordering::Relaxed),
        statuses,
        post,
    }
}

async fn typing_loop(
    ctx: Ctx,
    users: Vec<User>,
    channels: Vec<String>,
    rate: f64,
    duration: Duration,
) -> u64 {
    let start = Instant::now();
    let mut n = 0u64;
    loop {
        let due = start + Duration::from_secs_f64(n as f64 / rate);
        if due >= start + duration {
            return n;
        }
        tokio::time::sleep_until(due).await;
        let api = ctx.api.clone();
        let token = users[n as usize % users.len()].token.clone();
        let channel = channels[n as usize % channels.len()].clone();
        tokio::spawn(async move {
            let _ = api.typing(&token, &channel).await;
        });
        n += 1;
    }
}

/// The live progress line during the send window (and the server's
/// counters once a second, for the report).
async fn live_progress(
    ctx: Ctx,
    shared: Arc<Shared>,
    connected: usize,
    duration: Duration,
) -> server::Sampler {
    let secs = duration.as_secs_f64().ceil() as u64;
    let pb = setup::steady_bar(secs, "chat");
    let mut sampler = server::Sampler::default();
    let start = Instant::now();
    sampler.sample(&ctx.api, ctx.sfu_pid, 0.0).await;
    for k in 1..=secs {
        // Half a second after second k-1 ends, most of its deliveries are in.
        tokio::time::sleep_until(start + Duration::from_millis(k * 1000 + 500)).await;
        sampler
            .sample(&ctx.api, ctx.sfu_pid, start.elapsed().as_secs_f64())
            .await;
        let sec = (k - 1) as usize;
        let persisted = shared.series.count(sec, "persisted");
        let fmt = |v: Option<f64>| v.map_or("n/a".to_string(), |v| format!("{v:.1}"));
        pb.set_position(k);
        pb.set_message(format!(
            "clients {connected} | {persisted} msg/s | {} deliveries/s | deliver p50 {} p99 {} ms | server CPU {}%",
            shared.series.count(sec, "deliveries"),
            fmt(shared.series.percentile_ms(sec, 50.0)),
            fmt(shared.series.percentile_ms(sec, 99.0)),
            fmt(sampler.last_cpu_percent()),
        ));
    }
    pb.finish();
    sampler
}

pub async fn run(
    ctx: &Ctx,
    opts: &ChatOpts,
    duration: Duration,
    barrier: Option<Arc<tokio::sync::Barrier>>,
) -> Result<Value> {
    let n_users = opts
        .users
        .unwrap_or(opts.clients.min(1000))
        .clamp(1, opts.clients.max(1));
    eprintln!(
        "chat: {} clients over {} users, {} channel(s), {} msg/s for {} s",
        opts.clients,
        n_users,
        opts.channels,
        opts.rate,
        duration.as_secs_f64()
    );
    let n_members = opts.members.unwrap_or(n_users).max(n_users);
    if n_members > n_users {
        eprintln!("chat: {n_members} members, of whom {n_users} connect");
    }
    let mut users = setup::register_users(
        &ctx.api,
        n_members + opts.flooders,
        ctx.register_concurrency,
    )
    .await?;
    let srv = setup::server_with_members(&ctx.api, &users, "lt-chat", 32).await?;
    let flooders = users.split_off(n_members);
    users.truncate(n_users);
    let channels = ctx
        .api
        .ensure_channels(
            &users[0].token,
            &srv.server_id,
            "text",
            opts.channels.max(1),
        )
        .await?;

    let before = server::snapshot(&ctx.api, ctx.sfu_pid).await;
    let clients = connect_clients(ctx, &users, opts, duration).await;
    let connected = clients.tasks.len();
    // Let the server settle (allocations after READY, presence fan-out).
    let settle = opts
        .settle
        .unwrap_or(Duration::from_secs(if opts.rate > 0.0 { 2 } else { 5 }));
    tokio::time::sleep(settle).await;
    let idle = server::snapshot(&ctx.api, ctx.sfu_pid).await;
    let rss_per_conn = match (before.rss, idle.rss) {
        (Some(a), Some(b)) if connected > 0 => Some((b as f64 - a as f64) / connected as f64),
        _ => None,
    };

    if let Some(b) = &barrier {
        b.wait().await;
    }
    // Steady state.
    let senders: Vec<User> = users.iter().take(64).cloned().collect();
    let cpu0 = stats::self_cpu_us();
    let s0 = server::snapshot(&ctx.api, ctx.sfu_pid).await;
    let typing = (opts.typing > 0.0).then(|| {
        tokio::spawn(typing_loop(
            ctx.clone(),
            senders.clone(),
            channels.clone(),
            opts.typing,
            duration,
        ))
    });
    let flood = if flooders.is_empty() {
        None
    } else {
        let target = crate::flood::target_message(&ctx.api, &users[0], &channels[0]).await?;
        eprintln!("chat: {} flooders start", flooders.len());
        Some(crate::flood::start(
            &ctx.api,
            &flooders,
            &channels[0],
            &target,
        ))
    };
    let t_start = Instant::now();
    clients.shared.series.set_start(ctx.clock.now_us());
    let live = tokio::spawn(live_progress(
        ctx.clone(),
        clients.shared.clone(),
        connected,
        duration,
    ));
    let sent = if opts.rate > 0.0 {
        send_messages(
            ctx,
            &senders,
            &channels,
            opts.rate,
            duration,
            opts.post_concurrency,
            clients.shared.clone(),
        )
        .await
    } else {
        tokio::time::sleep(duration).await;
        SendOutcome {
            attempted: 0,
            persisted: SeenSet::default(),
            failed: 0,
            statuses: Vec::new(),
            post: Hist::new(),
        }
    };
    let flood = match flood {
        Some(f) => f.finish().await,
        None => Value::Null,
    };
    let send_secs = t_start.elapsed().as_secs_f64().max(duration.as_secs_f64());
    let s1 = server::snapshot(&ctx.api, ctx.sfu_pid).await;
    let cpu1 = stats::self_cpu_us();
    // Grace period: up to 5 s for every expected delivery to arrive.
    let expected = sent.persisted.unique() * connected as u64;
    let grace_end = Instant::now() + Duration::from_secs(5);
    while clients.shared.deliveries.load(Ordering::Relaxed) < expected && Instant::now() < grace_end
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let sampler = live.await.unwrap_or_default();
    let typing_sent = match typing {
        Some(t) => t.await.unwrap_or(0),
        None => 0,
    };

    let _ = clients.stop.send(true);
    let mut hist = Hist::new();
    let (mut delivered, mut dup, mut lost, mut disconnects, mut presence_sent) =
        (0u64, 0u64, 0u64, 0u64, 0u64);
    for t in clients.tasks {
        let Ok(st) = t.await else { continue };
        if let Some(h) = &st.hist {
            hist.add(h);
        }
        let got = st.seen.count_common(&sent.persisted);
        delivered += got;
        lost += sent.persisted.unique() - got;
        dup += st.seen.duplicates();
        disconnects += st.disconnected as u64;
        presence_sent += st.presence_sent;
    }
    let persisted = sent.persisted.unique();
    let server_cpu = server::cpu_delta(&s0, &s1);
    let statuses: serde_json::Map<String, Value> = sent
        .statuses
        .iter()
        .map(|(k, v)| (k.to_string(), json!(v)))
        .collect();
    let n_secs = duration.as_secs_f64().ceil() as usize;
    let mut series = clients.shared.series.to_json(n_secs);
    series["loss_percent"] = json!((0..n_secs)
        .map(|s| {
            loss_percent(
                clients.shared.series.count(s, SERIES_COLS[COL_PERSISTED]) * connected as u64,
                clients.shared.series.count(s, SERIES_COLS[COL_DELIVERED]),
            )
        })
        .collect::<Vec<_>>());
    Ok(json!({
        "timeseries": {"chat": series, "server": sampler.to_json()},
        "chat": {
            "clients": opts.clients,
            "users": n_users,
            "channels": opts.channels,
            "connected": connected,
            "connect_failed": clients.failed,
            "disconnects": disconnects,
            "rate": opts.rate,
            "duration_s": send_secs,
            "messages_attempted": sent.attempted,
            "messages_persisted": persisted,
            "messages_failed": sent.failed,
            "post_statuses": statuses,
            "messages_per_second": persisted as f64 / send_secs,
            "post_ms": sent.post.summary_ms(),
            "expected_deliveries": expected,
            "deliveries": delivered,
            "deliveries_per_second": delivered as f64 / send_secs,
            "lost": lost,
            "duplicated": dup,
            "deliver_ms": hist.summary_ms(),
            "typing_sent": typing_sent,
            "flood": flood,
            "presence_sent": presence_sent,
            "server_rss_bytes_before_connect": before.rss,
            "server_rss_bytes_idle": idle.rss,
            "server_rss_bytes_per_connection": rss_per_conn,
        },
        "server": {
            "cpu_seconds": server_cpu.map(|c| c.0),
            "cpu_source": server_cpu.map(|c| c.1),
            "cpu_us_per_delivery": server_cpu.filter(|_| delivered > 0).map(|c| c.0 * 1e6 / delivered as f64),
            "rss_bytes": s1.rss,
        },
        "loadtest": {
            "cpu_seconds": (cpu1 - cpu0) as f64 / 1e6,
            "cpu_us_per_delivery": (delivered > 0).then(|| (cpu1 - cpu0) as f64 / delivered as f64),
            "rss_bytes": stats::rss_bytes(None),
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_round_trip() {
        let c = content(17, 123_456);
        let d = format!(
            r#"{{"id":"1","content":{},"nonce":"17"}}"#,
            serde_json::to_string(&c).unwrap()
        );
        assert_eq!(parse_content(&d), Some((17, 123_456)));
        assert_eq!(parse_content(r#"{"content":"hello"}"#), None);
    }
}
