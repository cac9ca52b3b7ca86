//! Gateway frames: opcodes, close codes, and parsing of client frames into typed requests.
//! Pure functions, tested without a network.

use confab_chat::{ChannelId, ServerId};
use serde::Deserialize;
use serde_json::Value;

pub mod op {
    pub const DISPATCH: u8 = 0;
    pub const HEARTBEAT: u8 = 1;
    pub const IDENTIFY: u8 = 2;
    pub const PRESENCE_UPDATE: u8 = 3;
    pub const VOICE_STATE_UPDATE: u8 = 4;
    pub const RESUME: u8 = 6;
    pub const RECONNECT: u8 = 7;
    pub const INVALID_SESSION: u8 = 9;
    pub const HELLO: u8 = 10;
    pub const HEARTBEAT_ACK: u8 = 11;
    pub const VOICE_OFFER: u8 = 12;
    pub const VOICE_ANSWER: u8 = 13;
    pub const VOICE_ERROR: u8 = 14;
    pub const VIDEO_SUBSCRIBE: u8 = 15;
    /// End-to-end encrypted voice: media keys wrapped to each recipient (docs/e2ee.md).
    pub const VOICE_E2EE_KEYS: u8 = 16;
    /// The large servers whose presence updates this session wants (the one on screen).
    pub const PRESENCE_SUBSCRIBE: u8 = 17;
}

pub mod close {
    pub const UNKNOWN_ERROR: u16 = 4000;
    pub const UNKNOWN_OPCODE: u16 = 4001;
    pub const DECODE_ERROR: u16 = 4002;
    pub const NOT_AUTHENTICATED: u16 = 4003;
    pub const AUTHENTICATION_FAILED: u16 = 4004;
    pub const ALREADY_AUTHENTICATED: u16 = 4005;
    pub const INVALID_SEQ: u16 = 4007;
    pub const RATE_LIMITED: u16 = 4008;
    pub const SESSION_TIMED_OUT: u16 = 4009;
    /// IDENTIFY named intent bits this server does not know.
    pub const INVALID_INTENTS: u16 = 4013;
    pub const DISALLOWED: u16 = 4014;
    /// RFC 6455: a text frame that is not UTF-8.
    pub const INVALID_PAYLOAD: u16 = 1007;
    pub const SERVICE_RESTART: u16 = 1012;
}

/// Largest client frame.
pub const MAX_FRAME: usize = 64 * 1024;
/// Client frames allowed per window, outside voice signalling.
pub const FRAMES_PER_WINDOW: u32 = 120;
/// Voice signalling frames allowed per window.
pub const VOICE_FRAMES_PER_WINDOW: u32 = 60;
pub const WINDOW_SECS: u64 = 60;

#[derive(Debug, Deserialize)]
pub struct Identify {
    pub token: String,
    /// Bots: the event classes wanted (docs/gateway.md, Intents). Ignored for people.
    #[serde(default)]
    pub intents: Option<u64>,
}

#[derive(Debug, Deserialize)]
pub struct ResumeReq {
    pub token: String,
    pub session_id: String,
    pub seq: u64,
}

#[derive(Debug, Deserialize)]
pub struct PresenceReq {
    pub status: super::presence::Status,
    /// Nobody is looking at this client (Discord's `afk`): its user gets push notifications.
    #[serde(default)]
    pub afk: Option<bool>,
}

#[derive(Debug, Deserialize)]
pub struct VoiceStateReq {
    pub server_id: Option<ServerId>,
    pub channel_id: Option<ChannelId>,
    #[serde(default)]
    pub self_mute: bool,
    #[serde(default)]
    pub self_deaf: bool,
    #[serde(default)]
    pub voice_session_id: Option<String>,
    /// Camera on (needs the VIDEO permission).
    #[serde(default)]
    pub self_video: bool,
    /// Screen share on (needs the VIDEO permission).
    #[serde(default)]
    pub self_stream: bool,
    /// `{"identity_key": <base64 SPKI, P-256>}`: required to join an end-to-end encrypted
    /// channel, refused elsewhere; checked by the voice service (4400 / 4426).
    #[serde(default)]
    pub e2ee: Option<Value>,
}

#[derive(Debug, Deserialize)]
pub struct VoiceOfferReq {
    pub sdp: String,
    /// `{"<mid>": "camera"|"screen"}`, checked by the voice service (a bad one is a voice
    /// error 4400, not a protocol error).
    #[serde(default)]
    pub video_tracks: Option<Value>,
}

/// Most large servers one session follows the presences of (a client shows one at a time).
pub const MAX_PRESENCE_SUBSCRIPTIONS: usize = 10;

/// Op 17: the large servers whose members' presence updates the session receives; replaces
/// the previous list.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PresenceSubscribeReq {
    pub server_ids: Vec<ServerId>,
}

