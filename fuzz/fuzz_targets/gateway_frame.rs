//! Gateway client frames: `protocol::parse` on any text a client can send, and the session
//! machine's answer to it as a connection's first frame.
#![no_main]

use confab_signaling::gateway::protocol::{self, close, ClientFrame, MAX_FRAME};
use confab_signaling::gateway::session_machine::{Action, Reply, SessionMachine, Settings};
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
                ClientFrame::VoiceE2eeKeys(v) => {
                    assert_eq!(v, d, "op 16 keeps its payload as sent");
                    16
                }
                ClientFrame::PresenceSubscribe(req) => {
                    assert!(req.server_ids.len() <= 10, "op 17 lists at most 10 servers");
                    17
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
    // The machine acts on what `parse` made of the frame: a refusal closes with it; before
    // IDENTIFY only heartbeats, IDENTIFY and RESUME are accepted.
    let now = std::time::Instant::now();
    let mut m = SessionMachine::new(
        now,
        Settings {
            heartbeat_interval_ms: 1_000,
            rate_limit_scale: 1.0,
        },
    );
    let _hello = m.poll_action();
    m.on_frame(now, text);
    let action = m.poll_action();
    assert!(m.poll_action().is_none(), "one frame, one action");
    match (&parsed, action) {
        (Err(r), Some(Action::Close(c))) => assert_eq!(c.frame.as_ref(), Some(r)),
        (Ok(ClientFrame::Heartbeat(_)), Some(Action::Send(Reply::HeartbeatAck))) => {}
        (Ok(ClientFrame::Identify(req)), Some(Action::Identify { token, .. })) => {
            assert_eq!(req.token, token)
        }
        (Ok(ClientFrame::Resume(req)), Some(Action::Resume(r))) => {
            assert_eq!((&req.session_id, req.seq), (&r.session_id, r.seq))
        }
        (Ok(_), Some(Action::Close(c))) => {
            assert_eq!(c.frame.map(|r| r.code), Some(close::NOT_AUTHENTICATED))
        }
        (p, a) => panic!("parsed {p:?}, machine did {a:?}"),
    }
    // Parsing is a pure function.
    assert_eq!(
        protocol::parse(text).map_err(|r| r.code).is_ok(),
        parsed.is_ok()
    );
});
