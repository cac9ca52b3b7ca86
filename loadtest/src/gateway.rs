//! Gateway client plumbing: connect, HELLO → IDENTIFY → READY, heartbeats,
//! and a fast frame classifier for the hot receive path.
//!
//! The server writes dispatches as `{"op":0,"s":N,"t":"NAME","d":...}`;
//! [`classify`] reads `s` and `t` from that prefix without a JSON parse and
//! falls back to serde for anything shaped otherwise.

use std::time::Duration;

use anyhow::{anyhow, bail, Result};
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::value::RawValue;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A frame as the receive loop needs it.
#[derive(Debug, PartialEq)]
pub enum Frame<'a> {
    Dispatch {
        seq: u64,
        t: &'a str,
        d: &'a str,
    },
    /// Any other opcode, with its payload's raw JSON.
    Op {
        op: u64,
        d: &'a str,
    },
}

#[derive(Deserialize)]
struct AnyFrame<'a> {
    op: u64,
    #[serde(borrow)]
    d: Option<&'a RawValue>,
    s: Option<u64>,
    t: Option<&'a str>,
}

/// Classifies a text frame. `None` for frames that are not valid gateway JSON.
pub fn classify(text: &str) -> Option<Frame<'_>> {
    if let Some(rest) = text.strip_prefix("{\"op\":0,\"s\":") {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits > 0 {
            let seq: u64 = rest[..digits].parse().ok()?;
            let rest = &rest[digits..];
            if let Some(rest) = rest.strip_prefix(",\"t\":\"") {
                if let Some(end) = rest.find('"') {
                    let t = &rest[..end];
                    if let Some(d) = rest[end..].strip_prefix("\",\"d\":") {
                        if let Some(d) = d.strip_suffix('}') {
                            return Some(Frame::Dispatch { seq, t, d });
                        }
                    }
                }
            }
        }
    }
    let f: AnyFrame = serde_json::from_str(text).ok()?;
    let d = f.d.map(RawValue::get).unwrap_or("null");
    if f.op == 0 {
        Some(Frame::Dispatch {
            seq: f.s.unwrap_or(0),
            t: f.t.unwrap_or(""),
            d,
        })
    } else {
        Some(Frame::Op { op: f.op, d })
    }
}

pub fn ws_config() -> WebSocketConfig {
    // Small buffers: thousands of connections per process.
    WebSocketConfig::default()
        .read_buffer_size(8 * 1024)
        .write_buffer_size(0)
        .max_message_size(Some(4 << 20))
}

/// An identified gateway connection.
pub struct Session {
    pub ws: Ws,
    pub heartbeat: Duration,
    pub last_seq: u64,
}

/// Connects, waits for HELLO, IDENTIFYs and waits for READY.
pub async fn connect(url: &str, token: &str) -> Result<Session> {
    Ok(connect_inner(url, token, false).await?.0)
}

/// [`connect`], also returning READY's `d` (the e2ee peers read its voice states).
pub async fn connect_keeping_ready(url: &str, token: &str) -> Result<(Session, String)> {
    let (s, ready) = connect_inner(url, token, true).await?;
    Ok((s, ready.unwrap_or_default()))
}

async fn connect_inner(
    url: &str,
    token: &str,
    keep_ready: bool,
) -> Result<(Session, Option<String>)> {
    let (mut ws, _) =
        tokio_tungstenite::connect_async_with_config(url, Some(ws_config()), true).await?;
    let hello = next_text(&mut ws).await?;
    let heartbeat = match classify(&hello) {
        Some(Frame::Op { op: 10, d }) => {
            #[derive(Deserialize)]
            struct Hello {
                heartbeat_interval: u64,
            }
            let h: Hello = serde_json::from_str(d)?;
            Duration::from_millis(h.heartbeat_interval.max(1000))
        }
        _ => bail!("expected HELLO, got {hello}"),
    };
    let identify = format!(
        r#"{{"op":2,"d":{{"token":{}}}}}"#,
        serde_json::to_string(token)?
    );
    ws.send(Message::text(identify)).await?;
    loop {
        let text = next_text(&mut ws).await?;
        match classify(&text) {
            Some(Frame::Dispatch { seq, t: "READY", d }) => {
                let ready = keep_ready.then(|| d.to_string());
                return Ok((
                    Session {
                        ws,
                        heartbeat,
                        last_seq: seq,
                    },
                    ready,
                ));
            }
            Some(Frame::Op { op: 9, .. }) => bail!("INVALID_SESSION after IDENTIFY"),
            _ => continue,
        }
    }
}

/// The next text frame (pings are answered by tungstenite; closes are errors).
pub async fn next_text(ws: &mut Ws) -> Result<String> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let msg = tokio::time::timeout_at(deadline, ws.next())
            .await
            .map_err(|_| anyhow!("gateway: timed out waiting for a frame"))?;
        match msg {
            Some(Ok(Message::Text(t))) => return Ok(t.as_str().to_string()),
            Some(Ok(Message::Close(c))) => bail!("gateway closed: {c:?}"),
            Some(Ok(_)) => continue,
            Some(Err(e)) => return Err(e.into()),
            None => bail!("gateway closed"),
        }
    }
}

pub fn heartbeat_frame(seq: u64) -> Message {
    Message::text(format!(r#"{{"op":1,"d":{{"seq":{seq}}}}}"#))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_path_dispatch() {
        let f = r#"{"op":0,"s":42,"t":"MESSAGE_CREATE","d":{"content":"x"}}"#;
        assert_eq!(
            classify(f),
            Some(Frame::Dispatch {
                seq: 42,
                t: "MESSAGE_CREATE",
                d: r#"{"content":"x"}"#
            })
        );
    }

    #[test]
    fn fallback_parse() {
        let f = r#"{"t":"READY","s":1,"op":0,"d":{"v":1}}"#;
        assert_eq!(
            classify(f),
            Some(Frame::Dispatch {
                seq: 1,
                t: "READY",
                d: r#"{"v":1}"#
            })
        );
        let h = r#"{"op":10,"d":{"heartbeat_interval":41250},"s":null,"t":null}"#;
        assert_eq!(
            classify(h),
            Some(Frame::Op {
                op: 10,
                d: r#"{"heartbeat_interval":41250}"#
            })
        );
        assert_eq!(
            classify(r#"{"op":11,"d":null,"s":null,"t":null}"#),
            Some(Frame::Op { op: 11, d: "null" })
        );
        assert_eq!(classify("nonsense"), None);
    }
}
