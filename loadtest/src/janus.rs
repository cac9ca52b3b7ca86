//! The voice scenario against a Janus VideoRoom (`--target janus`), so that
//! Confab's figures can be set beside a well-known SFU measured the same way.
//!
//! Janus speaks its own HTTP API: one session (`create`), one plugin handle
//! per PeerConnection (`attach`), requests to the VideoRoom plugin as
//! `message`s whose results arrive asynchronously as events on the session's
//! long poll (`GET /janus/<session>`). One poller task reads every event and
//! hands it to the handle it belongs to (its `sender`).
//!
//! Each speaker publishes (`join` as publisher, then `publish` with our
//! offer); everyone subscribes to the other speakers of the room in one
//! multistream subscription (`join` as subscriber with the feeds, answer
//! Janus's offer, `start`). Janus refuses to subscribe to a feed whose
//! PeerConnection is not up yet, so subscriptions wait until every speaker
//! of the room is connected. Candidates travel in the SDP both ways
//! (half-trickle). Janus forwards RTP payloads untouched, so the latency and
//! loss accounting by payload (see `audio.rs`) works as it does for Confab.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use parking_lot::Mutex;
use serde_json::{json, Value};
use str0m::change::{SdpAnswer, SdpOffer};
use tokio::sync::{mpsc, watch};

use crate::peer::{self, Media, PeerReport, VoiceShared};

const PLUGIN: &str = "janus.plugin.videoroom";
/// Room numbers used by the load tester (room k is `ROOM_BASE + k`).
const ROOM_BASE: u64 = 7_100_000;

/// A Janus session over the HTTP API, with its event poller.
pub struct Janus {
    http: reqwest::Client,
    /// `http://host:port/janus` (no trailing slash).
    base: String,
    session: u64,
    next_tx: AtomicU64,
    /// Event queues of the live handles, by handle id.
    handles: Mutex<HashMap<u64, mpsc::UnboundedSender<Value>>>,
}

/// One plugin handle (one PeerConnection on Janus's side) and its events.
pub struct Handle {
    pub id: u64,
    events: mpsc::UnboundedReceiver<Value>,
}

impl Janus {
    /// Creates a session and starts its long-poll reader (which ends when
    /// the returned `Arc` is the only one left or the session is gone).
    pub async fn connect(base: &str) -> Result<Arc<Janus>> {
        // Long polls last up to 30 s on Janus's side: allow more here.
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(64)
            .tcp_nodelay(true)
            .timeout(Duration::from_secs(45))
            .build()?;
        let base = base.trim_end_matches('/').to_string();
        let probe = Janus {
            http,
            base,
            session: 0,
            next_tx: AtomicU64::new(1),
            handles: Mutex::new(HashMap::new()),
        };
        let r = probe
            .post(&probe.base, json!({"janus": "create"}))
            .await
            .with_context(|| format!("creating a Janus session at {}", probe.base))?;
        let session = r["data"]["id"]
            .as_u64()
            .ok_or_else(|| anyhow!("Janus create: no session id in {r}"))?;
        let j = Arc::new(Janus { session, ..probe });
        tokio::spawn(poll_events(Arc::downgrade(&j)));
        Ok(j)
    }

    fn session_url(&self) -> String {
        format!("{}/{}", self.base, self.session)
    }

    /// POSTs a Janus API request with a fresh transaction; returns the
    /// synchronous reply, or the Janus error as an error.
    async fn post(&self, url: &str, mut body: Value) -> Result<Value> {
        let tx = self.next_tx.fetch_add(1, Ordering::Relaxed);
        body["transaction"] = json!(format!("lt{tx}"));
        let resp = self
            .http
            .post(url)
            .json(&body)
            .send()
            .await
            .with_context(|| format!("POST {url}"))?;
        let status = resp.status();
        let v: Value = resp
            .json()
            .await
            .with_context(|| format!("POST {url}: HTTP {status}, body is not JSON"))?;
        if v["janus"] == "error" {
            bail!(
                "Janus error {}: {}",
                v["error"]["code"],
                v["error"]["reason"].as_str().unwrap_or("")
            );
        }
        // Synchronous plugin replies carry their own errors.
        if let Some(e) = v["plugindata"]["data"]["error"].as_str() {
            bail!(
                "VideoRoom error {}: {e}",
                v["plugindata"]["data"]["error_code"]
            );
        }
        Ok(v)
    }