/// A parsed client frame.
#[derive(Debug)]
pub enum ClientFrame {
    Heartbeat(Option<u64>),
    Identify(Identify),
    Resume(ResumeReq),
    Presence(PresenceReq),
    VoiceState(VoiceStateReq),
    VoiceOffer(VoiceOfferReq),
    /// op 15: the raw payload; the voice service validates it (4400 on bad input).
    VideoSubscribe(Value),
    /// op 16: the raw payload; the voice service validates it (4400 on bad input).
    VoiceE2eeKeys(Value),
    PresenceSubscribe(PresenceSubscribeReq),
}

impl ClientFrame {
    pub fn is_voice(&self) -> bool {
        matches!(
            self,
            ClientFrame::VoiceState(_)
                | ClientFrame::VoiceOffer(_)
                | ClientFrame::VideoSubscribe(_)
                | ClientFrame::VoiceE2eeKeys(_)
        )
    }
}

/// Why a frame was refused: the close code and reason to send.
#[derive(Debug, PartialEq, Eq)]
pub struct Refusal {
    pub code: u16,
    pub reason: &'static str,
}

#[derive(Deserialize)]
struct RawFrame {
    op: Value,
    #[serde(default)]
    d: Value,
}

fn payload<T: serde::de::DeserializeOwned>(d: Value) -> Result<T, Refusal> {
    serde_json::from_value(d).map_err(|_| Refusal {
        code: close::DECODE_ERROR,
        reason: "invalid payload",
    })
}

/// Parses one client text frame.
pub fn parse(text: &str) -> Result<ClientFrame, Refusal> {
    if text.len() > MAX_FRAME {
        return Err(Refusal {
            code: close::DISALLOWED,
            reason: "frame too large",
        });
    }
    // Nothing we store or forward can hold a NUL (see `crate::input`).
    if crate::input::json_has_nul(text.as_bytes()) {
        return Err(Refusal {
            code: close::DECODE_ERROR,
            reason: "NUL characters (U+0000) are not allowed",
        });
    }
    // Only an object is a frame (serde would also accept `[op, d]` for the struct).
    let value: Value = serde_json::from_str(text).map_err(|_| Refusal {
        code: close::DECODE_ERROR,
        reason: "frame is not a gateway JSON object",
    })?;
    if !value.is_object() {
        return Err(Refusal {
            code: close::DECODE_ERROR,
            reason: "frame is not a gateway JSON object",
        });
    }
    let raw: RawFrame = serde_json::from_value(value).map_err(|_| Refusal {
        code: close::DECODE_ERROR,
        reason: "frame is not a gateway JSON object",
    })?;
    let op = raw.op.as_u64().ok_or(Refusal {
        code: close::DECODE_ERROR,
        reason: "op must be a number",
    })?;
    let op = u8::try_from(op).unwrap_or(u8::MAX);
    Ok(match op {
        op::HEARTBEAT => ClientFrame::Heartbeat(match &raw.d {
            Value::Null => None,
            Value::Number(n) => n.as_u64(),
            Value::Object(o) => o.get("seq").and_then(Value::as_u64),
            _ => {
                return Err(Refusal {
                    code: close::DECODE_ERROR,
                    reason: "invalid heartbeat",
                })
            }
        }),
        op::IDENTIFY => ClientFrame::Identify(payload(raw.d)?),
        op::RESUME => ClientFrame::Resume(payload(raw.d)?),
        op::PRESENCE_UPDATE => ClientFrame::Presence(payload(raw.d)?),
        op::VOICE_STATE_UPDATE => ClientFrame::VoiceState(payload(raw.d)?),
        op::VOICE_OFFER => ClientFrame::VoiceOffer(payload(raw.d)?),
        op::VIDEO_SUBSCRIBE => ClientFrame::VideoSubscribe(raw.d),
        op::VOICE_E2EE_KEYS => ClientFrame::VoiceE2eeKeys(raw.d),
        op::PRESENCE_SUBSCRIBE => {
            let req: PresenceSubscribeReq = payload(raw.d)?;
            if req.server_ids.len() > MAX_PRESENCE_SUBSCRIPTIONS {
                return Err(Refusal {
                    code: close::DECODE_ERROR,
                    reason: "at most 10 server_ids",
                });
            }
            ClientFrame::PresenceSubscribe(req)
        }
        _ => {
            return Err(Refusal {
                code: close::UNKNOWN_OPCODE,
                reason: "unknown opcode",
            })
        }
    })
}

/// A server frame that is not a dispatch.
pub fn frame(op: u8, d: &Value) -> String {
    serde_json::json!({"op": op, "d": d, "s": null, "t": null}).to_string()
}

/// Counts frames per window (fixed windows: simple and enough for abuse control).
#[derive(Debug)]
pub struct FrameBudget {
    window_start: std::time::Instant,
    frames: u32,
    voice_frames: u32,
}

