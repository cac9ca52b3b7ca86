//! Shared voice test code: gateway clients that collect frames, and str0m peers on their own UDP
//! sockets that offer like the web client.
#![allow(dead_code)]

use crate::common::{Event, TestApp, User};
use confab_sfu::testing::{TestPeer, TestPeerConfig};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

/// A gateway connection whose frames are collected by a reader task.
pub struct Client {
    pub tx: mpsc::UnboundedSender<Value>,
    pub rx: mpsc::UnboundedReceiver<Value>,
    pub seen: Vec<Value>,
    pub session_id: String,
    pub seq: u64,
    /// READY's payload.
    pub ready: Value,
    pub task: tokio::task::JoinHandle<()>,
}

pub async fn connect(app: &TestApp, user: &User) -> Client {
    let (ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/api/v1/gateway", app.addr))
        .await
        .unwrap();
    let (mut sink, mut stream) = ws.split();
    let (out_tx, mut out_rx) = mpsc::unbounded_channel::<Value>();
    let (in_tx, in_rx) = mpsc::unbounded_channel::<Value>();
    let task = tokio::spawn(async move {
        loop {
            tokio::select! {
                m = out_rx.recv() => match m {
                    Some(v) => { if sink.send(Message::Text(v.to_string().into())).await.is_err() { return } }
                    None => { let _ = sink.close().await; return }
                },
                m = stream.next() => match m {
                    Some(Ok(Message::Text(t))) => { let _ = in_tx.send(serde_json::from_str(&t).unwrap()); }
                    Some(Ok(_)) => {}
                    _ => return,
                }
            }
        }
    });
    let mut c = Client {
        tx: out_tx,
        rx: in_rx,
        seen: vec![],
        session_id: String::new(),
        seq: 0,
        ready: Value::Null,
        task,
    };
    c.send(json!({"op": 2, "d": {"token": user.token}}));
    let ready = c.wait(|v| v["t"] == Event::Ready.name()).await;
    c.session_id = ready["d"]["session_id"].as_str().unwrap().to_string();
    c.ready = ready["d"].clone();
    c
}

impl Client {
    pub fn send(&self, v: Value) {
        self.tx.send(v).unwrap();
    }

    pub fn drain(&mut self) {
        while let Ok(v) = self.rx.try_recv() {
            if let Some(s) = v["s"].as_u64() {
                self.seq = s;
            }
            self.seen.push(v);
        }
    }

    /// Drops every frame received so far, so that a later `wait` cannot match an old one
    /// (e.g. an earlier VOICE_STATE_UPDATE with the same channel as a rejoin's).
    pub fn forget(&mut self) {
        self.drain();
        self.seen.clear();
    }

    /// Waits up to 10 s for a frame matching `pred` (already seen ones count), removing it.
    pub async fn wait(&mut self, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            self.drain();
            if let Some(i) = self.seen.iter().position(&pred) {
                return self.seen.remove(i);
            }
            assert!(
                Instant::now() < deadline,
                "timed out; seen: {:?}",
                self.seen
                    .iter()
                    .map(|v| (&v["op"], &v["t"]))
                    .collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// A str0m peer on its own UDP socket.
pub struct Peer {
    pub peer: TestPeer,
    pub socket: UdpSocket,
    pub sending: bool,
    pub payload_tag: u8,
    pub sent: u32,
    /// Video frames sent (per simulcast layer).
    pub video_frames: u32,
}

impl Peer {
    pub async fn new(send: bool, tag: u8) -> Peer {
        Self::with_config(
            TestPeerConfig {
                send,
                ..Default::default()
            },
            tag,
        )
        .await
    }

    pub async fn with_config(config: TestPeerConfig, tag: u8) -> Peer {
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = socket.local_addr().unwrap();
        Peer {
            peer: TestPeer::new(addr, Instant::now(), config),
            socket,
            sending: config.send,
            payload_tag: tag,
            sent: 0,
            video_frames: 0,
        }
    }

    /// One frame on every simulcast layer of the camera: a keyframe when the SFU asked for one
    /// since the last frame, and every 30th frame anyway.
    pub async fn send_camera_frame(&mut self) {
        if self.peer.video_send_mids.is_empty() || !self.peer.connected {
            return;
        }
        let asked = !self.peer.keyframe_requests.is_empty();
        self.peer.keyframe_requests.clear();
        let key = asked || self.video_frames.is_multiple_of(30);
        for rid in ["q", "h", "f"] {
            self.peer.send_video(Instant::now(), 0, Some(rid), key);
        }
        self.video_frames += 1;
        self.flush().await;
    }

    pub async fn flush(&mut self) {
        while let Some(t) = self.peer.poll_transmit() {
            let _ = self.socket.send_to(&t.contents, t.destination).await;
        }
    }

    /// Processes input and timers; sends one audio packet when `tick_audio`.
    pub async fn step(&mut self, tick_audio: bool) {
        let mut buf = [0u8; 2000];
        while let Ok((n, from)) = self.socket.try_recv_from(&mut buf) {
            self.peer.handle_datagram(Instant::now(), from, &buf[..n]);
        }
        let now = Instant::now();
        if self.peer.poll_timeout().is_some_and(|t| t <= now) {
            self.peer.handle_timeout(now);
        }
        if tick_audio && self.sending && self.peer.connected {
            // Distinct payloads: the tag says who sent it, the counter which packet.
            let mut payload = vec![0xF8, self.payload_tag];
            payload.extend_from_slice(&self.sent.to_be_bytes());
            payload.extend_from_slice(&[0x55; 40]);
            self.peer.send_audio(now, &payload, 20);
            self.sent += 1;
        }
        self.flush().await;
    }

    pub fn heard_from(&self, tag: u8) -> usize {
        self.peer
            .received
            .iter()
            .filter(|r| r.payload.get(1) == Some(&tag))
            .count()
    }
}

/// Like `run_media`, with ~30 camera frames per second from the peers that publish video.
pub async fn run_video(peers: &mut [&mut Peer], dur: Duration) {
    let end = Instant::now() + dur;
    let mut next_audio = Instant::now();
    let mut next_video = Instant::now();
    while Instant::now() < end {
        let tick = Instant::now() >= next_audio;
        if tick {
            next_audio += Duration::from_millis(20);
        }
        let video = Instant::now() >= next_video;
        if video {
            next_video += Duration::from_millis(33);
        }
        for p in peers.iter_mut() {
            p.step(tick).await;
            if video {
                p.send_camera_frame().await;
            }
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

pub async fn run_media(peers: &mut [&mut Peer], dur: Duration) {
    let end = Instant::now() + dur;
    let mut next_audio = Instant::now();
    while Instant::now() < end {
        let tick = Instant::now() >= next_audio;
        if tick {
            next_audio += Duration::from_millis(20);
        }
        for p in peers.iter_mut() {
            p.step(tick).await;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// op 12 → op 13: offer with `slots` receive transceivers and apply the answer.
pub async fn negotiate(c: &mut Client, p: &mut Peer, slots: usize) -> String {
    negotiate_video(c, p, slots, false).await
}

/// `negotiate`, declaring the first sending video mid as the camera when `declare`.
pub async fn negotiate_video(c: &mut Client, p: &mut Peer, slots: usize, declare: bool) -> String {
    let offer = p.peer.offer(slots);
    let mut d = json!({"sdp": offer});
    if declare {
        let mid = p.peer.video_send_mids[0].to_string();
        d["video_tracks"] = json!({ mid: "camera" });
    }
    c.send(json!({"op": 12, "d": d}));
    let ans = c.wait(|v| v["op"] == 13 || v["op"] == 14).await;
    assert_eq!(ans["op"], 13, "offer refused: {ans}");
    p.peer
        .accept_answer(ans["d"]["sdp"].as_str().unwrap())
        .unwrap();
    p.flush().await;
    ans["d"]["voice_session_id"].as_str().unwrap().to_string()
}

pub fn join_frame(server: &str, channel: &str) -> Value {
    json!({"op": 4, "d": {"server_id": server, "channel_id": channel, "self_mute": false, "self_deaf": false}})
}

/// Answers every VOICE_RENEGOTIATE that arrives within `quiet` for these clients (offering the
/// slots asked for), until none comes; media keeps flowing meanwhile.
pub async fn settle(pairs: &mut [(&mut Client, &mut Peer)], quiet: Duration) {
    loop {
        let mut any = false;
        let end = Instant::now() + quiet;
        while Instant::now() < end {
            for (c, p) in pairs.iter_mut() {
                c.drain();
                if let Some(i) = c
                    .seen
                    .iter()
                    .position(|v| v["t"] == Event::VoiceRenegotiate.name())
                {
                    let re = c.seen.remove(i);
                    let slots = re["d"]["audio_slots"].as_u64().unwrap() as usize;
                    // Fewer slots than the peer has: nothing to offer, it keeps its slots.
                    if slots > p.peer.recv_mids.len() {
                        negotiate(c, p, slots).await;
                        any = true;
                    }
                }
                p.step(false).await;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        if !any {
            return;
        }
    }
}

/// Waits for a VOICE_STATE_UPDATE about `user` matching `pred`.
pub async fn state_of(c: &mut Client, user: &str, pred: impl Fn(&Value) -> bool) -> Value {
    c.wait(|v| {
        v["t"] == Event::VoiceStateUpdate.name() && v["d"]["user_id"] == user && pred(&v["d"])
    })
    .await["d"]
        .clone()
}

/// Packets `listener` receives from `tag` during `dur` of media after a `settle_for` pause
/// (time for a change to reach the SFU and packets in flight to land).
pub async fn heard_during(
    peers: &mut [&mut Peer],
    listener: usize,
    tag: u8,
    settle_for: Duration,
    dur: Duration,
) -> usize {
    run_media(peers, settle_for).await;
    let before = peers[listener].heard_from(tag);
    run_media(peers, dur).await;
    peers[listener].heard_from(tag) - before
}
