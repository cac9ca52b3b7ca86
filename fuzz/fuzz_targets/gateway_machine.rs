//! The gateway connection's protocol machine (`gateway::session_machine`): any sequence of
//! client frames, socket events, elapsed time, and results of the work it asked for (in any
//! order, asked for or not), checked against a small model — IDENTIFY is asked for at most
//! once and only before it succeeded, session work only after, the IDENTIFY deadline never
//! moves, nothing closes before its deadline, a close is the last action ever and uses a
//! known code.
#![no_main]

use arbitrary::Arbitrary;
use confab_signaling::gateway::protocol::close;
use confab_signaling::gateway::session_machine::{
    Action, AuthFailure, Closing, End, Reply, SessionMachine, Settings, SocketEvent,
    IDENTIFY_TIMEOUT,
};
use libfuzzer_sys::fuzz_target;
use std::time::{Duration, Instant};

#[derive(Arbitrary, Debug)]
enum Frame {
    Heartbeat,
    Identify,
    Resume,
    Presence,
    VoiceState,
    VoiceOffer,
    VideoSubscribe,
    Text(String),
    // Last, so that the committed seeds keep decoding to the frames they did.
    VoiceE2eeKeys,
    PresenceSubscribe,
}

impl Frame {
    fn text(&self) -> &str {
        match self {
            Frame::Heartbeat => r#"{"op":1,"d":null}"#,
            Frame::Identify => r#"{"op":2,"d":{"token":"t"}}"#,
            Frame::Resume => r#"{"op":6,"d":{"token":"t","session_id":"s","seq":1}}"#,
            Frame::Presence => r#"{"op":3,"d":{"status":"idle"}}"#,
            Frame::VoiceState => r#"{"op":4,"d":{"server_id":"1","channel_id":"2"}}"#,
            Frame::VoiceOffer => r#"{"op":12,"d":{"sdp":"v=0"}}"#,
            Frame::VideoSubscribe => r#"{"op":15,"d":{"tiles":[]}}"#,
            Frame::Text(t) => t,
            Frame::VoiceE2eeKeys => r#"{"op":16,"d":{"channel_id":"2","keys":[]}}"#,
            Frame::PresenceSubscribe => r#"{"op":17,"d":{"server_ids":["1"]}}"#,
        }
    }
}

#[derive(Arbitrary, Debug)]
enum Input {
    Frame(Frame),
    Binary,
    ClientClose(Option<u16>),
    TooLarge,
    InvalidUtf8,
    SocketFailed,
    /// Milliseconds pass.
    Wait(u16),
    Timeout,
    Identified,
    Resumed,
    ResumeInvalid,
    AuthFailed(u8),
    VoiceAnswer,
    VoiceError(u16),
    Shutdown,
    SessionEnded,
    QueueClosed(bool),
    WriteFailed,
}

const KNOWN_CODES: [u16; 11] = [
    close::UNKNOWN_ERROR,
    close::UNKNOWN_OPCODE,
    close::DECODE_ERROR,
    close::NOT_AUTHENTICATED,
    close::AUTHENTICATION_FAILED,
    close::ALREADY_AUTHENTICATED,
    close::RATE_LIMITED,
    close::SESSION_TIMED_OUT,
    close::DISALLOWED,
    close::INVALID_PAYLOAD,
    close::SERVICE_RESTART,
];

#[derive(PartialEq, Debug, Clone, Copy)]
enum Phase {
    Unidentified,
    Authenticating,
    Identified,
    Closed,
}

