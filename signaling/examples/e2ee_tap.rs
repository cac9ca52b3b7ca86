//! A listener that joins an end-to-end encrypted voice channel with a made-up identity key (so
//! nobody can wrap a media key for it) and records the audio payloads the SFU forwards to it:
//! what a curious server, or anyone tapping its media, gets. `tests/browser/e2ee.test.mjs` runs
//! it and compares the payloads with the frames the sender's worker encrypted.
//!
//! `e2ee_tap <http base url> <token> <server id> <channel id> <seconds> <out.json>`

use base64::Engine;
use confab_sfu::testing::{TestPeer, TestPeerConfig};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use tokio::net::UdpSocket;
use tokio_tungstenite::tungstenite::Message;

/// A P-256 SPKI prefix and a point that is not on the curve: well-formed for the server,
/// useless to clients, which cannot derive a key with it.
fn fake_identity_key() -> String {
    let mut der = vec![
        0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08,
        0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00, 0x04,
    ];
    der.extend([0x42; 64]);
    base64::engine::general_purpose::STANDARD.encode(der)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, base, token, server, channel, seconds, out] = &args[..] else {
        eprintln!("usage: e2ee_tap <url> <token> <server id> <channel id> <seconds> <out.json>");
        std::process::exit(2);
    };
    let seconds: u64 = seconds.parse().expect("seconds");
    let ws_url = format!("{}/api/v1/gateway", base.replacen("http", "ws", 1));
    let (ws, _) = tokio_tungstenite::connect_async(ws_url)
        .await
        .expect("gateway");
    let (mut sink, mut stream) = ws.split();
    let send = |v: Value| Message::Text(v.to_string().into());
    sink.send(send(json!({"op": 2, "d": {"token": token}})))
        .await
        .unwrap();
    let mut next = async || -> Value {
        loop {
            match stream.next().await {
                Some(Ok(Message::Text(t))) => return serde_json::from_str(&t).unwrap(),
                Some(Ok(_)) => continue,
                other => panic!("gateway closed: {other:?}"),
            }
        }
    };
    while next().await["t"] != "READY" {}
    sink.send(send(json!({"op": 4, "d": {
        "server_id": server, "channel_id": channel, "self_mute": true, "self_deaf": false,
        "e2ee": {"identity_key": fake_identity_key()},
    }})))
    .await
    .unwrap();

    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut peer = TestPeer::new(
        socket.local_addr().unwrap(),
        Instant::now(),
        // Browsers send Opus in RED (RFC 2198); the SFU forwards it as it came, to peers that
        // take RED.
        TestPeerConfig {
            red: true,
            ..TestPeerConfig::default()
        },
    );
    let offer = peer.offer(3);
    sink.send(send(json!({"op": 12, "d": {"sdp": offer}})))
        .await
        .unwrap();
    let mut slots = Value::Null;
    loop {
        let v = next().await;
        if v["op"] == 14 {
            panic!("refused: {v}");
        }
        if v["t"] == "VOICE_SLOTS" {
            slots = v["d"]["slots"].clone();
        }
        if v["op"] == 13 {
            peer.accept_answer(v["d"]["sdp"].as_str().unwrap()).unwrap();
            break;
        }
    }
    let end = Instant::now() + Duration::from_secs(seconds);
    let mut buf = vec![0u8; 2000];
    let mut datagrams = 0usize;
    while Instant::now() < end {
        while let Some(t) = peer.poll_transmit() {
            let _ = socket.send_to(&t.contents, t.destination).await;
        }
        let wait = peer
            .poll_timeout()
            .map(|t| t.saturating_duration_since(Instant::now()))
            .unwrap_or(Duration::from_millis(20))
            .min(Duration::from_millis(20));
        tokio::select! {
            r = socket.recv_from(&mut buf) => if let Ok((n, from)) = r {
                datagrams += 1;
                peer.handle_datagram(Instant::now(), from, &buf[..n]);
            },
            v = next() => if v["t"] == "VOICE_SLOTS" { slots = v["d"]["slots"].clone(); },
            _ = tokio::time::sleep(wait) => peer.handle_timeout(Instant::now()),
        }
    }
    eprintln!(
        "e2ee_tap: connected {}, {} datagrams, {} RTP packets",
        peer.connected,
        datagrams,
        peer.received.len(),
    );
    let packets: Vec<Value> = peer
        .received
        .iter()
        .map(|r| {
            json!({
                "mid": r.mid,
                "level": r.audio_level,
                "pt": r.pt,
                "payload": base64::engine::general_purpose::STANDARD.encode(&r.payload),
            })
        })
        .collect();
    std::fs::write(out, json!({"slots": slots, "packets": packets}).to_string()).unwrap();
    let _ = sink
        .send(send(
            json!({"op": 4, "d": {"server_id": server, "channel_id": null}}),
        ))
        .await;
    let _ = sink.close().await;
}