    /// Attaches a new VideoRoom handle.
    pub async fn attach(&self) -> Result<Handle> {
        let r = self
            .post(
                &self.session_url(),
                json!({"janus": "attach", "plugin": PLUGIN}),
            )
            .await?;
        let id = r["data"]["id"]
            .as_u64()
            .ok_or_else(|| anyhow!("Janus attach: no handle id in {r}"))?;
        let (tx, rx) = mpsc::unbounded_channel();
        self.handles.lock().insert(id, tx);
        Ok(Handle { id, events: rx })
    }

    /// Sends a plugin request (and a JSEP, if any) on `handle`; returns the
    /// synchronous reply (`success` with plugindata, or `ack`).
    pub async fn message(&self, handle: u64, body: Value, jsep: Option<Value>) -> Result<Value> {
        let mut req = json!({"janus": "message", "body": body});
        if let Some(j) = jsep {
            req["jsep"] = j;
        }
        self.post(&format!("{}/{handle}", self.session_url()), req)
            .await
    }

    /// Detaches a handle (closing its PeerConnection); errors are ignored
    /// (the session may already be gone).
    pub async fn detach(&self, handle: u64) {
        self.handles.lock().remove(&handle);
        let _ = self
            .post(
                &format!("{}/{handle}", self.session_url()),
                json!({"janus": "detach"}),
            )
            .await;
    }

    /// Ends the session (Janus tears down whatever is left of it).
    pub async fn destroy(&self) {
        let _ = self
            .post(&self.session_url(), json!({"janus": "destroy"}))
            .await;
    }
}

