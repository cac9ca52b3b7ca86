//! Gateway client frames: `protocol::parse` on any text a client can send.
#![no_main]

use confab_signaling::gateway::protocol::{self, close, ClientFrame, MAX_FRAME};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    // A WebSocket text frame is valid UTF-8 (the library refuses the rest).
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let parsed = protocol::parse(text);
    match &parsed {
        Ok(frame) => {
            assert!(text.len() <= MAX_FRAME, "an oversized frame was accepted");
            let value: Value = serde_json::from_str(text).expect("accepted frames are JSON");
            let op = value["op"]
                .as_u64()
                .expect("accepted frames have a numeric op");
            let d = &value["d"];
            let want = match frame {
                ClientFrame::Heartbeat(seq) => {
                    let expected = match d {
                        Value::Object(o) => o.get("seq").and_then(Value::as_u64),
                        other => other.as_u64(),
                    };
                    assert_eq!(*seq, expected, "heartbeat seq read from d");
                    1
                }
                ClientFrame::Identify(req) => {
                    assert_eq!(Some(req.token.as_str()), d["token"].as_str());
                    2
                }
                ClientFrame::Presence(_) => 3,
                ClientFrame::VoiceState(_) => 4,
                ClientFrame::Resume(req) => {
                    assert_eq!(Some(req.seq), d["seq"].as_u64());
                    6
                }
                ClientFrame::VoiceOffer(req) => {
                    assert_eq!(Some(req.sdp.as_str()), d["sdp"].as_str());
                    12
                }
                ClientFrame::VideoSubscribe(v) => {
                    assert_eq!(v, d, "op 15 keeps its payload as sent");
                    15
                }
            };
            assert_eq!(op, want, "the frame's variant is its op");
        }
        Err(r) => {
            assert!(
                [
                    close::DECODE_ERROR,
                    close::UNKNOWN_OPCODE,
                    close::DISALLOWED
                ]
                .contains(&r.code),
                "unexpected close code {}",
                r.code
            );
            assert!(!r.reason.is_empty());
        }
    }
    // Parsing is a pure function.
    assert_eq!(
        protocol::parse(text).map_err(|r| r.code).is_ok(),
        parsed.is_ok()
    );
});