impl FrameBudget {
    pub fn new(now: std::time::Instant) -> Self {
        Self {
            window_start: now,
            frames: 0,
            voice_frames: 0,
        }
    }

    /// Counts a frame; false when over budget.
    pub fn allow(&mut self, now: std::time::Instant, voice: bool, scale: f64) -> bool {
        if now.duration_since(self.window_start).as_secs() >= WINDOW_SECS {
            self.window_start = now;
            self.frames = 0;
            self.voice_frames = 0;
        }
        let (count, limit) = if voice {
            (&mut self.voice_frames, VOICE_FRAMES_PER_WINDOW)
        } else {
            (&mut self.frames, FRAMES_PER_WINDOW)
        };
        *count += 1;
        f64::from(*count) <= f64::from(limit) * scale.max(1.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_known_ops_and_refuses_the_rest() {
        assert!(matches!(
            parse(r#"{"op":1,"d":{"seq":5}}"#),
            Ok(ClientFrame::Heartbeat(Some(5)))
        ));
        assert!(matches!(
            parse(r#"{"op":1,"d":7}"#),
            Ok(ClientFrame::Heartbeat(Some(7)))
        ));
        assert!(matches!(
            parse(r#"{"op":1,"d":null}"#),
            Ok(ClientFrame::Heartbeat(None))
        ));
        assert!(matches!(
            parse(r#"{"op":2,"d":{"token":"x"}}"#),
            Ok(ClientFrame::Identify(_))
        ));
        assert!(matches!(
            parse(r#"{"op":6,"d":{"token":"x","session_id":"s","seq":3}}"#),
            Ok(ClientFrame::Resume(_))
        ));
        assert!(matches!(
            parse(r#"{"op":4,"d":{"server_id":"1","channel_id":null}}"#),
            Ok(ClientFrame::VoiceState(_))
        ));
        match parse(r#"{"op":4,"d":{"server_id":"1","channel_id":"2","self_video":true}}"#) {
            Ok(ClientFrame::VoiceState(v)) => assert!(v.self_video && !v.self_stream),
            other => panic!("{other:?}"),
        }
        let f = parse(r#"{"op":15,"d":{"tiles":[]}}"#).unwrap();
        assert!(f.is_voice(), "op 15 counts as voice signalling");
        assert!(matches!(f, ClientFrame::VideoSubscribe(_)));
        let f = parse(r#"{"op":16,"d":{"channel_id":"1","keys":[]}}"#).unwrap();
        assert!(f.is_voice(), "op 16 counts as voice signalling");
        assert!(matches!(f, ClientFrame::VoiceE2eeKeys(_)));
        match parse(r#"{"op":17,"d":{"server_ids":["1","2"]}}"#) {
            Ok(ClientFrame::PresenceSubscribe(r)) => assert_eq!(r.server_ids.len(), 2),
            other => panic!("{other:?}"),
        }
        let eleven = format!(
            r#"{{"op":17,"d":{{"server_ids":[{}]}}}}"#,
            ["\"1\""; 11].join(",")
        );
        assert_eq!(parse(&eleven).unwrap_err().code, close::DECODE_ERROR);
        assert_eq!(
            parse(r#"{"op":17,"d":{"server_ids":"1"}}"#)
                .unwrap_err()
                .code,
            close::DECODE_ERROR
        );
        assert_eq!(
            parse(r#"{"op":99,"d":null}"#).unwrap_err().code,
            close::UNKNOWN_OPCODE
        );
        assert_eq!(
            parse(r#"{"op":300}"#).unwrap_err().code,
            close::UNKNOWN_OPCODE
        );
        assert_eq!(parse("not json").unwrap_err().code, close::DECODE_ERROR);
        assert_eq!(parse("[1,2]").unwrap_err().code, close::DECODE_ERROR);
        assert_eq!(
            parse(r#"{"op":"2"}"#).unwrap_err().code,
            close::DECODE_ERROR
        );
        assert_eq!(
            parse(r#"{"op":2,"d":{"token":5}}"#).unwrap_err().code,
            close::DECODE_ERROR
        );
        assert_eq!(
            parse(r#"{"op":3,"d":{"status":"sleeping"}}"#)
                .unwrap_err()
                .code,
            close::DECODE_ERROR
        );
        let big = format!(r#"{{"op":1,"d":"{}"}}"#, "x".repeat(MAX_FRAME));
        assert_eq!(parse(&big).unwrap_err().code, close::DISALLOWED);
    }

    #[test]
    fn budget_counts_voice_apart() {
        let t = std::time::Instant::now();
        let mut b = FrameBudget::new(t);
        for _ in 0..FRAMES_PER_WINDOW {
            assert!(b.allow(t, false, 1.0));
        }
        assert!(!b.allow(t, false, 1.0));
        assert!(b.allow(t, true, 1.0));
        let later = t + std::time::Duration::from_secs(WINDOW_SECS);
        assert!(b.allow(later, false, 1.0));
    }
}