/// The session's long poll: fetches events (up to 32 per request) and
/// routes each to its handle's queue. Janus answers an idle poll with a
/// keepalive after 30 s, which also keeps the session alive.
async fn poll_events(j: std::sync::Weak<Janus>) {
    let mut failures = 0u32;
    loop {
        let Some(janus) = j.upgrade() else { return };
        let url = format!("{}?maxev=32", janus.session_url());
        let r = async { janus.http.get(&url).send().await?.json::<Value>().await }.await;
        match r {
            Ok(v) => {
                failures = 0;
                let events = match v {
                    Value::Array(a) => a,
                    other => vec![other],
                };
                let handles = janus.handles.lock();
                for ev in events {
                    if let Some(tx) = ev["sender"].as_u64().and_then(|s| handles.get(&s)) {
                        let _ = tx.send(ev);
                    }
                }
            }
            Err(e) => {
                failures += 1;
                if failures >= 5 {
                    tracing::warn!("Janus long poll failing, stopping it: {e}");
                    return;
                }
                drop(janus);
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

impl Handle {
    /// Waits for the plugin event `what` (`"joined"`, `"attached"`,
    /// `"event"` with a JSEP, ...) whose data satisfies `pred`; a VideoRoom
    /// error or a hangup fails.
    async fn wait(&mut self, what: &str, timeout: Duration, jsep: bool) -> Result<Value> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let ev = tokio::time::timeout_at(deadline, self.events.recv())
                .await
                .map_err(|_| anyhow!("no Janus '{what}' event within {timeout:?}"))?
                .ok_or_else(|| anyhow!("Janus event queue closed"))?;
            if ev["janus"] == "hangup" || ev["janus"] == "detached" {
                bail!(
                    "Janus hung up: {}",
                    ev["reason"].as_str().unwrap_or("no reason")
                );
            }
            let data = &ev["plugindata"]["data"];
            if let Some(e) = data["error"].as_str() {
                bail!("VideoRoom error {}: {e}", data["error_code"]);
            }
            if data["videoroom"] == what && (!jsep || ev.get("jsep").is_some()) {
                return Ok(ev);
            }
        }
    }

    /// A queued event, if any, without waiting (hangups after joining).
    fn try_next(&mut self) -> Option<Value> {
        self.events.try_recv().ok()
    }
}

/// What the Janus target needs beyond the shared voice state.
pub struct JanusRun {
    pub janus: Arc<Janus>,
    /// Per room: the publisher ids of its connected speakers (by speaker
    /// index within the room), and how many are connected.
    pub feeds: Vec<Mutex<Vec<Option<u64>>>>,
    pub feeds_ready: Vec<watch::Sender<usize>>,
    pub speakers: usize,
}

/// Creates a session and one VideoRoom room per load-test room.
pub async fn prepare(url: &str, rooms: usize, speakers: usize) -> Result<Arc<JanusRun>> {
    let janus = Janus::connect(url).await?;
    let admin = janus.attach().await?;
    for k in 0..rooms {
        let room = ROOM_BASE + k as u64;
        let body = json!({
            "request": "create",
            "room": room,
            "description": format!("confab-loadtest {k}"),
            "publishers": speakers.max(1),
            "audiocodec": "opus",
            "permanent": false,
        });
        match janus.message(admin.id, body, None).await {
            Ok(_) => {}
            // 427: the room exists already (a previous run against the same Janus).
            Err(e) if e.to_string().contains("error 427") => {}
            Err(e) => return Err(e.context(format!("creating VideoRoom room {room}"))),
        }
    }
    janus.detach(admin.id).await;
    Ok(Arc::new(JanusRun {
        janus,
        feeds: (0..rooms)
            .map(|_| Mutex::new(vec![None; speakers]))
            .collect(),
        feeds_ready: (0..rooms).map(|_| watch::channel(0).0).collect(),
        speakers,
    }))
}

/// One participant against Janus: a publisher PeerConnection if it speaks,
/// and a subscriber PeerConnection to the room's other speakers.
pub async fn run_peer(
    room: usize,
    speaker: Option<usize>,
    run: Arc<JanusRun>,
    shared: Arc<VoiceShared>,
    mut stop: watch::Receiver<bool>,
) -> PeerReport {
    let mut rep = PeerReport {
        room,
        speaker,
        ..Default::default()
    };
    let mut handles = Vec::new();
    let r = run_inner(
        room,
        speaker,
        &run,
        &shared,
        &mut stop,
        &mut rep,
        &mut handles,
    )
    .await;
    if let Err(e) = r {
        if rep.error.is_none() {
            rep.error = Some(format!("{e:#}"));
        }
    }
    for h in handles {
        let _ = tokio::time::timeout(Duration::from_millis(500), run.janus.detach(h)).await;
    }
    if !rep.connected {
        shared.failed.fetch_add(1, Ordering::Relaxed);
    }
    rep
}

fn jsep(kind: &str, sdp: String) -> Value {
    // "trickle": false — our candidates are all in the SDP (half-trickle).
    json!({"type": kind, "sdp": sdp, "trickle": false})
}

#[allow(clippy::too_many_arguments)]
async fn run_inner(
    room: usize,
    speaker: Option<usize>,
    run: &JanusRun,
    shared: &VoiceShared,
    stop: &mut watch::Receiver<bool>,
    rep: &mut PeerReport,
    handles: &mut Vec<u64>,
) -> Result<()> {
    let janus = &run.janus;
    let room_id = ROOM_BASE + room as u64;
    let t_join = Instant::now();
    let deadline = tokio::time::Instant::now() + shared.join_timeout;
    let left = |d: tokio::time::Instant| d.saturating_duration_since(tokio::time::Instant::now());
    let own_index = speaker.map(|s| s % run.speakers.max(1));

    // Publisher: join, publish our offer, take Janus's answer.
    let mut publisher: Option<(Handle, Media, u64)> = None;
    if let Some(k) = own_index {
        let mut h = janus.attach().await?;
        handles.push(h.id);
        janus
            .message(
                h.id,
                json!({"request": "join", "ptype": "publisher", "room": room_id,
                       "display": format!("speaker-{k}")}),
                None,
            )
            .await?;
        let joined = h.wait("joined", left(deadline), false).await?;
        let feed = joined["plugindata"]["data"]["id"]
            .as_u64()
            .ok_or_else(|| anyhow!("VideoRoom joined without a publisher id"))?;
        let mut media = Media::bind(shared, t_join).await?;
        let offer = media.offer(true, 0)?;
        rep.offers += 1;
        janus
            .message(
                h.id,
                json!({"request": "publish", "audio": true, "video": false}),
                Some(jsep("offer", offer)),
            )
            .await?;
        let ev = h.wait("event", left(deadline), true).await?;
        let answer = SdpAnswer::from_sdp_string(ev["jsep"]["sdp"].as_str().unwrap_or(""))
            .map_err(|e| anyhow!("bad answer from Janus: {e}"))?;
        let pending = media
            .pending
            .take()
            .ok_or_else(|| anyhow!("answer without a pending offer"))?;
        media
            .rtc
            .sdp_api()
            .accept_answer(pending, answer)
            .map_err(|e| anyhow!("accept answer: {e}"))?;
        peer::drive(&mut media, shared, rep, t_join);
        publisher = Some((h, media, feed));
    }

    let others = if own_index.is_some() {
        run.speakers.saturating_sub(1)
    } else {
        run.speakers
    };
    let mut subscriber: Option<(Handle, Media)> = None;
    let mut published = false;
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut ready_rx = run.feeds_ready[room].subscribe();
    let far = Instant::now() + Duration::from_secs(3600);
    let pub_timer = tokio::time::sleep_until(far.into());
    let sub_timer = tokio::time::sleep_until(far.into());
    tokio::pin!(pub_timer, sub_timer);
    let join_deadline = tokio::time::sleep_until(deadline);
    tokio::pin!(join_deadline);
    let mut housekeeping = tokio::time::interval(Duration::from_millis(250));

    loop {
        // Our publisher is up: announce the feed (once).
        if let Some((_, m, feed)) = &publisher {
            if m.connected && !published {
                published = true;
                tick.reset();
                let mut f = run.feeds[room].lock();
                f[own_index.unwrap_or(0)] = Some(*feed);
                let n = f.iter().filter(|x| x.is_some()).count();
                drop(f);
                run.feeds_ready[room].send_replace(n);
            }
        }
        // Every speaker of the room is up: subscribe to the others.
        if subscriber.is_none() && others > 0 && *ready_rx.borrow() >= run.speakers {
            subscriber = Some(
                subscribe_retrying(run, room, room_id, own_index, shared, rep, t_join, handles)
                    .await?,
            );
        }
        let pub_ok = publisher.as_ref().is_none_or(|(_, m, _)| m.connected);
        let sub_ok = others == 0 || subscriber.as_ref().is_some_and(|(_, m)| m.connected);
        if pub_ok && sub_ok && !rep.connected {
            rep.connected = true;
            rep.join_us = Some(t_join.elapsed().as_micros() as u64);
            shared.connected.fetch_add(1, Ordering::Relaxed);
            shared.room_connected[room].fetch_add(1, Ordering::Relaxed);
        }
        if let Some((_, m, _)) = &publisher {
            let d: tokio::time::Instant = m.next_timeout.into();
            if pub_timer.deadline() != d {
                pub_timer.as_mut().reset(d);
            }
        }
        if let Some((_, m)) = &subscriber {
            let d: tokio::time::Instant = m.next_timeout.into();
            if sub_timer.deadline() != d {
                sub_timer.as_mut().reset(d);
            }
        }
        tokio::select! {
            biased;
            _ = stop.changed() => break,
            r = readable(publisher.as_ref().map(|p| &p.1)) => {
                r?;
                if let Some((_, m, _)) = publisher.as_mut() {
                    m.recv_batch(shared, rep, t_join)?;
                }
            }
            r = readable(subscriber.as_ref().map(|s| &s.1)) => {
                r?;
                if let Some((_, m)) = subscriber.as_mut() {
                    m.recv_batch(shared, rep, t_join)?;
                }
            }
            _ = tick.tick(), if published => {
                if let Some((_, m, _)) = publisher.as_mut() {
                    peer::send_packet(m, shared, speaker.unwrap_or(0), rep, None);
                    peer::drive(m, shared, rep, t_join);
                }
            }
            _ = &mut pub_timer, if publisher.is_some() => {
                if let Some((_, m, _)) = publisher.as_mut() {
                    let _ = m.rtc.handle_input(str0m::Input::Timeout(Instant::now()));
                    peer::drive(m, shared, rep, t_join);
                }
            }
            _ = &mut sub_timer, if subscriber.is_some() => {
                if let Some((_, m)) = subscriber.as_mut() {
                    let _ = m.rtc.handle_input(str0m::Input::Timeout(Instant::now()));
                    peer::drive(m, shared, rep, t_join);
                }
            }
            _ = ready_rx.changed(), if subscriber.is_none() => {}
            _ = housekeeping.tick() => {
                // A hangup from Janus (ICE or DTLS failure on its side).
                for h in [publisher.as_mut().map(|p| &mut p.0), subscriber.as_mut().map(|s| &mut s.0)]
                    .into_iter()
                    .flatten()
                {
                    while let Some(ev) = h.try_next() {
                        if ev["janus"] == "hangup" && rep.error.is_none() {
                            rep.error = Some(format!(
                                "Janus hung up: {}",
                                ev["reason"].as_str().unwrap_or("no reason")
                            ));
                        }
                    }
                }
            }
            _ = &mut join_deadline, if !rep.connected => {
                bail!(
                    "not connected after {:?} (publisher {}, subscriber {})",
                    shared.join_timeout,
                    if publisher.is_none() { "none" } else if pub_ok { "up" } else { "down" },
                    if others == 0 { "none" } else if sub_ok { "up" } else if subscriber.is_some() { "down" } else { "waiting for feeds" },
                );
            }
        }
    }
    Ok(())
}

/// Readiness of an optional peer's socket (pending forever when absent).
async fn readable(m: Option<&Media>) -> std::io::Result<()> {
    match m {
        Some(m) => m.sock.readable().await,
        None => std::future::pending().await,
    }
}

/// [`subscribe`], retried while Janus answers 428 "No such feed": our side
/// of a publisher's PeerConnection can be up a moment before Janus has
/// marked the feed active.
#[allow(clippy::too_many_arguments)]
async fn subscribe_retrying(
    run: &JanusRun,
    room: usize,
    room_id: u64,
    own_index: Option<usize>,
    shared: &VoiceShared,
    rep: &mut PeerReport,
    t_join: Instant,
    handles: &mut Vec<u64>,
) -> Result<(Handle, Media)> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        match subscribe(run, room, room_id, own_index, shared, rep, t_join, handles).await {
            Err(e) if attempt < 10 && e.to_string().contains("error 428") => {
                if let Some(h) = handles.pop() {
                    run.janus.detach(h).await;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            r => return r,
        }
    }
}

/// Joins as a multistream subscriber to every other speaker of the room,
/// answers Janus's offer and starts the subscription.
#[allow(clippy::too_many_arguments)]
async fn subscribe(
    run: &JanusRun,
    room: usize,
    room_id: u64,
    own_index: Option<usize>,
    shared: &VoiceShared,
    rep: &mut PeerReport,
    t_join: Instant,
    handles: &mut Vec<u64>,
) -> Result<(Handle, Media)> {
    let janus = &run.janus;
    let streams: Vec<Value> = run.feeds[room]
        .lock()
        .iter()
        .enumerate()
        .filter(|(k, _)| Some(*k) != own_index)
        .filter_map(|(_, f)| f.map(|id| json!({"feed": id})))
        .collect();
    let mut h = janus.attach().await?;
    handles.push(h.id);
    janus
        .message(
            h.id,
            json!({"request": "join", "ptype": "subscriber", "room": room_id,
                   "streams": streams}),
            None,
        )
        .await?;
    let ev = h.wait("attached", shared.join_timeout, true).await?;
    let offer = SdpOffer::from_sdp_string(ev["jsep"]["sdp"].as_str().unwrap_or(""))
        .map_err(|e| anyhow!("bad offer from Janus: {e}"))?;
    let mut media = Media::bind(shared, t_join).await?;
    let answer = media
        .rtc
        .sdp_api()
        .accept_offer(offer)
        .map_err(|e| anyhow!("accept Janus's offer: {e}"))?;
    rep.offers += 1;
    janus
        .message(
            h.id,
            json!({"request": "start"}),
            Some(jsep("answer", answer.to_sdp_string())),
        )
        .await?;
    h.wait("event", shared.join_timeout, false).await?;
    peer::drive(&mut media, shared, rep, t_join);
    Ok((h, media))
}