fuzz_target!(|inputs: Vec<Input>| {
    if inputs.len() > 500 {
        return;
    }
    let t0 = Instant::now();
    let interval_ms = 1_000;
    let mut m = SessionMachine::new(
        t0,
        Settings {
            heartbeat_interval_ms: interval_ms,
            rate_limit_scale: 1.0,
        },
    );
    assert!(matches!(
        m.poll_action(),
        Some(Action::Send(Reply::Hello {
            heartbeat_interval_ms: 1_000
        }))
    ));
    let identify_deadline = t0 + IDENTIFY_TIMEOUT;
    let mut now = t0;
    let mut phase = Phase::Unidentified;
    for input in inputs {
        let deadline_before = m.next_deadline();
        let phase_before = phase;
        let mut timed_out = false;
        match &input {
            Input::Frame(f) => m.on_frame(now, f.text()),
            Input::Binary => m.on_socket(SocketEvent::Binary),
            Input::ClientClose(code) => m.on_socket(SocketEvent::Closed(*code)),
            Input::TooLarge => m.on_socket(SocketEvent::TooLarge),
            Input::InvalidUtf8 => m.on_socket(SocketEvent::InvalidUtf8),
            Input::SocketFailed => m.on_socket(SocketEvent::Failed),
            Input::Wait(ms) => now += Duration::from_millis(u64::from(*ms)),
            Input::Timeout => {
                timed_out = deadline_before.is_some_and(|d| now >= d);
                m.on_timeout(now);
            }
            Input::Identified => m.on_identified(now),
            Input::Resumed => m.on_resumed(now),
            Input::ResumeInvalid => m.on_resume_invalid(),
            Input::AuthFailed(n) => m.on_auth_failed(match n % 3 {
                0 => AuthFailure::RateLimited,
                1 => AuthFailure::BadToken,
                _ => AuthFailure::Internal,
            }),
            Input::VoiceAnswer => m.on_voice_answer("a".into(), "v".into()),
            Input::VoiceError(code) => m.on_voice_error(u32::from(*code), "e".into()),
            Input::Shutdown => m.on_shutdown(),
            Input::SessionEnded => m.on_session_ended(),
            Input::QueueClosed(slow) => m.on_queue_closed(*slow),
            Input::WriteFailed => m.on_write_failed(),
        }
        let actions: Vec<Action> = std::iter::from_fn(|| m.poll_action()).collect();
        if phase_before == Phase::Closed {
            assert!(actions.is_empty(), "acted after closing: {actions:?}");
            continue;
        }
        // The model's phase after the input, from the results the machine was given.
        match (&input, phase) {
            (Input::Identified | Input::Resumed, Phase::Authenticating) => {
                phase = Phase::Identified
            }
            (Input::ResumeInvalid, Phase::Authenticating) => phase = Phase::Unidentified,
            _ => {}
        }
        for (i, a) in actions.iter().enumerate() {
            match a {
                Action::Close(Closing { frame, end, .. }) => {
                    assert_eq!(i, actions.len() - 1, "a close is the last action");
                    if let Some(r) = frame {
                        assert!(KNOWN_CODES.contains(&r.code), "close code {}", r.code);
                        assert!(!r.reason.is_empty());
                    }
                    if *end == End::Normal {
                        assert!(matches!(input, Input::ClientClose(_)));
                    }
                    if matches!(input, Input::Timeout) {
                        assert!(timed_out, "closed before the deadline");
                    }
                    phase = Phase::Closed;
                }
                Action::Identify { .. } | Action::Resume(_) => {
                    assert_eq!(
                        phase_before,
                        Phase::Unidentified,
                        "IDENTIFY/RESUME asked twice"
                    );
                    phase = Phase::Authenticating;
                }
                Action::SetPresence(_)
                | Action::SetAfk(_)
                | Action::VoiceState(_)
                | Action::VoiceOffer(_)
                | Action::VideoSubscribe(_)
                | Action::VoiceE2eeKeys(_)
                | Action::PresenceSubscribe(_)
                | Action::Acknowledged(_) => {
                    assert_eq!(
                        phase_before,
                        Phase::Identified,
                        "session work before IDENTIFY"
                    );
                }
                Action::Send(Reply::InvalidSession) => {
                    assert!(matches!(input, Input::ResumeInvalid));
                }
                Action::Send(Reply::VoiceAnswer { .. } | Reply::VoiceError { .. }) => {
                    assert_eq!(phase_before, Phase::Identified);
                }
                Action::Send(Reply::HeartbeatAck) => {
                    assert!(matches!(input, Input::Frame(_)));
                }
                Action::Send(Reply::Reconnect) => assert!(matches!(input, Input::Shutdown)),
                Action::Send(Reply::Hello { .. }) => panic!("HELLO twice"),
            }
        }
        if matches!(input, Input::Timeout) && timed_out {
            assert_eq!(phase, Phase::Closed, "a passed deadline closes");
        }
        assert_eq!(m.is_closed(), phase == Phase::Closed);
        assert_eq!(m.is_identified(), phase == Phase::Identified);
        match phase {
            Phase::Unidentified => {
                assert_eq!(
                    m.next_deadline(),
                    Some(identify_deadline),
                    "IDENTIFY deadline moved"
                )
            }
            Phase::Identified => {
                let d = m.next_deadline().expect("a heartbeat deadline");
                assert!(d <= now + Duration::from_millis(interval_ms * 3 / 2));
                // Only a heartbeat (or becoming identified) moves it, and only later.
                if phase_before == Phase::Identified && d != deadline_before.unwrap() {
                    assert!(matches!(input, Input::Frame(_)));
                    assert!(d > deadline_before.unwrap());
                }
            }
            Phase::Authenticating | Phase::Closed => assert_eq!(m.next_deadline(), None),
        }
    }
});
